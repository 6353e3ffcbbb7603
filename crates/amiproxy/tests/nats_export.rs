//! The NATS JetStream export through the real binary against a real `nats-server`
//! (`[export.nats]`): subjects, headers, payload and filter; no event lost or stored twice
//! across a killed replica and a restarted nats-server; and AMI clients never held back by a
//! NATS that is away. The tests that need nats-server return early (with a notice) when it
//! is missing outside CI.

mod common;

use async_nats::jetstream;
use common::servers::{self, Nats};
use common::*;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One stored message, as the test reads it.
#[derive(Debug)]
struct Stored {
    subject: String,
    headers: BTreeMap<String, String>,
    payload: String,
}

impl Stored {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// `Key: Value` from the AMI text.
    fn ami(&self, key: &str) -> Option<&str> {
        self.payload
            .split("\r\n")
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(": ")))
    }
}

/// Everything the stream holds now, read with an ordered consumer.
async fn read_stream(url: &str, stream: &str) -> Vec<Stored> {
    let client = async_nats::connect(url).await.expect("the test connects to NATS");
    let js = jetstream::new(client);
    // Not there yet: the exporter creates it once it has an event to publish.
    let Ok(mut st) = js.get_stream(stream).await else {
        return Vec::new();
    };
    let n = st.info().await.expect("stream info").state.messages as usize;
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return out;
    }
    let consumer = st
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await
        .expect("an ordered consumer");
    let mut msgs = consumer.messages().await.expect("messages");
    let end = Instant::now() + Duration::from_secs(30);
    while out.len() < n {
        assert!(Instant::now() < end, "read only {} of {n} messages", out.len());
        let m = match tokio::time::timeout(Duration::from_secs(5), msgs.next()).await {
            Ok(Some(Ok(m))) => m,
            other => panic!("reading the stream: {other:?}"),
        };
        let headers = m
            .headers
            .iter()
            .flat_map(|h| h.iter())
            .map(|(k, v)| {
                (
                    k.to_string(),
                    v.first().map(|v| v.as_str().to_owned()).unwrap_or_default(),
                )
            })
            .collect();
        out.push(Stored {
            subject: m.subject.to_string(),
            headers,
            payload: String::from_utf8_lossy(&m.payload).into_owned(),
        });
    }
    out
}

/// One value from the proxy's `/metrics` (0 when the metric is not there yet).
async fn metric(addr: SocketAddr, name: &str) -> f64 {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("metrics endpoint");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut text = String::new();
    tokio::time::timeout(DEADLINE, s.read_to_string(&mut text))
        .await
        .expect("metrics in time")
        .expect("metrics read");
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Waits until `proxy`'s main link to `sim` delivers events: a marker event reaches a client.
async fn wait_events_flow(proxy: &Proxy, sim: &ami_sim::SimHandle) {
    let mut c = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut c, sim.name()).await;
    let end = Instant::now() + DEADLINE;
    for n in 0u64.. {
        assert!(Instant::now() < end, "events never flowed through the proxy");
        sim.emit(
            ami_proto::MessageBuilder::event("UserEvent")
                .header("Privilege", "user,all")
                .header("UserEvent", "Marker")
                .header("Marker", &n.to_string())
                .build(),
        );
        let seen = tokio::time::timeout(
            Duration::from_millis(300),
            c.until(|m| m.get("UserEvent") == Some("Marker")),
        )
        .await
        .is_ok();
        if seen {
            return;
        }
    }
}

fn export_toml(url: &str, extra: &str) -> String {
    format!("[metrics]\naddress = \"127.0.0.1:0\"\n\n[export.nats]\nurl = \"{url}\"\n{extra}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_jetstream_with_subject_headers_and_filter() {
    let Some(nats) = Nats::start() else { return };
    let sim = sim("pbx.1").await;
    let proxy = start_proxy(&format!(
        "{}{USERS}{}",
        upstreams_toml(&[&sim]),
        export_toml(
            &nats.url(),
            "replica = \"r1\"\nstorage = \"memory\"\nfilter = [\"!UserEvent: Marker\", \"!Seq: 3\\r\"]"
        )
    ));
    wait_events_flow(&proxy, &sim).await;
    emit_numbered(&sim, 1, 20, 0);
    let end = Instant::now() + DEADLINE;
    let stored = loop {
        let all = read_stream(&nats.url(), "AMI").await;
        if all.iter().filter(|s| s.ami("UserEvent") == Some("Numbered")).count() >= 19 {
            break all;
        }
        assert!(Instant::now() < end, "the stream holds {} messages", all.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        stored.iter().all(|s| s.ami("UserEvent") != Some("Marker")),
        "the filter keeps markers out"
    );
    assert!(
        stored.iter().all(|s| s.ami("Event") != Some("ProxyUpstreamStatus")),
        "the proxy's own events are not exported"
    );
    let numbered: Vec<&Stored> = stored
        .iter()
        .filter(|s| s.ami("UserEvent") == Some("Numbered"))
        .collect();
    let seqs: Vec<u64> = numbered.iter().filter_map(|s| s.ami("Seq")?.parse().ok()).collect();
    let want: Vec<u64> = (1..=20).filter(|n| *n != 3).collect();
    assert_eq!(seqs, want, "in order, Seq 3 filtered out");
    let mut last_seq = 0;
    for s in &numbered {
        assert_eq!(s.subject, "ami.pbx_1.UserEvent");
        assert_eq!(s.header("Ami-Server"), Some("pbx.1"));
        assert_eq!(s.header("Amiproxy-Replica"), Some("r1"));
        assert!(
            s.header("Nats-Msg-Id").is_some_and(|id| id.starts_with("pbx.1-")),
            "{s:?}"
        );
        let seq: u64 = s
            .header("Amiproxy-Seq")
            .and_then(|v| v.parse().ok())
            .expect("a sequence");
        assert!(seq > last_seq, "the replica's sequence grows");
        last_seq = seq;
        assert!(s.payload.starts_with("Event: UserEvent\r\n"), "{:?}", s.payload);
        assert!(s.payload.ends_with("\r\n\r\n"));
        assert_eq!(s.ami("Server"), Some("pbx.1"), "the server tag is in the AMI text");
    }
    let m = proxy.metrics.expect("metrics");
    assert_eq!(metric(m, "amiproxy_export_connected").await, 1.0);
    assert!(metric(m, "amiproxy_export_acked_total").await >= 19.0);
}

/// Two replicas export the same upstream; one is killed mid-stream, and nats-server is
/// killed and restarted mid-stream: every firehose event is stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_lost_or_doubled_across_a_killed_replica_and_a_nats_restart() {
    let Some(mut nats) = Nats::start() else { return };
    let sim = sim("pbx1").await;
    let config = format!(
        "{}{USERS}{}",
        upstreams_toml(&[&sim]),
        export_toml(&nats.url(), "ack_timeout_secs = 1.0")
    );
    let a = start_proxy(&config);
    let b = start_proxy(&config);
    wait_events_flow(&a, &sim).await;
    wait_events_flow(&b, &sim).await;
    let sent_at_least = |n: u64| {
        let sim = &sim;
        move || sim.firehose_sent() >= n
    };
    sim.set_firehose(Some(2000));
    servers::poll_until("firehose to pass 3000", Duration::from_secs(20), sent_at_least(3000));
    let mb = b.metrics.expect("metrics");
    assert!(
        metric(mb, "amiproxy_export_acked_total").await > 0.0,
        "replica b exports too"
    );
    drop(b); // SIGKILL
    servers::poll_until("firehose to pass 6000", Duration::from_secs(20), sent_at_least(6000));
    // nats-server is killed (SIGKILL) and stays away for 1.5 s of firehose, longer than
    // the ack timeout: publishes fail or go unacked and are sent again once it is back.
    nats.stop();
    servers::poll_until("firehose to pass 9000", Duration::from_secs(20), sent_at_least(9000));
    nats.start_again();
    servers::poll_until("firehose to pass 12000", Duration::from_secs(20), sent_at_least(12000));
    sim.set_firehose(None);
    let end = Instant::now() + Duration::from_secs(60);
    let (stored, n) = loop {
        let all = read_stream(&nats.url(), "AMI").await;
        let n = sim.firehose_sent();
        let fire = all.iter().filter(|s| s.ami("UserEvent") == Some("SimFirehose")).count() as u64;
        if fire >= n {
            break (all, n);
        }
        assert!(
            Instant::now() < end,
            "the stream holds {fire} of {n} firehose events (sim lagged: {})",
            sim.lagged_events()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(sim.lagged_events(), 0, "the sim dropped nothing to its sessions");
    let mut count = vec![0u32; n as usize + 1];
    for s in stored.iter().filter(|s| s.ami("UserEvent") == Some("SimFirehose")) {
        let seq: usize = s.ami("SimSeq").and_then(|v| v.parse().ok()).expect("SimSeq");
        assert!(seq >= 1 && seq <= n as usize, "SimSeq {seq} out of 1..={n}");
        count[seq] += 1;
    }
    let missing: Vec<usize> = (1..=n as usize).filter(|&i| count[i] == 0).collect();
    let doubled: Vec<usize> = (1..=n as usize).filter(|&i| count[i] > 1).collect();
    assert!(
        missing.is_empty(),
        "{} missing, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        doubled.is_empty(),
        "{} doubled, first {:?}",
        doubled.len(),
        &doubled[..doubled.len().min(10)]
    );
    let m = a.metrics.expect("metrics");
    assert!(
        metric(m, "amiproxy_export_errors_total").await >= 1.0,
        "replica a saw NATS go away"
    );
    eprintln!(
        "exported {n} firehose events once each; replica a: acked {} duplicates {} retries {} errors {}",
        metric(m, "amiproxy_export_acked_total").await,
        metric(m, "amiproxy_export_duplicates_total").await,
        metric(m, "amiproxy_export_retries_total").await,
        metric(m, "amiproxy_export_errors_total").await,
    );
}

/// A NATS that is not there never delays the proxy's start nor holds back a client: every
/// event reaches the client while the export reports itself down and drops for itself alone.
/// Needs no nats-server: the export points at a closed port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absent_nats_never_holds_back_clients() {
    let sim = sim("pbx1").await;
    let closed = format!("nats://127.0.0.1:{}", servers::free_port());
    let proxy = start_proxy(&format!(
        "[proxy]\nevent_buffer = 1024\n\n{}{USERS}{}",
        upstreams_toml(&[&sim]),
        export_toml(&closed, "buffer = 16\nmax_in_flight = 16")
    ));
    let mut c = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut c, "pbx1").await;
    wait_events_flow(&proxy, &sim).await;
    let mut next = 1;
    for chunk in 0..10u64 {
        let (first, last) = (chunk * 200 + 1, chunk * 200 + 200);
        emit_numbered(&sim, first, last, 100);
        while next <= last {
            let m = c.until(|m| numbered(m).is_some()).await;
            assert_eq!(numbered(&m), Some(("pbx1".to_owned(), next)), "every event, in order");
            next += 1;
        }
    }
    let m = proxy.metrics.expect("metrics");
    let end = Instant::now() + DEADLINE;
    while metric(m, "amiproxy_export_dropped_total").await < 500.0
        || metric(m, "amiproxy_export_errors_total").await < 1.0
    {
        assert!(
            Instant::now() < end,
            "the export never reported itself down and dropping"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metric(m, "amiproxy_export_connected").await, 0.0);
    assert_eq!(metric(m, "amiproxy_export_acked_total").await, 0.0);
}

/// A proxy stopped with SIGTERM hands over what its export still holds before it exits: here
/// events it buffered while nats-server was away, which is back just before the signal, while
/// the exporter waits out its backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_export() {
    let Some(mut nats) = Nats::start() else { return };
    let sim = sim("pbx1").await;
    let mut proxy = start_proxy(&format!(
        "[proxy]\nshutdown_timeout_secs = 15\n\n{}{USERS}{}",
        upstreams_toml(&[&sim]),
        export_toml(&nats.url(), "ack_timeout_secs = 0.5")
    ));
    wait_events_flow(&proxy, &sim).await;
    let mut c = Client::login(proxy.addr(), "admin", "admin-secret").await;
    let m = proxy.metrics.expect("metrics");
    let end = Instant::now() + DEADLINE;
    while metric(m, "amiproxy_export_connected").await < 1.0 {
        assert!(Instant::now() < end, "the export never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    nats.stop();
    emit_numbered(&sim, 1, 3000, 0);
    // The hub has them all once a client has the last one; the export holds them.
    c.until(|m| numbered(m).is_some_and(|(_, n)| n == 3000)).await;
    // Away long enough for the exporter's backoff to have grown past a second: without the
    // drain, the proxy would be gone before its next try.
    let end = Instant::now() + DEADLINE;
    while metric(m, "amiproxy_export_errors_total").await < 5.0 {
        if Instant::now() > end {
            let mut seen = Vec::new();
            for k in [
                "errors_total",
                "published_total",
                "acked_total",
                "buffered",
                "connected",
                "dropped_total",
            ] {
                seen.push((k, metric(m, &format!("amiproxy_export_{k}")).await));
            }
            panic!("the export never noticed NATS was away: {seen:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    nats.start_again();
    // No session left: without the drain, the shutdown would take no time at all.
    drop(c);
    proxy.signal("TERM");
    assert!(proxy.wait_exit(Duration::from_secs(20)).is_some(), "the proxy exits");
    let stored = read_stream(&nats.url(), "AMI").await;
    let mut seqs: Vec<u64> = stored
        .iter()
        .filter(|s| s.ami("UserEvent") == Some("Numbered"))
        .filter_map(|s| s.ami("Seq")?.parse().ok())
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 3000, "every event the proxy had read is in the stream");
}
