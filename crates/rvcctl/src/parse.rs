//! Argument parsers (clap `value_parser`s): their error text is shown after
//! `error: invalid value … for '--flag'` and clap exits with code 2.
use chrono::{DateTime, Utc};
use rvc_domain::{OutboxKind, OutboxState};

/// `--since`: an RFC 3339 timestamp (`2024-05-01T10:00:00Z`) or a duration back from now
/// (`90s`, `30m`, `2h`, `7d`, `1w`, or combined like `1h30m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Since(pub DateTime<Utc>);

pub fn since(s: &str) -> Result<Since, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(Since(t.with_timezone(&Utc)));
    }
    let secs = duration_secs(s).ok_or_else(|| {
        format!(
            "{s:?} is neither an RFC 3339 timestamp (2024-05-01T10:00:00Z) nor a duration \
             (90s, 30m, 2h, 7d, 1h30m)"
        )
    })?;
    let back = chrono::Duration::try_seconds(secs)
        .ok_or_else(|| format!("{s:?} reaches too far back; use a smaller duration"))?;
    Utc::now()
        .checked_sub_signed(back)
        .map(Since)
        .ok_or_else(|| format!("{s:?} reaches too far back; use a smaller duration"))
}

/// `2h30m` → 9000. Units: s, m, h, d, w. `None` when malformed or zero.
pub fn duration_secs(s: &str) -> Option<i64> {
    let mut total: i64 = 0;
    let mut num = String::new();
    let mut saw_unit = false;
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit: i64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return None,
        };
        let n: i64 = num.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        num.clear();
        saw_unit = true;
    }
    if !num.is_empty() || !saw_unit || total == 0 {
        return None;
    }
    Some(total)
}

pub fn kind(s: &str) -> Result<OutboxKind, String> {
    s.parse::<OutboxKind>()
        .map_err(|_| format!("unknown kind {s:?}; use one of: upload_images, vectorize, publish"))
}

pub fn state(s: &str) -> Result<OutboxState, String> {
    s.parse::<OutboxState>()
        .map_err(|_| format!("unknown state {s:?}; use one of: pending, leased, done, dead"))
}

pub fn event_id(s: &str) -> Result<uuid::Uuid, String> {
    uuid::Uuid::parse_str(s).map_err(|_| {
        format!("{s:?} is not an event id (a UUID); find ids with `rvcctl outbox list`")
    })
}

pub fn product_id(s: &str) -> Result<uuid::Uuid, String> {
    uuid::Uuid::parse_str(s)
        .map_err(|_| format!("{s:?} is not a product id (a UUID); to select by SKU use --sku {s}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration_secs("90s"), Some(90));
        assert_eq!(duration_secs("30m"), Some(1800));
        assert_eq!(duration_secs("2h"), Some(7200));
        assert_eq!(duration_secs("7d"), Some(604_800));
        assert_eq!(duration_secs("1h30m"), Some(5400));
        for bad in ["", "2", "h", "2x", "0h", "-2h", "2 h"] {
            assert_eq!(duration_secs(bad), None, "{bad}");
        }
    }

    #[test]
    fn since_accepts_timestamps_and_durations() {
        let t = since("2024-05-01T10:00:00Z").unwrap();
        assert_eq!(t.0.to_rfc3339(), "2024-05-01T10:00:00+00:00");
        let t = since("2024-05-01T12:00:00+02:00").unwrap();
        assert_eq!(t.0.to_rfc3339(), "2024-05-01T10:00:00+00:00");
        let ago = since("2h").unwrap();
        let diff = Utc::now() - ago.0;
        assert!(diff.num_seconds() >= 7199 && diff.num_seconds() <= 7260);
        let err = since("yesterday").unwrap_err();
        assert!(err.contains("RFC 3339"), "{err}");
    }

    #[test]
    fn kinds_and_states() {
        assert_eq!(kind("vectorize").unwrap(), OutboxKind::Vectorize);
        assert!(kind("nope").unwrap_err().contains("upload_images"));
        assert_eq!(state("dead").unwrap(), OutboxState::Dead);
        assert!(state("nope")
            .unwrap_err()
            .contains("pending, leased, done, dead"));
    }
}
