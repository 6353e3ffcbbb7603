//! The policy engine's unit tests: attack payloads, rules, scope, ACLs.

use super::*;
use crate::classes::Classes;
use crate::glob::Glob;
use ami_proto::{Action, Message, MessageBuilder};
use regex::Regex;

/// The action a test message carries.
pub(crate) fn act(m: &Message) -> Action {
    Action::parse(m.clone()).expect("a test message has an Action header")
}
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

/// A stand-in for the proxy's ownership index.
#[derive(Default)]
pub(crate) struct Owners {
    live: RefCell<HashSet<String>>,
    names: RefCell<HashMap<String, String>>,
}

impl Owners {
    fn insert(&self, key: &str, _upstream: usize) {
        self.live.borrow_mut().insert(key.to_owned());
    }

    fn name_uniqueid(&self, uniqueid: &str, name: &str) {
        self.names.borrow_mut().insert(uniqueid.to_owned(), name.to_owned());
    }
}

impl Channels for Owners {
    fn channel_of(&self, uniqueid: &str) -> Option<String> {
        self.names.borrow().get(uniqueid).cloned()
    }

    fn is_live(&self, key: &str) -> bool {
        self.live.borrow().contains(key)
    }
}

pub(crate) fn msg(h: &[(&str, &str)]) -> Message {
    h.iter().fold(MessageBuilder::new(), |b, (k, v)| b.header(k, v)).build()
}

pub(crate) fn write(c: &str) -> Classes {
    Classes::parse(c).unwrap()
}

#[test]
fn attack_payloads_are_refused_without_system() {
    let p = Policy::default();
    let o = Owners::default();
    let cases: &[&[(&str, &str)]] = &[
        &[
            ("Action", "Originate"),
            ("Channel", "Local/1@x"),
            ("Application", "System"),
            ("Data", "rm -rf /"),
        ],
        &[
            ("Action", "Originate"),
            ("Channel", "Local/1@x"),
            ("Application", "Set"),
            ("Data", "FILE(/etc/x)=y"),
        ],
        &[
            ("Action", "Originate"),
            ("Channel", "Local/1@x"),
            ("Application", "NoOp"),
            ("Data", "${SHELL(id)}"),
        ],
        &[
            ("Action", "Originate"),
            ("Channel", "Local/1@x"),
            ("Application", "TryExec"),
            ("Data", "x"),
        ],
        &[
            ("Action", "Originate"),
            ("Channel", "Local/1@x"),
            ("Application", "NoOp"),
            ("Data", "${db_delete(a/b)}"),
        ],
    ];
    for c in cases {
        let m = msg(c);
        assert!(
            p.check_action(write("originate"), &act(&m), &o, "Server").is_err(),
            "{m:?}"
        );
        assert!(
            p.check_action(write("originate,system"), &act(&m), &o, "Server")
                .is_ok(),
            "{m:?}"
        );
    }
    let ok = msg(&[
        ("Action", "Originate"),
        ("Channel", "Local/1@x"),
        ("Application", "Wait"),
        ("Data", "feedback 3"),
    ]);
    assert!(p.check_action(write("originate"), &act(&ok), &o, "Server").is_ok());
    let trav = msg(&[("Action", "GetConfig"), ("Filename", "../../etc/passwd")]);
    assert!(p.check_action(write("all"), &act(&trav), &o, "Server").is_err());
    let abs = msg(&[("Action", "GetConfig"), ("Filename", "/etc/passwd")]);
    assert!(p.check_action(write("config"), &act(&abs), &o, "Server").is_err());
    let fine = msg(&[("Action", "GetConfig"), ("Filename", "sip.conf")]);
    assert!(p.check_action(write("config"), &act(&fine), &o, "Server").is_ok());
    let sh = msg(&[("Action", "Command"), ("Command", "!sh")]);
    assert!(p.check_action(write("command"), &act(&sh), &o, "Server").is_err());
    let show = msg(&[("Action", "Command"), ("Command", "core show channels")]);
    assert!(p.check_action(write("command"), &act(&show), &o, "Server").is_ok());
}

#[test]
fn rules_lists_and_scope() {
    let o = Owners::default();
    o.insert("acme-1.5", 0);
    o.name_uniqueid("acme-1.5", "PJSIP/acme-0005");
    let p = Policy {
        actions: Some(vec![Glob::new("originate"), Glob::new("hangup"), Glob::new("queue*")].into()),
        deny_actions: vec![Glob::new("queuereset")].into(),
        rules: vec![ArgRule {
            action: Glob::new("originate"),
            header: "Context".into(),
            pattern: Regex::new("^outbound$").unwrap(),
            allow: true,
        }],
        scope: Scope {
            channels: vec![Glob::new("PJSIP/acme-*"), Glob::new("Local/*@acme")].into(),
            queues: vec![Glob::new("acme-*")].into(),
            servers: vec!["pbx1".into()],
            contexts: vec![Glob::new("outbound")].into(),
            db_families: vec![].into(),
        },
        ..Default::default()
    };
    let w = write("all");
    let chk = |h: &[(&str, &str)]| {
        let m = msg(h);
        p.check_action(w, &act(&m), &o, "Server")
    };
    assert!(chk(&[
        ("Action", "Originate"),
        ("Channel", "PJSIP/acme-1"),
        ("Context", "outbound"),
        ("Exten", "1")
    ])
    .is_ok());
    assert!(chk(&[
        ("Action", "Originate"),
        ("Channel", "PJSIP/acme-1"),
        ("Context", "internal")
    ])
    .is_err());
    assert!(chk(&[("Action", "Originate"), ("Channel", "PJSIP/acme-1")]).is_err());
    assert!(chk(&[
        ("Action", "Originate"),
        ("Channel", "PJSIP/other-1"),
        ("Context", "outbound")
    ])
    .is_err());
    assert!(chk(&[("Action", "Hangup"), ("Channel", "acme-1.5")]).is_ok());
    assert!(chk(&[("Action", "Hangup"), ("Channel", "/.*/")]).is_err());
    assert!(chk(&[("Action", "QueueStatus"), ("Queue", "acme-sales")]).is_ok());
    assert!(chk(&[("Action", "QueueStatus"), ("Queue", "other-sales")]).is_err());
    assert!(chk(&[("Action", "QueueReset"), ("Queue", "acme-sales")]).is_err());
    assert!(chk(&[("Action", "Status")]).is_err());
    assert!(chk(&[("Action", "QueueStatus"), ("Server", "pbx2")]).is_err());

    let ev = |h: &[(&str, &str)]| {
        let server = h.iter().find(|(k, _)| *k == "Server").map(|(_, v)| *v);
        p.event_in_scope(&msg(h), server, &o)
    };
    assert!(ev(&[
        ("Event", "Newchannel"),
        ("Channel", "PJSIP/acme-1"),
        ("Server", "pbx1")
    ]));
    assert!(!ev(&[
        ("Event", "Newchannel"),
        ("Channel", "PJSIP/other-1"),
        ("Server", "pbx1")
    ]));
    assert!(!ev(&[
        ("Event", "Newchannel"),
        ("Channel", "PJSIP/acme-1"),
        ("Server", "pbx2")
    ]));
    assert!(ev(&[
        ("Event", "DialBegin"),
        ("Channel", "PJSIP/acme-1"),
        ("DestChannel", "PJSIP/trunk-9")
    ]));
    assert!(ev(&[("Event", "QueueParams"), ("Queue", "acme-sales")]));
    assert!(!ev(&[("Event", "QueueParams"), ("Queue", "beta-sales")]));
    assert!(!ev(&[("Event", "UserEvent"), ("UserEvent", "x")]));
    assert!(ev(&[("Event", "ProxyUpstreamStatus"), ("Status", "Connected")]));
}

/// What a user without `system` must never get through, in the variants an attacker
/// tries: header case, repeated headers, quoting, escapes, nesting, functions inside
/// application data.
#[test]
fn evaluated_headers_are_judged() {
    let o = Owners::default();
    let restricted = Policy::default();
    let w = write("call,originate,reporting,agent,user");
    let refused = |p: &Policy, h: &[(&str, &str)]| {
        let m = msg(h);
        let r = p.check_action(w, &act(&m), &o, "Server");
        assert!(r.is_err(), "passed: {m:?}");
        assert!(
            p.check_action(write("all"), &act(&m), &o, "Server").is_ok(),
            "a system user is refused: {m:?}"
        );
    };
    let orig = |extra: &[(&'static str, &'static str)]| {
        let mut h = vec![
            ("Action", "Originate"),
            ("Channel", "Local/1@default"),
            ("Application", "Wait"),
            ("Data", "1"),
        ];
        h.extend_from_slice(extra);
        h
    };
    for v in [
        "FILE(/tmp/x,,,al)=y",
        "file(/tmp/x)=y",
        "DB(family/key)=x",
        "A=1,DB(f/k)=x",
        "\"DB(f/k)\"=x",
        "A=1,  SHELL(id)=x",
        "X=${SHELL(id)}",
        "X=$[1+1]",
        "A\\,B=1,FILE(/x)=y",
        "CALLERID(num)=1",
    ] {
        refused(&restricted, &orig(&[("Variable", v)]));
        refused(&restricted, &orig(&[("Variable", "A=1"), ("variable", v)]));
    }
    for (app, data) in [
        ("System", "id"),
        ("TrySystem", "id"),
        ("EXEC", "System(id)"),
        ("MixMonitor", "/tmp/x.wav,,rm -rf /"),
        ("ChanSpy", "PJSIP/"),
        ("Set", "FILE(/tmp/x)=y"),
        ("NoOp", "${SHELL(id)}"),
        ("Wait", "$[${DB(a/b)}]"),
        ("AGI", "agi://evil"),
    ] {
        refused(
            &restricted,
            &[
                ("Action", "Originate"),
                ("Channel", "Local/1@default"),
                ("Application", app),
                ("Data", data),
            ],
        );
    }
    refused(
        &restricted,
        &[
            ("Action", "Originate"),
            ("Channel", "Local/1@default"),
            ("Exten", "1"),
            ("PreDialGoSub", "x,s,1(${SHELL(id)})"),
        ],
    );
    for var in [
        "SHELL(id)",
        "AST_CONFIG(manager.conf,admin,secret)",
        "ENV(HOME)",
        "FILE(/etc/passwd)",
        "EVAL(${X})",
        "CALLERID(num)",
        "${X}",
        "X Y",
    ] {
        refused(&restricted, &[("Action", "Getvar"), ("Variable", var)]);
        refused(
            &restricted,
            &[
                ("Action", "Setvar"),
                ("Channel", "Local/1@default-00000001;1"),
                ("Variable", var),
                ("Value", "1"),
            ],
        );
    }
    refused(
        &restricted,
        &[("Action", "MixMonitor"), ("Channel", "PJSIP/1"), ("Command", "id")],
    );
    for h in [
        &[("Action", "GetConfig"), ("Filename", "manager.conf")][..],
        &[("Action", "GetConfig"), ("Filename", "./Manager.conf")],
        &[("Action", "ListCategories"), ("Filename", "manager.d/proxy.conf")],
        &[
            ("Action", "UpdateConfig"),
            ("SrcFilename", "extensions.conf"),
            ("DstFilename", "extensions.conf"),
        ],
        &[("Action", "CreateConfig"), ("Filename", "x.conf")],
        &[
            ("Action", "Setvar"),
            ("Channel", "PJSIP/1"),
            ("Variable", "X"),
            ("Value", "${SHELL(id)}"),
        ],
        &[("Action", "GetConfig"), ("Filename", ".//manager.conf")],
        &[
            ("Action", "Park"),
            ("Channel", "PJSIP/1"),
            ("TimeoutChannel", "Local/${SHELL(id)}@x"),
            ("Timeout", "1000"),
        ],
        &[
            ("Action", "Park"),
            ("Channel", "PJSIP/1"),
            ("TimeoutChannel", "PJSIP/2,30,U(x)"),
        ],
        &[
            ("Action", "Park"),
            ("Channel", "PJSIP/1"),
            ("Parkinglot", "default,c(other,s,1)"),
        ],
        &[
            ("Action", "QueueAdd"),
            ("Queue", "q"),
            ("Interface", "PJSIP/1"),
            ("MemberName", "x|Local/1@victim/n;0;0;y;z;;0"),
        ],
        &[
            ("Action", "Originate"),
            ("Channel", "PJSIP/1"),
            ("Application", "DateTime"),
            ("Data", ",,'/var/spool/asterisk/voicemail/beta/100/INBOX/msg0000'"),
        ],
        &[("Action", "GetConfig"), ("Filename", "manager.con[f]")],
        &[("Action", "GetConfigJSON"), ("Filename", "./././manager.conf")],
        &[("Action", "ListCategories"), ("Filename", ".//manager.d/x.conf")],
        &[
            ("Action", "Setvar"),
            ("Channel", "PJSIP/1"),
            ("Variable", "MONITOR_EXEC"),
            ("Value", "touch /tmp/x"),
        ],
        &[
            ("Action", "Setvar"),
            ("Channel", "PJSIP/1"),
            ("Variable", "__TOUCH_MIXMONITOR_OPTIONS"),
            ("Value", "b,id"),
        ],
        &[
            ("Action", "Setvar"),
            ("Channel", "PJSIP/1"),
            ("Variable", "TRANSFER_CONTEXT"),
            ("Value", "other"),
        ],
        &[
            ("Action", "Originate"),
            ("Channel", "PJSIP/1"),
            ("Application", "Wait"),
            ("Data", "1"),
            ("Variable", "_BRIDGE_FEATURES=T"),
        ],
        &[
            ("Action", "Getvar"),
            ("Channel", "PJSIP/1"),
            ("Variable", "CUT(AST_CONFIG(manager.conf,proxy,secret),|,1)"),
        ],
        &[
            ("Action", "Originate"),
            ("Channel", "PJSIP/1"),
            ("Application", "Wait"),
            ("Data", "1"),
            ("Variable", "PUSH(SHELL(id))=x"),
        ],
        &[
            ("Action", "Originate"),
            ("Channel", "PJSIP/1"),
            ("Application", "Playback"),
            ("Data", "/var/spool/asterisk/voicemail/beta/1000/INBOX/msg0000"),
        ],
        &[
            ("Action", "Originate"),
            ("Channel", "PJSIP/1"),
            ("Application", "Playback"),
            ("Data", "beep&../../../spool/x"),
        ],
        &[("Action", "UserEvent"), ("UserEvent", "x"), (" Server", "pbx2")],
        &[("Action", "UserEvent"), ("UserEvent", "x"), ("Event ", "Shutdown")],
    ] {
        refused(&restricted, h);
    }
    refused(
        &restricted,
        &[("Action", "UserEvent"), ("UserEvent", "x"), ("Event", "Hangup")],
    );
    refused(
        &restricted,
        &[("Action", "UserEvent"), ("UserEvent", "x"), ("Privilege", "system,all")],
    );
    // A header Asterisk does not document for the action is not passed on.
    refused(
        &restricted,
        &[("Action", "Getvar"), ("Variable", "X"), ("Variables", "SHELL(id)")],
    );

    let ok = |p: &Policy, h: &[(&str, &str)]| {
        let m = msg(h);
        assert_eq!(p.check_action(w, &act(&m), &o, "Server"), Ok(()), "{m:?}");
    };
    ok(&restricted, &orig(&[("Variable", "A=1,__B=x(y),C=\"q,r\"")]));
    ok(&restricted, &[("Action", "Getvar"), ("Variable", "EXTEN:1")]);
    ok(
        &restricted,
        &[
            ("Action", "Originate"),
            ("Channel", "Local/1@default"),
            ("Application", "Playback"),
            ("Data", "hello-world&beep"),
        ],
    );
    ok(
        &restricted,
        &[("Action", "UserEvent"), ("UserEvent", "x"), ("Foo", "${not evaluated}")],
    );
    let callerid = Policy {
        functions: vec!["CALLERID".into()],
        applications: Some(vec!["Set".into(), "Wait".into()]),
        ..Default::default()
    };
    ok(&callerid, &orig(&[("Variable", "CALLERID(num)=100")]));
    ok(
        &callerid,
        &[
            ("Action", "Originate"),
            ("Channel", "Local/1@default"),
            ("Application", "Set"),
            ("Data", "CALLERID(name)=Bob"),
        ],
    );
    refused(&callerid, &orig(&[("Variable", "CALLERID(num)=${SHELL(id)}")]));
    refused(
        &callerid,
        &[
            ("Action", "Originate"),
            ("Channel", "Local/1@default"),
            ("Application", "Set"),
            ("Data", "FILE(/x)=y"),
        ],
    );
    refused(
        &callerid,
        &[
            ("Action", "Originate"),
            ("Channel", "Local/1@default"),
            ("Application", "Playback"),
            ("Data", "x"),
        ],
    );
}

/// What Asterisk would read as two messages, or as another action, is refused to every
/// user, however trusted.
#[test]
fn no_second_action_for_anyone() {
    let o = Owners::default();
    for h in [
        &[("Action", "Ping"), ("Action", "Command"), ("Command", "core stop now")][..],
        &[("Action", "UserEvent"), ("UserEvent", "x"), ("\0Pad", "x")],
    ] {
        let m = msg(h);
        assert!(
            Policy::default()
                .check_action(write("all"), &act(&m), &o, "Server")
                .is_err(),
            "{m:?}"
        );
    }
}

/// A tenant reaches nothing of another tenant's: not by header, not through a function
/// or an application, not by a UserEvent naming the other's objects.
#[test]
fn scoped_users_stay_in_their_tenant() {
    let o = Owners::default();
    o.insert("beta-1.7", 0);
    o.name_uniqueid("beta-1.7", "PJSIP/beta-0007");
    let acme = Policy {
        functions: vec!["CALLERID".into()],
        variables: Some(vec![Glob::new("X"), Glob::new("A")].into()),
        scope: Scope {
            channels: vec![Glob::channel("PJSIP/acme-*"), Glob::channel("Local/*@acme")].into(),
            queues: vec![Glob::new("acme-*")].into(),
            contexts: vec![Glob::new("acme")].into(),
            db_families: vec![Glob::new("acme")].into(),
            servers: vec![],
        },
        ..Default::default()
    };
    let w = write("all");
    let chk = |h: &[(&str, &str)]| {
        let m = msg(h);
        acme.check_action(w, &act(&m), &o, "Server")
    };
    let bad: &[&[(&str, &str)]] = &[
        &[
            ("Action", "Originate"),
            ("Channel", "Local/1@acme"),
            ("Application", "ChannelRedirect"),
            ("Data", "PJSIP/beta-1,beta,1,1"),
        ],
        &[
            ("Action", "Originate"),
            ("Channel", "Local/1@acme"),
            ("Application", "SoftHangup"),
            ("Data", "PJSIP/beta-1"),
        ],
        &[
            ("Action", "Originate"),
            ("Channel", "Local/1@acme"),
            ("Application", "Queue"),
            ("Data", "beta-sales"),
        ],
        &[
            ("Action", "Originate"),
            ("Channel", "Local/1@acme"),
            ("Application", "System"),
            ("Data", "id"),
        ],
        &[
            ("Action", "Originate"),
            ("Channel", "Local/1@acme"),
            ("Context", "beta"),
            ("Exten", "1"),
        ],
        &[("Action", "Originate"), ("Channel", "Local/1@acme"), ("Exten", "1")],
        &[
            ("Action", "Originate"),
            ("Channel", "Local/1@beta"),
            ("Context", "acme"),
            ("Exten", "1"),
        ],
        &[
            ("Action", "Originate"),
            ("Channel", "Local/1@acme"),
            ("Context", "acme"),
            ("Exten", "1"),
            ("PreDialGoSub", "beta,s,1"),
        ],
        &[
            ("Action", "Originate"),
            ("Channel", "Local/1@acme"),
            ("Context", "acme"),
            ("Exten", "1"),
            ("Variable", "SHARED(x,PJSIP/beta-1)=y"),
        ],
        &[
            ("Action", "Getvar"),
            ("Channel", "PJSIP/acme-1"),
            ("Variable", "IMPORT(PJSIP/beta-1,SECRET)"),
        ],
        &[
            ("Action", "Getvar"),
            ("Channel", "PJSIP/acme-1"),
            ("Variable", "CHANNELS()"),
        ],
        &[
            ("Action", "Getvar"),
            ("Channel", "PJSIP/acme-1"),
            ("Variable", "QUEUE_MEMBER_LIST(beta-sales)"),
        ],
        &[("Action", "Getvar"), ("Variable", "GLOBALVAR")],
        &[("Action", "Setvar"), ("Variable", "GLOBALVAR"), ("Value", "1")],
        &[("Action", "Getvar"), ("Channel", "beta-1.7"), ("Variable", "X")],
        &[
            ("Action", "Redirect"),
            ("Channel", "PJSIP/acme-1"),
            ("Context", "beta"),
            ("Exten", "1"),
            ("Priority", "1"),
        ],
        &[
            ("Action", "Redirect"),
            ("Channel", "PJSIP/acme-1"),
            ("ExtraChannel", "PJSIP/beta-1"),
            ("Context", "acme"),
            ("Exten", "1"),
            ("Priority", "1"),
        ],
        &[
            ("Action", "UserEvent"),
            ("UserEvent", "x"),
            ("Channel", "PJSIP/acme-1"),
            ("DestChannel", "PJSIP/beta-1"),
        ],
        &[("Action", "UserEvent"), ("UserEvent", "x"), ("Uniqueid", "beta-1.7")],
        &[("Action", "UserEvent"), ("UserEvent", "x"), ("Queue", "beta-sales")],
        &[("Action", "DBGet"), ("Family", "beta"), ("Key", "k")],
        &[("Action", "DBGetTree")],
        &[("Action", "ShowDialPlan")],
        &[("Action", "ShowDialPlan"), ("Context", "beta")],
        &[("Action", "Hangup"), ("Channel", "/beta/")],
        &[("Action", "QueueStatus"), ("Queue", "beta-sales")],
        &[
            ("Action", "QueuePause"),
            ("Interface", "PJSIP/acme-1"),
            ("Paused", "true"),
        ],
        &[("Action", "Command"), ("Command", "core show channels")],
        &[("Action", "GetConfig"), ("Filename", "pjsip.conf")],
        &[
            ("Action", "Getvar"),
            ("Channel", "PJSIP/acme-1"),
            ("Variable", "TRUNK_PASSWORD"),
        ],
        &[
            ("Action", "Status"),
            ("Channel", "PJSIP/acme-1"),
            ("Variables", "X,TRUNK_PASSWORD"),
        ],
        &[
            ("Action", "Originate"),
            ("Channel", "PJSIP/acme-1"),
            ("Application", "SendDTMF"),
            ("Data", "1234#,,,PJSIP/beta-7"),
        ],
        &[
            ("Action", "Originate"),
            ("Channel", "PJSIP/acme-1"),
            ("Application", "SendDTMF"),
            ("Data", "1234#,,,beta-1.7"),
        ],
        &[
            ("Action", "Setvar"),
            ("Channel", "PJSIP/acme-1"),
            ("Variable", "CHANNEL(hangup_handler_push)"),
            ("Value", "beta,s,1"),
        ],
        &[
            ("Action", "Bridge"),
            ("Channel1", "PJSIP/acme-1"),
            ("Channel2", "PJSIP/acme"),
        ],
        &[
            ("Action", "Park"),
            ("Channel", "PJSIP/acme-1"),
            ("AnnounceChannel", "PJSIP/acme-404"),
        ],
        &[
            ("Action", "PJSIPNotify"),
            ("Channel", ""),
            ("Channel", "PJSIP/acme-1"),
            ("URI", "sip:x@y"),
        ],
        &[("Action", "DBGetTree"), ("Family", "acm%")],
        &[("Action", "DAHDIRestart")],
        &[("Action", "Reload")],
        &[("Action", "PRIDebugSet"), ("Span", "1"), ("Level", "1")],
    ];
    for h in bad {
        assert!(chk(h).is_err(), "passed: {h:?}");
    }
    let good: &[&[(&str, &str)]] = &[
        &[
            ("Action", "Originate"),
            ("Channel", "Local/1@acme"),
            ("Context", "acme"),
            ("Exten", "1"),
            ("Variable", "CALLERID(num)=1,A=2"),
        ],
        &[
            ("Action", "Originate"),
            ("Channel", "PJSIP/acme-7"),
            ("Application", "Playback"),
            ("Data", "beep"),
        ],
        &[("Action", "Getvar"), ("Channel", "PJSIP/acme-1"), ("Variable", "X")],
        &[
            ("Action", "UserEvent"),
            ("UserEvent", "x"),
            ("Channel", "PJSIP/acme-1"),
            ("Queue", "acme-sales"),
        ],
        &[("Action", "DBGet"), ("Family", "acme"), ("Key", "k")],
        &[
            ("Action", "QueuePause"),
            ("Interface", "PJSIP/acme-1"),
            ("Queue", "acme-sales"),
            ("Paused", "true"),
        ],
        &[
            ("Action", "Getvar"),
            ("Channel", "PJSIP/acme-1"),
            ("Variable", "EXTEN:1"),
        ],
        &[
            ("Action", "Originate"),
            ("Channel", "PJSIP/acme-1"),
            ("Application", "SendDTMF"),
            ("Data", "12,,,PJSIP/acme-2"),
        ],
    ];
    for h in good {
        assert_eq!(chk(h), Ok(()), "{h:?}");
    }

    // Events: a UserEvent is the tenant's only when everything it names is; an
    // upstream's event when anything is. The server is what the proxy knows.
    let ev = |h: &[(&str, &str)]| acme.event_in_scope(&msg(h), Some("pbx1"), &o);
    assert!(!ev(&[
        ("Event", "UserEvent"),
        ("Channel", "PJSIP/acme-1"),
        ("DestChannel", "PJSIP/beta-1")
    ]));
    assert!(ev(&[("Event", "UserEvent"), ("Channel", "PJSIP/acme-1")]));
    assert!(!ev(&[("Event", "UserEvent"), ("Uniqueid", "beta-1.7")]));
    assert!(ev(&[
        ("Event", "DialBegin"),
        ("Channel", "PJSIP/acme-1"),
        ("DestChannel", "PJSIP/trunk-1")
    ]));
    assert!(!ev(&[("Event", "Cdr"), ("Uniqueid", "beta-1.7")]));
    let pinned = Policy {
        scope: Scope {
            servers: vec!["pbx1".into()],
            ..Default::default()
        },
        ..Default::default()
    };
    let forged = msg(&[("Event", "UserEvent"), ("Server", "pbx1")]);
    assert!(!pinned.event_in_scope(&forged, Some("pbx2"), &o));
}

#[test]
fn acl() {
    let p = Policy {
        permit: vec!["10.0.0.0/8".parse().unwrap(), "127.0.0.1/32".parse().unwrap()],
        deny: vec!["10.0.5.0/24".parse().unwrap()],
        ..Default::default()
    };
    assert!(p.permits_addr("10.1.2.3".parse().unwrap()));
    assert!(!p.permits_addr("10.0.5.3".parse().unwrap()));
    assert!(!p.permits_addr("192.168.1.1".parse().unwrap()));
    assert!(p.permits_addr("::ffff:127.0.0.1".parse().unwrap()));
    assert!(Policy::default().permits_addr("192.168.1.1".parse().unwrap()));
}
