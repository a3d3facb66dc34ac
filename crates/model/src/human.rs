//! Numbers as people read them, for `-o table`, the REPL and the free text of job sub-tasks:
//! sizes in binary units (`20.7 MiB`), durations in the largest two units that matter
//! (`0.32 s`, `1 min 34 s`, `2 h 5 min`) and times to the second, in UTC
//! (`2026-03-01T02:00:00Z`).
//!
//! JSON never goes through here: it keeps Azure's exact forms (byte counts, .NET TimeSpans
//! and timestamps to the tick), which scripts and the conformance tests read. Tables take
//! their cells from that JSON, so the `*_text` functions accept Azure's forms and hand back
//! anything they cannot read unchanged rather than hide it.

use super::job::{parse_iso_duration, parse_timespan};
use chrono::{DateTime, TimeDelta, Utc};

const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

/// A byte count in binary units: whole bytes below 1 KiB (`512 B`), otherwise one decimal
/// (`1.0 KiB`, `20.7 MiB`) in the largest unit that keeps the number under 1024 once rounded.
pub fn size(bytes: u64) -> String {
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    // Tenths of the unit, in integers, so rounding is exact and u64::MAX cannot overflow.
    let mut unit = 1;
    loop {
        let divisor = 1u128 << (10 * unit);
        let tenths = (u128::from(bytes) * 10 + divisor / 2) / divisor;
        if tenths < 10_240 || unit == UNITS.len() - 1 {
            return format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit]);
        }
        unit += 1;
    }
}

/// A duration as a person says it: `0 s`, `< 0.01 s`, `0.32 s`, `4.5 s`, `45 s`,
/// `1 min 34 s`, `2 h 5 min`, `3 d 4 h`: two significant parts at most, rounded to the
/// last one shown (59.6 s is `1 min`). A negative duration (a clock that stepped back) keeps
/// its sign.
pub fn duration(d: TimeDelta) -> String {
    let sign = if d < TimeDelta::zero() { "-" } else { "" };
    // Nanoseconds in an i128: TimeDelta's full range, either sign, cannot overflow.
    let nanos =
        (i128::from(d.num_seconds()) * 1_000_000_000 + i128::from(d.subsec_nanos())).unsigned_abs();
    if nanos == 0 {
        return "0 s".to_owned();
    }
    let round = |n: u128, unit: u128| (n + unit / 2) / unit;
    let centis = round(nanos, 10_000_000);
    let tenths = round(nanos, 100_000_000);
    let s = round(nanos, 1_000_000_000);
    let text = if centis == 0 {
        "< 0.01 s".to_owned()
    } else if centis < 100 {
        format!("0.{centis:02} s")
    } else if tenths < 100 {
        format!("{}.{} s", tenths / 10, tenths % 10)
    } else if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        pair(s / 60, "min", s % 60, "s")
    } else {
        let min = round(s, 60);
        if min < 24 * 60 {
            pair(min / 60, "h", min % 60, "min")
        } else {
            let h = round(min, 60);
            pair(h / 24, "d", h % 24, "h")
        }
    };
    format!("{sign}{text}")
}

fn pair(big: u128, big_unit: &str, small: u128, small_unit: &str) -> String {
    if small == 0 {
        format!("{big} {big_unit}")
    } else {
        format!("{big} {big_unit} {small} {small_unit}")
    }
}

/// A time to the second, in UTC, as the tables have always shown times: `2026-03-01T02:00:00Z`.
pub fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// [`size`] of a byte count as JSON carries it (`"21740989"` in Azure's `additionalDetails`,
/// or a number); anything else as it is.
pub fn size_text(text: &str) -> String {
    text.trim()
        .parse::<u64>()
        .map(size)
        .unwrap_or_else(|_| text.to_owned())
}

/// [`duration`] of a job's duration as JSON carries it: ISO 8601 (`PT2M11.972S`, what
/// pgvault writes) or a .NET TimeSpan (`00:00:00.3195821`, what older pgvault and Azure's
/// examples write); anything else as it is.
pub fn duration_text(text: &str) -> String {
    parse_iso_duration(text)
        .or_else(|_| parse_timespan(text))
        .map(duration)
        .unwrap_or_else(|_| text.to_owned())
}

/// [`time`] of an RFC 3339 timestamp (`2026-03-01T02:00:00.1234567Z`, any offset);
/// anything else as it is.
pub fn time_text(text: &str) -> String {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| time(t.with_timezone(&Utc)))
        .unwrap_or_else(|_| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_binary_units() {
        let cases: [(u64, &str); 13] = [
            (0, "0 B"),
            (1, "1 B"),
            (512, "512 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (1536, "1.5 KiB"),
            (21_740_989, "20.7 MiB"),
            // Just under a unit rounds into the next one, never to `1024.0 KiB`.
            (1024 * 1024 - 1, "1.0 MiB"),
            (1024 * 1024 * 1024 - 1, "1.0 GiB"),
            (5 * 1024 * 1024 * 1024, "5.0 GiB"),
            (3 << 40, "3.0 TiB"),
            (1 << 60, "1.0 EiB"),
            (u64::MAX, "16.0 EiB"),
        ];
        for (bytes, want) in cases {
            assert_eq!(size(bytes), want, "{bytes}");
        }
    }

    #[test]
    fn durations_read_as_spoken() {
        let ms = TimeDelta::milliseconds;
        let s = TimeDelta::seconds;
        let cases: [(TimeDelta, &str); 22] = [
            (TimeDelta::zero(), "0 s"),
            (TimeDelta::nanoseconds(100), "< 0.01 s"),
            (ms(4), "< 0.01 s"),
            (ms(10), "0.01 s"),
            (TimeDelta::nanoseconds(319_582_100), "0.32 s"),
            (ms(994), "0.99 s"),
            // Rounding carries into the next form, never `1.00 s` or `60 s`.
            (ms(996), "1.0 s"),
            (ms(4_560), "4.6 s"),
            (ms(9_960), "10 s"),
            (ms(45_400), "45 s"),
            (ms(59_600), "1 min"),
            (s(94), "1 min 34 s"),
            (s(3599), "59 min 59 s"),
            (s(3600), "1 h"),
            (s(2 * 3600 + 5 * 60 + 10), "2 h 5 min"),
            (s(2 * 3600 + 5 * 60 + 40), "2 h 6 min"),
            (s(24 * 3600 - 20), "1 d"),
            (s(3 * 86_400 + 4 * 3600 + 7), "3 d 4 h"),
            (ms(-320), "-0.32 s"),
            (s(-94), "-1 min 34 s"),
            (s(400 * 86_400), "400 d"),
            (ms(1), "< 0.01 s"),
        ];
        for (d, want) in cases {
            assert_eq!(duration(d), want, "{d:?}");
        }
        // The extremes of TimeDelta print rather than overflow.
        assert!(
            duration(TimeDelta::MAX).ends_with(" h"),
            "{}",
            duration(TimeDelta::MAX)
        );
        assert!(duration(TimeDelta::MIN).starts_with('-'));
    }

    #[test]
    fn times_are_utc_to_the_second() {
        let t: DateTime<Utc> = "2026-03-01T02:00:00.9999999Z".parse().unwrap();
        assert_eq!(time(t), "2026-03-01T02:00:00Z");
        assert_eq!(
            time_text("2026-03-01T03:00:00.1234567+01:00"),
            "2026-03-01T02:00:00Z"
        );
    }

    #[test]
    fn azure_forms_become_human_and_anything_else_stays() {
        assert_eq!(size_text("21740989"), "20.7 MiB");
        assert_eq!(size_text("0"), "0 B");
        assert_eq!(size_text("-5"), "-5");
        assert_eq!(size_text(""), "");
        assert_eq!(duration_text("00:00:00.3195821"), "0.32 s");
        assert_eq!(duration_text("00:01:34"), "1 min 34 s");
        assert_eq!(duration_text("1.02:05:00"), "1 d 2 h");
        assert_eq!(duration_text("-00:00:03"), "-3.0 s");
        assert_eq!(duration_text("soon"), "soon");
        // ISO 8601, as job JSON carries durations now.
        assert_eq!(duration_text("PT0.3195821S"), "0.32 s");
        assert_eq!(duration_text("PT1M34S"), "1 min 34 s");
        assert_eq!(duration_text("P1DT2H5M"), "1 d 2 h");
        assert_eq!(duration_text("P1Y"), "P1Y");
        assert_eq!(time_text("yesterday"), "yesterday");
        assert_eq!(time_text(""), "");
    }
}
