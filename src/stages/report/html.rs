//! The few HTML pieces the report is made of: escaped text, tables, images and the page.

use std::fmt::Write as _;
use std::path::Path;

/// Text made safe for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A table of text cells (every cell escaped).
pub fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = String::from("<table><tr>");
    for h in head {
        let _ = write!(s, "<th>{}</th>", esc(h));
    }
    s += "</tr>";
    for r in rows {
        s += "<tr>";
        for c in r {
            let _ = write!(s, "<td>{}</td>", esc(c));
        }
        s += "</tr>";
    }
    s + "</table>"
}

/// An image beside the page, referred to by its file name.
pub fn img(path: &Path, alt: &str) -> String {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default();
    format!("<p><img src=\"{}\" alt=\"{}\"></p>", esc(&file), esc(alt))
}

/// A visible warning paragraph (text escaped).
pub fn warn(text: &str) -> String {
    format!("<p class=\"warn\">⚠ {}</p>", esc(text))
}

/// A table cell's text, flagged when it needs the reader's attention.
pub fn flag(text: &str, flagged: bool) -> String {
    if flagged {
        format!("⚠ {text}")
    } else {
        text.to_string()
    }
}

/// The whole page: self-contained, no JavaScript.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>mode report — {}</title><style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}table{{border-collapse:collapse;margin:.5em 0}}td,th{{border:1px solid #bbb;padding:2px 8px;font-size:13px;text-align:right}}th{{background:#eee}}img{{max-width:100%;border:1px solid #ddd}}h2{{border-bottom:2px solid #ccc;margin-top:1.6em}}.warn{{color:#a00;font-weight:bold}}</style></head><body>{}</body></html>\n",
        esc(title),
        body
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(esc("a<b>&\"c\""), "a&lt;b&gt;&amp;&quot;c&quot;");
        assert_eq!(esc("plain"), "plain");
    }

    #[test]
    fn table_escapes_cells() {
        let t = table(&["x<y"], &[vec!["<script>".into()]]);
        assert_eq!(
            t,
            "<table><tr><th>x&lt;y</th></tr><tr><td>&lt;script&gt;</td></tr></table>"
        );
    }

    #[test]
    fn img_uses_the_file_name() {
        let s = img(Path::new("/tmp/out/heatmaps.png"), "a \"map\"");
        assert_eq!(
            s,
            "<p><img src=\"heatmaps.png\" alt=\"a &quot;map&quot;\"></p>"
        );
    }

    #[test]
    fn page_has_no_script() {
        let p = page("<x>", &warn("stale <sweep>"));
        assert!(!p.contains("<script") && p.contains("&lt;x&gt;") && p.contains("class=\"warn\""));
    }
}
