//! The layers of the crate never loop back: every module of `src/` refers (by `crate::…`,
//! `super::…` or a macro path) only to modules of a lower layer, and a stage never uses a
//! sibling stage. ARCHITECTURE.md describes the layers; this test is what enforces them.

use std::collections::BTreeMap;
use std::path::Path;

/// The layers, bottom to top; a module may refer only to modules of lower layers (and to
/// itself). Modules in one layer do not refer to each other.
const LAYERS: &[&[&str]] = &[
    &[
        "text_enum",
        "linalg",
        "idx",
        "progress",
        "numeric",
        "markdown",
    ],
    &["vocab"],
    &["arch"],
    &["config"],
    &["arm"],
    &["artifacts"],
    &["analysis"],
    &["model"],
    &["sources"],
    &["plots"],
    &["engine"],
    &["stages"],
    &["cli"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// A source file's module path: `src/engine/grid.rs` → `[engine, grid]`,
/// `src/stages/report/mod.rs` → `[stages, report]`.
fn module_path(rel: &str) -> Vec<String> {
    let rel = rel.trim_end_matches(".rs");
    let mut parts: Vec<String> = rel.split('/').map(str::to_string).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The code without comments (doc links and prose may name any module).
fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// The first path segment of each item after a `crate::` or `super::` prefix: one for
/// `crate::x::…`, one per item for `crate::{x, y::…}`.
fn first_segments(rest: &str) -> Vec<String> {
    if let Some(inner) = rest.strip_prefix('{') {
        let mut depth = 0;
        let mut out = Vec::new();
        let mut start = true;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => start = true,
                c if start && !c.is_whitespace() => {
                    out.push(ident_at(&inner[i..]));
                    start = false;
                }
                _ => {}
            }
        }
        out
    } else {
        vec![ident_at(rest)]
    }
}

/// Every module path a file refers to (resolved from `crate::` and `super::` chains), as
/// `[top, second]` (second when there is one).
fn references(path: &[String], code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < code.len() {
        let rest = &code[i..];
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if boundary && rest.starts_with("crate::") {
            let after = &rest["crate::".len()..];
            for first in first_segments(after) {
                let mut r = vec![first.clone()];
                let tail = after.strip_prefix(first.as_str()).unwrap_or("");
                if let Some(t) = tail.strip_prefix("::") {
                    r.push(ident_at(t));
                }
                out.push(r);
            }
            i += "crate::".len();
        } else if boundary && rest.starts_with("super::") {
            // The file's own module is `path`; each `super` goes one level up.
            let mut base: Vec<String> = path.to_vec();
            let mut tail = rest;
            while let Some(t) = tail.strip_prefix("super::") {
                base.pop();
                tail = t;
            }
            for first in first_segments(tail) {
                let mut r = base.clone();
                r.push(first);
                out.push(r);
            }
            i += rest.len() - tail.len();
        } else {
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    out
}

/// The stage modules (`pub mod x;` in `src/stages/mod.rs`).
fn stage_modules(files: &BTreeMap<String, String>) -> Vec<String> {
    files
        .get("stages/mod.rs")
        .map(|t| {
            t.lines()
                .filter_map(|l| l.trim().strip_prefix("pub mod "))
                .map(|m| m.trim_end_matches(';').to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Every breach of the layering in `files` (paths relative to `src/`), one line each.
fn violations(files: &BTreeMap<String, String>) -> Vec<String> {
    let stages = stage_modules(files);
    let mut out = Vec::new();
    for (rel, text) in files {
        let path = module_path(rel);
        let top = path[0].as_str();
        if matches!(top, "lib" | "main") {
            continue;
        }
        let Some(own) = layer_of(top) else {
            out.push(format!("{rel}: module {top} is in no layer"));
            continue;
        };
        for r in references(&path, &strip_comments(text)) {
            let to = r[0].as_str();
            if to == top || to.is_empty() || to == "self" {
                // Inside its own module: only a stage's use of a sibling stage is refused.
                if top == "stages"
                    && path.len() > 1
                    && let Some(sib) = r.get(1)
                    && stages.contains(sib)
                    && *sib != path[1]
                {
                    out.push(format!("{rel}: stage {} uses the stage {sib}", path[1]));
                }
                continue;
            }
            match layer_of(to) {
                Some(l) if l < own => {}
                Some(_) => out.push(format!(
                    "{rel}: {top} (layer {own}) refers to {} (layer {})",
                    r.join("::"),
                    layer_of(to).unwrap_or(0)
                )),
                None => {}
            }
        }
    }
    out
}

fn read_tree(dir: &Path, rel: &str, out: &mut BTreeMap<String, String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("src/").flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().to_string();
        let r = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        if e.path().is_dir() {
            read_tree(&e.path(), &r, out);
        } else if name.ends_with(".rs") {
            out.insert(r, std::fs::read_to_string(e.path()).expect("a source file"));
        }
    }
}

#[test]
fn no_layer_refers_to_a_higher_one_and_no_stage_to_a_sibling() {
    let mut files = BTreeMap::new();
    read_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        "",
        &mut files,
    );
    assert!(files.len() > 50, "read the sources");
    let v = violations(&files);
    assert!(v.is_empty(), "layering broken:\n{}", v.join("\n"));
}

fn tree(files: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut t: BTreeMap<String, String> = files
        .iter()
        .map(|(p, c)| (p.to_string(), c.to_string()))
        .collect();
    t.entry("stages/mod.rs".into())
        .or_insert_with(|| "pub mod sweep;\npub mod ablate;\npub mod report;\n".into());
    t
}

#[test]
fn the_check_finds_each_kind_of_breach() {
    // A low layer using a higher one, directly, in braces or through `super::super`.
    for code in [
        "use crate::engine::Store;",
        "use crate::{vocab::Space, engine::Store};",
        "fn f() { crate::stages::sweep::run(); }",
    ] {
        let v = violations(&tree(&[("artifacts/maps.rs", code)]));
        assert!(!v.is_empty(), "not caught: {code}");
    }
    let v = violations(&tree(&[(
        "artifacts/maps.rs",
        "use super::super::engine::Store;",
    )]));
    assert_eq!(v.len(), 1, "{v:?}");
    // A stage using a sibling, by `crate::` or `super::`; report's own submodules are fine.
    for (file, code) in [
        ("stages/ablate.rs", "use crate::stages::sweep::grid;"),
        ("stages/ablate.rs", "use super::sweep;"),
        ("stages/report/tables.rs", "use super::super::sweep::HEAD;"),
    ] {
        let v = violations(&tree(&[(file, code)]));
        assert_eq!(v.len(), 1, "{file}: {code}: {v:?}");
    }
    // What is allowed: lower layers, the module's own parts, the stages' shared items, comments.
    let ok = tree(&[
        (
            "engine/grid.rs",
            "use crate::artifacts::Grid; use super::shard;",
        ),
        (
            "stages/report/tables.rs",
            "use super::html::table; use super::Inputs;",
        ),
        (
            "stages/sweep.rs",
            "use super::Ctx; // see crate::stages::ablate",
        ),
        ("numeric.rs", "/// [`crate::model`] uses this\nfn f() {}"),
    ]);
    assert_eq!(violations(&ok), Vec::<String>::new());
}
