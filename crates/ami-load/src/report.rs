//! Output: one aligned text table per scenario (what a person reads), or the same rows as
//! JSON (what a script or a regression check reads).

use serde::Serialize;

/// A row that knows its column names and cell texts.
pub trait Row: Serialize {
    fn columns() -> Vec<&'static str>;
    fn cells(&self) -> Vec<String>;
}

/// Formats an optional float, `-` when absent.
pub fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |x| format!("{x:.decimals$}"))
}

/// Renders rows as an aligned table with a title line.
pub fn table<R: Row>(title: &str, rows: &[R]) -> String {
    let head: Vec<String> = R::columns().into_iter().map(str::to_owned).collect();
    let body: Vec<Vec<String>> = rows.iter().map(Row::cells).collect();
    let mut width: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in &body {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&width)
            .map(|(c, w)| format!("{c:>w$}"))
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut out = format!("{title}\n{}\n", line(&head));
    for r in &body {
        out.push_str(&line(r));
        out.push('\n');
    }
    out
}

/// Prints the scenario: rows and notes (ratios, checks) as a table, or one JSON object.
pub fn print<R: Row>(json: bool, scenario: &str, rows: &[R], notes: &[(String, String)]) {
    if json {
        let notes: serde_json::Map<String, serde_json::Value> = notes
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let v = serde_json::json!({ "scenario": scenario, "rows": rows, "notes": notes });
        println!("{v}");
    } else {
        print!("{}", table(scenario, rows));
        for (k, v) in notes {
            println!("  {k}: {v}");
        }
    }
}

impl Row for crate::fanout::FanoutRow {
    fn columns() -> Vec<&'static str> {
        vec![
            "via",
            "clients",
            "sims",
            "rate",
            "ev/s/client min",
            "mean",
            "max",
            "source ev/s",
            "total ev/s",
            "lost",
            "proxy-dropped",
            "sim-lagged",
            "errors",
            "cpu s",
            "cpu %",
            "peak RSS MiB",
        ]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.via.clone(),
            self.clients.to_string(),
            self.sims.to_string(),
            self.rate.clone(),
            format!("{:.0}", self.eps_min),
            format!("{:.0}", self.eps_mean),
            format!("{:.0}", self.eps_max),
            format!("{:.0}", self.source_eps),
            format!("{:.0}", self.total_eps),
            self.lost.to_string(),
            self.proxy_dropped.to_string(),
            self.sim_lagged.to_string(),
            self.errors.to_string(),
            opt(self.cpu_secs, 2),
            opt(self.cpu_pct, 0),
            opt(self.peak_rss_mib, 1),
        ]
    }
}

impl Row for crate::rtt::RttRow {
    fn columns() -> Vec<&'static str> {
        vec![
            "via", "action", "clients", "requests", "answered", "errors", "p50 µs", "p90 µs", "p99 µs", "max µs",
            "mean µs", "req/s",
        ]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.via.clone(),
            self.action.clone(),
            self.clients.to_string(),
            self.requests.to_string(),
            self.answered.to_string(),
            self.errors.to_string(),
            format!("{:.1}", self.p50_us),
            format!("{:.1}", self.p90_us),
            format!("{:.1}", self.p99_us),
            format!("{:.1}", self.max_us),
            format!("{:.1}", self.mean_us),
            format!("{:.0}", self.req_per_sec),
        ]
    }
}

impl Row for crate::scale::ScaleRow {
    fn columns() -> Vec<&'static str> {
        vec![
            "via",
            "idle clients",
            "RSS before MiB",
            "RSS idle MiB",
            "KiB/client",
            "setup s",
            "storm",
            "all in ms",
            "p50 ms",
            "p99 ms",
            "≤1 s",
            "failed",
        ]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.via.clone(),
            self.idle_clients.to_string(),
            opt(self.rss_before_mib, 1),
            opt(self.rss_idle_mib, 1),
            opt(self.kib_per_client, 1),
            format!("{:.2}", self.setup_secs),
            self.storm_clients.to_string(),
            opt(self.storm_all_ms, 0),
            opt(self.storm_p50_ms, 0),
            opt(self.storm_p99_ms, 0),
            self.storm_within_1s.to_string(),
            self.storm_failed.to_string(),
        ]
    }
}

impl Row for crate::logins::LoginsRow {
    fn columns() -> Vec<&'static str> {
        vec![
            "via",
            "secret",
            "flood",
            "readers",
            "storm",
            "all in ms",
            "p50 ms",
            "p99 ms",
            "max ms",
            "failed",
        ]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.via.clone(),
            self.secret.clone(),
            self.flood.clone(),
            self.readers.to_string(),
            self.storm.to_string(),
            opt(self.all_in_ms, 1),
            opt(self.p50_ms, 1),
            opt(self.p99_ms, 1),
            opt(self.max_ms, 1),
            self.failed.to_string(),
        ]
    }
}

impl Row for crate::cluster::ListCheck {
    fn columns() -> Vec<&'static str> {
        vec![
            "merged list",
            "starts",
            "completes",
            "items",
            "ListItems",
            "servers",
            "ok",
        ]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.action.clone(),
            self.starts.to_string(),
            self.completes.to_string(),
            self.items.to_string(),
            self.list_items.map_or_else(|| "-".into(), |n| n.to_string()),
            self.servers.to_string(),
            self.ok.to_string(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let rows = vec![crate::cluster::ListCheck {
            action: "QueueSummary".into(),
            starts: 1,
            completes: 1,
            items: 8,
            list_items: Some(8),
            servers: 4,
            ok: true,
        }];
        let t = table("cluster", &rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "cluster");
        assert_eq!(lines[1].chars().count(), lines[2].chars().count());
        assert!(lines[2].ends_with("true"));
    }
}
