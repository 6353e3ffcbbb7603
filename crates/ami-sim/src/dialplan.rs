//! The dialplan of fixtures/asterisk-config/extensions.conf, built in: calls follow it so
//! their events and timings match the captured PBX.

/// One priority of an extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub app: &'static str,
    pub data: String,
}

/// (context, extension or pattern, [(app, data)]) in file order.
/// (context, extension, priorities as (application, data)).
type Extension = (&'static str, &'static str, &'static [(&'static str, &'static str)]);

const PLAN: &[Extension] = &[
    (
        "default",
        "100",
        &[("NoOp", "ext 100"), ("Answer", ""), ("Wait", "2"), ("Hangup", "")],
    ),
    (
        "default",
        "200",
        &[
            ("NoOp", "ext 200 -> Queue sales"),
            ("Answer", ""),
            ("Queue", "sales,,,,20"),
            ("Hangup", ""),
        ],
    ),
    (
        "default",
        "201",
        &[
            ("NoOp", "ext 201 -> Queue support"),
            ("Answer", ""),
            ("Queue", "support,,,,20"),
            ("Hangup", ""),
        ],
    ),
    (
        "default",
        "300",
        &[
            ("NoOp", "ext 300 -> Echo"),
            ("Answer", ""),
            ("Echo", ""),
            ("Hangup", ""),
        ],
    ),
    (
        "default",
        "400",
        &[
            ("NoOp", "ext 400 -> UserEvent"),
            ("Answer", ""),
            ("UserEvent", "DialplanPing,Source: ext400,Uniq: ${UNIQUEID}"),
            ("Verbose", "1,ext 400 raised UserEvent"),
            ("Wait", "1"),
            ("Hangup", ""),
        ],
    ),
    (
        "default",
        "600",
        &[
            ("NoOp", "ext 600 -> long call"),
            ("Answer", ""),
            ("Wait", "30"),
            ("Hangup", ""),
        ],
    ),
    (
        "default",
        "700",
        &[
            ("NoOp", "ext 700 -> AstDB"),
            ("Set", "DB(amitest/dialplan)=${EPOCH}"),
            ("Verbose", "1,DB amitest/dialplan = ${DB(amitest/dialplan)}"),
            ("Answer", ""),
            ("Wait", "1"),
            ("Hangup", ""),
        ],
    ),
    ("default", "486", &[("Busy", "3")]),
    ("default", "503", &[("Congestion", "3")]),
    ("default", "i", &[("Hangup", "")]),
    ("default", "t", &[("Hangup", "")]),
    (
        "test",
        "_X.",
        &[
            ("NoOp", "test ${EXTEN}"),
            ("Answer", ""),
            ("Verbose", "1,test context reached for ${EXTEN}"),
            ("Wait", "1"),
            ("Hangup", ""),
        ],
    ),
    (
        "agents",
        "_X.",
        &[
            ("NoOp", "agent ${EXTEN} answering"),
            ("Answer", ""),
            ("Wait", "10"),
            ("Hangup", ""),
        ],
    ),
];

/// Contexts of the simulator's own, not in the captured PBX's extensions.conf (so not in
/// ShowDialPlan, which stays byte-exact): `ringing`, where `Local/<secs>@ringing` rings for
/// `<secs>` seconds before it answers (two digits or more: `03` is three seconds), for
/// testing calls that ring longer than a proxy's action timeout.
const SIM_PLAN: &[Extension] = &[(
    "ringing",
    "_X.",
    &[
        ("Ringing", ""),
        ("Wait", "${EXTEN}"),
        ("Answer", ""),
        ("Wait", "1"),
        ("Hangup", ""),
    ],
)];

#[cfg(test)]
pub fn context_exists(context: &str) -> bool {
    PLAN.iter().any(|(c, _, _)| *c == context)
}

/// Asterisk pattern match for the few forms used here (`_X.`, literal extensions).
fn matches(pattern: &str, exten: &str) -> bool {
    match pattern.strip_prefix('_') {
        None => pattern == exten,
        Some(p) => {
            let pc: Vec<char> = p.chars().collect();
            let ec: Vec<char> = exten.chars().collect();
            let mut i = 0;
            for c in &pc {
                match c {
                    '.' => return i < ec.len(),
                    '!' => return true,
                    'X' => {
                        if !ec.get(i).is_some_and(|d| d.is_ascii_digit()) {
                            return false;
                        }
                    }
                    'Z' => {
                        if !ec.get(i).is_some_and(|d| ('1'..='9').contains(d)) {
                            return false;
                        }
                    }
                    'N' => {
                        if !ec.get(i).is_some_and(|d| ('2'..='9').contains(d)) {
                            return false;
                        }
                    }
                    lit => {
                        if ec.get(i) != Some(lit) {
                            return false;
                        }
                    }
                }
                i += 1;
            }
            i == ec.len()
        }
    }
}

/// The steps of `exten@context` as written (the call substitutes each priority's data
/// when it runs, `${EXTEN}` included); `None` if no such extension.
pub fn lookup(context: &str, exten: &str) -> Option<Vec<Step>> {
    PLAN.iter()
        .chain(SIM_PLAN)
        .find(|(c, p, _)| *c == context && matches(p, exten))
        .map(|(_, _, steps)| {
            steps
                .iter()
                .map(|(app, data)| Step {
                    app,
                    data: (*data).to_owned(),
                })
                .collect()
        })
}

/// Every priority of a context (or all contexts), for ShowDialPlan: extensions in
/// Asterisk's sorted order within each context.
pub fn listing(context: Option<&str>) -> Vec<(&'static str, &'static str, usize, &'static str, &'static str)> {
    let mut out = Vec::new();
    let mut plan: Vec<_> = PLAN.iter().collect();
    let ctx_order = |c: &str| PLAN.iter().position(|(x, _, _)| *x == c).unwrap_or(0);
    plan.sort_by(|a, b| ctx_order(a.0).cmp(&ctx_order(b.0)).then(a.1.cmp(b.1)));
    for (c, e, steps) in plan {
        if context.is_some_and(|want| want != *c) {
            continue;
        }
        for (i, (app, data)) in steps.iter().enumerate() {
            out.push((*c, *e, i + 1, *app, *data));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(matches("_X.", "123"));
        assert!(!matches("_X.", "1"));
        assert!(!matches("_X.", "abc"));
        assert!(!matches("_X.", ""));
        assert!(lookup("default", "100").is_some());
        assert!(lookup("default", "999").is_none());
        assert_eq!(lookup("test", "456").unwrap()[0].data, "test ${EXTEN}");
        assert!(!context_exists("nonexistent"));
    }
}
