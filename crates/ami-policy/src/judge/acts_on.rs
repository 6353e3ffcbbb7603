//! Tests: what Asterisk does with values a restricted user may write, beyond the headers
//! themselves: variables it reads to jump, play or count; functions whose options run
//! commands or jump; shared applications for users bound to a list of contexts.

use crate::classes::Classes;
use crate::glob::Glob;
use crate::scope::Scope;
use crate::tests::{act, msg, write, Owners};
use crate::Policy;

fn acme() -> Policy {
    Policy {
        scope: Scope {
            channels: vec![Glob::channel("PJSIP/acme-*"), Glob::channel("Local/*@acme")].into(),
            contexts: vec![Glob::new("acme")].into(),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn refused(p: &Policy, w: Classes, h: &[(&str, &str)]) {
    let m = msg(h);
    assert!(
        p.check_action(w, &act(&m), &Owners::default(), "Server").is_err(),
        "{m:?}"
    );
}

fn allowed(p: &Policy, w: Classes, h: &[(&str, &str)]) {
    let m = msg(h);
    assert_eq!(
        p.check_action(w, &act(&m), &Owners::default(), "Server"),
        Ok(()),
        "{m:?}"
    );
}

fn setvar<'a>(name: &'a str, value: &'a str) -> [(&'a str, &'a str); 4] {
    [
        ("Action", "Setvar"),
        ("Channel", "PJSIP/acme-0000000a"),
        ("Variable", name),
        ("Value", value),
    ]
}

#[test]
fn variables_asterisk_reads_cannot_be_set_without_system() {
    let w = write("call,originate");
    for p in [Policy::default(), acme()] {
        for (name, value) in [
            // Run as a Gosub at every bridge join and Dial answer: any context.
            ("CONNECTED_LINE_SEND_SUB", "default,700,1"),
            ("__REDIRECTING_SEND_SUB", "beta-outbound,00900123,1"),
            ("CONNECTED_LINE_SEND_SUB_ARGS", "x"),
            ("GOTO_ON_BLINDXFR", "beta,s,1"),
            ("EXITCONTEXT", "beta"),
            ("SPY_EXIT_CONTEXT", "beta"),
            // Played at every bridge change: any file.
            (
                "BRIDGE_PLAY_SOUND",
                "/var/spool/asterisk/voicemail/beta/1000/INBOX/msg0000",
            ),
            ("LIMIT_WARNING_FILE", "/etc/shadow"),
            ("ATTENDED_TRANSFER_COMPLETE_SOUND", "/tmp/x"),
            // Counted in another tenant's GROUP_COUNT.
            ("OUTBOUND_GROUP", "beta@trunks"),
            ("_OUTBOUND_GROUP_ONCE", "beta@trunks"),
            // The end of a While loop: a location to go to.
            ("END_WHILE_acme_s_3", "beta,s,1"),
            ("QUEUE_PRIO", "10"),
            ("bridge_play_sound", "x"),
        ] {
            refused(&p, w, &setvar(name, value));
            let assign = format!("{name}={value}");
            refused(
                &p,
                w,
                &[
                    ("Action", "Originate"),
                    ("Channel", "PJSIP/acme-0000000a"),
                    ("Application", "Wait"),
                    ("Data", "1"),
                    ("Variable", &assign),
                ],
            );
        }
        // A variable of the user's own still may be set.
        allowed(&Policy::default(), w, &setvar("CRM_TICKET", "4711"));
    }
    // Unless the user has system and no scope.
    allowed(
        &Policy::default(),
        write("all"),
        &setvar("CONNECTED_LINE_SEND_SUB", "default,700,1"),
    );
}

#[test]
fn functions_whose_options_run_commands_or_jump() {
    let w = write("call,originate");
    // A dynamic bridge profile's record_command is a shell command.
    let confbridge = Policy {
        functions: vec!["CONFBRIDGE".into()],
        ..Default::default()
    };
    refused(
        &confbridge,
        w,
        &[
            ("Action", "Originate"),
            ("Channel", "PJSIP/100"),
            ("Application", "Wait"),
            ("Data", "1"),
            ("Variable", "CONFBRIDGE(bridge,record_command)=/bin/sh -c id"),
        ],
    );
    // g()/h() jump to any context when a tone is heard.
    let mut tones = acme();
    tones.functions = vec!["TONE_DETECT".into()];
    refused(
        &tones,
        w,
        &[
            ("Action", "Originate"),
            ("Channel", "PJSIP/acme-100"),
            ("Application", "PlayTones"),
            ("Data", "440"),
            ("Variable", "TONE_DETECT(440,,h(beta,s,1))=1"),
        ],
    );
    let cc = Policy {
        functions: vec!["CALLCOMPLETION".into()],
        ..Default::default()
    };
    refused(&cc, w, &setvar("CALLCOMPLETION(cc_callback_sub)", "beta,s,1"));
}

#[test]
fn a_list_of_contexts_binds_shared_applications_and_functions() {
    let w = write("call,originate");
    let outbound = Policy {
        applications: Some(vec!["Dial".into(), "Wait".into()]),
        functions: vec!["CHANNEL".into()],
        scope: Scope {
            contexts: vec![Glob::new("outbound")].into(),
            ..Default::default()
        },
        ..Default::default()
    };
    let originate = |app: &'static str, data: &'static str| {
        [
            ("Action", "Originate"),
            ("Channel", "PJSIP/100"),
            ("Application", app),
            ("Data", data),
        ]
    };
    refused(&outbound, w, &originate("Dial", "Local/s@internal"));
    refused(
        &outbound,
        w,
        &[
            ("Action", "Originate"),
            ("Channel", "PJSIP/100"),
            ("Application", "Wait"),
            ("Data", "1"),
            ("Variable", "CHANNEL(hangup_handler_push)=internal,s,1"),
        ],
    );
    allowed(&outbound, w, &originate("Wait", "1"));
    // Without a list of contexts, shared reach is the unscoped user's to use.
    let free = Policy {
        applications: outbound.applications.clone(),
        ..Default::default()
    };
    allowed(&free, w, &originate("Dial", "Local/s@internal"));
}

#[test]
fn sound_names_are_no_urls_and_builtins_are_case_sensitive() {
    let w = write("call,originate");
    for data in [
        "http://169.254.169.254/latest/meta-data/x",
        "beep&https://example.com/a",
    ] {
        refused(
            &acme(),
            w,
            &[
                ("Action", "Originate"),
                ("Channel", "PJSIP/acme-1"),
                ("Application", "Playback"),
                ("Data", data),
            ],
        );
    }
    let getvar = |v: &'static str| [("Action", "Getvar"), ("Channel", "PJSIP/acme-1"), ("Variable", v)];
    // `exten` is not Asterisk's EXTEN: it is looked up in the global variables.
    refused(&acme(), w, &getvar("exten"));
    allowed(&acme(), w, &getvar("EXTEN"));
}

#[test]
fn a_second_action_id_is_refused() {
    let w = write("user,call");
    let ue = [
        ("Action", "UserEvent"),
        ("UserEvent", "x"),
        ("ActionID", "mine"),
        ("ActionID", "victim-42"),
    ];
    refused(&Policy::default(), w, &ue);
    refused(
        &acme(),
        w,
        &[
            ("Action", "UserEvent"),
            ("UserEvent", "x"),
            ("ActionID", "a"),
            ("actionid", "b"),
        ],
    );
    allowed(&Policy::default(), w, &ue[..3]);
    // Elsewhere Asterisk reads the first and copies none: harmless, and allowed.
    allowed(
        &Policy::default(),
        w,
        &[("Action", "Ping"), ("ActionID", "a"), ("ActionID", "b")],
    );
}
