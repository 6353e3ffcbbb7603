//! The audit table (`ami_policy::table::ACTIONS`) against Asterisk 22.10.1's own
//! reference in `fixtures/asterisk22/`: every action present with exactly its classes, every
//! request header classified, and docs/ACTIONS.md generated from the table.
//!
//! `UPDATE_DOCS=1 cargo test -p ami-policy --test reference` rewrites docs/ACTIONS.md.

use ami_policy::classes::Classes;
use ami_policy::spec::{action, Source};
use ami_policy::table::ACTIONS;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One action as `manager show command <Action>` documents it.
struct RefAction {
    name: String,
    /// The `[Privilege]` line without `all`; empty for `<none>`.
    privilege: String,
    /// The request headers of its `[Syntax]`, without Action and ActionID.
    headers: Vec<String>,
}

/// A section title: `[Syntax]`, `[List Responses]` (not `[ActionID:] <value>`).
fn is_section(line: &str) -> bool {
    line.len() > 2
        && line.starts_with('[')
        && line.ends_with(']')
        && line[1..line.len() - 1]
            .chars()
            .all(|c| c.is_ascii_alphabetic() || c == ' ')
}

/// The file holds the action's own sections first, then, under `[List Responses]` and
/// `[Final Response]`, the documentation of the events it answers with, each with a `[Syntax]`
/// of its own. The request is the first `[Syntax]`, before `[Privilege]`.
fn parse(name: &str, text: &str) -> RefAction {
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    let title = format!("Info about Manager Command '{name}'");
    assert!(lines.iter().any(|l| l.contains(&title)), "{name}: no `{title}` line");
    let own = match lines.iter().position(|l| *l == "[List Responses]") {
        Some(end) => &lines[..end],
        None => &lines[..],
    };
    let section = |title: &str| -> Vec<&str> {
        let start = own
            .iter()
            .position(|l| *l == title)
            .unwrap_or_else(|| panic!("{name}: no {title}"));
        own[start + 1..]
            .iter()
            .take_while(|l| !is_section(l))
            .copied()
            .collect()
    };
    let privilege = section("[Privilege]")
        .into_iter()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("{name}: empty [Privilege]"))
        .trim();
    let privilege = if privilege == "<none>" {
        String::new()
    } else {
        privilege
            .split(',')
            .filter(|c| *c != "all")
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut headers = Vec::new();
    for line in section("[Syntax]") {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        // `Channel: <value>` (required) or `[Exten:] <value>` (optional).
        let header = line
            .strip_prefix('[')
            .and_then(|l| l.split_once(":]"))
            .or_else(|| line.split_once(':'))
            .map(|(h, _)| h.trim())
            .unwrap_or_else(|| panic!("{name}: unreadable syntax line `{line}`"));
        if !header.eq_ignore_ascii_case("Action") && !header.eq_ignore_ascii_case("ActionID") {
            headers.push(header.to_string());
        }
    }
    RefAction {
        name: name.to_string(),
        privilege,
        headers,
    }
}

fn reference() -> BTreeMap<String, RefAction> {
    let dir = root().join("fixtures/asterisk22/actions");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".txt"))
        else {
            continue;
        };
        let text = std::fs::read_to_string(&path).expect("readable reference file");
        out.insert(name.to_ascii_lowercase(), parse(name, &text));
    }
    out
}

#[test]
fn the_reference_is_complete() {
    // `manager show commands` lists the same actions the per-action files document.
    let list = std::fs::read_to_string(root().join("fixtures/asterisk22/actions.txt")).expect("actions.txt");
    let mut listed: Vec<String> = list
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_ascii_lowercase)
        .collect();
    listed.sort();
    let files: Vec<String> = reference().into_keys().collect();
    assert_eq!(listed, files);
    assert!(files.len() > 100, "only {} actions in the reference", files.len());
}

#[test]
fn every_reference_action_has_its_classes_and_headers() {
    let mut problems = Vec::new();
    for r in reference().values() {
        let Some(spec) = action(&r.name) else {
            problems.push(format!("{}: no entry", r.name));
            continue;
        };
        if spec.name != r.name {
            problems.push(format!("{}: spelt {} in the table", r.name, spec.name));
        }
        if spec.privilege != r.privilege {
            problems.push(format!(
                "{}: privilege {:?}, the reference says {:?}",
                r.name, spec.privilege, r.privilege
            ));
        }
        if spec.source != Source::Reference {
            problems.push(format!("{}: source {:?}, it is in the reference", r.name, spec.source));
        }
        for header in &r.headers {
            if spec.arg(header).is_none() {
                problems.push(format!("{}: header {header} not classified", r.name));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn reference_entries_exist_in_the_reference() {
    let reference = reference();
    let stray: Vec<&str> = ACTIONS
        .iter()
        .filter(|a| a.source == Source::Reference && !reference.contains_key(&a.name.to_ascii_lowercase()))
        .map(|a| a.name)
        .collect();
    assert!(
        stray.is_empty(),
        "Source::Reference entries not in the reference: {stray:?}"
    );
    // And the others are not: an action of the reference is documented from it.
    let misfiled: Vec<&str> = ACTIONS
        .iter()
        .filter(|a| a.source != Source::Reference && reference.contains_key(&a.name.to_ascii_lowercase()))
        .map(|a| a.name)
        .collect();
    assert!(
        misfiled.is_empty(),
        "in the reference but not Source::Reference: {misfiled:?}"
    );
}

#[test]
fn names_are_unique_and_ordered_within_each_source() {
    let mut seen = std::collections::HashSet::new();
    let dups: Vec<&str> = ACTIONS
        .iter()
        .filter(|a| !seen.insert(a.name.to_ascii_lowercase()))
        .map(|a| a.name)
        .collect();
    assert!(dups.is_empty(), "duplicate entries: {dups:?}");

    let group = |s: &Source| match s {
        Source::Reference => 0,
        Source::AsteriskSource(_) => 1,
        Source::Legacy => 2,
    };
    for pair in ACTIONS.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let key = |x: &ami_policy::spec::ActionSpec| (group(&x.source), x.name.to_ascii_lowercase());
        assert!(key(a) < key(b), "out of order: {} before {}", a.name, b.name);
    }
}

#[test]
fn every_entry_is_well_formed() {
    for a in ACTIONS {
        Classes::parse(a.privilege).unwrap_or_else(|e| panic!("{}: privilege {:?}: {e}", a.name, a.privilege));
        assert!(
            !a.privilege.split(',').any(|c| c.trim().eq_ignore_ascii_case("all")),
            "{}: `all` is implied, not listed",
            a.name
        );
        let mut seen = std::collections::HashSet::new();
        for (header, _) in a.args {
            assert!(seen.insert(header.to_ascii_lowercase()), "{}: {header} twice", a.name);
            assert!(
                !header.eq_ignore_ascii_case("ActionID") && !header.eq_ignore_ascii_case("Action"),
                "{}: {header} is the proxy's business",
                a.name
            );
        }
        if let Source::AsteriskSource(path) = a.source {
            assert!(
                !path.starts_with('/') && (path.ends_with(".c") || path.ends_with(".xml")),
                "{}: {path} is not a file of Asterisk's tree",
                a.name
            );
        }
        assert!(!a.note.contains('\n'), "{}: the note is one line", a.name);
    }
}

#[test]
fn actions_md_is_generated_from_the_table() {
    let path = root().join("docs/ACTIONS.md");
    let generated = ami_policy::audit_doc::markdown();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::create_dir_all(path.parent().expect("docs dir")).expect("docs dir");
        std::fs::write(&path, &generated).expect("write docs/ACTIONS.md");
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == generated,
        "docs/ACTIONS.md is stale: run UPDATE_DOCS=1 cargo test -p ami-policy --test reference"
    );
}

#[test]
fn the_parser_reads_the_request_not_the_responses() {
    let reference = reference();
    let status = &reference["status"];
    assert_eq!(status.headers, ["Channel", "Variables", "AllVariables"]);
    assert_eq!(status.privilege, "system,call,reporting");
    assert_eq!(reference["queuestatus"].privilege, "");
    assert_eq!(reference["originate"].headers.len(), 16);
    assert!(reference["updateconfig"].headers.iter().any(|h| h == "Action-000000"));
    assert!(reference["aocmessage"].headers.iter().any(|h| h == "UnitAmount(0)"));
}
