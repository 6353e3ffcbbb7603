//! The system under test: simulated Asterisks started in this process, and optionally the
//! proxy in front of them, either as the real binary in its own process (so its CPU and
//! memory can be read from /proc apart from the load generator's) or in-process through the
//! `amiproxy` library (cheap, for tests).

use crate::client::{AmiConn, Credentials};
use crate::error::{LoadError, Result};
use ami_proto::MessageBuilder;
use ami_sim::{SimConfig, SimHandle};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// How long the proxy may take to bind and connect to every upstream.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How the endpoint under test is reached.
#[derive(Debug, Clone)]
pub enum Via {
    /// Clients talk to the simulators themselves: the baseline.
    Direct,
    /// The `amiproxy` binary at this path, started with a generated config.
    ProxyBin(PathBuf),
    /// The proxy started inside this process through the library.
    InProcess,
    /// An endpoint someone else started; `pid` (if given) is the process to measure.
    External {
        addr: SocketAddr,
        pid: Option<u32>,
        is_proxy: bool,
    },
    /// The `ami-sim` binary at this path, in its own process (a measurable direct baseline
    /// for memory; it cannot run a firehose on demand).
    SimBin(PathBuf),
}

impl Via {
    /// Short row label.
    pub fn label(&self) -> &'static str {
        match self {
            Via::Direct | Via::SimBin(_) => "direct",
            Via::ProxyBin(_) => "proxy",
            Via::InProcess => "proxy(in-proc)",
            Via::External { is_proxy: true, .. } => "proxy(ext)",
            Via::External { .. } => "target",
        }
    }
}

/// Proxy settings the benchmarks need to differ from the defaults.
#[derive(Debug, Clone)]
pub struct ProxyTuning {
    /// `event_buffer`: events a client may fall behind before losing some.
    pub event_buffer: usize,
    /// `auth_limit`: must cover a login storm, or the proxy refuses the excess at once.
    pub auth_limit: usize,
    /// RUST_LOG for the proxy binary. Per-login and per-action audit lines at `info` would
    /// be measured too; `warn` measures the proxy's work, not its logging.
    pub log: String,
    /// `eventfilter` rules for the benchmark user (see `--filters`) and for every tenant.
    pub filters: Vec<String>,
    /// An argon2 PHC string: the benchmark user gets it as `secret_hash` instead of its
    /// plain `secret`, so that every login costs the proxy an argon2 verification.
    pub secret_hash: Option<String>,
    /// Tenant-scoped users to add (see `tenants`).
    pub tenants: usize,
    /// `key = value` lines added to every `[[upstream]]` of the proxy's config
    /// (`--upstream-set`).
    pub upstream_set: Vec<(String, String)>,
    /// `key = value` lines added to the proxy's `[proxy]` section (`--proxy-set`).
    pub proxy_set: Vec<(String, String)>,
    /// Serve `[web]` too (AMI over a WebSocket), for `fanout --ws`.
    pub web: bool,
}

impl Default for ProxyTuning {
    fn default() -> Self {
        ProxyTuning {
            event_buffer: 1 << 18,
            auth_limit: 1000,
            log: "warn".into(),
            filters: Vec::new(),
            secret_hash: None,
            tenants: 0,
            upstream_set: Vec::new(),
            proxy_set: Vec::new(),
            web: false,
        }
    }
}

/// A running system under test. Call [`Env::shutdown`] when done.
pub struct Env {
    pub via: Via,
    pub sims: Vec<SimHandle>,
    /// Where the load clients connect (every sim for a direct cluster run: see `targets`).
    pub targets: Vec<SocketAddr>,
    /// The process whose CPU and memory are reported.
    pub pid: Option<u32>,
    /// Whether events arrive tagged `Server:` (through a proxy).
    pub through_proxy: bool,
    /// The proxy's `[web]` address, when started with one.
    pub web: Option<SocketAddr>,
    child: Option<(Child, ChildStdout)>,
    /// The `ami-sim` process behind the front (see [`Env::start_on_sim_process`]).
    sim_process: Option<(Child, ChildStdout)>,
    /// The in-process proxy, held so that it keeps serving for the life of the run.
    in_process: Option<amiproxy::server::Running>,
    dir: Option<PathBuf>,
}

impl Env {
    /// Starts `count` simulators named sim1..simN (with distinct channel numbering) and the
    /// chosen front. `Via::External` starts nothing.
    pub async fn start(via: Via, count: usize, creds: &Credentials, tuning: &ProxyTuning) -> Result<Env> {
        if let Via::External { addr, pid, is_proxy } = &via {
            return Ok(Env {
                targets: vec![*addr],
                pid: *pid,
                through_proxy: *is_proxy,
                web: None,
                via,
                sims: Vec::new(),
                child: None,
                sim_process: None,
                in_process: None,
                dir: None,
            });
        }
        if let Via::SimBin(bin) = &via {
            let mut cmd = Command::new(bin);
            // Its per-connection authlimit warnings are expected in a storm and counted there.
            cmd.args(["--listen", "127.0.0.1:0", "--name", "sim1"])
                .env("RUST_LOG", "error")
                .stderr(Stdio::null());
            let (child, stdout, addr, _) = spawn_listening(cmd, false).await?;
            return Ok(Env {
                targets: vec![addr],
                pid: child.id(),
                through_proxy: false,
                web: None,
                via,
                sims: Vec::new(),
                child: Some((child, stdout)),
                sim_process: None,
                in_process: None,
                dir: None,
            });
        }
        let mut sims = Vec::with_capacity(count);
        for i in 0..count {
            let cfg = SimConfig {
                name: format!("sim{}", i + 1),
                channel_id_base: (i as u32) * 4096,
                ..SimConfig::default()
            };
            sims.push(ami_sim::start(cfg, "127.0.0.1:0".parse().expect("literal address")).await?);
        }
        let mut env = Env {
            targets: sims.iter().map(SimHandle::addr).collect(),
            pid: None,
            through_proxy: false,
            web: None,
            via: via.clone(),
            sims,
            child: None,
            sim_process: None,
            in_process: None,
            dir: None,
        };
        match via {
            Via::Direct => {}
            Via::ProxyBin(bin) => env.start_proxy_bin(&bin, &upstreams(&env.sims), creds, tuning).await?,
            Via::InProcess => {
                let text = proxy_toml(&upstreams(&env.sims), creds, tuning);
                let config = amiproxy::Config::from_toml(&text, Path::new(".")).map_err(|problems| {
                    LoadError::Proxy(problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
                })?;
                let running = amiproxy::server::start(config)
                    .await
                    .map_err(|e| LoadError::Proxy(e.to_string()))?;
                env.targets = vec![*running
                    .listener_addrs()
                    .first()
                    .ok_or_else(|| LoadError::Proxy("no listener".into()))?];
                env.web = running.web_addr;
                env.in_process = Some(running);
                env.through_proxy = true;
            }
            Via::External { .. } | Via::SimBin(_) => unreachable!("handled above"),
        }
        if env.through_proxy {
            let names: Vec<String> = env.sims.iter().map(|s| s.name().to_owned()).collect();
            wait_ready(env.targets[0], &names, creds).await?;
        }
        Ok(env)
    }

    /// The `ami-sim` binary in its own process, named `sim1`, its firehose running at
    /// `firehose` events/s from the start (0: as fast as it can), with `via` in front of it:
    /// `Via::SimBin` (clients talk to it: the baseline) or `Via::ProxyBin`. Both paths then
    /// cross process boundaries, and the baseline's simulator pays for its own fan-out, as
    /// a real Asterisk does; an in-process simulator would answer the baseline's actions
    /// from the load generator's own threads.
    pub async fn start_on_sim_process(
        via: Via,
        sim_bin: &Path,
        firehose: u64,
        creds: &Credentials,
        tuning: &ProxyTuning,
    ) -> Result<Env> {
        let mut cmd = Command::new(sim_bin);
        cmd.args(["--listen", "127.0.0.1:0", "--name", "sim1", "--firehose"])
            .arg(firehose.to_string())
            .env("RUST_LOG", "error")
            .stderr(Stdio::null());
        let (sim_child, sim_stdout, sim_addr, _) = spawn_listening(cmd, false).await?;
        let mut env = Env {
            targets: vec![sim_addr],
            pid: sim_child.id(),
            through_proxy: false,
            web: None,
            via: via.clone(),
            sims: Vec::new(),
            child: None,
            sim_process: Some((sim_child, sim_stdout)),
            in_process: None,
            dir: None,
        };
        match via {
            Via::SimBin(_) => {}
            Via::ProxyBin(bin) => {
                env.start_proxy_bin(&bin, &[("sim1".into(), sim_addr)], creds, tuning)
                    .await?;
                wait_ready(env.targets[0], &env.server_names(), creds).await?;
            }
            other => {
                return Err(LoadError::Usage(format!(
                    "a simulator process runs behind the ami-sim baseline or the proxy binary, not {}",
                    other.label()
                )))
            }
        }
        Ok(env)
    }

    /// Starts the `amiproxy` binary at `bin` in front of `upstreams`, with a generated config
    /// in a temporary directory (removed at shutdown); clients then connect to it.
    async fn start_proxy_bin(
        &mut self,
        bin: &Path,
        upstreams: &[(String, SocketAddr)],
        creds: &Credentials,
        tuning: &ProxyTuning,
    ) -> Result<()> {
        let dir = std::env::temp_dir().join(format!("ami-load-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("proxy.toml");
        std::fs::write(&path, proxy_toml(upstreams, creds, tuning))?;
        self.dir = Some(dir);
        let mut cmd = Command::new(bin);
        cmd.arg("--config").arg(&path).env("RUST_LOG", &tuning.log);
        let (child, stdout, addr, web) = spawn_listening(cmd, tuning.web).await?;
        self.pid = child.id();
        self.child = Some((child, stdout));
        self.targets = vec![addr];
        self.web = web;
        self.through_proxy = true;
        Ok(())
    }

    /// Names events are tagged with (empty when the endpoint is not a proxy we started).
    pub fn server_names(&self) -> Vec<String> {
        match self.sim_process.is_some() {
            true => vec!["sim1".to_owned()],
            false => self.sims.iter().map(|s| s.name().to_owned()).collect(),
        }
    }

    /// Sets every simulator's firehose. A simulator process runs its own from its start:
    /// stopping it stops the process (SIGSTOP; it is killed at shutdown), so that the
    /// stream has an end every reader can reach.
    pub fn set_firehose(&self, rate: Option<u64>) {
        for s in &self.sims {
            s.set_firehose(rate);
        }
        if let (None, Some(pid)) = (rate, self.sim_process.as_ref().and_then(|(c, _)| c.id())) {
            let _ = std::process::Command::new("kill")
                .args(["-STOP", &pid.to_string()])
                .status();
        }
    }

    /// Whether the firehose ran before any reader subscribed (a simulator process): a
    /// reader's first number is then where it came in, not a loss.
    pub fn firehose_ran_before(&self) -> bool {
        self.sim_process.is_some()
    }

    /// Events the simulators skipped for sessions too slow to keep up.
    pub fn sim_lagged(&self) -> u64 {
        self.sims.iter().map(SimHandle::lagged_events).sum()
    }

    /// Stops the proxy process and the simulators, removes the temporary config.
    pub async fn shutdown(mut self) {
        drop(self.in_process.take());
        for (mut child, _stdout) in [self.child.take(), self.sim_process.take()].into_iter().flatten() {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        }
        for s in &self.sims {
            s.set_firehose(None);
            s.set_call_rate(0.0);
            s.stop_listener().await;
        }
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A per-process counter so two environments in one run never share a config directory.
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Each simulator's name and address, as the proxy configuration names its upstreams.
fn upstreams(sims: &[SimHandle]) -> Vec<(String, SocketAddr)> {
    sims.iter().map(|s| (s.name().to_owned(), s.addr())).collect()
}

/// The proxy configuration: one `asterisk` upstream per simulator (a real TCP link, as in
/// production), one plain listener on a free port, the benchmark user (its secret plain or
/// as an argon2 hash) and any tenants.
pub fn proxy_toml(upstreams: &[(String, SocketAddr)], creds: &Credentials, tuning: &ProxyTuning) -> String {
    let mut s = format!(
        "[proxy]\nauth_limit = {}\nevent_buffer = {}\naction_timeout_secs = 10\n{}\n[[listener]]\naddress = \"127.0.0.1:0\"\n\n",
        tuning.auth_limit,
        tuning.event_buffer,
        tuning.proxy_set.iter().map(|(k, v)| format!("{k} = {v}\n")).collect::<String>(),
    );
    for (name, addr) in upstreams {
        s.push_str(&format!(
            "[[upstream]]\nname = \"{name}\"\nkind = \"asterisk\"\naddress = \"{addr}\"\nusername = \"admin\"\nsecret = \"admin-secret\"\n{}\n",
            tuning.upstream_set.iter().map(|(k, v)| format!("{k} = {v}\n")).collect::<String>(),
        ));
    }
    let secret = match &tuning.secret_hash {
        Some(h) => format!("secret_hash = {h:?}"),
        None => format!("secret = {:?}", creds.secret),
    };
    s.push_str(&format!(
        "[[user]]\nname = {:?}\n{secret}\nread = \"all\"\nwrite = \"all\"\neventfilter = {:?}\n",
        creds.user, tuning.filters
    ));
    s.push_str(&crate::tenants::proxy_users(tuning.tenants, &tuning.filters));
    if tuning.web {
        s.push_str("\n[web]\naddress = \"127.0.0.1:0\"\nconsole = false\n");
    }
    s
}

/// Spawns a binary that prints `listening on ADDR` on stdout, and waits for that line (and,
/// with `web`, for `web on ADDR`).
async fn spawn_listening(mut cmd: Command, web: bool) -> Result<(Child, ChildStdout, SocketAddr, Option<SocketAddr>)> {
    cmd.stdout(Stdio::piped()).stdin(Stdio::null()).kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| LoadError::Proxy(format!("cannot start {cmd:?}: {e}")))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| LoadError::Proxy("no stdout".into()))?;
    let mut lines = BufReader::new(stdout).lines();
    let parse = |a: &str| {
        a.trim()
            .parse::<SocketAddr>()
            .map_err(|e| LoadError::Proxy(format!("bad address {a:?}: {e}")))
    };
    let (addr, web_addr) = tokio::time::timeout(READY_TIMEOUT, async {
        let (mut addr, mut web_addr) = (None, None);
        while let Some(line) = lines.next_line().await? {
            if let Some(a) = line.strip_prefix("listening on ") {
                addr = addr.or(Some(parse(a)?));
            } else if let Some(a) = line.strip_prefix("web on ") {
                web_addr = Some(parse(a)?);
            }
            if let Some(a) = addr {
                if !web || web_addr.is_some() {
                    return Ok((a, web_addr));
                }
            }
        }
        Err(LoadError::Proxy("exited before listening".into()))
    })
    .await
    .map_err(|_| LoadError::Timeout("waiting for `listening on`".into()))??;
    // Keep the pipe open (a closed stdout would fail the child's later prints).
    let stdout = lines.into_inner().into_inner();
    Ok((child, stdout, addr, web_addr))
}

/// Waits until the proxy answers a forwarded `Ping` for every upstream: only then are its
/// upstream links up, and only then does a measurement mean anything.
async fn wait_ready(addr: SocketAddr, names: &[String], creds: &Credentials) -> Result<()> {
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        match ping_all(addr, names, creds).await {
            Ok(()) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(LoadError::Timeout(format!("proxy upstreams not ready: {last}")))
}

async fn ping_all(addr: SocketAddr, names: &[String], creds: &Credentials) -> Result<()> {
    let mut c = AmiConn::login(addr, creds, false).await?;
    for (i, name) in names.iter().enumerate() {
        let aid = format!("ready-{i}");
        let ping = MessageBuilder::action("Ping")
            .header("ActionID", &aid)
            .header("Server", name)
            .into_bytes();
        c.send(&ping).await?;
        let m = tokio::time::timeout(Duration::from_secs(2), c.answer_to(&aid))
            .await
            .map_err(|_| LoadError::Timeout(format!("ping {name}")))??;
        if m.response() != Some("Success") {
            return Err(LoadError::Protocol(format!(
                "{name}: {}",
                m.get("Message").unwrap_or("not ready")
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use amiproxy::auth::{check_plain, hash_secret};

    struct NoChannels;
    impl amiproxy::policy::Channels for NoChannels {
        fn channel_of(&self, _: &str) -> Option<String> {
            None
        }
        fn is_live(&self, _: &str) -> bool {
            false
        }
    }

    fn config(tuning: &ProxyTuning) -> amiproxy::Config {
        let ups = vec![("sim1".to_owned(), "127.0.0.1:5038".parse().unwrap())];
        let creds = Credentials {
            user: "admin".into(),
            secret: "admin-secret".into(),
        };
        let text = proxy_toml(&ups, &creds, tuning);
        amiproxy::Config::from_toml(&text, Path::new(".")).unwrap_or_else(|p| {
            panic!(
                "{text}\nrefused: {}",
                p.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
            )
        })
    }

    #[test]
    fn argon2_user_needs_its_secret() {
        let tuning = ProxyTuning {
            secret_hash: Some(hash_secret("admin-secret").unwrap()),
            ..ProxyTuning::default()
        };
        let c = config(&tuning);
        let admin = &c.users[0];
        assert!(matches!(admin.secret, amiproxy::config::Secret::Argon2(_)));
        assert!(check_plain(admin, "admin-secret"));
        assert!(!check_plain(admin, "admin-secreT"));
    }

    #[test]
    fn tenants_are_scoped_filtered_and_see_the_tenant_firehose() {
        let tuning = ProxyTuning {
            tenants: 100,
            filters: crate::FILTER_RULES.iter().map(|s| s.to_string()).collect(),
            ..ProxyTuning::default()
        };
        let c = config(&tuning);
        assert_eq!(c.users.len(), 101);
        let ev = crate::tenants::sample_event(7);
        for (i, u) in c.users[1..].iter().enumerate() {
            assert_eq!(u.name, crate::tenants::creds(i).user);
            assert!(check_plain(u, &crate::tenants::creds(i).secret));
            assert!(u.policy.scope.scoped());
            assert_eq!(u.policy.filters.len(), 10);
            // Zero loss means something only if every event is one the tenant should get.
            assert!(u.policy.event_in_scope(&ev, Some("sim1"), &NoChannels), "{}", u.name);
            assert!(u.policy.filters.allows(&ev), "{}", u.name);
        }
        // The simulator's own firehose names nothing, so a tenant would get none of it.
        let plain = ami_proto::MessageBuilder::event("UserEvent")
            .header("Privilege", "user,all")
            .header("UserEvent", "SimFirehose")
            .header("SimSeq", "1")
            .build();
        assert!(!c.users[1].policy.event_in_scope(&plain, Some("sim1"), &NoChannels));
    }
}
