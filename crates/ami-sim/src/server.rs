//! The listener and the handle tests and the proxy drive the simulator with.

use crate::config::SimConfig;
use crate::error::SimError;
use crate::pbx::Pbx;
use ami_proto::{Kind, Message, MessageBuilder};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Mutex};
use tokio::task::JoinHandle;

/// The running accept loop: a stop switch and its task (awaited so the port is free).
struct Listener {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

struct Inner {
    pbx: Arc<Pbx>,
    addr: SocketAddr,
    listener: Mutex<Option<Listener>>,
}

/// Controls one running simulated Asterisk. Cheap to clone.
#[derive(Clone)]
pub struct SimHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("name", &self.name())
            .field("addr", &self.addr())
            .finish()
    }
}

/// Binds (port 0 allowed), spawns the accept loop and generators, returns at once.
pub async fn start(cfg: SimConfig, listen: SocketAddr) -> Result<SimHandle, SimError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| SimError::Bind { addr: listen, source })?;
    let addr = listener.local_addr()?;
    let pbx = Arc::new(Pbx::new(cfg));
    tracing::info!(name = %pbx.cfg.name, %addr, "ami-sim listening");
    tokio::spawn(crate::firehose::firehose_task(pbx.clone()));
    tokio::spawn(crate::firehose::traffic_task(pbx.clone()));
    let l = spawn_accept(pbx.clone(), listener);
    Ok(SimHandle {
        inner: Arc::new(Inner {
            pbx,
            addr,
            listener: Mutex::new(Some(l)),
        }),
    })
}

fn spawn_accept(pbx: Arc<Pbx>, listener: TcpListener) -> Listener {
    let (stop, mut stop_rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stop_rx => break,
                r = listener.accept() => match r {
                    Ok((stream, peer)) => {
                        tokio::spawn(crate::session::run(pbx.clone(), stream, peer));
                    }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                },
            }
        }
    });
    Listener { stop, task }
}

impl SimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    pub fn name(&self) -> &str {
        &self.inner.pbx.cfg.name
    }

    /// Currently open client connections.
    pub fn connection_count(&self) -> usize {
        self.inner.pbx.connections.load(Ordering::Relaxed)
    }

    /// Closes every client connection at once (no Shutdown event).
    pub fn drop_connections(&self) {
        self.inner.pbx.controls.drop_gen.send_modify(|g| *g += 1);
    }

    /// Stops accepting and drops every connection; the port is released on return.
    pub async fn stop_listener(&self) {
        let l = self.inner.listener.lock().await.take();
        if let Some(l) = l {
            let _ = l.stop.send(());
            let _ = l.task.await;
        }
        self.drop_connections();
    }

    /// Binds the same address again, retrying briefly while the port is still in use.
    pub async fn restart_listener(&self) -> Result<(), SimError> {
        let mut guard = self.inner.listener.lock().await;
        if guard.is_some() {
            return Ok(());
        }
        let addr = self.inner.addr;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(source) => return Err(SimError::Bind { addr, source }),
            }
        };
        *guard = Some(spawn_accept(self.inner.pbx.clone(), listener));
        Ok(())
    }

    /// While true, sessions read nothing and answer nothing; events are held.
    pub fn set_stalled(&self, stalled: bool) {
        self.inner.pbx.controls.stalled.send_replace(stalled);
    }

    /// Writes raw bytes to every logged-in connection.
    pub fn send_garbage(&self, bytes: &[u8]) {
        self.inner.pbx.bus.raw(bytes::Bytes::copy_from_slice(bytes));
    }

    /// None = off; Some(0) = as fast as possible; Some(n) = n events per second.
    pub fn set_firehose(&self, events_per_sec: Option<u64>) {
        self.inner.pbx.controls.firehose.send_replace(events_per_sec);
    }

    /// How many firehose events were fired so far (their `SimSeq` runs 1..=this, gapless).
    pub fn firehose_sent(&self) -> u64 {
        self.inner.pbx.firehose_seq.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Calls per second of generated `Local/100@default` traffic; 0 = off.
    pub fn set_call_rate(&self, calls_per_sec: f64) {
        self.inner.pbx.controls.call_rate.send_replace(calls_per_sec);
    }

    /// Broadcasts an event to every logged-in session its read permissions allow.
    /// `SystemName` is added after `Privilege` when the sim has one and the event lacks it.
    pub fn emit(&self, event: Message) {
        let pbx = &self.inner.pbx;
        let classes = event.get("Privilege").map(crate::perms::event_classes).unwrap_or(0);
        let name = event.get("Event").unwrap_or("").to_owned();
        let bytes = match pbx.bus.system_name() {
            Some(sn) if event.kind() == Kind::Event && event.get("SystemName").is_none() => {
                let mut b = MessageBuilder::new();
                let mut added = false;
                for (k, v) in event.headers() {
                    b = b.header(k, v);
                    if !added && k.eq_ignore_ascii_case("Privilege") {
                        b = b.header("SystemName", sn);
                        added = true;
                    }
                }
                b.into_bytes()
            }
            _ => event.bytes().clone(),
        };
        pbx.bus.publish(classes, &name, bytes);
    }

    /// Renames a live channel as a masquerade or `Local` optimisation would: the channel
    /// table takes the new name and the generation's `Rename` event goes out (1.4:
    /// `Oldname`/`Newname`/`Uniqueid`; 1.8 and later: `Channel`/`Newname`/`Uniqueid`).
    /// False when no channel is called `old` or `new` is already taken.
    pub fn rename_channel(&self, old: &str, new: &str) -> bool {
        let pbx = &self.inner.pbx;
        let (uid, control, side) = {
            let mut chans = crate::pbx::lock(&pbx.channels);
            if new.is_empty() || chans.contains_key(new) {
                return false;
            }
            let Some(mut ch) = chans.remove(old) else {
                return false;
            };
            ch.name = new.to_owned();
            let r = (ch.uniqueid.clone(), ch.control.clone(), ch.side);
            chans.insert(new.to_owned(), ch);
            r
        };
        pbx.bus
            .send(crate::channels::rename_event(&pbx.bus, pbx.dialect(), old, new, &uid));
        let _ = control.send(crate::channels::Control::Rename {
            side,
            new: new.to_owned(),
        });
        true
    }

    /// The Asterisk generation this sim speaks.
    pub fn dialect(&self) -> crate::Dialect {
        self.inner.pbx.dialect()
    }

    /// Live channels.
    pub fn channel_count(&self) -> usize {
        crate::pbx::lock(&self.inner.pbx.channels).len()
    }

    /// The journal of side effects, oldest first: every function evaluated, application
    /// run, file, AstDB, config, environment, global and cross-channel access, hangup,
    /// redirect, recording, … (see [`crate::Effect`]). Calls record theirs as they run, a
    /// moment after their Originate was answered: poll. Bounded to
    /// [`crate::JOURNAL_CAP`] entries (the oldest go).
    pub fn effects(&self) -> Vec<crate::Effect> {
        self.inner.pbx.journal.snapshot()
    }

    /// Empties the journal.
    pub fn clear_effects(&self) {
        self.inner.pbx.journal.clear();
    }

    /// Events skipped by sessions too slow to keep up (summed over sessions).
    pub fn lagged_events(&self) -> u64 {
        self.inner.pbx.bus.lagged()
    }

    /// Sends `Event: Shutdown` to every session, then closes everything.
    pub async fn shutdown(&self) {
        let pbx = &self.inner.pbx;
        self.set_firehose(None);
        self.set_call_rate(0.0);
        self.set_stalled(false);
        pbx.bus.send(
            pbx.bus
                .event("Shutdown", "system,all")
                .h("Shutdown", "Cleanly")
                .h("Restart", "False"),
        );
        pbx.bus.close_all();
        let l = self.inner.listener.lock().await.take();
        if let Some(l) = l {
            let _ = l.stop.send(());
            let _ = l.task.await;
        }
        // Give sessions a moment to write the event, then drop whatever is left.
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        while self.connection_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.drop_connections();
    }
}
