//! The templates of task files: how an item's fields become a context, a prompt or a reference.
//! Plain `{field}` substitution by default; Jinja (`syntax = "jinja"`, as lm-evaluation-harness
//! writes `doc_to_text`) for templates that need conditions, filters or lookups.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// One item of a task's data: field name → value.
pub type Record = BTreeMap<String, Value>;

/// How a task file's templates are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Syntax {
    /// `{field}` is the field's text, `{field.strip}` without surrounding whitespace; no other
    /// braces are allowed.
    #[default]
    Fields,
    /// Jinja, with the item's fields as variables (`{{ question | trim }}`,
    /// `{% if description %}…{% endif %}`); undefined fields are errors.
    Jinja,
}

impl Syntax {
    /// Checks that `template` parses, so that a broken task file fails before any scoring.
    pub fn check(self, template: &str, key: &str) -> Result<()> {
        match self {
            Syntax::Fields => fields_placeholders(template).map(|_| ()),
            Syntax::Jinja => jinja_env().template_from_str(template).map(|_| ()).map_err(anyhow::Error::from),
        }
        .with_context(|| format!("the template `{key}` is invalid"))
    }

    /// `template` with the item's fields filled in.
    pub fn render(self, template: &str, record: &Record) -> Result<String> {
        match self {
            Syntax::Fields => render_fields(template, record),
            Syntax::Jinja => {
                let env = jinja_env();
                let t = env.template_from_str(template)?;
                t.render(minijinja::Value::from_serialize(record))
                    .map_err(|e| anyhow::anyhow!("{e:#}").context("the Jinja template failed on this item"))
            }
        }
    }
}

fn jinja_env() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    // A misspelled field must not render as an empty string and silently change every prompt.
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    // Task files are data, not programs: bound the work one render may do.
    env.set_fuel(Some(1_000_000));
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    // Prompts keep their exact whitespace and newlines, as in lm-evaluation-harness.
    env.set_keep_trailing_newline(true);
    env
}

/// The text of a field: strings as they are, other values as JSON.
pub fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The `(literal before, placeholder)` pieces of a `{field}` template, and the literal tail.
fn fields_placeholders(template: &str) -> Result<(Vec<(&str, &str)>, &str)> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').with_context(|| format!("unclosed {{ in the template {template:?}"))? + start;
        pieces.push((&rest[..start], &rest[start + 1..end]));
        rest = &rest[end + 1..];
    }
    Ok((pieces, rest))
}

fn render_fields(template: &str, record: &Record) -> Result<String> {
    let (pieces, tail) = fields_placeholders(template)?;
    let mut out = String::new();
    for (literal, name) in pieces {
        out.push_str(literal);
        let (field, strip) = match name.strip_suffix(".strip") {
            Some(f) => (f, true),
            None => (name, false),
        };
        let value = record.get(field).with_context(|| format!("the template uses {{{name}}}, which the item lacks"))?;
        let text = as_text(value);
        out.push_str(if strip { text.trim() } else { &text });
    }
    out.push_str(tail);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(v: Value) -> Record {
        v.as_object().unwrap().clone().into_iter().collect()
    }

    #[test]
    fn fields_and_jinja_render_the_same_item() {
        let r = record(json!({"q": "  Why? ", "n": 3, "desc": ""}));
        assert_eq!(Syntax::Fields.render("Q: {q.strip} ({n})", &r).unwrap(), "Q: Why? (3)");
        let jinja = "Q: {{ q | trim }} ({{ n }}){% if desc %}\n{{ desc }}{% endif %}\n";
        assert_eq!(Syntax::Jinja.render(jinja, &r).unwrap(), "Q: Why? (3)\n");
        let lookup = r#"{{ {"e": "Exact", "s": "Substitute"}[label | lower] }}"#;
        assert_eq!(Syntax::Jinja.render(lookup, &record(json!({"label": "E"}))).unwrap(), "Exact");
    }

    #[test]
    fn missing_fields_and_broken_templates_are_errors() {
        let r = record(json!({"q": "x"}));
        let e = Syntax::Fields.render("{qq}", &r).unwrap_err();
        assert!(e.to_string().contains("{qq}"), "{e}");
        assert!(Syntax::Fields.check("{q", "context").is_err());
        assert!(Syntax::Jinja.render("{{ qq }}", &r).is_err(), "undefined is strict");
        let e = Syntax::Jinja.check("{% if %}", "prompt").unwrap_err();
        assert!(format!("{e:#}").contains("`prompt`"), "{e:#}");
        // A template that would loop for ever runs out of fuel.
        assert!(Syntax::Jinja
            .render("{% for i in range(100000) %}{% for j in range(100000) %}.{% endfor %}{% endfor %}", &r)
            .is_err());
    }
}
