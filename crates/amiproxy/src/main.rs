//! The `amiproxy` binary.

use amiproxy::config::Config;
use clap::{Parser, Subcommand};
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

/// Every event costs a few short-lived allocations of a few hundred bytes, often freed on
/// another thread than their own (a session drops the last reference to an event); mimalloc's
/// per-thread free lists take that at a fraction of glibc's cost: one upstream link ingests
/// 1.23 M events/s instead of 0.86 M (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Transparent huge pages off for this process. mimalloc's arenas are large aligned
/// mappings, and where the host's THP setting is `always` each one touched is backed by 2 MiB
/// pages: an idle client then costs 57 KiB of RSS instead of 25–31 (`ami-load scale`). The
/// flag is per process and applies to every page faulted in from here on.
fn disable_transparent_huge_pages() {
    // SAFETY: prctl with PR_SET_THP_DISABLE takes integer arguments only and touches no
    // memory of ours; a kernel without it returns an error, which changes nothing.
    let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

/// An AMI proxy for Asterisk: many client logins over TCP and TLS, per-user policy, one
/// login per upstream Asterisk, routing over a cluster, one merged event stream.
#[derive(Parser)]
#[command(name = "amiproxy", version, about)]
struct Cli {
    /// Configuration file (TOML). Environment variables AMIPROXY__SECTION__KEY override it.
    #[arg(long, short, default_value = "proxy.toml", global = true)]
    config: PathBuf,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the default).
    Run,
    /// Check the configuration and print every problem with its key; exit 1 if any.
    CheckConfig,
    /// Read a secret from stdin and print its argon2id hash, for `secret_hash` in the config.
    HashSecret,
    /// Write a self-signed development certificate and key (for localhost) as PEM files.
    GenCert {
        /// Certificate output path.
        #[arg(long, default_value = "certs/dev-cert.pem")]
        cert: PathBuf,
        /// Private key output path (never commit it).
        #[arg(long, default_value = "certs/dev-key.pem")]
        key: PathBuf,
    },
}

/// Levels from `RUST_LOG` when set, else from the config's `log.level`.
fn init_logs(level: &str, json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    use std::io::IsTerminal;
    // Colours only on a terminal: a log file or journald gets plain text.
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|problems| {
        eprintln!("{}: {} problem(s)", path.display(), problems.len());
        for p in problems {
            eprintln!("  {p}");
        }
        ExitCode::from(1)
    })
}

fn main() -> ExitCode {
    disable_transparent_huge_pages();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => match load(&cli.config) {
            Ok(c) => {
                // The TLS files' content too: what a reload would refuse, refused here first.
                let broken = amiproxy::tls::check_files(&c);
                for e in &broken {
                    eprintln!("{e}");
                }
                if !broken.is_empty() {
                    return ExitCode::from(1);
                }
                println!(
                    "{}: ok ({} listener(s), {} upstream(s), {} user(s))",
                    cli.config.display(),
                    c.listeners.len(),
                    c.upstreams.len(),
                    c.users.len()
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::HashSecret => {
            let mut secret = String::new();
            if std::io::stdin().read_to_string(&mut secret).is_err() {
                eprintln!("could not read the secret from stdin");
                return ExitCode::from(1);
            }
            let secret = secret.trim_end_matches(['\r', '\n']);
            if secret.is_empty() {
                eprintln!("empty secret");
                return ExitCode::from(1);
            }
            match amiproxy::auth::hash_secret(secret) {
                Ok(h) => {
                    println!("{h}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("hashing failed: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::GenCert { cert, key } => match amiproxy::tls::self_signed() {
            Ok((c, k)) => {
                for p in [&cert, &key] {
                    if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                        let _ = std::fs::create_dir_all(dir);
                    }
                }
                if let Err(e) = std::fs::write(&cert, c).and_then(|_| write_private(&key, &k)) {
                    eprintln!("writing certificate: {e}");
                    return ExitCode::from(1);
                }
                println!(
                    "wrote {} and {} (self-signed, for localhost; development only)",
                    cert.display(),
                    key.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        },
        Command::Run => {
            let config = match load(&cli.config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            init_logs(&config.log.level, cli.log_json || config.log.json);
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if let Some(n) = config.proxy.worker_threads {
                builder.worker_threads(n);
            }
            // Control first (`amiproxy::runtime`): one thread for logins, actions and the
            // upstream links; the others deliver events.
            let control = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("amiproxy-control")
                .enable_all()
                .build();
            let rt = builder.thread_name("amiproxy-delivery").enable_all().build();
            let (rt, control) = match (rt, control) {
                (Ok(rt), Ok(control)) => (rt, control),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            amiproxy::runtime::install(control.handle().clone(), rt.handle().clone());
            let code = rt.block_on(run(cli.config, config));
            // Whatever still runs on the control thread (links, sessions) ends with it.
            control.shutdown_timeout(Duration::from_secs(1));
            code
        }
    }
}

/// Runs until SIGTERM or SIGINT; SIGHUP (or a changed file, with `watch_config`) reloads.
async fn run(path: PathBuf, config: Config) -> ExitCode {
    let watch = config.proxy.watch_config;
    // Before anything is bound: a HUP or TERM that comes as soon as the listeners are up (a
    // supervisor reloading, a deploy stopping) must find its handler, not kill the process.
    let (mut hup, mut term) = match (signal(SignalKind::hangup()), signal(SignalKind::terminate())) {
        (Ok(h), Ok(t)) => (h, t),
        _ => {
            eprintln!("amiproxy: cannot install signal handlers");
            return ExitCode::from(1);
        }
    };
    let running = match amiproxy::server::start(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("amiproxy: {e}");
            return ExitCode::from(1);
        }
    };
    for a in running.listener_addrs() {
        // Tests and scripts read these lines to learn ports bound as :0.
        println!("listening on {a}");
    }
    if let Some(a) = running.metrics_addr {
        println!("metrics on {a}");
    }
    if let Some(a) = running.web_addr {
        println!("web on {a}");
    }
    // With watch_config, the config file and every TLS file it names are polled: a
    // certificate renewed in place reloads as an edit of the file does.
    let watched = |running: &amiproxy::server::Running| {
        let mut files = vec![path.clone()];
        files.extend(running.core.config().tls_files());
        files.iter().map(|f| modified(f)).collect::<Vec<_>>()
    };
    let mut last_modified = watched(&running);
    let mut poll = tokio::time::interval(Duration::from_secs(1));
    loop {
        // Some(true): reload; Some(false): nothing changed; None: stop.
        let wake = tokio::select! {
            _ = hup.recv() => Some(true),
            _ = poll.tick(), if watch => Some(watched(&running) != last_modified),
            _ = term.recv() => None,
            _ = tokio::signal::ctrl_c() => None,
        };
        match wake {
            None => break,
            Some(false) => continue,
            Some(true) => {}
        }
        match Config::load(&path) {
            Ok(new) => {
                if let Err(e) = running.reload(new).await {
                    tracing::error!(error = %e, "reload failed; the running configuration is kept");
                }
            }
            Err(problems) => {
                for p in &problems {
                    tracing::error!(key = %p.key, reason = %p.reason, "invalid configuration");
                }
                tracing::error!(
                    count = problems.len(),
                    "reload refused; the running configuration is kept"
                );
            }
        }
        // The files the configuration now names (a reload may have changed the list).
        last_modified = watched(&running);
    }
    let deadline = running.core.config().proxy.shutdown_timeout;
    tracing::info!(?deadline, "shutting down");
    running.shutdown(deadline).await;
    ExitCode::SUCCESS
}

fn modified(path: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn write_private(path: &std::path::Path, pem: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(pem.as_bytes())
}
