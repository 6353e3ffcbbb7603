#![forbid(unsafe_code)]
//! `ami-sim`: run a simulated Asterisk on a TCP port.

use ami_sim::{Dialect, SimConfig, SimError};
use clap::Parser;
use std::net::SocketAddr;

/// A simulated Asterisk speaking AMI like Asterisk 22 (or 1.4, 1.8, 13 with --dialect).
#[derive(Debug, Parser)]
#[command(name = "ami-sim", disable_version_flag = true)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:5038")]
    listen: SocketAddr,
    /// Instance name.
    #[arg(long, default_value = "sim")]
    name: String,
    /// Asterisk systemname (uniqueids `<sn>-<epoch>.<n>`, `SystemName:` on events).
    #[arg(long)]
    system_name: Option<String>,
    /// Asterisk generation to speak: 1.4, 1.8, 13 or 22.
    #[arg(long, default_value = "22")]
    dialect: Dialect,
    /// AMI version in the banner (default: the dialect's, 11.0.0 for 22).
    #[arg(long)]
    version: Option<String>,
    /// Answer Command in the legacy `Response: Follows` form even as Asterisk 22.
    #[arg(long)]
    legacy_command: bool,
    /// First Local channel sequence number.
    #[arg(long, default_value_t = 0)]
    channel_id_base: u32,
    /// Firehose UserEvents per second (0 = as fast as possible).
    #[arg(long)]
    firehose: Option<u64>,
    /// Generated calls per second.
    #[arg(long)]
    calls_per_sec: Option<f64>,
    /// TOML file with `[[users]]` (username, secret, read, write, eventfilters).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> Result<(), SimError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut cfg = SimConfig {
        name: args.name,
        system_name: args.system_name,
        version: args.version.unwrap_or_else(|| args.dialect.ami_version().to_owned()),
        dialect: args.dialect,
        legacy_command: args.legacy_command,
        channel_id_base: args.channel_id_base,
        ..SimConfig::default()
    };
    if let Some(path) = &args.config {
        cfg.users = ami_sim::load_users(path)?;
    }
    let sim = ami_sim::start(cfg, args.listen).await?;
    println!("listening on {}", sim.addr());
    if let Some(rate) = args.firehose {
        sim.set_firehose(Some(rate));
    }
    if let Some(rate) = args.calls_per_sec {
        sim.set_call_rate(rate);
    }
    let _ = tokio::signal::ctrl_c().await;
    sim.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Args::command().debug_assert();
        let a = Args::parse_from([
            "ami-sim",
            "--listen",
            "127.0.0.1:0",
            "--version",
            "2.10.6",
            "--legacy-command",
        ]);
        assert_eq!(a.version.as_deref(), Some("2.10.6"));
        assert!(a.legacy_command);
        assert_eq!(a.dialect, Dialect::V22);
        let a = Args::parse_from(["ami-sim", "--dialect", "1.4"]);
        assert_eq!(a.dialect, Dialect::V1_4);
        assert!(Args::try_parse_from(["ami-sim", "--dialect", "1.6"]).is_err());
    }
}
