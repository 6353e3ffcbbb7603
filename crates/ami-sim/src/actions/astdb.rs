//! The AstDB actions (DBPut, DBGet, DBDel, DBDelTree, DBGetTree) on the sim's database.

use super::{error, list_complete, list_start, non_empty, success};
use crate::effects::Effect;
use crate::pbx::lock;
use crate::session::{After, Session};
use ami_proto::{Message, MessageBuilder};

impl Session {
    pub(super) fn astdb(&mut self, action: &str, m: &Message, id: Option<&str>) -> After {
        let family = non_empty(m, "Family");
        let key = non_empty(m, "Key");
        let path = |f: &str, k: Option<&str>| match k {
            Some(k) => format!("{f}/{k}"),
            None => f.to_owned(),
        };
        if action == "dbgettree" {
            self.pbx
                .effect(Effect::DbRead(family.map(|f| path(f, key)).unwrap_or_default()));
            let entries = lock(&self.pbx.astdb).tree(family, key);
            self.push(&list_start(id, "Result will follow").into_bytes());
            for (k, v) in &entries {
                let b = MessageBuilder::event("DBGetTreeResponse")
                    .header("Key", k)
                    .header("Val", v)
                    .header_opt("ActionID", id);
                self.push(&b.into_bytes());
            }
            self.push(&list_complete("DBGetTreeComplete", id, entries.len()).into_bytes());
            return After::Continue;
        }
        let Some(family) = family else {
            return error(self, id, "No family specified.");
        };
        if action == "dbdeltree" {
            self.pbx.effect(Effect::DbDelete(path(family, key)));
            let n = lock(&self.pbx.astdb).del_tree(family, key);
            return if n > 0 {
                success(self, id, "Key tree deleted successfully")
            } else {
                error(self, id, "Database entry not found")
            };
        }
        let Some(key) = key else {
            return error(self, id, "No key specified");
        };
        match action {
            "dbput" => {
                self.pbx.effect(Effect::DbWrite(path(family, Some(key))));
                lock(&self.pbx.astdb).put(family, key, m.get("Val").unwrap_or(""));
                success(self, id, "Updated database successfully")
            }
            "dbget" => {
                self.pbx.effect(Effect::DbRead(path(family, Some(key))));
                let v = lock(&self.pbx.astdb).get(family, key).map(str::to_owned);
                match v {
                    None => error(self, id, "Database entry not found"),
                    Some(v) if self.pbx.dialect().pre_stasis() => {
                        // No DBGetComplete before Asterisk 11.
                        success(self, id, "Result will follow");
                        let b = MessageBuilder::event("DBGetResponse")
                            .header("Family", family)
                            .header("Key", key)
                            .header("Val", &v)
                            .header_opt("ActionID", id);
                        self.push(&b.into_bytes());
                        After::Continue
                    }
                    Some(v) => {
                        self.push(&list_start(id, "Result will follow").into_bytes());
                        let b = MessageBuilder::event("DBGetResponse")
                            .header("Family", family)
                            .header("Key", key)
                            .header("Val", &v)
                            .header_opt("ActionID", id);
                        self.push(&b.into_bytes());
                        self.push(&list_complete("DBGetComplete", id, 1).into_bytes());
                        After::Continue
                    }
                }
            }
            _ => {
                self.pbx.effect(Effect::DbDelete(path(family, Some(key))));
                if lock(&self.pbx.astdb).del(family, key) {
                    success(self, id, "Key deleted successfully")
                } else {
                    error(self, id, "Database entry could not be deleted")
                }
            }
        }
    }
}
