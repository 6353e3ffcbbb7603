//! The `[[user]]` section checked: secret, classes, and the policy (ACLs, action lists,
//! scope, dialplan lists, rules, event filters), each problem under its key.

use super::check::{chosen, Bad};
use super::raw::{Effect, RawConfig, RawUser};
use super::{CertBinding, CertLogin, Secret, UserConfig};
use ami_policy::classes::Classes;
use ami_policy::filter::EventFilter;
use ami_policy::glob::{Glob, GlobSet};
use ami_policy::{ArgRule, Policy, Scope};

/// `[[user]]`.
pub(super) fn users(raw: &RawConfig, bad: Bad) -> Vec<UserConfig> {
    let mut users: Vec<UserConfig> = Vec::new();
    for (i, u) in raw.users.iter().enumerate() {
        let key = |k: &str| format!("user[{i}].{k}");
        if u.name.is_empty() {
            bad(key("name"), "must not be empty".into());
        }
        if users.iter().any(|o| o.name == u.name) {
            bad(key("name"), format!("`{}` is used twice", u.name));
        }
        let cert = cert_binding(u, &mut |k: String, r| bad(key(&k), r));
        let by_cert_alone = cert.as_ref().is_some_and(|c| c.login == CertLogin::Certificate);
        let Some((secret, allow_md5)) = secret(u, by_cert_alone, &mut |k: String, r| bad(key(&k), r)) else {
            continue;
        };
        let read = Classes::parse(&u.read).unwrap_or_else(|e| {
            bad(key("read"), e);
            Classes::NONE
        });
        let write = Classes::parse(&u.write).unwrap_or_else(|e| {
            bad(key("write"), e);
            Classes::NONE
        });
        let policy = policy(raw, i, u, write, bad);
        // The console shows every upstream, session, refusal and event: an operator's view.
        // A tenant (a scope of channels, queues or servers) must never get it.
        if u.console && (policy.scope.scoped() || !policy.scope.servers.is_empty()) {
            bad(
                key("console"),
                "the console shows every tenant's sessions and events: not for a user with channels, queues or servers"
                    .into(),
            );
        }
        users.push(UserConfig {
            name: u.name.clone(),
            secret,
            read,
            write,
            allow_md5,
            policy,
            actions_per_sec: u.actions_per_sec,
            burst: u.burst.max(u.actions_per_sec),
            max_connections: u.max_connections,
            upstream_account: u.upstream_account.clone(),
            console: u.console,
            cert,
        });
        if let Some(acct) = &u.upstream_account {
            // Every upstream the user may reach must have the account: an action must never
            // fall back to the all-class login.
            for up in &raw.upstreams {
                let reachable = u.servers.is_empty() || u.servers.iter().any(|s| s.eq_ignore_ascii_case(&up.name));
                if reachable && !up.accounts.iter().any(|a| &a.name == acct) {
                    bad(
                        key("upstream_account"),
                        format!("upstream `{}` has no account `{acct}`", up.name),
                    );
                }
            }
        }
    }
    users
}

/// The user's secret, and whether it may log in with an MD5 challenge. None when the
/// section gives no usable secret (reported).
fn secret(u: &RawUser, by_cert_alone: bool, bad: Bad) -> Option<(Secret, bool)> {
    let secret = match (&u.secret, &u.secret_hash) {
        (None, None) if by_cert_alone => Secret::None,
        (Some(s), None) => Secret::Plain(s.clone()),
        (None, Some(h)) => {
            if argon2::PasswordHash::new(h).is_err() {
                bad(
                    "secret_hash".into(),
                    "is not an argon2 PHC string (make one with `amiproxy hash-secret`)".into(),
                );
            }
            Secret::Argon2(h.clone())
        }
        _ => {
            bad("secret".into(), "give exactly one of secret, secret_hash".into());
            return None;
        }
    };
    let allow_md5 = match (u.allow_md5, &secret) {
        (Some(true), Secret::Argon2(_)) => {
            bad(
                "allow_md5".into(),
                "MD5 challenge login needs the plain secret; a user with secret_hash can only log in plainly".into(),
            );
            false
        }
        (Some(v), _) => v,
        (None, s) => matches!(s, Secret::Plain(_)),
    };
    Some((secret, allow_md5))
}

/// The client certificate a user is bound to (`cert_subject`, `cert_san`, `cert_sha256`)
/// and how it logs in with it (`cert_login`).
fn cert_binding(u: &RawUser, bad: Bad) -> Option<CertBinding> {
    let sha256 = u.cert_sha256.as_deref().and_then(|text| {
        let d = super::parse_sha256(text);
        if d.is_none() {
            bad(
                "cert_sha256".into(),
                format!("`{text}` is not a SHA-256 fingerprint (64 hex digits)"),
            );
        }
        d
    });
    let bound = u.cert_subject.is_some() || u.cert_san.is_some() || u.cert_sha256.is_some();
    let login = match &u.cert_login {
        Some(c) => chosen(c, || "cert_login".into(), bad),
        None => Some(CertLogin::CertificateAndSecret),
    };
    if !bound {
        if u.cert_login.is_some() {
            bad(
                "cert_login".into(),
                "needs a certificate to log in with: cert_subject, cert_san or cert_sha256".into(),
            );
        }
        return None;
    }
    Some(CertBinding {
        subject: u.cert_subject.clone(),
        san: u.cert_san.clone(),
        sha256,
        login: login?,
    })
}

/// A CIDR network, or one address (a /32 or /128).
pub(super) fn parse_net(net: &str) -> Option<ipnet::IpNet> {
    net.parse::<ipnet::IpNet>()
        .or_else(|_| net.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .ok()
}

/// The user's policy, every list compiled once.
fn policy(raw: &RawConfig, i: usize, u: &RawUser, write: Classes, bad: Bad) -> Policy {
    let mut policy = Policy::default();
    for (list, field, out) in [
        (&u.permit, "permit", &mut policy.permit),
        (&u.deny, "deny", &mut policy.deny),
    ] {
        for (j, net) in list.iter().enumerate() {
            match parse_net(net) {
                Some(n) => out.push(n),
                None => bad(
                    format!("user[{i}].{field}[{j}]"),
                    format!("`{net}` is not an address or CIDR network"),
                ),
            }
        }
    }
    let globs = |l: &[String]| l.iter().map(|g| Glob::new(g)).collect::<GlobSet>();
    policy.actions = u.actions.as_deref().map(globs);
    policy.deny_actions = globs(&u.deny_actions);
    policy.commands = u.commands.as_deref().map(globs);
    policy.scope = Scope {
        channels: u.channels.iter().map(|g| Glob::channel(g)).collect(),
        queues: globs(&u.queues),
        contexts: globs(&u.contexts),
        db_families: globs(&u.db_families),
        servers: u.servers.clone(),
    };
    check_dialplan_lists(u, write, &policy.scope, &mut |k, r| bad(format!("user[{i}].{k}"), r));
    policy.functions = u.functions.iter().map(|f| f.trim().to_ascii_uppercase()).collect();
    policy.applications = u.applications.clone();
    policy.variables = u.variables.as_deref().map(globs);
    policy.config_files = u.config_files.as_deref().map(globs);
    for (j, srv) in u.servers.iter().enumerate() {
        if !raw.upstreams.iter().any(|up| up.name.eq_ignore_ascii_case(srv)) {
            bad(
                format!("user[{i}].servers[{j}]"),
                format!("`{srv}` is not a configured upstream"),
            );
        }
    }
    for (j, r) in u.rules.iter().enumerate() {
        let Some(effect) = chosen(&r.effect, || format!("user[{i}].rule[{j}].effect"), bad) else {
            continue;
        };
        match regex::Regex::new(&r.pattern) {
            Ok(pattern) => policy.rules.push(ArgRule {
                action: Glob::new(&r.action),
                header: r.header.clone(),
                pattern,
                allow: effect == Effect::Allow,
            }),
            Err(e) => bad(format!("user[{i}].rule[{j}].pattern"), e.to_string()),
        }
    }
    for (j, f) in u.eventfilter.iter().enumerate() {
        match EventFilter::parse_configured(f) {
            Ok(f) => policy.filters.add(f),
            Err(e) => bad(format!("user[{i}].eventfilter[{j}]"), e),
        }
    }
    policy
}

/// The functions and applications a user may be given: what needs `system` only to a
/// user with `system` and no scope, what reaches other tenants or contexts only to a user
/// with neither a scope nor a list of contexts.
/// A config that promises more is refused, so the trust model holds whatever it says.
fn check_dialplan_lists(u: &RawUser, write: Classes, scope: &Scope, bad: Bad) {
    use crate::policy::dialplan::{application, function_reach, Reach};
    let system = write.contains(Classes::named("system").unwrap_or(Classes::NONE));
    let full = system && !scope.scoped();
    let refuse = |reach: Reach| match reach {
        Reach::System if !full => Some("needs system (and no channel or queue scope)"),
        Reach::Shared if scope.scoped() => Some("reaches other tenants' objects; not for a scoped user"),
        Reach::Shared if !full && !scope.contexts.is_empty() => {
            Some("reaches any context; not for a user bound to a list of contexts")
        }
        _ => None,
    };
    for (j, f) in u.functions.iter().enumerate() {
        if let Some(why) = refuse(function_reach(&f.trim().to_ascii_uppercase())) {
            bad(format!("functions[{j}]"), format!("`{f}` {why}"));
        }
    }
    for (j, a) in u.applications.iter().flatten().enumerate() {
        if let Some(why) = refuse(application(a.trim()).0) {
            bad(format!("applications[{j}]"), format!("`{a}` {why}"));
        }
    }
}
