//! The audit: every action of Asterisk 22.10.1's reference (and of modules it lacks), its
//! classes exactly as declared, and what Asterisk does with each header it reads.
//! `tests/reference.rs` compares this table with the reference in `fixtures/asterisk22/`,
//! and docs/ACTIONS.md is generated from it.

use super::spec::{ActionSpec, Arg::*, Rest, Source};

pub static ACTIONS: &[ActionSpec] = &[
    ActionSpec {
        name: "Originate",
        privilege: "originate",
        args: &[
            ("Channel", DialString),
            ("Exten", Data),
            ("Context", Context),
            ("Priority", Data),
            ("Application", Application),
            ("Data", AppData),
            ("Timeout", Data),
            ("CallerID", Data),
            ("Variable", Assignments),
            ("Account", Data),
            ("EarlyMedia", Data),
            ("Async", Data),
            ("Codecs", Data),
            ("ChannelId", Channel),
            ("OtherChannelId", Channel),
            ("PreDialGoSub", Gosub),
        ],
        rest: Rest::Ignored,
        source: Source::Reference,
        note: "synchronous Originate is sent async and answered from its OriginateResponse",
    },
    ActionSpec {
        name: "Getvar",
        privilege: "call,reporting",
        args: &[("Channel", Channel), ("Variable", Variable)],
        rest: Rest::Ignored,
        source: Source::Reference,
        note: "without Channel it reads a global variable",
    },
    ActionSpec {
        name: "Setvar",
        privilege: "call",
        args: &[("Channel", Channel), ("Variable", Variable), ("Value", Data)],
        rest: Rest::Ignored,
        source: Source::Reference,
        note: "without Channel it writes a global variable",
    },
    ActionSpec {
        name: "UserEvent",
        privilege: "user",
        args: &[("UserEvent", Data)],
        rest: Rest::EventBody,
        source: Source::Reference,
        note: "every other header is copied into the event every client receives",
    },
    ActionSpec {
        name: "MixMonitor",
        privilege: "system",
        args: &[("Channel", Channel), ("File", Path), ("Options", Path), ("Command", Shell)],
        rest: Rest::Ignored,
        source: Source::Reference,
        note: "",
    },
];
