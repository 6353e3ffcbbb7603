//! The layout ARCHITECTURE.md promises, checked: no two of the proxy's modules import each
//! other (directly or round a longer circle), and no source file grows past what a reader
//! takes in at once (tables and tests aside).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Longest source file allowed, in lines ("about 500", with room for a doc comment).
const MAX_LINES: usize = 550;
/// Files that are data, not logic.
const TABLES: &[&str] = &["table.rs"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..")
}

#[test]
fn no_source_file_is_too_long() {
    let mut files = Vec::new();
    for krate in ["ami-proto", "ami-policy", "ami-sim", "amiproxy", "ami-load"] {
        rust_files(&workspace().join("crates").join(krate).join("src"), &mut files);
    }
    assert!(files.len() > 40, "found only {} files", files.len());
    let long: Vec<String> = files
        .iter()
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name != "tests.rs" && !TABLES.contains(&name)
        })
        .filter_map(|p| {
            let text = std::fs::read_to_string(p).ok()?;
            // Unit tests at the end of a file do not count.
            let code = text.split("\n#[cfg(test)]").next().unwrap_or("");
            let n = code.lines().count();
            (n > MAX_LINES).then(|| format!("{} ({n} lines)", p.display()))
        })
        .collect();
    assert!(long.is_empty(), "files over {MAX_LINES} lines: {long:#?}");
}

#[test]
fn the_proxys_modules_import_in_one_direction() {
    let src = workspace().join("crates/amiproxy/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in &files {
        let rel = p.strip_prefix(&src).expect("under src");
        let first = rel
            .components()
            .next()
            .expect("a path")
            .as_os_str()
            .to_string_lossy()
            .into_owned();
        let top = first.trim_end_matches(".rs").to_owned();
        if top == "main" || top == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(p).expect("readable");
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group.split('}').next().unwrap_or("").split(',').collect(),
                None => vec![rest],
            };
            for n in names {
                let m: String = n
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !m.is_empty() && m != top {
                    edges.entry(top.clone()).or_default().insert(m);
                }
            }
        }
    }
    assert!(edges.len() > 8, "found only {} modules", edges.len());
    // Depth-first search for a circle.
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_owned(), 1);
        path.push(n.to_owned());
        for m in edges.get(n).into_iter().flatten() {
            match state.get(m.as_str()) {
                Some(1) => {
                    let start = path.iter().position(|p| p == m).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(m, edges, state, path) {
                        return Some(c);
                    }
                }
            }
        }
        path.pop();
        state.insert(n.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in edges.keys() {
        if !state.contains_key(n.as_str()) {
            let cycle = visit(n, &edges, &mut state, &mut Vec::new());
            assert!(
                cycle.is_none(),
                "modules import each other: {}",
                cycle.unwrap_or_default().join(" -> ")
            );
        }
    }
}

#[test]
fn the_policy_engine_needs_no_runtime() {
    let text = |p: &str| std::fs::read_to_string(workspace().join(p)).expect("readable");
    let policy = text("crates/ami-policy/Cargo.toml");
    assert!(!policy.contains("tokio"), "ami-policy depends on tokio");
    // ami-proto's tokio-util codec is a feature the policy engine does not turn on.
    let root = text("Cargo.toml");
    assert!(
        root.lines()
            .any(|l| l.starts_with("ami-proto =") && l.contains("default-features = false")),
        "the workspace's ami-proto turns on its default (tokio) features for every member"
    );
    let proto = text("crates/ami-proto/Cargo.toml");
    assert!(proto.contains("tokio-util = { workspace = true, optional = true }"));
}
