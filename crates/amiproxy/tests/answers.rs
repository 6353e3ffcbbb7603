//! Every action answered once, whatever happens around it: calls that ring longer than the
//! action timeout, lists whose upstream dies halfway, shutdown with actions still in the
//! client's socket, signals while the proxy starts.

mod common;

use common::*;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synchronous_originate_may_ring_longer_than_the_action_timeout() {
    let sim = sim("pbx1").await;
    let proxy = start_proxy(&format!(
        "[proxy]\naction_timeout_secs = 1\n\n{}{USERS}",
        upstreams_toml(&[&sim])
    ));
    let mut c = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut c, "pbx1").await;
    // Local/03@ringing rings three seconds before it answers.
    let sent = Instant::now();
    c.send("Action: Originate\r\nChannel: Local/03@ringing\r\nApplication: Wait\r\nData: 1\r\nTimeout: 20000\r\nActionID: ring\r\n\r\n")
        .await;
    let r = c.response("ring").await;
    assert_eq!(r.get("Message"), Some("Originate successfully queued"), "{r:?}");
    assert!(sent.elapsed() >= Duration::from_secs(3), "answered before the call was");
    // Answered once: the next answer on this connection is the next action's.
    c.send("Action: Ping\r\nActionID: after\r\n\r\n").await;
    let next = c.until(|m| m.response().is_some()).await;
    assert_eq!(next.action_id(), Some("after"), "{next:?}");
}
