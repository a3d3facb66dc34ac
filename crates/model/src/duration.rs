//! ISO 8601 durations as Azure Backup writes them: `P3M`, `P10Y`, `P1W`, `P7D`, `PT4H`,
//! `P1Y6M`, `P2DT3H`. Retention (`deleteAfter`), archive moves (`CustomCopyOption`) and the
//! period of a repeating schedule are all such strings, so they become an [`IsoDuration`] at
//! the boundary and nothing downstream handles raw text.
//!
//! A duration is kept as its seven components, not as a number of seconds, because `P1M` has
//! no fixed length: it means "the same day next month", which is 28 to 31 days depending on
//! where it starts. [`IsoDuration::add_to`] applies the components with calendar semantics,
//! and equality is syntactic (`P1W` and `P7D` both add seven days but are different values,
//! and print differently), which keeps a policy's JSON stable through a load and a save.
//!
//! Only whole numbers are accepted. Azure never writes fractions, and refusing them keeps
//! [`IsoDuration::add_to`] exact; the error says so rather than rounding silently.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Days, Months, TimeDelta, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A number of days as az and Azure's REST API write a rehydration's retention: `15`, `15D`
/// or `P15D`.
pub fn parse_days(text: &str) -> Result<u32, String> {
    let t = text.trim().to_ascii_uppercase();
    let digits = t.trim_start_matches('P').trim_end_matches('D');
    digits
        .parse()
        .map_err(|_| format!("`{text}` is not a number of days (write 15, 15D or P15D)"))
}

/// An ISO 8601 duration made of whole-number components: years, months, weeks, days, hours,
/// minutes and seconds.
///
/// Parse one with [`str::parse`] (or serde, where it is a string); [`fmt::Display`] writes the
/// canonical form: components in ISO order, zero components left out, `T` only before a time
/// part, and `P0D` for a duration that is zero throughout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct IsoDuration {
    years: u32,
    months: u32,
    weeks: u32,
    days: u32,
    hours: u32,
    minutes: u32,
    seconds: u32,
}

/// The units a retention can be counted in, as the az CLI's `--retention-duration-type` and
/// PowerShell's `-SourceRetentionDurationType` name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DurationUnit {
    Days,
    Weeks,
    Months,
    Years,
}

impl DurationUnit {
    /// The name the Azure tools use for this unit.
    pub const fn as_str(self) -> &'static str {
        match self {
            DurationUnit::Days => "Days",
            DurationUnit::Weeks => "Weeks",
            DurationUnit::Months => "Months",
            DurationUnit::Years => "Years",
        }
    }
}

impl fmt::Display for DurationUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DurationUnit {
    type Err = UnknownDurationUnit;

    /// Accepts `Days`, `Weeks`, `Months`, `Years` in any case, as the Azure tools do.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const ALL: [DurationUnit; 4] = [
            DurationUnit::Days,
            DurationUnit::Weeks,
            DurationUnit::Months,
            DurationUnit::Years,
        ];
        ALL.into_iter()
            .find(|unit| unit.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownDurationUnit(s.to_owned()))
    }
}

/// A retention unit that is not one of `Days`, `Weeks`, `Months`, `Years`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown duration unit {0:?}: use Days, Weeks, Months or Years")]
pub struct UnknownDurationUnit(pub String);

/// Why a string is not an ISO 8601 duration pgvault accepts. The message names the input and
/// shows the accepted forms, so a user can fix a policy file from the message alone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid ISO 8601 duration {input:?}: {kind}; expected a form like P3M, P10Y, P1W, P7D, PT4H or P2DT3H"
)]
pub struct DurationError {
    input: String,
    kind: DurationErrorKind,
}

impl DurationError {
    fn new(input: &str, kind: DurationErrorKind) -> Self {
        DurationError {
            input: input.to_owned(),
            kind,
        }
    }

    /// The text that failed to parse, as given.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// What was wrong with it.
    pub fn kind(&self) -> &DurationErrorKind {
        &self.kind
    }
}

/// The specific defect in a rejected duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationErrorKind {
    #[error("it is empty")]
    Empty,
    #[error("negative durations are not supported")]
    Negative,
    #[error("it must start with `P`")]
    MissingP,
    #[error("it has no components after `P`")]
    NoComponents,
    #[error("`T` must be followed by hours, minutes or seconds")]
    EmptyTimePart,
    #[error("`T` appears twice")]
    RepeatedT,
    #[error("`{0}` has no number before it")]
    MissingNumber(char),
    #[error("the number {0} has no unit designator after it")]
    TrailingNumber(String),
    #[error("`{0}` is not a duration designator (use Y, M, W, D before `T` and H, M, S after it)")]
    UnknownDesignator(char),
    #[error("`{0}` belongs after `T` (for example PT4H)")]
    TimeUnitInDatePart(char),
    #[error("`{0}` belongs before `T` (for example P2DT3H)")]
    DateUnitInTimePart(char),
    #[error("`{0}` is repeated or out of order (components go Y, M, W, D, then T, H, M, S)")]
    OutOfOrder(char),
    #[error("fractional values are not supported, use whole numbers")]
    Fraction,
    #[error("the number {0} is too large")]
    NumberTooLarge(String),
}

impl IsoDuration {
    /// The zero duration, `P0D`.
    pub const ZERO: IsoDuration = IsoDuration {
        years: 0,
        months: 0,
        weeks: 0,
        days: 0,
        hours: 0,
        minutes: 0,
        seconds: 0,
    };

    /// A duration from all seven components, in ISO order.
    pub const fn from_parts(
        years: u32,
        months: u32,
        weeks: u32,
        days: u32,
        hours: u32,
        minutes: u32,
        seconds: u32,
    ) -> Self {
        IsoDuration {
            years,
            months,
            weeks,
            days,
            hours,
            minutes,
            seconds,
        }
    }

    /// `PnY`.
    pub const fn years(n: u32) -> Self {
        Self::from_parts(n, 0, 0, 0, 0, 0, 0)
    }

    /// `PnM`.
    pub const fn months(n: u32) -> Self {
        Self::from_parts(0, n, 0, 0, 0, 0, 0)
    }

    /// `PnW`.
    pub const fn weeks(n: u32) -> Self {
        Self::from_parts(0, 0, n, 0, 0, 0, 0)
    }

    /// `PnD`.
    pub const fn days(n: u32) -> Self {
        Self::from_parts(0, 0, 0, n, 0, 0, 0)
    }

    /// `PTnH`.
    pub const fn hours(n: u32) -> Self {
        Self::from_parts(0, 0, 0, 0, n, 0, 0)
    }

    /// `PTnM`.
    pub const fn minutes(n: u32) -> Self {
        Self::from_parts(0, 0, 0, 0, 0, n, 0)
    }

    /// `PTnS`.
    pub const fn seconds(n: u32) -> Self {
        Self::from_parts(0, 0, 0, 0, 0, 0, n)
    }

    /// A retention written as a count and a unit, the way the az CLI's
    /// `--retention-duration-count 6 --retention-duration-type Months` writes `P6M`.
    pub const fn from_count(count: u32, unit: DurationUnit) -> Self {
        match unit {
            DurationUnit::Days => Self::days(count),
            DurationUnit::Weeks => Self::weeks(count),
            DurationUnit::Months => Self::months(count),
            DurationUnit::Years => Self::years(count),
        }
    }

    /// The years component.
    pub const fn year_part(&self) -> u32 {
        self.years
    }

    /// The months component (the `M` before `T`).
    pub const fn month_part(&self) -> u32 {
        self.months
    }

    /// The weeks component.
    pub const fn week_part(&self) -> u32 {
        self.weeks
    }

    /// The days component.
    pub const fn day_part(&self) -> u32 {
        self.days
    }

    /// The hours component.
    pub const fn hour_part(&self) -> u32 {
        self.hours
    }

    /// The minutes component (the `M` after `T`).
    pub const fn minute_part(&self) -> u32 {
        self.minutes
    }

    /// The seconds component.
    pub const fn second_part(&self) -> u32 {
        self.seconds
    }

    /// True when every component is zero, so adding it changes nothing. A retention of zero
    /// would delete a backup as it is taken, which is why policy validation refuses it.
    pub const fn is_zero(&self) -> bool {
        self.years == 0
            && self.months == 0
            && self.weeks == 0
            && self.days == 0
            && self.hours == 0
            && self.minutes == 0
            && self.seconds == 0
    }

    /// `start` plus this duration, or `None` past the end of chrono's calendar.
    ///
    /// The calendar part goes first, largest unit first, as XML Schema and .NET add
    /// durations: years and months move the date by calendar months and clamp the day to the
    /// end of a shorter month (Jan 31 + `P1M` = Feb 28, or Feb 29 in a leap year), so a
    /// monthly retention never drifts into the following month. Weeks and days then add
    /// calendar days, and the time part adds exact hours, minutes and seconds. In UTC a
    /// calendar day is always 24 hours; time zones are the schedule's business, not this one.
    pub fn checked_add_to(&self, start: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let months = u64::from(self.years) * 12 + u64::from(self.months);
        let days = u64::from(self.weeks) * 7 + u64::from(self.days);
        let seconds =
            i64::from(self.hours) * 3600 + i64::from(self.minutes) * 60 + i64::from(self.seconds);
        start
            .checked_add_months(Months::new(u32::try_from(months).ok()?))?
            .checked_add_days(Days::new(days))?
            .checked_add_signed(TimeDelta::try_seconds(seconds)?)
    }

    /// `start` plus this duration with calendar semantics (see [`IsoDuration::checked_add_to`]).
    ///
    /// Saturates at the last instant chrono can represent instead of panicking: only a
    /// duration of hundreds of thousands of years gets there, and for a retention that means
    /// "never" either way.
    pub fn add_to(&self, start: DateTime<Utc>) -> DateTime<Utc> {
        self.checked_add_to(start)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// Where a designator letter puts its number, in ISO order. `M` means months before `T` and
/// minutes after it, which is why the slot depends on which part we are in.
fn slot(designator: char, in_time: bool) -> Result<usize, DurationErrorKind> {
    match (designator, in_time) {
        ('Y', false) => Ok(0),
        ('M', false) => Ok(1),
        ('W', false) => Ok(2),
        ('D', false) => Ok(3),
        ('H', true) => Ok(4),
        ('M', true) => Ok(5),
        ('S', true) => Ok(6),
        ('H' | 'S', false) => Err(DurationErrorKind::TimeUnitInDatePart(designator)),
        ('Y' | 'W' | 'D', true) => Err(DurationErrorKind::DateUnitInTimePart(designator)),
        _ => Err(DurationErrorKind::UnknownDesignator(designator)),
    }
}

impl FromStr for IsoDuration {
    type Err = DurationError;

    /// Parses `P[nY][nM][nW][nD][T[nH][nM][nS]]`. Surrounding whitespace is ignored and
    /// designators may be lower case; [`fmt::Display`] writes the canonical form back.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |kind| DurationError::new(input, kind);
        let text = input.trim();
        if text.is_empty() {
            return Err(fail(DurationErrorKind::Empty));
        }
        if text.starts_with('-') {
            return Err(fail(DurationErrorKind::Negative));
        }
        let mut chars = text.chars().map(|c| c.to_ascii_uppercase());
        if chars.next() != Some('P') {
            return Err(fail(DurationErrorKind::MissingP));
        }

        let mut parts = [0u32; 7];
        // The slot of the last component read: each new one must come strictly later, which
        // rejects both repeats (`P1M2M`) and wrong order (`P1D1Y`) with one comparison.
        let mut last_slot: Option<usize> = None;
        let mut in_time = false;
        let mut time_components = 0;
        let mut number = String::new();
        for c in chars {
            match c {
                '0'..='9' => number.push(c),
                '.' | ',' => return Err(fail(DurationErrorKind::Fraction)),
                'T' => {
                    if !number.is_empty() {
                        return Err(fail(DurationErrorKind::TrailingNumber(number)));
                    }
                    if in_time {
                        return Err(fail(DurationErrorKind::RepeatedT));
                    }
                    in_time = true;
                }
                designator => {
                    let index = slot(designator, in_time).map_err(fail)?;
                    if number.is_empty() {
                        return Err(fail(DurationErrorKind::MissingNumber(designator)));
                    }
                    if last_slot.is_some_and(|last| index <= last) {
                        return Err(fail(DurationErrorKind::OutOfOrder(designator)));
                    }
                    parts[index] = number
                        .parse()
                        .map_err(|_| fail(DurationErrorKind::NumberTooLarge(number.clone())))?;
                    number.clear();
                    last_slot = Some(index);
                    if in_time {
                        time_components += 1;
                    }
                }
            }
        }
        if !number.is_empty() {
            return Err(fail(DurationErrorKind::TrailingNumber(number)));
        }
        if in_time && time_components == 0 {
            return Err(fail(DurationErrorKind::EmptyTimePart));
        }
        if last_slot.is_none() {
            return Err(fail(DurationErrorKind::NoComponents));
        }
        let [years, months, weeks, days, hours, minutes, seconds] = parts;
        Ok(IsoDuration::from_parts(
            years, months, weeks, days, hours, minutes, seconds,
        ))
    }
}

impl fmt::Display for IsoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("P0D");
        }
        f.write_str("P")?;
        for (value, designator) in [
            (self.years, 'Y'),
            (self.months, 'M'),
            (self.weeks, 'W'),
            (self.days, 'D'),
        ] {
            if value != 0 {
                write!(f, "{value}{designator}")?;
            }
        }
        if self.hours != 0 || self.minutes != 0 || self.seconds != 0 {
            f.write_str("T")?;
            for (value, designator) in [(self.hours, 'H'), (self.minutes, 'M'), (self.seconds, 'S')]
            {
                if value != 0 {
                    write!(f, "{value}{designator}")?;
                }
            }
        }
        Ok(())
    }
}

impl Serialize for IsoDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IsoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Through `String` rather than `&str` so that values from a `serde_json::Value` (which
        // cannot lend borrowed strings in every case) deserialize as well as text does.
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).single().unwrap()
    }

    #[test]
    fn parses_to_components_and_prints_canonically() {
        // (input, expected components Y M W D H M S, canonical form)
        let cases: &[(&str, [u32; 7], &str)] = &[
            ("P3M", [0, 3, 0, 0, 0, 0, 0], "P3M"),
            ("P10Y", [10, 0, 0, 0, 0, 0, 0], "P10Y"),
            ("P1W", [0, 0, 1, 0, 0, 0, 0], "P1W"),
            ("P12W", [0, 0, 12, 0, 0, 0, 0], "P12W"),
            ("P7D", [0, 0, 0, 7, 0, 0, 0], "P7D"),
            ("PT4H", [0, 0, 0, 0, 4, 0, 0], "PT4H"),
            ("P1Y6M", [1, 6, 0, 0, 0, 0, 0], "P1Y6M"),
            ("P2DT3H", [0, 0, 0, 2, 3, 0, 0], "P2DT3H"),
            ("PT30M", [0, 0, 0, 0, 0, 30, 0], "PT30M"),
            ("P1MT1M", [0, 1, 0, 0, 0, 1, 0], "P1MT1M"),
            (
                "P1Y2M3W4DT5H6M7S",
                [1, 2, 3, 4, 5, 6, 7],
                "P1Y2M3W4DT5H6M7S",
            ),
            // Zero components are dropped, a zero duration has one spelling.
            ("P1Y0M", [1, 0, 0, 0, 0, 0, 0], "P1Y"),
            ("P0D", [0; 7], "P0D"),
            ("PT0S", [0; 7], "P0D"),
            // Leading zeros, lower case and surrounding blanks are tolerated on input only.
            ("P007D", [0, 0, 0, 7, 0, 0, 0], "P7D"),
            ("p2dt3h", [0, 0, 0, 2, 3, 0, 0], "P2DT3H"),
            (" P3M ", [0, 3, 0, 0, 0, 0, 0], "P3M"),
            ("P4294967295D", [0, 0, 0, u32::MAX, 0, 0, 0], "P4294967295D"),
        ];
        for (input, [y, mo, w, d, h, mi, s], canonical) in cases {
            let parsed: IsoDuration = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(
                parsed,
                IsoDuration::from_parts(*y, *mo, *w, *d, *h, *mi, *s),
                "{input}"
            );
            assert_eq!(parsed.to_string(), *canonical, "{input}");
            // The canonical form parses back to the same value.
            assert_eq!(canonical.parse::<IsoDuration>().unwrap(), parsed, "{input}");
        }
    }

    #[test]
    fn rejects_malformed_input_naming_it() {
        let cases: &[(&str, DurationErrorKind)] = &[
            ("", DurationErrorKind::Empty),
            ("   ", DurationErrorKind::Empty),
            ("-P1D", DurationErrorKind::Negative),
            ("3M", DurationErrorKind::MissingP),
            ("1 month", DurationErrorKind::MissingP),
            ("P", DurationErrorKind::NoComponents),
            ("PT", DurationErrorKind::EmptyTimePart),
            ("P1DT", DurationErrorKind::EmptyTimePart),
            ("PT1HT", DurationErrorKind::RepeatedT),
            ("PM", DurationErrorKind::MissingNumber('M')),
            ("P3", DurationErrorKind::TrailingNumber("3".into())),
            ("P1T2H", DurationErrorKind::TrailingNumber("1".into())),
            ("P3X", DurationErrorKind::UnknownDesignator('X')),
            ("P4H", DurationErrorKind::TimeUnitInDatePart('H')),
            ("P5S", DurationErrorKind::TimeUnitInDatePart('S')),
            ("PT1D", DurationErrorKind::DateUnitInTimePart('D')),
            ("PT1W", DurationErrorKind::DateUnitInTimePart('W')),
            ("P1M2M", DurationErrorKind::OutOfOrder('M')),
            ("P1D1Y", DurationErrorKind::OutOfOrder('Y')),
            ("PT1S1H", DurationErrorKind::OutOfOrder('H')),
            ("P1.5Y", DurationErrorKind::Fraction),
            ("PT0,5H", DurationErrorKind::Fraction),
            (
                "P4294967296D",
                DurationErrorKind::NumberTooLarge("4294967296".into()),
            ),
        ];
        for (input, kind) in cases {
            let err = input.parse::<IsoDuration>().unwrap_err();
            assert_eq!(err.kind(), kind, "{input:?}");
            assert_eq!(err.input(), *input);
            let message = err.to_string();
            assert!(
                message.contains(&format!("{input:?}")),
                "message names the input: {message}"
            );
        }
    }

    #[test]
    fn adds_with_calendar_semantics() {
        // (start, duration, expected)
        let cases = [
            // Months clamp to the end of a shorter month, in leap and common years.
            (utc(2024, 1, 31, 6, 30), "P1M", utc(2024, 2, 29, 6, 30)),
            (utc(2023, 1, 31, 6, 30), "P1M", utc(2023, 2, 28, 6, 30)),
            (utc(2023, 3, 31, 0, 0), "P1M", utc(2023, 4, 30, 0, 0)),
            (utc(2023, 8, 31, 0, 0), "P3M", utc(2023, 11, 30, 0, 0)),
            (utc(2023, 11, 15, 0, 0), "P3M", utc(2024, 2, 15, 0, 0)),
            // Years are twelve months: Feb 29 clamps to Feb 28.
            (utc(2024, 2, 29, 12, 0), "P1Y", utc(2025, 2, 28, 12, 0)),
            (utc(2024, 2, 29, 12, 0), "P4Y", utc(2028, 2, 29, 12, 0)),
            (utc(2021, 8, 15, 6, 30), "P10Y", utc(2031, 8, 15, 6, 30)),
            (utc(2023, 8, 31, 0, 0), "P1Y6M", utc(2025, 2, 28, 0, 0)),
            // Weeks are seven calendar days.
            (utc(2021, 8, 15, 6, 30), "P1W", utc(2021, 8, 22, 6, 30)),
            (utc(2021, 12, 28, 0, 0), "P12W", utc(2022, 3, 22, 0, 0)),
            (utc(2024, 2, 27, 0, 0), "P7D", utc(2024, 3, 5, 0, 0)),
            // Time parts are exact and may cross days.
            (utc(2024, 1, 1, 22, 0), "PT4H", utc(2024, 1, 2, 2, 0)),
            (utc(2024, 1, 1, 22, 0), "P2DT3H", utc(2024, 1, 4, 1, 0)),
            (utc(2024, 1, 1, 23, 50), "PT30M", utc(2024, 1, 2, 0, 20)),
            // Months go before days: Jan 31 + 1 month = Feb 29, + 1 day = Mar 1.
            (utc(2024, 1, 31, 0, 0), "P1M1D", utc(2024, 3, 1, 0, 0)),
            (utc(2024, 5, 5, 5, 5), "P0D", utc(2024, 5, 5, 5, 5)),
        ];
        for (start, duration, expected) in cases {
            let d: IsoDuration = duration.parse().unwrap();
            assert_eq!(d.add_to(start), expected, "{start} + {duration}");
            assert_eq!(d.checked_add_to(start), Some(expected));
        }
    }

    #[test]
    fn saturates_past_the_end_of_the_calendar() {
        let huge = IsoDuration::years(u32::MAX);
        let start = utc(2024, 1, 1, 0, 0);
        assert_eq!(huge.checked_add_to(start), None);
        assert_eq!(huge.add_to(start), DateTime::<Utc>::MAX_UTC);
    }

    #[test]
    fn serde_is_a_string() {
        let d: IsoDuration = serde_json::from_str("\"P1Y6M\"").unwrap();
        assert_eq!(d, IsoDuration::from_parts(1, 6, 0, 0, 0, 0, 0));
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"P1Y6M\"");
        let err = serde_json::from_str::<IsoDuration>("\"P3X\"").unwrap_err();
        assert!(err.to_string().contains("\"P3X\""), "{err}");
        assert!(serde_json::from_str::<IsoDuration>("3").is_err());
    }

    #[test]
    fn count_and_unit_build_the_cli_durations() {
        let cases = [
            (6, "Months", "P6M"),
            (24, "months", "P24M"),
            (10, "Years", "P10Y"),
            (12, "Weeks", "P12W"),
            (7, "Days", "P7D"),
        ];
        for (count, unit, expected) in cases {
            let unit: DurationUnit = unit.parse().unwrap();
            assert_eq!(IsoDuration::from_count(count, unit).to_string(), expected);
        }
        let err = "Fortnights".parse::<DurationUnit>().unwrap_err();
        assert_eq!(err, UnknownDurationUnit("Fortnights".into()));
        assert!(err.to_string().contains("\"Fortnights\""));
    }

    #[test]
    fn zero_is_zero() {
        assert!(IsoDuration::ZERO.is_zero());
        assert!("PT0H".parse::<IsoDuration>().unwrap().is_zero());
        assert!(!IsoDuration::seconds(1).is_zero());
    }
}
