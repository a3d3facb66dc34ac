//! When a policy's backups are due: Azure's schedule (`repeatingTimeIntervals` and `timeZone`)
//! parsed into a [`Schedule`], and the pure functions that turn it into instants. Nothing here
//! reads the clock; every "now" is a parameter, so the host asks [`Schedule::next_after`] for
//! its next deadline and the CLI can answer "what would run at TIME" with the same code.
//!
//! An Azure backup policy carries its schedule as
//! `{"repeatingTimeIntervals": ["R/2021-08-15T06:30:00+00:00/P1W", ...], "timeZone": "UTC"}`.
//!
//! # Time zones
//!
//! [`parse_time_zone`] accepts IANA names (`Europe/Berlin`, `UTC`) and the Windows names Azure
//! writes (`Pacific Standard Time`, `W. Europe Standard Time`, `UTC`, mapped to IANA zones by
//! the CLDR table of the `windows-timezones` crate). Surrounding blanks are ignored and case
//! does not matter; an absent, empty or blank name means UTC.
//!
//! # Repeating intervals
//!
//! A [`RepeatingInterval`] is `R[n]/YYYY-MM-DDThh:mm[:ss[.fff]][Z|±hh:mm]/<period>`:
//! - `R/` repeats without end; `Rn/` (n ≥ 1) means n occurrences in total, the start included;
//! - the start either carries an offset, and is then an exact instant, or carries none, and
//!   is then a wall-clock time in the policy's time zone ([`IntervalStart`]);
//! - the period is a whole number of hours (`PT4H`), days (`P1D`) or weeks (`P1W`), one unit
//!   only. Months, minutes, mixed units and zero are refused: Azure's PostgreSQL policies use
//!   only these three, and a month has no fixed length to repeat by.
//!
//! [`Schedule::parse`] reads a policy's whole schedule and reports every defect at once, each
//! with the [`ScheduleField`] it is about: `Interval(i)` for `repeatingTimeIntervals[i]`,
//! `TimeZone` for `timeZone` (a field, not a sentinel index, so no caller can mistake one
//! for the other); [`ScheduleField::json_path`] gives the path to report.
//!
//! # Occurrences
//!
//! The product spec, verbatim: "each `R/start/period` yields start + k·period, k ≥ 0; a start
//! without offset is in the policy's time zone; day and week periods step in the policy's
//! wall-clock time (a daily backup at 01:30 stays at 01:30 local across a DST change), hour
//! periods in absolute time; several intervals merge."
//!
//! Concretely:
//! - **Day and week periods** take the start's wall-clock time in the policy's zone (a start
//!   with an offset is first converted to that zone), add k days or weeks to the local date
//!   keeping the wall time, then resolve that wall time to an instant. So a weekly backup at
//!   06:30 in Europe/Berlin is at 05:30 UTC in winter and 04:30 UTC in summer. A start with an
//!   offset is itself always the first occurrence, exactly as written, even where its wall
//!   time would resolve differently (the second 02:30 of a fall-back night).
//! - **Hour periods** step in absolute time: start + k·n hours, whatever the clocks do, so
//!   `PT4H` occurrences are always four real hours apart. A start without offset is resolved
//!   to an instant once, by the rules below, and stepped from there.
//! - **Several intervals merge**: occurrences come out in ascending order and an instant that
//!   two intervals both produce comes out once.
//!
//! Resolving a wall-clock time in a zone (here and in [`add_in_zone`]):
//! - **Gap** (the clocks jump forward over it, so it never happens): the time moves forward by
//!   the length of the gap. 02:30 on the spring-forward day in Europe/Berlin, where 02:00
//!   jumps to 03:00, becomes 03:30 local (01:30 UTC). This is the instant the wall time names
//!   when read with the offset in force before the jump, so a backup never runs early and a
//!   missed hour is not skipped.
//! - **Fold** (the clocks fall back, so it happens twice): the earlier instant is taken.
//!   02:30 on the fall-back day in Europe/Berlin is 02:30 CEST (00:30 UTC), not 02:30 CET, so
//!   a daily backup runs once, not twice and not late.
//!
//! # Calendar arithmetic in a zone
//!
//! [`add_in_zone`]: "Durations of months and years are calendar steps in the policy's time
//! zone, and a month added to the 31st lands on the month's last day." The start is converted
//! to wall-clock time in the zone; years and months move the date (clamping the day to the end
//! of a shorter month), weeks and days add calendar days; the wall time is resolved with the
//! gap and fold rules above; then hours, minutes and seconds are added in absolute time. In
//! UTC this is exactly [`IsoDuration::add_to`].
//!
//! # Limits
//!
//! Zone rules come from the tz database compiled into `chrono-tz`, whose tables end in 2100:
//! from then on every zone keeps the offset it has at the end of 2099 (standard time in
//! Europe/Berlin), so wall-clock results after 2099 are in that offset.

use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Days, FixedOffset, LocalResult, Months, NaiveDateTime, NaiveTime, Offset, TimeDelta,
    TimeZone, Utc,
};
use chrono_tz::Tz;
use windows_timezones::WindowsTimezone;

use super::duration::{DurationError, DurationErrorKind, IsoDuration};

/// The form every interval error shows, so a user can fix a policy from the message alone.
const EXPECTED_INTERVAL: &str = "R/2021-08-15T06:30:00+00:00/P1W";

/// Why a schedule, or one part of it, was refused. Each message names the offending text and
/// says what would have been accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// A repeating interval that does not parse, or whose period cannot repeat a schedule.
    #[error(
        "invalid repeating interval {input:?}: {kind}; expected a form like {EXPECTED_INTERVAL} \
         (R/ or Rn/ for n occurrences, a start date-time with or without an offset, a period \
         of hours, days or weeks)"
    )]
    Interval {
        input: String,
        kind: IntervalErrorKind,
    },
    /// A time zone that is neither an IANA nor a Windows name.
    #[error(
        "unknown time zone {0:?}: use an IANA name such as Europe/Berlin, America/Los_Angeles \
         or UTC, or a Windows name as Azure writes it, such as W. Europe Standard Time, \
         Pacific Standard Time or UTC"
    )]
    UnknownTimeZone(String),
}

impl ScheduleError {
    fn interval(input: &str, kind: IntervalErrorKind) -> Self {
        ScheduleError::Interval {
            input: input.to_owned(),
            kind,
        }
    }
}

/// The specific defect in a rejected repeating interval.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntervalErrorKind {
    #[error("it is empty")]
    Empty,
    #[error("it must start with `R/` (or `Rn/` for n occurrences in total)")]
    MissingRepeat,
    #[error(
        "`R{0}` is not a repetition count: write `R/` to repeat without end or `Rn/` with a \
         whole number n of at least 1"
    )]
    BadRepetitions(String),
    #[error(
        "it has {0} part(s) separated by `/`, but needs three: the repetition, the start and \
         the period"
    )]
    WrongShape(usize),
    #[error("the start {0:?} is not a date-time of the form YYYY-MM-DDThh:mm[:ss[.fff]]")]
    BadDateTime(String),
    #[error("the offset {0:?} is not `Z` or ±hh:mm between -23:59 and +23:59")]
    BadOffset(String),
    #[error(
        "the period {text:?} is not an ISO 8601 duration ({reason}); a schedule repeats every \
         n hours (PT4H), days (P1D) or weeks (P1W)"
    )]
    BadPeriod {
        text: String,
        reason: DurationErrorKind,
    },
    #[error(
        "the period {0} cannot repeat a schedule: use a single unit of hours (PT4H), days \
         (P1D) or weeks (P1W); months, years, minutes, seconds and mixed units are not allowed"
    )]
    UnsupportedPeriod(IsoDuration),
    #[error(
        "the period {0} is zero, so the schedule would never advance; use a number of hours \
         (PT4H), days (P1D) or weeks (P1W) of at least 1"
    )]
    ZeroPeriod(IsoDuration),
}

/// Which part of a schedule an error from [`Schedule::parse`] is about. The policy validator
/// turns it into a JSON path below `schedule` with [`ScheduleField::json_path`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScheduleField {
    /// `repeatingTimeIntervals[i]`.
    Interval(usize),
    /// `timeZone`.
    TimeZone,
}

impl ScheduleField {
    /// The path of this field relative to the `schedule` object, as in
    /// `repeatingTimeIntervals[2]` or `timeZone`.
    pub fn json_path(self) -> String {
        match self {
            ScheduleField::Interval(index) => format!("repeatingTimeIntervals[{index}]"),
            ScheduleField::TimeZone => "timeZone".to_owned(),
        }
    }
}

/// Parses a schedule's `timeZone`: an IANA name (`Europe/Berlin`, `UTC`) or a Windows name
/// (`W. Europe Standard Time`, `Pacific Standard Time`, `UTC`), in any case and with blanks
/// around it. `None`, empty or blank means UTC, as Azure treats a schedule without a zone.
pub fn parse_time_zone(name: Option<&str>) -> Result<Tz, ScheduleError> {
    let Some(raw) = name else {
        return Ok(Tz::UTC);
    };
    let name = raw.trim();
    if name.is_empty() {
        return Ok(Tz::UTC);
    }
    if let Ok(zone) = name.parse::<Tz>() {
        return Ok(zone);
    }
    if let Ok(windows) = name.parse::<WindowsTimezone>() {
        return Ok(windows.into());
    }
    // Exact lookups missed, so try without regard to case. Neither crate offers that lookup
    // here (chrono-tz's `from_str_insensitive` needs a build-time feature that regenerates its
    // tables), but scanning its ~600 zones once per policy load costs nothing. Windows names
    // are reached through the zones too, because every Windows zone maps back from its main
    // IANA zone.
    chrono_tz::TZ_VARIANTS
        .iter()
        .find(|zone| zone.name().eq_ignore_ascii_case(name))
        .copied()
        .or_else(|| {
            chrono_tz::TZ_VARIANTS
                .iter()
                .filter_map(|zone| WindowsTimezone::try_from(*zone).ok())
                .find(|windows| windows.name().eq_ignore_ascii_case(name))
                .map(Tz::from)
        })
        .ok_or_else(|| ScheduleError::UnknownTimeZone(raw.to_owned()))
}

/// Where a repeating interval starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IntervalStart {
    /// Written with an offset (`2021-08-15T06:30:00+00:00`, `...Z`): an exact instant. The
    /// offset is kept so the interval prints back as it was written (`Z` prints as `+00:00`,
    /// the way Azure writes it).
    Exact(DateTime<FixedOffset>),
    /// Written without an offset (`2021-08-15T06:30:00`): a wall-clock time in the policy's
    /// time zone, resolved by the module's gap and fold rules.
    Local(NaiveDateTime),
}

impl fmt::Display for IntervalStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntervalStart::Exact(at) => write!(f, "{}", at.format("%Y-%m-%dT%H:%M:%S%.f%:z")),
            IntervalStart::Local(wall) => write!(f, "{}", wall.format("%Y-%m-%dT%H:%M:%S%.f")),
        }
    }
}

/// One ISO 8601 repeating interval of a schedule, `R[n]/start/period`: occurrences at start +
/// k·period for k = 0, 1, ... (fewer than n of them with `Rn`). See the module documentation
/// for how the start and the steps are placed in a time zone.
///
/// Build one with [`str::parse`] or [`RepeatingInterval::new`]; the fields are private because
/// the period must be a single positive unit of hours, days or weeks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RepeatingInterval {
    start: IntervalStart,
    period: IsoDuration,
    repetitions: Option<u32>,
}

/// How one interval steps, derived from its period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Absolute time, this many hours.
    Hours(u32),
    /// Wall-clock time, this many calendar days (a week is seven).
    Days(u64),
}

impl RepeatingInterval {
    /// An interval from its parts. Fails when the period is not a positive number of hours,
    /// days or weeks in one unit, or when `repetitions` is `Some(0)`; the error shows the
    /// interval as it would be written.
    pub fn new(
        start: IntervalStart,
        period: IsoDuration,
        repetitions: Option<u32>,
    ) -> Result<Self, ScheduleError> {
        let interval = RepeatingInterval {
            start,
            period,
            repetitions,
        };
        let fail = |kind| ScheduleError::interval(&interval.to_string(), kind);
        if repetitions == Some(0) {
            return Err(fail(IntervalErrorKind::BadRepetitions("0".to_owned())));
        }
        check_period(&period).map_err(fail)?;
        Ok(interval)
    }

    /// Where the interval starts.
    pub fn start(&self) -> IntervalStart {
        self.start
    }

    /// The period between occurrences: `PTnH`, `PnD` or `PnW`.
    pub fn period(&self) -> IsoDuration {
        self.period
    }

    /// The total number of occurrences for `Rn`, `None` for `R` (no end).
    pub fn repetitions(&self) -> Option<u32> {
        self.repetitions
    }

    /// The step of the period. [`check_period`] guarantees exactly one of hours, weeks or
    /// days is non-zero, so this reads whichever it is.
    fn step(&self) -> Step {
        let hours = self.period.hour_part();
        if hours > 0 {
            Step::Hours(hours)
        } else {
            Step::Days(u64::from(self.period.week_part()) * 7 + u64::from(self.period.day_part()))
        }
    }

    /// The occurrences of this interval placed in `zone`, or `None` when the start cannot be
    /// placed at all (a local start at the very edge of chrono's calendar).
    fn series(&self, zone: Tz) -> Option<Series> {
        let kind = match (self.step(), self.start) {
            (Step::Hours(hours), start) => SeriesKind::Absolute {
                anchor: match start {
                    IntervalStart::Exact(at) => at.to_utc(),
                    IntervalStart::Local(wall) => resolve(wall, zone)?,
                },
                step_seconds: i64::from(hours) * 3600,
            },
            (Step::Days(days), IntervalStart::Exact(at)) => SeriesKind::Wall {
                wall: at.with_timezone(&zone).naive_local(),
                exact_first: Some(at.to_utc()),
                days,
                zone,
            },
            (Step::Days(days), IntervalStart::Local(wall)) => SeriesKind::Wall {
                wall,
                exact_first: None,
                days,
                zone,
            },
        };
        Some(Series {
            kind,
            limit: self.repetitions.map(u64::from),
        })
    }
}

/// Checks that a period can repeat a schedule: one unit of hours, days or weeks, not zero.
fn check_period(period: &IsoDuration) -> Result<(), IntervalErrorKind> {
    if period.is_zero() {
        return Err(IntervalErrorKind::ZeroPeriod(*period));
    }
    let units = [period.hour_part(), period.day_part(), period.week_part()]
        .iter()
        .filter(|&&n| n > 0)
        .count();
    let others =
        period.year_part() | period.month_part() | period.minute_part() | period.second_part();
    if units != 1 || others != 0 {
        return Err(IntervalErrorKind::UnsupportedPeriod(*period));
    }
    Ok(())
}

impl FromStr for RepeatingInterval {
    type Err = ScheduleError;

    /// Parses `R[n]/YYYY-MM-DDThh:mm[:ss[.fff]][Z|±hh:mm]/<period>`, ignoring blanks around it.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |kind| ScheduleError::interval(input, kind);
        let text = input.trim();
        if text.is_empty() {
            return Err(fail(IntervalErrorKind::Empty));
        }
        let parts: Vec<&str> = text.split('/').collect();
        let Some(count) = parts[0].strip_prefix('R') else {
            return Err(fail(IntervalErrorKind::MissingRepeat));
        };
        if parts.len() != 3 {
            // `R` with nothing after it reads better as a missing `/` than as one part.
            return Err(fail(if parts.len() == 1 && count.is_empty() {
                IntervalErrorKind::MissingRepeat
            } else {
                IntervalErrorKind::WrongShape(parts.len())
            }));
        }
        let repetitions = if count.is_empty() {
            None
        } else {
            match count.parse::<u32>() {
                Ok(n) if n > 0 && count.bytes().all(|b| b.is_ascii_digit()) => Some(n),
                _ => return Err(fail(IntervalErrorKind::BadRepetitions(count.to_owned()))),
            }
        };
        let start = parse_start(parts[1]).map_err(fail)?;
        let period: IsoDuration = parts[2].parse().map_err(|e: DurationError| {
            fail(IntervalErrorKind::BadPeriod {
                text: parts[2].to_owned(),
                reason: e.kind().clone(),
            })
        })?;
        check_period(&period).map_err(fail)?;
        Ok(RepeatingInterval {
            start,
            period,
            repetitions,
        })
    }
}

/// Parses the start of an interval: a date and time, then `Z`, `±hh:mm` or nothing.
fn parse_start(text: &str) -> Result<IntervalStart, IntervalErrorKind> {
    let bad = || IntervalErrorKind::BadDateTime(text.to_owned());
    // The offset can only follow the time, and the date has `-` in it, so look after `T`.
    let time_at = text.find('T').ok_or_else(bad)?;
    let (wall_text, offset_text) = match text[time_at..].find(['Z', 'z', '+', '-']) {
        Some(at) => text.split_at(time_at + at),
        None => (text, ""),
    };
    let wall = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(wall_text, format).ok())
        .ok_or_else(bad)?;
    if offset_text.is_empty() {
        return Ok(IntervalStart::Local(wall));
    }
    let offset = parse_offset(offset_text)
        .ok_or_else(|| IntervalErrorKind::BadOffset(offset_text.to_owned()))?;
    offset
        .from_local_datetime(&wall)
        .single()
        .map(IntervalStart::Exact)
        .ok_or_else(bad)
}

/// `Z`, or `±hh:mm` (also `±hhmm` and `±hh`, which ISO 8601 allows) within a day.
fn parse_offset(text: &str) -> Option<FixedOffset> {
    if text.eq_ignore_ascii_case("z") {
        return FixedOffset::east_opt(0);
    }
    let sign = match text.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits: String = text[1..].chars().filter(|&c| c != ':').collect();
    let colons = text[1..].chars().filter(|&c| c == ':').count();
    let two = |s: &str| -> Option<i32> {
        (s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (hours, minutes) = match (digits.len(), colons) {
        (2, 0) => (two(&digits)?, 0),
        (4, 0) => (two(&digits[..2])?, two(&digits[2..])?),
        (4, 1) if text.as_bytes().get(3) == Some(&b':') => (two(&digits[..2])?, two(&digits[2..])?),
        _ => return None,
    };
    if hours > 23 || minutes > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

impl fmt::Display for RepeatingInterval {
    /// The canonical form: `R` or `Rn`, the start with seconds (and a fraction if any) and its
    /// offset as `±hh:mm` if it has one, and the period as [`IsoDuration`] prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("R")?;
        if let Some(n) = self.repetitions {
            write!(f, "{n}")?;
        }
        write!(f, "/{}/{}", self.start, self.period)
    }
}

/// A policy's backup schedule: its repeating intervals and the time zone they are placed in.
/// See the module documentation for what its occurrences are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    intervals: Vec<RepeatingInterval>,
    zone: Tz,
}

impl Schedule {
    /// A schedule from parsed parts. A schedule without intervals has no occurrences (policy
    /// validation is where an empty `repeatingTimeIntervals` is refused, with its JSON path).
    pub fn new(intervals: Vec<RepeatingInterval>, zone: Tz) -> Schedule {
        Schedule { intervals, zone }
    }

    /// Parses a policy's `repeatingTimeIntervals` and `timeZone`. On failure, returns every
    /// problem, each with the field it is about ([`ScheduleField::Interval`] with the index of
    /// the bad interval, or [`ScheduleField::TimeZone`]), so that all of them can be reported
    /// at once.
    pub fn parse<S: AsRef<str>>(
        intervals: &[S],
        time_zone: Option<&str>,
    ) -> Result<Schedule, Vec<(ScheduleField, ScheduleError)>> {
        let mut errors = Vec::new();
        let zone = parse_time_zone(time_zone)
            .map_err(|e| errors.push((ScheduleField::TimeZone, e)))
            .ok();
        let mut parsed = Vec::with_capacity(intervals.len());
        for (index, text) in intervals.iter().enumerate() {
            match text.as_ref().parse() {
                Ok(interval) => parsed.push(interval),
                Err(e) => errors.push((ScheduleField::Interval(index), e)),
            }
        }
        match zone {
            Some(zone) if errors.is_empty() => Ok(Schedule::new(parsed, zone)),
            _ => Err(errors),
        }
    }

    /// The repeating intervals, in the order given.
    pub fn intervals(&self) -> &[RepeatingInterval] {
        &self.intervals
    }

    /// The time zone the intervals are placed in.
    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// Every occurrence in `[from, to)`, ascending, an instant produced by several intervals
    /// only once. Lazy: each interval jumps straight to its first occurrence at or after
    /// `from` (arithmetically, however far that is from its start) and steps from there, so
    /// a window years after the start costs what its own occurrences cost.
    pub fn occurrences(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> impl Iterator<Item = DateTime<Utc>> + use<> {
        Occurrences::new(self, from, Some(to))
    }

    /// The first occurrence strictly after `t`: the host's next deadline.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let from = t.checked_add_signed(TimeDelta::nanoseconds(1))?;
        Occurrences::new(self, from, None).next()
    }

    /// The last occurrence at or before `t`: the run to catch up when the host was down when
    /// it was due.
    pub fn latest_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Counting the occurrences before `t + 1ns` gives the index just past the latest one.
        let after = t.checked_add_signed(TimeDelta::nanoseconds(1));
        self.intervals
            .iter()
            .filter_map(|interval| interval.series(self.zone))
            .filter_map(|series| {
                let past = match after {
                    Some(after) => series.first_index_at_or_after(after),
                    None => u64::MAX,
                };
                let past = series.limit.map_or(past, |limit| past.min(limit));
                series.at(past.checked_sub(1)?)
            })
            .max()
    }
}

/// Calendar arithmetic in a time zone: `start` plus `duration`, where years, months, weeks and
/// days step the wall-clock date in `zone` (a month added to the 31st lands on the month's
/// last day), the resulting wall time is resolved by the module's gap and fold rules, and
/// hours, minutes and seconds are then added in absolute time.
///
/// Saturates at the last instant chrono can represent instead of panicking, as
/// [`IsoDuration::add_to`] does.
pub fn add_in_zone(duration: &IsoDuration, start: DateTime<Utc>, zone: Tz) -> DateTime<Utc> {
    checked_add_in_zone(duration, start, zone).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// [`add_in_zone`], or `None` past the end of chrono's calendar.
pub fn checked_add_in_zone(
    duration: &IsoDuration,
    start: DateTime<Utc>,
    zone: Tz,
) -> Option<DateTime<Utc>> {
    let months = u64::from(duration.year_part()) * 12 + u64::from(duration.month_part());
    let days = u64::from(duration.week_part()) * 7 + u64::from(duration.day_part());
    let seconds = i64::from(duration.hour_part()) * 3600
        + i64::from(duration.minute_part()) * 60
        + i64::from(duration.second_part());
    // Without a calendar part the start is kept as the instant it is: going through its wall
    // time would move an instant in the second half of a fold to the first.
    let base = if months == 0 && days == 0 {
        start
    } else {
        let wall = start
            .with_timezone(&zone)
            .naive_local()
            .checked_add_months(Months::new(u32::try_from(months).ok()?))?
            .checked_add_days(Days::new(days))?;
        resolve(wall, zone)?
    };
    base.checked_add_signed(TimeDelta::try_seconds(seconds)?)
}

/// The instant a wall-clock time names in `zone`: in a gap, the time moved forward by the
/// gap's length; in a fold, the earlier instant. `None` only at the edge of chrono's calendar.
fn resolve(wall: NaiveDateTime, zone: Tz) -> Option<DateTime<Utc>> {
    match zone.from_local_datetime(&wall) {
        LocalResult::Single(at) => Some(at.to_utc()),
        LocalResult::Ambiguous(earlier, _) => Some(earlier.to_utc()),
        LocalResult::None => {
            // Read the wall time with the offset in force before the jump (the offset a day
            // earlier, as the JavaScript Temporal proposal does): that instant lies after the
            // jump and shows as the wall time plus the gap's length.
            let day_before = wall.checked_sub_signed(TimeDelta::days(1))?;
            let before = zone.offset_from_utc_datetime(&day_before).fix();
            let instant =
                wall.checked_sub_signed(TimeDelta::seconds(i64::from(before.local_minus_utc())))?;
            Some(instant.and_utc())
        }
    }
}

/// One interval placed in a zone: its k-th occurrence for any k, without stepping.
#[derive(Debug, Clone, Copy)]
struct Series {
    kind: SeriesKind,
    /// The number of occurrences for `Rn`.
    limit: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
enum SeriesKind {
    /// Hour periods: anchor + k·step in absolute time.
    Absolute {
        anchor: DateTime<Utc>,
        step_seconds: i64,
    },
    /// Day and week periods: the wall time plus k·days, resolved in the zone. `exact_first`
    /// is the start of an interval written with an offset, which is occurrence 0 as written.
    Wall {
        wall: NaiveDateTime,
        exact_first: Option<DateTime<Utc>>,
        days: u64,
        zone: Tz,
    },
}

impl Series {
    /// Occurrence `k`, ignoring the repetition limit; `None` past the end of chrono's
    /// calendar. Non-decreasing in `k`, and `None` from some `k` on if at all.
    fn at(&self, k: u64) -> Option<DateTime<Utc>> {
        match self.kind {
            SeriesKind::Absolute {
                anchor,
                step_seconds,
            } => {
                let seconds = i64::try_from(k).ok()?.checked_mul(step_seconds)?;
                anchor.checked_add_signed(TimeDelta::try_seconds(seconds)?)
            }
            SeriesKind::Wall {
                wall,
                exact_first,
                days,
                zone,
            } => match (k, exact_first) {
                (0, Some(first)) => Some(first),
                _ => resolve(
                    wall.checked_add_days(Days::new(k.checked_mul(days)?))?,
                    zone,
                ),
            },
        }
    }

    /// Whether occurrence `k` is at or after `from`; an occurrence past the end of the
    /// calendar counts as after everything, which keeps this monotone in `k`.
    fn reached(&self, k: u64, from: DateTime<Utc>) -> bool {
        self.at(k).is_none_or(|at| at >= from)
    }

    /// The smallest `k` whose occurrence is at or after `from` (ignoring the repetition
    /// limit). Estimated from the elapsed time, then corrected by a step or two, so the cost
    /// does not grow with the distance from the start.
    fn first_index_at_or_after(&self, from: DateTime<Utc>) -> u64 {
        let mut k = match self.kind {
            // Exact: ceil(elapsed / step).
            SeriesKind::Absolute {
                anchor,
                step_seconds,
            } => {
                let elapsed = from.signed_duration_since(anchor);
                let nanos = i128::from(elapsed.num_seconds()) * 1_000_000_000
                    + i128::from(elapsed.subsec_nanos());
                let step = i128::from(step_seconds) * 1_000_000_000;
                if nanos <= 0 {
                    0
                } else {
                    u64::try_from((nanos + step - 1) / step).unwrap_or(u64::MAX)
                }
            }
            // Elapsed wall time over the step, which is off by at most one step either way
            // because offsets differ by less than a day.
            SeriesKind::Wall {
                wall, days, zone, ..
            } => {
                let elapsed = from
                    .with_timezone(&zone)
                    .naive_local()
                    .signed_duration_since(wall)
                    .num_seconds();
                let step = i64::try_from(days.saturating_mul(86_400)).unwrap_or(i64::MAX);
                u64::try_from(elapsed / step).unwrap_or(0)
            }
        };
        while k > 0 && self.reached(k - 1, from) {
            k -= 1;
        }
        while !self.reached(k, from) {
            k += 1;
        }
        k
    }
}

/// The lazy merge behind [`Schedule::occurrences`]: one cursor per interval, the smallest
/// head comes out next and every head equal to it is advanced, which drops duplicates.
struct Occurrences {
    cursors: Vec<Cursor>,
    /// Exclusive end of the window; `None` for no end.
    to: Option<DateTime<Utc>>,
}

struct Cursor {
    series: Series,
    index: u64,
    /// Occurrence `index`, or `None` once the interval is exhausted.
    head: Option<DateTime<Utc>>,
}

impl Cursor {
    fn new(series: Series, index: u64) -> Cursor {
        let head = if series.limit.is_some_and(|limit| index >= limit) {
            None
        } else {
            series.at(index)
        };
        Cursor {
            series,
            index,
            head,
        }
    }

    fn advance(&mut self) {
        *self = match self.index.checked_add(1) {
            Some(next) => Cursor::new(self.series, next),
            None => Cursor {
                head: None,
                ..*self
            },
        };
    }
}

impl Occurrences {
    fn new(schedule: &Schedule, from: DateTime<Utc>, to: Option<DateTime<Utc>>) -> Occurrences {
        let cursors = schedule
            .intervals
            .iter()
            .filter_map(|interval| interval.series(schedule.zone))
            .map(|series| Cursor::new(series, series.first_index_at_or_after(from)))
            .collect();
        Occurrences { cursors, to }
    }
}

impl Iterator for Occurrences {
    type Item = DateTime<Utc>;

    fn next(&mut self) -> Option<DateTime<Utc>> {
        let next = self.cursors.iter().filter_map(|cursor| cursor.head).min()?;
        if self.to.is_some_and(|to| next >= to) {
            self.cursors.clear();
            return None;
        }
        // `<=` rather than `==` also skips an interval's own repeats, which happen only where
        // a gap is as long as the step (a day-long gap, as Samoa skipped 2011-12-30).
        for cursor in &mut self.cursors {
            while cursor.head.is_some_and(|head| head <= next) {
                cursor.advance();
            }
        }
        Some(next)
    }
}

/// The time of day a `scheduleTimes` entry selects, in the policy's zone: a date-time with an
/// offset is converted to the zone, one without is read as local time. Only the time of day
/// counts; the date is ignored, as in Azure.
pub fn schedule_time_of_day(text: &str, zone: Tz) -> Option<NaiveTime> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text.trim()) {
        return Some(t.with_timezone(&zone).time());
    }
    chrono::NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%dT%H:%M"))
        .ok()
        .map(|t| t.time())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, Timelike};

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).single().unwrap()
    }

    fn naive(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(h, min, 0)
            .unwrap()
    }

    fn offset(hours: i32) -> FixedOffset {
        FixedOffset::east_opt(hours * 3600).unwrap()
    }

    fn schedule(intervals: &[&str], zone: &str) -> Schedule {
        Schedule::parse(intervals, Some(zone)).unwrap_or_else(|e| panic!("{intervals:?}: {e:?}"))
    }

    /// Occurrences in a window, printed as local wall time with the zone's abbreviation and
    /// the UTC instant, so that a failing row shows both.
    fn shown(schedule: &Schedule, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<String> {
        schedule
            .occurrences(from, to)
            .map(|at| show(at, schedule.zone()))
            .collect()
    }

    fn show(at: DateTime<Utc>, zone: Tz) -> String {
        format!(
            "{} = {}",
            at.with_timezone(&zone).format("%a %Y-%m-%d %H:%M %Z"),
            at.format("%H:%MZ")
        )
    }

    #[test]
    fn parses_intervals_and_prints_them_canonically() {
        // (input, start, period, repetitions, canonical form)
        let exact = |y, m, d, h, min, off: i32| {
            IntervalStart::Exact(
                offset(off)
                    .from_local_datetime(&naive(y, m, d, h, min))
                    .single()
                    .unwrap(),
            )
        };
        let fraction = IntervalStart::Exact(
            offset(2)
                .from_local_datetime(
                    &naive(2021, 8, 15, 6, 30)
                        .with_nanosecond(250_000_000)
                        .unwrap(),
                )
                .single()
                .unwrap(),
        );
        let cases = [
            (
                "R/2021-08-15T06:30:00+00:00/P1W",
                exact(2021, 8, 15, 6, 30, 0),
                IsoDuration::weeks(1),
                None,
                "R/2021-08-15T06:30:00+00:00/P1W",
            ),
            (
                "R/2021-08-15T06:30:00Z/P1D",
                exact(2021, 8, 15, 6, 30, 0),
                IsoDuration::days(1),
                None,
                "R/2021-08-15T06:30:00+00:00/P1D",
            ),
            (
                "R/2021-08-15T06:30:00-08:00/PT4H",
                exact(2021, 8, 15, 6, 30, -8),
                IsoDuration::hours(4),
                None,
                "R/2021-08-15T06:30:00-08:00/PT4H",
            ),
            (
                "R/2021-08-15T06:30:00+0530/PT12H",
                IntervalStart::Exact(
                    FixedOffset::east_opt(5 * 3600 + 1800)
                        .unwrap()
                        .from_local_datetime(&naive(2021, 8, 15, 6, 30))
                        .single()
                        .unwrap(),
                ),
                IsoDuration::hours(12),
                None,
                "R/2021-08-15T06:30:00+05:30/PT12H",
            ),
            (
                "R/2021-08-15T06:30:00/P1D",
                IntervalStart::Local(naive(2021, 8, 15, 6, 30)),
                IsoDuration::days(1),
                None,
                "R/2021-08-15T06:30:00/P1D",
            ),
            (
                "R/2021-08-15T06:30/P2W",
                IntervalStart::Local(naive(2021, 8, 15, 6, 30)),
                IsoDuration::weeks(2),
                None,
                "R/2021-08-15T06:30:00/P2W",
            ),
            (
                "R/2021-08-15T06:30:00.250+02:00/P1W",
                fraction,
                IsoDuration::weeks(1),
                None,
                "R/2021-08-15T06:30:00.250+02:00/P1W",
            ),
            (
                "R5/2021-08-15T06:30:00+00:00/P7D",
                exact(2021, 8, 15, 6, 30, 0),
                IsoDuration::days(7),
                Some(5),
                "R5/2021-08-15T06:30:00+00:00/P7D",
            ),
            (
                "  R1/2021-08-15T06:30:00Z/pt1h ",
                exact(2021, 8, 15, 6, 30, 0),
                IsoDuration::hours(1),
                Some(1),
                "R1/2021-08-15T06:30:00+00:00/PT1H",
            ),
        ];
        for (input, start, period, repetitions, canonical) in cases {
            let parsed: RepeatingInterval =
                input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(parsed.start(), start, "{input}");
            assert_eq!(parsed.period(), period, "{input}");
            assert_eq!(parsed.repetitions(), repetitions, "{input}");
            assert_eq!(parsed.to_string(), canonical, "{input}");
            assert_eq!(canonical.parse::<RepeatingInterval>().unwrap(), parsed);
            assert_eq!(
                RepeatingInterval::new(start, period, repetitions).unwrap(),
                parsed
            );
        }
    }

    #[test]
    fn rejects_malformed_intervals_saying_what_is_wrong() {
        use IntervalErrorKind as K;
        let unsupported = |p: &str| K::UnsupportedPeriod(p.parse().unwrap());
        // (input, defect, a phrase the message must contain)
        let cases: Vec<(&str, IntervalErrorKind, &str)> = vec![
            ("", K::Empty, "empty"),
            ("  ", K::Empty, "empty"),
            ("2021-08-15T06:30:00+00:00/P1W", K::MissingRepeat, "`R/`"),
            ("X/2021-08-15T06:30:00+00:00/P1W", K::MissingRepeat, "`R/`"),
            ("R", K::MissingRepeat, "`R/`"),
            (
                "R0/2021-08-15T06:30:00+00:00/P1W",
                K::BadRepetitions("0".into()),
                "at least 1",
            ),
            (
                "Rx/2021-08-15T06:30:00+00:00/P1W",
                K::BadRepetitions("x".into()),
                "`Rx`",
            ),
            (
                "R-1/2021-08-15T06:30:00+00:00/P1W",
                K::BadRepetitions("-1".into()),
                "`R-1`",
            ),
            ("R/2021-08-15T06:30:00+00:00", K::WrongShape(2), "three"),
            (
                "R/2021-08-15T06:30:00+00:00/P1W/P1D",
                K::WrongShape(4),
                "three",
            ),
            (
                "R/2021-13-15T06:30:00+00:00/P1W",
                K::BadDateTime("2021-13-15T06:30:00+00:00".into()),
                "YYYY-MM-DDThh:mm",
            ),
            (
                "R/2021-08-15/P1W",
                K::BadDateTime("2021-08-15".into()),
                "YYYY-MM-DDThh:mm",
            ),
            (
                "R/2021-08-15T25:00:00Z/P1W",
                K::BadDateTime("2021-08-15T25:00:00Z".into()),
                "YYYY-MM-DDThh:mm",
            ),
            (
                "R/2021-08-15 06:30:00Z/P1W",
                K::BadDateTime("2021-08-15 06:30:00Z".into()),
                "YYYY-MM-DDThh:mm",
            ),
            (
                "R/2021-08-15T06Z/P1W",
                K::BadDateTime("2021-08-15T06Z".into()),
                "YYYY-MM-DDThh:mm",
            ),
            (
                "R/2021-08-15T06:30:00+25:00/P1W",
                K::BadOffset("+25:00".into()),
                "±hh:mm",
            ),
            (
                "R/2021-08-15T06:30:00+0x:00/P1W",
                K::BadOffset("+0x:00".into()),
                "±hh:mm",
            ),
            (
                "R/2021-08-15T06:30:00Zulu/P1W",
                K::BadOffset("Zulu".into()),
                "±hh:mm",
            ),
            (
                "R/2021-08-15T06:30:00Z/1W",
                K::BadPeriod {
                    text: "1W".into(),
                    reason: DurationErrorKind::MissingP,
                },
                "PT4H",
            ),
            ("R/2021-08-15T06:30:00Z/P1M", unsupported("P1M"), "months"),
            (
                "R/2021-08-15T06:30:00Z/P1Y",
                unsupported("P1Y"),
                "single unit",
            ),
            (
                "R/2021-08-15T06:30:00Z/PT30M",
                unsupported("PT30M"),
                "minutes",
            ),
            (
                "R/2021-08-15T06:30:00Z/PT60S",
                unsupported("PT60S"),
                "seconds",
            ),
            (
                "R/2021-08-15T06:30:00Z/P1DT12H",
                unsupported("P1DT12H"),
                "mixed",
            ),
            (
                "R/2021-08-15T06:30:00Z/P1W1D",
                unsupported("P1W1D"),
                "mixed",
            ),
            (
                "R/2021-08-15T06:30:00Z/P0D",
                K::ZeroPeriod(IsoDuration::ZERO),
                "never advance",
            ),
            (
                "R/2021-08-15T06:30:00Z/PT0H",
                K::ZeroPeriod(IsoDuration::ZERO),
                "never advance",
            ),
        ];
        for (input, kind, phrase) in cases {
            let err = input.parse::<RepeatingInterval>().unwrap_err();
            assert_eq!(
                err,
                ScheduleError::Interval {
                    input: input.into(),
                    kind
                },
                "{input:?}"
            );
            let message = err.to_string();
            for expected in [
                format!("{input:?}"),
                phrase.to_owned(),
                EXPECTED_INTERVAL.to_owned(),
            ] {
                assert!(
                    message.contains(&expected),
                    "{input:?}: {message:?} lacks {expected:?}"
                );
            }
        }
        // Period errors say which periods are allowed.
        for input in [
            "R/2021-08-15T06:30:00Z/P1M",
            "R/2021-08-15T06:30:00Z/P0D",
            "R/2021-08-15T06:30:00Z/x",
        ] {
            let message = input.parse::<RepeatingInterval>().unwrap_err().to_string();
            for unit in ["PT4H", "P1D", "P1W"] {
                assert!(message.contains(unit), "{message}");
            }
        }
    }

    #[test]
    fn new_checks_the_same_rules_as_parse() {
        let start = IntervalStart::Local(naive(2021, 8, 15, 6, 30));
        let err = RepeatingInterval::new(start, IsoDuration::months(1), None).unwrap_err();
        assert_eq!(
            err,
            ScheduleError::Interval {
                input: "R/2021-08-15T06:30:00/P1M".into(),
                kind: IntervalErrorKind::UnsupportedPeriod(IsoDuration::months(1)),
            }
        );
        let err = RepeatingInterval::new(start, IsoDuration::days(1), Some(0)).unwrap_err();
        assert!(
            err.to_string().contains("R0/2021-08-15T06:30:00/P1D"),
            "{err}"
        );
    }

    #[test]
    fn time_zones_by_iana_or_windows_name() {
        let cases: &[(Option<&str>, Tz)] = &[
            (None, Tz::UTC),
            (Some(""), Tz::UTC),
            (Some("   "), Tz::UTC),
            (Some("UTC"), Tz::UTC),
            (Some("Europe/Berlin"), Tz::Europe__Berlin),
            (Some(" America/Los_Angeles "), Tz::America__Los_Angeles),
            (Some("europe/berlin"), Tz::Europe__Berlin),
            (Some("utc"), Tz::UTC),
            (Some("Pacific Standard Time"), Tz::America__Los_Angeles),
            (Some("W. Europe Standard Time"), Tz::Europe__Berlin),
            (Some("India Standard Time"), Tz::Asia__Calcutta),
            (Some("GMT Standard Time"), Tz::Europe__London),
            (Some(" pacific standard time "), Tz::America__Los_Angeles),
            (Some("w. europe standard time"), Tz::Europe__Berlin),
        ];
        for (name, zone) in cases {
            assert_eq!(parse_time_zone(*name), Ok(*zone), "{name:?}");
        }
        for name in ["Mars/Olympus_Mons", "Pacific Time", "+01:00", "CEST!"] {
            let err = parse_time_zone(Some(name)).unwrap_err();
            assert_eq!(err, ScheduleError::UnknownTimeZone(name.into()));
            let message = err.to_string();
            for expected in [
                &format!("{name:?}"),
                "Europe/Berlin",
                "W. Europe Standard Time",
            ] {
                assert!(message.contains(expected), "{message}");
            }
        }
    }

    #[test]
    fn schedule_parse_reports_every_bad_field() {
        let errors = Schedule::parse(
            &[
                "R/2021-08-15T06:30:00Z/P1W",
                "P1W",
                "R/2021-08-15T06:30:00Z/P1M",
            ],
            Some("Atlantis Standard Time"),
        )
        .unwrap_err();
        let fields: Vec<ScheduleField> = errors.iter().map(|(field, _)| *field).collect();
        assert_eq!(
            fields,
            [
                ScheduleField::TimeZone,
                ScheduleField::Interval(1),
                ScheduleField::Interval(2)
            ]
        );
        assert!(matches!(errors[0].1, ScheduleError::UnknownTimeZone(_)));
        let paths: Vec<String> = fields.iter().map(|f| f.json_path()).collect();
        assert_eq!(
            paths,
            [
                "timeZone",
                "repeatingTimeIntervals[1]",
                "repeatingTimeIntervals[2]"
            ]
        );

        let good = Schedule::parse(&["R/2021-08-15T06:30:00Z/P1W".to_owned()], None).unwrap();
        assert_eq!(good.zone(), Tz::UTC);
        assert_eq!(good.intervals().len(), 1);
    }

    /// The table behind the DST tests: a schedule, a window, and the occurrences shown as
    /// local wall time and UTC.
    struct Case {
        name: &'static str,
        intervals: &'static [&'static str],
        zone: &'static str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        expected: &'static [&'static str],
    }

    fn check(cases: &[Case]) {
        for case in cases {
            let schedule = schedule(case.intervals, case.zone);
            assert_eq!(
                shown(&schedule, case.from, case.to),
                case.expected,
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn occurrences_across_daylight_saving_changes() {
        check(&[
            Case {
                name: "weekly in Berlin keeps 06:30 local across the March change",
                intervals: &["R/2024-03-17T06:30:00/P1W"],
                zone: "Europe/Berlin",
                from: utc(2024, 3, 1, 0, 0),
                to: utc(2024, 4, 8, 0, 0),
                expected: &[
                    "Sun 2024-03-17 06:30 CET = 05:30Z",
                    "Sun 2024-03-24 06:30 CET = 05:30Z",
                    "Sun 2024-03-31 06:30 CEST = 04:30Z",
                    "Sun 2024-04-07 06:30 CEST = 04:30Z",
                ],
            },
            Case {
                name: "a start with an offset is converted to the zone's wall time first",
                intervals: &["R/2024-03-17T05:30:00+00:00/P1W"],
                zone: "W. Europe Standard Time",
                from: utc(2024, 10, 14, 0, 0),
                to: utc(2024, 11, 4, 0, 0),
                expected: &[
                    "Sun 2024-10-20 06:30 CEST = 04:30Z",
                    "Sun 2024-10-27 06:30 CET = 05:30Z",
                    "Sun 2024-11-03 06:30 CET = 05:30Z",
                ],
            },
            Case {
                name: "hourly PT4H stays four absolute hours apart across the March change",
                intervals: &["R/2024-03-30T22:00:00+00:00/PT4H"],
                zone: "Europe/Berlin",
                from: utc(2024, 3, 30, 20, 0),
                to: utc(2024, 3, 31, 10, 0),
                expected: &[
                    "Sat 2024-03-30 23:00 CET = 22:00Z",
                    "Sun 2024-03-31 04:00 CEST = 02:00Z",
                    "Sun 2024-03-31 08:00 CEST = 06:00Z",
                ],
            },
            Case {
                name: "hourly PT4H stays four absolute hours apart across the October change",
                intervals: &["R/2024-10-26T22:00:00+00:00/PT4H"],
                zone: "Europe/Berlin",
                from: utc(2024, 10, 26, 20, 0),
                to: utc(2024, 10, 27, 10, 0),
                expected: &[
                    "Sun 2024-10-27 00:00 CEST = 22:00Z",
                    "Sun 2024-10-27 03:00 CET = 02:00Z",
                    "Sun 2024-10-27 07:00 CET = 06:00Z",
                ],
            },
            Case {
                name: "daily 02:30 in the spring-forward gap moves to 03:30 local",
                intervals: &["R/2024-03-29T02:30:00/P1D"],
                zone: "Europe/Berlin",
                from: utc(2024, 3, 29, 0, 0),
                to: utc(2024, 4, 2, 0, 0),
                expected: &[
                    "Fri 2024-03-29 02:30 CET = 01:30Z",
                    "Sat 2024-03-30 02:30 CET = 01:30Z",
                    "Sun 2024-03-31 03:30 CEST = 01:30Z",
                    "Mon 2024-04-01 02:30 CEST = 00:30Z",
                ],
            },
            Case {
                name: "daily 02:30 in the fall-back fold takes the earlier instant, once",
                intervals: &["R/2024-10-26T02:30:00/P1D"],
                zone: "Europe/Berlin",
                from: utc(2024, 10, 26, 0, 0),
                to: utc(2024, 10, 29, 0, 0),
                expected: &[
                    "Sat 2024-10-26 02:30 CEST = 00:30Z",
                    "Sun 2024-10-27 02:30 CEST = 00:30Z",
                    "Mon 2024-10-28 02:30 CET = 01:30Z",
                ],
            },
            Case {
                name: "a start with an offset in the fold's second half is itself the first",
                intervals: &["R/2024-10-27T01:30:00+00:00/P1D"],
                zone: "Europe/Berlin",
                from: utc(2024, 10, 26, 0, 0),
                to: utc(2024, 10, 29, 0, 0),
                expected: &[
                    "Sun 2024-10-27 02:30 CET = 01:30Z",
                    "Mon 2024-10-28 02:30 CET = 01:30Z",
                ],
            },
            Case {
                name: "an hourly local start in the gap is resolved once, then absolute",
                intervals: &["R/2024-03-31T02:30:00/PT1H"],
                zone: "Europe/Berlin",
                from: utc(2024, 3, 31, 0, 0),
                to: utc(2024, 3, 31, 3, 0),
                expected: &[
                    "Sun 2024-03-31 03:30 CEST = 01:30Z",
                    "Sun 2024-03-31 04:30 CEST = 02:30Z",
                ],
            },
            Case {
                name: "Pacific Standard Time weekly keeps 14:00 local across US changes",
                intervals: &["R/2024-03-03T22:00:00+00:00/P1W"],
                zone: "Pacific Standard Time",
                from: utc(2024, 3, 1, 0, 0),
                to: utc(2024, 3, 18, 0, 0),
                expected: &[
                    "Sun 2024-03-03 14:00 PST = 22:00Z",
                    "Sun 2024-03-10 14:00 PDT = 21:00Z",
                    "Sun 2024-03-17 14:00 PDT = 21:00Z",
                ],
            },
            Case {
                name: "Pacific Standard Time weekly in November",
                intervals: &["R/2024-03-03T22:00:00+00:00/P1W"],
                zone: "Pacific Standard Time",
                from: utc(2024, 10, 27, 0, 0),
                to: utc(2024, 11, 11, 0, 0),
                expected: &[
                    "Sun 2024-10-27 14:00 PDT = 21:00Z",
                    "Sun 2024-11-03 14:00 PST = 22:00Z",
                    "Sun 2024-11-10 14:00 PST = 22:00Z",
                ],
            },
            Case {
                name: "US gap: 02:00 on the spring-forward Sunday becomes 03:00 PDT",
                intervals: &["R/2024-03-03T02:00:00/P1W"],
                zone: "Pacific Standard Time",
                from: utc(2024, 3, 1, 0, 0),
                to: utc(2024, 3, 18, 0, 0),
                expected: &[
                    "Sun 2024-03-03 02:00 PST = 10:00Z",
                    "Sun 2024-03-10 03:00 PDT = 10:00Z",
                    "Sun 2024-03-17 02:00 PDT = 09:00Z",
                ],
            },
            Case {
                name: "in UTC a day is 24 hours",
                intervals: &["R/2024-03-30T01:30:00/P1D"],
                zone: "UTC",
                from: utc(2024, 3, 30, 0, 0),
                to: utc(2024, 4, 1, 0, 0),
                expected: &[
                    "Sat 2024-03-30 01:30 UTC = 01:30Z",
                    "Sun 2024-03-31 01:30 UTC = 01:30Z",
                ],
            },
        ]);
    }

    #[test]
    fn several_intervals_merge_sorted_without_duplicates() {
        check(&[
            Case {
                name: "the az CLI walkthrough's Sunday, Wednesday and Friday",
                intervals: &[
                    "R/2021-08-15T22:00:00+00:00/P1W",
                    "R/2021-08-18T22:00:00+00:00/P1W",
                    "R/2021-08-20T22:00:00+00:00/P1W",
                ],
                zone: "UTC",
                from: utc(2021, 8, 1, 0, 0),
                to: utc(2021, 8, 29, 0, 0),
                expected: &[
                    "Sun 2021-08-15 22:00 UTC = 22:00Z",
                    "Wed 2021-08-18 22:00 UTC = 22:00Z",
                    "Fri 2021-08-20 22:00 UTC = 22:00Z",
                    "Sun 2021-08-22 22:00 UTC = 22:00Z",
                    "Wed 2021-08-25 22:00 UTC = 22:00Z",
                    "Fri 2021-08-27 22:00 UTC = 22:00Z",
                ],
            },
            Case {
                name: "given out of order, and overlapping a daily interval",
                intervals: &[
                    "R/2021-08-20T22:00:00+00:00/P1W",
                    "R/2021-08-16T22:00:00Z/P1D",
                    "R/2021-08-15T22:00:00+00:00/P1W",
                    "R/2021-08-15T22:00:00+00:00/P1W",
                ],
                zone: "UTC",
                from: utc(2021, 8, 15, 0, 0),
                to: utc(2021, 8, 20, 0, 0),
                expected: &[
                    "Sun 2021-08-15 22:00 UTC = 22:00Z",
                    "Mon 2021-08-16 22:00 UTC = 22:00Z",
                    "Tue 2021-08-17 22:00 UTC = 22:00Z",
                    "Wed 2021-08-18 22:00 UTC = 22:00Z",
                    "Thu 2021-08-19 22:00 UTC = 22:00Z",
                ],
            },
            Case {
                name: "an offset start and a local start naming the same instant merge",
                intervals: &["R/2024-01-07T06:30:00/P1W", "R/2024-01-07T05:30:00Z/P1W"],
                zone: "Europe/Berlin",
                from: utc(2024, 1, 1, 0, 0),
                to: utc(2024, 1, 15, 0, 0),
                expected: &[
                    "Sun 2024-01-07 06:30 CET = 05:30Z",
                    "Sun 2024-01-14 06:30 CET = 05:30Z",
                ],
            },
        ]);
    }

    #[test]
    fn windows_and_repetition_counts() {
        check(&[
            Case {
                name: "a window before the start has nothing",
                intervals: &["R/2024-01-10T06:00:00Z/P1D"],
                zone: "UTC",
                from: utc(2023, 1, 1, 0, 0),
                to: utc(2024, 1, 10, 6, 0),
                expected: &[],
            },
            Case {
                name: "the window includes `from` and excludes `to`",
                intervals: &["R/2024-01-10T06:00:00Z/P1D"],
                zone: "UTC",
                from: utc(2024, 1, 11, 6, 0),
                to: utc(2024, 1, 13, 6, 0),
                expected: &[
                    "Thu 2024-01-11 06:00 UTC = 06:00Z",
                    "Fri 2024-01-12 06:00 UTC = 06:00Z",
                ],
            },
            Case {
                name: "an empty window has nothing",
                intervals: &["R/2024-01-10T06:00:00Z/P1D"],
                zone: "UTC",
                from: utc(2024, 1, 11, 6, 0),
                to: utc(2024, 1, 11, 6, 0),
                expected: &[],
            },
            Case {
                name: "R3 stops after three",
                intervals: &["R3/2024-01-10T06:00:00Z/P1D"],
                zone: "UTC",
                from: utc(2024, 1, 1, 0, 0),
                to: utc(2025, 1, 1, 0, 0),
                expected: &[
                    "Wed 2024-01-10 06:00 UTC = 06:00Z",
                    "Thu 2024-01-11 06:00 UTC = 06:00Z",
                    "Fri 2024-01-12 06:00 UTC = 06:00Z",
                ],
            },
            Case {
                name: "R3 seen from a window after its second",
                intervals: &["R3/2024-01-10T06:00:00Z/PT12H"],
                zone: "UTC",
                from: utc(2024, 1, 10, 19, 0),
                to: utc(2025, 1, 1, 0, 0),
                expected: &["Thu 2024-01-11 06:00 UTC = 06:00Z"],
            },
            Case {
                name: "R1 is the start alone",
                intervals: &["R1/2024-01-10T06:00:00Z/P1W", "R/2024-01-20T06:00:00Z/P1W"],
                zone: "UTC",
                from: utc(2024, 1, 1, 0, 0),
                to: utc(2024, 1, 28, 0, 0),
                expected: &[
                    "Wed 2024-01-10 06:00 UTC = 06:00Z",
                    "Sat 2024-01-20 06:00 UTC = 06:00Z",
                    "Sat 2024-01-27 06:00 UTC = 06:00Z",
                ],
            },
        ]);
        let none = Schedule::new(Vec::new(), Tz::UTC);
        assert_eq!(
            none.occurrences(utc(2000, 1, 1, 0, 0), utc(2100, 1, 1, 0, 0))
                .count(),
            0
        );
        assert_eq!(none.next_after(utc(2024, 1, 1, 0, 0)), None);
        assert_eq!(none.latest_at_or_before(utc(2024, 1, 1, 0, 0)), None);
    }

    #[test]
    fn next_after_and_latest_at_or_before() {
        let daily = schedule(&["R/2024-01-10T06:00:00Z/P1D"], "UTC");
        let twice = schedule(&["R2/2024-01-10T06:00:00Z/P1D"], "UTC");
        let berlin = schedule(
            &["R/2024-03-29T02:30:00/P1D", "R/2024-03-29T12:00:00/P1D"],
            "Europe/Berlin",
        );
        // (schedule, t, next strictly after t, latest at or before t)
        let cases = [
            (
                &daily,
                utc(2023, 6, 1, 0, 0),
                Some(utc(2024, 1, 10, 6, 0)),
                None,
            ),
            (
                &daily,
                utc(2024, 1, 10, 5, 59),
                Some(utc(2024, 1, 10, 6, 0)),
                None,
            ),
            (
                &daily,
                utc(2024, 1, 10, 6, 0),
                Some(utc(2024, 1, 11, 6, 0)),
                Some(utc(2024, 1, 10, 6, 0)),
            ),
            (
                &daily,
                utc(2024, 1, 11, 5, 0),
                Some(utc(2024, 1, 11, 6, 0)),
                Some(utc(2024, 1, 10, 6, 0)),
            ),
            (
                &daily,
                utc(2024, 1, 11, 6, 0),
                Some(utc(2024, 1, 12, 6, 0)),
                Some(utc(2024, 1, 11, 6, 0)),
            ),
            (
                &daily,
                utc(2034, 7, 1, 12, 0),
                Some(utc(2034, 7, 2, 6, 0)),
                Some(utc(2034, 7, 1, 6, 0)),
            ),
            (
                &twice,
                utc(2024, 1, 11, 6, 0),
                None,
                Some(utc(2024, 1, 11, 6, 0)),
            ),
            (
                &twice,
                utc(2030, 1, 1, 0, 0),
                None,
                Some(utc(2024, 1, 11, 6, 0)),
            ),
            (
                &twice,
                utc(2024, 1, 10, 12, 0),
                Some(utc(2024, 1, 11, 6, 0)),
                Some(utc(2024, 1, 10, 6, 0)),
            ),
            // Two intervals, 02:30 and 12:00 local, and the gap: the 02:30 of March 31 is
            // 03:30 CEST = 01:30Z.
            (
                &berlin,
                utc(2024, 3, 30, 10, 59),
                Some(utc(2024, 3, 30, 11, 0)),
                Some(utc(2024, 3, 30, 1, 30)),
            ),
            (
                &berlin,
                utc(2024, 3, 30, 12, 0),
                Some(utc(2024, 3, 31, 1, 30)),
                Some(utc(2024, 3, 30, 11, 0)),
            ),
            (
                &berlin,
                utc(2024, 3, 31, 1, 30),
                Some(utc(2024, 3, 31, 10, 0)),
                Some(utc(2024, 3, 31, 1, 30)),
            ),
            (
                &berlin,
                utc(2024, 3, 31, 9, 0),
                Some(utc(2024, 3, 31, 10, 0)),
                Some(utc(2024, 3, 31, 1, 30)),
            ),
        ];
        for (schedule, t, next, latest) in cases {
            assert_eq!(
                schedule.next_after(t),
                next,
                "next_after({t}) in {schedule:?}"
            );
            assert_eq!(
                schedule.latest_at_or_before(t),
                latest,
                "latest_at_or_before({t}) in {schedule:?}"
            );
        }
        // Sub-second starts are respected at both ends.
        let fraction = schedule(&["R/2024-01-10T06:00:00.5Z/PT1H"], "UTC");
        let start = utc(2024, 1, 10, 6, 0) + TimeDelta::milliseconds(500);
        assert_eq!(fraction.next_after(utc(2024, 1, 10, 6, 0)), Some(start));
        assert_eq!(fraction.latest_at_or_before(start), Some(start));
        assert_eq!(
            fraction.latest_at_or_before(start - TimeDelta::nanoseconds(1)),
            None
        );
    }

    #[test]
    fn far_windows_are_computed_directly() {
        // Stepping from these starts one occurrence at a time would take hundreds of
        // millions of steps; the jump makes each of these immediate.
        let far_start = IntervalStart::Exact(
            NaiveDate::from_ymd_opt(-100_000, 1, 1)
                .unwrap()
                .and_hms_opt(0, 30, 0)
                .unwrap()
                .and_utc()
                .fixed_offset(),
        );
        let hourly = Schedule::new(
            vec![RepeatingInterval::new(far_start, IsoDuration::hours(1), None).unwrap()],
            Tz::UTC,
        );
        let window: Vec<_> = hourly
            .occurrences(utc(2031, 8, 15, 0, 0), utc(2031, 8, 15, 3, 0))
            .collect();
        assert_eq!(
            window,
            [
                utc(2031, 8, 15, 0, 30),
                utc(2031, 8, 15, 1, 30),
                utc(2031, 8, 15, 2, 30)
            ]
        );
        assert_eq!(
            hourly.next_after(utc(2031, 8, 15, 0, 30)),
            Some(utc(2031, 8, 15, 1, 30))
        );
        assert_eq!(
            hourly.latest_at_or_before(utc(2031, 8, 15, 0, 29)),
            Some(utc(2031, 8, 14, 23, 30))
        );

        let daily_local = Schedule::new(
            vec![
                RepeatingInterval::new(
                    IntervalStart::Local(
                        NaiveDate::from_ymd_opt(-100_000, 1, 1)
                            .unwrap()
                            .and_hms_opt(2, 30, 0)
                            .unwrap(),
                    ),
                    IsoDuration::days(1),
                    None,
                )
                .unwrap(),
            ],
            Tz::Europe__Berlin,
        );
        assert_eq!(
            shown(&daily_local, utc(2099, 3, 28, 0, 0), utc(2099, 3, 31, 0, 0)),
            [
                "Sat 2099-03-28 02:30 CET = 01:30Z",
                "Sun 2099-03-29 03:30 CEST = 01:30Z",
                "Mon 2099-03-30 02:30 CEST = 00:30Z",
            ]
        );

        // Ten years of hourly from a 2021 start: each hour once, the first and last right.
        let ten_years = schedule(&["R/2021-08-15T06:30:00+00:00/PT1H"], "UTC");
        let (from, to) = (utc(2021, 8, 15, 0, 0), utc(2031, 8, 15, 0, 0));
        let all: Vec<_> = ten_years.occurrences(from, to).collect();
        assert_eq!(all.len() as i64, (to - utc(2021, 8, 15, 6, 0)).num_hours());
        assert_eq!(all.first(), Some(&utc(2021, 8, 15, 6, 30)));
        assert_eq!(all.last(), Some(&utc(2031, 8, 14, 23, 30)));
        assert!(
            all.windows(2)
                .all(|pair| pair[1] - pair[0] == TimeDelta::hours(1))
        );

        // Lazy: an unbounded window yields its first few without computing the rest.
        let weekly = schedule(&["R/2021-08-15T06:30:00/P1W"], "W. Europe Standard Time");
        let first: Vec<_> = weekly
            .occurrences(utc(2121, 1, 1, 0, 0), DateTime::<Utc>::MAX_UTC)
            .take(2)
            .map(|at| show(at, weekly.zone()))
            .collect();
        assert_eq!(
            first,
            [
                "Sun 2121-01-05 06:30 CET = 05:30Z",
                "Sun 2121-01-12 06:30 CET = 05:30Z"
            ]
        );
    }

    #[test]
    fn adds_calendar_steps_in_the_zone() {
        let berlin = Tz::Europe__Berlin;
        // (start, duration, zone, expected)
        let cases = [
            // Months clamp to the month's last day, in UTC as in a zone.
            (
                utc(2023, 1, 31, 6, 30),
                "P1M",
                Tz::UTC,
                utc(2023, 2, 28, 6, 30),
            ),
            (
                utc(2024, 1, 31, 6, 30),
                "P1M",
                Tz::UTC,
                utc(2024, 2, 29, 6, 30),
            ),
            (
                utc(2024, 1, 31, 5, 30),
                "P1M",
                berlin,
                utc(2024, 2, 29, 5, 30),
            ),
            (
                utc(2023, 1, 31, 5, 30),
                "P1M",
                berlin,
                utc(2023, 2, 28, 5, 30),
            ),
            // Berlin's 00:30 on Jan 31 is Jan 30 in UTC: the local date is what is stepped.
            (
                utc(2024, 1, 30, 23, 30),
                "P1M",
                berlin,
                utc(2024, 2, 28, 23, 30),
            ),
            // Years from Feb 29.
            (
                utc(2024, 2, 29, 12, 0),
                "P1Y",
                berlin,
                utc(2025, 2, 28, 12, 0),
            ),
            (
                utc(2024, 2, 29, 12, 0),
                "P4Y",
                berlin,
                utc(2028, 2, 29, 12, 0),
            ),
            // P6M across DST keeps 12:00 local: 11:00Z in January, 10:00Z in July.
            (
                utc(2024, 1, 15, 11, 0),
                "P6M",
                berlin,
                utc(2024, 7, 15, 10, 0),
            ),
            (
                utc(2024, 7, 15, 10, 0),
                "P6M",
                berlin,
                utc(2025, 1, 15, 11, 0),
            ),
            // PT24H across DST is 24 absolute hours; P1D is the next day at the same wall time.
            (
                utc(2024, 3, 30, 11, 0),
                "PT24H",
                berlin,
                utc(2024, 3, 31, 11, 0),
            ),
            (
                utc(2024, 3, 30, 11, 0),
                "P1D",
                berlin,
                utc(2024, 3, 31, 10, 0),
            ),
            (
                utc(2024, 10, 26, 10, 0),
                "PT24H",
                berlin,
                utc(2024, 10, 27, 10, 0),
            ),
            (
                utc(2024, 10, 26, 10, 0),
                "P1D",
                berlin,
                utc(2024, 10, 27, 11, 0),
            ),
            // Calendar part, resolved, then the time part: 12:00 CET + 1 day = 12:00 CEST,
            // plus 1 hour.
            (
                utc(2024, 3, 30, 11, 0),
                "P1DT1H",
                berlin,
                utc(2024, 3, 31, 11, 0),
            ),
            // Into the gap: 02:30 CET + P1D is 03:30 CEST.
            (
                utc(2024, 3, 30, 1, 30),
                "P1D",
                berlin,
                utc(2024, 3, 31, 1, 30),
            ),
            // Into the fold: 02:30 CEST + P1D is the earlier 02:30.
            (
                utc(2024, 10, 26, 0, 30),
                "P1D",
                berlin,
                utc(2024, 10, 27, 0, 30),
            ),
            // A pure time part keeps a fold instant exact (the later 02:30 stays later).
            (
                utc(2024, 10, 27, 1, 30),
                "PT1H",
                berlin,
                utc(2024, 10, 27, 2, 30),
            ),
            (
                utc(2024, 10, 27, 1, 30),
                "P0D",
                berlin,
                utc(2024, 10, 27, 1, 30),
            ),
            // Weeks in the Pacific zone across the US change.
            (
                utc(2024, 3, 3, 22, 0),
                "P2W",
                Tz::America__Los_Angeles,
                utc(2024, 3, 17, 21, 0),
            ),
        ];
        for (start, duration, zone, expected) in cases {
            let d: IsoDuration = duration.parse().unwrap();
            assert_eq!(
                add_in_zone(&d, start, zone),
                expected,
                "{start} + {duration} in {zone}"
            );
        }
    }

    #[test]
    fn add_in_zone_matches_add_to_in_utc_and_saturates() {
        let start = utc(2023, 8, 31, 17, 45);
        for duration in [
            "P1M", "P1Y6M", "P12W", "P7D", "PT4H", "P2DT3H", "P1M1D", "PT30M", "P10Y",
        ] {
            let d: IsoDuration = duration.parse().unwrap();
            assert_eq!(
                add_in_zone(&d, start, Tz::UTC),
                d.add_to(start),
                "{duration}"
            );
        }
        let huge = IsoDuration::years(u32::MAX);
        assert_eq!(checked_add_in_zone(&huge, start, Tz::Europe__Berlin), None);
        assert_eq!(
            add_in_zone(&huge, start, Tz::Europe__Berlin),
            DateTime::<Utc>::MAX_UTC
        );
        assert_eq!(
            add_in_zone(&IsoDuration::days(u32::MAX), start, Tz::UTC),
            DateTime::<Utc>::MAX_UTC
        );
    }
}
