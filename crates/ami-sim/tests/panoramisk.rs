//! A real AMI client library (Python panoramisk) against the simulator.

mod common;
use std::process::Command;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/python/sim_panoramisk.py");

fn panoramisk_available() -> bool {
    Command::new("python3")
        .args(["-c", "import panoramisk"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panoramisk_login_ping_originate_queuestatus() {
    if !panoramisk_available() {
        if std::env::var_os("CI").is_some() {
            panic!("panoramisk is not installed (python3 -m pip install -r tests/python/requirements.txt)");
        }
        eprintln!("SKIP: panoramisk not installed (python3 -m pip install -r tests/python/requirements.txt)");
        return;
    }
    let sim = common::sim().await;
    let addr = sim.addr();
    let out = tokio::process::Command::new("python3")
        .arg(SCRIPT)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), out)
        .await
        .expect("script timed out")
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "script failed: {}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    assert!(stdout.contains("ok:"), "{stdout}");
}
