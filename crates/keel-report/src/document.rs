//! A small document model rendered twice: as Markdown (report.md) and as self-contained HTML
//! (report.html), so the two always say the same thing.

use crate::plot::{escape, SVG_NAMESPACE};

/// A run of inline text.
#[derive(Debug, Clone)]
pub(crate) enum Span {
    Text(String),
    Bold(String),
    Code(String),
}

/// Inline content: a sequence of spans.
pub(crate) type Inline = Vec<Span>;

pub(crate) fn text(s: impl Into<String>) -> Inline {
    vec![Span::Text(s.into())]
}

pub(crate) fn bold_if(bold: bool, s: impl Into<String>) -> Inline {
    vec![if bold { Span::Bold(s.into()) } else { Span::Text(s.into()) }]
}

/// A block of the document.
#[derive(Debug, Clone)]
pub(crate) enum Block {
    Heading(u8, String),
    Paragraph(Inline),
    List(Vec<Inline>),
    Table {
        header: Vec<String>,
        rows: Vec<Vec<Inline>>,
    },
    /// A figure: its file name beside the report, a short alternative text, its SVG document,
    /// and a caption.
    Figure {
        file: String,
        alt: String,
        svg: String,
        caption: String,
    },
}

/// Escape what would break a table or start emphasis; intraword underscores (task names) are safe.
fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('*', "\\*")
}

fn inline_md(inline: &Inline) -> String {
    inline
        .iter()
        .map(|span| match span {
            Span::Text(t) => md_escape(t),
            Span::Bold(t) => format!("**{}**", md_escape(t)),
            Span::Code(t) => format!("`{t}`"),
        })
        .collect()
}

fn inline_html(inline: &Inline) -> String {
    inline
        .iter()
        .map(|span| match span {
            Span::Text(t) => escape(t),
            Span::Bold(t) => format!("<strong>{}</strong>", escape(t)),
            Span::Code(t) => format!("<code>{}</code>", escape(t)),
        })
        .collect()
}

/// Markdown; figures are linked as the SVG files written beside it.
pub(crate) fn markdown(blocks: &[Block]) -> String {
    let mut out = String::new();
    for block in blocks {
        match block {
            Block::Heading(level, t) => out.push_str(&format!("{} {t}\n\n", "#".repeat(*level as usize))),
            Block::Paragraph(inline) => out.push_str(&format!("{}\n\n", inline_md(inline))),
            Block::List(items) => {
                for item in items {
                    out.push_str(&format!("- {}\n", inline_md(item)));
                }
                out.push('\n');
            }
            Block::Table { header, rows } => {
                out.push_str(&format!("| {} |\n", header.iter().map(|h| md_escape(h)).collect::<Vec<_>>().join(" | ")));
                out.push_str(&format!("|{}\n", "---|".repeat(header.len())));
                for row in rows {
                    out.push_str(&format!("| {} |\n", row.iter().map(inline_md).collect::<Vec<_>>().join(" | ")));
                }
                out.push('\n');
            }
            Block::Figure { file, alt, caption, .. } => {
                out.push_str(&format!("![{}]({file})\n\n*{}*\n\n", md_escape(alt), md_escape(caption)))
            }
        }
    }
    out
}

const STYLE: &str =
    "body{font-family:'DejaVu Sans',Arial,sans-serif;max-width:1140px;margin:24px auto;padding:0 16px;color:#111;\
line-height:1.45}h1{font-size:26px}h2{font-size:20px;margin-top:34px;border-bottom:1px solid #ccc;padding-bottom:4px}\
h3{font-size:16px;margin-top:22px}table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}\
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f2f2f2}\
tr:nth-child(even) td{background:#fafafa}figure{margin:12px 0 24px}figcaption{font-size:13px;color:#444}\
svg{max-width:100%;height:auto}code{background:#f2f2f2;padding:0 3px}";

/// Self-contained HTML: inline CSS and inline SVG, nothing fetched, no script.
pub(crate) fn html(title: &str, blocks: &[Block]) -> String {
    let mut body = String::new();
    for block in blocks {
        match block {
            Block::Heading(level, t) => body.push_str(&format!("<h{level}>{}</h{level}>\n", escape(t))),
            Block::Paragraph(inline) => body.push_str(&format!("<p>{}</p>\n", inline_html(inline))),
            Block::List(items) => {
                body.push_str("<ul>\n");
                for item in items {
                    body.push_str(&format!("<li>{}</li>\n", inline_html(item)));
                }
                body.push_str("</ul>\n");
            }
            Block::Table { header, rows } => {
                body.push_str("<table>\n<tr>");
                for h in header {
                    body.push_str(&format!("<th>{}</th>", escape(h)));
                }
                body.push_str("</tr>\n");
                for row in rows {
                    let cells: String = row.iter().map(|c| format!("<td>{}</td>", inline_html(c))).collect();
                    body.push_str(&format!("<tr>{cells}</tr>\n"));
                }
                body.push_str("</table>\n");
            }
            Block::Figure { svg, caption, .. } => body.push_str(&format!(
                "<figure>\n{}<figcaption>{}</figcaption>\n</figure>\n",
                svg.replacen(SVG_NAMESPACE, "", 1),
                escape(caption)
            )),
        }
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        escape(title)
    )
}
