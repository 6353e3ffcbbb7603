//! AstDB: Asterisk's family/key store (DBPut, DBGet, DBDel, DBDelTree, DBGetTree).

use std::collections::BTreeMap;

/// Keys are stored as Asterisk does, `/family/key`, so trees list in key order.
#[derive(Debug, Default)]
pub struct AstDb {
    entries: BTreeMap<String, String>,
}

fn path(family: &str, key: &str) -> String {
    format!("/{family}/{key}")
}

impl AstDb {
    pub fn put(&mut self, family: &str, key: &str, val: &str) {
        self.entries.insert(path(family, key), val.to_owned());
    }

    pub fn get(&self, family: &str, key: &str) -> Option<&str> {
        self.entries.get(&path(family, key)).map(String::as_str)
    }

    pub fn del(&mut self, family: &str, key: &str) -> bool {
        self.entries.remove(&path(family, key)).is_some()
    }

    /// Deletes `/family/key…` (or the whole family); returns how many went.
    pub fn del_tree(&mut self, family: &str, key: Option<&str>) -> usize {
        let prefix = match key {
            Some(k) if !k.is_empty() => path(family, k),
            _ => format!("/{family}"),
        };
        let doomed: Vec<String> = self.tree_keys(&prefix);
        for k in &doomed {
            self.entries.remove(k);
        }
        doomed.len()
    }

    fn tree_keys(&self, prefix: &str) -> Vec<String> {
        self.entries
            .keys()
            .filter(|k| k.as_str() == prefix || k.starts_with(&format!("{prefix}/")) || prefix == "/")
            .cloned()
            .collect()
    }

    /// Entries under a family (and optional key), as (full key, value).
    pub fn tree(&self, family: Option<&str>, key: Option<&str>) -> Vec<(String, String)> {
        let prefix = match (family, key) {
            (Some(f), Some(k)) if !k.is_empty() && !f.is_empty() => path(f, k),
            (Some(f), _) if !f.is_empty() => format!("/{f}"),
            _ => "/".to_owned(),
        };
        self.tree_keys(&prefix)
            .into_iter()
            .filter_map(|k| self.entries.get(&k).map(|v| (k.clone(), v.clone())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_tree_del() {
        let mut db = AstDb::default();
        db.put("amitest", "k1", "hello world");
        db.put("amitest", "sub/k2", "v2");
        db.put("other", "x", "y");
        assert_eq!(db.get("amitest", "k1"), Some("hello world"));
        assert_eq!(db.tree(Some("amitest"), None).len(), 2);
        assert!(db.del("amitest", "k1"));
        assert!(!db.del("amitest", "k1"));
        assert_eq!(db.del_tree("amitest", None), 1);
        assert_eq!(db.tree(None, None).len(), 1);
    }
}
