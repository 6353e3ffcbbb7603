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
    let (s1, s2) = (sim("pbx1").await, sim("pbx2").await);
    let proxy = start_proxy(&web_config(&[&s1, &s2], ""));
    let web = proxy.web.expect("web address");
    let mut c = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut c, "pbx1").await;
    wait_upstream(&mut c, "pbx2").await;
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
    let (s1, s2) = (sim("pbx1").await, sim("pbx2").await);
    let proxy = start_proxy(&web_config(&[&s1, &s2], ""));
    let web = proxy.web.expect("web address");
    // A TCP client that stays, so the sessions table has someone in it.
    let mut c = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut c, "pbx1").await;
    wait_upstream(&mut c, "pbx2").await;
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
    let out = Command::new(env!("CARGO_BIN_EXE_amiproxy"))
        .args(["gen-cert", "--cert"])
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
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
