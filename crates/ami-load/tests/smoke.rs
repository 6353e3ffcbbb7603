//! Tiny runs of the load tool that check correctness only (no loss, every answer back),
//! never speed: timing on a shared 2-core CI machine proves nothing.

use std::path::PathBuf;
use std::process::Command;

/// The `amiproxy` binary of this build profile, built first if needed.
fn proxy_bin() -> PathBuf {
    binary("amiproxy")
}

/// The binary `name` (of the package of that name) of this build profile, built first if
/// needed. It sits next to the directory holding this test executable
/// (`target/<profile>/deps/smoke-…`).
fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps layout");
    let bin = profile_dir.join(name);
    // Always ask cargo: a stale binary from an older build would test old code.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-q", "-p", name, "--bin", name]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("run cargo build");
    assert!(status.success(), "cargo build -p {name} failed");
    assert!(bin.exists(), "{} missing after build", bin.display());
    bin
}

/// Runs `ami-load --json ARGS` and returns every JSON object it printed.
fn ami_load(args: &[&str]) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_ami-load"))
        .arg("--json")
        .args(args)
        .output()
        .expect("run ami-load");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ami-load {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON {l:?}: {e}")))
        .collect()
}

fn rows(v: &serde_json::Value) -> &Vec<serde_json::Value> {
    v["rows"].as_array().expect("rows")
}

#[test]
fn fanout_direct_and_through_proxy_binary_lose_nothing() {
    let bin = proxy_bin();
    let out = ami_load(&[
        "fanout",
        "--spawn-sim",
        "2000",
        "--compare",
        "--proxy-bin",
        bin.to_str().unwrap(),
        "--clients",
        "2",
        "--duration",
        "1",
    ]);
    let rows = rows(&out[0]);
    assert_eq!(rows.len(), 2);
    for r in rows {
        assert_eq!(r["lost"], 0, "{r}");
        assert_eq!(r["disorder"], 0, "{r}");
        assert_eq!(r["errors"], 0, "{r}");
        assert_eq!(r["proxy_dropped"], 0, "{r}");
        assert!(r["eps_min"].as_f64().unwrap() > 0.0, "no events: {r}");
    }
    assert_eq!(rows[0]["via"], "direct");
    assert_eq!(rows[1]["via"], "proxy");
    // The proxy ran as its own process, so its CPU and memory were read.
    assert!(rows[1]["peak_rss_mib"].as_f64().is_some(), "{}", rows[1]);
}

#[test]
fn rtt_every_request_is_answered() {
    let bin = proxy_bin();
    for action in ["CoreSettings", "Ping"] {
        let out = ami_load(&[
            "rtt",
            "--spawn-sim",
            "--compare",
            "--proxy-bin",
            bin.to_str().unwrap(),
            "--clients",
            "2",
            "--requests",
            "100",
            "--action",
            action,
        ]);
        for r in rows(&out[0]) {
            assert_eq!(r["answered"], 100, "{r}");
            assert_eq!(r["errors"], 0, "{r}");
        }
    }
}

#[test]
fn rtt_list_action_in_process_proxy() {
    let out = ami_load(&[
        "rtt",
        "--spawn-sim",
        "--compare",
        "--in-process",
        "--requests",
        "100",
        "--action",
        "QueueStatus",
    ]);
    let rows = rows(&out[0]);
    assert_eq!(rows.len(), 2);
    for r in rows {
        assert_eq!(r["answered"], 100, "{r}");
        assert_eq!(r["errors"], 0, "{r}");
    }
}

#[test]
fn cluster_merges_lists_and_streams() {
    let out = ami_load(&[
        "cluster",
        "--in-process",
        "--sims",
        "2",
        "--clients",
        "2",
        "--rate",
        "500",
        "--duration",
        "1",
    ]);
    let fan = rows(&out[0]);
    assert_eq!(fan[0]["lost"], 0, "{}", fan[0]);
    for l in rows(&out[1]) {
        assert_eq!(l["ok"], true, "{l}");
    }
}

#[test]
fn scale_small_storm_logs_everyone_in() {
    let bin = proxy_bin();
    let out = ami_load(&[
        "scale",
        "--spawn-sim",
        "--proxy-bin",
        bin.to_str().unwrap(),
        "--clients",
        "20",
        "--storm",
        "20",
    ]);
    let r = &rows(&out[0])[0];
    assert_eq!(r["storm_failed"], 0, "{r}");
    assert!(r["kib_per_client"].as_f64().is_some(), "{r}");
}

#[test]
fn rtt_under_event_load_loses_nothing() {
    let bin = proxy_bin();
    rtt_under_load(&["--spawn-sim", "--proxy-bin", bin.to_str().unwrap()]);
}

/// The baseline that pays for its own fan-out: a simulator process with its firehose on,
/// read directly by the load, then through the proxy binary.
#[test]
fn rtt_under_load_on_a_simulator_process() {
    let (proxy, sim) = (proxy_bin(), binary("ami-sim"));
    rtt_under_load(&[
        "--sim-bin",
        sim.to_str().unwrap(),
        "--proxy-bin",
        proxy.to_str().unwrap(),
    ]);
}

/// 100 round trips while 3 clients read 2,000 ev/s, direct then through the proxy (`front`
/// says how each is started): every request answered, every loaded client reading, none
/// losing an event.
fn rtt_under_load(front: &[&str]) {
    let mut args = vec![
        "rtt",
        "--compare",
        "--requests",
        "100",
        "--load-clients",
        "3",
        "--load-rate",
        "2000",
    ];
    args.extend_from_slice(front);
    let out = ami_load(&args);
    for r in rows(&out[0]) {
        assert_eq!(r["answered"], 100, "{r}");
    }
    assert_eq!(out[1]["scenario"], "rtt background load");
    let load = rows(&out[1]);
    assert_eq!(load.len(), 2);
    for r in load {
        assert_eq!(r["clients"], 3, "{r}");
        assert_eq!(r["lost"], 0, "{r}");
        assert_eq!(r["errors"], 0, "{r}");
        assert!(r["eps_mean"].as_f64().is_some_and(|e| e > 0.0), "{r}");
    }
}

#[test]
fn scoped_tenants_get_every_event() {
    let out = ami_load(&[
        "fanout",
        "--spawn-sim",
        "2000",
        "--compare",
        "--in-process",
        "--scoped",
        "--clients",
        "3",
        "--duration",
        "1",
    ]);
    let rows = rows(&out[0]);
    assert_eq!(rows.len(), 2);
    for r in rows {
        assert_eq!(r["lost"], 0, "{r}");
        assert_eq!(r["disorder"], 0, "{r}");
        // Out of scope, a tenant would count nothing and lose nothing: it must count.
        assert!(r["eps_min"].as_f64().unwrap() > 1000.0, "{r}");
    }
}

#[test]
fn argon2_login_storm_under_flood() {
    let out = ami_load(&[
        "logins",
        "--spawn-sim",
        "--compare",
        "--in-process",
        "--argon2",
        "--storm",
        "3",
        "--clients",
        "2",
        "--flood",
        "1000",
    ]);
    let rows = rows(&out[0]);
    assert_eq!(
        (rows[0]["secret"].as_str(), rows[1]["secret"].as_str()),
        (Some("plain"), Some("argon2"))
    );
    for r in rows {
        assert_eq!(r["failed"], 0, "{r}");
        assert_eq!(r["storm"], 3, "{r}");
    }
    assert_eq!(out[1]["scenario"], "logins background load");
}
