//! Variable names and dialplan functions, as Getvar, Setvar and assignments read them.

use super::Judge;
use crate::denial::{Denial, DenialKind, Verdict};
use crate::dialplan::{self, Reach, VarRef};
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
/// contexts it sends the channel to. A user without `system` may not set them (with their
/// `_`/`__` inheritance prefixes stripped).
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
];

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
                match dialplan::function_reach(&upper) {
                    Reach::System => {
                        return Err(Denial::new(
                            DenialKind::Function,
                            format!("{what}: function {upper} needs system"),
                        ))
                    }
                    Reach::Shared if self.scoped => {
                        return Err(Denial::new(
                            DenialKind::Function,
                            format!("{what}: function {upper} reaches other tenants"),
                        ))
                    }
                    _ => {}
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
                if INTERPRETED.is_match(bare) {
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
                let builtin = BUILTIN_VARIABLES.iter().any(|b| b.eq_ignore_ascii_case(bare));
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
