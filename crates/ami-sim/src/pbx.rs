//! The state one simulated Asterisk shares among its sessions and calls.

use crate::astdb::AstDb;
use crate::channels::Channel;
use crate::config::SimConfig;
use crate::effects::{Effect, Journal};
use crate::events::Bus;
use crate::queues::Queues;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Instant, SystemTime};
use tokio::sync::watch;

/// Locks a mutex even if a panicking holder poisoned it: the data are plain tables that
/// stay consistent between statements.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Fault switches and generators, watched by the session and generator tasks.
#[derive(Debug)]
pub struct Controls {
    pub stalled: watch::Sender<bool>,
    /// Bumped to close every connection at once.
    pub drop_gen: watch::Sender<u64>,
    pub firehose: watch::Sender<Option<u64>>,
    pub call_rate: watch::Sender<f64>,
}

#[derive(Debug)]
pub struct Pbx {
    pub cfg: SimConfig,
    pub bus: Bus,
    pub controls: Controls,
    /// Live channels by name.
    pub channels: Mutex<BTreeMap<String, Channel>>,
    pub astdb: Mutex<AstDb>,
    pub queues: Mutex<Queues>,
    /// Global dialplan variables (Setvar without Channel).
    pub globals: Mutex<HashMap<String, String>>,
    /// `SHARED()` variables by channel uniqueid (dropped with the channel).
    pub shared: Mutex<HashMap<String, BTreeMap<String, String>>>,
    /// The environment `ENV()` sees: the sim's own, never the process's.
    pub env: Mutex<HashMap<String, String>>,
    /// What the PBX did on its clients' behalf.
    pub journal: Journal,
    pub started: Instant,
    pub started_wall: SystemTime,
    uid_seq: AtomicU64,
    channel_seq: AtomicU64,
    local_seq: AtomicU32,
    pub processed_calls: AtomicU64,
    pub connections: AtomicUsize,
    pub unauthenticated: AtomicUsize,
    session_seq: AtomicU64,
    pub firehose_seq: AtomicU64,
}

impl Pbx {
    pub fn new(mut cfg: SimConfig) -> Pbx {
        cfg.version = cfg.effective_version().to_owned();
        // Asterisk 1.4 had no `systemname` header on events (its uniqueids keep the prefix
        // here anyway: a proxy in front of a cluster needs them unique).
        let header_name = if cfg.dialect == crate::Dialect::V1_4 {
            None
        } else {
            cfg.system_name.clone()
        };
        let bus = Bus::new(header_name);
        let local = cfg.channel_id_base;
        Pbx {
            bus,
            controls: Controls {
                stalled: watch::channel(false).0,
                drop_gen: watch::channel(0).0,
                firehose: watch::channel(None).0,
                call_rate: watch::channel(0.0).0,
            },
            channels: Mutex::new(BTreeMap::new()),
            astdb: Mutex::new(AstDb::default()),
            queues: Mutex::new(Queues::default()),
            globals: Mutex::new(HashMap::new()),
            shared: Mutex::new(HashMap::new()),
            env: Mutex::new(HashMap::new()),
            journal: Journal::default(),
            started: Instant::now(),
            started_wall: SystemTime::now(),
            uid_seq: AtomicU64::new(0),
            channel_seq: AtomicU64::new(0),
            local_seq: AtomicU32::new(local),
            processed_calls: AtomicU64::new(0),
            connections: AtomicUsize::new(0),
            unauthenticated: AtomicUsize::new(0),
            session_seq: AtomicU64::new(0),
            firehose_seq: AtomicU64::new(0),
            cfg,
        }
    }

    /// A new uniqueid: `<epoch>.<n>`, or `<systemname>-<epoch>.<n>`.
    pub fn next_uniqueid(&self) -> String {
        let n = self.uid_seq.fetch_add(1, Ordering::Relaxed);
        let epoch = crate::clock::unix(SystemTime::now()).as_secs();
        match &self.cfg.system_name {
            Some(sn) => format!("{sn}-{epoch}.{n}"),
            None => format!("{epoch}.{n}"),
        }
    }

    /// Creation order of channels (listings show the newest first, as Asterisk does).
    pub fn next_channel_seq(&self) -> u64 {
        self.channel_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// The 8-hex-digit suffix of a new Local channel pair.
    pub fn next_local_id(&self) -> u32 {
        self.local_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// A fake `SessionID: 0x…` in the style of Asterisk's session pointers.
    pub fn next_session_id(&self) -> String {
        let n = self.session_seq.fetch_add(1, Ordering::Relaxed);
        format!("0x7f76{:08x}", 0x3c00_11a0u64 + n * 0x100)
    }

    pub fn dialect(&self) -> crate::Dialect {
        self.cfg.dialect
    }

    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Records one side effect.
    pub fn effect(&self, e: Effect) {
        self.journal.record(e);
    }

    /// A live channel as Asterisk's `ast_channel_get_by_name` finds it: the name (ASCII
    /// case-insensitive) or the uniqueid.
    pub fn find_channel(&self, name: &str) -> Option<Channel> {
        let chans = lock(&self.channels);
        if let Some(c) = chans.get(name) {
            return Some(c.clone());
        }
        chans
            .values()
            .find(|c| c.name.eq_ignore_ascii_case(name) || c.uniqueid == name)
            .cloned()
    }

    /// Live channels, newest first.
    pub fn channel_list(&self) -> Vec<Channel> {
        let mut v: Vec<Channel> = lock(&self.channels).values().cloned().collect();
        v.sort_by_key(|c| std::cmp::Reverse(c.seq));
        v
    }
}
