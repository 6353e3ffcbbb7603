//! Test harness: simulated Asterisks in-process, the real `amiproxy` binary as a child
//! process, and a small AMI client. Nothing sleeps to wait: every wait is for a signal (a
//! line on stdout, a message on a socket) with a deadline.
#![allow(dead_code)]

pub mod pki;
pub mod servers;

use ami_proto::{AmiDecoder, Decoded, Message, Role};
use bytes::BytesMut;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub const DEADLINE: Duration = Duration::from_secs(10);

pub async fn sim(name: &str) -> ami_sim::SimHandle {
    sim_with(name, |_| {}).await
}

pub async fn sim_with(name: &str, f: impl FnOnce(&mut ami_sim::SimConfig)) -> ami_sim::SimHandle {
    let mut cfg = ami_sim::SimConfig {
        name: name.to_owned(),
        system_name: Some(name.to_owned()),
        auth_delay: Duration::from_millis(10),
        ..Default::default()
    };
    f(&mut cfg);
    ami_sim::start(cfg, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("sim starts")
}

/// A running proxy binary; killed on drop.
pub struct Proxy {
    child: Child,
    pub addrs: Vec<SocketAddr>,
    pub dir: PathBuf,
    /// The metrics/health address, when the config has `[metrics]`.
    pub metrics: Option<SocketAddr>,
    /// The `[web]` address, when the config has one.
    pub web: Option<SocketAddr>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Proxy {
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("proxy.toml")
    }

    /// Sends a signal (`HUP`, `TERM`) to the proxy process.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Whether the process is still running (checked now, without waiting).
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the process to exit; None if it is still running after `d`.
    pub fn wait_exit(&mut self, d: Duration) -> Option<std::process::ExitStatus> {
        let end = std::time::Instant::now() + d;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            if std::time::Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// What the proxy logged so far (when started with `log_to_file`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("proxy.log")).unwrap_or_default()
    }
}

pub fn tempdir(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("amiproxy-test-{}-{tag}-{n}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Config text for upstreams pointing at these sims (admin/admin-secret), fast keepalive.
pub fn upstreams_toml(sims: &[&ami_sim::SimHandle]) -> String {
    let mut s = String::new();
    for sim in sims {
        s.push_str(&format!(
            "[[upstream]]\nname = \"{}\"\nkind = \"asterisk\"\naddress = \"{}\"\nusername = \"admin\"\nsecret = \"admin-secret\"\nping_interval_secs = 0.5\nping_timeout_secs = 1.0\nreconnect_min_ms = 50\nreconnect_max_ms = 300\n\n",
            sim.name(),
            sim.addr()
        ));
    }
    s
}

pub const USERS: &str = r#"
[[user]]
name = "admin"
secret = "admin-secret"
read = "all"
write = "all"

[[user]]
name = "ro"
secret = "ro-secret"
read = "call,system"
write = ""
"#;

/// Starts the binary with `config` (listeners are written by the caller or defaulted to
/// one plain listener on port 0) and waits for its "listening on" lines.
pub fn start_proxy(config: &str) -> Proxy {
    start_proxy_env(config, &[("RUST_LOG", "warn")], false)
}

/// Like [`start_proxy`], with environment variables; with `log_to_file`, stderr goes to
/// `<dir>/proxy.log` (see [`Proxy::log`]).
pub fn start_proxy_env(config: &str, env: &[(&str, &str)], log_to_file: bool) -> Proxy {
    let dir = tempdir("proxy");
    let config = if config.contains("[[listener]]") {
        config.to_owned()
    } else {
        format!("[[listener]]\naddress = \"127.0.0.1:0\"\n\n{config}")
    };
    let n_listeners = config.matches("[[listener]]").count();
    let path = dir.join("proxy.toml");
    std::fs::write(&path, &config).unwrap();
    let stderr = if log_to_file {
        Stdio::from(std::fs::File::create(dir.join("proxy.log")).unwrap())
    } else {
        Stdio::inherit()
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_amiproxy"))
        .arg("--config")
        .arg(&path)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("amiproxy starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(a) = line.strip_prefix("listening on ") {
                let _ = tx.send((0, a.parse::<SocketAddr>().unwrap()));
            } else if let Some(a) = line.strip_prefix("metrics on ") {
                let _ = tx.send((1, a.parse::<SocketAddr>().unwrap()));
            } else if let Some(a) = line.strip_prefix("web on ") {
                let _ = tx.send((2, a.parse::<SocketAddr>().unwrap()));
            }
        }
    });
    let mut addrs = Vec::new();
    let (mut metrics, mut web) = (None, None);
    let want_metrics = config.contains("[metrics]");
    let want_web = config.contains("[web]");
    while addrs.len() < n_listeners || (want_metrics && metrics.is_none()) || (want_web && web.is_none()) {
        match rx.recv_timeout(DEADLINE).expect("proxy prints its addresses") {
            (0, a) => addrs.push(a),
            (1, a) => metrics = Some(a),
            (_, a) => web = Some(a),
        }
    }
    Proxy {
        child,
        addrs,
        dir,
        metrics,
        web,
    }
}

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A bare AMI client over any stream.
pub struct Client {
    io: Box<dyn Stream>,
    buf: BytesMut,
    dec: AmiDecoder,
    pub banner: String,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let tcp = tokio::time::timeout(DEADLINE, TcpStream::connect(addr))
            .await
            .unwrap()
            .unwrap();
        Self::over(Box::new(tcp)).await
    }

    /// Connects from another loopback address (127.0.0.0/8), for per-address limits.
    pub async fn connect_from(addr: SocketAddr, source: std::net::IpAddr) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(source, 0)).unwrap();
        let tcp = tokio::time::timeout(DEADLINE, socket.connect(addr))
            .await
            .unwrap()
            .unwrap();
        Self::over(Box::new(tcp)).await
    }

    pub async fn over(io: Box<dyn Stream>) -> Client {
        match Self::try_over(io).await {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`Client::over`], with Err when no banner comes (a closed or failed stream).
    pub async fn try_over(io: Box<dyn Stream>) -> Result<Client, String> {
        let mut c = Client {
            io,
            buf: BytesMut::new(),
            dec: AmiDecoder::new(Role::Upstream),
            banner: String::new(),
        };
        match tokio::time::timeout(DEADLINE, c.next_decoded()).await {
            Ok(Some(Decoded::Banner(b))) => c.banner = b,
            other => return Err(format!("expected a banner, got {other:?}")),
        }
        Ok(c)
    }

    pub async fn login(addr: SocketAddr, user: &str, secret: &str) -> Client {
        let mut c = Client::connect(addr).await;
        c.send(&format!(
            "Action: Login\r\nUsername: {user}\r\nSecret: {secret}\r\nActionID: login\r\n\r\n"
        ))
        .await;
        let r = c.response("login").await;
        assert_eq!(r.get("Message"), Some("Authentication accepted"), "{r:?}");
        c
    }

    pub async fn send(&mut self, text: &str) {
        self.io.write_all(text.as_bytes()).await.unwrap();
        self.io.flush().await.unwrap();
    }

    pub async fn send_bytes(&mut self, b: &[u8]) {
        self.io.write_all(b).await.unwrap();
        self.io.flush().await.unwrap();
    }

    async fn next_decoded(&mut self) -> Option<Decoded> {
        loop {
            if let Some(d) = self.dec.decode(&mut self.buf).expect("well-formed stream") {
                return Some(d);
            }
            let mut chunk = [0u8; 16384];
            let n = self.io.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next message, or None at EOF. Panics after the deadline.
    pub async fn next(&mut self) -> Option<Message> {
        self.next_within(DEADLINE).await.expect("a message before the deadline")
    }

    /// Err(()) on timeout.
    pub async fn next_within(&mut self, d: Duration) -> Result<Option<Message>, ()> {
        match tokio::time::timeout(d, self.next_decoded()).await {
            Err(_) => Err(()),
            Ok(None) => Ok(None),
            Ok(Some(Decoded::Message(m))) => Ok(Some(m)),
            Ok(Some(other)) => panic!("unexpected {other:?}"),
        }
    }

    /// Reads until a message matches, returning it (others are skipped).
    pub async fn until(&mut self, mut f: impl FnMut(&Message) -> bool) -> Message {
        loop {
            let m = self.next().await.expect("connection open");
            if f(&m) {
                return m;
            }
        }
    }

    pub async fn response(&mut self, aid: &str) -> Message {
        self.until(|m| m.response().is_some() && m.action_id() == Some(aid))
            .await
    }

    pub async fn event(&mut self, name: &str) -> Message {
        self.until(|m| m.event_name().is_some_and(|e| e.eq_ignore_ascii_case(name)))
            .await
    }

    /// Sends an action and collects its list: the response, the items, the Complete event.
    pub async fn list(&mut self, action: &str, aid: &str) -> (Message, Vec<Message>, Message) {
        self.send(&format!("{action}ActionID: {aid}\r\n\r\n")).await;
        let resp = self.response(aid).await;
        assert_eq!(resp.get("EventList"), Some("start"), "{resp:?}");
        let mut items = Vec::new();
        loop {
            let m = self.until(|m| m.action_id() == Some(aid)).await;
            if m.get("EventList") == Some("Complete") {
                return (resp, items, m);
            }
            items.push(m);
        }
    }

    /// True when the peer closes within the deadline.
    pub async fn closed(&mut self) -> bool {
        loop {
            match self.next_within(DEADLINE).await {
                Ok(None) => return true,
                Ok(Some(_)) => continue,
                Err(()) => return false,
            }
        }
    }
}

/// Waits until `f` holds, polling with a deadline.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let end = tokio::time::Instant::now() + DEADLINE;
    while !f() {
        assert!(tokio::time::Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the proxy's link to `server` is up, by pinging through it.
pub async fn wait_upstream(c: &mut Client, server: &str) {
    let end = tokio::time::Instant::now() + DEADLINE;
    for n in 0.. {
        let aid = format!("wait-{server}-{n}");
        c.send(&format!("Action: Ping\r\nServer: {server}\r\nActionID: {aid}\r\n\r\n"))
            .await;
        // Any answer but an error: `Success` (Ping: Pong), or 1.4's `Response: Pong`.
        if c.response(&aid).await.get("Response") != Some("Error") {
            return;
        }
        assert!(tokio::time::Instant::now() < end, "upstream {server} never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Emits UserEvents `Numbered` on `sim`, numbered by `Seq:` from `first` to `last`, each
/// carrying `pad` bytes of padding. Unlike the firehose (events at a rate), the test decides
/// how many are on their way, so a reader that keeps up by design never falls behind
/// however slow the machine is.
pub fn emit_numbered(sim: &ami_sim::SimHandle, first: u64, last: u64, pad: usize) {
    let pad = "p".repeat(pad);
    for seq in first..=last {
        sim.emit(
            ami_proto::MessageBuilder::event("UserEvent")
                .header("Privilege", "user,all")
                .header("UserEvent", "Numbered")
                .header("Seq", &seq.to_string())
                .header("Pad", &pad)
                .build(),
        );
    }
}

/// The server and number of an event of [`emit_numbered`].
pub fn numbered(m: &Message) -> Option<(String, u64)> {
    if m.get("UserEvent") != Some("Numbered") {
        return None;
    }
    let server = m.get("Server").expect("events are tagged").to_owned();
    Some((server, m.get("Seq")?.parse().ok()?))
}

/// Whether `m` is the `ProxyUpstreamStatus` event of `server`.
pub fn is_status_of(m: &Message, server: &str) -> bool {
    m.event_name() == Some("ProxyUpstreamStatus") && m.get("Server") == Some(server)
}

/// The next change of `server`'s link after [`wait_upstream`] saw it up: its next
/// `ProxyUpstreamStatus` but the `Connected` that announced it coming up. That one can
/// reach a client that logged in before the link was up after the answers [`wait_upstream`]
/// got through it (answers and events travel separately), so it is skipped, once.
pub async fn next_status_change(c: &mut Client, server: &str) -> Message {
    let ev = c.until(|m| is_status_of(m, server)).await;
    if ev.get("Status") != Some("Connected") {
        return ev;
    }
    c.until(|m| is_status_of(m, server)).await
}

/// A proxy in front of `sims` with one TLS listener whose certificate `amiproxy gen-cert`
/// made; returns the proxy and the certificate (the CA clients trust).
pub fn tls_proxy(sims: &[&ami_sim::SimHandle]) -> (Proxy, PathBuf) {
    let dir = tempdir("certs");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    gen_cert(&cert, &key);
    let config = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\ntls = {{ cert = \"{}\", key = \"{}\" }}\n\n{}{USERS}",
        cert.display(),
        key.display(),
        upstreams_toml(sims)
    );
    (start_proxy(&config), cert)
}

/// A self-signed certificate for localhost from the binary's own `gen-cert`.
pub fn gen_cert(cert: &std::path::Path, key: &std::path::Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_amiproxy"))
        .args(["gen-cert", "--cert"])
        .arg(cert)
        .arg("--key")
        .arg(key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// One HTTP/1.1 GET, read to the end: the status and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(DEADLINE, s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A rustls client config trusting `ca`, limited to `versions`.
pub fn tls_client_config(
    ca: &std::path::Path,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Whether an external client library is installed (`check` succeeds). Missing under `CI`
/// is a test failure (`.ci/run` installs them); elsewhere a skip notice.
pub fn client_library(what: &str, install: &str, mut check: Command) -> bool {
    let ok = check.status().map(|s| s.success()).unwrap_or(false);
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "{what} is required in CI ({install})");
        eprintln!("SKIPPED: {what} is not installed ({install})");
    }
    ok
}
