//! Variable names and dialplan functions, as Getvar, Setvar and assignments read them.

use super::Judge;
use crate::denial::{Denial, DenialKind, Verdict};
use crate::dialplan::{self, VarRef};
use crate::glob::{Glob, GlobSet};
use std::sync::LazyLock;

/// [`INTERPRETED_VARIABLES`], compiled once.
static INTERPRETED: LazyLock<GlobSet> = LazyLock::new(|| INTERPRETED_VARIABLES.iter().map(|g| Glob::new(g)).collect());

/// Whether a variable is read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

/// Variables Asterisk reads from the channel itself, never from the globals
/// (`ast_str_retrieve_variable`'s built-ins).
const BUILTIN_VARIABLES: &[&str] = &[
    "CALLINGANI2",
    "CALLINGPRES",
    "CALLINGTNS",
    "CALLINGTON",
    "CHANNEL",
    "CONTEXT",
    "ENTITYID",
    "EPOCH",
    "EXTEN",
    "HANGUPCAUSE",
    "HINT",
    "HINTNAME",
    "PRIORITY",
    "SYSTEMNAME",
    "UNIQUEID",
];

/// Channel variables Asterisk acts on: commands it runs when a recording ends
/// (`MONITOR_EXEC`, MixMonitor options armed by `TOUCH_MIXMONITOR_OPTIONS`), features it arms,
/// contexts and subroutines it sends the channel to (`CONNECTED_LINE_SEND_SUB`, the `END_`
/// locations of `While` and `If`), files it plays (`BRIDGE_PLAY_SOUND`), groups it counts. A
/// user without `system` may not set them (with their `_`/`__` inheritance prefixes
/// stripped), nor any name in [`ASTERISK_READS`].
const INTERPRETED_VARIABLES: &[&str] = &[
    "MONITOR_*",
    "TOUCH_*",
    "MIXMON*",
    "*MIXMONITOR*",
    "AUTOMIXMON*",
    "AUTOMON*",
    "BRIDGE_FEATURES",
    "DYNAMIC_FEATURES",
    "TRANSFER_CONTEXT",
    "FORWARD_CONTEXT",
    "GOSUB_*",
    "MACRO_*",
    "PARKING*",
    "*_SEND_SUB*",
    "*_SEND_MACRO*",
    "*EXIT_CONTEXT",
    "LIMIT_*",
    "WHILE_*",
    "END_WHILE_*",
    "IF_*",
    "END_IF_*",
];

/// Every channel variable Asterisk 22's own code reads by name
/// (`pbx_builtin_getvar_helper(chan, "NAME")` throughout its modules, taken from its
/// source): whatever a name does there, a user without `system` cannot know it is harmless,
/// so none of them may be set. Space-separated, one string: it is a table, not code.
const ASTERISK_READS: &str = "\
     AGENTACCEPTDTMF AGENTACKCALL AGENTAUTOLOGOFF AGENTWRAPUPTIME AGENT_STATUS AGIEXECFULL \
     AGIEXITONHANGUP AGISIGHUP ALARMRECEIVER_CALL_LIMIT ALARMRECEIVER_RETRIES_LIMIT \
     ANSWEREDTIME ATTENDEDTRANSFER ATTENDED_TRANSFER_COMPLETE_SOUND BLINDTRANSFER BRIDGEPEER \
     BRIDGE_FEATURES BRIDGE_NOANSWER BRIDGE_PLAY_SOUND CALLER_H323DIALEDDIGITS \
     CALLER_H323EMAIL CALLER_H323ID CALLER_H323URL CALLWAITDELUXEANNOUNCEMENT CALL_QUALIFIER \
     CONF_LIMIT_TIMEOUT_FILE CONF_LIMIT_WARNING_FILE CONNECTED_LINE_SEND_SUB \
     CONNECTED_LINE_SEND_SUB_ARGS DIALEDPEERNUMBER DIALEDTIME DIALSTATUS DUNDIDIALARGS \
     DYNAMIC_FEATURES EAGI_AUDIO_FORMAT EXITCONTEXT FAXBITRATE FAXPAGES FAXRESOLUTION \
     FEATDMF_CIC FEATDMF_OZZ FORWARD_CONTEXT GET_TRANSFERRER_DATA GOSUB_RESULT GOSUB_RETVAL \
     GOTO_ON_BLINDXFR GROUP IAX2OSPTOKEN LIMIT_CONNECT_FILE LIMIT_PLAYAUDIO_CALLEE \
     LIMIT_PLAYAUDIO_CALLER LIMIT_TIMEOUT_FILE LIMIT_WARNING_FILE LOCALHEADERINFO \
     LOCALSTATIONID MEETME_AGI_BACKGROUND MEETME_EXIT_CONTEXT MEETME_RECORDINGFILE \
     MEETME_RECORDINGFORMAT MFCR2_CATEGORY MFCR2_CAUSE MFCR2_DOUBLE_ANSWER MONITOR_EXEC \
     MONITOR_FILENAME MONITOR_OPTIONS MORSEDITLEN MORSESPACETONE MORSETONE MORSETYPE \
     MVM_COUNTER MVM_DURATION MVM_FILENAME MVM_FORMAT OUTBOUND_GROUP OUTBOUND_GROUP_ONCE \
     PARKINGDYNAMIC PARKINGDYNCONTEXT PARKINGDYNEXTEN PARKINGDYNPOS PARKINGEXTEN PARKINGLOT \
     PICKUPMARK PRI_CAUSE QUEUEWAIT QUEUE_MAX_PENALTY QUEUE_MIN_PENALTY QUEUE_PRIO \
     QUEUE_RAISE_PENALTY REDIRECTING_SEND_SUB REDIRECTING_SEND_SUB_ARGS REMOTESTATIONID \
     SAY_DTMF_INTERRUPT SENDTEXT_BODY SENDTEXT_CONTENT_TYPE SENDTEXT_FROM_DISPLAYNAME \
     SENDTEXT_TO_DISPLAYNAME SIPFROMDOMAIN SIPREFERREDBYHDR SLATRUNK_STATUS \
     SPEECH_DTMF_MAXLEN SPEECH_DTMF_TERMINATOR SPYGROUP SPY_EXIT_CONTEXT SS7_CALLREF_IDENT \
     SS7_CALLREF_PC SS7_CAUSE SS7_CHARGE_NUMBER SS7_COL_REQUEST SS7_CUG_INDICATOR \
     SS7_CUG_INTERLOCK_CODE SS7_CUG_INTERLOCK_NI SS7_FORWARD_INDICATOR_PMBITS \
     SS7_GENERIC_ADDRESS SS7_GENERIC_DIGITS SS7_GENERIC_DIGSCHEME SS7_GENERIC_DIGTYPE \
     SS7_GENERIC_NAME SS7_INTERWORKING_INDICATOR SS7_JIP SS7_LSPI_IDENT \
     SS7_REDIRECT_INFO_IND SS7_RLT_ON SS7_SEND_FAR SS7_TMR SS7_TMR_NUM TESTTIME \
     TOUCH_MIXMONITOR_MESSAGE_START TOUCH_MIXMONITOR_MESSAGE_STOP TRANSFER_CONTEXT \
     TRANSFER_EXTEN USERUSERINFO VM_CATEGORY \
     ";

/// [`ASTERISK_READS`], as a set.
static READS: LazyLock<std::collections::HashSet<&'static str>> =
    LazyLock::new(|| ASTERISK_READS.split_ascii_whitespace().collect());

impl Judge<'_> {
    /// A variable name, or a dialplan function call, as Getvar/Setvar/assignments read it.
    pub(super) fn variable(&self, what: &str, v: &str, access: Access) -> Verdict {
        if self.full {
            return Ok(());
        }
        match dialplan::var_ref(v) {
            VarRef::Plain(name) => self.plain_variable(what, name, access),
            VarRef::Function { name, args } => {
                let upper = name.to_ascii_uppercase();
                if let Some(why) = self.refused_reach(dialplan::function_reach(&upper)) {
                    return Err(Denial::new(
                        DenialKind::Function,
                        format!("{what}: function {upper} {why}"),
                    ));
                }
                if !self.policy.functions.contains(&upper) {
                    return Err(Denial::new(
                        DenialKind::Function,
                        format!("{what}: function {upper} is not in the user's functions"),
                    ));
                }
                self.no_expression(what, args)
            }
            VarRef::Other => Err(Denial::new(
                DenialKind::Variable,
                format!("{what} `{v}` is not a variable name"),
            )),
        }
    }

    /// A plain variable name. Writes: never one Asterisk interprets (a command it runs, a
    /// context it jumps to, a feature it arms); reads by a tenant: only names Asterisk takes
    /// from the channel itself, since any other falls back to the global variables. With a
    /// `variables` list, only its names (builtins stay readable).
    pub(super) fn plain_variable(&self, what: &str, name: &str, access: Access) -> Verdict {
        let base = name.split(':').next().unwrap_or(name);
        let bare = base.trim_start_matches('_');
        let listed = || self.policy.variables.as_ref().is_some_and(|l| l.is_match(bare));
        match access {
            Access::Write => {
                if INTERPRETED.is_match(bare) || READS.contains(bare.to_ascii_uppercase().as_str()) {
                    return Err(Denial::new(
                        DenialKind::Variable,
                        format!("{what}: Asterisk acts on the variable {bare}"),
                    ));
                }
                if self.policy.variables.is_some() && !listed() {
                    return Err(Denial::new(
                        DenialKind::Variable,
                        format!("{what}: {bare} is not in the user's variables"),
                    ));
                }
            }
            Access::Read => {
                // Asterisk compares these names case-sensitively: `exten` is no built-in,
                // and is looked up in the globals.
                let builtin = BUILTIN_VARIABLES.contains(&bare);
                let bounded = self.scoped || self.policy.variables.is_some();
                if bounded && !builtin && !listed() {
                    return Err(Denial::new(
                        DenialKind::Variable,
                        format!("{what}: {bare} may be a global variable; list it in the user's variables"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// `name=value` pairs as Asterisk splits them.
    pub(super) fn assignments(&self, what: &str, v: &str) -> Verdict {
        if self.full {
            return Ok(());
        }
        let parts = dialplan::separate_args(v.trim_start(), ',').ok_or_else(|| {
            Denial::new(
                DenialKind::Arguments,
                format!("{what} has too many parts or a trailing backslash"),
            )
        })?;
        for part in &parts {
            let Some((name, value)) = part.split_once('=') else {
                continue;
            };
            if name.is_empty() {
                continue;
            }
            self.variable(what, name, Access::Write)?;
            self.no_expression(what, value)?;
        }
        Ok(())
    }
}
