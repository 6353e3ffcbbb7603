//! What one simulated Asterisk looks like: its name, AMI version, users.

use crate::dialect::Dialect;
use crate::error::SimError;
use serde::Deserialize;
use std::time::Duration;

/// Configuration of one simulated Asterisk. Defaults mirror the captured PBX
/// (fixtures/asterisk-config/manager.conf) so transcripts replay unchanged.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Instance name (logs, cluster tests).
    pub name: String,
    /// Asterisk `systemname`: uniqueids become `<sn>-<epoch>.<n>` and events carry
    /// `SystemName: <sn>`.
    pub system_name: Option<String>,
    /// AMI version shown in the banner. Left at the default (`11.0.0`) with another
    /// dialect, the dialect's own version is used ([`Dialect::ami_version`]).
    pub version: String,
    pub users: Vec<SimUser>,
    /// Answer `Command` in the legacy form (`Response: Follows` … `--END COMMAND--`) even
    /// as Asterisk 22 (dialects 1.4, 1.8 and 13 always do).
    pub legacy_command: bool,
    /// First Local channel sequence number, so sims in a cluster name channels apart.
    pub channel_id_base: u32,
    /// How long a failed login waits before its answer (Asterisk: 1 s).
    pub auth_delay: Duration,
    /// The Asterisk generation spoken on the wire.
    pub dialect: Dialect,
    /// asterisk.conf `live_dangerously`. Off (Asterisk 12+'s default), functions that can
    /// escalate privileges (`SHELL`, `FILE`, `DB`, `CURL`, `ODBC_*`, …) are refused when
    /// an AMI action evaluates them itself (Getvar, Setvar, Status `Variables`, the
    /// `Variable:` headers of a synchronous Originate); applications run by a call are
    /// not affected. On by default here: the sim plays the most exposed PBX (older
    /// releases had no such guard), so a test sees what an attack would have done.
    pub live_dangerously: bool,
    /// As a 1.4, refuse `CoreShowChannels` as real 1.4 did (it came with 1.6.2). Off, the
    /// sim answers it in 1.4's list framing, so that framing can be tested.
    pub strict_1_4: bool,
}

/// The AMI version of the default config (Asterisk 22).
const DEFAULT_VERSION: &str = "11.0.0";

impl SimConfig {
    /// The banner version: `version`, unless it was left at the Asterisk 22 default while
    /// another dialect is chosen.
    pub fn effective_version(&self) -> &str {
        if self.version == DEFAULT_VERSION && self.dialect != Dialect::V22 {
            self.dialect.ami_version()
        } else {
            &self.version
        }
    }

    /// Whether Command answers in the `Response: Follows` form.
    pub fn legacy_command_output(&self) -> bool {
        self.legacy_command || self.dialect.legacy_command()
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            name: "sim".into(),
            system_name: None,
            version: DEFAULT_VERSION.into(),
            users: SimUser::defaults(),
            legacy_command: false,
            channel_id_base: 0,
            auth_delay: Duration::from_secs(1),
            dialect: Dialect::V22,
            live_dangerously: true,
            strict_1_4: false,
        }
    }
}

/// One `[user]` section of manager.conf.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct SimUser {
    pub username: String,
    pub secret: String,
    /// Read classes (`call,system`, `all`).
    #[serde(default)]
    pub read: String,
    /// Write classes.
    #[serde(default)]
    pub write: String,
    /// manager.conf `eventfilter` values: the advanced `action(include),name(X)` form or a
    /// legacy regex (`!` prefix = exclude).
    #[serde(default)]
    pub eventfilters: Vec<String>,
}

impl SimUser {
    pub fn new(username: &str, secret: &str, read: &str, write: &str) -> Self {
        SimUser {
            username: username.into(),
            secret: secret.into(),
            read: read.into(),
            write: write.into(),
            eventfilters: Vec::new(),
        }
    }

    /// The three users of fixtures/asterisk-config/manager.conf.
    pub fn defaults() -> Vec<SimUser> {
        let mut reporting = SimUser::new(
            "reporting",
            "reporting-secret",
            "call,cdr,reporting,user,agent",
            "reporting",
        );
        reporting.eventfilters = ["Hangup", "Cdr", "UserEvent", "QueueCallerJoin", "QueueCallerLeave"]
            .iter()
            .map(|n| format!("action(include),name({n})"))
            .collect();
        vec![
            SimUser::new("admin", "admin-secret", "all", "all"),
            SimUser::new("readonly", "ro-secret", "call,system", ""),
            reporting,
        ]
    }
}

/// The `--config` file of the binary: `[[users]]` tables.
#[derive(Debug, Deserialize)]
struct UsersFile {
    users: Vec<SimUser>,
}

/// Reads users from a TOML file (`[[users]] username=… secret=… read=… write=…`).
pub fn load_users(path: &std::path::Path) -> Result<Vec<SimUser>, SimError> {
    let text = std::fs::read_to_string(path).map_err(|e| SimError::Config(format!("{}: {e}", path.display())))?;
    parse_users(&text)
}

/// Parses the users file text.
pub fn parse_users(text: &str) -> Result<Vec<SimUser>, SimError> {
    toml::from_str::<UsersFile>(text)
        .map(|f| f.users)
        .map_err(|e| SimError::Config(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_file() {
        let u = parse_users("[[users]]\nusername='a'\nsecret='b'\nread='all'\nwrite='all'\n").unwrap();
        assert_eq!(u[0], SimUser::new("a", "b", "all", "all"));
        assert!(parse_users("nonsense").is_err());
    }
}
