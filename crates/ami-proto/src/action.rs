//! A client's action, parsed once.
//!
//! The proxy's code acts on a few actions by name (its own answers, Originate's rewriting,
//! the policy's action rules). Comparing strings in each place invites a miss (`Originate`
//! vs `originate`); here the name is read once, case-insensitively as Asterisk reads it,
//! into [`ActionName`], and every layer (policy, router, session) matches on that.

use crate::Message;

macro_rules! action_names {
    ($($variant:ident => $lc:literal,)*) => {
        /// An action's name: the actions the proxy's code treats by name, and any other
        /// kept in lower case (Asterisk matches action names case-insensitively).
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum ActionName {
            $($variant,)*
            /// Any other action, in lower case.
            Other(Box<str>),
        }

        impl ActionName {
            /// Reads an `Action:` value (blanks around it ignored, as Asterisk does).
            pub fn parse(name: &str) -> ActionName {
                let name = name.trim();
                $(if name.eq_ignore_ascii_case($lc) {
                    return ActionName::$variant;
                })*
                ActionName::Other(name.to_ascii_lowercase().into_boxed_str())
            }

            /// The name in lower case: the key of the policy's action table.
            pub fn lowercase(&self) -> &str {
                match self {
                    $(ActionName::$variant => $lc,)*
                    ActionName::Other(s) => s,
                }
            }
        }
    };
}

action_names! {
    Login => "login",
    Logoff => "logoff",
    Challenge => "challenge",
    Ping => "ping",
    Events => "events",
    Filter => "filter",
    WaitEvent => "waitevent",
    Originate => "originate",
    UserEvent => "userevent",
    Queues => "queues",
    Command => "command",
    Hangup => "hangup",
    Park => "park",
    QueueAdd => "queueadd",
    QueuePause => "queuepause",
    Setvar => "setvar",
    UpdateConfig => "updateconfig",
    CreateConfig => "createconfig",
    DbGetTree => "dbgettree",
    DbDelTree => "dbdeltree",
    CoreShowChannels => "coreshowchannels",
}

impl ActionName {
    /// Actions that change the state of one client's session. The proxy answers them
    /// itself and never forwards them: the upstream session is shared by every client.
    pub fn is_session_local(&self) -> bool {
        matches!(
            self,
            ActionName::Login
                | ActionName::Logoff
                | ActionName::Challenge
                | ActionName::Ping
                | ActionName::Events
                | ActionName::Filter
                | ActionName::WaitEvent
        )
    }
}

impl std::fmt::Display for ActionName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.lowercase())
    }
}

/// A client's action: its message and its name, read once.
#[derive(Debug, Clone)]
pub struct Action {
    name: ActionName,
    msg: Message,
}

impl Action {
    /// The action a message carries, or the message back when it has no `Action:` header
    /// (Asterisk answers that with `Missing action in request`).
    pub fn parse(msg: Message) -> Result<Action, Message> {
        match msg.action().map(ActionName::parse) {
            Some(name) => Ok(Action { name, msg }),
            None => Err(msg),
        }
    }

    pub fn name(&self) -> &ActionName {
        &self.name
    }

    /// The name as the client wrote it (for audit lines and `...Complete` event names).
    pub fn written(&self) -> &str {
        self.msg.action().unwrap_or("").trim()
    }

    /// The client's `ActionID`, if any.
    pub fn id(&self) -> Option<&str> {
        self.msg.action_id()
    }

    pub fn message(&self) -> &Message {
        &self.msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MessageBuilder;

    #[test]
    fn names_are_read_case_insensitively() {
        assert_eq!(ActionName::parse("ORIGINATE"), ActionName::Originate);
        assert_eq!(ActionName::parse(" Ping "), ActionName::Ping);
        assert_eq!(ActionName::parse("CoreStatus"), ActionName::Other("corestatus".into()));
        assert_eq!(ActionName::parse("WaitEvent").lowercase(), "waitevent");
        assert!(ActionName::parse("events").is_session_local());
        assert!(!ActionName::parse("Originate").is_session_local());
    }

    #[test]
    fn an_action_keeps_its_message() {
        let m = MessageBuilder::action("QueueStatus").header("ActionID", "7").build();
        let a = Action::parse(m).expect("has an action");
        assert_eq!(a.name().lowercase(), "queuestatus");
        assert_eq!(a.written(), "QueueStatus");
        assert_eq!(a.id(), Some("7"));
        let bare = MessageBuilder::event("X").build();
        assert!(Action::parse(bare).is_err());
    }
}
