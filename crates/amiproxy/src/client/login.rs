//! Before login: Challenge, Login and Logoff, answered as Asterisk answers them, with
//! refusals that tell nothing (same words, same delay, same work whatever the reason).

use super::end::{audit, End, LoginRefusal};
use super::local::events_mask;
use super::{Connection, LoggedIn, Session, RESPONSE_QUEUE};
use crate::auth;
use crate::client_tx::ClientTx;
use crate::config::{CertLogin, UserConfig};
use crate::core::Core;
use crate::dialect::Generation;
use crate::perms::Classes;
use crate::upstream::Io;
use ami_proto::{AmiDecoder, Limits, Role};
use ami_proto::{Decoded, Message, MessageBuilder};
use rand::Rng;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWrite;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::codec::FramedRead;
use tracing::{info, warn};

/// Delay before answering a failed login, as Asterisk does, to slow down guessing.
const LOGIN_FAIL_DELAY: Duration = Duration::from_secs(1);

/// Runs a secret verification off the async threads, at most one per CPU at a time: an
/// argon2 verification takes about 19 MiB and a CPU for milliseconds, and a storm of logins
/// must neither take gigabytes nor the cores the event delivery needs.
async fn verify(core: &Core, check: impl FnOnce() -> bool + Send + 'static) -> bool {
    let Ok(_slot) = core.verifications.acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(check).await.unwrap_or(false)
}

/// Asterisk's `SuccessfulAuth` security event for a login (as transcript 01 shows it).
pub(super) fn successful_auth(user: &str, conn: &Connection, origin: &str) -> Message {
    let addr = |a: &SocketAddr| {
        let family = if a.is_ipv4() { "IPV4" } else { "IPV6" };
        let transport = if conn.tls { "TLS" } else { "TCP" };
        format!("{family}/{transport}/{}/{}", a.ip(), a.port())
    };
    // A stable id per connection, in the shape of Asterisk's session pointer.
    let session_id = format!("0x{:x}", {
        let (p, l) = (conn.peer.port() as u64, conn.local.port() as u64);
        let t = conn
            .since
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        (t ^ (p << 16) ^ l) & 0xffff_ffff_ffff
    });
    MessageBuilder::event("SuccessfulAuth")
        .header("Privilege", "security,all")
        .header("EventTV", &ami_proto::clock::event_tv(std::time::SystemTime::now()))
        .header("Severity", "Informational")
        .header("Service", "AMI")
        .header("EventVersion", "1")
        .header("AccountID", user)
        .header("SessionID", &session_id)
        .header("LocalAddress", &addr(&conn.local))
        .header("RemoteAddress", &addr(&conn.peer))
        .header("UsingPassword", "0")
        .header("SessionTV", &ami_proto::clock::event_tv(conn.since))
        .header("Server", origin)
        .build()
}

impl<W: AsyncWrite + Unpin> Session<W> {
    /// Handles a frame before login. Ok(true) once logged in.
    pub(super) async fn pre_login(&mut self, frame: Decoded) -> Result<bool, End> {
        let m = match frame {
            Decoded::Message(m) => m,
            Decoded::Rejected { reason, action_id } => {
                self.error(action_id.as_deref(), reason.asterisk_message()).await?;
                return self.flush().await.map(|_| false);
            }
            Decoded::Banner(_) => return Ok(false),
        };
        let aid = m.action_id();
        let res = match m.action().map(ami_proto::ActionName::parse) {
            None => self.error(aid, "Missing action in request").await.map(|_| false),
            Some(ami_proto::ActionName::Login) => self.login(&m).await,
            Some(ami_proto::ActionName::Challenge) => self.challenge(&m).await.map(|_| false),
            Some(ami_proto::ActionName::Logoff) if self.gen == Generation::V1_4 => {
                self.send(&MessageBuilder::success(aid, "See ya")).await?;
                self.flush().await?;
                Err(End::Logoff)
            }
            Some(ami_proto::ActionName::Logoff) => self.goodbye(aid).await.map(|_| false),
            Some(_) if self.gen == Generation::V1_4 => self.error(aid, "Authentication Required").await.map(|_| false),
            Some(_) => self.error(aid, "Permission denied").await.map(|_| false),
        };
        // An accepted login is flushed by the caller once the session is subscribed to the
        // events: a client that has read `Authentication accepted` misses no event
        // published after it.
        if !matches!(res, Ok(true)) {
            self.flush().await?;
        }
        res
    }

    pub(super) async fn challenge(&mut self, m: &Message) -> Result<(), End> {
        let aid = m.action_id();
        if !m.get("AuthType").is_some_and(|t| t.eq_ignore_ascii_case("MD5")) {
            return self.error(aid, "Must specify AuthType").await;
        }
        // 128 random bits, in digits as Asterisk's challenges are; used by one login only.
        self.core.limits.challenge_issued(self.peer.ip());
        let challenge = self
            .challenge
            .get_or_insert_with(|| rand::thread_rng().gen::<u128>().to_string())
            .clone();
        let r = MessageBuilder::response("Success", aid)
            .header("Challenge", &challenge)
            .build();
        self.send(&r).await
    }

    /// Every refusal (unknown user, wrong secret, refused or banned address) gets the same
    /// answer at the same time after the login arrived, and an unknown user's secret is
    /// verified against a dummy hash: neither the answer nor its timing tells which users
    /// exist or why a login failed.
    async fn login(&mut self, m: &Message) -> Result<bool, End> {
        let answer_at = tokio::time::Instant::now() + LOGIN_FAIL_DELAY;
        let aid = m.action_id().map(str::to_owned);
        let username = m.get("Username").unwrap_or("");
        let user = match self.authenticate(m).await {
            Ok(user) => user,
            Err(refusal) => {
                // Never log the secret or key, only who tried.
                warn!(username = ?username, reason = refusal.label(), "authentication failed");
                audit(username, self.peer, "Login", "", "refused", refusal.label());
                tokio::time::sleep_until(answer_at).await;
                let _ = self.error(aid.as_deref(), refusal.client_message()).await;
                let _ = self.flush().await;
                return Err(End::LoginRefused);
            }
        };
        match self.core.limits.user_slot(&user.name, user.max_connections).await {
            Ok(Some(slot)) => self.slot = Some(slot),
            refused => {
                let refusal = match refused {
                    Err(crate::limits::Unavailable) => LoginRefusal::LimitsUnavailable,
                    _ => LoginRefusal::TooManyConnections,
                };
                warn!(username = ?username, reason = refusal.label(), "refusing login");
                let _ = self.error(aid.as_deref(), refusal.client_message()).await;
                let _ = self.flush().await;
                return Err(End::LoginRefused);
            }
        }
        audit(&user.name, self.peer, "Login", "", "accepted", "");
        self.filters = user.policy.filters.clone();
        self.mask = match m.get("Events") {
            Some(e) => events_mask(e).unwrap_or(Classes::ALL),
            None => Classes::ALL,
        };
        self.send(&MessageBuilder::success(aid.as_deref(), "Authentication accepted"))
            .await?;
        self.fully_booted(&user).await?;
        self.user = Some(Arc::new(user));
        Ok(true)
    }

    /// Checks a login's credentials. Every refused plain login costs one argon2
    /// verification, whatever the reason (an unknown user, a plain-secret user, a refused
    /// address): the proxy's load tells nothing either. Banned addresses are spared the
    /// work, and answered the same.
    async fn authenticate(&mut self, m: &Message) -> Result<UserConfig, LoginRefusal> {
        let core = self.core.clone();
        let ip = self.peer.ip();
        let user = self.core.config().user(m.get("Username").unwrap_or("")).cloned();
        let md5 = m.get("AuthType").is_some_and(|t| t.eq_ignore_ascii_case("MD5"));
        // A challenge answers one login, whatever its outcome.
        let challenge = self.challenge.take();
        let secret = m.get("Secret").unwrap_or("").to_owned();
        // A place among this address's logins in verification (an IPv6 address's /64, as
        // bans count it): each refusal is counted before its place goes to the next (see
        // `limits::turns`).
        let turn = self.core.limits.turns.take(crate::limits::ban_key(ip)).await;
        match self.core.limits.is_banned(ip).await {
            Ok(false) => {}
            Ok(true) => return Err(LoginRefusal::AddressBanned),
            Err(crate::limits::Unavailable) => return Err(LoginRefusal::LimitsUnavailable),
        }
        // Whether this refusal already cost an argon2 verification (a wrong secret of a
        // hashed user): then the dummy is not run, so every refusal costs exactly one.
        let mut hashed = false;
        let outcome = match user {
            None => Err(LoginRefusal::UnknownUser),
            // The source-address ACL is checked before the secret, and answered the same way.
            Some(u) if !u.policy.permits_addr(ip) => Err(LoginRefusal::AddressNotPermitted),
            // A user bound to a certificate: the connection's must be that one, and is
            // refused like a wrong secret when it is not.
            Some(u)
                if u.cert
                    .as_ref()
                    .is_some_and(|b| !auth::cert_matches(b, self.peer_cert.as_deref())) =>
            {
                Err(LoginRefusal::CertificateMismatch)
            }
            Some(u) if u.cert.as_ref().is_some_and(|b| b.login == CertLogin::Certificate) => return Ok(u),
            Some(u) if md5 => match &challenge {
                Some(ch) if auth::check_md5(&u, ch, m.get("Key").unwrap_or("")) => Ok(u),
                _ => Err(LoginRefusal::BadSecret),
            },
            Some(u) if core.verified.recently(&u, &secret) => return Ok(u),
            Some(u) => {
                hashed = matches!(u.secret, crate::config::Secret::Argon2(_));
                let (checked, presented) = (u.clone(), secret.clone());
                let ok = verify(&core, move || auth::check_plain(&checked, &presented)).await;
                if ok {
                    core.verified.remember(&u, &secret);
                    return Ok(u);
                }
                Err(LoginRefusal::BadSecret)
            }
        };
        // The failure is counted at once, in a task of its own: the auth deadline may drop
        // this future at any await below, and a guess whose refusal was never counted would
        // escape the ban (one timed to end just before the deadline would learn its answer).
        if let Err(refusal) = &outcome {
            if refusal.counts_as_failure() {
                // The turn goes with the count: the next login from this address is checked
                // after it.
                let core = core.clone();
                tokio::spawn(async move {
                    core.limits.login_failed(ip).await;
                    drop(turn);
                });
            }
        }
        if outcome.is_err() && !md5 && !hashed {
            verify(&core, move || auth::check_dummy(&secret)).await;
        }
        outcome
    }

    /// Asterisk's `FullyBooted`, sent after a login to a session that reads `system`.
    async fn fully_booted(&mut self, user: &UserConfig) -> Result<(), End> {
        let system = Classes::parse_lenient("system");
        if !(user.read.contains(system) && self.mask.contains(system) && !self.mask.is_empty()) {
            return Ok(());
        }
        let up = self.core.started.elapsed().as_secs().to_string();
        let fb = MessageBuilder::event("FullyBooted").header("Privilege", "system,all");
        // Uptime and LastReload came with Asterisk 17's AMI.
        let fb = if self.gen == Generation::Modern {
            fb.header("Uptime", &up).header("LastReload", &up)
        } else {
            fb
        };
        let fb = fb.header("Status", "Fully Booted").build();
        self.send(&fb).await
    }
}

/// From the banner to a successful login.
pub(super) async fn log_in(
    core: Arc<Core>,
    io: Box<dyn Io>,
    conn: Connection,
    permit: OwnedSemaphorePermit,
    listener: Arc<str>,
) -> Result<LoggedIn, End> {
    let config = core.config();
    let (rd, wr) = tokio::io::split(io);
    let limits = Limits {
        max_line: config.proxy.max_line,
        max_lines: config.proxy.max_lines,
        max_message: config.proxy.max_line * (config.proxy.max_lines + 1),
    };
    let mut frames = FramedRead::new(rd, AmiDecoder::with_limits(Role::Client, limits));
    let (tx, rx, overflow) = ClientTx::channel(RESPONSE_QUEUE, config.proxy.client_queue_bytes);
    let auth_timeout = config.proxy.auth_timeout;
    drop(config);
    let (gen, version) = core.dialect();
    let mut s = Session::new(core.clone(), conn.peer, wr, tx, gen);
    s.json_events = conn.transport == crate::sessions::Transport::WebSocket;
    s.peer_cert = conn.peer_cert.clone();
    let banner = format!("{}{}\r\n", ami_proto::BANNER_PREFIX, version);
    let mut phase = core.phase();
    let logged_in = async {
        s.write_raw(banner.as_bytes()).await?;
        s.flush().await?;
        s.until_login(&mut frames, &mut phase, auth_timeout).await
    };
    logged_in.await?;
    drop(permit);
    let Some(user) = s.user.clone() else {
        return Err(End::LoginRefused);
    };
    tracing::Span::current().record("user", user.name.as_str());
    info!("logged in");
    Ok(LoggedIn {
        core,
        s,
        frames,
        rx,
        overflow,
        phase,
        user,
        conn,
        listener,
    })
}
