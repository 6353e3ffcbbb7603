//! What an Originate runs: the application, and its data read as that application reads it.

use super::{Access, Judge};
use crate::denial::{Denial, DenialKind, Verdict};
use crate::dialplan::{self, AppArgs, Assign};

impl Judge<'_> {
    /// The application an Originate runs, and its data read as that application reads it.
    pub(super) fn application(&self, app: &str) -> Verdict {
        if self.full {
            return Ok(());
        }
        if let Some(why) = self.refused_reach(dialplan::application(app.trim()).0) {
            return Err(Denial::new(
                DenialKind::Application,
                format!("application `{app}` {why}"),
            ));
        }
        let listed = match &self.policy.applications {
            Some(list) => list.iter().any(|a| a.eq_ignore_ascii_case(app.trim())),
            None => dialplan::DEFAULT_APPLICATIONS
                .iter()
                .any(|a| a.eq_ignore_ascii_case(app.trim())),
        };
        if !listed {
            return Err(Denial::new(
                DenialKind::Application,
                format!("application `{app}` is not in the user's applications"),
            ));
        }
        Ok(())
    }

    pub(super) fn app_data(&self, what: &str, data: &str) -> Verdict {
        self.no_expression(what, data)?;
        if self.full {
            return Ok(());
        }
        let app = self.msg.get("Application").unwrap_or("").trim();
        let spec = dialplan::application(app).1;
        match spec.assign {
            Assign::One => {
                if let Some((name, value)) = data.split_once('=') {
                    self.variable(what, name, Access::Write)?;
                    self.no_expression(what, value)?;
                }
                return Ok(());
            }
            Assign::Many => return self.assignments(what, data),
            Assign::No => {}
        }
        if spec == AppArgs::PLAIN {
            return Ok(());
        }
        let args = dialplan::separate_args(data, ',')
            .ok_or_else(|| Denial::new(DenialKind::Arguments, format!("{what} cannot be read")))?;
        let arg = |i: Option<usize>| i.and_then(|i| args.get(i)).map(|a| a.trim()).filter(|a| !a.is_empty());
        if let Some(v) = arg(spec.variable) {
            self.variable(what, v, Access::Write)?;
        }
        // Sound names, not paths: a file elsewhere may be another tenant's voicemail or
        // recording.
        if let Some(files) = arg(spec.files) {
            if files.split('&').any(not_a_sound_name) {
                return Err(Denial::new(
                    DenialKind::File,
                    format!("{what}: a sound file path leaves Asterisk's sound folders"),
                ));
            }
        }
        if let Some(channel) = arg(spec.channel) {
            self.channel(what, channel)?;
        }
        // Between quotes a say-format names a sound file: `'/var/spool/...'` is a path.
        if let Some(format) = arg(spec.quoted_files) {
            if format.split('\'').skip(1).step_by(2).any(not_a_sound_name) {
                return Err(Denial::new(
                    DenialKind::File,
                    format!("{what}: a sound file path leaves Asterisk's sound folders"),
                ));
            }
        }
        Ok(())
    }
}

/// A sound file given as a path (absolute, or climbing out with `..`) rather than a name
/// under Asterisk's sound folders. A URL is one too: Asterisk fetches `http://…` names
/// through its media cache, a request from the PBX's network to wherever the user says.
fn not_a_sound_name(f: &str) -> bool {
    let f = f.trim();
    f.starts_with('/') || f.split('/').any(|p| p == "..") || f.contains("://")
}
