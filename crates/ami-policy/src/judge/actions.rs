//! Rules of single actions beyond their headers' kinds, found in Asterisk's source.

use super::Judge;
use crate::denial::{Denial, DenialKind, Verdict};
use ami_proto::ActionName;

/// Actions that act on every tenant's objects when the header that narrows them is empty:
/// (action, header). Refused to scoped users without it.
const WIDE_WITHOUT: &[(&str, &str)] = &[
    ("getvar", "Channel"),
    ("setvar", "Channel"),
    ("queuereset", "Queue"),
    ("queuereload", "Queue"),
    ("queuepause", "Queue"),
    ("queuepenalty", "Queue"),
    ("queuelog", "Queue"),
    ("queuememberringinuse", "Queue"),
    ("queueadd", "Queue"),
    ("queueremove", "Queue"),
    ("dbget", "Family"),
    ("dbgettree", "Family"),
    ("showdialplan", "Context"),
    ("extensionstate", "Context"),
];

impl Judge<'_> {
    /// What some actions do with headers beyond their kinds (found in Asterisk's source).
    fn action_specials(&self) -> Verdict {
        let msg = self.msg;
        let any_has = |h: &str, bad: &[char]| msg.get_all(h).any(|v| v.contains(bad));
        match self.action.name() {
            // Park: an AnnounceChannel that does not exist crashes Asterisk (it subscribes a
            // NULL channel); Parkinglot becomes Park() arguments, whose options jump contexts.
            ActionName::Park => {
                for v in msg.get_all("AnnounceChannel").filter(|v| !v.trim().is_empty()) {
                    if !self.owners.is_live(v.trim()) {
                        return Err(Denial::new(
                            DenialKind::Scope,
                            format!("AnnounceChannel `{v}` is not a live channel"),
                        ));
                    }
                }
                if any_has("Parkinglot", &[',', '(', ')']) {
                    return Err(Denial::new(DenialKind::Arguments, "Parkinglot carries Park options"));
                }
            }
            // With persistentmembers, a member is stored as `iface;pen;paused;name;state;reason`
            // joined by `|` and parsed again at the next load: these would add members unjudged.
            ActionName::QueueAdd | ActionName::QueuePause => {
                for h in ["Interface", "StateInterface", "MemberName", "Reason"] {
                    if any_has(h, &['|', ';', ',']) {
                        return Err(Denial::new(
                            DenialKind::Arguments,
                            format!("{h} holds the separators of queue member records"),
                        ));
                    }
                }
            }
            // Asterisk matches the family with SQL LIKE: `%` and `_` are wildcards there.
            ActionName::DbGetTree | ActionName::DbDelTree
                if any_has("Family", &['%', '_']) || any_has("Key", &['%', '_']) =>
            {
                return Err(Denial::new(
                    DenialKind::Arguments,
                    "Family or Key holds an SQL LIKE wildcard",
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// Rules of one action beyond its headers' kinds.
    pub(crate) fn action_rules(&self) -> Verdict {
        let (name, msg) = (self.action.name(), self.msg);
        let lc = name.lowercase();
        let empty = |h: &str| msg.get(h).is_none_or(|v| v.trim().is_empty());
        if !self.full {
            self.action_specials()?;
            // Asterisk gives these to `config`, but a configuration file can run commands
            // (`System()` in the dialplan, `#exec`) once reloaded: they need system here.
            if matches!(name, ActionName::UpdateConfig | ActionName::CreateConfig) {
                return Err(Denial::new(
                    DenialKind::NeedsSystem,
                    format!("{lc} writes Asterisk's configuration, which can run commands"),
                ));
            }
            // Stored as is, but dialplan may evaluate it later (`EVAL`): no expressions.
            if *name == ActionName::Setvar {
                msg.get_all("Value").try_for_each(|v| self.no_expression("Value", v))?;
            }
        }
        // A list of contexts or families binds whoever has one, scoped or not: leaving the
        // header out must not escape it.
        let bound = |h: &str| match h {
            "Context" => self.scoped || !self.policy.scope.contexts.is_empty(),
            "Family" => self.scoped || !self.policy.scope.db_families.is_empty(),
            _ => self.scoped,
        };
        if let Some((_, h)) = WIDE_WITHOUT.iter().find(|(a, h)| *a == lc && empty(h) && bound(h)) {
            return Err(Denial::new(
                DenialKind::Scope,
                format!("{lc} without {h} reaches beyond the user's scope"),
            ));
        }
        // Into the dialplan: only the user's contexts (Asterisk's default is `default`).
        if *name == ActionName::Originate && empty("Application") && empty("Context") && bound("Context") {
            return Err(Denial::new(
                DenialKind::Scope,
                "Originate into the dialplan needs one of the user's contexts",
            ));
        }
        if self.scoped
            && (*name == ActionName::Queues || (*name == ActionName::Command && self.policy.commands.is_none()))
        {
            return Err(Denial::new(
                DenialKind::Scope,
                format!("{lc} shows every tenant's data; give the user a `commands` list"),
            ));
        }
        if *name == ActionName::Command && msg.get("Command").is_none() {
            self.command("")?;
        }
        Ok(())
    }
}
