//! When a scheduled backup is due: a pure function of the policy's schedule, when the
//! instance was protected, when its last scheduled backup was handled, and the time now.
//!
//! The host (`pgvault tick`, and `serve`'s loop) asks this for every protected instance. The
//! rules:
//!
//! - The backup due at `now` is the schedule's latest occurrence at or before `now`.
//! - It runs unless a scheduled backup job for the instance already started at or after it
//!   (any outcome: a failed scheduled backup is not retried until the next occurrence, as in
//!   Azure), or the instance was protected (or resumed) after it: a newly protected instance
//!   waits for its next occurrence.
//! - A schedule missed while the host was down runs **once** when the host is back, not once
//!   per missed occurrence; the job records the occurrence it stands for, how many were
//!   missed, and that it ran late.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use pgvault_core::engine::Result;
use pgvault_core::engine::backup::Trigger;
use pgvault_core::model::job::{Job, ScheduledRun};
use pgvault_core::model::schedule::Schedule;
use pgvault_core::store::manifest::Manifest;

use crate::service::Pgvault;

/// A backup that starts more than this after its occurrence is recorded as late.
pub const LATE_AFTER: TimeDelta = TimeDelta::minutes(5);

/// Missed occurrences are counted up to this many (the count is for the job's message).
const MAX_COUNTED: usize = 100_000;

/// A scheduled backup to run now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DueBackup {
    /// The occurrence this backup stands for.
    pub due: DateTime<Utc>,
    /// Started more than [`LATE_AFTER`] after `due`.
    pub late: bool,
    /// Occurrences before `due` that never ran (the host was down); they are not run.
    pub missed: usize,
}

/// A scheduled backup that is due.
#[derive(Debug, Clone)]
pub struct ScheduledWork {
    pub vault: String,
    pub instance: String,
    pub due: DueBackup,
}

impl Pgvault {
    /// Runs one due scheduled backup as a `ScheduledBackup` job recorded at `now`, tagged by
    /// the policy's tagging criteria.
    pub async fn run_scheduled(
        &self,
        work: &ScheduledWork,
        now: DateTime<Utc>,
    ) -> Result<(Job, Option<Manifest>)> {
        let due = &work.due;
        let mut details = BTreeMap::new();
        if due.missed > 0 {
            details.insert("MissedOccurrences".to_owned(), due.missed.to_string());
        }
        if due.late {
            tracing::warn!(vault = %work.vault, instance = %work.instance, due = %due.due, missed = due.missed, "running a scheduled backup late (the host was not running when it was due)");
        }
        self.backup_job(
            &work.vault,
            &work.instance,
            "",
            None,
            Trigger::Scheduled,
            now,
            details,
            Some(ScheduledRun {
                due_time: due.due,
                late: due.late,
            }),
        )
        .await
    }
}

/// The scheduled backup due at `now`, if any. `protected_since` is when the instance was last
/// protected or resumed; `last_started` when its latest scheduled backup job started.
pub fn due_backup(
    schedule: &Schedule,
    protected_since: Option<DateTime<Utc>>,
    last_started: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DueBackup> {
    let due = schedule.latest_at_or_before(now)?;
    if protected_since.is_some_and(|since| due < since) {
        return None;
    }
    if last_started.is_some_and(|started| started >= due) {
        return None;
    }
    // Occurrences after the last handled one (or the protection) and before `due`.
    let floor = [protected_since, last_started]
        .into_iter()
        .flatten()
        .max()
        .map(|t| t + TimeDelta::nanoseconds(1));
    let missed = match floor {
        Some(floor) if floor < due => schedule.occurrences(floor, due).take(MAX_COUNTED).count(),
        _ => 0,
    };
    Some(DueBackup {
        due,
        late: now - due > LATE_AFTER,
        missed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn what_is_due_when() {
        // Sundays 22:00 UTC.
        let weekly = Schedule::parse(&["R/2041-01-06T22:00:00+00:00/P1W"], Some("UTC")).unwrap();
        let protected = Some(t("2041-01-01T00:00:00Z"));
        // (now, last scheduled start, expected (due, late, missed))
        type Case<'a> = (&'a str, Option<&'a str>, Option<(&'a str, bool, usize)>);
        let cases: &[Case] = &[
            // Before the first occurrence: nothing.
            ("2041-01-06T21:59:59Z", None, None),
            // On time.
            (
                "2041-01-06T22:00:00Z",
                None,
                Some(("2041-01-06T22:00:00Z", false, 0)),
            ),
            (
                "2041-01-06T22:04:00Z",
                None,
                Some(("2041-01-06T22:00:00Z", false, 0)),
            ),
            // Already handled (even if it failed): nothing until the next occurrence.
            ("2041-01-07T10:00:00Z", Some("2041-01-06T22:00:01Z"), None),
            // The host was down three Sundays: the latest runs once, late, two missed.
            (
                "2041-01-28T09:00:00Z",
                Some("2041-01-06T22:00:00Z"),
                Some(("2041-01-27T22:00:00Z", true, 2)),
            ),
            // Never ran since protection: everything since protection counts as missed.
            (
                "2041-01-21T08:00:00Z",
                None,
                Some(("2041-01-20T22:00:00Z", true, 2)),
            ),
        ];
        for (now, last, expected) in cases {
            let got = due_backup(&weekly, protected, last.map(t), t(now));
            let expected = expected.map(|(due, late, missed)| DueBackup {
                due: t(due),
                late,
                missed,
            });
            assert_eq!(got, expected, "now {now}, last {last:?}");
        }
        // Protected after the latest occurrence: wait for the next one.
        assert_eq!(
            due_backup(
                &weekly,
                Some(t("2041-01-10T00:00:00Z")),
                None,
                t("2041-01-12T00:00:00Z")
            ),
            None
        );
    }
}
