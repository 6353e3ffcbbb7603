//! The command line: check-config (keys in errors, exit codes, environment overrides),
//! hash-secret, gen-cert, --version and --help.

use std::io::Write;
use std::process::{Command, Stdio};

fn amiproxy() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_amiproxy"));
    c.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    c
}

#[test]
fn check_config_accepts_the_default_config() {
    let out = amiproxy()
        .args(["check-config", "--config", "proxy.toml"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}

#[test]
fn check_config_names_every_bad_key_and_exits_1() {
    let dir = std::env::temp_dir().join(format!("amiproxy-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "[proxy]\nslow_client = \"sometimes\"\n[[listener]]\naddress = \"nowhere\"\n[[upstream]]\nname = \"a\"\nkind = \"asterisk\"\n[[user]]\nname = \"u\"\nsecret_hash = \"not-a-hash\"\nallow_md5 = true\nread = \"call,bogus\"\n",
    )
    .unwrap();
    let out = amiproxy()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "proxy.slow_client",
        "listener[0].address",
        "upstream[0].address",
        "user[0].secret_hash",
        "user[0].allow_md5",
        "user[0].read",
    ] {
        assert!(err.contains(key), "missing {key} in:\n{err}");
    }
    let out = amiproxy()
        .args(["check-config", "--config", "/nonexistent/proxy.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn environment_overrides_the_file() {
    let out = amiproxy()
        .args(["check-config", "--config", "proxy.toml"])
        .env("AMIPROXY__PROXY__SLOW_CLIENT", "bogus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("proxy.slow_client"));
    let out = amiproxy()
        .args(["check-config", "--config", "proxy.toml"])
        .env("AMIPROXY__PROXY__ACTION_TIMEOUT_SECS", "5")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn hash_secret_makes_a_usable_argon2_hash() {
    let mut child = amiproxy()
        .arg("hash-secret")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let user = amiproxy::config::UserConfig {
        name: "u".into(),
        secret: amiproxy::config::Secret::Argon2(hash),
        read: amiproxy::perms::Classes::ALL,
        write: amiproxy::perms::Classes::ALL,
        allow_md5: false,
        policy: Default::default(),
        actions_per_sec: 0,
        burst: 0,
        max_connections: 0,
        upstream_account: None,
        console: false,
        cert: None,
    };
    assert!(amiproxy::auth::check_plain(&user, "s3cret"));
    assert!(!amiproxy::auth::check_plain(&user, "s3cret\n"));
}

#[test]
fn gen_cert_writes_a_private_key_only_its_owner_reads() {
    let dir = std::env::temp_dir().join(format!("amiproxy-cert-{}", std::process::id()));
    let (cert, key) = (dir.join("c.pem"), dir.join("k.pem"));
    let out = amiproxy()
        .args(["gen-cert", "--cert"])
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(std::fs::read_to_string(&cert).unwrap().contains("BEGIN CERTIFICATE"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn version_and_help() {
    let out = amiproxy().arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("amiproxy "));
    let out = amiproxy().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in ["check-config", "hash-secret", "gen-cert", "--config"] {
        assert!(help.contains(cmd), "{help}");
    }
}
