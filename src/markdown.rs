//! Markdown tables of the summaries (printed and written beside the Parquet files): the
//! table and the formats of its cells.

/// A Markdown table.
pub fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = format!("| {} |\n|", head.join(" | "));
    s += &"---|".repeat(head.len());
    s.push('\n');
    for r in rows {
        s += &format!("| {} |\n", r.join(" | "));
    }
    s
}

/// A signed difference with 4 decimals, or "–".
pub fn signed(x: Option<f64>) -> String {
    x.map_or("–".to_string(), |v| format!("{v:+.4}"))
}

/// A 95% interval, or "–".
pub fn interval(lo: Option<f64>, hi: Option<f64>) -> String {
    match (lo, hi) {
        (Some(a), Some(b)) => format!("[{a:+.4}, {b:+.4}]"),
        _ => "–".into(),
    }
}

/// A p-value with 3 decimals, or "–".
pub fn p_value(x: Option<f64>) -> String {
    x.map_or("–".to_string(), |v| format!("{v:.3}"))
}

/// `lifted/faulty (percent)`.
pub fn lifted(lifted: u32, faulty: u32) -> String {
    let pct = if faulty == 0 {
        0.0
    } else {
        100.0 * lifted as f64 / faulty as f64
    };
    format!("{lifted}/{faulty} ({pct:.0}%)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table() {
        let t = table(&["a", "b"], &[vec!["1".into(), signed(Some(0.5))]]);
        assert_eq!(t, "| a | b |\n|---|---|\n| 1 | +0.5000 |\n");
        assert_eq!(interval(None, Some(1.0)), "–");
        assert_eq!(lifted(1, 4), "1/4 (25%)");
        assert_eq!(p_value(Some(0.01234)), "0.012");
    }
}
