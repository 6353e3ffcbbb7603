//! Upstream pinning through the real binary: an upstream behind TLS with a certificate no
//! public CA issued (a TLS-terminating task in front of a simulated Asterisk), reached by a
//! pinned certificate digest (hex), a pinned public key (base64), or its CA; a wrong pin and
//! no pin at all refused, with a log line that tells the operator what to set.

mod common;

use base64::Engine;
use common::pki::*;
use common::*;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A TLS front for `backend`: terminates TLS with `leaf` and relays the bytes.
async fn tls_front(backend: SocketAddr, leaf: &Leaf) -> SocketAddr {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.der.clone())],
            PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut up) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    addr
}

fn upstream(name: &str, front: SocketAddr, tls: &str) -> String {
    format!(
        "[[upstream]]\nname = \"{name}\"\naddress = \"{front}\"\nusername = \"admin\"\nsecret = \"admin-secret\"\n{tls}\nreconnect_min_ms = 50\nreconnect_max_ms = 200\n\n"
    )
}

/// Hex with colons in capitals, as `openssl x509 -noout -fingerprint -sha256` prints it.
fn openssl_style(hex: &str) -> String {
    hex.to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

async fn metrics_text(addr: SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(DEADLINE, s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_upstreams_connect_and_the_others_say_what_to_set() {
    let sim = sim("pbx1").await;
    let dir = tempdir("pinning");
    let ca = Ca::new(&dir, "Private CA");
    let leaf = ca.leaf(&dir, "asterisk", LeafSpec::server("asterisk"));
    let front = tls_front(sim.addr(), &leaf).await;
    let (_, x509) = x509_parser::parse_x509_certificate(&leaf.der).unwrap();
    let spki = base64::engine::general_purpose::STANDARD.encode({
        use sha2::Digest;
        sha2::Sha256::digest(x509.public_key().raw)
    });
    let config = [
        // Under a pin, the name is not checked: the digest is the identity.
        upstream(
            "bycert",
            front,
            &format!(
                "pin_sha256 = [\"{}\"]\nserver_name = \"elsewhere\"",
                openssl_style(&leaf.sha256)
            ),
        ),
        upstream("byspki", front, &format!("pin_sha256 = [\"{spki}\"]")),
        upstream(
            "byca",
            front,
            &format!("ca = \"{}\"\nserver_name = \"localhost\"", ca.path.display()),
        ),
        upstream("wrongpin", front, &format!("pin_sha256 = [\"{}\"]", "ab".repeat(32))),
        upstream("nopin", front, "tls = true\nserver_name = \"localhost\""),
    ]
    .concat();
    let proxy = start_proxy_env(
        &format!("[metrics]\naddress = \"127.0.0.1:0\"\n\n{config}{USERS}"),
        &[("RUST_LOG", "warn")],
        true,
    );
    let mut c = Client::login(proxy.addr(), "admin", "admin-secret").await;
    for s in ["bycert", "byspki", "byca"] {
        wait_upstream(&mut c, s).await;
    }
    c.send("Action: DBPut\r\nServer: bycert\r\nFamily: t\r\nKey: k\r\nVal: v\r\nActionID: put\r\n\r\n")
        .await;
    assert_eq!(
        c.response("put").await.get("Message"),
        Some("Updated database successfully")
    );
    for s in ["wrongpin", "nopin"] {
        c.send(&format!("Action: Ping\r\nServer: {s}\r\nActionID: {s}\r\n\r\n"))
            .await;
        assert_eq!(
            c.response(s).await.get("Message"),
            Some(format!("Upstream server {s} is not connected").as_str())
        );
    }
    let hint = format!("pin_sha256 = [\"{}\"]", leaf.sha256);
    eventually("the hint for an unpinned self-signed upstream", || {
        proxy
            .log()
            .lines()
            .any(|l| l.contains("nopin") && l.contains(&hint) && l.contains("set `ca`"))
    })
    .await;
    eventually("the wrong pin's refusal", || {
        proxy
            .log()
            .lines()
            .any(|l| l.contains("wrongpin") && l.contains("matches no pin_sha256"))
    })
    .await;
    // The upstream certificate's end, as seen at the handshake.
    let body = metrics_text(proxy.metrics.unwrap()).await;
    for s in ["bycert", "byspki", "byca"] {
        let prefix = format!("amiproxy_tls_cert_expiry_seconds{{kind=\"upstream\",name=\"{s}\"}}");
        let line = body.lines().find(|l| l.starts_with(&prefix));
        let secs: f64 = line
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{prefix} in {body}"));
        // The test leaf is valid for ten years.
        assert!((secs - 3650.0 * 86_400.0).abs() < 3600.0, "{secs}");
    }
    assert!(
        !body.contains("kind=\"upstream\",name=\"wrongpin\""),
        "a refused certificate is not counted as loaded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_upstream_ca_is_refused_at_reload_and_the_old_configuration_kept() {
    let sim = sim("pbx1").await;
    let dir = tempdir("upstream-ca");
    let ca = Ca::new(&dir, "Upstream CA");
    let leaf = ca.leaf(&dir, "asterisk", LeafSpec::server("asterisk"));
    let front = tls_front(sim.addr(), &leaf).await;
    let ca_file = dir.join("upstream-ca.pem");
    std::fs::copy(&ca.path, &ca_file).unwrap();
    let config = upstream(
        "pbx",
        front,
        &format!("ca = \"{}\"\nserver_name = \"localhost\"", ca_file.display()),
    );
    let proxy = start_proxy_env(&format!("{config}{USERS}"), &[("RUST_LOG", "warn")], true);
    let mut c = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut c, "pbx").await;

    // A broken CA file, and a new user in the same reload: neither is taken.
    std::fs::write(&ca_file, "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n").unwrap();
    let extra = "[[user]]\nname = \"late\"\nsecret = \"late-secret\"\n";
    std::fs::write(
        proxy.config_path(),
        format!("[[listener]]\naddress = \"127.0.0.1:0\"\n\n{config}{USERS}{extra}"),
    )
    .unwrap();
    proxy.signal("HUP");
    eventually("the refusal under the upstream's key", || {
        proxy
            .log()
            .lines()
            .any(|l| l.contains("upstream[0].ca") && l.contains("running configuration is kept"))
    })
    .await;
    let mut late = Client::connect(proxy.addr()).await;
    late.send("Action: Login\r\nUsername: late\r\nSecret: late-secret\r\nActionID: l\r\n\r\n")
        .await;
    assert_eq!(late.response("l").await.get("Message"), Some("Authentication failed"));
    c.send("Action: Ping\r\nServer: pbx\r\nActionID: p\r\n\r\n").await;
    assert_eq!(c.response("p").await.get("Ping"), Some("Pong"));
}

/// Whether the proxy's link to `server` answers a Ping now.
async fn link_up(c: &mut Client, server: &str, n: &mut u32) -> bool {
    *n += 1;
    let aid = format!("up-{n}");
    c.send(&format!("Action: Ping\r\nServer: {server}\r\nActionID: {aid}\r\n\r\n"))
        .await;
    c.response(&aid).await.get("Ping") == Some("Pong")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_upstream_ca_is_used_by_the_next_connection() {
    let sim = sim("pbx1").await;
    let dir = tempdir("upstream-renew");
    let ca = Ca::new(&dir, "Issuing CA");
    let unrelated = Ca::new(&dir, "Unrelated CA");
    let leaf = ca.leaf(&dir, "asterisk", LeafSpec::server("asterisk"));
    let front = tls_front(sim.addr(), &leaf).await;
    let ca_file = dir.join("upstream-ca.pem");
    std::fs::copy(&ca.path, &ca_file).unwrap();
    let config = upstream(
        "pbx",
        front,
        &format!("ca = \"{}\"\nserver_name = \"localhost\"", ca_file.display()),
    );
    let proxy = start_proxy(&format!("{config}{USERS}"));
    let mut c = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut c, "pbx").await;

    // The file now holds a CA that did not issue the upstream's certificate: the link
    // established stays, the next connection is refused.
    std::fs::copy(&unrelated.path, &ca_file).unwrap();
    let mut n = 0;
    assert!(link_up(&mut c, "pbx", &mut n).await);
    sim.drop_connections();
    let end = tokio::time::Instant::now() + DEADLINE;
    while link_up(&mut c, "pbx", &mut n).await {
        assert!(tokio::time::Instant::now() < end, "the link never went down");
        sim.drop_connections();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The right CA back in the file: the next reconnection takes it, no reload needed.
    std::fs::copy(&ca.path, &ca_file).unwrap();
    wait_upstream(&mut c, "pbx").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_certificate_served_as_the_upstreams_own_gets_the_same_hint() {
    let sim = sim("pbx1").await;
    let dir = tempdir("ca-as-leaf");
    // A self-signed certificate marked as a CA, served by the upstream itself (as some
    // generators make them), and trusted as its own `ca`: webpki refuses it as an end entity.
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let leaf = Leaf {
        cert: dir.join("self.crt"),
        key: dir.join("self.key"),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        sha256: sha256_hex(cert.der()),
        der: cert.der().to_vec(),
    };
    std::fs::write(&leaf.cert, &leaf.cert_pem).unwrap();
    let front = tls_front(sim.addr(), &leaf).await;
    let config = upstream(
        "selfca",
        front,
        &format!("ca = \"{}\"\nserver_name = \"localhost\"", leaf.cert.display()),
    );
    let proxy = start_proxy_env(&format!("{config}{USERS}"), &[("RUST_LOG", "warn")], true);
    let hint = format!("pin_sha256 = [\"{}\"]", leaf.sha256);
    eventually("the hint for a CA used as the upstream's certificate", || {
        proxy
            .log()
            .lines()
            .any(|l| l.contains("CaUsedAsEndEntity") && l.contains(&hint))
    })
    .await;
}
