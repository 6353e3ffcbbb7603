//! The trust model at the wire, through the binary, against two simulated Asterisks that
//! evaluate what they are sent and journal every side effect: each class of attack, in its
//! variants (header case, repeated headers, bare LF, leading blanks, split across TCP writes,
//! nesting, functions inside application data), must be refused AND leave no trace on either
//! PBX; the same payloads from a trusted user do leave one, which proves the journal sees them.

mod common;

use ami_sim::Effect;
use common::*;

const USERS: &str = r#"
[[user]]
name = "root"
secret = "root-secret"
read = "all"
write = "all"

# Every class but system.
[[user]]
name = "dialer"
secret = "dialer-secret"
read = "all"
write = "call,originate,reporting,agent,user,config,command,dialplan,aoc,message,cc,dtmf,agi,log,verbose,test,security,cdr"

# A tenant: the `test` context, its Local channels, the support queue, its AstDB family.
[[user]]
name = "acme"
secret = "acme-secret"
read = "all"
write = "call,originate,reporting,agent,user"
channels = ["Local/*@test", "Local/*@test-*"]
queues = ["support"]
contexts = ["test"]
db_families = ["acme"]
functions = ["CALLERID"]

# Sees pbx2 only.
[[user]]
name = "pbx2only"
secret = "pbx2only-secret"
read = "all"
write = "call,user"
servers = ["pbx2"]

[[user]]
name = "hashed"
secret_hash = "HASH"
read = "all"
write = "call"

[limits]
failed_logins = 2
"#;

async fn setup() -> (ami_sim::SimHandle, ami_sim::SimHandle, Proxy) {
    let pbx1 = sim("pbx1").await;
    let pbx2 = sim("pbx2").await;
    let hash = amiproxy::auth::hash_secret("hashed-secret").unwrap();
    let users = USERS.replace("HASH", &hash);
    let proxy = start_proxy(&format!("{}{users}", upstreams_toml(&[&pbx1, &pbx2])));
    (pbx1, pbx2, proxy)
}

/// Effects that only a trusted user may cause: anything but applications and functions
/// that stay on the caller's own channel.
fn harmful(e: &Effect) -> bool {
    match e {
        Effect::AppRun { app, .. } => !["Wait", "NoOp", "Answer", "Hangup"].contains(&app.as_str()),
        Effect::FunctionCall { name, .. } | Effect::FunctionWrite { name, .. } => name != "CALLERID",
        _ => true,
    }
}

/// Sends `action` (with `\r\n` line ends) in one of the variants an attacker tries.
async fn send_variant(c: &mut Client, action: &str, aid: &str, variant: usize) {
    let text = format!("{action}ActionID: {aid}\r\n\r\n");
    match variant % 4 {
        0 => c.send(&text).await,
        // Bare LF line ends.
        1 => c.send(&text.replace("\r\n", "\n")).await,
        // One byte per TCP write.
        2 => {
            for b in text.as_bytes() {
                c.send_bytes(std::slice::from_ref(b)).await;
            }
        }
        // Header names in other cases, values with leading blanks.
        _ => {
            let mangled: String = text
                .split("\r\n")
                .map(|line| match line.split_once(": ") {
                    Some((k, v)) if !k.eq_ignore_ascii_case("ActionID") => {
                        format!("{}:    {v}", k.to_ascii_uppercase())
                    }
                    _ => line.to_owned(),
                })
                .collect::<Vec<_>>()
                .join("\r\n");
            c.send(&mangled).await
        }
    }
}

async fn refused(c: &mut Client, action: &str, aid: &str, variant: usize) {
    send_variant(c, action, aid, variant).await;
    let r = c.response(aid).await;
    assert_eq!(
        r.get("Message"),
        Some("Permission denied"),
        "variant {variant} of {action:?} got {r:?}"
    );
}

/// Waits until a harmless Originate sent after the attacks has run on `sim` (the journal is
/// in order: what the attacks caused is in it by then), and returns what is harmful.
async fn harm_after_sentinel(c: &mut Client, sim: &ami_sim::SimHandle, tag: &str) -> Vec<Effect> {
    let aid = format!("sentinel-{tag}");
    c.send(&format!(
        "Action: Originate\r\nChannel: Local/100@default\r\nApplication: NoOp\r\nData: {aid}\r\nAsync: true\r\nServer: {}\r\nActionID: {aid}\r\n\r\n",
        sim.name()
    ))
    .await;
    assert_eq!(c.response(&aid).await.get("Response"), Some("Success"));
    eventually("the sentinel ran", || {
        sim.effects()
            .iter()
            .any(|e| matches!(e, Effect::AppRun { app, data, .. } if app == "NoOp" && *data == aid))
    })
    .await;
    sim.effects().into_iter().filter(harmful).collect()
}

/// Run, read, write: everything a user without `system` tried in the attack run.
const ATTACKS: &[&str] = &[
    // Shell and recordings: MixMonitor is system in Asterisk 22.
    "Action: MixMonitor\r\nChannel: Local/100@default-00000000;1\r\nFile: /etc/cron.d/x\r\nCommand: id\r\n",
    // Files and AstDB through Originate's Variable.
    "Action: Originate\r\nChannel: Local/100@default\r\nApplication: Wait\r\nData: 1\r\nVariable: FILE(/tmp/x,,,al)=owned\r\n",
    "Action: Originate\r\nChannel: Local/100@default\r\nApplication: Wait\r\nData: 1\r\nVariable: A=1\r\nVariable: DB(family/key)=x\r\n",
    "Action: Originate\r\nChannel: Local/100@default\r\nApplication: Wait\r\nData: 1\r\nVariable: A=1,\"DB(f/k)\"=x\r\n",
    "Action: Originate\r\nChannel: Local/100@default\r\nApplication: Wait\r\nData: 1\r\nVariable: A\\,B=1,SHELL(id)=x\r\n",
    "Action: Originate\r\nChannel: Local/100@default\r\nApplication: Wait\r\nData: 1\r\nVariable: X=${SHELL(id)}\r\n",
    // Secrets, environment, shell, files by Getvar/Setvar.
    "Action: Getvar\r\nVariable: AST_CONFIG(manager.conf,admin,secret)\r\n",
    "Action: Getvar\r\nVariable: ENV(HOME)\r\n",
    "Action: Getvar\r\nVariable: SHELL(id)\r\n",
    "Action: Getvar\r\nVariable: shell(id)\r\n",
    "Action: Getvar\r\nVariable: FILE(/etc/passwd)\r\n",
    "Action: Getvar\r\nVariable: EVAL(${SHELL(id)})\r\n",
    "Action: Setvar\r\nVariable: FILE(/tmp/x)\r\nValue: owned\r\n",
    "Action: Setvar\r\nVariable: DB(family/key)\r\nValue: owned\r\n",
    // Applications and functions inside application data.
    "Action: Originate\r\nChannel: Local/100@default\r\nApplication: System\r\nData: touch /tmp/pwned\r\n",
    "Action: Originate\r\nChannel: Local/100@default\r\nApplication: TRYSYSTEM\r\nData: id\r\n",
    "Action: Originate\r\nChannel: Local/100@default\r\nApplication: Exec\r\nData: System(id)\r\n",
    "Action: Originate\r\nChannel: Local/100@default\r\nApplication: Set\r\nData: FILE(/tmp/x)=y\r\n",
    "Action: Originate\r\nChannel: Local/100@default\r\nApplication: NoOp\r\nData: ${SHELL(id)}\r\n",
    "Action: Originate\r\nChannel: Local/100@default\r\nApplication: Wait\r\nData: $[${DB(a/b)}+1]\r\n",
    "Action: Originate\r\nChannel: Local/100@default\r\nApplication: NoOp\r\nData: ${EVAL(${FILE(/etc/shadow)})}\r\n",
    "Action: Originate\r\nChannel: Local/100@default\r\nApplication: MixMonitor\r\nData: /tmp/x.wav,,id\r\n",
    "Action: Originate\r\nChannel: Local/100@default\r\nContext: default\r\nExten: 100\r\nPreDialGoSub: default,s,1(${SHELL(id)})\r\n",
    // A second Application header after a harmless one.
    "Action: Originate\r\nChannel: Local/100@default\r\nApplication: Wait\r\nApplication: System\r\nData: id\r\n",
    // Framing forged into the event stream.
    "Action: UserEvent\r\nUserEvent: x\r\nEvent: Hangup\r\n",
    "Action: UserEvent\r\nUserEvent: x\r\nPrivilege: system,all\r\n",
    // A header Asterisk does not document for the action.
    "Action: Getvar\r\nVariable: X\r\nVariables: SHELL(id)\r\n",
    // The proxy's own secret by a path that resolves to manager.conf, or a pattern.
    "Action: GetConfig\r\nFilename: .//manager.conf\r\n",
    "Action: GetConfig\r\nFilename: manager.con[f]\r\n",
    // Variables Asterisk acts on (a command when a recording stops, MixMonitor options).
    "Action: Setvar\r\nChannel: Local/100@default-00000000;1\r\nVariable: MONITOR_EXEC\r\nValue: touch /tmp/pwned\r\n",
    "Action: Setvar\r\nChannel: Local/100@default-00000000;1\r\nVariable: __TOUCH_MIXMONITOR_OPTIONS\r\nValue: b,id\r\n",
    // Another tenant's voicemail played to one's own phone.
    "Action: Originate\r\nChannel: Local/100@default\r\nApplication: Playback\r\nData: /var/spool/asterisk/voicemail/default/1000/INBOX/msg0000\r\n",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_system_runs_reads_and_writes_nothing() {
    let (pbx1, _pbx2, proxy) = setup().await;
    let mut c = Client::login(proxy.addr(), "dialer", "dialer-secret").await;
    wait_upstream(&mut c, "pbx1").await;
    pbx1.clear_effects();
    for (i, a) in ATTACKS.iter().enumerate() {
        let a = format!("{a}Server: pbx1\r\n");
        for variant in 0..4 {
            refused(&mut c, &a, &format!("atk-{i}-{variant}"), variant).await;
        }
    }
    let harm = harm_after_sentinel(&mut c, &pbx1, "dialer").await;
    assert!(harm.is_empty(), "the PBX did: {harm:?}");

    // The same payloads from a trusted user reach the PBX: the journal would have shown them.
    let mut root = Client::login(proxy.addr(), "root", "root-secret").await;
    pbx1.clear_effects();
    for (i, a) in ATTACKS[6..12].iter().enumerate() {
        root.send(&format!("{a}Server: pbx1\r\nActionID: root-{i}\r\n\r\n"))
            .await;
        let r = root.response(&format!("root-{i}")).await;
        assert_ne!(r.get("Message"), Some("Permission denied"), "{r:?}");
    }
    let harm = harm_after_sentinel(&mut root, &pbx1, "root").await;
    assert!(harm.contains(&Effect::Shell("id".into())), "{harm:?}");
    assert!(
        harm.iter()
            .any(|e| matches!(e, Effect::ConfigRead { file, .. } if file == "manager.conf")),
        "{harm:?}"
    );
    assert!(harm.contains(&Effect::FileRead("/etc/passwd".into())), "{harm:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_reaches_nothing_of_another_tenant() {
    let (pbx1, _pbx2, proxy) = setup().await;
    let mut root = Client::login(proxy.addr(), "root", "root-secret").await;
    wait_upstream(&mut root, "pbx1").await;
    // The other tenant's call: a long one in `default`.
    root.send("Action: Originate\r\nChannel: Local/600@default\r\nContext: default\r\nExten: 600\r\nPriority: 1\r\nAsync: true\r\nServer: pbx1\r\nActionID: call\r\n\r\n").await;
    let up = root
        .until(|m| m.event_name() == Some("Newchannel") && m.get("Channel").is_some_and(|c| c.ends_with(";1")))
        .await;
    let other = up.get("Channel").unwrap().to_owned();
    let other_uid = up.get("Uniqueid").unwrap().to_owned();
    let mut acme = Client::login(proxy.addr(), "acme", "acme-secret").await;
    pbx1.clear_effects();
    let attacks = [
        format!("Action: Originate\r\nChannel: Local/11@test\r\nApplication: ChannelRedirect\r\nData: {other},default,100,1\r\n"),
        format!("Action: Originate\r\nChannel: Local/11@test\r\nApplication: SoftHangup\r\nData: {other}\r\n"),
        "Action: Originate\r\nChannel: Local/11@test\r\nApplication: Queue\r\nData: sales\r\n".to_owned(),
        "Action: Originate\r\nChannel: Local/11@test\r\nApplication: ChanSpy\r\nData: Local/\r\n".to_owned(),
        "Action: Originate\r\nChannel: Local/11@test\r\nContext: default\r\nExten: 600\r\n".to_owned(),
        "Action: Originate\r\nChannel: Local/11@test\r\nExten: 600\r\n".to_owned(),
        "Action: Originate\r\nChannel: Local/600@default\r\nContext: test\r\nExten: 11\r\n".to_owned(),
        "Action: Originate\r\nChannel: Local/11@test\r\nContext: test\r\nExten: 11\r\nPreDialGoSub: default,600,1\r\n".to_owned(),
        format!("Action: Originate\r\nChannel: Local/11@test\r\nContext: test\r\nExten: 11\r\nVariable: SHARED(x,{other})=y\r\n"),
        "Action: Originate\r\nChannel: Local/11@test\r\nContext: test\r\nExten: 11\r\nVariable: QUEUE_MEMBER(sales,paused,Local/1@agents)=1\r\n".to_owned(),
        format!("Action: Getvar\r\nChannel: {other}\r\nVariable: X\r\n"),
        format!("Action: Getvar\r\nChannel: {other_uid}\r\nVariable: X\r\n"),
        format!("Action: Getvar\r\nChannel: Local/11@test-00000009;1\r\nVariable: IMPORT({other},X)\r\n"),
        "Action: Getvar\r\nChannel: Local/11@test-00000009;1\r\nVariable: CHANNELS()\r\n".to_owned(),
        "Action: Getvar\r\nChannel: Local/11@test-00000009;1\r\nVariable: QUEUE_MEMBER_LIST(sales)\r\n".to_owned(),
        "Action: Getvar\r\nVariable: GLOBALSECRET\r\n".to_owned(),
        "Action: Setvar\r\nVariable: GLOBALSECRET\r\nValue: x\r\n".to_owned(),
        format!("Action: Hangup\r\nChannel: {other}\r\n"),
        "Action: Hangup\r\nChannel: /default/\r\n".to_owned(),
        format!("Action: Redirect\r\nChannel: {other}\r\nContext: test\r\nExten: 11\r\nPriority: 1\r\n"),
        "Action: QueuePause\r\nInterface: Local/1@agents\r\nPaused: true\r\n".to_owned(),
        "Action: QueuePause\r\nInterface: Local/1@agents\r\nQueue: sales\r\nPaused: true\r\n".to_owned(),
        "Action: DBGet\r\nFamily: beta\r\nKey: k\r\n".to_owned(),
        "Action: DBGetTree\r\n".to_owned(),
        "Action: ShowDialPlan\r\nContext: default\r\n".to_owned(),
        format!("Action: UserEvent\r\nUserEvent: x\r\nChannel: Local/11@test-00000001;1\r\nDestChannel: {other}\r\n"),
        format!("Action: UserEvent\r\nUserEvent: x\r\nUniqueid: {other_uid}\r\n"),
        "Action: UserEvent\r\nUserEvent: x\r\nQueue: sales\r\n".to_owned(),
        "Action: Command\r\nCommand: core show channels\r\n".to_owned(),
        // DTMF into the other tenant's call, a global the channel lacks, the whole PBX.
        format!("Action: Originate\r\nChannel: Local/11@test\r\nApplication: SendDTMF\r\nData: 1234#,,,{other}\r\n"),
        "Action: Getvar\r\nChannel: Local/11@test-00000009;1\r\nVariable: GLOBALSECRET\r\n".to_owned(),
        "Action: Reload\r\n".to_owned(),
    ];
    for (i, a) in attacks.iter().enumerate() {
        let a = format!("{a}Server: pbx1\r\n");
        for variant in [0, 3] {
            refused(&mut acme, &a, &format!("t-{i}-{variant}"), variant).await;
        }
    }
    // Its own objects stay within reach.
    acme.send("Action: Originate\r\nChannel: Local/11@test\r\nContext: test\r\nExten: 11\r\nVariable: CALLERID(num)=42\r\nAsync: true\r\nServer: pbx1\r\nActionID: own\r\n\r\n").await;
    assert_eq!(acme.response("own").await.get("Response"), Some("Success"));
    let harm: Vec<Effect> = harm_after_sentinel(&mut root, &pbx1, "tenant")
        .await
        .into_iter()
        // The tenant's own call in `test` and the other tenant's long call run dialplan.
        .filter(|e| !matches!(e, Effect::AppRun { app, .. } if app == "Verbose"))
        .collect();
    assert!(harm.is_empty(), "the PBX did: {harm:?}");
    // The other tenant's call is still up.
    assert!(pbx1.channel_count() >= 2, "the other tenant's call was touched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_tags_are_the_proxys_and_user_events_stay_in_their_tenant() {
    let (pbx1, _pbx2, proxy) = setup().await;
    let mut root = Client::login(proxy.addr(), "root", "root-secret").await;
    wait_upstream(&mut root, "pbx1").await;
    wait_upstream(&mut root, "pbx2").await;
    let mut only2 = Client::login(proxy.addr(), "pbx2only", "pbx2only-secret").await;
    let mut acme = Client::login(proxy.addr(), "acme", "acme-secret").await;

    // An event from pbx1 that carries forged Server headers (an upstream's UserEvent
    // echoes what its sender wrote): the proxy's tag is the only one left.
    pbx1.emit(
        ami_proto::MessageBuilder::event("UserEvent")
            .header("Privilege", "user,all")
            .header("UserEvent", "forged")
            .header("Server", "pbx2")
            .header("server", "pbx2")
            .build(),
    );
    let ev = root.until(|m| m.get("UserEvent") == Some("forged")).await;
    assert_eq!(ev.get_all("Server").collect::<Vec<_>>(), ["pbx1"], "{ev:?}");

    // Two routing headers that disagree are refused; agreeing ones are one.
    root.send("Action: UserEvent\r\nUserEvent: twice\r\nServer: pbx1\r\nServer: pbx2\r\nActionID: two\r\n\r\n")
        .await;
    assert_eq!(root.response("two").await.get("Message"), Some("Permission denied"));
    root.send("Action: UserEvent\r\nUserEvent: same\r\nServer: pbx2\r\nSERVER: pbx2\r\nActionID: same\r\n\r\n")
        .await;
    assert_eq!(root.response("same").await.get("Response"), Some("Success"));
    // pbx2only sees pbx2's event with one tag, and never the forged pbx1 one: it would
    // have arrived before this one.
    let ev = only2.until(|m| m.event_name() == Some("UserEvent")).await;
    assert_eq!(ev.get("UserEvent"), Some("same"), "{ev:?}");
    assert_eq!(ev.get_all("Server").collect::<Vec<_>>(), ["pbx2"], "{ev:?}");

    // A UserEvent naming a tenant's channel and another's reaches neither tenant; one naming
    // only the tenant's channel reaches it.
    root.send("Action: UserEvent\r\nUserEvent: mixed\r\nChannel: Local/11@test-00000001;1\r\nDestChannel: Local/600@default-00000002;1\r\nServer: pbx1\r\nActionID: mixed\r\n\r\n").await;
    root.send("Action: UserEvent\r\nUserEvent: mine\r\nChannel: Local/11@test-00000001;1\r\nServer: pbx1\r\nActionID: mine\r\n\r\n").await;
    let ev = acme.until(|m| m.event_name() == Some("UserEvent")).await;
    assert_eq!(ev.get("UserEvent"), Some("mine"), "{ev:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_give_nothing_away() {
    let (_pbx1, _pbx2, proxy) = setup().await;
    let from = |last: u8| std::net::IpAddr::from([127, 0, 0, last]);
    let mut answers = Vec::new();
    for (user, secret) in [("nobody", "x"), ("hashed", "wrong"), ("root", "wrong")] {
        let mut c = Client::connect_from(proxy.addr(), from(2)).await;
        let sent = std::time::Instant::now();
        c.send(&format!(
            "Action: Login\r\nUsername: {user}\r\nSecret: {secret}\r\nActionID: l\r\n\r\n"
        ))
        .await;
        let r = c.response("l").await;
        // Every refusal is answered one second after the login arrived, not sooner.
        assert!(
            sent.elapsed() >= std::time::Duration::from_millis(990),
            "{user}: {:?}",
            sent.elapsed()
        );
        answers.push(r.as_bytes().to_vec());
        assert!(c.closed().await);
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");

    // Challenges: 128 random bits, different every time.
    let mut seen = Vec::new();
    for i in 0..2 {
        let mut c = Client::connect_from(proxy.addr(), from(3)).await;
        c.send(&format!(
            "Action: Challenge\r\nAuthType: MD5\r\nActionID: ch{i}\r\n\r\n"
        ))
        .await;
        let ch = c.response(&format!("ch{i}")).await.get("Challenge").unwrap().to_owned();
        assert!(ch.len() >= 30 && ch.bytes().all(|b| b.is_ascii_digit()), "{ch}");
        assert!(!seen.contains(&ch));
        seen.push(ch);
    }
    // Challenges count: with failed_logins = 2 an address may fetch 8 in the window; then it
    // is refused, even with the right secret.
    for i in 2..12 {
        let mut c = Client::connect_from(proxy.addr(), from(3)).await;
        c.send(&format!(
            "Action: Challenge\r\nAuthType: MD5\r\nActionID: ch{i}\r\n\r\n"
        ))
        .await;
        c.response(&format!("ch{i}")).await;
    }
    let addr = proxy.addr();
    let login = |last: u8| async move {
        let mut c = Client::connect_from(addr, std::net::IpAddr::from([127, 0, 0, last])).await;
        c.send("Action: Login\r\nUsername: root\r\nSecret: root-secret\r\nActionID: after\r\n\r\n")
            .await;
        c.response("after").await.get("Message").map(str::to_owned)
    };
    assert_eq!(login(3).await.as_deref(), Some("Authentication failed"));
    // Another address is not affected.
    assert_eq!(login(4).await.as_deref(), Some("Authentication accepted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_mapped_to_a_restricted_upstream_account_meets_asterisks_checks_too() {
    let pbx1 = sim_with("pbx1", |cfg| {
        cfg.users.push(ami_sim::SimUser::new(
            "proxy-low",
            "low-secret",
            "",
            "call,originate,reporting",
        ));
    })
    .await;
    let config = format!(
        "{}accounts = [{{ name = \"low\", username = \"proxy-low\", secret = \"low-secret\" }}]\n\n{}",
        upstreams_toml(&[&pbx1]),
        r#"
[[user]]
name = "root"
secret = "root-secret"
read = "all"
write = "all"

# Trusted by the proxy (system), but its actions go through the `low` account.
[[user]]
name = "app"
secret = "app-secret"
read = "all"
write = "all"
upstream_account = "low"
"#
    );
    let proxy = start_proxy(&config);
    let mut root = Client::login(proxy.addr(), "root", "root-secret").await;
    wait_upstream(&mut root, "pbx1").await;
    let mut apps = Vec::new();
    for _ in 0..3 {
        apps.push(Client::login(proxy.addr(), "app", "app-secret").await);
    }
    let app = &mut apps[0];
    // The account's link comes up beside the main one (polled: it connects on its own).
    let mut n = 0;
    loop {
        n += 1;
        app.send(&format!(
            "Action: Getvar\r\nVariable: SHELL(id)\r\nActionID: sh{n}\r\n\r\n"
        ))
        .await;
        let r = app.response(&format!("sh{n}")).await;
        if r.get("Message").is_some_and(|m| m.contains("not connected")) {
            assert!(n < 500, "the account link never came up");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        }
        // Passed by the proxy (the user has system), refused by Asterisk's own guard.
        assert_eq!(r.get("Response"), Some("Error"), "{r:?}");
        break;
    }
    app.send("Action: DBPut\r\nFamily: f\r\nKey: k\r\nVal: v\r\nActionID: db\r\n\r\n")
        .await;
    assert_eq!(app.response("db").await.get("Message"), Some("Permission denied"));
    // What the account may do works, async and sync Originate included: their
    // OriginateResponse comes on the main link (the account's has events off).
    app.send("Action: Originate\r\nChannel: Local/100@default\r\nApplication: Wait\r\nData: 1\r\nAsync: true\r\nActionID: async\r\n\r\n").await;
    assert_eq!(app.response("async").await.get("Response"), Some("Success"));
    let ev = app.until(|m| m.event_name() == Some("OriginateResponse")).await;
    assert_eq!(ev.action_id(), Some("async"), "{ev:?}");
    app.send(
        "Action: Originate\r\nChannel: Local/100@default\r\nApplication: Wait\r\nData: 1\r\nActionID: sync\r\n\r\n",
    )
    .await;
    assert_eq!(
        app.response("sync").await.get("Message"),
        Some("Originate successfully queued")
    );
    // One login per account, not per client: the main link and the account's.
    assert_eq!(pbx1.connection_count(), 2);
    let harm: Vec<Effect> = pbx1
        .effects()
        .into_iter()
        .filter(|e| matches!(e, Effect::Shell(_) | Effect::DbWrite(_)))
        .collect();
    assert!(harm.is_empty(), "{harm:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_asterisk_would_split_on_smuggles_nothing() {
    let (pbx1, _pbx2, proxy) = setup().await;
    let mut root = Client::login(proxy.addr(), "root", "root-secret").await;
    wait_upstream(&mut root, "pbx1").await;
    let mut c = Client::login(proxy.addr(), "pbx2only", "pbx2only-secret").await;
    pbx1.clear_effects();
    // A 1023-byte line with CRLF: Asterisk keeps its `\r`, reads the `\n` as an empty line,
    // and would run what follows as a second message.
    let pad = "A".repeat(1023 - "Pad: ".len());
    for (i, tail) in ["Action: Command\r\nCommand: core stop now\r\n", "Action: DBGetTree\r\n"]
        .iter()
        .enumerate()
    {
        c.send(&format!(
            "Action: UserEvent\r\nUserEvent: smuggle{i}\r\nActionID: s{i}\r\nPad: {pad}\r\n{tail}\r\n"
        ))
        .await;
        let r = c.response(&format!("s{i}")).await;
        assert_eq!(
            r.get("Message"),
            Some("Failed to parse message: line too long"),
            "{r:?}"
        );
    }
    // And one whose first line is a NUL (an empty line to Asterisk), from a trusted user.
    root.send(
        "Action: UserEvent\r\nUserEvent: smuggle-nul\r\nActionID: n\r\n\0\r\nAction: DBGetTree\r\nServer: pbx1\r\n\r\n",
    )
    .await;
    assert_eq!(root.response("n").await.get("Message"), Some("Permission denied"));
    let harm: Vec<Effect> = harm_after_sentinel(&mut root, &pbx1, "smuggle")
        .await
        .into_iter()
        .filter(|e| !matches!(e, Effect::AppRun { .. }))
        .collect();
    assert!(harm.is_empty(), "the PBX did: {harm:?}");
}

/// Behind a load balancer that speaks the PROXY protocol, the proxy judges the client, not
/// the balancer: `permit` rules match the client's address, and one client's failed logins
/// ban that client only. Only the listed balancers are believed, and from them a header is
/// required.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_balancer_the_client_address_is_judged() {
    let sim = ami_sim::start(ami_sim::SimConfig::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let proxy = start_proxy(&format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\nproxy_protocol_from = [\"127.0.0.1\"]\n\n\
         [limits]\nfailed_logins = 1\nfailed_login_window_secs = 60\nban_secs = 60\n\n{}\
         [[user]]\nname = \"office\"\nsecret = \"office-secret\"\nread = \"all\"\nwrite = \"call\"\n\
         permit = [\"203.0.113.0/24\"]\n",
        upstreams_toml(&[&sim])
    ));
    let addr = proxy.addr();
    let v1 = |src: &str| format!("PROXY TCP4 {src} 127.0.0.1 40000 5038\r\n").into_bytes();
    // Version 1 and version 2 headers name an office address: permitted.
    let mut c = via_balancer(addr, v1("203.0.113.7"), "127.0.0.1").await.unwrap();
    office_login(&mut c, "office-secret", "l1").await;
    assert_eq!(c.response("l1").await.get("Message"), Some("Authentication accepted"));
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    v2.extend_from_slice(&[203, 0, 113, 8, 127, 0, 0, 1, 0x9c, 0x40, 0x13, 0xae]);
    let mut c = via_balancer(addr, v2, "127.0.0.1").await.unwrap();
    office_login(&mut c, "office-secret", "l2").await;
    assert_eq!(c.response("l2").await.get("Message"), Some("Authentication accepted"));
    // A guesser behind the same balancer is banned, and only it.
    for aid in ["g1", "g2"] {
        let mut g = via_balancer(addr, v1("198.51.100.66"), "127.0.0.1").await.unwrap();
        office_login(&mut g, "wrong", aid).await;
        assert_eq!(g.response(aid).await.get("Message"), Some("Authentication failed"));
    }
    let mut c = via_balancer(addr, v1("203.0.113.7"), "127.0.0.1").await.unwrap();
    office_login(&mut c, "office-secret", "l3").await;
    assert_eq!(c.response("l3").await.get("Message"), Some("Authentication accepted"));
    // From the balancer, no header is no connection.
    assert!(via_balancer(addr, b"Action: Ping\r\n\r\n".to_vec(), "127.0.0.1")
        .await
        .is_err());
    // From anyone else, a header is not believed: the connection's own address is judged.
    let mut c = via_balancer(addr, Vec::new(), "127.0.0.2").await.unwrap();
    c.send("PROXY TCP4 203.0.113.7 127.0.0.1 40000 5038\r\n\r\n").await;
    office_login(&mut c, "office-secret", "l4").await;
    assert_eq!(c.response("l4").await.get("Message"), Some("Authentication failed"));
}

/// A connection from `from` that starts with `header`, as a balancer's would.
async fn via_balancer(addr: std::net::SocketAddr, header: Vec<u8>, from: &str) -> Result<Client, String> {
    use tokio::io::AsyncWriteExt;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut tcp = socket.connect(addr).await.unwrap();
    tcp.write_all(&header).await.unwrap();
    Client::try_over(Box::new(tcp)).await
}

async fn office_login(c: &mut Client, secret: &str, aid: &str) {
    c.send(&format!(
        "Action: Login\r\nUsername: office\r\nSecret: {secret}\r\nActionID: {aid}\r\n\r\n"
    ))
    .await;
}
