//! `[export]`: where the merged upstream event stream is copied to, outside the proxy.
//! Today one sink, `[export.nats]` (NATS JetStream); the raw table, its checks and the
//! checked model live together here so the section reads in one place.

use super::check::{chosen, Bad};
use super::raw::Choice;
use ami_policy::filter::EventFilter;
use serde::Deserialize;
use std::time::Duration;

/// `[export]` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawExport {
    pub(super) nats: Option<RawNats>,
}

/// `export.nats.storage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StreamStorage {
    File,
    Memory,
}

/// `[export.nats]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawNats {
    url: String,
    subject_prefix: String,
    stream: String,
    filter: Vec<String>,
    buffer: usize,
    max_in_flight: usize,
    ack_timeout_secs: f64,
    storage: Choice<StreamStorage>,
    max_age_secs: u64,
    max_bytes: i64,
    duplicate_window_secs: u64,
    replica: Option<String>,
}

impl Default for RawNats {
    fn default() -> Self {
        RawNats {
            url: String::new(),
            subject_prefix: "ami".into(),
            stream: "AMI".into(),
            filter: Vec::new(),
            buffer: 65536,
            max_in_flight: 1024,
            ack_timeout_secs: 5.0,
            storage: Choice::Valid(StreamStorage::File),
            max_age_secs: 0,
            max_bytes: -1,
            duplicate_window_secs: 120,
            replica: None,
        }
    }
}

/// The checked `[export]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportConfig {
    /// Off when the file has no `[export.nats]`.
    pub nats: Option<NatsExport>,
}

/// The checked `[export.nats]`: what the exporter publishes where, and the stream it makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsExport {
    /// The NATS server(s), comma-separated as the client takes them.
    pub url: String,
    /// The first subject token(s): events go to `<prefix>.<server>.<Event>`.
    pub subject_prefix: String,
    /// The JetStream stream, created with subjects `<prefix>.>` when it does not exist.
    pub stream: String,
    /// Asterisk eventfilter expressions, checked (compiled again by the exporter).
    pub filter: Vec<String>,
    /// Events held between the hub and NATS before the exporter stops taking from the hub.
    pub buffer: usize,
    /// Publishes awaiting JetStream's ack at once.
    pub max_in_flight: usize,
    /// How long one publish waits for its ack before everything unacked is sent again.
    pub ack_timeout: Duration,
    pub storage: StreamStorage,
    /// 0: no age limit.
    pub max_age: Duration,
    /// -1: no size limit.
    pub max_bytes: i64,
    /// JetStream's de-duplication window (every replica's `Nats-Msg-Id` is the same).
    pub duplicate_window: Duration,
    /// This replica's name in the headers; None: `<hostname>-<pid>`.
    pub replica: Option<String>,
}

/// True when `token` can be one token of a NATS subject as the proxy writes it.
pub(crate) fn is_subject_token(token: &str) -> bool {
    !token.is_empty()
        && !token
            .chars()
            .any(|c| matches!(c, '.' | '*' | '>') || c.is_whitespace() || c.is_control())
}

/// `[export]`.
pub(super) fn export(raw: &RawExport, bad: Bad) -> ExportConfig {
    let Some(n) = &raw.nats else {
        return ExportConfig::default();
    };
    let key = |k: &str| format!("export.nats.{k}");
    if n.url.trim().is_empty() {
        bad(key("url"), "is required (e.g. \"nats://127.0.0.1:4222\")".into());
    }
    if n.subject_prefix.split('.').any(|t| !is_subject_token(t)) {
        bad(
            key("subject_prefix"),
            "must be subject tokens joined by `.` (no empty token, `*`, `>` or space)".into(),
        );
    }
    if !is_subject_token(&n.stream) || n.stream.contains(['/', '\\']) {
        bad(
            key("stream"),
            "must be a stream name (no `.`, `*`, `>`, `/`, space)".into(),
        );
    }
    for (i, f) in n.filter.iter().enumerate() {
        if let Err(e) = EventFilter::parse(f) {
            bad(format!("export.nats.filter[{i}]"), e);
        }
    }
    if n.buffer < 16 {
        bad(key("buffer"), "must be at least 16".into());
    }
    if n.max_in_flight == 0 || n.max_in_flight > 65536 {
        bad(key("max_in_flight"), "must be between 1 and 65536".into());
    }
    if !(n.ack_timeout_secs > 0.0 && n.ack_timeout_secs <= 600.0) {
        bad(key("ack_timeout_secs"), "must be between 0 and 600".into());
    }
    if n.max_bytes == 0 || n.max_bytes < -1 {
        bad(key("max_bytes"), "must be positive, or -1 for no limit".into());
    }
    if n.duplicate_window_secs == 0 {
        bad(
            key("duplicate_window_secs"),
            "must be at least 1: replicas de-duplicate through it".into(),
        );
    }
    if n.max_age_secs > 0 && n.duplicate_window_secs > n.max_age_secs {
        bad(
            key("duplicate_window_secs"),
            "must not exceed max_age_secs (JetStream refuses it)".into(),
        );
    }
    if let Some(r) = &n.replica {
        if r.is_empty() || r.contains(['\r', '\n']) {
            bad(key("replica"), "must be a non-empty single line".into());
        }
    }
    let storage = chosen(&n.storage, || key("storage"), bad).unwrap_or(StreamStorage::File);
    ExportConfig {
        nats: Some(NatsExport {
            url: n.url.trim().to_owned(),
            subject_prefix: n.subject_prefix.clone(),
            stream: n.stream.clone(),
            filter: n.filter.clone(),
            buffer: n.buffer,
            max_in_flight: n.max_in_flight,
            ack_timeout: Duration::from_secs_f64(n.ack_timeout_secs.clamp(0.001, 600.0)),
            storage,
            max_age: Duration::from_secs(n.max_age_secs),
            max_bytes: n.max_bytes,
            duplicate_window: Duration::from_secs(n.duplicate_window_secs.max(1)),
            replica: n.replica.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    const BASE: &str = r#"
[[listener]]
address = "127.0.0.1:0"
[[upstream]]
name = "pbx1"
kind = "simulated"
"#;

    #[test]
    fn absent_means_off_and_defaults_apply() {
        let c = Config::from_toml(BASE, Path::new(".")).unwrap();
        assert!(c.export.nats.is_none());
        let c = Config::from_toml(
            &format!("{BASE}[export.nats]\nurl = \"nats://127.0.0.1:4222\"\n"),
            Path::new("."),
        )
        .unwrap();
        let n = c.export.nats.unwrap();
        assert_eq!(n.subject_prefix, "ami");
        assert_eq!(n.stream, "AMI");
        assert_eq!(n.duplicate_window.as_secs(), 120);
        assert_eq!(n.storage, super::StreamStorage::File);
        assert!(n.filter.is_empty());
    }

    #[test]
    fn problems_are_reported_under_their_keys() {
        let text = format!(
            "{BASE}[export.nats]\nsubject_prefix = \"a.*\"\nstream = \"A.B\"\nfilter = [\"action(bogus)\"]\n\
             buffer = 1\nmax_in_flight = 0\nstorage = \"tape\"\nduplicate_window_secs = 0\n"
        );
        let errs = Config::from_toml(&text, Path::new(".")).unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        for k in [
            "export.nats.url",
            "export.nats.subject_prefix",
            "export.nats.stream",
            "export.nats.filter[0]",
            "export.nats.buffer",
            "export.nats.max_in_flight",
            "export.nats.storage",
            "export.nats.duplicate_window_secs",
        ] {
            assert!(keys.contains(&k), "{k} missing from {errs:?}");
        }
    }

    #[test]
    fn subject_tokens() {
        assert!(super::is_subject_token("pbx-1"));
        for t in ["", "a.b", "a*", ">", "a b", "a\tb"] {
            assert!(!super::is_subject_token(t), "{t:?}");
        }
    }
}
