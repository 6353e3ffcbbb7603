//! One link's life: connect (TCP or TLS), log in, serve until the connection fails,
//! reconnect with capped exponential backoff and jitter, forever until a reload removes it.
//! A Ping each interval finds a dead peer; ownership is relearned on every (re)connect.

use super::dispatch::Outbox;
use super::waiter::{Waiter, Waiting};
use super::{simulated, Context, Io, LinkRole, Upstream};
use crate::config::UpstreamTarget;
use crate::error::ProxyError;
use crate::hub;
use crate::sync::lock;
use ami_proto::{AmiDecoder, Decoded, Kind, MessageBuilder, Role};
use bytes::Bytes;
use futures::StreamExt;
use rand::Rng;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;
use tracing::{debug, info, warn, Instrument};

/// Actions queued for one upstream's socket before it counts as stalled.
const WRITE_QUEUE: usize = 65_536;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the link of `up` and its extra links (control, accounts), each reconnecting on its own until
/// `up.stop` is cancelled. They run on the control runtime (`crate::runtime`), so answers never
/// wait behind event deliveries.
pub fn spawn(ctx: &Arc<Context>, up: &Arc<Upstream>) {
    crate::runtime::spawn_control(run(ctx.clone(), up.clone()));
    for account in &up.extra {
        crate::runtime::spawn_control(run(ctx.clone(), account.clone()));
    }
}

/// Runs one upstream link until a reload removes it.
async fn run(ctx: Arc<Context>, up: Arc<Upstream>) {
    let span = match &up.role {
        LinkRole::Main => tracing::info_span!("upstream", server = %up.name()),
        LinkRole::Control => tracing::info_span!("upstream", server = %up.name(), link = "control"),
        LinkRole::Account(a) => tracing::info_span!("upstream", server = %up.name(), account = %a),
    };
    async move {
        let address = match resolve_target(&up).await {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "cannot start upstream");
                return;
            }
        };
        // Answers actions whose upstream stays silent, for the life of the proxy.
        let (sweeper_ctx, sweeper_up) = (ctx.clone(), up.clone());
        tokio::spawn(async move {
            let mut t = tokio::time::interval(Duration::from_millis(200));
            loop {
                tokio::select! {
                    _ = t.tick() => sweeper_up.expire(&sweeper_ctx, Instant::now()),
                    _ = sweeper_up.stop.cancelled() => return,
                }
            }
        });
        if up.is_main() {
            crate::metrics::upstream_up(up.name(), false);
        }
        let mut failures: u32 = 0;
        loop {
            let result = tokio::select! {
                r = session(&ctx, &up, &address) => r,
                _ = up.stop.cancelled() => break,
            };
            match result {
                Ok(()) => failures = 0,
                Err(e) => {
                    if failures == 0 {
                        warn!(error = %e, "upstream unavailable");
                    } else {
                        debug!(error = %e, "upstream still unavailable");
                    }
                }
            }
            failures = failures.saturating_add(1);
            let delay = backoff(up.config.reconnect_min, up.config.reconnect_max, failures);
            debug!(?delay, "reconnecting after backoff");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = up.stop.cancelled() => break,
            }
        }
        // Removed by a reload: answer what is in flight, tell the clients, stop the sim.
        let was_up = up.is_connected();
        up.disconnected(&ctx, "removed from the configuration");
        if up.is_main() {
            crate::metrics::upstream_up(up.name(), false);
        }
        if was_up && up.is_main() {
            let ev = hub::upstream_status(
                ctx.server_header(),
                up.name(),
                "Disconnected",
                Some("removed from the configuration"),
            );
            ctx.hub.publish_about(ev, up.origin.clone());
        }
        let sim = lock(&up.sim).take();
        if let Some(sim) = sim {
            simulated::stop(sim).await;
        }
        info!("upstream removed");
    }
    .instrument(span)
    .await
}

/// Capped exponential backoff with jitter (half to full of the capped delay).
fn backoff(min: Duration, max: Duration, failures: u32) -> Duration {
    let exp = min.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let capped = exp.min(max);
    capped.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

async fn resolve_target(up: &Upstream) -> Result<String, ProxyError> {
    match &up.config.target {
        UpstreamTarget::Asterisk { address, .. } => Ok(address.clone()),
        UpstreamTarget::Simulated(s) => {
            let (addr, handle) = simulated::start(up.name(), s).await?;
            info!(%addr, "simulated Asterisk started in-process");
            *lock(&up.sim) = Some(handle);
            Ok(addr)
        }
    }
}

async fn connect(up: &Upstream, address: &str) -> Result<Box<dyn Io>, ProxyError> {
    let err = |reason: String| ProxyError::Upstream {
        server: up.name().to_owned(),
        reason,
    };
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|_| err(format!("connect to {address} timed out")))?
        .map_err(|e| err(format!("connect to {address}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    match &up.config.target {
        UpstreamTarget::Asterisk { tls: Some(tls), .. } => {
            let connector = crate::tls::client::connector(up.name(), tls)?;
            let host = tls.server_name.clone().unwrap_or_else(|| {
                address
                    .rsplit_once(':')
                    .map(|(h, _)| h.trim_matches(['[', ']']).to_owned())
                    .unwrap_or_default()
            });
            let name = crate::tls::server_name(&host)?;
            let handshake = tokio_rustls::TlsConnector::from(connector.config.clone()).connect(name, tcp);
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, handshake)
                .await
                .map_err(|_| err(format!("tls handshake with {address} timed out")))?
                .map_err(|e| err(format!("tls handshake with {address}: {}", connector.explain(&e))))?;
            Ok(Box::new(stream))
        }
        _ => Ok(Box::new(tcp)),
    }
}

/// One connection: connect, log in, serve until it fails. Ok(()) when it was up at all.
async fn session(ctx: &Arc<Context>, up: &Arc<Upstream>, address: &str) -> Result<(), ProxyError> {
    let io = connect(up, address).await?;
    let (rd, wr) = tokio::io::split(io);
    // Events come out of the read buffer tagged with this server (one copy, not two).
    let decoder = AmiDecoder::new(Role::Upstream).tagging_events(ctx.server_header(), up.name());
    let mut frames = FramedRead::with_capacity(rd, decoder, 64 * 1024);
    let mut wr = BufWriter::with_capacity(64 * 1024, wr);
    let version = login(ctx, up, &mut frames, &mut wr).await?;

    // Up: open the write queue, announce, relearn channel ownership.
    let (wtx, mut wrx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    let mut writer = tokio::spawn(async move {
        while let Some(b) = wrx.recv().await {
            wr.write_all(&b).await?;
            if wrx.is_empty() {
                wr.flush().await?;
            }
        }
        Ok::<(), std::io::Error>(())
    });
    {
        let mut link = up.link();
        link.writer = Some(wtx);
        up.connected.store(true, Ordering::Release);
    }
    *lock(&up.version) = Some(version.clone());
    up.reconnects.fetch_add(1, Ordering::Relaxed);
    info!(%address, %version, "upstream connected");
    if up.is_main() {
        crate::metrics::upstream_connects(up.name());
        crate::metrics::upstream_up(up.name(), true);
        ctx.hub.publish_about(
            hub::upstream_status(ctx.server_header(), up.name(), "Connected", None),
            up.origin.clone(),
        );
        relearn(ctx, up);
    }

    let reason = serve(ctx, up, &mut frames, &mut writer).await;
    writer.abort();
    warn!(%reason, "upstream disconnected");
    up.disconnected(ctx, &reason);
    if up.is_main() {
        crate::metrics::upstream_up(up.name(), false);
        ctx.hub.publish_about(
            hub::upstream_status(ctx.server_header(), up.name(), "Disconnected", Some(&reason)),
            up.origin.clone(),
        );
    }
    Ok(())
}

/// Reads the banner and logs in (events on for the main link, off for the extra links).
/// Returns the upstream's AMI version, from its banner.
async fn login<W: tokio::io::AsyncWrite + Unpin>(
    ctx: &Context,
    up: &Upstream,
    frames: &mut Frames,
    wr: &mut W,
) -> Result<String, ProxyError> {
    let err = |reason: String| ProxyError::Upstream {
        server: up.name().to_owned(),
        reason,
    };
    let banner = match tokio::time::timeout(CONNECT_TIMEOUT, frames.next()).await {
        Ok(Some(Ok(Decoded::Banner(b)))) => b,
        Ok(Some(Ok(_))) => return Err(err("no banner".into())),
        Ok(Some(Err(e))) => return Err(err(format!("reading banner: {e}"))),
        Ok(None) => return Err(err("closed before the banner".into())),
        Err(_) => return Err(err("no banner in time".into())),
    };
    let version = banner
        .strip_prefix(ami_proto::BANNER_PREFIX)
        .unwrap_or(&banner)
        .trim()
        .to_owned();
    let login_aid = ctx.ids.next();
    let login = MessageBuilder::action("Login")
        .header("ActionID", login_aid.as_str())
        .header("Username", &up.config.username)
        .header("Secret", &up.config.secret)
        .header("Events", if up.is_main() { "on" } else { "off" })
        .into_bytes();
    wr.write_all(&login).await?;
    wr.flush().await?;
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    loop {
        let frame = tokio::time::timeout_at(deadline, frames.next())
            .await
            .map_err(|_| err("no answer to login in time".into()))?;
        match frame {
            Some(Ok(Decoded::Message(m)))
                if m.kind() == Kind::Response && m.action_id() == Some(login_aid.as_str()) =>
            {
                if m.get("Response").is_some_and(|r| r.eq_ignore_ascii_case("Success")) {
                    break;
                }
                return Err(err(format!(
                    "login refused: {}",
                    m.get("Message").unwrap_or("no reason given")
                )));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(err(format!("during login: {e}"))),
            None => return Err(err("closed during login".into())),
        }
    }
    Ok(version)
}

/// Asks for every channel, so ownership is learned again after a (re)connect.
/// Relearns at once, then every `ownership_refresh` while this connection lasts, so the
/// index converges to the upstream's channels even after a missed Hangup.
fn relearn(ctx: &Arc<Context>, up: &Arc<Upstream>) {
    let (ctx, up) = (ctx.clone(), up.clone());
    let epoch = up.reconnects.load(Ordering::Relaxed);
    tokio::spawn(async move {
        loop {
            let timeout = ctx.action_timeout();
            ctx.owners.begin_relearn(up.id);
            // Complete only when the list reached its end: a refusal (an account without the
            // class, a generation without the action) is no empty list, and taking it for
            // one would forget every channel.
            // Asterisk before 1.6.2 has no CoreShowChannels (1.4 says so in its AMI
            // version; 1.6.0 and 1.6.1 refuse it): its Status lists every channel.
            let legacy = lock(&up.version)
                .as_deref()
                .is_some_and(|v| crate::dialect::Generation::from_ami_version(v) == crate::dialect::Generation::V1_4);
            let action = if legacy { "Status" } else { "CoreShowChannels" };
            let mut end = up.internal(&ctx, MessageBuilder::action(action), timeout).await;
            if !legacy && end.as_ref().is_some_and(|m| m.kind() == ami_proto::Kind::Response) {
                end = up.internal(&ctx, MessageBuilder::action("Status"), timeout).await;
            }
            let complete = end.is_some_and(|end| end.kind() == ami_proto::Kind::Event);
            ctx.owners.end_relearn(up.id, complete);
            if !complete {
                debug!(server = up.name(), "could not relearn channels");
            }
            tokio::select! {
                _ = tokio::time::sleep(up.config.ownership_refresh) => {}
                _ = up.stop.cancelled() => return,
            }
            if !up.is_connected() || up.reconnects.load(Ordering::Relaxed) != epoch {
                return;
            }
        }
    });
}

type Frames = FramedRead<tokio::io::ReadHalf<Box<dyn Io>>, AmiDecoder>;

/// Frames a link handles in one turn before it lets other tasks run.
const DISPATCH_BATCH: usize = 256;

/// One frame from the upstream; Err ends the connection, saying why.
fn handle(
    ctx: &Context,
    up: &Upstream,
    frame: Option<Result<Decoded, ami_proto::Error>>,
    out: &mut Outbox,
) -> Result<(), String> {
    match frame {
        // Asterisk writes C strings: a message that starts with NUL is not AMI, and would
        // read as a pre-encoded event on a WebSocket session's pipe (`json::PRE_ENCODED`).
        // The decoder refuses such a line today; this keeps the pipe safe if it ever does not.
        Some(Ok(Decoded::Message(m))) if m.as_bytes().first() == Some(&crate::json::PRE_ENCODED) => {
            Err("a message starting with NUL (not AMI)".into())
        }
        Some(Ok(Decoded::Message(m))) => up.dispatch(ctx, m, out),
        Some(Ok(_)) => Ok(()),
        Some(Err(e)) => Err(format!("read error: {e}")),
        None => Err("connection closed by upstream".into()),
    }
}

/// Reads until the connection fails; returns why.
async fn serve(
    ctx: &Arc<Context>,
    up: &Arc<Upstream>,
    frames: &mut Frames,
    writer: &mut tokio::task::JoinHandle<std::io::Result<()>>,
) -> String {
    // Any frame proves the upstream alive; a Ping each interval makes sure frames come.
    let mut ping = tokio::time::interval(up.config.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let mut last_seen = Instant::now();
    let allowed_silence = up.config.ping_interval + up.config.ping_timeout;
    // Since when Pings cannot be queued (None: they can).
    let mut blocked_since: Option<Instant> = None;
    loop {
        tokio::select! {
            frame = frames.next() => {
                last_seen = Instant::now();
                // Every frame already read goes in this turn (a bounded batch): one wake-up
                // and one clock read per read chunk, not per event. Its events go to the hub
                // together, after it, so a session too wakes once per read; answers go to
                // their sessions at once, ahead of them.
                let mut next = Some(frame);
                let mut handled = 0;
                let mut out = Outbox::for_read(ctx.owners.next_read());
                while let Some(frame) = next.take() {
                    if let Err(reason) = handle(ctx, up, frame, &mut out) {
                        up.flush(ctx, out);
                        return reason;
                    }
                    handled += 1;
                    if handled < DISPATCH_BATCH {
                        next = futures::FutureExt::now_or_never(frames.next());
                    }
                }
                up.flush(ctx, out);
                // A full batch: more is waiting. Step aside, or the link would go on from its
                // buffer (reading it costs no budget) ahead of the logins and actions that
                // share the control thread, for as long as the upstream floods.
                if handled >= DISPATCH_BATCH {
                    tokio::task::yield_now().await;
                }
            }
            _ = ping.tick() => {
                if last_seen.elapsed() > allowed_silence {
                    return "keepalive ping timed out".into();
                }
                let aid = ctx.ids.next();
                let bytes = MessageBuilder::action("Ping").header("ActionID", aid.as_str()).into_bytes();
                let (tx, rx) = tokio::sync::oneshot::channel();
                if let Err(refused) = up.send(aid, bytes, Waiter::new(Waiting::Internal { tx: Some(tx) }, up.config.ping_timeout)) {
                    // The write queue is full: the upstream reads nothing. It may still be
                    // sending (so never silent); a queue full for longer than a Ping may take
                    // to be answered ends the link as a lost Ping would.
                    let since = *blocked_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > up.config.ping_timeout {
                        return format!("keepalive ping not sent for {:?}: {}", since.elapsed(), refused.reason);
                    }
                    debug!(server = up.name(), reason = %refused.reason, "keepalive ping not sent");
                    continue;
                }
                blocked_since = None;
                // The round trip, for the console (a task per Ping interval is nothing).
                let (sent, up2) = (Instant::now(), up.clone());
                tokio::spawn(async move {
                    if rx.await.is_ok() {
                        let us = sent.elapsed().as_micros().clamp(1, u64::MAX as u128) as u64;
                        up2.rtt_us.store(us, std::sync::atomic::Ordering::Relaxed);
                    }
                });
            }
            res = &mut *writer => return match res {
                Ok(Ok(())) => "writer closed".into(),
                Ok(Err(e)) => format!("write error: {e}"),
                Err(e) => format!("writer failed: {e}"),
            },
        }
    }
}
