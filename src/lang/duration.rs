//! Durations as flow authors write them: `500ms`, `30s`, `2m`, `1h`, `1h30m`.

use std::time::Duration;

/// Longest duration a flow may name (a day): anything longer is a typo.
pub const MAX: Duration = Duration::from_secs(24 * 3600);

/// Parses a duration made of one or more `<number><unit>` parts, units `ms`, `s`, `m`
/// and `h`. Zero and anything over [`MAX`] are refused.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let hint = "use a number with a unit ms, s, m or h, e.g. 30s or 1h30m";
    let s = text.trim();
    if s.is_empty() {
        return Err(format!("it is empty; {hint}"));
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("add a unit, e.g. {s}s"));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(hint.to_string());
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("number too large; {hint}"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            _ => return Err(hint.to_string()),
        };
        rest = &rest[unit_len..];
        total = total.saturating_add(part);
    }
    if total.is_zero() {
        return Err("it must be greater than zero".to_string());
    }
    if total > MAX {
        return Err("it must be at most 24h".to_string());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sums() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
    }

    #[test]
    fn refuses_bad_text() {
        for bad in [
            "",
            "30",
            "30 s",
            "s",
            "1d",
            "0s",
            "25h",
            "99999999999999999999s",
            "-1s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
