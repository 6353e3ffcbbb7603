//! A real Node.js client library (asterisk-manager, from npm) through the proxy in front of two
//! simulated Asterisks. The library speaks plain TCP only (it opens its socket with
//! `net.createConnection` and has no TLS option), so there is no TLS run.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/node")
}

/// True when `node` runs and `tests/node/node_modules/asterisk-manager` loads. Missing under
/// `CI` is a failure; elsewhere a skip notice.
fn node_has_asterisk_manager() -> bool {
    let mut check = Command::new("node");
    check
        .args(["-e", "require('./node_modules/asterisk-manager')"])
        .current_dir(node_dir());
    client_library("node and asterisk-manager", "npm ci --prefix tests/node", check)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asterisk_manager_npm_through_the_proxy() {
    if !node_has_asterisk_manager() {
        return;
    }
    let s1 = sim_with("pbx1", |c| c.channel_id_base = 0).await;
    let s2 = sim_with("pbx2", |c| c.channel_id_base = 0x1000).await;
    let proxy = start_proxy(&format!(
        "[routing]\ndefault_upstream = \"pbx1\"\n\n{}{USERS}",
        upstreams_toml(&[&s1, &s2])
    ));
    // Both links up before the script runs, so the merged list has both servers.
    let mut c = Client::login(proxy.addr(), "admin", "admin-secret").await;
    for s in ["pbx1", "pbx2"] {
        wait_upstream(&mut c, s).await;
    }
    let script = node_dir().join("proxy_asterisk_manager.js");
    let run = tokio::process::Command::new("node")
        .arg(&script)
        .arg("127.0.0.1")
        .arg(proxy.addr().port().to_string())
        .args(["admin", "admin-secret"])
        .kill_on_drop(true)
        .output();
    // The script has its own 30 s limit; this one only guards against a hung node.
    let out = tokio::time::timeout(Duration::from_secs(45), run)
        .await
        .expect("the node script finishes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "asterisk-manager failed ({}): {stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{}", stdout.trim_end());
    assert!(stdout.contains("ok:"), "{stdout}");
    assert!(stdout.contains("from pbx1 and pbx2"), "merged list from both: {stdout}");
    // The library's session ended cleanly; the proxy still serves.
    c.send("Action: Ping\r\nActionID: after\r\n\r\n").await;
    assert_eq!(c.response("after").await.get("Ping"), Some("Pong"));
}
