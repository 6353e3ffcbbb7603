//! Why the policy refused an action.
//!
//! The client only ever reads `Permission denied` (Asterisk's own words, which tell an
//! attacker nothing); the audit log gets the detail, and the metrics the kind: a small,
//! fixed set of labels an operator can alert on.

/// A refusal: its kind, and the detail for the audit log (header names and the values that
/// broke a rule, never a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    kind: DenialKind,
    detail: String,
}

/// What kind of rule refused an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenialKind {
    /// The message would not read the same to Asterisk as to the proxy (a NUL line, two
    /// `Action` headers, bytes that are not text, control characters).
    Framing,
    /// The user's `actions`/`deny_actions` lists.
    ActionList,
    /// A header the action does not have.
    UnknownHeader,
    /// `${...}` or `$[...]` where Asterisk substitutes.
    Expression,
    /// A dialplan function the user may not call.
    Function,
    /// A variable the user may not read or write.
    Variable,
    /// An application the user may not run.
    Application,
    /// A file outside what the user may name (sound paths, configuration files).
    File,
    /// Needs the `system` class (shell, paths, AGI, writing the configuration).
    NeedsSystem,
    /// A CLI command outside the user's `commands`.
    Command,
    /// An object outside the user's tenant scope.
    Scope,
    /// A UserEvent header that would forge framing or the server tag.
    EventHeader,
    /// An argument shaped to carry more than it seems (Dial options, separators, wildcards).
    Arguments,
    /// The user's own `rules`.
    UserRule,
}

impl DenialKind {
    /// The label metrics and the audit log use.
    pub fn label(self) -> &'static str {
        match self {
            DenialKind::Framing => "framing",
            DenialKind::ActionList => "action-list",
            DenialKind::UnknownHeader => "unknown-header",
            DenialKind::Expression => "expression",
            DenialKind::Function => "function",
            DenialKind::Variable => "variable",
            DenialKind::Application => "application",
            DenialKind::File => "file",
            DenialKind::NeedsSystem => "needs-system",
            DenialKind::Command => "command",
            DenialKind::Scope => "scope",
            DenialKind::EventHeader => "event-header",
            DenialKind::Arguments => "arguments",
            DenialKind::UserRule => "user-rule",
        }
    }
}

impl Denial {
    pub fn new(kind: DenialKind, detail: impl Into<String>) -> Denial {
        Denial {
            kind,
            detail: detail.into(),
        }
    }

    pub fn kind(&self) -> DenialKind {
        self.kind
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

/// The judgement of one header or rule.
pub(crate) type Verdict = Result<(), Denial>;
