//! What Asterisk does with each header of each action: the audit the policy is built on.
//!
//! The proxy logs in upstream with every class, so Asterisk's own guards never apply behind
//! it. Deny by default therefore needs to know, for every header Asterisk reads, whether it is
//! plain data or something Asterisk evaluates (a function call, an expression, an
//! application, a shell command, a path) or resolves (a channel, a queue, a context). The
//! table in [`super::table`] records that for every action of Asterisk 22's reference; this
//! module holds its types and the lookups the policy uses.

/// What Asterisk does with one header's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg {
    /// A literal: a number, a flag, an id, text passed on as is. Names nothing a scope
    /// governs and is never evaluated.
    Data,
    /// A channel, by name or uniqueid.
    Channel,
    /// A channel name, or `/regex/` over every channel's name (Hangup).
    ChannelOrRegex,
    /// A prefix of a channel's name, or failing that of its uniqueid: Asterisk takes the first
    /// channel that matches (`ast_channel_get_by_name_prefix`), so a tenant's exact name may
    /// still pick another tenant's channel whose name or uniqueid starts with it.
    ChannelPrefix,
    /// A device or queue-member interface (`PJSIP/100`, `Local/100@ctx`): checked like a
    /// channel name.
    Interface,
    /// A channel to create: a dial string (`PJSIP/100`, `Local/100@ctx/n`); for Local
    /// channels it names a dialplan context.
    DialString,
    /// A queue name.
    Queue,
    /// A dialplan context.
    Context,
    /// An AstDB family.
    DbFamily,
    /// One variable name, or a dialplan function call when it ends in `)`.
    Variable,
    /// A comma list of variable names or function calls (Status `Variables`).
    VariableList,
    /// `name=value` pairs, separated as application arguments are (Originate `Variable`);
    /// a name ending in `)` writes a dialplan function.
    Assignments,
    /// The name of an application to run (Originate `Application`).
    Application,
    /// Arguments of that application: Asterisk substitutes `${...}` and `$[...]` in them
    /// before the application runs, and the application may evaluate them further.
    AppData,
    /// A dialplan subroutine location `[[context,]exten,]priority[(args)]` run on a channel
    /// (Originate `PreDialGoSub`).
    Gosub,
    /// A string Asterisk substitutes (`${...}`, `$[...]`) before use.
    Expression,
    /// A shell command run on the PBX.
    Shell,
    /// A file or directory path on the PBX's file system.
    Path,
    /// A file name in Asterisk's configuration folder.
    ConfigFile,
    /// A CLI command line.
    CliCommand,
    /// An AGI command (it can run any application, read and write any variable).
    AgiCommand,
    /// A header of the event the action sends to every AMI client (UserEvent).
    EventHeader,
    /// A named PBX object other than channels, queues, contexts and AstDB families
    /// (bridge, conference, mailbox, endpoint, parking lot, agent, device, module, ...):
    /// its kind, as the audit table shows it. A tenant scope cannot describe these.
    Object(&'static str),
}

/// What Asterisk does with headers of an action that the table does not name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rest {
    /// Asterisk never reads them.
    Ignored,
    /// They become headers of the event the action sends (UserEvent).
    EventBody,
}

/// Where an action's entry was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Asterisk 22.10.1's own reference (`fixtures/asterisk22/actions/<Name>.txt`).
    Reference,
    /// The XML documentation in Asterisk's source, for modules the reference build lacks
    /// (the path of the module in Asterisk's tree).
    AsteriskSource(&'static str),
    /// Actions of older Asterisk generations still in service (1.4–18), documented in the
    /// proxy's fixtures/LEGACY.md or Asterisk's history.
    Legacy,
}

/// One action: its classes as Asterisk declares them and what it does with each header.
#[derive(Debug, Clone, Copy)]
pub struct ActionSpec {
    /// Asterisk's spelling (`Originate`); matched ASCII case-insensitively.
    pub name: &'static str,
    /// The `[Privilege]` line without `all` (`"call,reporting"`); empty for `<none>`:
    /// any logged-in user.
    pub privilege: &'static str,
    /// Every header Asterisk reads, with what it does with it. A name ending in `-*`
    /// stands for numbered headers (`Var-000000`).
    pub args: &'static [(&'static str, Arg)],
    pub rest: Rest,
    pub source: Source,
    /// One line for the audit table: what the proxy does beyond the header rules, if
    /// anything.
    pub note: &'static str,
}

impl ActionSpec {
    /// What Asterisk does with the header `key` of this action (`None`: it never reads it).
    pub fn arg(&self, key: &str) -> Option<Arg> {
        self.args
            .iter()
            .find(|(name, _)| header_matches(name, key))
            .map(|(_, arg)| *arg)
            .or(match self.rest {
                Rest::EventBody => Some(Arg::EventHeader),
                Rest::Ignored => None,
            })
    }
}

/// `Var-*` matches `Var-000012`; everything else is an ASCII case-insensitive comparison.
fn header_matches(name: &str, key: &str) -> bool {
    match name.strip_suffix('*') {
        Some(prefix) => {
            key.len() > prefix.len()
                && key.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
                && key.as_bytes()[prefix.len()..].iter().all(u8::is_ascii_digit)
        }
        None => name.eq_ignore_ascii_case(key),
    }
}

/// The entry of an action, by name (ASCII case-insensitive).
pub fn action(name: &str) -> Option<&'static ActionSpec> {
    crate::table::ACTIONS.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_headers() {
        assert!(header_matches("Var-*", "var-000012"));
        assert!(!header_matches("Var-*", "Var-"));
        assert!(!header_matches("Var-*", "Var-1x"));
        assert!(header_matches("Channel", "CHANNEL"));
    }
}
