//! Wall-clock formatting in the shapes Asterisk prints (UTC; no timezone database needed): what
//! the simulator and the proxy's own events (SuccessfulAuth, Ping) need to look like Asterisk.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds and microseconds since the epoch.
pub fn unix(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// (year, month, day, hour, minute, second, millis) in UTC.
fn civil(t: SystemTime) -> (i64, u32, u32, u32, u32, u32, u32) {
    let d = unix(t);
    let secs = d.as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = if month <= 2 { y + 1 } else { y };
    (
        year,
        month,
        day,
        (rem / 3600) as u32,
        ((rem % 3600) / 60) as u32,
        (rem % 60) as u32,
        d.subsec_millis(),
    )
}

/// `2026-11-26 11:10:48` (Cdr times).
pub fn datetime(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, _) = civil(t);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
}

/// `2026-11-26`.
pub fn date(t: SystemTime) -> String {
    let (y, mo, d, ..) = civil(t);
    format!("{y:04}-{mo:02}-{d:02}")
}

/// `11:10:46`.
pub fn time(t: SystemTime) -> String {
    let (_, _, _, h, mi, s, _) = civil(t);
    format!("{h:02}:{mi:02}:{s:02}")
}

/// `2026-11-26T11:10:46.909+0000` (security events' EventTV).
pub fn event_tv(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, ms) = civil(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}+0000")
}

/// `1795691447.911145` (Ping's Timestamp).
pub fn timestamp(t: SystemTime) -> String {
    let d = unix(t);
    format!("{}.{:06}", d.as_secs(), d.subsec_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_691_446_909);
        assert_eq!(event_tv(t), "2026-11-26T11:10:46.909+0000");
        assert_eq!(datetime(t), "2026-11-26 11:10:46");
    }
}
