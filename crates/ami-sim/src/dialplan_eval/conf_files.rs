//! `AST_CONFIG` reads configuration files. The sim answers from its own users
//! (manager.conf) and from the captured configuration, so a test can see what a real PBX
//! would leak to whoever may call the function.

use crate::pbx::Pbx;

/// `AST_CONFIG(file,category,variable)`: manager.conf gives the sim's own users (their
/// secret included, as a real PBX would leak it); queues.conf and extensions.conf come
/// from the captured configuration.
pub(super) fn config_value(pbx: &Pbx, file: &str, category: &str, variable: &str) -> Option<String> {
    match file {
        "manager.conf" => {
            if category == "general" {
                return match variable.to_ascii_lowercase().as_str() {
                    "enabled" => Some("yes".to_owned()),
                    "port" => Some("5038".to_owned()),
                    "bindaddr" => Some("0.0.0.0".to_owned()),
                    _ => None,
                };
            }
            let u = pbx.cfg.users.iter().find(|u| u.username == category)?;
            match variable.to_ascii_lowercase().as_str() {
                "secret" => Some(u.secret.clone()),
                "read" => Some(u.read.clone()),
                "write" => Some(u.write.clone()),
                _ => None,
            }
        }
        "queues.conf" => embedded_config(
            include_str!("../../../../fixtures/asterisk-config/queues.conf"),
            category,
            variable,
        ),
        "extensions.conf" => embedded_config(
            include_str!("../../../../fixtures/asterisk-config/extensions.conf"),
            category,
            variable,
        ),
        _ => None,
    }
}

/// A value from one of the embedded configuration files (first `var = value` or
/// `var => value` of the category).
fn embedded_config(text: &str, category: &str, variable: &str) -> Option<String> {
    let mut in_cat = false;
    for raw in text.lines() {
        let l = raw.split(';').next().unwrap_or("").trim();
        if let Some(name) = l.strip_prefix('[').and_then(|x| x.split(']').next()) {
            in_cat = name == category;
            continue;
        }
        if !in_cat {
            continue;
        }
        let (k, v) = match l.split_once("=>").or_else(|| l.split_once('=')) {
            Some((k, v)) => (k.trim(), v.trim()),
            None => continue,
        };
        if k.eq_ignore_ascii_case(variable) {
            return Some(v.to_owned());
        }
    }
    None
}
