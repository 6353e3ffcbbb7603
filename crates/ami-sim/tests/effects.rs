//! The journal of side effects, driven over TCP: what Getvar, Setvar, Status, Originate
//! (`Variable:` headers, `Application` + `Data`) and MixMonitor make the simulated PBX
//! do, exactly, and what Asterisk's own guards refuse.

mod common;
use ami_sim::{Effect, SimConfig, SimHandle};
use common::{eventually, header, sim, sim_with, Client, DEADLINE};
use std::time::Duration;

async fn admin(sim: &SimHandle) -> Client {
    let mut c = Client::connect(sim).await;
    c.login("admin", "admin-secret", "call").await;
    c
}

fn call(name: &str, args: &str) -> Effect {
    Effect::FunctionCall {
        name: name.into(),
        args: args.into(),
    }
}

fn app(channel: &str, app: &str, data: &str) -> Effect {
    Effect::AppRun {
        channel: channel.into(),
        app: app.into(),
        data: data.into(),
    }
}

/// Effects of one call's two halves (`…;1`, `…;2`), in order.
fn of_call(sim: &SimHandle, one: &str) -> Vec<Effect> {
    let base = one.trim_end_matches(";1");
    sim.effects()
        .into_iter()
        .filter(|e| !matches!(e, Effect::AppRun { channel, .. } if !channel.starts_with(base)))
        .collect()
}

/// Sends an async Originate and returns its `;1` channel from the OriginateResponse.
async fn originate(c: &mut Client, id: &str, extra: &str) -> String {
    let r = c
        .action(&format!(
            "Action: Originate\r\nActionID: {id}\r\nAsync: true\r\n{extra}\r\n"
        ))
        .await;
    assert!(r.contains("Originate successfully queued"), "{r}");
    loop {
        let ev = c.next_event("OriginateResponse").await;
        if header(&ev, "ActionID") == Some(id) {
            assert_eq!(header(&ev, "Response"), Some("Success"), "{ev}");
            return header(&ev, "Channel").unwrap().to_owned();
        }
    }
}

#[tokio::test]
async fn getvar_and_setvar_functions() {
    let sim = sim().await;
    let mut c = admin(&sim).await;

    let r = c
        .action("Action: Getvar\r\nActionID: g1\r\nVariable: SHELL(id)\r\n\r\n")
        .await;
    assert_eq!(
        r,
        "Response: Success\r\nActionID: g1\r\nVariable: SHELL(id)\r\nValue: \r\n\r\n"
    );
    assert_eq!(sim.effects(), vec![call("SHELL", "id"), Effect::Shell("id".into())]);
    sim.clear_effects();

    // FILE() writes are journaled, never performed.
    let path = std::env::temp_dir().join(format!("ami-sim-effects-{}", std::process::id()));
    let path = path.to_string_lossy().into_owned();
    let r = c
        .action(&format!(
            "Action: Setvar\r\nActionID: s1\r\nVariable: FILE({path})\r\nValue: owned\r\n\r\n"
        ))
        .await;
    assert_eq!(r, "Response: Success\r\nActionID: s1\r\nMessage: Variable Set\r\n\r\n");
    assert!(!std::path::Path::new(&path).exists());
    assert_eq!(
        sim.effects(),
        vec![
            Effect::FunctionWrite {
                name: "FILE".into(),
                args: path.clone(),
                value: "owned".into()
            },
            Effect::FileWrite(path.clone()),
        ]
    );
    sim.clear_effects();

    // A leaked manager secret shows in the answer and the journal.
    let r = c
        .action("Action: Getvar\r\nVariable: AST_CONFIG(manager.conf,admin,secret)\r\n\r\n")
        .await;
    assert_eq!(header(&r, "Value"), Some("admin-secret"));
    assert_eq!(
        sim.effects(),
        vec![
            call("AST_CONFIG", "manager.conf,admin,secret"),
            Effect::ConfigRead {
                file: "manager.conf".into(),
                category: "admin".into(),
                variable: "secret".into()
            }
        ]
    );
    sim.clear_effects();

    // Plain variables without a channel are globals; a read-only function cannot be set.
    let r = c.action("Action: Setvar\r\nVariable: G\r\nValue: 1\r\n\r\n").await;
    assert!(r.contains("Variable Set"), "{r}");
    let r = c
        .action("Action: Setvar\r\nVariable: SHELL(x)\r\nValue: 1\r\n\r\n")
        .await;
    assert_eq!(r, "Response: Error\r\nMessage: Variable not set\r\n\r\n");
    let r = c.action("Action: Getvar\r\nVariable: G\r\n\r\n").await;
    assert_eq!(header(&r, "Value"), Some("1"));
    assert_eq!(
        sim.effects(),
        vec![
            Effect::GlobalWrite("G".into()),
            Effect::FunctionWrite {
                name: "SHELL".into(),
                args: "x".into(),
                value: "1".into()
            },
            Effect::GlobalRead("G".into()),
        ]
    );
}

#[tokio::test]
async fn asterisk_guards() {
    // manager.c: Getvar / Status refuse SHELL and EVAL to a user without `system`.
    let sim = sim().await;
    let mut c = Client::connect(&sim).await;
    c.login("reporting", "reporting-secret", "off").await;
    let r = c.action("Action: Getvar\r\nVariable: EVAL(${SHELL(id)})\r\n\r\n").await;
    assert_eq!(
        r,
        "Response: Error\r\nMessage: GetVar Access Forbidden: Variable\r\n\r\n"
    );
    let r = c.action("Action: Status\r\nVariables: SHELL(id)\r\n\r\n").await;
    assert_eq!(
        r,
        "Response: Error\r\nMessage: Status Access Forbidden: Variables\r\n\r\n"
    );
    assert_eq!(sim.effects(), vec![]);

    // live_dangerously = no: escalating functions are refused on the manager thread.
    let sim = sim_with(SimConfig {
        auth_delay: Duration::from_millis(50),
        live_dangerously: false,
        ..SimConfig::default()
    })
    .await;
    let mut c = admin(&sim).await;
    let r = c.action("Action: Getvar\r\nVariable: SHELL(id)\r\n\r\n").await;
    assert_eq!(header(&r, "Value"), Some(""));
    let r = c
        .action("Action: Setvar\r\nVariable: FILE(/tmp/x)\r\nValue: y\r\n\r\n")
        .await;
    assert!(r.contains("Variable not set"), "{r}");
    let r = c.action("Action: Getvar\r\nVariable: ENV(HOME)\r\n\r\n").await;
    assert_eq!(header(&r, "Value"), Some(""));
    assert_eq!(sim.effects(), vec![call("ENV", "HOME"), Effect::EnvRead("HOME".into())]);
}

#[tokio::test]
async fn originate_variables_and_application_data() {
    let sim = sim().await;
    let mut c = admin(&sim).await;

    // Variable: headers (any case), split as Asterisk splits them; functions are written
    // on the ;1 half, in Asterisk's (reversed) order.
    let one = originate(
        &mut c,
        "o1",
        "Channel: Local/100@default\r\nApplication: Wait\r\nData: 1\r\nVariable: DB(acme/k)=v,PLAIN=\"a,b\"\r\nvariable: GLOBAL(G1)=x\r\n",
    )
    .await;
    let two = one.replace(";1", ";2");
    eventually(DEADLINE, || sim.channel_count() == 0).await;
    assert_eq!(
        of_call(&sim, &one),
        vec![
            Effect::FunctionWrite {
                name: "GLOBAL".into(),
                args: "G1".into(),
                value: "x".into()
            },
            Effect::GlobalWrite("G1".into()),
            Effect::FunctionWrite {
                name: "DB".into(),
                args: "acme/k".into(),
                value: "v".into()
            },
            Effect::DbWrite("acme/k".into()),
            app(&two, "NoOp", "ext 100"),
            app(&two, "Answer", ""),
            app(&one, "Wait", "1"),
            app(&two, "Wait", "2"),
        ]
    );
    let r = c.action("Action: DBGet\r\nFamily: acme\r\nKey: k\r\n\r\n").await;
    assert!(r.contains("Result will follow"), "{r}");
    assert_eq!(header(&c.next_event("DBGetResponse").await, "Val"), Some("v"));
    sim.clear_effects();

    // Application data is substituted before the application runs.
    let one = originate(
        &mut c,
        "o2",
        "Channel: Local/100@default\r\nApplication: NoOp\r\nData: ${SHELL(id)}\r\n",
    )
    .await;
    let two = one.replace(";1", ";2");
    eventually(DEADLINE, || sim.channel_count() == 0).await;
    assert_eq!(
        of_call(&sim, &one),
        vec![
            app(&two, "NoOp", "ext 100"),
            app(&two, "Answer", ""),
            call("SHELL", "id"),
            Effect::Shell("id".into()),
            app(&one, "NoOp", ""),
            app(&two, "Wait", "2"),
        ]
    );
    sim.clear_effects();

    // Exec runs the application it names (its arguments substituted again).
    let one = originate(
        &mut c,
        "o3",
        "Channel: Local/100@default\r\nApplication: Exec\r\nData: System(echo $[6*7])\r\n",
    )
    .await;
    eventually(DEADLINE, || sim.channel_count() == 0).await;
    let e = of_call(&sim, &one);
    assert!(e.contains(&app(&one, "Exec", "System(echo 42)")), "{e:?}");
    assert!(e.contains(&app(&one, "System", "echo 42")), "{e:?}");
    assert!(e.contains(&Effect::Shell("echo 42".into())), "{e:?}");
}

#[tokio::test]
async fn cross_channel_applications_and_actions() {
    let sim = sim().await;
    let mut c = admin(&sim).await;

    // A long call to be the victim: its ;2 half waits 30 s in ext 600.
    let victim_one = originate(
        &mut c,
        "victim",
        "Channel: Local/600@default\r\nApplication: Wait\r\nData: 30\r\n",
    )
    .await;
    let victim = victim_one.replace(";1", ";2");
    assert_eq!(
        of_call(&sim, &victim_one),
        vec![
            app(&victim, "NoOp", "ext 600 -> long call"),
            app(&victim, "Answer", ""),
            app(&victim_one, "Wait", "30"),
            app(&victim, "Wait", "30"),
        ]
    );
    sim.clear_effects();

    // Status Variables: function reads on the listed channel.
    let r = c
        .action(&format!(
            "Action: Status\r\nActionID: st\r\nChannel: {victim}\r\nVariables: CHANNEL,SHELL(uname),NOPE\r\n\r\n"
        ))
        .await;
    assert!(r.contains("Channel status will follow"), "{r}");
    let st = c.next_event("Status").await;
    assert!(
        st.contains(&format!(
            "Variable: CHANNEL={victim}\r\nVariable: SHELL(uname)=\r\nVariable: NOPE=(null)\r\nActionID: st\r\n"
        )),
        "{st}"
    );

    assert_eq!(
        sim.effects(),
        vec![
            call("SHELL", "uname"),
            Effect::Shell("uname".into()),
            Effect::GlobalRead("NOPE".into())
        ]
    );
    sim.clear_effects();

    // MixMonitor: a recording and its post-recording command (^{ is ${ for it).
    let r = c
        .action(&format!(
            "Action: MixMonitor\r\nActionID: mm\r\nChannel: {victim}\r\nFile: spy.wav\r\nCommand: mail ^{{CHANNEL}}\r\n\r\n"
        ))
        .await;
    assert_eq!(r, "Response: Success\r\nActionID: mm\r\n\r\n");
    let r = c
        .action("Action: MixMonitor\r\nChannel: Local/nobody;1\r\nFile: x\r\n\r\n")
        .await;
    assert_eq!(r, "Response: Error\r\nMessage: No such channel\r\n\r\n");
    assert_eq!(
        sim.effects(),
        vec![
            Effect::Recording {
                path: "/var/spool/asterisk/monitor/spy.wav".into()
            },
            Effect::Shell(format!("mail {victim}")),
        ]
    );
    sim.clear_effects();

    // ChannelRedirect from a new call really moves the victim to ext 100.
    let one = originate(
        &mut c,
        "o4",
        &format!("Channel: Local/100@default\r\nApplication: ChannelRedirect\r\nData: {victim},default,100,1\r\n"),
    )
    .await;
    eventually(DEADLINE, || sim.effects().contains(&app(&victim, "NoOp", "ext 100"))).await;
    let e = of_call(&sim, &one);
    let redirect = [
        app(&one, "ChannelRedirect", &format!("{victim},default,100,1")),
        Effect::Redirect {
            channel: victim.clone(),
        },
    ];
    assert!(e.windows(2).any(|w| w == redirect), "{e:?}");
    // The victim's call ends after ext 100's Wait(2) and Hangup.
    eventually(DEADLINE, || sim.channel_count() == 0).await;
    let e = sim.effects();
    let victim_apps: Vec<&Effect> = e
        .iter()
        .filter(|x| matches!(x, Effect::AppRun { channel, .. } if *channel == victim))
        .collect();
    assert_eq!(
        victim_apps,
        vec![
            &app(&victim, "NoOp", "ext 100"),
            &app(&victim, "Answer", ""),
            &app(&victim, "Wait", "2"),
            &app(&victim, "Hangup", ""),
        ]
    );
}
