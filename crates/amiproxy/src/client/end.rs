//! Why a session ends, and why an action is refused: one enum each, from which the log
//! line, the client's message and the metrics label all come.

use ami_policy::Denial;
use std::borrow::Cow;
use std::net::SocketAddr;
use tracing::info;

/// Why a client session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The client closed its side.
    ClientClosed,
    /// Reading from the client failed (a reset, an undecodable stream).
    ReadFailed,
    /// The client sent `Logoff`.
    Logoff,
    /// No login within the auth timeout.
    AuthTimeout,
    /// A refused login (Asterisk closes the connection after one).
    LoginRefused,
    /// Writing to the client failed.
    WriteFailed,
    /// The client did not read for the write timeout.
    WriteTimeout,
    /// The client let its answers pile up past the queue's budget.
    AnswersOverflow,
    /// The client fell behind the event stream (`slow_client = "disconnect"`).
    FellBehind,
    /// A reload removed the user.
    UserRemoved,
    /// The proxy shut down.
    Shutdown,
    /// The session's task on the delivery threads ended without a reason: it panicked (a
    /// bug, logged at `error`).
    Failed,
}

impl End {
    /// The label of `amiproxy_sessions_ended_total`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            End::ClientClosed => "client-closed",
            End::ReadFailed => "read-failed",
            End::Logoff => "logoff",
            End::AuthTimeout => "auth-timeout",
            End::LoginRefused => "login-refused",
            End::WriteFailed => "write-failed",
            End::WriteTimeout => "write-timeout",
            End::AnswersOverflow => "answers-overflow",
            End::FellBehind => "fell-behind",
            End::UserRemoved => "user-removed",
            End::Shutdown => "shutdown",
            End::Failed => "failed",
        }
    }

    /// Logs and counts the end of a session.
    pub(crate) fn record(self) {
        match self {
            End::ClientClosed | End::Logoff | End::ReadFailed => {
                tracing::debug!(reason = self.label(), "session ended")
            }
            End::Failed => tracing::error!(reason = self.label(), "session ended"),
            _ => info!(reason = self.label(), "session ended"),
        }
        crate::metrics::session_ended(self.label());
    }
}

/// What a client reads when a shared limit could not be checked (`redis.on_unreachable =
/// "refuse"`).
const SHARED_LIMITS_UNAVAILABLE: &str = "Shared limits unavailable, try again later";

/// Why the proxy refused a login. The client reads `Authentication failed` whatever the
/// reason (it must not learn which users exist); the audit log and metrics get the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoginRefusal {
    UnknownUser,
    BadSecret,
    AddressBanned,
    AddressNotPermitted,
    /// The user is bound to a TLS client certificate and the connection showed another (or
    /// none).
    CertificateMismatch,
    /// The user has its `max_connections` (this one the client is told).
    TooManyConnections,
    /// Redis could not be asked and `redis.on_unreachable = "refuse"` (told too: it says
    /// nothing about the user or the secret).
    LimitsUnavailable,
}

impl LoginRefusal {
    pub(crate) fn label(self) -> &'static str {
        match self {
            LoginRefusal::UnknownUser => "unknown user",
            LoginRefusal::BadSecret => "bad secret",
            LoginRefusal::AddressBanned => "address banned after failed logins",
            LoginRefusal::AddressNotPermitted => "source address not permitted",
            LoginRefusal::CertificateMismatch => "client certificate does not match the user",
            LoginRefusal::TooManyConnections => "too many connections for this user",
            LoginRefusal::LimitsUnavailable => "shared limits unavailable (Redis unreachable)",
        }
    }

    pub(crate) fn client_message(self) -> &'static str {
        match self {
            LoginRefusal::TooManyConnections => "Too many connections for this user",
            LoginRefusal::LimitsUnavailable => SHARED_LIMITS_UNAVAILABLE,
            _ => "Authentication failed",
        }
    }

    /// Whether the refusal counts toward the address's ban.
    pub(crate) fn counts_as_failure(self) -> bool {
        !matches!(
            self,
            LoginRefusal::AddressBanned | LoginRefusal::TooManyConnections | LoginRefusal::LimitsUnavailable
        )
    }
}

/// Why the proxy refused an action a logged-in client sent.
#[derive(Debug, Clone)]
pub(crate) enum Refusal {
    /// The proxy is shutting down.
    Draining,
    RateLimit,
    /// The user's rate is shared through Redis, which could not be asked, and
    /// `redis.on_unreachable = "refuse"`.
    LimitsUnavailable,
    /// The action needs a class the user may not write.
    WriteClasses,
    /// The policy engine's judgement.
    Policy(Denial),
    /// `Queues` answers with text that carries no ActionID: it cannot be routed back.
    QueuesUnroutable,
    TooManyInFlight,
    /// Two server headers that disagree.
    ConflictingServers,
    /// The router found no upstream (its words go to the client).
    NoRoute(String),
    ServerOutOfScope,
    NoUpstreamAccount,
    UpstreamDown(String),
    NoUpstreamConnected,
    SyncOriginateToAll,
}

impl Refusal {
    /// The label of `amiproxy_refusals_total`.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Refusal::Draining => "draining",
            Refusal::RateLimit => "rate-limit",
            Refusal::LimitsUnavailable => "limits-unavailable",
            Refusal::WriteClasses => "write-classes",
            Refusal::Policy(d) => d.kind().label(),
            Refusal::QueuesUnroutable => "unroutable",
            Refusal::TooManyInFlight => "in-flight",
            Refusal::ConflictingServers => "conflicting-servers",
            Refusal::NoRoute(_) => "no-route",
            Refusal::ServerOutOfScope => "server-scope",
            Refusal::NoUpstreamAccount => "no-account",
            Refusal::UpstreamDown(_) | Refusal::NoUpstreamConnected => "upstream-down",
            Refusal::SyncOriginateToAll => "sync-originate-to-all",
        }
    }

    /// What the client reads, in Asterisk's words where Asterisk has some.
    pub(crate) fn client_message(&self) -> Cow<'_, str> {
        match self {
            Refusal::Draining => "Proxy is shutting down".into(),
            Refusal::RateLimit => "Rate limit exceeded".into(),
            Refusal::LimitsUnavailable => SHARED_LIMITS_UNAVAILABLE.into(),
            Refusal::QueuesUnroutable => {
                "Invalid/unknown command: Queues. Use Action: ListCommands to show available commands.".into()
            }
            Refusal::TooManyInFlight => "Too many actions in flight for this session".into(),
            Refusal::NoRoute(text) => text.as_str().into(),
            Refusal::UpstreamDown(server) => format!("Upstream server {server} is not connected").into(),
            Refusal::NoUpstreamConnected => "No upstream server is connected".into(),
            Refusal::SyncOriginateToAll => "Originate to all servers must be Async".into(),
            Refusal::WriteClasses
            | Refusal::Policy(_)
            | Refusal::ConflictingServers
            | Refusal::ServerOutOfScope
            | Refusal::NoUpstreamAccount => "Permission denied".into(),
        }
    }

    /// The audit log's reason.
    pub(crate) fn detail(&self) -> Cow<'_, str> {
        match self {
            Refusal::Draining => "proxy shutting down".into(),
            Refusal::RateLimit => "rate limit".into(),
            Refusal::LimitsUnavailable => "shared limits unavailable (Redis unreachable)".into(),
            Refusal::WriteClasses => "write classes".into(),
            Refusal::Policy(d) => d.detail().into(),
            Refusal::QueuesUnroutable => "Queues output cannot be routed".into(),
            Refusal::TooManyInFlight => "too many actions in flight".into(),
            Refusal::ConflictingServers => "two different server headers".into(),
            Refusal::NoRoute(text) => text.as_str().into(),
            Refusal::ServerOutOfScope => "server outside the user's scope".into(),
            Refusal::NoUpstreamAccount => "no upstream account for the user".into(),
            Refusal::UpstreamDown(_) => "upstream down".into(),
            Refusal::NoUpstreamConnected => "no upstream connected".into(),
            Refusal::SyncOriginateToAll => "synchronous Originate to all servers".into(),
        }
    }
}

/// One audit line per action forwarded or refused, on its own target (`amiproxy::audit`) so
/// it can be routed to a file. Never any header values beyond the action name.
pub(crate) fn audit(user: &str, peer: SocketAddr, action: &str, server: &str, outcome: &str, reason: &str) {
    info!(target: "amiproxy::audit", user, %peer, action, server, outcome, reason);
    if action == "Login" {
        crate::metrics::login(outcome);
    } else {
        crate::metrics::action(action, server, outcome);
    }
}
