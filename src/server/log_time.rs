//! The timestamp on every log line: RFC 3339 in UTC with microseconds
//! (`2026-11-30T09:15:50.358999Z`), as `tracing-subscriber`'s default writes it,
//! written into a buffer on the stack at once. The default formats its seven
//! fields through `write!`, which cost about 2,400 instructions a line, a seventh
//! of the record line every call logs (BENCHMARKS.md, session 18).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

use crate::api::calls::civil_from_days;

/// The log lines' timestamp: the time of writing, as [`write_rfc3339`] writes it.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogTime;

impl FormatTime for LogTime {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        write_rfc3339(w, SystemTime::now())
    }
}

/// Writes `at` as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC). A time before 1970 or
/// after 9999 (a clock set wrong) is written through the general formatter.
pub fn write_rfc3339(w: &mut impl fmt::Write, at: SystemTime) -> fmt::Result {
    let Ok(since) = at.duration_since(UNIX_EPOCH) else {
        return write!(w, "{at:?}");
    };
    let secs = i64::try_from(since.as_secs()).unwrap_or(i64::MAX);
    let (days, secs) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return write!(w, "{at:?}");
    }
    let mut buf = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut n: i64| {
        for i in (at..at + width).rev() {
            // `n % 10` is a digit: the casts cannot truncate.
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, y);
    put(5, 2, m);
    put(8, 2, d);
    put(11, 2, secs / 3600);
    put(14, 2, secs % 3600 / 60);
    put(17, 2, secs % 60);
    put(20, 6, i64::from(since.subsec_micros()));
    // Digits and ASCII punctuation only: always UTF-8.
    w.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::api::calls::datetime;

    fn written(at: SystemTime) -> String {
        let mut s = String::new();
        write_rfc3339(&mut s, at).unwrap();
        s
    }

    /// Every field agrees with the API's own date-time writer, from 1970 to 9999 in
    /// steps of about 37 days and an hour (so leap days, century years and month
    /// ends come up), with the microseconds at both ends of their range.
    #[test]
    fn timestamps_agree_with_the_calendar() {
        let mut t: i64 = 0;
        while t < 253_402_300_799 {
            for micros in [0u32, 7, 999_999, 123_450] {
                let at = UNIX_EPOCH + Duration::new(t as u64, micros * 1000 + 999);
                let want = format!("{}.{micros:06}Z", datetime(t).replacen(' ', "T", 1));
                assert_eq!(written(at), want, "{t}");
            }
            t += 86_399 * 37 + 3_607;
        }
        assert_eq!(
            written(UNIX_EPOCH + Duration::from_micros(951_782_400_000_001)),
            "2000-02-29T00:00:00.000001Z"
        );
    }

    /// The shape `tracing-subscriber`'s default writes: same length, same
    /// separators, the same time to the minute (the two clocks are read a few
    /// microseconds apart; a minute turning between them would fail this once).
    #[test]
    fn timestamps_have_the_default_shape() {
        let mut ours = String::new();
        LogTime.format_time(&mut Writer::new(&mut ours)).unwrap();
        let mut theirs = String::new();
        tracing_subscriber::fmt::time::SystemTime
            .format_time(&mut Writer::new(&mut theirs))
            .unwrap();
        assert_eq!(ours.len(), theirs.len(), "{ours} {theirs}");
        let shape = |s: &str| s.bytes().map(|b| b.is_ascii_digit()).collect::<Vec<_>>();
        assert_eq!(shape(&ours), shape(&theirs), "{ours} {theirs}");
        assert_eq!(ours[..16], theirs[..16], "{ours} {theirs}");
    }

    #[test]
    fn a_clock_before_1970_is_still_written() {
        assert!(!written(UNIX_EPOCH - Duration::from_secs(5)).is_empty());
    }
}
