//! The journal of side effects: what the simulated PBX did on behalf of its AMI clients,
//! so a test can prove that an attack never reached it (not just that an error came back).
//!
//! One [`Effect`] per thing that happened, in the order it happened, read with
//! [`crate::SimHandle::effects`]. Effects of calls (Originate applications, dialplan,
//! `Variable:` headers) are recorded by the call as it runs, a moment after the Originate
//! was answered: poll for them.

use crate::pbx::lock;
use std::collections::VecDeque;
use std::sync::Mutex;

/// Entries kept; beyond that the oldest go (a sim generating call traffic for hours must
/// not grow without bound).
pub const JOURNAL_CAP: usize = 100_000;

/// One side effect, with its target. Paths, keys and names are recorded exactly as the
/// PBX used them (after substitution).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Effect {
    /// A command was handed to the system shell: `SHELL()`, the `System` / `TrySystem`
    /// applications, a MixMonitor post-recording command (recorded when the recording
    /// starts; Asterisk runs it when it ends), `ExternalIVR` with a program.
    Shell(String),
    /// An AGI script was started (`AGI`, `EAGI`): a program or a FastAGI server.
    Agi(String),
    /// A file was read: `FILE()`, `STAT()`, `FILE_COUNT_LINE()`, `FILE_FORMAT()` (the sim
    /// never touches its own file system; reads give "").
    FileRead(String),
    /// A file was written (`FILE()=`).
    FileWrite(String),
    /// An AstDB key (`family/key`) or prefix was read: `DB()`, `DB_EXISTS()`, `DB_KEYS()`,
    /// `DB_KEYCOUNT()`, `DB_DELETE()`, the DBGet / DBGetTree actions.
    DbRead(String),
    /// An AstDB key was written: `DB()=`, the DBPut action.
    DbWrite(String),
    /// An AstDB key or tree was deleted (whether or not it existed): `DB_DELETE()`, the
    /// `DBdeltree` application, the DBDel / DBDelTree actions.
    DbDelete(String),
    /// A configuration file was read with `AST_CONFIG()`. For `manager.conf` this returns
    /// the sim's manager users' `secret`, `read` and `write`, so a leaked secret shows.
    ConfigRead {
        file: String,
        category: String,
        variable: String,
    },
    /// An environment variable of the Asterisk process was read (`ENV()`; the sim keeps
    /// its own table and never reveals its real environment).
    EnvRead(String),
    /// An environment variable was set (`ENV()=`).
    EnvWrite(String),
    /// A global variable was read: `GLOBAL()`, `GLOBAL_EXISTS()`, Getvar without Channel,
    /// or a `${NAME}` the channel does not have (Asterisk falls back to the globals).
    GlobalRead(String),
    /// A global variable was set or deleted: `GLOBAL()=`, `GLOBAL_DELETE()`, Setvar
    /// without Channel.
    GlobalWrite(String),
    /// A variable of a channel other than the one evaluating was read (`IMPORT()`,
    /// `SHARED(var,channel)`).
    ChannelVarRead { channel: String, var: String },
    /// A variable of a channel other than the one evaluating was set
    /// (`SHARED(var,channel)=`).
    ChannelVarWrite { channel: String, var: String },
    /// The names of every channel were listed (`CHANNELS()`).
    ChannelsListed,
    /// A queue's members or state were read: `QUEUE_MEMBER()`, `QUEUE_MEMBER_LIST()`,
    /// `QUEUE_VARIABLES()`, `QUEUE_MEMBER_COUNT()`, `QUEUE_MEMBER_PENALTY()`, … (the
    /// queue as named, empty for "every queue").
    QueueMemberRead { queue: String },
    /// A queue member was changed: `QUEUE_MEMBER()=`, `QUEUE_MEMBER_PENALTY()=`, the
    /// QueueAdd / QueueRemove / QueuePause actions.
    QueueMemberWrite { queue: String },
    /// A channel joined a queue as a caller (`Queue` application).
    QueueJoin { queue: String },
    /// A channel was sent elsewhere in the dialplan: the `ChannelRedirect` application or
    /// the Redirect action.
    Redirect { channel: String },
    /// A channel was hung up: the `SoftHangup` application or the Hangup action.
    Hangup { channel: String },
    /// A channel started spying: `ChanSpy(prefix)` / `ExtenSpy(exten@context)`; the
    /// prefix or extension as given (empty = every channel).
    Spy { channel: String },
    /// A `Dial` was placed (its dial string; the sim dials nothing).
    Dial { target: String },
    /// A recording started: `MixMonitor` (application or action; relative names resolved
    /// into the monitor spool directory as Asterisk does, also for its `r()` / `t()`
    /// files) or `Record` (the file as given).
    Recording { path: String },
    /// A URL was fetched (`CURL()`; not built into the captured PBX, simulated anyway).
    Curl { url: String },
    /// A query ran against an external database: `ODBC_*()`, `ODBC()`, `REALTIME*()`.
    ExternalDb { function: String, args: String },
    /// A user event was sent (`UserEvent` application or action).
    UserEvent { name: String },
    /// An application ran on a channel (Originate's `Application`, a dialplan priority,
    /// or an application run by `Exec` / `ExecIf`), with its substituted data.
    AppRun { channel: String, app: String, data: String },
    /// A dialplan function was read, with its arguments as passed: every invocation,
    /// known or not (recorded before the function's own effects). Calls refused by
    /// Asterisk's escalation guard (`SimConfig::live_dangerously` off) are not recorded.
    FunctionCall { name: String, args: String },
    /// A dialplan function was written (`FUNC(args)=value` in Setvar, Set, MSet or an
    /// Originate `Variable:`), recorded like [`Effect::FunctionCall`].
    FunctionWrite { name: String, args: String, value: String },
}

/// The bounded journal one sim keeps.
#[derive(Debug, Default)]
pub struct Journal {
    entries: Mutex<VecDeque<Effect>>,
}

impl Journal {
    pub fn record(&self, e: Effect) {
        let mut q = lock(&self.entries);
        if q.len() >= JOURNAL_CAP {
            q.pop_front();
        }
        q.push_back(e);
    }

    pub fn snapshot(&self) -> Vec<Effect> {
        lock(&self.entries).iter().cloned().collect()
    }

    pub fn clear(&self) {
        lock(&self.entries).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_in_order() {
        let j = Journal::default();
        for i in 0..JOURNAL_CAP + 2 {
            j.record(Effect::Shell(i.to_string()));
        }
        let s = j.snapshot();
        assert_eq!(s.len(), JOURNAL_CAP);
        assert_eq!(s[0], Effect::Shell("2".into()));
        j.clear();
        assert!(j.snapshot().is_empty());
    }
}
