//! The web side through the real binary: AMI as JSON over a WebSocket and over HTTP with
//! real client libraries (Python's `websockets` and `httpx`), and the operator console in a
//! real browser (Debian's Chromium driven by `playwright-core`).

mod common;

use common::*;
use std::process::Command;

fn web_config(sims: &[&ami_sim::SimHandle], extra_proxy: &str) -> String {
    format!(
        "[proxy]\n{extra_proxy}\n[web]\naddress = \"127.0.0.1:0\"\n\n{}{USERS}\n[[user]]\nname = \"operator\"\nsecret = \"operator-secret\"\nread = \"all\"\nwrite = \"all\"\nconsole = true\n",
        upstreams_toml(sims)
    )
}

/// A web proxy over two sims, both links up (seen by a TCP client, returned with them).
async fn two_upstreams() -> ((ami_sim::SimHandle, ami_sim::SimHandle), Proxy, Client) {
    let (s1, s2) = (sim("pbx1").await, sim("pbx2").await);
    let proxy = start_proxy(&web_config(&[&s1, &s2], ""));
    let mut c = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut c, "pbx1").await;
    wait_upstream(&mut c, "pbx2").await;
    ((s1, s2), proxy, c)
}

fn python_web_clients() -> bool {
    let mut check = Command::new("python3");
    check.args(["-c", "import websockets, httpx"]);
    client_library(
        "python websockets and httpx",
        "python3 -m pip install -r tests/python/requirements.txt",
        check,
    )
}

async fn run_python(web: std::net::SocketAddr, mode: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/python/web_clients.py");
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::process::Command::new("python3")
            .arg(script)
            .arg(web.to_string())
            .arg(mode)
            .output(),
    )
    .await
    .expect("the python clients finish")
    .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{mode}: {text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_and_http_clients_get_ami_as_json_under_the_same_policy() {
    if !python_web_clients() {
        return;
    }
    let (_sims, proxy, _c) = two_upstreams().await;
    let web = proxy.web.expect("web address");
    run_python(web, "api").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_websocket_client_is_cut_off_and_slows_nobody() {
    if !python_web_clients() {
        return;
    }
    let s1 = sim("pbx1").await;
    let proxy = start_proxy(&web_config(&[&s1], "write_timeout_secs = 1\nevent_buffer = 4096\n"));
    let web = proxy.web.expect("web address");
    let mut tcp = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut tcp, "pbx1").await;
    s1.set_firehose(Some(20_000));
    let out = run_python(web, "slow").await;
    s1.set_firehose(None);
    eprintln!("{out}");
}

fn browser_tools() -> bool {
    let mut check = Command::new("node");
    check
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/node"))
        .args([
            "-e",
            "require('playwright-core'); require('fs').accessSync('/usr/bin/chromium')",
        ]);
    client_library(
        "playwright-core and Debian's chromium",
        "npm ci --prefix tests/node; apt-get install chromium",
        check,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    if !browser_tools() {
        return;
    }
    // Its TCP client stays, so the sessions table has someone in it.
    let (_sims, proxy, _c) = two_upstreams().await;
    let web = proxy.web.expect("web address");
    let shot = std::env::temp_dir().join(format!("amiproxy-console-{}.png", std::process::id()));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/node/console_browser.js");
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(90),
        tokio::process::Command::new("node")
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/node"))
            .arg(script)
            .arg(format!("http://{web}"))
            .arg(&shot)
            .output(),
    )
    .await
    .expect("the browser test finishes")
    .expect("node runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}\n(screenshot: {})", shot.display());
    if std::env::var_os("KEEP_SCREENSHOT").is_none() {
        let _ = std::fs::remove_file(&shot);
    }
    eprintln!("{text}");
}

/// A strict WebSocket client (tungstenite) over TLS (`[web] tls`): the upgrade answers
/// exactly `Connection: Upgrade`, Basic auth logs in, and AMI flows both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strict_websocket_client_over_tls() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message as Ws;
    let s1 = sim("pbx1").await;
    let dir = tempdir("webcerts");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    gen_cert(&cert, &key);
    let config = web_config(&[&s1], "").replace(
        "[web]\naddress = \"127.0.0.1:0\"\n",
        &format!(
            "[web]\naddress = \"127.0.0.1:0\"\ntls = {{ cert = \"{}\", key = \"{}\" }}\n",
            cert.display(),
            key.display()
        ),
    );
    let proxy = start_proxy(&config);
    let web = proxy.web.expect("web address");
    let tls = tls_client_config(&cert, &[&rustls::version::TLS13]);
    let tcp = tokio::net::TcpStream::connect(web).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await.unwrap();
    let mut req = "wss://localhost/ami/ws".into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        "Basic YWRtaW46YWRtaW4tc2VjcmV0".parse().unwrap(), // admin:admin-secret
    );
    let (mut ws, resp) = tokio_tungstenite::client_async(req, stream)
        .await
        .expect("a strict handshake");
    assert_eq!(resp.status(), 101);
    ws.send(Ws::text(r#"{"Action":"Ping","ActionID":"tls-1"}"#))
        .await
        .unwrap();
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        let m = tokio::time::timeout_at(end, ws.next())
            .await
            .expect("an answer")
            .unwrap()
            .unwrap();
        let Ws::Text(t) = m else { continue };
        let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
        if v["ActionID"] == "tls-1" {
            assert_eq!(v["Ping"], "Pong", "{v}");
            break;
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

async fn raw_http(addr: std::net::SocketAddr, request: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Another site's page cannot drive the API, the WebSocket or the console: a browser's
/// `Origin` that is not the proxy's own is refused, and so is a body that is not JSON (what
/// an HTML form would send). The operators' routes are off here unless `ops = true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_requests_are_refused() {
    let s1 = sim("pbx1").await;
    let proxy = start_proxy(&web_config(&[&s1], ""));
    let web = proxy.web.expect("web address");
    let auth = "Authorization: Basic YWRtaW46YWRtaW4tc2VjcmV0\r\n"; // admin:admin-secret
    let host = format!("Host: {web}\r\n");
    let post = |origin: &str, ctype: &str, body: &str| {
        format!(
            "POST /ami/action/Ping HTTP/1.1\r\n{host}{auth}{origin}{ctype}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let evil = "Origin: http://evil.example\r\n";
    let out = raw_http(web, post(evil, "Content-Type: application/json\r\n", "{}")).await;
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    let out = raw_http(web, post("", "Content-Type: text/plain\r\n", "{}")).await;
    assert!(out.starts_with("HTTP/1.1 415"), "{out}");
    // The same request from the proxy's own origin, or from a client that names none, passes.
    let own = format!("Origin: http://{web}\r\n");
    let out = raw_http(web, post(&own, "Content-Type: application/json\r\n", "{}")).await;
    assert!(out.starts_with("HTTP/1.1 200") && out.contains("Pong"), "{out}");
    let out = raw_http(web, post("", "", "")).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    // A WebSocket upgrade from another site.
    let upgrade = format!(
        "GET /ami/ws HTTP/1.1\r\n{host}{auth}{evil}Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    let out = raw_http(web, upgrade).await;
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    // Metrics and health are for operators: not on the web listener by default.
    let out = raw_http(web, format!("GET /metrics HTTP/1.1\r\n{host}Connection: close\r\n\r\n")).await;
    assert!(out.starts_with("HTTP/1.1 404"), "{out}");
}

/// The certificate the web listener shows a new TLS client now.
async fn web_cert(web: std::net::SocketAddr, roots: &[std::path::PathBuf]) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        for c in rustls::pki_types::CertificateDer::pem_file_iter(r).unwrap() {
            store.add(c.unwrap()).unwrap();
        }
    }
    let cfg =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(store)
            .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(web).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let s = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// `[web] tls` renews like a listener's: a certificate replaced in place and a SIGHUP, and
/// new connections get the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_certificate_rotates_on_reload() {
    let s1 = sim("pbx1").await;
    let dir = tempdir("webrot");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let (a, b, bkey) = (dir.join("a.pem"), dir.join("b.pem"), dir.join("b.key"));
    gen_cert(&cert, &key);
    std::fs::copy(&cert, &a).unwrap();
    gen_cert(&b, &bkey);
    let config = web_config(&[&s1], "").replace(
        "[web]\naddress = \"127.0.0.1:0\"\n",
        &format!(
            "[web]\naddress = \"127.0.0.1:0\"\ntls = {{ cert = \"{}\", key = \"{}\" }}\n",
            cert.display(),
            key.display()
        ),
    );
    let proxy = start_proxy(&config);
    let web = proxy.web.expect("web address");
    let roots = [a.clone(), b.clone()];
    let first = web_cert(web, &roots).await;
    std::fs::copy(&b, &cert).unwrap();
    std::fs::copy(&bkey, &key).unwrap();
    proxy.signal("HUP");
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        if web_cert(web, &roots).await != first {
            break;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "the web listener kept its old certificate"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A WebSocket client that writes actions as fast as it reads, during an event burst: its
/// session's input and output pipes never wait on each other; every action is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_client_may_send_and_read_at_full_speed() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message as Ws;
    const PINGS: usize = 3000;
    let s1 = sim("pbx1").await;
    let proxy = start_proxy(&web_config(&[&s1], ""));
    let web = proxy.web.expect("web address");
    let mut tcp = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut tcp, "pbx1").await;
    let mut req = format!("ws://{web}/ami/ws").into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", "Basic YWRtaW46YWRtaW4tc2VjcmV0".parse().unwrap());
    let stream = tokio::net::TcpStream::connect(web).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(req, stream).await.unwrap();
    let (mut sink, mut rx) = ws.split();
    s1.set_firehose(Some(20_000));
    let writer = tokio::spawn(async move {
        for i in 0..PINGS {
            let frame = format!(r#"{{"Action":"Ping","ActionID":"p{i}"}}"#);
            if sink.send(Ws::text(frame)).await.is_err() {
                return false;
            }
        }
        true
    });
    let (mut answered, mut refused) = (0, 0);
    let end = tokio::time::Instant::now() + DEADLINE;
    while answered + refused < PINGS {
        let m = tokio::time::timeout_at(end, rx.next())
            .await
            .expect("answers keep coming")
            .expect("the socket stays open")
            .unwrap();
        let Ws::Text(t) = m else { continue };
        let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
        if v["ActionID"].as_str().is_some_and(|a| a.starts_with('p')) {
            match v["Response"].as_str() {
                Some("Success") => answered += 1,
                _ => refused += 1,
            }
        }
    }
    s1.set_firehose(None);
    assert!(writer.await.unwrap(), "the writer could send every action");
    assert!(answered > 0, "answered {answered}, refused {refused}");
}
