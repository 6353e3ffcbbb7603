//! Client certificates (mutual TLS) through the real binary: users bound to a certificate
//! (by subject, SAN or fingerprint; the certificate alone or with the secret), refused
//! certificates (another CA, expired, revoked, none), a certificate bound to another user
//! refused like a wrong secret; with rustls, `openssl s_client` and panoramisk.

mod common;

use common::pki::*;
use common::*;
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

struct Pki {
    server_ca: Ca,
    client_ca: Ca,
    server: Leaf,
    app1: Leaf,
    app2: Leaf,
    stranger: Leaf,
    expired: Leaf,
    revoked: Leaf,
    crl: PathBuf,
}

fn pki() -> Pki {
    let dir = tempdir("mtls");
    let server_ca = Ca::new(&dir, "Server CA");
    let client_ca = Ca::new(&dir, "Client CA");
    let other_ca = Ca::new(&dir, "Other CA");
    let server = server_ca.leaf(&dir, "server", LeafSpec::server("proxy"));
    let app1 = client_ca.leaf(&dir, "app1", LeafSpec::client("app1", &["app1.example.com"], 11));
    let app2 = client_ca.leaf(&dir, "app2", LeafSpec::client("app2", &[], 12));
    let stranger = other_ca.leaf(&dir, "stranger", LeafSpec::client("app1", &["app1.example.com"], 13));
    let mut spec = LeafSpec::client("app1", &["app1.example.com"], 14);
    let now = time::OffsetDateTime::now_utc();
    spec.not_before = now - time::Duration::days(60);
    spec.not_after = now - time::Duration::days(1);
    let expired = client_ca.leaf(&dir, "expired", spec);
    let revoked = client_ca.leaf(&dir, "revoked", LeafSpec::client("app1", &["app1.example.com"], 15));
    let crl = client_ca.crl(&dir, "client", &[15]);
    Pki {
        server_ca,
        client_ca,
        server,
        app1,
        app2,
        stranger,
        expired,
        revoked,
        crl,
    }
}

/// One listener that requires a client certificate, one where it is optional.
fn config(p: &Pki, sim: &ami_sim::SimHandle, limits: &str) -> String {
    let tls = |auth: &str| {
        format!(
            "tls = {{ cert = \"{}\", key = \"{}\", client_ca = \"{}\", client_auth = \"{auth}\", client_crl = [\"{}\"] }}",
            p.server.cert.display(),
            p.server.key.display(),
            p.client_ca.path.display(),
            p.crl.display()
        )
    };
    format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n{}\n\n[[listener]]\naddress = \"127.0.0.1:0\"\n{}\n\n{limits}{}{USERS}
[[user]]
name = \"app1\"
cert_subject = \"app1\"
cert_san = \"app1.example.com\"
cert_login = \"certificate\"
read = \"all\"
write = \"all\"

[[user]]
name = \"app2\"
secret = \"app2-secret\"
cert_sha256 = \"{}\"
cert_login = \"certificate+secret\"
read = \"all\"
write = \"all\"
",
        tls("required"),
        tls("optional"),
        upstreams_toml(&[sim]),
        p.app2.sha256.to_uppercase()
    )
}

/// Logs in over TLS with `cert`; the login's answer, or Err when the connection failed.
async fn login(
    addr: std::net::SocketAddr,
    p: &Pki,
    cert: Option<&Leaf>,
    user: &str,
    secret: Option<&str>,
) -> Result<String, String> {
    let (mut c, _, _) = tls_connect(addr, &client_config(&p.server_ca.path, cert)).await?;
    let secret = secret.map(|s| format!("Secret: {s}\r\n")).unwrap_or_default();
    c.send(&format!(
        "Action: Login\r\nUsername: {user}\r\n{secret}ActionID: l\r\n\r\n"
    ))
    .await;
    let r = c.response("l").await;
    Ok(r.get("Message").unwrap_or("").to_owned())
}

const OK: &str = "Authentication accepted";
const REFUSED: &str = "Authentication failed";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_bound_to_certificates() {
    let sim = sim("pbx1").await;
    let p = pki();
    let proxy = start_proxy_env(&config(&p, &sim, ""), &[("RUST_LOG", "info")], true);
    let (required, optional) = (proxy.addrs[0], proxy.addrs[1]);

    // The certificate alone (no secret, or any).
    assert_eq!(login(required, &p, Some(&p.app1), "app1", None).await.unwrap(), OK);
    assert_eq!(
        login(required, &p, Some(&p.app1), "app1", Some("anything"))
            .await
            .unwrap(),
        OK
    );
    // Certificate and secret: both must match.
    assert_eq!(
        login(required, &p, Some(&p.app2), "app2", Some("app2-secret"))
            .await
            .unwrap(),
        OK
    );
    assert_eq!(
        login(required, &p, Some(&p.app2), "app2", Some("wrong")).await.unwrap(),
        REFUSED
    );
    // A good certificate bound to another user: refused as a wrong secret is.
    assert_eq!(
        login(required, &p, Some(&p.app1), "app2", Some("app2-secret"))
            .await
            .unwrap(),
        REFUSED
    );
    assert_eq!(login(required, &p, Some(&p.app2), "app1", None).await.unwrap(), REFUSED);
    // Users bound to no certificate log in with their secret, whatever certificate.
    assert_eq!(
        login(required, &p, Some(&p.app1), "admin", Some("admin-secret"))
            .await
            .unwrap(),
        OK
    );

    // Certificates the listener refuses: no session at all.
    for (what, cert) in [
        ("another CA's", Some(&p.stranger)),
        ("an expired", Some(&p.expired)),
        ("a revoked", Some(&p.revoked)),
        ("no", None),
    ] {
        let r = login(required, &p, cert, "app1", None).await;
        assert!(r.is_err(), "{what} certificate got a session: {r:?}");
    }
    // Optional: no certificate is let in, for users bound to none.
    assert_eq!(
        login(optional, &p, None, "admin", Some("admin-secret")).await.unwrap(),
        OK
    );
    assert_eq!(login(optional, &p, None, "app1", None).await.unwrap(), REFUSED);
    assert_eq!(
        login(optional, &p, None, "app2", Some("app2-secret")).await.unwrap(),
        REFUSED
    );
    // A certificate shown there is still verified.
    assert!(login(optional, &p, Some(&p.stranger), "admin", Some("admin-secret"))
        .await
        .is_err());
    assert_eq!(login(optional, &p, Some(&p.app1), "app1", None).await.unwrap(), OK);
    // The operator sees why, and a refused login's reason in the audit log.
    let log = proxy.log();
    assert!(log.contains("client certificate refused"), "{log}");
    assert!(log.contains("client certificate does not match the user"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mismatched_certificate_counts_as_a_failed_login() {
    let sim = sim("pbx1").await;
    let p = pki();
    let proxy = start_proxy(&config(&p, &sim, "[limits]\nfailed_logins = 2\nban_secs = 60\n\n"));
    // Two failures are within the limit, the third is past it, as with wrong secrets.
    for _ in 0..3 {
        assert_eq!(
            login(proxy.addr(), &p, Some(&p.app2), "app1", None).await.unwrap(),
            REFUSED
        );
    }
    // The address is banned now: even the right certificate is refused.
    assert_eq!(
        login(proxy.addr(), &p, Some(&p.app1), "app1", None).await.unwrap(),
        REFUSED
    );
}

/// `openssl s_client` with a certificate, the AMI login on its standard input; what the
/// proxy answered.
async fn s_client(addr: std::net::SocketAddr, p: &Pki, cert: &Leaf, user: &str) -> String {
    let mut child = tokio::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            "localhost",
            "-quiet",
        ])
        .arg("-CAfile")
        .arg(&p.server_ca.path)
        .arg("-cert")
        .arg(&cert.cert)
        .arg("-key")
        .arg(&cert.key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl runs");
    let mut stdin = child.stdin.take().unwrap();
    // The proxy closes after a Logoff (or a refused login): s_client then ends.
    let login =
        format!("Action: Login\r\nUsername: {user}\r\nActionID: l\r\n\r\nAction: Logoff\r\nActionID: o\r\n\r\n");
    let _ = stdin.write_all(login.as_bytes()).await;
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("s_client ends once the proxy closes")
        .unwrap();
    drop(stdin);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn has_openssl() -> bool {
    let mut check = std::process::Command::new("openssl");
    check.arg("version");
    client_library("openssl", "apt-get install openssl", check)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_client_with_a_client_certificate() {
    if !has_openssl() {
        return;
    }
    let sim = sim("pbx1").await;
    let p = pki();
    let proxy = start_proxy(&config(&p, &sim, ""));
    let out = s_client(proxy.addr(), &p, &p.app1, "app1").await;
    assert!(out.contains(OK), "{out}");
    let out = s_client(proxy.addr(), &p, &p.app2, "app1").await;
    assert!(out.contains(REFUSED), "{out}");
    let out = s_client(proxy.addr(), &p, &p.stranger, "app1").await;
    assert!(!out.contains("Authentication"), "{out}");
}

fn python_has_panoramisk() -> bool {
    let mut check = std::process::Command::new("python3");
    check.args(["-c", "import panoramisk"]);
    client_library(
        "panoramisk",
        "python3 -m pip install -r tests/python/requirements.txt",
        check,
    )
}

async fn panoramisk(addr: std::net::SocketAddr, p: &Pki, cert: &Leaf, user: &str, secret: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/python/mtls_panoramisk.py");
    let out = tokio::process::Command::new("python3")
        .arg(script)
        .arg("127.0.0.1")
        .arg(addr.port().to_string())
        .arg(&p.server_ca.path)
        .arg(&cert.cert)
        .arg(&cert.key)
        .args([user, secret])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "panoramisk failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panoramisk_with_a_client_certificate() {
    if !python_has_panoramisk() {
        return;
    }
    let sim = sim("pbx1").await;
    let p = pki();
    let proxy = start_proxy(&config(&p, &sim, ""));
    let out = panoramisk(proxy.addr(), &p, &p.app2, "app2", "app2-secret").await;
    assert!(out.contains("login: accepted"), "{out}");
    let out = panoramisk(proxy.addr(), &p, &p.app1, "app1", "").await;
    assert!(out.contains("login: accepted"), "{out}");
    let out = panoramisk(proxy.addr(), &p, &p.app1, "app2", "app2-secret").await;
    assert!(out.contains("login: refused"), "{out}");
}
