use super::applications::{app_options, execif_choice};
use super::functions::cut;
use super::registry::{self, find_app, function_exists, functions};
use super::syntax::{check_condition, parse_variable_name, split_func, substring};
use super::*;
use crate::channels::Control;
use crate::config::SimConfig;
use crate::pbx::lock;
use ami_proto::app_args::separate_args;
use std::sync::Arc;
use std::time::SystemTime;

#[test]
fn originate_variable_headers() {
    assert_eq!(
        originate_variables("A=1,DB(acme/k)=v,SHELL(a,b)=c, B=2,noeq,=x,C=d=e"),
        vec![
            ("A".into(), "1".into()),
            ("DB(acme/k)".into(), "v".into()),
            ("SHELL(a,b)".into(), "c".into()),
            (" B".into(), "2".into()),
            ("C".into(), "d=e".into()),
        ]
    );
    assert_eq!(
        originate_variables(r#"X="a,b",Y=\"q"#),
        vec![("X".into(), "a,b".into()), ("Y".into(), "\"q".into())]
    );
}

#[test]
fn reference_lists() {
    assert_eq!(registry::applications().len(), 158);
    assert_eq!(functions().len(), 168);
    assert_eq!(find_app("chanspy"), Some("ChanSpy"));
    assert_eq!(find_app("Zapateller"), Some("Zapateller"));
    assert!(function_exists("SHELL") && function_exists("VOLUME") && !function_exists("shell"));
}

#[test]
fn variable_names() {
    assert_eq!(parse_variable_name("FOO"), ("FOO", 0, i32::MAX, false));
    assert_eq!(parse_variable_name("FOO:1:2"), ("FOO", 1, 2, false));
    assert_eq!(parse_variable_name("FOO:-3"), ("FOO", -3, i32::MAX, false));
    assert_eq!(parse_variable_name("FOO::2"), ("FOO", 0, i32::MAX, false));
    assert_eq!(parse_variable_name("CUT(a:b,c):1"), ("CUT(a:b,c)", 1, i32::MAX, true));
    assert_eq!(substring("abcdef", 1, 2), "bc");
    assert_eq!(substring("abcdef", -2, i32::MAX), "ef");
    assert_eq!(substring("abcdef", 0, -2), "abcd");
    assert_eq!(substring("abcdef", 9, 1), "");
    assert_eq!(substring("abcdef", 2, -9), "");
    assert_eq!(split_func("SHELL(id)"), ("SHELL", "id"));
    assert_eq!(split_func("A(b(c))x"), ("A", "b(c)"));
    assert_eq!(split_func("A(b"), ("A", "b"));
    assert_eq!(split_func("NOPE"), ("NOPE", ""));
    assert!(check_condition("abc") && check_condition(" 2") && !check_condition("0") && !check_condition(""));
    assert_eq!(cut("a-b-c-d", '-', "2"), "b");
    assert_eq!(cut("a-b-c-d", '-', "2-3"), "b-c");
    assert_eq!(cut("a-b-c-d", '-', "3-"), "c-d");
    assert_eq!(cut("a,b,c", ',', "1&3"), "a,c");
}

fn pbx() -> Arc<Pbx> {
    Arc::new(Pbx::new(SimConfig::default()))
}

fn chan(name: &str) -> (Channel, tokio::sync::mpsc::UnboundedReceiver<Control>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let ch = Channel {
        name: name.into(),
        side: crate::channels::Side::One,
        state: 6,
        cid_num: Some("100".into()),
        cid_name: Some("Alice".into()),
        conn_num: None,
        conn_name: None,
        context: "default".into(),
        exten: "100".into(),
        priority: 1,
        uniqueid: format!("uid-{name}"),
        linkedid: format!("uid-{name}"),
        app: String::new(),
        data: String::new(),
        created: std::time::Instant::now(),
        created_wall: SystemTime::now(),
        answered_wall: None,
        seq: 0,
        vars: Default::default(),
        peer: None,
        control: tx,
    };
    (ch, rx)
}

#[test]
fn substitution() {
    let pbx = pbx();
    lock(&pbx.globals).insert("G".into(), "global".into());
    let (mut ch, _rx) = chan("Local/1@default-00000000;1");
    ch.vars.insert("FOO".into(), "hello".into());
    ch.vars.insert("NAME".into(), "FOO".into());
    let mut c = Ctx::call(&pbx, &mut ch);
    assert_eq!(c.substitute("x ${FOO} y"), "x hello y");
    assert_eq!(c.substitute("${FOO:1:3}"), "ell");
    assert_eq!(c.substitute("${FOO:-2}"), "lo");
    assert_eq!(c.substitute("${${NAME}}"), "hello");
    assert_eq!(c.substitute("${EXTEN}@${CONTEXT}"), "100@default");
    assert_eq!(c.substitute("${G}"), "global");
    assert_eq!(c.substitute("${UNSET}"), "");
    assert_eq!(c.substitute("cost $5 $"), "cost $5 $");
    assert_eq!(c.substitute("$[1 + 2 * 3]"), "7");
    assert_eq!(c.substitute("$[(1+2)*3]"), "9");
    assert_eq!(c.substitute("$[${LEN(${FOO})} > 3]"), "1");
    assert_eq!(c.substitute("$[abc]"), "abc");
    assert_eq!(c.substitute("$[1/0]"), "1/0");
    assert_eq!(c.substitute("$[${FOO} = hello]"), "1");
    assert_eq!(c.substitute("${LEN(abc)}"), "3");
    assert_eq!(c.substitute("${TOUPPER(${FOO})}"), "HELLO");
    assert_eq!(c.substitute("${CALLERID(num)} ${CALLERID(all)}"), "100 \"Alice\" <100>");
    assert_eq!(c.substitute("${unterminated"), "");
    // Depth and budget: no overflow, no panic.
    let deep = "${".repeat(5000) + "X" + &"}".repeat(5000);
    let _ = c.substitute(&deep);
    let deep = "$[".repeat(5000);
    let _ = c.substitute(&deep);
    let deep = "$[".to_owned() + &"(".repeat(5000) + "]";
    let _ = c.substitute(&deep);
    // EVAL of a variable that evaluates itself.
    ch.vars.insert("LOOP".into(), "${EVAL(${LOOP})}".into());
    let mut c = Ctx::call(&pbx, &mut ch);
    let _ = c.substitute("${EVAL(${LOOP})}");
}

#[test]
fn dangerous_functions_are_journaled_not_run() {
    let pbx = pbx();
    let (mut ch, _rx) = chan("Local/1@default-00000000;1");
    let mut c = Ctx::call(&pbx, &mut ch);
    assert_eq!(c.substitute("a${SHELL(id)}b"), "ab");
    assert!(c.set_var("FILE(/tmp/x)", "data"));
    assert!(c.set_var("DB(acme/k)", "v"));
    assert_eq!(c.substitute("${DB(acme/k)}"), "v");
    assert_eq!(c.substitute("${AST_CONFIG(manager.conf,admin,secret)}"), "admin-secret");
    assert_eq!(c.substitute("${ENV(HOME)}"), "");
    assert!(!c.set_var("SHELL(x)", "y"));
    assert!(!c.set_var("NOSUCH(x)", "y"));
    assert_eq!(c.func_read("nosuch(x)"), None);
    let e = pbx.journal.snapshot();
    assert_eq!(
        e,
        vec![
            Effect::FunctionCall {
                name: "SHELL".into(),
                args: "id".into()
            },
            Effect::Shell("id".into()),
            Effect::FunctionWrite {
                name: "FILE".into(),
                args: "/tmp/x".into(),
                value: "data".into()
            },
            Effect::FileWrite("/tmp/x".into()),
            Effect::FunctionWrite {
                name: "DB".into(),
                args: "acme/k".into(),
                value: "v".into()
            },
            Effect::DbWrite("acme/k".into()),
            Effect::FunctionCall {
                name: "DB".into(),
                args: "acme/k".into()
            },
            Effect::DbRead("acme/k".into()),
            Effect::FunctionCall {
                name: "AST_CONFIG".into(),
                args: "manager.conf,admin,secret".into()
            },
            Effect::ConfigRead {
                file: "manager.conf".into(),
                category: "admin".into(),
                variable: "secret".into()
            },
            Effect::FunctionCall {
                name: "ENV".into(),
                args: "HOME".into()
            },
            Effect::EnvRead("HOME".into()),
            Effect::FunctionWrite {
                name: "SHELL".into(),
                args: "x".into(),
                value: "y".into()
            },
            Effect::FunctionWrite {
                name: "NOSUCH".into(),
                args: "x".into(),
                value: "y".into()
            },
            Effect::FunctionCall {
                name: "nosuch".into(),
                args: "x".into()
            },
        ]
    );
}

#[test]
fn eval_substitutes_again_and_the_guard_blocks() {
    let pbx = pbx();
    lock(&pbx.globals).insert("CMD".into(), "${SHELL(rm -rf /)}".into());
    let mut c = Ctx::action(&pbx, None);
    // Read directly (Getvar), EVAL substitutes its argument once: the text comes back.
    assert_eq!(c.func_read("EVAL(${CMD})").as_deref(), Some("${SHELL(rm -rf /)}"));
    assert!(!pbx.journal.snapshot().contains(&Effect::Shell("rm -rf /".into())));
    // Within a substitution the argument was substituted already: EVAL runs it.
    assert_eq!(c.substitute("${EVAL(${CMD})}"), "");
    assert!(pbx.journal.snapshot().contains(&Effect::Shell("rm -rf /".into())));
    pbx.journal.clear();
    let mut c = Ctx::action(&pbx, None).inhibited(true);
    assert_eq!(c.func_read("SHELL(id)"), None);
    assert!(!c.func_write("FILE(/etc/passwd)", "x"));
    assert_eq!(c.func_read("ENV(PATH)"), Some(String::new()));
    assert_eq!(
        pbx.journal.snapshot(),
        vec![
            Effect::FunctionCall {
                name: "ENV".into(),
                args: "PATH".into()
            },
            Effect::EnvRead("PATH".into())
        ]
    );
}

#[test]
fn cross_channel_functions() {
    let pbx = pbx();
    let (mut mine, _rx1) = chan("Local/1@default-00000000;1");
    let (mut other, mut rx2) = chan("Local/2@default-00000001;1");
    other.vars.insert("SECRET".into(), "s3".into());
    lock(&pbx.channels).insert(other.name.clone(), other.clone());
    lock(&pbx.channels).insert(mine.name.clone(), mine.clone());
    let mut c = Ctx::call(&pbx, &mut mine);
    assert_eq!(c.substitute("${IMPORT(Local/2@default-00000001;1,SECRET)}"), "s3");
    assert!(c.set_var("SHARED(X,Local/2@default-00000001;1)", "v"));
    assert_eq!(c.substitute("${SHARED(X,Local/2@default-00000001;1)}"), "v");
    assert_eq!(c.substitute("${CHANNELS(00000001)}"), "Local/2@default-00000001;1");
    let ran = c.run_app(
        find_app("ChannelRedirect").unwrap(),
        "Local/2@default-00000001;1,default,600,1",
    );
    assert_eq!(ran.app, "ChannelRedirect");
    let ran = c.run_app(find_app("SoftHangup").unwrap(), "Local/2@default-00000001;1");
    assert_eq!(ran.app, "SoftHangup");
    let e = pbx.journal.snapshot();
    assert!(e.contains(&Effect::ChannelVarRead {
        channel: "Local/2@default-00000001;1".into(),
        var: "SECRET".into()
    }));
    assert!(e.contains(&Effect::ChannelVarWrite {
        channel: "Local/2@default-00000001;1".into(),
        var: "X".into()
    }));
    assert!(e.contains(&Effect::ChannelsListed));
    assert!(e.contains(&Effect::Redirect {
        channel: "Local/2@default-00000001;1".into()
    }));
    assert!(e.contains(&Effect::Hangup {
        channel: "Local/2@default-00000001;1".into()
    }));
    assert!(matches!(rx2.try_recv(), Ok(Control::Redirect { exten, priority: 1, .. }) if exten == "600"));
    assert!(matches!(rx2.try_recv(), Ok(Control::Hangup { .. })));
}

/// Arbitrary text through every entry point: no panic, whatever it holds.
#[test]
fn arbitrary_input_never_panics() {
    let alphabet: Vec<char> = "${}[]()\\\",:=?&|-+*/%!^ aZ09_/;é\u{0}".chars().collect();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let pbx = pbx();
    let (mut ch, _rx) = chan("Local/1@default-00000000;1");
    lock(&pbx.channels).insert(ch.name.clone(), ch.clone());
    let funcs = [
        "SHELL",
        "EVAL",
        "FILE",
        "STAT",
        "DB",
        "DB_DELETE",
        "DB_KEYS",
        "AST_CONFIG",
        "ENV",
        "CURL",
        "ODBC_X",
        "GLOBAL",
        "GLOBAL_DELETE",
        "IMPORT",
        "SHARED",
        "CHANNELS",
        "QUEUE_MEMBER",
        "QUEUE_GET_CHANNEL",
        "CALLERID",
        "CHANNEL",
        "LEN",
        "CUT",
        "NOPE",
    ];
    let apps = [
        "System",
        "Set",
        "MSet",
        "Exec",
        "ExecIf",
        "ChannelRedirect",
        "SoftHangup",
        "ChanSpy",
        "Dial",
        "MixMonitor",
        "Record",
        "AGI",
        "ExternalIVR",
        "UserEvent",
        "DBdeltree",
        "Queue",
        "NoOp",
    ];
    for round in 0..3000 {
        let len = (next() % 40) as usize;
        let text: String = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        let _ = separate_args(&text, ',', round % 2 == 0, 1 + (next() % 5) as usize);
        let _ = originate_variables(&text);
        let _ = execif_choice(&text);
        let _ = parse_variable_name(&text);
        let _ = cut(&text, '-', &text);
        let _ = app_options(&text);
        let mut c = Ctx::call(&pbx, &mut ch);
        let _ = c.substitute(&text);
        let f = funcs[round % funcs.len()];
        let _ = c.func_read(&format!("{f}({text})"));
        let _ = c.func_write(&format!("{f}({text})"), &text);
        let _ = c.set_var(&text, &text);
        let _ = c.retrieve(&text);
        let _ = c.run_app(find_app(apps[round % apps.len()]).unwrap(), &text);
        let _ = c.exec_application(&text, &text);
    }
}

#[test]
fn applications() {
    let pbx = pbx();
    let (mut ch, _rx) = chan("Local/1@default-00000000;1");
    ch.vars.insert("F".into(), "rec".into());
    let mut c = Ctx::call(&pbx, &mut ch);
    let (data, ran) = c.exec_application("noop", "${SHELL(id)}x");
    assert_eq!((data.as_str(), ran.map(|r| r.app)), ("x", Some("NoOp")));
    assert_eq!(c.exec_application("NoSuchApp", "${SHELL(id)}").1, None);
    let ran = c.run_app(find_app("Exec").unwrap(), "System(touch ${F})");
    assert_eq!(ran.app, "System");
    let ran = c.run_app(find_app("ExecIf").unwrap(), "1?Wait(3):System(no)");
    assert_eq!((ran.app, ran.data.as_str()), ("Wait", "3"));
    let ran = c.run_app(find_app("ExecIf").unwrap(), "0?Wait(3):System(yes)");
    assert_eq!((ran.app, ran.data.as_str()), ("System", "yes"));
    c.run_app(find_app("MSet").unwrap(), "A=1,DB(f/k)=2");
    c.exec_application("MixMonitor", "${F}.wav,b,^{SHELL(x)} /bin/post");
    c.run_app(find_app("AGI").unwrap(), "agi://evil/x,a");
    c.run_app(find_app("ChanSpy").unwrap(), "PJSIP/,q");
    c.run_app(find_app("Dial").unwrap(), "PJSIP/alice,30");
    c.run_app(find_app("DBdeltree").unwrap(), "f");
    assert_eq!(ch.vars.get("A").map(String::as_str), Some("1"));
    assert_eq!(
        ch.vars.get("MIXMONITOR_FILENAME").map(String::as_str),
        Some("/var/spool/asterisk/monitor/rec.wav")
    );
    let e = pbx.journal.snapshot();
    let want = [
        Effect::Shell("touch rec".into()),
        Effect::Shell("yes".into()),
        Effect::DbWrite("f/k".into()),
        Effect::Recording {
            path: "/var/spool/asterisk/monitor/rec.wav".into(),
        },
        Effect::Shell(" /bin/post".into()),
        Effect::Agi("agi://evil/x".into()),
        Effect::Spy {
            channel: "PJSIP/".into(),
        },
        Effect::Dial {
            target: "PJSIP/alice".into(),
        },
        Effect::DbDelete("f".into()),
    ];
    let got: Vec<&Effect> = e
        .iter()
        .filter(|x| {
            !matches!(
                x,
                Effect::AppRun { .. } | Effect::FunctionCall { .. } | Effect::FunctionWrite { .. }
            )
        })
        .filter(|x| !matches!(x, Effect::Shell(s) if s == "id" || s == "x"))
        .collect();
    assert_eq!(got, want.iter().collect::<Vec<_>>());
    assert!(!e.contains(&Effect::Shell("no".into())));
    assert!(e.contains(&Effect::AppRun {
        channel: "Local/1@default-00000000;1".into(),
        app: "System".into(),
        data: "touch rec".into()
    }));
}
