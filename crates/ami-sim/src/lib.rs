#![forbid(unsafe_code)]
//! A simulated Asterisk that speaks AMI byte for byte like Asterisk 22.10.1 (AMI 11.0.0) as
//! captured in fixtures/transcripts: login (plain and MD5), permissions, event classes and
//! filters, Originate on Local channels with the real event sequence, channels, queues,
//! AstDB, CLI commands, plus fault controls (drop, stall, garbage, restart) and load
//! generators (event firehose, call traffic) for testing a proxy.
//!
//! It can also speak older generations ([`Dialect`]: `SimConfig::dialect`, or
//! `ami-sim --dialect 1.4|1.8|13|22`) as fixtures/LEGACY.md describes them, so a proxy can
//! be tested against the PBXs still in service. Asterisk 22 stays the default and stays
//! byte-exact with the transcripts.
//!
//! # Evaluation and the journal of side effects
//!
//! A proxy that logs in with every class must enforce Asterisk's trust model itself, so
//! the sim evaluates what a real PBX evaluates for such an account and records every side
//! effect in a journal ([`SimHandle::effects`], [`SimHandle::clear_effects`], one
//! [`Effect`] per thing that happened, in order): a test can prove that nothing ran, not
//! only that an error came back.
//!
//! - **Substitution** as `pbx_variables.c` does it: `${NAME}`, `${NAME:offset:length}`,
//!   `${FUNC(args)}` (the arguments substituted first, nested), `$[expr]` (integer
//!   arithmetic, comparisons, `&`, `|`; anything else comes back as its text). Bounded
//!   (nesting, lookups, length): network input cannot exhaust the sim.
//! - **Functions** by their case-sensitive names: `SHELL`, `FILE`, `STAT`, `DB`,
//!   `DB_EXISTS`/`DB_DELETE`/`DB_KEYS`, `AST_CONFIG` (manager.conf answers with the sim's
//!   users, secrets included), `ENV`, `EVAL`, `CURL`, `ODBC*`, `REALTIME*`, `GLOBAL*`,
//!   `IMPORT`, `SHARED`, `CHANNELS`, `QUEUE_MEMBER*`, `QUEUE_VARIABLES`, `CALLERID`,
//!   `CHANNEL`, `CDR`, `LEN`, `CUT`, `TOUPPER`/`TOLOWER`. Other registered functions of
//!   Asterisk 22 (fixtures/asterisk22) answer "" and unknown ones fail, both journaled.
//! - **Actions**: Getvar and Setvar (`NAME(…)` read or written as a function, on the
//!   channel or a dummy one; plain names are the channel's variables, the globals
//!   without a channel, and a read falls back to the globals), Status `Variables:` /
//!   `AllVariables:`, every Originate `Variable:` header (split like
//!   `AST_STANDARD_APP_ARGS`: commas outside parentheses, brackets and quotes, quotes
//!   removed, backslash escapes, at most 64 parts; functions written on the `;1` half),
//!   Originate `Application` + `Data` (substituted, then run, as
//!   `ast_pbx_exec_application`; an application Asterisk 22 lacks runs nothing), the
//!   MixMonitor action. Dialplan priorities are substituted the same way. DB*, Hangup,
//!   Redirect, QueueAdd/Remove/Pause and UserEvent record what they change too.
//! - **Applications** beyond their channel: `System`/`TrySystem`, `Set`/`MSet`,
//!   `Exec`/`TryExec`/`ExecIf`, `ChannelRedirect` and `SoftHangup` (the other channel
//!   really moves or hangs up), `Queue` (really joins), `ChanSpy`/`ExtenSpy`, `Dial`,
//!   `MixMonitor`, `Record`, `AGI`/`EAGI`, `ExternalIVR`, `UserEvent`, `DBdeltree`.
//! - **Asterisk's own guards** stay as they are: Originate's check for dangerous
//!   applications and data, and Getvar / Status refusing `SHELL` / `EVAL` to a user
//!   without `system`. [`SimConfig::live_dangerously`] (on by default) can switch on the
//!   escalation guard of Asterisk 12+ for functions evaluated by actions.
//!
//! Not simulated: nothing touches the sim's machine (no file, process, network or real
//! environment; reads of them give ""), `SHELL` returns "" instead of the output, `Dial`
//! reaches no one (so neither its options' Gosubs nor Queue members' AGIs run), `Gosub`
//! and `Goto` from an Originate application only run as journal entries, `$[expr]` has no
//! regex or ternary operators, `QUEUE_VARIABLES` sets no variables, Status `Variables:`
//! is answered in 13/22 only, and the MixMonitor command is journaled when the
//! recording starts (Asterisk runs it when the recording ends).
//!
//! # Dialects
//!
//! | | 1.4 | 1.8 | 13 | 22 |
//! |---|---|---|---|---|
//! | banner | `1.0` | `1.1` | `2.10.6` | `11.0.0` |
//! | Ping | `Response: Pong` | `Success` + `Ping: Pong` + `Timestamp` | same | same |
//! | Events | `Response: Events On/Off` | `Success` + `Events:` | same | same |
//! | action before login | `Authentication Required` | `Permission denied` | same | same |
//! | Logoff before login | `Success` / `See ya` | `Goodbye` | same | same |
//! | second Login | `Already logged in` | `Already authenticated` | same | same |
//! | FullyBooted | `Privilege`, `Status` | same | same | + `Uptime`, `LastReload` |
//! | Command | `Follows` … `--END COMMAND--` | same | same | `Output:` lines |
//! | Status list | no EventList; `StatusComplete` | no EventList; `StatusComplete` + `Items` | EventList + ListItems + Items | same |
//! | QueueStatus list | no EventList | no EventList | EventList + ListItems | same |
//! | CoreShowChannels | no EventList | EventList + ListItems | same | same |
//! | Newchannel | `State` text, `CallerIDNum/Name` | `ChannelState(Desc)`, `AccountCode`, `Exten`, `Context` | channel block | same |
//! | halves joined | `Link` / `Unlink` | `Bridge` (`Bridgestate: Link/Unlink`, `Bridgetype: core`) | `BridgeCreate`, `BridgeEnter` … `BridgeLeave`, `BridgeDestroy` | none (as captured) |
//! | Rename ([`SimHandle::rename_channel`]) | `Oldname`, `Newname`, `Uniqueid` | `Channel`, `Newname`, `Uniqueid` | same | same |
//! | Hangup | `Channel`, `Uniqueid`, `Cause`, `Cause-txt` | + CallerID / ConnectedLine | channel block + causes | same |
//!
//! Other generation differences the sim also follows: 1.4 names Local halves
//! `Local/100@default-0000,1` (1.8 on: `-00000000;1`), sends `OriginateSuccess` /
//! `OriginateFailure` instead of `OriginateResponse`, `Newcallerid`, `Join` / `Leave` for
//! queue callers (1.8 too), the `call` class for `Newexten`/`VarSet` (no `dialplan` class),
//! and no `SystemName:` header. 1.4 and 1.8 send no `DeviceStateChange`, `DialBegin` /
//! `DialEnd`, `HangupRequest` / `SoftHangupRequest`, `NewConnectedLine` or security
//! events; 1.4 no `LocalBridge` either. DBGet before 13 has no `DBGetComplete`.
//! Uniqueids keep the `systemname-` prefix in every dialect: a proxy in front of a
//! cluster relies on them being globally unique.
//!
//! # Where the sim is not exact
//!
//! - **22** is exact where the transcripts cover it. The sim has no second channel
//!   technology and does not dial queue members, so it never emits BridgeCreate /
//!   BridgeEnter in 22 (transcript 05's queue bridge is not simulated), and a Local
//!   Originate shows `LocalBridge` but no bridge, as the capture does.
//! - **Joined halves** (1.4 `Link`, 1.8 `Bridge`, 13 `BridgeEnter`): real Asterisk emits
//!   these only when a channel is bridged with another by Dial, Queue or Bridge; the two
//!   halves of one Local channel are never bridged to each other. The sim joins the halves
//!   of an answered Local call (and unjoins them before the hangups) so every generation's
//!   join form can be tested; 1.4/1.8 `Link` also fills Status `Link` / `BridgedChannel`.
//! - **1.4 FullyBooted**: real 1.4 never sent FullyBooted (it came with 1.6.2/1.8); the
//!   sim sends it after login as LEGACY.md's table says. The seed document (the 1.2/1.4
//!   AMI docs, fixtures/seed/) shows no FullyBooted at all.
//! - **1.4 CoreShowChannels** did not exist (1.6.2+); the sim answers it with 1.4 list
//!   framing so the framing can be tested (`SimConfig::strict_1_4` refuses it, as 1.4 did). Every other action keeps its 22 answer texts
//!   and item fields in all dialects (QueueSummary, DBGetTree, ShowDialPlan, ListCommands
//!   with the 22 action table, CoreSettings/CoreStatus, Originate/Hangup messages, …).
//! - **Seed vs LEGACY.md**: the seed's examples are partly 1.2 forms (`Newchannel` with
//!   `Callerid:`, `Hangup` without `Cause-txt`, `Link` without `CallerID1/2`); the sim
//!   follows LEGACY.md's 1.4 column. Header sets of events LEGACY.md does not describe
//!   (Newstate, Newexten, VarSet, Join/Leave, OriginateSuccess, Status items, QueueStatus
//!   items) follow the 1.4 / 1.8 sources from memory: header *order* and empty-versus-
//!   `<unknown>` caller id values may differ from a real PBX.
//! - **13** uses Asterisk 22's item fields (Status, QueueStatus, CoreShowChannel, channel
//!   blocks with `Language`); real 13 lacks a few later fields (e.g. QueueMember
//!   `Wrapuptime`, Status `BridgeID` layout). BridgeCreate/Enter omit
//!   `BridgeVideoSourceMode` (15+).
//! - **CLI text** (`core show channels`, `queue show`, `core show version`) keeps one
//!   layout per command (queue show differs a little for 1.4 and 1.8); column widths are
//!   not each release's own.

mod actions;
mod astdb;
mod calls;
mod channels;
use ami_proto::clock;
mod commands;
mod config;
mod dialect;
mod dialplan;
mod dialplan_eval;
mod effects;
mod error;
mod events;
mod filters;
mod firehose;
mod pbx;
mod perms;
mod queues;
mod server;
mod session;

pub use config::{load_users, parse_users, SimConfig, SimUser};
pub use dialect::{Dialect, ParseDialectError};
pub use effects::{Effect, JOURNAL_CAP};
pub use error::SimError;
pub use server::{start, SimHandle};
