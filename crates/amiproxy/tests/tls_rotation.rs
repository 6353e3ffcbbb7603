//! Certificate rotation without drops, through the real binary: a reload with a new
//! certificate (by path, or by content under the same path) reaches new handshakes while
//! every established client stays; a broken file is refused and the old certificate kept.
//! Also the handshake's settings (resumption, version floor, timeout) and the expiry metric.

mod common;

use common::pki::*;
use common::*;
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncReadExt;

fn config(leaf: &Leaf, tls_extra: &str, rest: &str) -> String {
    format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\ntls = {{ cert = \"{}\", key = \"{}\"{tls_extra} }}\n\n{rest}{USERS}",
        leaf.cert.display(),
        leaf.key.display()
    )
}

/// A logged-in TLS client and the fingerprint of the certificate it was shown.
async fn tls_login(addr: std::net::SocketAddr, ca: &Path) -> (Client, String) {
    let (mut c, seen, _) = tls_connect(addr, &client_config(ca, None)).await.unwrap();
    c.send("Action: Login\r\nUsername: admin\r\nSecret: admin-secret\r\nActionID: l\r\n\r\n")
        .await;
    assert_eq!(c.response("l").await.get("Message"), Some("Authentication accepted"));
    (c, seen)
}

/// Waits until new handshakes are shown the certificate `sha256`.
async fn until_shown(addr: std::net::SocketAddr, ca: &Path, sha256: &str) {
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (_, seen, _) = tls_connect(addr, &client_config(ca, None)).await.unwrap();
        if seen == sha256 {
            return;
        }
        assert!(tokio::time::Instant::now() < end, "new handshakes never saw {sha256}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn ping_all(clients: &mut [(Client, String)], round: &str) {
    for (i, (c, _)) in clients.iter_mut().enumerate() {
        let aid = format!("{round}-{i}");
        c.send(&format!("Action: Ping\r\nActionID: {aid}\r\n\r\n")).await;
        assert_eq!(
            c.response(&aid).await.get("Ping"),
            Some("Pong"),
            "client {i} after {round}"
        );
    }
}

/// Replaces a file's content at once (a rename), as a deploy hook should.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_every_client_and_new_handshakes_see_the_new_certificate() {
    let sim = sim("pbx1").await;
    let dir = tempdir("rotation");
    let ca = Ca::new(&dir, "Rotation CA");
    let one = ca.leaf(&dir, "one", LeafSpec::server("one"));
    let two = ca.leaf(&dir, "two", LeafSpec::server("two"));
    let three = ca.leaf(&dir, "three", LeafSpec::server("three"));
    let text = |leaf: &Leaf| {
        config(
            leaf,
            "",
            &format!("[proxy]\nwatch_config = true\n\n{}", upstreams_toml(&[&sim])),
        )
    };
    let proxy = start_proxy_env(&text(&one), &[("RUST_LOG", "info")], true);
    let mut clients = Vec::new();
    for _ in 0..100 {
        clients.push(tls_login(proxy.addr(), &ca.path).await);
    }
    assert!(clients.iter().all(|(_, seen)| *seen == one.sha256));

    // A new path, and SIGHUP (as a deploy hook sends it).
    std::fs::write(proxy.config_path(), text(&two)).unwrap();
    proxy.signal("HUP");
    until_shown(proxy.addr(), &ca.path, &two.sha256).await;
    ping_all(&mut clients, "after-path-change").await;

    // New content under the same path, no signal: watch_config polls the files.
    replace(&two.key, &three.key_pem);
    replace(&two.cert, &three.cert_pem);
    until_shown(proxy.addr(), &ca.path, &three.sha256).await;
    ping_all(&mut clients, "after-content-change").await;

    let log = proxy.log();
    assert!(!log.contains("Address already in use"), "{log}");
    assert!(log.contains("listener TLS settings replaced"), "{log}");
    // Nobody was dropped: every client is still there for one more round.
    ping_all(&mut clients, "at-the-end").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_certificate_is_refused_and_the_old_one_kept() {
    let sim = sim("pbx1").await;
    let dir = tempdir("broken");
    let ca = Ca::new(&dir, "Broken CA");
    let one = ca.leaf(&dir, "one", LeafSpec::server("one"));
    let other = ca.leaf(&dir, "other", LeafSpec::server("other"));
    let proxy = start_proxy_env(
        &config(&one, "", &upstreams_toml(&[&sim])),
        &[("RUST_LOG", "warn")],
        true,
    );
    let (mut c, seen) = tls_login(proxy.addr(), &ca.path).await;
    assert_eq!(seen, one.sha256);

    // Not a certificate at all.
    replace(
        &one.cert,
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
    );
    proxy.signal("HUP");
    eventually("the refusal in the log", || {
        proxy.log().contains("listener[0].tls.cert")
    })
    .await;
    assert!(proxy.log().contains("running configuration is kept"), "{}", proxy.log());
    let (_, seen) = tls_login(proxy.addr(), &ca.path).await;
    assert_eq!(seen, one.sha256, "the old certificate is still served");

    // A certificate that is not the key's.
    replace(&one.cert, &other.cert_pem);
    proxy.signal("HUP");
    eventually("the key's refusal in the log", || {
        proxy.log().contains("listener[0].tls.key")
    })
    .await;
    let (_, seen) = tls_login(proxy.addr(), &ca.path).await;
    assert_eq!(seen, one.sha256, "the old certificate is still served");

    // Mended: the next reload takes it.
    replace(&one.cert, &one.cert_pem);
    replace(&one.key, &one.key_pem);
    proxy.signal("HUP");
    c.send("Action: Ping\r\nActionID: p\r\n\r\n").await;
    assert_eq!(c.response("p").await.get("Ping"), Some("Pong"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_resume_the_version_floor_holds_and_a_silent_handshake_times_out() {
    let sim = sim("pbx1").await;
    let dir = tempdir("hygiene");
    let ca = Ca::new(&dir, "Hygiene CA");
    let leaf = ca.leaf(&dir, "leaf", LeafSpec::server("leaf"));
    let proxy = start_proxy(&config(&leaf, "", &upstreams_toml(&[&sim])));
    for v in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let cfg = client_config_versions(&ca.path, None, &[v]);
        let (_, _, resumed) = tls_connect(proxy.addr(), &cfg).await.unwrap();
        assert!(!resumed);
        // TLS 1.3 tickets arrive after the handshake: a second connection may need a
        // moment before the first one's ticket is stored.
        let end = tokio::time::Instant::now() + DEADLINE;
        loop {
            let (_, _, resumed) = tls_connect(proxy.addr(), &cfg).await.unwrap();
            if resumed {
                break;
            }
            assert!(tokio::time::Instant::now() < end, "{v:?} never resumed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    let strict = start_proxy(&config(
        &leaf,
        ", min_version = \"1.3\", handshake_timeout_secs = 0.5",
        &upstreams_toml(&[&sim]),
    ));
    let tls12 = client_config_versions(&ca.path, None, &[&rustls::version::TLS12]);
    assert!(tls_connect(strict.addr(), &tls12).await.is_err(), "TLS 1.2 refused");
    let tls13 = client_config_versions(&ca.path, None, &[&rustls::version::TLS13]);
    assert!(tls_connect(strict.addr(), &tls13).await.is_ok());
    // A client that never says hello is closed after the handshake timeout.
    let mut raw = tokio::net::TcpStream::connect(strict.addr()).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), raw.read(&mut buf))
        .await
        .expect("closed well before 5 s")
        .unwrap_or(0);
    assert_eq!(n, 0);
}

/// The value of a metric line that starts with `prefix` (name and labels).
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_expiry_of_each_certificate_is_in_sight() {
    let sim = sim("pbx1").await;
    let dir = tempdir("expiry");
    let ca = Ca::new(&dir, "Expiry CA");
    let mut spec = LeafSpec::server("soon");
    let not_after = time::OffsetDateTime::now_utc() + time::Duration::days(10);
    spec.not_after = not_after;
    let leaf = ca.leaf(&dir, "soon", spec);
    let text = config(
        &leaf,
        &format!(", client_ca = \"{}\", client_auth = \"optional\"", ca.path.display()),
        &format!("[metrics]\naddress = \"127.0.0.1:0\"\n\n{}", upstreams_toml(&[&sim])),
    );
    let proxy = start_proxy_env(&text, &[("RUST_LOG", "warn")], true);
    let metrics = proxy.metrics.unwrap();
    let (_, body) = http_get(metrics, "/metrics").await;
    let listener = format!(
        "amiproxy_tls_cert_expiry_seconds{{kind=\"listener\",name=\"{}\"}}",
        proxy.addr()
    );
    let left = metric(&body, &listener).unwrap_or_else(|| panic!("{listener} in {body}"));
    let want = (not_after - time::OffsetDateTime::now_utc()).whole_seconds() as f64;
    assert!((left - want).abs() < 120.0, "{left} vs {want}");
    // The client CA: the test CA ends on 2040-01-01.
    let ca_end = rcgen::date_time_ymd(2040, 1, 1);
    let want = (ca_end - time::OffsetDateTime::now_utc()).whole_seconds() as f64;
    let prefix = format!(
        "amiproxy_tls_cert_expiry_seconds{{kind=\"client_ca\",name=\"{}/Expiry CA\"}}",
        proxy.addr()
    );
    let left = metric(&body, &prefix).unwrap_or_else(|| panic!("{prefix} in {body}"));
    assert!((left - want).abs() < 120.0, "{left} vs {want}");
    // /health lists them; the log warned about the one that ends in 10 days.
    let (_, json) = http_get(metrics, "/health").await;
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    let certs = v["certificates"].as_array().unwrap();
    let soon = certs.iter().find(|c| c["kind"] == "listener").unwrap();
    assert_eq!(soon["subject"], "soon");
    assert!(soon["expires_in_secs"].as_i64().unwrap() < 10 * 86_400 + 60);
    assert!(certs.iter().any(|c| c["kind"] == "client_ca"), "{json}");
    eventually("the expiry warning", || {
        proxy.log().contains("certificate expires soon")
    })
    .await;
}

#[test]
fn check_config_reads_the_tls_files() {
    let dir = tempdir("check-tls");
    let ca = Ca::new(&dir, "Check CA");
    let leaf = ca.leaf(&dir, "leaf", LeafSpec::server("leaf"));
    let path = dir.join("proxy.toml");
    std::fs::write(
        &path,
        config(&leaf, "", "[[upstream]]\nname = \"pbx1\"\nkind = \"simulated\"\n\n"),
    )
    .unwrap();
    let check = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_amiproxy"))
            .arg("check-config")
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap()
    };
    assert!(check().status.success());
    std::fs::write(
        &leaf.key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let out = check();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("listener[0].tls.key"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_listeners_on_port_0_each_keep_their_own_certificate_across_a_reload() {
    let sim = sim("pbx1").await;
    let dir = tempdir("two-listeners");
    let ca = Ca::new(&dir, "Two CA");
    let [a, b, c] = ["a", "b", "c"].map(|n| ca.leaf(&dir, n, LeafSpec::server(n)));
    let text = |first: &Leaf, second: &Leaf| {
        let listener = |l: &Leaf| {
            format!(
                "[[listener]]\naddress = \"127.0.0.1:0\"\ntls = {{ cert = \"{}\", key = \"{}\" }}\n\n",
                l.cert.display(),
                l.key.display()
            )
        };
        format!(
            "{}{}{}{USERS}",
            listener(first),
            listener(second),
            upstreams_toml(&[&sim])
        )
    };
    let proxy = start_proxy(&text(&a, &b));
    let (first, second) = (proxy.addrs[0], proxy.addrs[1]);
    assert_eq!(tls_login(second, &ca.path).await.1, b.sha256);
    std::fs::write(proxy.config_path(), text(&a, &c)).unwrap();
    proxy.signal("HUP");
    until_shown(second, &ca.path, &c.sha256).await;
    assert_eq!(tls_login(first, &ca.path).await.1, a.sha256);
}

/// Connects with `cfg` until a handshake resumes a session.
async fn until_resumed(addr: std::net::SocketAddr, cfg: &std::sync::Arc<rustls::ClientConfig>) {
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (_, _, resumed) = tls_connect(addr, cfg).await.unwrap();
        if resumed {
            return;
        }
        assert!(tokio::time::Instant::now() < end, "no session resumed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_resume_across_a_rotation_but_not_across_new_client_certificate_settings() {
    let sim = sim("pbx1").await;
    let dir = tempdir("resume");
    let ca = Ca::new(&dir, "Resume CA");
    let one = ca.leaf(&dir, "one", LeafSpec::server("one"));
    let two = ca.leaf(&dir, "two", LeafSpec::server("two"));
    let proxy = start_proxy_env(
        &config(&one, "", &upstreams_toml(&[&sim])),
        &[("RUST_LOG", "info")],
        true,
    );
    let proxy = &proxy;
    let replaced = |n: usize| move || proxy.log().matches("listener TLS settings replaced").count() >= n;
    let cfg = client_config_versions(&ca.path, None, &[&rustls::version::TLS13]);
    until_resumed(proxy.addr(), &cfg).await;

    std::fs::write(proxy.config_path(), config(&two, "", &upstreams_toml(&[&sim]))).unwrap();
    proxy.signal("HUP");
    eventually("the rotation", replaced(1)).await;
    until_resumed(proxy.addr(), &cfg).await;

    // A client CA now: sessions from before it are not resumed.
    let with_ca = format!(", client_ca = \"{}\", client_auth = \"optional\"", ca.path.display());
    std::fs::write(proxy.config_path(), config(&two, &with_ca, &upstreams_toml(&[&sim]))).unwrap();
    proxy.signal("HUP");
    eventually("the new client certificate settings", replaced(2)).await;
    let (_, seen, resumed) = tls_connect(proxy.addr(), &cfg).await.unwrap();
    assert!(!resumed, "a session from before the client CA was resumed");
    assert_eq!(seen, two.sha256);
}
