//! How far each dialplan function and application reaches, and which of an application's
//! arguments the proxy must read into. Mostly tables: what Asterisk's modules do is a fact
//! to look up, not to compute; a name missing here reaches [`Reach::System`].

/// How far a dialplan function or application reaches, for the users who may call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reach {
    /// Computes on its arguments, or reads and writes only the channel the action targets.
    Own,
    /// Reads or writes other channels, queues, conferences, global variables, device or
    /// extension states, other contexts: other tenants' objects. Refused to scoped users.
    Shared,
    /// Runs commands, reads or writes files, AstDB, the configuration or the environment,
    /// reaches the network, or evaluates its arguments as dialplan again: needs `system`.
    System,
}

/// Dialplan functions by reach. Functions not named here reach [`Reach::System`]: the proxy
/// cannot know what a module's function does, so only trusted users may call it. That
/// includes every function whose argument is a variable NAME (`CUT`, `FIELDQTY`, `PUSH`,
/// `ARRAY`, `INC`, `IMPORT`, `MASTER_CHANNEL`, ...): Asterisk substitutes `${name}` or writes
/// `name` as a variable, and a name ending in `)` is itself a function call, so
/// `CUT(AST_CONFIG(manager.conf,proxy,secret),|,1)` would reach what `CUT` itself cannot.
/// `CHANNEL` and `FEATURE*` are shared: their writes send a channel into any context
/// (`hangup_handler_push`, `after_bridge_goto`) or arm features (automixmon); so is
/// `TONE_DETECT`, whose `g()`/`h()` options jump to any context when a tone is heard.
/// `CONFBRIDGE` and `CALLCOMPLETION` need `system`: a dynamic bridge profile's
/// `record_command` runs a shell command, and call completion runs `cc_callback_sub` and
/// dials `cc_agent_dialstring`.
const FUNCTIONS: &[(Reach, &[&str])] = &[
    (
        Reach::Own,
        &[
            "ABS",
            "AES_DECRYPT",
            "AES_ENCRYPT",
            "BASE64_DECODE",
            "BASE64_ENCODE",
            "BASENAME",
            "CALLERID",
            "CDR",
            "CDR_PROP",
            "CONNECTEDLINE",
            "CSV_QUOTE",
            "DIGIT_SUM",
            "DIRNAME",
            "EXISTS",
            "FAXOPT",
            "FILTER",
            "FRAME_DROP",
            "FRAME_TRACE",
            "HANGUPCAUSE",
            "HANGUPCAUSE_KEYS",
            "HOLD_INTERCEPT",
            "ICONV",
            "IF",
            "IFTIME",
            "ISNULL",
            "JITTERBUFFER",
            "KEYPADHASH",
            "LEN",
            "LOG_GROUP",
            "LTRIM",
            "MATH",
            "MAX",
            "MD5",
            "MESSAGE",
            "MESSAGE_DATA",
            "MIN",
            "MIXMONITOR",
            "MUTEAUDIO",
            "PASSTHRU",
            "PITCH_SHIFT",
            "QUOTE",
            "RAND",
            "RECORDING_INFO",
            "REDIRECTING",
            "REGEX",
            "RTRIM",
            "SAYFILES",
            "SHA1",
            "SORT",
            "SPEECH",
            "SPEECH_ENGINE",
            "SPEECH_GRAMMAR",
            "SPEECH_RESULTS_TYPE",
            "SPEECH_SCORE",
            "SPEECH_TEXT",
            "SPRINTF",
            "STACK_PEEK",
            "STRFTIME",
            "STRPTIME",
            "TALK_DETECT",
            "TESTTIME",
            "TIMEOUT",
            "TOLOWER",
            "TOUPPER",
            "TRIM",
            "URIDECODE",
            "URIENCODE",
            "UUID",
            "VERSION",
            "VOLUME",
        ],
    ),
    (
        Reach::Shared,
        &[
            "AGENT",
            "CHANNEL",
            "CHANNELS",
            "CHANNEL_EXISTS",
            "CONFBRIDGE_CHANNELS",
            "CONFBRIDGE_INFO",
            "DEVICE_STATE",
            "DIALGROUP",
            "DIALPLAN_EXISTS",
            "EXPORT",
            "EXTENSION_STATE",
            "FEATURE",
            "FEATUREMAP",
            "GLOBAL",
            "GLOBAL_DELETE",
            "GLOBAL_EXISTS",
            "GROUP",
            "GROUP_COUNT",
            "GROUP_LIST",
            "GROUP_MATCH_COUNT",
            "HINT",
            "LOCK",
            "PARK_GET_CHANNEL",
            "PERIODIC_HOOK",
            "PRESENCE_STATE",
            "QUEUE_EXISTS",
            "QUEUE_GET_CHANNEL",
            "QUEUE_MEMBER",
            "QUEUE_MEMBER_COUNT",
            "QUEUE_MEMBER_LIST",
            "QUEUE_MEMBER_PENALTY",
            "QUEUE_VARIABLES",
            "QUEUE_WAITING_COUNT",
            "SHARED",
            "TONE_DETECT",
            "TRYLOCK",
            "UNLOCK",
            "VALID_EXTEN",
            "VMCOUNT",
        ],
    ),
];

/// The reach of a dialplan function (names are case-sensitive in Asterisk, upper case).
pub fn function_reach(name: &str) -> Reach {
    FUNCTIONS
        .iter()
        .find(|(_, names)| names.contains(&name))
        .map(|(reach, _)| *reach)
        .unwrap_or(Reach::System)
}

/// Which of an application's arguments (comma-separated, by position) the proxy must read
/// into; the rest are plain (after Asterisk's substitution, which restricted users cannot
/// use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppArgs {
    /// A variable name the application sets (`Read(var,...)`): judged as a variable name.
    pub variable: Option<usize>,
    /// `&`-separated sound file names the application plays: names, not paths.
    pub files: Option<usize>,
    /// A channel the application acts on (`SendDTMF(digits,,,channel)`).
    pub channel: Option<usize>,
    /// A say-format whose `'quoted'` parts are sound files played as they are
    /// (`DateTime(time,zone,format)`).
    pub quoted_files: Option<usize>,
    pub assign: Assign,
}

/// Assignments in an application's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assign {
    No,
    /// `name=value`, split at the first `=` (Set).
    One,
    /// `name=value,...` (MSet).
    Many,
}

impl AppArgs {
    pub const PLAIN: AppArgs = AppArgs {
        variable: None,
        files: None,
        channel: None,
        quoted_files: None,
        assign: Assign::No,
    };

    const fn quoted_files(i: usize) -> AppArgs {
        AppArgs {
            quoted_files: Some(i),
            ..AppArgs::PLAIN
        }
    }

    const fn files(i: usize) -> AppArgs {
        AppArgs {
            files: Some(i),
            ..AppArgs::PLAIN
        }
    }

    const fn variable(i: usize) -> AppArgs {
        AppArgs {
            variable: Some(i),
            ..AppArgs::PLAIN
        }
    }

    const fn channel(i: usize) -> AppArgs {
        AppArgs {
            channel: Some(i),
            ..AppArgs::PLAIN
        }
    }

    const fn assign(assign: Assign) -> AppArgs {
        AppArgs {
            assign,
            ..AppArgs::PLAIN
        }
    }
}

/// Applications by reach, with how to read their arguments. Applications not named here
/// reach [`Reach::System`].
const APPLICATIONS: &[(&str, Reach, AppArgs)] = &[
    // Own: play, wait, answer, signal on the channel being originated.
    ("Answer", Reach::Own, AppArgs::PLAIN),
    ("BackgroundDetect", Reach::Own, AppArgs::files(0)),
    ("Busy", Reach::Own, AppArgs::PLAIN),
    ("Congestion", Reach::Own, AppArgs::PLAIN),
    ("ControlPlayback", Reach::Own, AppArgs::files(0)),
    ("DateTime", Reach::Own, AppArgs::quoted_files(2)),
    ("Echo", Reach::Own, AppArgs::PLAIN),
    ("Hangup", Reach::Own, AppArgs::PLAIN),
    ("HangupCauseClear", Reach::Own, AppArgs::PLAIN),
    ("Milliwatt", Reach::Own, AppArgs::PLAIN),
    ("Morsecode", Reach::Own, AppArgs::PLAIN),
    ("MSet", Reach::Own, AppArgs::assign(Assign::Many)),
    ("MusicOnHold", Reach::Own, AppArgs::PLAIN),
    ("NoOp", Reach::Own, AppArgs::PLAIN),
    ("Playback", Reach::Own, AppArgs::files(0)),
    ("PlayTones", Reach::Own, AppArgs::PLAIN),
    ("Proceeding", Reach::Own, AppArgs::PLAIN),
    ("Progress", Reach::Own, AppArgs::PLAIN),
    (
        "Read",
        Reach::Own,
        AppArgs {
            variable: Some(0),
            files: Some(1),
            ..AppArgs::PLAIN
        },
    ),
    ("ReceiveMF", Reach::Own, AppArgs::variable(0)),
    ("ReceiveSF", Reach::Own, AppArgs::variable(0)),
    ("ReceiveText", Reach::Own, AppArgs::variable(0)),
    ("Ringing", Reach::Own, AppArgs::PLAIN),
    ("SayAlpha", Reach::Own, AppArgs::PLAIN),
    ("SayAlphaCase", Reach::Own, AppArgs::PLAIN),
    ("SayDigits", Reach::Own, AppArgs::PLAIN),
    ("SayMoney", Reach::Own, AppArgs::PLAIN),
    ("SayNumber", Reach::Own, AppArgs::PLAIN),
    ("SayOrdinal", Reach::Own, AppArgs::PLAIN),
    ("SayPhonetic", Reach::Own, AppArgs::PLAIN),
    ("SayUnixTime", Reach::Own, AppArgs::quoted_files(2)),
    ("SendDTMF", Reach::Own, AppArgs::channel(3)),
    ("SendMF", Reach::Own, AppArgs::channel(5)),
    ("SendSF", Reach::Own, AppArgs::channel(2)),
    ("SendText", Reach::Own, AppArgs::PLAIN),
    ("Set", Reach::Own, AppArgs::assign(Assign::One)),
    ("StartMusicOnHold", Reach::Own, AppArgs::PLAIN),
    ("StopMusicOnHold", Reach::Own, AppArgs::PLAIN),
    ("StopPlayTones", Reach::Own, AppArgs::PLAIN),
    ("StreamEcho", Reach::Own, AppArgs::PLAIN),
    ("ToneScan", Reach::Own, AppArgs::PLAIN),
    ("Verbose", Reach::Own, AppArgs::PLAIN),
    ("Wait", Reach::Own, AppArgs::PLAIN),
    ("WaitDigit", Reach::Own, AppArgs::PLAIN),
    ("WaitForNoise", Reach::Own, AppArgs::PLAIN),
    ("WaitForRing", Reach::Own, AppArgs::PLAIN),
    ("WaitForSilence", Reach::Own, AppArgs::PLAIN),
    ("WaitForTone", Reach::Own, AppArgs::PLAIN),
    ("WaitUntil", Reach::Own, AppArgs::PLAIN),
    ("Zapateller", Reach::Own, AppArgs::PLAIN),
    // Shared: reach other channels, queues, conferences, parking lots, other contexts.
    ("AddQueueMember", Reach::Shared, AppArgs::PLAIN),
    ("AgentLogin", Reach::Shared, AppArgs::PLAIN),
    ("AgentRequest", Reach::Shared, AppArgs::PLAIN),
    ("AttendedTransfer", Reach::Shared, AppArgs::PLAIN),
    ("BackGround", Reach::Shared, AppArgs::PLAIN),
    ("BlindTransfer", Reach::Shared, AppArgs::PLAIN),
    ("Bridge", Reach::Shared, AppArgs::PLAIN),
    ("BridgeAdd", Reach::Shared, AppArgs::PLAIN),
    ("BridgeWait", Reach::Shared, AppArgs::PLAIN),
    ("Broadcast", Reach::Shared, AppArgs::PLAIN),
    ("ChanIsAvail", Reach::Shared, AppArgs::PLAIN),
    ("ChannelRedirect", Reach::Shared, AppArgs::PLAIN),
    ("ChanSpy", Reach::Shared, AppArgs::PLAIN),
    ("ConfBridge", Reach::Shared, AppArgs::PLAIN),
    ("ConfKick", Reach::Shared, AppArgs::PLAIN),
    ("Dial", Reach::Shared, AppArgs::PLAIN),
    ("Directory", Reach::Shared, AppArgs::PLAIN),
    ("ExtenSpy", Reach::Shared, AppArgs::PLAIN),
    ("Gosub", Reach::Shared, AppArgs::PLAIN),
    ("Goto", Reach::Shared, AppArgs::PLAIN),
    ("MessageSend", Reach::Shared, AppArgs::PLAIN),
    ("Page", Reach::Shared, AppArgs::PLAIN),
    ("Park", Reach::Shared, AppArgs::PLAIN),
    ("ParkAndAnnounce", Reach::Shared, AppArgs::PLAIN),
    ("ParkedCall", Reach::Shared, AppArgs::PLAIN),
    ("PauseQueueMember", Reach::Shared, AppArgs::PLAIN),
    ("Pickup", Reach::Shared, AppArgs::PLAIN),
    ("PickupChan", Reach::Shared, AppArgs::PLAIN),
    ("Queue", Reach::Shared, AppArgs::PLAIN),
    ("QueueLog", Reach::Shared, AppArgs::PLAIN),
    ("QueueUpdate", Reach::Shared, AppArgs::PLAIN),
    ("ReadExten", Reach::Shared, AppArgs::PLAIN),
    ("RemoveQueueMember", Reach::Shared, AppArgs::PLAIN),
    ("RetryDial", Reach::Shared, AppArgs::PLAIN),
    ("SLAStation", Reach::Shared, AppArgs::PLAIN),
    ("SLATrunk", Reach::Shared, AppArgs::PLAIN),
    ("SoftHangup", Reach::Shared, AppArgs::PLAIN),
    ("Transfer", Reach::Shared, AppArgs::PLAIN),
    ("UnpauseQueueMember", Reach::Shared, AppArgs::PLAIN),
    ("UserEvent", Reach::Shared, AppArgs::PLAIN),
    ("WaitExten", Reach::Shared, AppArgs::PLAIN),
];

/// Applications a user without `system` may Originate when the policy names none: they only
/// play to, wait on, or signal the channel being originated.
pub const DEFAULT_APPLICATIONS: &[&str] = &[
    "Answer",
    "Busy",
    "Congestion",
    "DateTime",
    "Echo",
    "Hangup",
    "Milliwatt",
    "Morsecode",
    "MusicOnHold",
    "NoOp",
    "Playback",
    "PlayTones",
    "Progress",
    "Ringing",
    "SayAlpha",
    "SayDigits",
    "SayNumber",
    "SayPhonetic",
    "SendDTMF",
    "Wait",
];

/// An application's reach and how to read its arguments (names are case-insensitive).
pub fn application(name: &str) -> (Reach, AppArgs) {
    APPLICATIONS
        .iter()
        .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, reach, args)| (*reach, *args))
        .unwrap_or((Reach::System, AppArgs::PLAIN))
}
