//! Which applications and functions the captured Asterisk 22 registers, and which of its
//! functions the escalation guard (`live_dangerously`) covers. Evaluation asks here before
//! it simulates anything: a name Asterisk does not know must fail as it would there.

use std::sync::OnceLock;

/// `core show applications`: `  Name: synopsis` lines.
fn application_names(text: &'static str) -> Vec<&'static str> {
    text.lines()
        .filter_map(|l| l.trim_start().split_once(": ").map(|(n, _)| n))
        .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .collect()
}

/// `core show functions`: `NAME   NAME(args)   synopsis` lines.
fn function_names(text: &'static str) -> Vec<&'static str> {
    text.lines()
        .filter(|l| l.split_whitespace().count() > 1)
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(|c: char| c.is_ascii_uppercase()))
        .filter(|n| {
            n.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .collect()
}

/// Applications of the captured Asterisk 22 (fixtures/asterisk22).
pub(super) fn applications() -> &'static [&'static str] {
    static APPS: OnceLock<Vec<&'static str>> = OnceLock::new();
    APPS.get_or_init(|| application_names(include_str!("../../../../fixtures/asterisk22/applications.txt")))
}

/// Functions of the captured Asterisk 22 (fixtures/asterisk22).
pub(super) fn functions() -> &'static [&'static str] {
    static FUNCS: OnceLock<Vec<&'static str>> = OnceLock::new();
    FUNCS.get_or_init(|| function_names(include_str!("../../../../fixtures/asterisk22/functions.txt")))
}

/// The registered name of an application (`pbx_findapp` ignores case), None when Asterisk
/// has no such application.
pub fn find_app(name: &str) -> Option<&'static str> {
    applications().iter().copied().find(|a| a.eq_ignore_ascii_case(name))
}

/// Whether a function is registered (`strcmp`: names are case-sensitive). `CURL` and the
/// `ODBC` family were not built into the captured PBX; a production one may have them.
pub(super) fn function_exists(name: &str) -> bool {
    functions().contains(&name) || name == "CURL" || name == "CURLOPT" || name.starts_with("ODBC")
}

/// Functions registered with `ast_custom_function_register_escalating` for reads.
pub(super) fn read_escalates(name: &str) -> bool {
    matches!(
        name,
        "SHELL"
            | "FILE"
            | "DB"
            | "DB_DELETE"
            | "STAT"
            | "FILE_COUNT_LINE"
            | "FILE_FORMAT"
            | "LOCK"
            | "TRYLOCK"
            | "UNLOCK"
            | "PERIODIC_HOOK"
            | "REALTIME_DESTROY"
    ) || name.starts_with("ODBC")
}

/// … and for writes.
pub(super) fn write_escalates(name: &str) -> bool {
    matches!(name, "FILE" | "DB" | "CURL" | "PERIODIC_HOOK") || name.starts_with("ODBC")
}

/// Functions without a write callback ("Function X cannot be written to").
pub(super) fn read_only(name: &str) -> bool {
    matches!(
        name,
        "SHELL"
            | "EVAL"
            | "IMPORT"
            | "CHANNELS"
            | "LEN"
            | "CUT"
            | "TOUPPER"
            | "TOLOWER"
            | "AST_CONFIG"
            | "STAT"
            | "FILE_COUNT_LINE"
            | "FILE_FORMAT"
            | "DB_DELETE"
            | "DB_EXISTS"
            | "DB_KEYS"
            | "DB_KEYCOUNT"
            | "GLOBAL_DELETE"
            | "GLOBAL_EXISTS"
            | "QUEUE_MEMBER_LIST"
            | "QUEUE_MEMBER_COUNT"
            | "QUEUE_WAITING_COUNT"
            | "QUEUE_EXISTS"
            | "QUEUE_VARIABLES"
            | "QUEUE_GET_CHANNEL"
    )
}
