//! Operations through the binary: hot reload (kept clients, new policy at once, removed
//! users and upstreams), a refused reload, graceful shutdown, metrics and health.

mod common;

use common::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config(sims: &[&ami_sim::SimHandle], app_write: &str, extra_users: &str) -> String {
    format!(
        "[metrics]\naddress = \"127.0.0.1:0\"\n\n{}{USERS}\n[[user]]\nname = \"app\"\nsecret = \"app-secret\"\nread = \"all\"\nwrite = \"{app_write}\"\n{extra_users}",
        upstreams_toml(sims)
    )
}

const GONE: &str = "\n[[user]]\nname = \"gone\"\nsecret = \"gone-secret\"\nread = \"all\"\nwrite = \"all\"\n";

/// Rewrites the config file; the listener stays as it was (port 0), so it is kept.
fn write_config(proxy: &Proxy, text: &str) {
    std::fs::write(
        proxy.config_path(),
        format!("[[listener]]\naddress = \"127.0.0.1:0\"\n\n{text}"),
    )
    .unwrap();
}

async fn originate(c: &mut Client, aid: &str) -> String {
    c.send(&format!(
        "Action: Originate\r\nChannel: Local/100@default\r\nApplication: Wait\r\nData: 1\r\nActionID: {aid}\r\n\r\n"
    ))
    .await;
    c.response(aid).await.get("Message").unwrap_or("").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_clients_and_applies_at_once() {
    let s1 = sim("pbx1").await;
    let s2 = sim("pbx2").await;
    let proxy = start_proxy(&config(&[&s1], "", GONE));
    let mut app = Client::login(proxy.addr(), "app", "app-secret").await;
    let mut gone = Client::login(proxy.addr(), "gone", "gone-secret").await;
    wait_upstream(&mut app, "pbx1").await;
    assert_eq!(originate(&mut app, "before").await, "Permission denied");

    // New policy for app, user `gone` removed, upstream pbx1 replaced by pbx2.
    write_config(&proxy, &config(&[&s2], "originate", ""));
    proxy.signal("HUP");
    // pbx1's link ends and pbx2's begins in tasks of their own: either status may come
    // first, so both are awaited in any order.
    let (mut removed, mut added, mut announced) = (None, None, false);
    while removed.is_none() || added.is_none() {
        let ev = app.event("ProxyUpstreamStatus").await;
        match ev.get("Server") {
            // pbx1 coming up at start-up, announced late (see `next_status_change`).
            Some("pbx1") if ev.get("Status") == Some("Connected") && removed.is_none() && !announced => {
                announced = true;
            }
            Some("pbx1") => {
                assert!(removed.is_none(), "a second status for pbx1: {ev:?}");
                removed = Some(ev);
            }
            Some("pbx2") => {
                assert!(added.is_none(), "a second status for pbx2: {ev:?}");
                added = Some(ev);
            }
            _ => panic!("status of an unknown upstream: {ev:?}"),
        }
    }
    let (removed, added) = (removed.unwrap(), added.unwrap());
    assert_eq!(removed.get("Status"), Some("Disconnected"), "{removed:?}");
    assert_eq!(removed.get("Reason"), Some("removed from the configuration"));
    assert_eq!(added.get("Status"), Some("Connected"), "{added:?}");
    // Same connection, new rights.
    let r = originate(&mut app, "after").await;
    assert_eq!(r, "Originate successfully queued");
    // The removed user's session ended.
    assert!(gone.closed().await);
    // pbx1 is no longer routable.
    app.send("Action: Ping\r\nServer: pbx1\r\nActionID: p1\r\n\r\n").await;
    assert_eq!(
        app.response("p1").await.get("Message"),
        Some("Unknown upstream server: pbx1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_reload_is_refused_and_the_old_config_kept() {
    let s1 = sim("pbx1").await;
    let mut proxy = start_proxy_env(&config(&[&s1], "", ""), &[("RUST_LOG", "info")], true);
    let mut app = Client::login(proxy.addr(), "app", "app-secret").await;
    wait_upstream(&mut app, "pbx1").await;
    write_config(
        &proxy,
        "[[upstream]]\nname = \"bad name!\"\nkind = \"nope\"\n[proxy]\nslow_client = \"maybe\"\n",
    );
    proxy.signal("HUP");
    eventually("the refusal in the log", || proxy.log().contains("reload refused")).await;
    let log = proxy.log();
    assert!(log.contains("upstream[0].kind"), "{log}");
    assert!(log.contains("proxy.slow_client"), "{log}");
    // Everything still works, the old way.
    app.send("Action: Ping\r\nServer: pbx1\r\nActionID: p\r\n\r\n").await;
    assert_eq!(app.response("p").await.get("Response"), Some("Success"));
    assert_eq!(originate(&mut app, "o").await, "Permission denied");
    let mut again = Client::login(proxy.addr(), "app", "app-secret").await;
    again.send("Action: Ping\r\nActionID: q\r\n\r\n").await;
    assert_eq!(again.response("q").await.get("Ping"), Some("Pong"));
    assert!(proxy.running(), "the proxy exited after a refused reload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_sends_shutdown_and_exits_in_time() {
    let s1 = sim("pbx1").await;
    // Keepalive slower than the drain, so the stalled upstream is not dropped by its ping
    // timeout before the shutdown answers the action in flight.
    let text = config(&[&s1], "", "")
        .replace("ping_interval_secs = 0.5", "ping_interval_secs = 30")
        .replace("ping_timeout_secs = 1.0", "ping_timeout_secs = 30");
    // The action timeout is past the test's deadline, so only the drain's own bound (half
    // the shutdown timeout) can answer the action stalled upstream; the clients keep their
    // connections open, so only the proxy's bounds end their sessions. Answered and exited
    // before the deadline proves the shutdown bounded without timing it.
    let mut proxy = start_proxy(&format!(
        "[proxy]\nshutdown_timeout_secs = 3\naction_timeout_secs = 60\n\n{text}"
    ));
    let metrics = proxy.metrics.expect("metrics address");
    let mut a = Client::login(proxy.addr(), "admin", "admin-secret").await;
    let mut b = Client::login(proxy.addr(), "app", "app-secret").await;
    wait_upstream(&mut a, "pbx1").await;
    // An action in flight on a stalled upstream (polled: nothing answers it) is answered,
    // with an error, before the end.
    let in_flight = [("server", "pbx1")];
    scrape_until(metrics, "nothing in flight", |m| {
        m.get("amiproxy_upstream_in_flight", &in_flight) == 0.0
    })
    .await;
    s1.set_stalled(true);
    a.send("Action: DBGet\r\nFamily: x\r\nKey: y\r\nActionID: inflight\r\n\r\n")
        .await;
    scrape_until(metrics, "the action in flight", |m| {
        m.get("amiproxy_upstream_in_flight", &in_flight) == 1.0
    })
    .await;
    let t = std::time::Instant::now();
    proxy.signal("TERM");
    let r = a.response("inflight").await;
    assert_eq!(r.get("Message"), Some("Proxy is shutting down"));
    // Not at once: its answer was waited for during half the shutdown timeout first.
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "answered after {:?}",
        t.elapsed()
    );
    for c in [&mut a, &mut b] {
        let ev = c.event("Shutdown").await;
        assert_eq!(
            ev.as_bytes(),
            b"Event: Shutdown\r\nPrivilege: system,all\r\nShutdown: Cleanly\r\nRestart: False\r\nServer: amiproxy\r\n\r\n"
        );
        assert!(c.closed().await);
    }
    let status = proxy.wait_exit(DEADLINE).expect("the proxy exits");
    assert!(status.success(), "{status:?}");
    s1.set_stalled(false);
}

/// One sample: its name, its labels, its value.
type Sample = (String, Vec<(String, String)>, f64);

/// One scrape of `/metrics`.
struct Scrape(Vec<Sample>);

impl Scrape {
    async fn take(addr: std::net::SocketAddr) -> Scrape {
        let (code, text) = http_get(addr, "/metrics").await;
        assert_eq!(code, 200, "{text}");
        Scrape::parse(&text)
    }

    /// Prometheus text: `name{label="value",...} number` or `name number`; `#` lines are
    /// comments.
    fn parse(text: &str) -> Scrape {
        let mut samples = Vec::new();
        for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample {line:?}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
            let (name, labels) = match series.split_once('{') {
                None => (series, Vec::new()),
                Some((name, rest)) => {
                    let mut labels = Vec::new();
                    let mut rest = rest
                        .strip_suffix('}')
                        .unwrap_or_else(|| panic!("bad labels in {line:?}"));
                    while let Some((key, after)) = rest.split_once("=\"") {
                        let end = after.find('"').unwrap_or_else(|| panic!("bad label in {line:?}"));
                        labels.push((key.to_owned(), after[..end].to_owned()));
                        rest = after[end + 1..].trim_start_matches(',');
                    }
                    (name, labels)
                }
            };
            samples.push((name.to_owned(), labels, value));
        }
        Scrape(samples)
    }

    /// The sum of the samples of `name` that carry all of `labels`; None when there is none.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut matching = self
            .0
            .iter()
            .filter(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v)))
            .map(|(_, _, v)| *v)
            .peekable();
        matching.peek()?;
        Some(matching.sum())
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
    }
}

/// Scrapes until `f` holds for a scrape (for values the proxy updates after the answer a
/// client saw, or that pass through a moment of its own work); returns that scrape.
async fn scrape_until(addr: std::net::SocketAddr, what: &str, f: impl Fn(&Scrape) -> bool) -> Scrape {
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        let s = Scrape::take(addr).await;
        if f(&s) {
            return s;
        }
        assert!(tokio::time::Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_after_real_traffic() {
    let s1 = sim("pbx1").await;
    // No keepalive during the test, so what is in flight upstream is what the test sent.
    let text = config(&[&s1], "", "")
        .replace("ping_interval_secs = 0.5", "ping_interval_secs = 60")
        .replace("ping_timeout_secs = 1.0", "ping_timeout_secs = 60");
    let proxy = start_proxy(&text);
    let metrics = proxy.metrics.expect("metrics address");
    let before = Scrape::take(metrics).await;
    assert_eq!(before.value("amiproxy_logins_total", &[]).unwrap_or(0.0), 0.0);
    let mut a = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut a, "pbx1").await;
    let (code, body) = http_get(metrics, "/health").await;
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("\"status\":\"ready\"") && body.contains("\"name\":\"pbx1\",\"connected\":true"),
        "{body}"
    );
    a.send("Action: DBPut\r\nFamily: m\r\nKey: k\r\nVal: v\r\nActionID: put\r\n\r\n")
        .await;
    a.response("put").await;
    let mut app = Client::login(proxy.addr(), "app", "app-secret").await;
    assert_eq!(originate(&mut app, "denied").await, "Permission denied");
    // `ro` reads call and system only: the firehose's user events are dropped for it.
    let mut ro = Client::login(proxy.addr(), "ro", "ro-secret").await;
    ro.send("Action: Ping\r\nActionID: ro\r\n\r\n").await;
    ro.response("ro").await;
    s1.set_firehose(Some(1000));
    a.until(|m| m.get("SimSeq") == Some("50")).await;
    s1.set_firehose(None);
    // A round trip after the events: the session counted the batch it wrote them in.
    a.send("Action: Ping\r\nActionID: after-events\r\n\r\n").await;
    a.response("after-events").await;
    let mut bad = Client::connect(proxy.addr()).await;
    bad.send("Action: Login\r\nUsername: admin\r\nSecret: nope\r\nActionID: l\r\n\r\n")
        .await;
    bad.response("l").await;

    // Counted before each answer went out: exact for what this test alone did.
    let m = Scrape::take(metrics).await;
    assert_eq!(m.get("amiproxy_logins_total", &[("outcome", "accepted")]), 3.0);
    assert_eq!(m.get("amiproxy_logins_total", &[("outcome", "refused")]), 1.0);
    for user in ["admin", "app", "ro"] {
        assert_eq!(m.get("amiproxy_clients_connected", &[("user", user)]), 1.0, "{user}");
    }
    let dbput = [("action", "dbput"), ("server", "pbx1"), ("outcome", "forwarded")];
    assert_eq!(m.get("amiproxy_actions_total", &dbput), 1.0);
    let denied = [("action", "originate"), ("server", ""), ("outcome", "refused")];
    assert_eq!(m.get("amiproxy_actions_total", &denied), 1.0);
    // The one refusal, counted by why.
    assert_eq!(m.get("amiproxy_refusals_total", &[]), 1.0);
    // The refused login's session ends after its answer: counted soon after.
    scrape_until(metrics, "the refused login's session end", |m| {
        m.value("amiproxy_sessions_ended_total", &[("reason", "login-refused")]) == Some(1.0)
    })
    .await;
    let pings = [("action", "ping"), ("server", "pbx1"), ("outcome", "forwarded")];
    assert!(m.get("amiproxy_actions_total", &pings) >= 1.0);
    assert_eq!(m.get("amiproxy_upstream_up", &[("server", "pbx1")]), 1.0);
    assert_eq!(m.get("amiproxy_upstream_connects_total", &[("server", "pbx1")]), 1.0);
    assert!(m.get("amiproxy_events_in_total", &[("server", "pbx1")]) >= 50.0);
    assert!(m.get("amiproxy_events_out_total", &[]) >= 50.0);
    assert!(m.get("amiproxy_client_queue_depth_count", &[]) >= 1.0);
    // Latency of the answers to clients: the DBPut and at least one Ping through pbx1.
    let latency = [("server", "pbx1")];
    assert!(m.get("amiproxy_upstream_response_seconds_count", &latency) >= 2.0);
    assert!(m.get("amiproxy_upstream_response_seconds_sum", &latency) > 0.0);
    assert_eq!(
        m.get(
            "amiproxy_upstream_response_seconds_bucket",
            &[("server", "pbx1"), ("le", "+Inf")]
        ),
        m.get("amiproxy_upstream_response_seconds_count", &latency)
    );
    // Counted as `ro`'s session gets to the events, after its own answers.
    scrape_until(metrics, "events dropped for ro", |m| {
        m.get("amiproxy_events_dropped_total", &[("reason", "policy")]) >= 50.0
    })
    .await;

    // State sizes: an action and an async Originate held by a stalled upstream are in flight,
    // the Originate's ActionID kept for its OriginateResponse; both go once answered.
    let in_flight = [("server", "pbx1")];
    scrape_until(metrics, "nothing in flight", |m| {
        m.get("amiproxy_upstream_in_flight", &in_flight) == 0.0 && m.get("amiproxy_broadcast_actionids", &[]) == 0.0
    })
    .await;
    s1.set_stalled(true);
    a.send("Action: DBGet\r\nFamily: m\r\nKey: k\r\nActionID: held\r\n\r\n")
        .await;
    a.send("Action: Originate\r\nChannel: Local/100@default\r\nApplication: Wait\r\nData: 1\r\nAsync: true\r\nActionID: held-orig\r\n\r\n").await;
    let m = scrape_until(metrics, "two actions in flight", |m| {
        m.get("amiproxy_upstream_in_flight", &in_flight) == 2.0
    })
    .await;
    assert_eq!(m.get("amiproxy_broadcast_actionids", &[]), 1.0);
    s1.set_stalled(false);
    assert_eq!(a.response("held").await.get("Response"), Some("Success"));
    let ev = a.event("OriginateResponse").await;
    assert_eq!(ev.action_id(), Some("held-orig"), "{ev:?}");
    let m = scrape_until(metrics, "nothing in flight again", |m| {
        m.get("amiproxy_upstream_in_flight", &in_flight) == 0.0
    })
    .await;
    assert_eq!(m.get("amiproxy_broadcast_actionids", &[]), 0.0);
    assert_eq!(
        m.get(
            "amiproxy_actions_total",
            &[("action", "dbget"), ("outcome", "forwarded")]
        ),
        1.0
    );
    let orig = [("action", "originate"), ("server", "pbx1"), ("outcome", "forwarded")];
    assert_eq!(m.get("amiproxy_actions_total", &orig), 1.0);

    let (code, _) = http_get(metrics, "/nope").await;
    assert_eq!(code, 404);
    // Not ready when no upstream is connected.
    s1.stop_listener().await;
    a.until(|m| m.get("Status") == Some("Disconnected")).await;
    let (code, body) = http_get(metrics, "/health").await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(Scrape::take(metrics).await.get("amiproxy_upstream_up", &in_flight), 0.0);
}

/// One raw exchange with the metrics endpoint: what the proxy writes until it closes.
async fn http_raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_endpoint_checks_methods_and_bounds_requests() {
    let s1 = sim("pbx1").await;
    let proxy = start_proxy(&config(&[&s1], "", ""));
    let metrics = proxy.metrics.expect("metrics address");
    // HEAD: the head of GET, no body.
    let out = http_raw(metrics, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("\r\n\r\n"), "{out}");
    // Other methods: 405 with the methods allowed.
    let out = http_raw(
        metrics,
        b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 405"), "{out}");
    assert!(out.to_ascii_lowercase().contains("\r\nallow: get, head\r\n"), "{out}");
    // A head that never ends is dropped (after the proxy's 5 s header timeout).
    let out = http_raw(metrics, b"GET /health HTTP/1.1\r\nHost: x\r\n").await;
    assert_eq!(out, "");
}
