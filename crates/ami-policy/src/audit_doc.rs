//! docs/ACTIONS.md: the audit table ([`crate::table::ACTIONS`]) rendered for people.
//!
//! `tests/reference.rs` compares the file with [`markdown`] and rewrites it when run with
//! `UPDATE_DOCS=1`, so the document never drifts from the table the policy uses.

use crate::spec::{ActionSpec, Arg, Rest, Source};
use crate::table::ACTIONS;
use std::fmt::Write;

/// The header kinds in the order the legend and the action rows show them (`Data` last in the
/// rows). `Object` stands for every kind of object.
const KINDS: &[Arg] = &[
    Arg::Data,
    Arg::Channel,
    Arg::ChannelOrRegex,
    Arg::ChannelPrefix,
    Arg::Interface,
    Arg::DialString,
    Arg::Queue,
    Arg::Context,
    Arg::DbFamily,
    Arg::Variable,
    Arg::VariableList,
    Arg::Assignments,
    Arg::Application,
    Arg::AppData,
    Arg::Gosub,
    Arg::Expression,
    Arg::Shell,
    Arg::Path,
    Arg::ConfigFile,
    Arg::CliCommand,
    Arg::AgiCommand,
    Arg::EventHeader,
    Arg::Object("kind"),
];

/// What a header of this kind is, and the rule the proxy applies to it. "Restricted": a user
/// without the `system` write class, or with a scope; "scoped": a user with a `channels` or
/// `queues` scope.
fn legend(arg: Arg) -> (&'static str, &'static str) {
    match arg {
        Arg::Data => (
            "a literal: number, flag, text passed on, id of nothing a tenant owns",
            "passed as is; restricted users: valid UTF-8, no control characters",
        ),
        Arg::Channel => (
            "an existing channel, by name or uniqueid",
            "scoped users: must match the user's `channels` (a uniqueid counts as the channel it \
             names); empty is refused where the action then acts on every channel",
        ),
        Arg::ChannelOrRegex => (
            "a channel name, or `/regex/` over every channel's name",
            "as Channel; a `/regex/` is refused to scoped users",
        ),
        Arg::ChannelPrefix => (
            "a prefix of a channel's name, or of its uniqueid (Asterisk takes the first channel that \
             matches)",
            "scoped users: the exact name of a live channel the proxy knows, within the scope",
        ),
        Arg::Interface => (
            "a device, queue member interface or state interface (`PJSIP/100`)",
            "as Channel",
        ),
        Arg::DialString => (
            "a channel to create (`PJSIP/100`, `Local/100@ctx/n`), dialled as given",
            "as Channel; restricted users: no `${`/`$[` and no `,` (Dial arguments); a Local \
             channel's context must be in the user's `contexts` when it has that list",
        ),
        Arg::Queue => (
            "a queue name",
            "scoped users: must match `queues`; refused when empty where the action then acts on \
             every queue",
        ),
        Arg::Context => ("a dialplan context", "scoped users: must be in the user's `contexts`"),
        Arg::DbFamily => (
            "an AstDB family",
            "scoped users: must be in the user's `db_families`; refused when empty",
        ),
        Arg::Variable => (
            "a variable name, or a dialplan function call when it ends in `)`",
            "restricted users: a plain variable name, or a call to a function in the user's \
             `functions` allow-list (none by default) with no `${`/`$[` in its arguments; functions \
             that reach files, the shell, the network, the configuration, the environment or AstDB, \
             or that take a variable name (`CUT`, `PUSH`, `IMPORT`, ...), need `system` whatever \
             the list says; written names: never one Asterisk reads or acts on (`MONITOR_EXEC`, \
             `CONNECTED_LINE_SEND_SUB`, `BRIDGE_PLAY_SOUND`, `TRANSFER_CONTEXT`, ...: every name \
             Asterisk 22's modules read), and only the user's `variables` when it has that list; \
             scoped users, and users with `contexts`: no functions that reach other channels, \
             queues, contexts or globals (`CHANNEL` writes included); scoped users: reads only of \
             the channel's built-ins (case-sensitive, as Asterisk) or the user's `variables` (a \
             plain name falls back to the globals)",
        ),
        Arg::VariableList => ("a comma list of Variable", "as Variable, for each item"),
        Arg::Assignments => (
            "`name=value` pairs, split as application arguments are",
            "split as Asterisk splits them; each name as Variable; restricted users: no `${`/`$[` \
             in values",
        ),
        Arg::Application => (
            "an application to run",
            "restricted users: in the user's `applications` allow-list (a safe default); \
             applications that run commands, write files or reach other channels need `system` \
             (or for the latter, no scope and no `contexts` list)",
        ),
        Arg::AppData => (
            "the arguments of that application, substituted before it runs",
            "restricted users: no `${`/`$[`; the arguments are parsed per application and checked \
             like the headers they correspond to (variables set, `Set`/`MSet` assignments, a \
             channel argument, sound files: names, not paths or URLs)",
        ),
        Arg::Gosub => (
            "a dialplan subroutine `[[context,]exten,]priority[(args)]` run on a channel",
            "as AppData",
        ),
        Arg::Expression => (
            "a string Asterisk substitutes (`${...}`, `$[...]`) before use",
            "as AppData",
        ),
        Arg::Shell => ("a shell command run on the PBX", "refused to restricted users"),
        Arg::Path => (
            "a file or directory path on the PBX (recordings, options embedding file names)",
            "refused to restricted users",
        ),
        Arg::ConfigFile => (
            "a file name in Asterisk's configuration folder",
            "relative to Asterisk's configuration folder, no `..`; restricted users: no patterns, \
             never `manager.conf` or `manager.d/` under any spelling, only the user's \
             `config_files` when it has that list; scoped users: refused; writing a file \
             (UpdateConfig, CreateConfig) needs `system`",
        ),
        Arg::CliCommand => (
            "a CLI command line",
            "restricted users: the user's `commands` allow-list (default: status commands that \
             hold no secret); refused to scoped users without a `commands` list",
        ),
        Arg::AgiCommand => (
            "an AGI command (runs any application, reads and writes any variable)",
            "refused to restricted users",
        ),
        Arg::EventHeader => (
            "a header of the event sent to every AMI client",
            "restricted users: none named Event, Response, Privilege, ActionID, the proxy's server \
             header, or other framing headers, and no header name with blanks or control \
             characters; scoped users: every header that names a channel, uniqueid or queue must \
             be within the scope",
        ),
        Arg::Object(_) => (
            "any other named PBX object a tenant could own (bridge, conference, mailbox, endpoint, \
             parking lot, module, ...): its kind in parentheses",
            "refused to scoped users when present",
        ),
    }
}

/// The kind's name as the document shows it.
fn label(arg: Arg) -> String {
    match arg {
        Arg::Data => "data".to_string(),
        Arg::Object(kind) => format!("Object({kind})"),
        other => format!("{other:?}"),
    }
}

/// Where a kind goes in an action's row: the legend order, with data last.
fn rank(arg: Arg) -> usize {
    match arg {
        Arg::Data => KINDS.len(),
        Arg::Object(_) => KINDS.len() - 1,
        other => KINDS.iter().position(|k| *k == other).unwrap_or(KINDS.len()),
    }
}

/// Makes text safe inside a Markdown table cell.
fn cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '|' | '*' | '<' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Header names of one kind, with indexed runs folded: `UnitAmount(0)` … `UnitAmount(31)`
/// become `UnitAmount(0…31)`.
fn fold_names(names: &[&str]) -> Vec<String> {
    // (name or prefix, indexes seen)
    let mut items: Vec<(&str, Vec<u32>)> = Vec::new();
    for name in names {
        let indexed = name
            .strip_suffix(')')
            .and_then(|n| n.rsplit_once('('))
            .and_then(|(prefix, i)| i.parse::<u32>().ok().map(|i| (prefix, i)));
        match indexed {
            Some((prefix, i)) => match items.iter_mut().find(|(p, idx)| *p == prefix && !idx.is_empty()) {
                Some((_, idx)) => idx.push(i),
                None => items.push((prefix, vec![i])),
            },
            None => items.push((name, Vec::new())),
        }
    }
    let mut out = Vec::new();
    for (name, idx) in items {
        let (min, max) = match (idx.iter().min(), idx.iter().max()) {
            (Some(&a), Some(&b)) => (a, b),
            _ => {
                out.push(name.to_string());
                continue;
            }
        };
        if idx.len() > 1 && (max - min) as usize + 1 == idx.len() {
            out.push(format!("{name}({min}…{max})"));
        } else {
            out.extend(idx.iter().map(|i| format!("{name}({i})")));
        }
    }
    out
}

/// An action's headers grouped by kind: `Channel: Channel · Context: Context · data: Exten`.
fn headers(spec: &ActionSpec) -> String {
    let mut groups: Vec<(Arg, Vec<&str>)> = Vec::new();
    for (name, arg) in spec.args {
        match groups.iter_mut().find(|(a, _)| a == arg) {
            Some((_, names)) => names.push(name),
            None => groups.push((*arg, vec![name])),
        }
    }
    // Stable: objects keep the order they first appear in.
    groups.sort_by_key(|(arg, _)| rank(*arg));
    let mut parts: Vec<String> = groups
        .iter()
        .map(|(arg, names)| format!("{}: {}", label(*arg), fold_names(names).join(", ")))
        .collect();
    if spec.rest == Rest::EventBody {
        parts.push(format!("{}: every other header", label(Arg::EventHeader)));
    }
    if parts.is_empty() {
        return "none".to_string();
    }
    cell(&parts.join(" · "))
}

fn classes(spec: &ActionSpec) -> String {
    if spec.privilege.is_empty() {
        "`<none>`".to_string()
    } else {
        spec.privilege.to_string()
    }
}

fn source(spec: &ActionSpec) -> String {
    match spec.source {
        Source::Reference => "reference".to_string(),
        Source::AsteriskSource(path) => format!("source: `{path}`"),
        Source::Legacy => "legacy".to_string(),
    }
}

/// docs/ACTIONS.md.
pub fn markdown() -> String {
    let count = |f: fn(&Source) -> bool| ACTIONS.iter().filter(|a| f(&a.source)).count();
    let reference = count(|s| matches!(s, Source::Reference));
    let from_source = count(|s| matches!(s, Source::AsteriskSource(_)));
    let legacy = count(|s| matches!(s, Source::Legacy));

    let mut md = String::new();
    md.push_str("# AMI actions: what Asterisk does with each header\n\n");
    md.push_str(
        "The proxy logs in to Asterisk with every class, so Asterisk's own checks never apply behind \
         it: the proxy enforces Asterisk's trust model itself. This table is the audit its policy is \
         built on: for every AMI action, the classes Asterisk declares for it (a user needs any one \
         of them among its write classes; `<none>`: any logged-in user) and, for every header \
         Asterisk reads, what Asterisk does with it. Headers not listed are never read.\n\n",
    );
    md.push_str(
        "Generated from `crates/ami-policy/src/table.rs` by \
         `ami_policy::audit_doc::markdown()`; do not edit by hand. Regenerate with \
         `UPDATE_DOCS=1 cargo test -p ami-policy --test reference`. That test also checks the table \
         against Asterisk 22.10.1's own reference in `fixtures/asterisk22/`.\n\n",
    );
    let _ = write!(
        md,
        "{} actions: {reference} from Asterisk 22.10.1's reference (`reference`), {from_source} of \
         modules that build lacks from Asterisk 22.10.1's source (`source:` the file documenting \
         them), {legacy} of older generations (`legacy`: the classes of the last release that had \
         them).\n\n",
        ACTIONS.len()
    );
    md.push_str("## Header kinds\n\n");
    md.push_str(
        "\"Restricted\": a user without the `system` write class, or with a tenant scope. \"Scoped\": a user with a \
         `channels` or `queues` scope. `Name-*` stands for numbered headers (`Name-000000`, \
         `Name-000001`, ...).\n\n",
    );
    md.push_str("| kind | what it is | the proxy's rule |\n|---|---|---|\n");
    for kind in KINDS {
        let (what, rule) = legend(*kind);
        let name = match kind {
            Arg::Object(_) => "Object(kind)".to_string(),
            other => label(*other),
        };
        let _ = writeln!(md, "| {name} | {what} | {rule} |");
    }
    md.push_str("\n## Actions\n\n");
    md.push_str("| action | classes | headers | source | note |\n|---|---|---|---|---|\n");
    for spec in ACTIONS {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            spec.name,
            classes(spec),
            headers(spec),
            source(spec),
            cell(spec.note)
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_group_headers_by_kind_with_data_last() {
        let md = markdown();
        let row = md
            .lines()
            .find(|l| l.starts_with("| Redirect |"))
            .expect("Redirect row");
        assert!(
            row.contains(
                "Channel: Channel, ExtraChannel · Context: Context, ExtraContext · data: Exten, ExtraExten, \
                 Priority, ExtraPriority"
            ),
            "{row}"
        );
        let row = md.lines().find(|l| l.starts_with("| Ping |")).expect("Ping row");
        assert!(row.contains("| `<none>` | none |"), "{row}");
        let row = md
            .lines()
            .find(|l| l.starts_with("| UserEvent |"))
            .expect("UserEvent row");
        assert!(row.contains("EventHeader: every other header"), "{row}");
        let row = md
            .lines()
            .find(|l| l.starts_with("| AOCMessage |"))
            .expect("AOCMessage row");
        assert!(row.contains("UnitAmount(0…31), UnitType(0…31)"), "{row}");
    }

    #[test]
    fn one_row_per_action_and_every_kind_in_the_legend() {
        let md = markdown();
        for spec in ACTIONS {
            let start = format!("| {} |", spec.name);
            assert_eq!(md.lines().filter(|l| l.starts_with(&start)).count(), 1, "{}", spec.name);
            for (_, arg) in spec.args {
                assert!(KINDS.iter().any(|k| rank(*k) == rank(*arg)), "{arg:?}");
            }
        }
        for kind in KINDS {
            let (what, rule) = legend(*kind);
            assert!(md.contains(what) && md.contains(rule));
        }
    }

    #[test]
    fn folding_and_escaping() {
        assert_eq!(
            fold_names(&["A(0)", "B(0)", "A(1)", "A(2)", "C"]),
            ["A(0…2)", "B(0)", "C"]
        );
        assert_eq!(fold_names(&["A(0)", "A(2)"]), ["A(0)", "A(2)"]);
        assert_eq!(cell("Action-* | <x>"), "Action-\\* \\| \\<x>");
    }
}
