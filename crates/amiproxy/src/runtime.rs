//! Two runtimes: control first.
//!
//! Event fan-out is most of the proxy's work (a hundred clients at 20,000 events/s each are
//! two million socket writes a second); control traffic is most of what its users wait
//! for: a login, an action and its answer. On one runtime they share the run queues, so
//! each step of an action (the session reads it, the link writes it, the link reads the
//! answer, the session writes it) waits behind sessions the flood woke, and logins too.
//!
//! So the binary runs two. The **control** runtime (one thread, `amiproxy-control`) accepts
//! connections, runs every session until its login and every session that takes no events
//! (dialers, the JSON API's sessions), and every upstream link. A session that takes events
//! moves, once logged in, to the **delivery** runtime (`proxy.worker_threads` threads,
//! `amiproxy-delivery`), where its event writes cannot hold up control work. Its socket
//! stays registered with the control thread's I/O driver, which wakes it across threads. A
//! session that turns events on later stays where it is: rare, and correct on either.
//!
//! Measured (BENCHMARKS.md, stop 12): the round trip of an action while 100 clients take
//! 20,000 events/s each went from 125–245 µs to 58–64 µs at p50, with less CPU, and 1,000
//! logins beside 1,000 idle clients from 705 ms to 111 ms.
//!
//! A proxy started inside another program (the tests, `ami-load --in-process`) installs
//! nothing here and runs everything on the caller's runtime, as before.

use std::future::Future;
use std::sync::OnceLock;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

struct Runtimes {
    control: Handle,
    delivery: Handle,
}

static RUNTIMES: OnceLock<Runtimes> = OnceLock::new();

/// Called once by the binary, before the proxy starts. False if already installed.
pub fn install(control: Handle, delivery: Handle) -> bool {
    RUNTIMES.set(Runtimes { control, delivery }).is_ok()
}

/// Spawns control work: on the control runtime when there is one, else here.
pub fn spawn_control<F>(f: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match RUNTIMES.get() {
        Some(r) => r.control.spawn(f),
        None => tokio::spawn(f),
    }
}

/// Spawns a session that takes events on the delivery runtime, when there are two runtimes
/// and this is not it; `Err` gives the future back to run where the caller is.
pub fn spawn_delivery<F>(f: F) -> Result<JoinHandle<F::Output>, F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match RUNTIMES.get() {
        Some(r) if Handle::try_current().is_ok_and(|h| h.id() != r.delivery.id()) => Ok(r.delivery.spawn(f)),
        _ => Err(f),
    }
}

/// Whether this task runs on the control runtime.
pub fn on_control() -> bool {
    RUNTIMES
        .get()
        .is_some_and(|r| Handle::try_current().is_ok_and(|h| h.id() == r.control.id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without installed runtimes (a proxy inside another program), everything runs on the
    /// caller's runtime: control work is spawned there, and a session is given back.
    #[tokio::test]
    async fn nothing_installed_means_the_callers_runtime() {
        assert!(!on_control());
        let here = Handle::current().id();
        let ran_on = spawn_control(async { Handle::current().id() }).await.ok();
        assert_eq!(ran_on, Some(here));
        assert!(spawn_delivery(async {}).is_err());
    }
}
