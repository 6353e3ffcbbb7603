//! TLS listeners, and a real client library (panoramisk) through the proxy over TLS.

mod common;

use common::*;
use rustls::pki_types::ServerName;
use std::process::Command;

async fn tls_client(
    addr: std::net::SocketAddr,
    ca: &std::path::Path,
    version: &'static rustls::SupportedProtocolVersion,
) -> Client {
    let cfg = tls_client_config(ca, &[version]);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    Client::over(Box::new(tls)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_login_and_ping_with_tls12_and_tls13() {
    let sim = sim("pbx1").await;
    let (proxy, ca) = tls_proxy(&[&sim]);
    for v in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let mut c = tls_client(proxy.addr(), &ca, v).await;
        assert!(c.banner.starts_with("Asterisk Call Manager/"));
        c.send("Action: Login\r\nUsername: admin\r\nSecret: admin-secret\r\nActionID: l\r\n\r\n")
            .await;
        assert_eq!(c.response("l").await.get("Message"), Some("Authentication accepted"));
        c.send("Action: Ping\r\nActionID: p\r\n\r\n").await;
        assert_eq!(c.response("p").await.get("Ping"), Some("Pong"));
    }
    // Garbage instead of a TLS handshake does not hurt the listener.
    let mut raw = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut raw, b"Action: Login\r\n\r\n\x16\x03\x01garbage")
        .await
        .unwrap();
    drop(raw);
    let mut c = tls_client(proxy.addr(), &ca, &rustls::version::TLS13).await;
    c.send("Action: Login\r\nUsername: admin\r\nSecret: admin-secret\r\nActionID: l\r\n\r\n")
        .await;
    assert_eq!(c.response("l").await.get("Message"), Some("Authentication accepted"));
}

fn python_has_panoramisk() -> bool {
    let mut check = Command::new("python3");
    check.args(["-c", "import panoramisk"]);
    client_library(
        "panoramisk",
        "python3 -m pip install -r tests/python/requirements.txt",
        check,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panoramisk_through_the_proxy_over_tls() {
    if !python_has_panoramisk() {
        return;
    }
    let s1 = sim_with("pbx1", |c| c.channel_id_base = 0).await;
    let s2 = sim_with("pbx2", |c| c.channel_id_base = 0x1000).await;
    let (proxy, ca) = tls_proxy(&[&s1, &s2]);
    // Make sure both links are up before the script runs.
    let mut c = tls_client(proxy.addr(), &ca, &rustls::version::TLS13).await;
    c.send("Action: Login\r\nUsername: admin\r\nSecret: admin-secret\r\nActionID: l\r\n\r\n")
        .await;
    c.response("l").await;
    for s in ["pbx1", "pbx2"] {
        wait_upstream(&mut c, s).await;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/python/proxy_panoramisk.py");
    let out = tokio::process::Command::new("python3")
        .arg(script)
        .arg("127.0.0.1")
        .arg(proxy.addr().port().to_string())
        .arg(&ca)
        .args(["admin", "admin-secret"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "panoramisk failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ok:"), "{stdout}");
    assert!(stdout.contains("'pbx1', 'pbx2'"), "merged list from both: {stdout}");
}

/// An upstream link over TLS, verified against a configured CA: proxy B's upstream is proxy
/// A's TLS listener (which fronts a sim). With the wrong CA the link never comes up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_link_over_tls_is_verified() {
    let sim = sim("pbx1").await;
    let (front, ca) = tls_proxy(&[&sim]);
    let (_other, wrong_ca) = tls_proxy(&[&sim]);
    let upstream = |ca: &std::path::Path| {
        format!(
            "[[upstream]]\nname = \"front\"\nkind = \"asterisk\"\naddress = \"{}\"\nusername = \"admin\"\nsecret = \"admin-secret\"\ntls = true\nca = \"{}\"\nserver_name = \"localhost\"\nreconnect_min_ms = 50\nreconnect_max_ms = 200\n\n{USERS}",
            front.addr(),
            ca.display()
        )
    };
    let good = start_proxy(&upstream(&ca));
    let mut c = Client::login(good.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut c, "front").await;
    c.send("Action: DBPut\r\nFamily: t\r\nKey: k\r\nVal: v\r\nActionID: put\r\n\r\n")
        .await;
    assert_eq!(
        c.response("put").await.get("Message"),
        Some("Updated database successfully")
    );

    let bad = start_proxy_env(&upstream(&wrong_ca), &[("RUST_LOG", "warn")], true);
    eventually("a certificate error in the log", || bad.log().contains("tls handshake")).await;
    let mut c = Client::login(bad.addr(), "admin", "admin-secret").await;
    c.send("Action: Ping\r\nServer: front\r\nActionID: p\r\n\r\n").await;
    assert_eq!(
        c.response("p").await.get("Message"),
        Some("Upstream server front is not connected")
    );
}
