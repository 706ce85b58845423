//! Chat templates: the model's Jinja template rendered as transformers' `apply_chat_template`
//! renders it (trim_blocks, lstrip_blocks, `raise_exception`, Python string methods, Python's
//! `json.dumps` for `tojson`).

use anyhow::{Context, Result};
use minijinja::{Environment, Error, ErrorKind, Value};
use serde::Serialize;

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant` (whatever the template knows).
    pub role: String,
    /// The message's text.
    pub content: String,
}

impl Message {
    /// A message from string slices.
    pub fn new(role: &str, content: &str) -> Self {
        Message { role: role.into(), content: content.into() }
    }
}

/// A chat format keel ships, for a model without one of its own (a base model): chosen by name
/// with `--chat-template NAME` or `model.chat_template = "NAME"`.
pub struct NamedTemplate {
    /// The name users give.
    pub name: &'static str,
    /// The Jinja source.
    pub source: &'static str,
    /// The text that closes an assistant turn; generation stops at its token.
    pub end_of_turn: &'static str,
}

/// The formats keel ships.
pub const NAMED_TEMPLATES: [NamedTemplate; 2] = [
    NamedTemplate { name: "gemma", source: include_str!("templates/gemma.jinja"), end_of_turn: "<end_of_turn>" },
    NamedTemplate { name: "chatml", source: include_str!("templates/chatml.jinja"), end_of_turn: "<|im_end|>" },
];

/// The shipped format called `name`.
pub fn named_template(name: &str) -> Option<&'static NamedTemplate> {
    NAMED_TEMPLATES.iter().find(|t| t.name == name)
}

/// Instructions a template may execute per render.
const TEMPLATE_FUEL: u64 = 20_000_000;

/// A model's chat template, compiled once, with the special tokens it may refer to.
pub struct ChatTemplate {
    env: Environment<'static>,
    /// The Jinja source, as the model ships it.
    pub source: String,
    /// Special tokens the template may refer to (`bos_token`, `eos_token`, …).
    special: Vec<(String, String)>,
    /// What closes an assistant turn, when the template is one keel ships (also after a round
    /// trip through a saved model): generation stops there even if the model's EOS differs.
    pub end_of_turn: Option<&'static str>,
}

impl ChatTemplate {
    /// Compiles `source`; `special` lists the tokenizer's special tokens by role name.
    pub fn new(source: &str, special: &[(&str, &str)]) -> Result<Self> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        // A template comes with the model file: bound its work so that one with nested loops
        // (range() allows 100000 items each) fails instead of hanging. Real templates use a
        // few thousand units per conversation.
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, format!("the chat template raised: {msg}")))
        });
        env.add_function("strftime_now", |fmt: String| -> String { strftime_now(&fmt) });
        env.add_filter("tojson", tojson);
        env.add_template_owned("chat", source.to_string()).context("the chat template does not compile")?;
        Ok(ChatTemplate {
            env,
            source: source.to_string(),
            special: special.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            end_of_turn: NAMED_TEMPLATES.iter().find(|t| t.source == source).map(|t| t.end_of_turn),
        })
    }

    /// The conversation as the model sees it; with `add_generation_prompt`, followed by the
    /// opening of an assistant turn.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let mut ctx: std::collections::BTreeMap<String, Value> =
            self.special.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect();
        ctx.insert("messages".into(), Value::from_serialize(messages));
        ctx.insert("add_generation_prompt".into(), Value::from(add_generation_prompt));
        let tmpl = self.env.get_template("chat").expect("compiled in new()");
        tmpl.render(ctx).map_err(|e| anyhow::anyhow!("cannot render the chat template: {e:#}"))
    }
}

/// Python's `json.dumps(x, ensure_ascii=False, indent=indent)`: ", " and ": " separators,
/// non-ASCII kept, nothing HTML-escaped (unlike minijinja's own `tojson`).
fn tojson(value: Value, indent: Option<usize>) -> Result<Value, Error> {
    let v: serde_json::Value =
        serde_json::to_value(&value).map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    let mut out = String::new();
    write_py_json(&v, indent, 0, &mut out);
    Ok(Value::from_safe_string(out))
}

fn write_py_json(v: &serde_json::Value, indent: Option<usize>, depth: usize, out: &mut String) {
    use serde_json::Value as J;
    let newline = |out: &mut String, depth: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * depth));
        }
    };
    let item_sep = if indent.is_some() { "," } else { ", " };
    match v {
        J::Array(a) if !a.is_empty() => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                write_py_json(x, indent, depth + 1, out);
            }
            newline(out, depth);
            out.push(']');
        }
        J::Object(o) if !o.is_empty() => {
            out.push('{');
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                out.push_str(&serde_json::to_string(k).expect("string"));
                out.push_str(": ");
                write_py_json(x, indent, depth + 1, out);
            }
            newline(out, depth);
            out.push('}');
        }
        J::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(0.0);
            // Python writes floats with a decimal point or exponent (1.0, 1e-05).
            out.push_str(&if f.fract() == 0.0 && f.abs() < 1e16 { format!("{f:.1}") } else { format!("{f}") });
        }
        other => out.push_str(&serde_json::to_string(other).expect("json")),
    }
}

/// The current UTC date and time in a strftime format (the subset chat templates use).
fn strftime_now(fmt: &str) -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = ((secs / 86400) as i64, secs % 86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(ch) = chars.next() {
        if ch != '%' {
            out.push(ch);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&year.to_string()),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('B') => out.push_str(MONTHS[(month - 1) as usize]),
            Some('b') => out.push_str(&MONTHS[(month - 1) as usize][..3]),
            Some('H') => out.push_str(&format!("{:02}", rem / 3600)),
            Some('M') => out.push_str(&format!("{:02}", rem % 3600 / 60)),
            Some('S') => out.push_str(&format!("{:02}", rem % 60)),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raise_exception_is_an_error_with_the_templates_message() {
        let t = ChatTemplate::new(
            "{% if messages[0].role != 'user' %}{{ raise_exception('first must be user') }}{% endif %}ok",
            &[],
        )
        .unwrap();
        let err = t.render(&[Message::new("assistant", "x")], false).unwrap_err().to_string();
        assert!(err.contains("first must be user"), "{err}");
        assert_eq!(t.render(&[Message::new("user", "x")], false).unwrap(), "ok");
    }

    #[test]
    fn a_template_with_nested_loops_runs_out_of_fuel_instead_of_hanging() {
        let t =
            ChatTemplate::new("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}", &[])
                .unwrap();
        let started = std::time::Instant::now();
        assert!(t.render(&[Message::new("user", "x")], false).is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "took {:?}", started.elapsed());
    }

    #[test]
    fn python_string_methods_and_json_work() {
        let t = ChatTemplate::new(
            "{{ messages[0].content.strip().upper() }}|{{ {'a': [1, 2.0], 'é': '<b>'} | tojson }}",
            &[],
        )
        .unwrap();
        assert_eq!(t.render(&[Message::new("user", "  hi ")], false).unwrap(), "HI|{\"a\": [1, 2.0], \"é\": \"<b>\"}");
    }

    #[test]
    fn a_template_that_does_not_compile_is_an_error() {
        assert!(ChatTemplate::new("{% for m in messages %}", &[]).is_err());
    }
}
