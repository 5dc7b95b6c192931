//! `batch.csv` (`mode debug`): the selected batch for a user's own trainer — `id`, `label`,
//! `origin` and `source` (the image file or table row the sample came from, or the split file
//! and row). RFC 4180: fields holding a comma, a quote or a line break are quoted.

use super::Artifact;
use super::io::write_bytes;
use crate::text_enum::TextEnum;
use crate::vocab::Origin;
use anyhow::{Context, Result, anyhow, bail};
use std::path::Path;

const HEADER: [&str; 4] = ["id", "label", "origin", "source"];

#[derive(Debug, Clone, PartialEq)]
pub struct BatchCsvRow {
    pub id: u32,
    pub label: u16,
    pub origin: Origin,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct BatchCsv(pub Vec<BatchCsvRow>);

fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The records of a CSV text (quoted fields may hold commas, quotes and line breaks).
fn records(text: &str) -> Result<Vec<Vec<String>>> {
    let mut out = Vec::new();
    let (mut rec, mut cur) = (Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => cur.push(c),
            (false, '"') if cur.is_empty() => quoted = true,
            (false, ',') => rec.push(std::mem::take(&mut cur)),
            (false, '\r') => {}
            (false, '\n') => {
                rec.push(std::mem::take(&mut cur));
                out.push(std::mem::take(&mut rec));
            }
            (false, c) => cur.push(c),
        }
    }
    if quoted {
        bail!("a quoted field is not closed");
    }
    if !cur.is_empty() || !rec.is_empty() {
        rec.push(cur);
        out.push(rec);
    }
    Ok(out)
}

impl Artifact for BatchCsv {
    fn write(&self, path: &Path) -> Result<()> {
        let mut text = HEADER.join(",");
        text.push('\n');
        for r in &self.0 {
            text.push_str(&format!(
                "{},{},{},{}\n",
                r.id,
                r.label,
                r.origin.as_str(),
                field(&r.source)
            ));
        }
        write_bytes(path, text.as_bytes())
    }

    fn read(path: &Path) -> Result<BatchCsv> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let recs = records(&text).with_context(|| path.display().to_string())?;
        let (head, rows) = recs
            .split_first()
            .ok_or_else(|| anyhow!("{}: empty file", path.display()))?;
        if head.as_slice() != HEADER {
            bail!(
                "{}: the header is {head:?}, expected {HEADER:?}",
                path.display()
            );
        }
        rows.iter()
            .enumerate()
            .map(|(i, r)| {
                let bad = || {
                    anyhow!(
                        "{}: row {} is not id,label,origin,source",
                        path.display(),
                        i + 1
                    )
                };
                let [id, label, origin, source] = r.as_slice() else {
                    return Err(bad());
                };
                Ok(BatchCsvRow {
                    id: id.parse().map_err(|_| bad())?,
                    label: label.parse().map_err(|_| bad())?,
                    origin: Origin::parse_or_err(origin)?,
                    source: source.clone(),
                })
            })
            .collect::<Result<_>>()
            .map(BatchCsv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_with_awkward_sources() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("batch.csv");
        let b = BatchCsv(vec![
            BatchCsvRow {
                id: 3,
                label: 1,
                origin: Origin::Targeted,
                source: "images/cat/a,b \"x\".png".into(),
            },
            BatchCsvRow {
                id: 9,
                label: 0,
                origin: Origin::Random,
                source: "splits/pool.parquet#12".into(),
            },
        ]);
        b.write(&p).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with(
            "id,label,origin,source\n3,1,targeted,\"images/cat/a,b \"\"x\"\".png\"\n"
        ));
        assert_eq!(BatchCsv::read(&p).unwrap(), b);
    }
}
