//! Real servers the cluster tests run against (Debian's `redis-server`, `nats-server` and
//! `haproxy`), each started by the test on a free loopback port in its own temporary folder
//! and killed when dropped. Readiness is polled with a deadline, never slept on.
#![allow(dead_code)]

use super::{tempdir, DEADLINE};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The path of a server binary, or None with a skip notice. Missing under `CI` is a test
/// failure: `.ci/run` installs the Debian packages.
pub fn server_binary(name: &str, package: &str) -> Option<PathBuf> {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return Some(p);
        }
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{name} is required in CI (apt-get install {package})"
    );
    eprintln!("SKIPPED: {name} is not installed (apt-get install {package})");
    None
}

/// A loopback port free now (bound, then released for the server to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `f` until it is true, at most [`DEADLINE`] (plus `extra`).
pub fn poll_until(what: &str, extra: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE + extra;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process killed (and reaped) on drop.
pub struct Process {
    pub child: Child,
}

impl Process {
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(bin: &Path, args: &[&str], log: &Path) -> Process {
    let out = std::fs::File::create(log).unwrap();
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .unwrap_or_else(|e| panic!("{} starts: {e}", bin.display()));
    Process { child }
}

/// A Redis server with no persistence.
pub struct Redis {
    pub proc: Process,
    pub port: u16,
    pub dir: PathBuf,
    bin: PathBuf,
}

impl Redis {
    pub fn start() -> Option<Redis> {
        let bin = server_binary("redis-server", "redis-server")?;
        let dir = tempdir("redis");
        let port = free_port();
        let proc = Self::spawn_on(&bin, port, &dir, 0);
        let r = Redis { proc, port, dir, bin };
        poll_until("redis-server to answer PING", Duration::ZERO, || r.ping());
        Some(r)
    }

    fn spawn_on(bin: &Path, port: u16, dir: &Path, generation: u32) -> Process {
        let p = port.to_string();
        let d = dir.to_string_lossy().into_owned();
        let args = [
            "--bind",
            "127.0.0.1",
            "--port",
            &p,
            "--dir",
            &d,
            "--save",
            "",
            "--appendonly",
            "no",
        ];
        spawn(bin, &args, &dir.join(format!("redis-{generation}.log")))
    }

    /// Stops the server (SIGKILL: its data is lost, as after a crash) and starts it again,
    /// empty, on the same port.
    pub fn restart(&mut self) {
        self.proc.kill();
        static GEN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
        let g = GEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // The port may linger a moment in the kernel; retry the start until it answers.
        let end = Instant::now() + DEADLINE;
        loop {
            self.proc = Self::spawn_on(&self.bin, self.port, &self.dir, g);
            let t = Instant::now() + Duration::from_secs(2);
            while Instant::now() < t && !self.ping() {
                std::thread::sleep(Duration::from_millis(20));
            }
            if self.ping() {
                return;
            }
            assert!(Instant::now() < end, "redis-server did not come back");
            self.proc.kill();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Sends one inline command and returns the first line of the reply.
    pub fn command(&self, cmd: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(format!("{cmd}\r\n").as_bytes()).ok()?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).ok()?;
        Some(line.trim_end().to_owned())
    }

    pub fn ping(&self) -> bool {
        self.command("PING").as_deref() == Some("+PONG")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.proc.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A NATS server with JetStream on, its store in a temporary folder that outlives a
/// [`Nats::restart`], on the same port.
pub struct Nats {
    pub proc: Process,
    pub port: u16,
    pub dir: PathBuf,
    bin: PathBuf,
}

impl Nats {
    pub fn start() -> Option<Nats> {
        let bin = server_binary("nats-server", "nats-server")?;
        let dir = tempdir("nats");
        let port = free_port();
        let proc = Self::spawn_on(&bin, port, &dir, 0);
        let n = Nats { proc, port, dir, bin };
        n.wait_ready();
        Some(n)
    }

    fn spawn_on(bin: &Path, port: u16, dir: &Path, generation: u32) -> Process {
        let p = port.to_string();
        let store = dir.join("store");
        let store = store.to_string_lossy().into_owned();
        let args = ["-a", "127.0.0.1", "-p", &p, "-js", "-sd", &store];
        spawn(bin, &args, &dir.join(format!("nats-{generation}.log")))
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// True once the server greets with `INFO` and its JetStream is up (the log says so).
    fn ready(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).is_ok() && &buf == b"INFO"
    }

    pub fn wait_ready(&self) {
        poll_until("nats-server to greet", Duration::ZERO, || self.ready());
    }

    /// Stops the server (SIGKILL: no goodbye) and starts it again on the same port and store.
    pub fn restart(&mut self) {
        self.proc.kill();
        static GEN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
        let g = GEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // The port may linger a moment in the kernel; retry the start until it binds.
        let end = Instant::now() + DEADLINE;
        loop {
            self.proc = Self::spawn_on(&self.bin, self.port, &self.dir, g);
            let t = Instant::now() + Duration::from_secs(2);
            while Instant::now() < t && !self.ready() {
                std::thread::sleep(Duration::from_millis(20));
            }
            if self.ready() {
                return;
            }
            assert!(Instant::now() < end, "nats-server did not come back");
            self.proc.kill();
        }
    }

    /// Stops the server without starting it again.
    pub fn stop(&mut self) {
        self.proc.kill();
    }

    /// Starts a stopped server again (same port and store).
    pub fn start_again(&mut self) {
        self.restart();
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.proc.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// HAProxy with a configuration the test writes; `{dir}` in it is its temporary folder.
pub struct Haproxy {
    pub proc: Process,
    pub dir: PathBuf,
}

impl Haproxy {
    /// Starts HAProxy in the foreground with `config`, then waits until `ready_port` on
    /// loopback accepts connections.
    pub fn start(config: &str, ready_port: u16) -> Option<Haproxy> {
        let bin = server_binary("haproxy", "haproxy")?;
        let dir = tempdir("haproxy");
        let cfg = dir.join("haproxy.cfg");
        std::fs::write(&cfg, config.replace("{dir}", &dir.to_string_lossy())).unwrap();
        let check = Command::new(&bin).arg("-c").arg("-f").arg(&cfg).output().unwrap();
        assert!(
            check.status.success(),
            "haproxy config is valid: {}",
            String::from_utf8_lossy(&check.stdout) + String::from_utf8_lossy(&check.stderr)
        );
        let cfg_s = cfg.to_string_lossy().into_owned();
        let proc = spawn(&bin, &["-db", "-f", &cfg_s], &dir.join("haproxy.log"));
        let addr: SocketAddr = ([127, 0, 0, 1], ready_port).into();
        poll_until("haproxy to listen", Duration::ZERO, || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        Some(Haproxy { proc, dir })
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("haproxy.log")).unwrap_or_default()
    }

    /// Sends a command to the admin socket (the config must have
    /// `stats socket {dir}/admin.sock level admin`) and returns the answer.
    pub fn command(&self, cmd: &str) -> String {
        use std::os::unix::net::UnixStream;
        let Ok(mut s) = UnixStream::connect(self.dir.join("admin.sock")) else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.write_all(format!("{cmd}\n").as_bytes());
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    /// The operational state HAProxy holds for `backend/server` (`UP`, `DOWN`, ...), from
    /// `show stat` (CSV: column 1 the server name, column 17 its status).
    pub fn server_status(&self, backend: &str, server: &str) -> Option<String> {
        self.command("show stat").lines().find_map(|l| {
            let cols: Vec<&str> = l.split(',').collect();
            (cols.len() > 17 && cols[0] == backend && cols[1] == server).then(|| cols[17].to_owned())
        })
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        self.proc.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
