//! The operator console: a read-only page, served from the binary (no CDN), that shows the
//! upstreams, the sessions, the event rates, the last refused actions and a live event tail.
//!
//! Who may see it: users with `console = true`, logged in with their AMI secret through the
//! same session code as an AMI Login (address rules, bans, failed-login counting, audit).
//! A login gets a random token in an `HttpOnly`, `SameSite=Strict` cookie scoped to
//! `/console` (`Secure` over TLS); the pages are served with a strict Content Security
//! Policy, and the event tail's WebSocket must come from the console's own origin, so
//! another site can neither read it nor drive it.

use super::bridge::{Bridge, BridgeError};
use super::ws::{accept_key, switching, ws_config};
use super::{json_error, json_response, not_allowed, text, Body, Req, Site};
use crate::core::Core;
use crate::hub::Next;
use crate::json::AsJson;
use crate::perms::Classes;
use crate::sessions::Transport;
use bytes::Bytes;
use dashmap::DashMap;
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

const COOKIE_NAME: &str = "amiproxy_console";
const INDEX: &str = include_str!("../../assets/console/index.html");
const APP_JS: &str = include_str!("../../assets/console/app.js");
const APP_CSS: &str = include_str!("../../assets/console/app.css");
/// The event tail sends at most this many events per flush, [`TAIL_FLUSH`] apart; the rest
/// are counted as skipped (a browser is not a firehose client).
const TAIL_BATCH: usize = 40;
const TAIL_FLUSH: Duration = Duration::from_millis(100);
/// The longest filter text the tail takes.
const MAX_FILTER: usize = 200;
/// Console logins held at once (the oldest are forgotten first when over).
const MAX_LOGINS: usize = 1024;
/// The largest login form read.
const MAX_LOGIN_BODY: usize = 4096;

/// Console logins by token (shared with the event tails, which end with their login).
#[derive(Default)]
pub struct Logins(Arc<DashMap<String, Login>>);

#[derive(Clone)]
struct Login {
    user: String,
    expires: Instant,
    /// Of the user's secret at login: a changed secret ends the login.
    secret: u64,
}

/// Console logins one user may hold at once (the oldest goes first).
const MAX_LOGINS_PER_USER: usize = 16;

/// A fingerprint of a user's configured secret, to notice that it changed (in memory only).
fn secret_fingerprint(s: &crate::config::Secret) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match s {
        crate::config::Secret::Plain(x) => (0u8, x).hash(&mut h),
        crate::config::Secret::Argon2(x) => (1u8, x).hash(&mut h),
        crate::config::Secret::None => 2u8.hash(&mut h),
    }
    h.finish()
}

/// Whether a login still stands: its user still exists, may still use the console, has
/// the same secret, and may log in from `peer` (address rules are checked on every
/// request, not only at login).
fn still_valid(core: &Core, login: &Login, peer: std::net::IpAddr) -> bool {
    login.expires > Instant::now()
        && core.config().users.iter().any(|u| {
            u.name == login.user
                && u.console
                && secret_fingerprint(&u.secret) == login.secret
                && u.policy.permits_addr(peer)
        })
}

impl Logins {
    fn create(&self, user: &str, secret: u64, ttl: Duration) -> String {
        use rand::RngCore;
        let mut raw = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut raw);
        let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        self.0.retain(|_, l| l.expires > now);
        let theirs: Vec<(String, Instant)> = self
            .0
            .iter()
            .filter(|e| e.value().user == user)
            .map(|e| (e.key().clone(), e.value().expires))
            .collect();
        if theirs.len() >= MAX_LOGINS_PER_USER {
            if let Some((oldest, _)) = theirs.iter().min_by_key(|(_, exp)| *exp) {
                self.0.remove(oldest);
            }
        }
        if self.0.len() >= MAX_LOGINS {
            if let Some(oldest) = self.0.iter().min_by_key(|e| e.value().expires).map(|e| e.key().clone()) {
                self.0.remove(&oldest);
            }
        }
        self.0.insert(
            token.clone(),
            Login {
                user: user.to_owned(),
                expires: now + ttl,
                secret,
            },
        );
        token
    }

    fn get(&self, token: &str) -> Option<Login> {
        self.0.get(token).map(|l| l.clone())
    }

    fn remove(&self, token: &str) {
        self.0.remove(token);
    }
}

fn cookie_token(req: &hyper::Request<hyper::body::Incoming>) -> Option<String> {
    req.headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE_NAME)
        .map(|(_, v)| v.to_owned())
}

/// The console user behind a request: a login that still stands (see [`still_valid`]).
fn session_user(
    site: &Site,
    req: &hyper::Request<hyper::body::Incoming>,
    peer: std::net::SocketAddr,
) -> Option<String> {
    let login = site.consoles.get(&cookie_token(req)?)?;
    still_valid(&site.core, &login, peer.ip()).then_some(login.user)
}

fn asset(content_type: &'static str, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    r
}

fn no_store(mut r: Response<Body>) -> Response<Body> {
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub(super) async fn route(site: &Site, r: Req) -> Response<Body> {
    let path = r.req.uri().path().to_owned();
    let method = r.req.method().clone();
    match (path.as_str(), method) {
        ("/" | "/console", Method::GET | Method::HEAD) => {
            let mut resp = text(StatusCode::FOUND, "see /console/\n");
            resp.headers_mut()
                .insert(LOCATION, HeaderValue::from_static("/console/"));
            resp
        }
        ("/console/" | "/console/index.html", Method::GET | Method::HEAD) => asset("text/html; charset=utf-8", INDEX),
        ("/console/app.js", Method::GET | Method::HEAD) => asset("text/javascript; charset=utf-8", APP_JS),
        ("/console/app.css", Method::GET | Method::HEAD) => asset("text/css; charset=utf-8", APP_CSS),
        ("/console/login", Method::POST) => no_store(login(site, r).await),
        ("/console/logout", Method::POST) => no_store(logout(site, &r)),
        ("/console/api/state", Method::GET) => match session_user(site, &r.req, r.peer) {
            Some(user) => no_store(json_response(StatusCode::OK, state(&site.core, &user))),
            None => json_error(StatusCode::UNAUTHORIZED, "log in first"),
        },
        ("/console/api/events", Method::GET) => tail(site, r),
        ("/console/login" | "/console/logout", _) => not_allowed("POST"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    secret: String,
}

async fn login(site: &Site, r: Req) -> Response<Body> {
    let Req { req, peer } = r;
    let body = match Limited::new(req.into_body(), MAX_LOGIN_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return json_error(StatusCode::PAYLOAD_TOO_LARGE, "the body is over the limit"),
    };
    let Ok(form) = serde_json::from_slice::<LoginForm>(&body) else {
        return json_error(StatusCode::BAD_REQUEST, "send {\"username\": ..., \"secret\": ...}");
    };
    let core = &site.core;
    let mut bridge = match Bridge::open(
        core,
        peer,
        site.local,
        Transport::Http,
        site.tls,
        Arc::from("web-console"),
    )
    .await
    {
        Ok(b) => b,
        Err(e) => return json_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let logged = bridge
        .login(&form.username, &form.secret, false, core.config().proxy.auth_timeout)
        .await;
    bridge.logoff().await;
    match logged {
        Ok(()) => {}
        Err(BridgeError::Refused(m)) => return json_error(StatusCode::UNAUTHORIZED, &m),
        Err(e) => return json_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
    let config = core.config();
    let Some(u) = config.users.iter().find(|u| u.name == form.username && u.console) else {
        tracing::warn!(target: "amiproxy::audit", user = ?form.username, %peer, "console login refused: not a console user");
        return json_error(StatusCode::FORBIDDEN, "this user may not use the console");
    };
    let token = site.consoles.create(
        &form.username,
        secret_fingerprint(&u.secret),
        config.web.console_session,
    );
    let secure = if site.tls { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE_NAME}={token}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        config.web.console_session.as_secs()
    );
    let mut resp = json_response(StatusCode::OK, serde_json::json!({ "user": form.username }).to_string());
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(SET_COOKIE, v);
    }
    resp
}

fn logout(site: &Site, r: &Req) -> Response<Body> {
    if let Some(t) = cookie_token(&r.req) {
        site.consoles.remove(&t);
    }
    let mut resp = json_response(StatusCode::OK, "{}".into());
    resp.headers_mut().insert(
        SET_COOKIE,
        HeaderValue::from_static("amiproxy_console=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    resp
}

#[derive(Serialize)]
struct UpstreamView {
    name: String,
    connected: bool,
    version: Option<String>,
    generation: Option<String>,
    rtt_ms: Option<f64>,
    reconnects: u64,
    events_total: u64,
    in_flight: usize,
}

/// Everything the console shows, now.
fn state(core: &Core, user: &str) -> String {
    let st = core.state();
    let upstreams: Vec<UpstreamView> = st
        .upstreams
        .iter()
        .map(|u| {
            let version = u.version();
            let rtt = u.rtt_us.load(Ordering::Relaxed);
            UpstreamView {
                name: u.name().to_owned(),
                connected: u.is_connected(),
                generation: version
                    .as_deref()
                    .map(|v| crate::dialect::Generation::from_ami_version(v).to_string()),
                version,
                rtt_ms: (rtt > 0).then(|| rtt as f64 / 1000.0),
                reconnects: u.reconnects.load(Ordering::Relaxed),
                events_total: u.events_total.load(Ordering::Relaxed),
                in_flight: u.in_flight(),
            }
        })
        .collect();
    serde_json::json!({
        "user": user,
        "proxy": {
            "name": st.config.proxy.name,
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_secs": core.started.elapsed().as_secs(),
            "draining": core.is_leaving(),
            "connections": core.sessions.load(Ordering::Relaxed),
        },
        "upstreams": upstreams,
        "sessions": core.registry.snapshot(),
        "refusals": core.refusals.snapshot(),
    })
    .to_string()
}

/// `/console/api/events`: the live event tail.
fn tail(site: &Site, r: Req) -> Response<Body> {
    let Req { mut req, peer } = r;
    let accept = match accept_key(&req) {
        Ok(a) => a,
        Err(resp) => return *resp,
    };
    // The tail must be opened by the console's own page: an `Origin` is required here.
    if req.headers().get(ORIGIN).is_none() || !super::same_origin(&req) {
        return json_error(StatusCode::FORBIDDEN, "the event tail is for the console's own page");
    }
    let Some(user) = session_user(site, &req, peer) else {
        return json_error(StatusCode::UNAUTHORIZED, "log in first");
    };
    // A tail counts toward the listener's connections.
    let Ok(slot) = site.conns.clone().try_acquire_owned() else {
        return json_error(StatusCode::SERVICE_UNAVAILABLE, "too many connections");
    };
    let core = site.core.clone();
    let upgrading = hyper::upgrade::on(&mut req);
    let token = cookie_token(&req).unwrap_or_default();
    let logins = site.consoles.0.clone();
    tokio::spawn(async move {
        let _slot = slot;
        if let Ok(io) = upgrading.await {
            let ws = WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, Some(ws_config())).await;
            let check = core.clone();
            run_tail(ws, core, user, move || {
                logins.get(&token).is_some_and(|l| still_valid(&check, &l, peer.ip()))
            })
            .await;
        }
    });
    switching(&accept)
}

/// One event of the tail.
#[derive(Serialize)]
struct TailItem<'a> {
    server: Option<&'a str>,
    event: AsJson<'a>,
}

#[derive(Deserialize)]
struct TailControl {
    filter: String,
}

async fn run_tail<S>(ws: WebSocketStream<S>, core: Arc<Core>, user: String, alive: impl Fn() -> bool)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    let mut events = core.hub.subscribe();
    let mut flush = tokio::time::interval(TAIL_FLUSH);
    let mut filter = String::new();
    let mut batch: Vec<String> = Vec::new();
    let mut skipped = 0u64;
    let read = |core: &Core| {
        core.config()
            .users
            .iter()
            .find(|u| u.name == user && u.console)
            .map(|u| u.read)
    };
    let mut classes: Option<Classes> = read(&core);
    loop {
        tokio::select! {
            () = events.ready() => {
                let Some(c) = classes else { break };
                // A read's worth per turn at most: the socket and the flush get their turns.
                for _ in 0..TAIL_BATCH {
                    let ev = match events.try_next() {
                        Some(Next::Event(ev)) => ev,
                        Some(Next::Lost(n)) => {
                            skipped += n;
                            continue;
                        }
                        None => break,
                    };
                    if ev.classes.is_empty() || !c.contains(ev.classes) {
                        continue;
                    }
                    if !filter.is_empty() && !contains_ci(ev.msg.as_bytes(), filter.as_bytes()) {
                        continue;
                    }
                    if batch.len() < TAIL_BATCH {
                        let item = TailItem { server: ev.server.as_deref(), event: AsJson(&ev.msg) };
                        batch.push(serde_json::to_string(&item).unwrap_or_default());
                    } else {
                        skipped += 1;
                    }
                }
            }
            m = stream.next() => match m {
                Some(Ok(WsMessage::Text(t))) => {
                    if let Ok(c) = serde_json::from_str::<TailControl>(t.as_str()) {
                        filter = c.filter.chars().take(MAX_FILTER).collect::<String>().to_ascii_lowercase();
                    }
                }
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            _ = flush.tick() => {
                if !alive() {
                    let _ = sink.send(WsMessage::Close(None)).await;
                    break;
                }
                // A reload may take the console (or the user) away.
                classes = read(&core);
                if batch.is_empty() && skipped == 0 {
                    continue;
                }
                // The items are JSON already (their headers in order): joined, not re-parsed.
                let frame = format!("{{\"events\":[{}],\"skipped\":{skipped}}}", batch.join(","));
                batch.clear();
                skipped = 0;
                match tokio::time::timeout(Duration::from_secs(5), sink.send(WsMessage::text(frame))).await {
                    Ok(Ok(())) => {}
                    _ => break,
                }
            }
        }
    }
}

/// Whether `hay` contains `needle` (already lower case), ignoring ASCII case.
fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_lasts_its_time_and_no_longer() {
        let l = Logins::default();
        let t = l.create("op", 7, Duration::from_secs(60));
        assert_eq!(t.len(), 64);
        assert_eq!(l.get(&t).map(|x| x.user).as_deref(), Some("op"));
        assert!(l.get("nope").is_none());
        let gone = l.create("op", 7, Duration::ZERO);
        assert!(l.get(&gone).is_none_or(|x| x.expires <= Instant::now()));
        l.remove(&t);
        assert!(l.get(&t).is_none());
        // One user holds a bounded number of logins; others are untouched.
        let other = l.create("other", 1, Duration::from_secs(60));
        let many: Vec<String> = (0..MAX_LOGINS_PER_USER + 3)
            .map(|_| l.create("op", 7, Duration::from_secs(60)))
            .collect();
        assert!(l.get(&other).is_some());
        assert_eq!(many.iter().filter(|t| l.get(t).is_some()).count(), MAX_LOGINS_PER_USER);
    }

    #[test]
    fn filter_matching_ignores_case() {
        assert!(contains_ci(b"Event: Newchannel\r\n", b"newchan"));
        assert!(!contains_ci(b"Event: Hangup\r\n", b"newchan"));
    }
}
