//! Property: an action the policy allows, mutated by any of the ways an attacker turns it
//! into a forbidden one (a system function in a variable name, expression syntax where
//! Asterisk substitutes, a command-running application, another tenant's object), in any
//! header case, position or repetition, is never allowed.

use ami_policy::classes::Classes;
use ami_policy::dialplan::{application, function_reach, Reach};
use ami_policy::glob::Glob;
use ami_policy::{Channels, Policy, Scope};
use ami_proto::{Action, Message, MessageBuilder};

/// The action a test message carries.
fn act(m: &Message) -> Action {
    Action::parse(m.clone()).expect("a test message has an Action header")
}
use proptest::prelude::*;
use std::sync::LazyLock;

/// No live channels: the mutations are judged on their text alone.
struct NoChannels;

impl Channels for NoChannels {
    fn channel_of(&self, _: &str) -> Option<String> {
        None
    }

    fn is_live(&self, _: &str) -> bool {
        false
    }
}

fn fixture(name: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/asterisk22");
    std::fs::read_to_string(root.join(name)).expect("fixture")
}

/// Every function of Asterisk 22's reference that needs `system`.
static SYSTEM_FUNCTIONS: LazyLock<Vec<String>> = LazyLock::new(|| {
    fixture("functions.txt")
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| {
            n.bytes()
                .all(|b| b.is_ascii_uppercase() || b == b'_' || b.is_ascii_digit())
        })
        .filter(|n| function_reach(n) == Reach::System)
        .map(str::to_owned)
        .collect()
});

/// Every application of Asterisk 22's reference that needs `system`.
static SYSTEM_APPS: LazyLock<Vec<String>> = LazyLock::new(|| {
    fixture("applications.txt")
        .lines()
        .filter_map(|l| l.trim().split(':').next())
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric()))
        .filter(|n| application(n).0 == Reach::System)
        .map(str::to_owned)
        .collect()
});

/// Actions a user without `system` may send, as headers.
fn allowed() -> Vec<Vec<(&'static str, &'static str)>> {
    vec![
        vec![
            ("Action", "Originate"),
            ("Channel", "Local/11@test"),
            ("Application", "Wait"),
            ("Data", "1"),
            ("Variable", "A=1"),
        ],
        vec![
            ("Action", "Originate"),
            ("Channel", "Local/11@test"),
            ("Context", "test"),
            ("Exten", "11"),
            ("Priority", "1"),
            ("Variable", "B=2"),
        ],
        vec![
            ("Action", "Getvar"),
            ("Channel", "Local/11@test-00000001;1"),
            ("Variable", "X"),
        ],
        vec![
            ("Action", "Setvar"),
            ("Channel", "Local/11@test-00000001;1"),
            ("Variable", "X"),
            ("Value", "1"),
        ],
        vec![
            ("Action", "UserEvent"),
            ("UserEvent", "ping"),
            ("Channel", "Local/11@test-00000001;1"),
        ],
    ]
}

/// One way to turn an action into a forbidden one: (header, value).
#[derive(Debug, Clone)]
enum Mutation {
    Function {
        header: &'static str,
        prefix: &'static str,
        func: String,
        quoted: bool,
    },
    Expression {
        header: &'static str,
        func: String,
        square: bool,
    },
    App(String),
    Tenant {
        header: &'static str,
        value: &'static str,
    },
}

fn case(s: &str, mask: u64) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask >> (i % 64) & 1 == 1 {
                c.to_ascii_lowercase()
            } else {
                c.to_ascii_uppercase()
            }
        })
        .collect()
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let func = (0..SYSTEM_FUNCTIONS.len()).prop_map(|i| SYSTEM_FUNCTIONS[i].clone());
    prop_oneof![
        (
            prop::sample::select(vec!["Variable", "Variable", "Variable"]),
            prop::sample::select(vec!["", "A=1,", " ", "A=\"x,y\",", "__"]),
            func.clone(),
            any::<bool>()
        )
            .prop_map(|(header, prefix, func, quoted)| Mutation::Function {
                header,
                prefix,
                func,
                quoted
            }),
        (
            prop::sample::select(vec!["Data", "Variable", "PreDialGoSub"]),
            func,
            any::<bool>()
        )
            .prop_map(|(header, func, square)| Mutation::Expression { header, func, square }),
        (0..SYSTEM_APPS.len()).prop_map(|i| Mutation::App(SYSTEM_APPS[i].clone())),
        prop::sample::select(vec![
            ("Channel", "Local/600@default-00000001;1"),
            ("Channel", "Local/11@default"),
            ("Context", "default"),
            ("Queue", "sales"),
            ("DestChannel", "Local/600@default-00000001;1"),
            ("Variable", "IMPORT(Local/600@default-00000001;1,X)=1"),
            ("Variable", "SHARED(X,Local/600@default-00000001;1)=1"),
            ("PreDialGoSub", "default,s,1"),
        ])
        .prop_map(|(header, value)| Mutation::Tenant { header, value }),
    ]
}

/// Applies `m` to `base`: the forbidden header replaces the original, or joins it before or
/// after, with its name in any case.
fn apply(base: &[(&'static str, &'static str)], m: &Mutation, place: u8, mask: u64) -> Message {
    let (header, value) = match m {
        Mutation::Function {
            header,
            prefix,
            func,
            quoted,
        } => {
            let name = case(func, mask);
            let call = if *quoted {
                format!("\"{name}(x)\"")
            } else {
                format!("{name}(x)")
            };
            let action = base[0].1;
            // Getvar/Setvar name the variable alone; assignments carry a value.
            if action == "Getvar" || action == "Setvar" {
                (*header, call)
            } else {
                (*header, format!("{prefix}{call}=1"))
            }
        }
        Mutation::Expression { header, func, square } => {
            let e = if *square {
                format!("$[${{{func}(x)}}]")
            } else {
                format!("${{{func}(x)}}")
            };
            let v = if *header == "Variable" { format!("A={e}") } else { e };
            (*header, v)
        }
        Mutation::App(app) => ("Application", format!("  {}", case(app, mask))),
        Mutation::Tenant { header, value } => (*header, (*value).to_owned()),
    };
    let key = if mask & 1 == 1 {
        header.to_ascii_uppercase()
    } else {
        header.to_owned()
    };
    let mut b = MessageBuilder::new();
    let mut placed = false;
    for (k, v) in base {
        if k.eq_ignore_ascii_case(header) && !placed {
            placed = true;
            match place % 3 {
                0 => b = b.header(&key, &value),
                1 => b = b.header(&key, &value).header(k, v),
                _ => b = b.header(k, v).header(&key, &value),
            }
        } else {
            b = b.header(k, v);
        }
    }
    if !placed {
        b = b.header(&key, &value);
    }
    b.build()
}

fn tenant() -> Policy {
    Policy {
        functions: vec!["CALLERID".into()],
        variables: Some(vec![Glob::new("X"), Glob::new("A"), Glob::new("B")].into()),
        scope: Scope {
            channels: vec![Glob::channel("Local/*@test"), Glob::channel("Local/*@test-*")].into(),
            queues: vec![Glob::new("support")].into(),
            contexts: vec![Glob::new("test")].into(),
            db_families: vec![].into(),
            servers: vec![],
        },
        ..Default::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_actions_never_pass(base in 0..5usize, m in mutation(), place in 0..3u8, mask in any::<u64>()) {
        let owners = NoChannels;
        let base = &allowed()[base];
        let write = Classes::parse("call,originate,reporting,agent,user").unwrap();
        let lc = base[0].1.to_ascii_lowercase();
        // The unmutated action passes, for both users.
        let plain = MessageBuilder::new();
        let plain = base.iter().fold(plain, |b, (k, v)| b.header(k, v)).build();
        prop_assert_eq!(Policy::default().check_action(write, &act(&plain), &owners, "Server"), Ok(()));
        prop_assert_eq!(tenant().check_action(write, &act(&plain), &owners, "Server"), Ok(()));
        let msg = apply(base, &m, place, mask);
        let tenant_only = matches!(m, Mutation::Tenant { .. });
        // A UserEvent's headers are text Asterisk copies into an event, never evaluated: only
        // what they name can be forbidden.
        let names_object = matches!(&m, Mutation::Tenant { header, .. } if ["Channel", "DestChannel", "Queue"].contains(header));
        prop_assume!(lc != "userevent" || names_object);
        if !tenant_only {
            prop_assert!(
                Policy::default().check_action(write, &act(&msg), &owners, "Server").is_err(),
                "restricted user passed {:?}", msg
            );
        }
        prop_assert!(
            tenant().check_action(write, &act(&msg), &owners, "Server").is_err(),
            "tenant passed {:?}", msg
        );
    }
}
