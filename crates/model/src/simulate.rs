//! `backup-policy simulate`: what a policy keeps over years, before a user trusts it.
//!
//! Every scheduled backup in `[from, to)` is assumed to succeed at its scheduled time. Each is
//! tagged, planned and judged at `at` by the same functions the backup engine and the
//! retention sweep use ([`crate::retention`]), so the simulation is the vault's
//! behaviour, not a model of it.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::policy::{BackupPolicy, DataStoreType};
use crate::retention::{
    DataStoreSpan, Fate, RetentionPlan, policy_zone, retention_plan, schedule_trigger,
    scheduled_backup_tag, states_at,
};
use crate::schedule::{Schedule, ScheduleError};

/// A time as `simulate` takes it on the command line and in Rhai: RFC 3339
/// (`2025-01-01T02:00:00+01:00`) or a date, meaning its midnight in UTC.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc())
        .map_err(|_| {
            format!("{text:?} is not a time; write 2025-01-01 or 2025-01-01T02:00:00Z (RFC 3339)")
        })
}

/// Ten years of hourly backups is 87,600 points; more than this is a mistake in the window.
pub const MAX_SIMULATED_POINTS: usize = 1_000_000;

/// Why a simulation could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimulateError {
    #[error("the simulation window is empty: --from {from} is not before --to {to}")]
    EmptyWindow {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
    #[error(
        "the policy has no schedule trigger, so it takes no scheduled backups to simulate; add \
         one with `backup-policy trigger set`"
    )]
    NoSchedule,
    #[error("the policy's time zone: {0}")]
    TimeZone(ScheduleError),
    #[error("the policy's schedule, {field}: {source}")]
    Schedule {
        field: String,
        source: ScheduleError,
    },
    #[error(
        "the window holds more than {MAX_SIMULATED_POINTS} scheduled backups; simulate a \
         shorter window"
    )]
    TooManyPoints,
}

/// The result, serialized as the CLI prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Simulation {
    #[serde(skip)]
    pub from: DateTime<Utc>,
    #[serde(skip)]
    pub to: DateTime<Utc>,
    #[serde(skip)]
    pub at: DateTime<Utc>,
    pub recovery_points: Vec<SimulatedPoint>,
    pub summary: Summary,
}

/// One scheduled backup's recovery point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SimulatedPoint {
    pub recovery_point_time: DateTime<Utc>,
    pub retention_tag_name: String,
    /// Where the point lives and when: the vault tier, then the archive tier if its rule
    /// copies there. An `until` of `null` means kept: the last remaining point.
    pub data_stores: Vec<DataStoreSpan>,
    /// The datastores holding it at the as-of time; `[]` when deleted or not yet taken.
    pub state_at: Vec<DataStoreType>,
    /// Why it is where it is, in words, for `--output table`.
    #[serde(skip)]
    pub reason: String,
    #[serde(skip)]
    pub fate: Fate,
}

/// Counts at the as-of time. A point in both tiers (an immediate copy) counts in both; points
/// taken after the as-of time count nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Summary {
    #[serde(rename = "VaultStore")]
    pub vault_store: usize,
    #[serde(rename = "ArchiveStore")]
    pub archive_store: usize,
    #[serde(rename = "Deleted")]
    pub deleted: usize,
}

/// Simulates `policy` for backups in `[from, to)`, judged at `at`.
pub fn simulate(
    policy: &BackupPolicy,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    at: DateTime<Utc>,
) -> Result<Simulation, SimulateError> {
    if from >= to {
        return Err(SimulateError::EmptyWindow { from, to });
    }
    let trigger = schedule_trigger(policy).ok_or(SimulateError::NoSchedule)?;
    let zone = policy_zone(policy).map_err(SimulateError::TimeZone)?;
    let schedule = Schedule::parse(
        &trigger.schedule.repeating_time_intervals,
        trigger.schedule.time_zone.as_deref(),
    )
    .map_err(|mut errors| {
        let (field, source) = errors.remove(0);
        SimulateError::Schedule {
            field: field.json_path(),
            source,
        }
    })?;

    let mut plans: Vec<RetentionPlan> = Vec::new();
    let mut previous = None;
    for time in schedule.occurrences(from, to) {
        if plans.len() == MAX_SIMULATED_POINTS {
            return Err(SimulateError::TooManyPoints);
        }
        let tag = scheduled_backup_tag(policy, zone, time, previous);
        plans.push(retention_plan(policy, zone, time, &tag));
        previous = Some(time);
    }

    let states = states_at(&plans, at, true);
    let mut summary = Summary::default();
    let recovery_points = plans
        .into_iter()
        .zip(states)
        .map(|(plan, state)| {
            for store in &state.stores {
                match store {
                    DataStoreType::VaultStore => summary.vault_store += 1,
                    DataStoreType::ArchiveStore => summary.archive_store += 1,
                    DataStoreType::OperationalStore => {}
                }
            }
            if state.fate == Fate::Deleted {
                summary.deleted += 1;
            }
            let mut data_stores = plan.spans.clone();
            if state.kept_as_last
                && let Some(span) = data_stores
                    .iter_mut()
                    .find(|s| Some(&s.data_store_type) == state.stores.first())
            {
                span.until = None;
            }
            SimulatedPoint {
                recovery_point_time: plan.created,
                retention_tag_name: plan.tag.clone(),
                reason: reason(&plan, state.fate, at),
                data_stores,
                state_at: state.stores,
                fate: state.fate,
            }
        })
        .collect();
    Ok(Simulation {
        from,
        to,
        at,
        recovery_points,
        summary,
    })
}

/// Why a point is where it is at `at`: its rule, then its fate.
fn reason(plan: &RetentionPlan, fate: Fate, at: DateTime<Utc>) -> String {
    let rule = if plan.rule.eq_ignore_ascii_case(&plan.tag) {
        plan.description.clone()
    } else {
        format!(
            "{} (no rule named {}, so the default rule)",
            plan.description, plan.tag
        )
    };
    let date = |t: DateTime<Utc>| t.format("%Y-%m-%d").to_string();
    let fate = match fate {
        Fate::NotYetTaken => "taken after the as-of time".to_owned(),
        Fate::KeptAsLast => {
            "kept past its deletion: the last recovery point is never deleted".to_owned()
        }
        Fate::Deleted => match plan.final_deletion() {
            Some(t) => format!("deleted {}", date(t)),
            None => "deleted".to_owned(),
        },
        Fate::Retained => {
            let now: Vec<String> = plan
                .spans
                .iter()
                .filter(|s| s.holds_at(at))
                .map(|s| match s.until {
                    Some(until) => format!("in {} until {}", tier(s.data_store_type), date(until)),
                    None => format!("in {}", tier(s.data_store_type)),
                })
                .collect();
            now.join(", ")
        }
    };
    format!("{rule}; {fate}")
}

fn tier(store: DataStoreType) -> &'static str {
    match store {
        DataStoreType::VaultStore => "vault",
        DataStoreType::ArchiveStore => "archive",
        DataStoreType::OperationalStore => "operational store",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, Months, TimeZone};
    use serde_json::json;

    fn t(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    /// The default template's shape with the PowerShell walkthrough's Monthly rule: weekly on
    /// Sundays 22:00 UTC, Default kept 3 months in the vault, the first backup of each month
    /// tagged Monthly, kept 6 months in the vault, then moved to archive and kept 24 months.
    fn walkthrough_policy(intervals: &[&str]) -> BackupPolicy {
        BackupPolicy::from_json(
            &json!({
                "datasourceTypes": ["Microsoft.DBforPostgreSQL/servers/databases"],
                "objectType": "BackupPolicy",
                "policyRules": [
                    {
                        "name": "BackupWeekly", "objectType": "AzureBackupRule",
                        "dataStore": {"dataStoreType": "VaultStore", "objectType": "DataStoreInfoBase"},
                        "trigger": {
                            "objectType": "ScheduleBasedTriggerContext",
                            "schedule": {"repeatingTimeIntervals": intervals, "timeZone": "UTC"},
                            "taggingCriteria": [
                                {"isDefault": true, "taggingPriority": 99, "tagInfo": {"tagName": "Default"}},
                                {"isDefault": false, "taggingPriority": 15, "tagInfo": {"tagName": "Monthly"},
                                 "criteria": [{"objectType": "ScheduleBasedBackupCriteria", "absoluteCriteria": ["FirstOfMonth"]}]}
                            ]
                        }
                    },
                    {
                        "name": "Default", "objectType": "AzureRetentionRule", "isDefault": true,
                        "lifecycles": [{
                            "sourceDataStore": {"dataStoreType": "VaultStore", "objectType": "DataStoreInfoBase"},
                            "deleteAfter": {"duration": "P3M", "objectType": "AbsoluteDeleteOption"}
                        }]
                    },
                    {
                        "name": "Monthly", "objectType": "AzureRetentionRule", "isDefault": false,
                        "lifecycles": [
                            {
                                "sourceDataStore": {"dataStoreType": "VaultStore", "objectType": "DataStoreInfoBase"},
                                "deleteAfter": {"duration": "P6M", "objectType": "AbsoluteDeleteOption"},
                                "targetDataStoreCopySettings": {
                                    "dataStore": {"dataStoreType": "ArchiveStore", "objectType": "DataStoreInfoBase"},
                                    "copyAfter": {"objectType": "CopyOnExpiryOption"}
                                }
                            },
                            {
                                "sourceDataStore": {"dataStoreType": "ArchiveStore", "objectType": "DataStoreInfoBase"},
                                "deleteAfter": {"duration": "P24M", "objectType": "AbsoluteDeleteOption"}
                            }
                        ]
                    }
                ]
            })
            .to_string(),
        )
        .unwrap()
    }

    #[test]
    fn ten_years_of_the_walkthrough_policy_agree_with_plain_date_arithmetic() {
        let policy = walkthrough_policy(&["R/2024-01-07T22:00:00+00:00/P1W"]);
        let (from, to) = (t("2024-01-01T00:00:00Z"), t("2034-01-01T00:00:00Z"));
        for at in [
            t("2024-01-01T00:00:00Z"),
            t("2026-05-17T12:00:00Z"),
            t("2034-01-01T00:00:00Z"),
            t("2035-06-01T00:00:00Z"),
        ] {
            let sim = simulate(&policy, from, to, at).unwrap();
            // The oracle: every Sunday at 22:00; the first of its month is Monthly (a Sunday
            // is the month's first backup when its date is 1 to 7).
            let mut expected = Summary::default();
            let mut count = 0;
            let mut day = t("2024-01-07T22:00:00Z");
            let months = |n| Months::new(n);
            while day < to {
                let point = &sim.recovery_points[count];
                assert_eq!(point.recovery_point_time, day);
                let monthly = day.day() <= 7;
                assert_eq!(
                    point.retention_tag_name,
                    if monthly { "Monthly" } else { "Default" }
                );
                let stores: Vec<DataStoreType> = if day > at {
                    vec![]
                } else if monthly {
                    let moved = day.checked_add_months(months(6)).unwrap();
                    let gone = moved.checked_add_months(months(24)).unwrap();
                    if at < moved {
                        vec![DataStoreType::VaultStore]
                    } else if at < gone {
                        vec![DataStoreType::ArchiveStore]
                    } else {
                        vec![]
                    }
                } else if at < day.checked_add_months(months(3)).unwrap() {
                    vec![DataStoreType::VaultStore]
                } else {
                    vec![]
                };
                if day <= at {
                    match stores.first() {
                        Some(DataStoreType::VaultStore) => expected.vault_store += 1,
                        Some(_) => expected.archive_store += 1,
                        None => expected.deleted += 1,
                    }
                }
                assert_eq!(point.state_at, stores, "{day} at {at}");
                count += 1;
                day += chrono::TimeDelta::weeks(1);
            }
            assert_eq!(sim.recovery_points.len(), count);
            assert_eq!(sim.summary, expected, "at {at}");
        }
    }

    #[test]
    fn the_last_point_survives_long_after_the_schedule_ends() {
        let policy = walkthrough_policy(&["R/2024-01-07T22:00:00+00:00/P1W"]);
        let sim = simulate(
            &policy,
            t("2024-01-01T00:00:00Z"),
            t("2025-01-01T00:00:00Z"),
            t("2045-01-01T00:00:00Z"),
        )
        .unwrap();
        let kept: Vec<&SimulatedPoint> = sim
            .recovery_points
            .iter()
            .filter(|p| !p.state_at.is_empty())
            .collect();
        assert_eq!(kept.len(), 1);
        // The last Monthly point (Dec 1, 2024) is the one its plan deletes last: Dec 2026.
        assert_eq!(kept[0].recovery_point_time, t("2024-12-01T22:00:00Z"));
        assert_eq!(kept[0].state_at, [DataStoreType::ArchiveStore]);
        assert_eq!(kept[0].fate, Fate::KeptAsLast);
        assert_eq!(kept[0].data_stores[1].until, None);
        assert!(
            kept[0].reason.contains("never deleted"),
            "{}",
            kept[0].reason
        );
        assert_eq!(
            sim.summary,
            Summary {
                vault_store: 0,
                archive_store: 1,
                deleted: sim.recovery_points.len() - 1
            }
        );
    }

    #[test]
    fn several_intervals_and_hourly_schedules() {
        // The az CLI walkthrough's three days a week.
        let policy = walkthrough_policy(&[
            "R/2021-08-15T22:00:00+00:00/P1W",
            "R/2021-08-18T22:00:00+00:00/P1W",
            "R/2021-08-20T22:00:00+00:00/P1W",
        ]);
        let sim = simulate(
            &policy,
            t("2024-01-01T00:00:00Z"),
            t("2024-02-01T00:00:00Z"),
            t("2024-02-01T00:00:00Z"),
        )
        .unwrap();
        let days: Vec<String> = sim
            .recovery_points
            .iter()
            .map(|p| {
                format!(
                    "{} {}",
                    p.recovery_point_time.format("%a %d"),
                    p.retention_tag_name
                )
            })
            .collect();
        assert_eq!(
            days[..4],
            [
                "Wed 03 Monthly",
                "Fri 05 Default",
                "Sun 07 Default",
                "Wed 10 Default"
            ]
        );
        assert_eq!(days.len(), 13);

        // Ten years of backups every four hours: computed, not stepped from the start.
        let hourly = walkthrough_policy(&["R/2021-08-15T02:00:00+00:00/PT4H"]);
        let from = t("2024-01-01T00:00:00Z");
        let to = t("2034-01-01T00:00:00Z");
        let sim = simulate(&hourly, from, to, to).unwrap();
        let hours = (to - from).num_hours() as usize;
        assert_eq!(sim.recovery_points.len(), hours / 4);
        // One Monthly a month, the first backup of the month at 02:00 on the 1st.
        let monthly: Vec<_> = sim
            .recovery_points
            .iter()
            .filter(|p| p.retention_tag_name == "Monthly")
            .collect();
        assert_eq!(monthly.len(), 120);
        assert!(monthly.iter().all(|p| p.recovery_point_time.day() == 1
            && p.recovery_point_time.format("%H:%M").to_string() == "02:00"));
    }

    #[test]
    fn output_is_the_documented_json() {
        let policy = walkthrough_policy(&["R/2024-01-07T22:00:00+00:00/P1W"]);
        let sim = simulate(
            &policy,
            t("2024-01-01T00:00:00Z"),
            t("2024-01-08T00:00:00Z"),
            t("2024-08-01T00:00:00Z"),
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&sim).unwrap(),
            json!({
                "recoveryPoints": [{
                    "recoveryPointTime": "2024-01-07T22:00:00Z",
                    "retentionTagName": "Monthly",
                    "dataStores": [
                        {"dataStoreType": "VaultStore", "from": "2024-01-07T22:00:00Z", "until": "2024-07-07T22:00:00Z"},
                        {"dataStoreType": "ArchiveStore", "from": "2024-07-07T22:00:00Z", "until": "2026-07-07T22:00:00Z"}
                    ],
                    "stateAt": ["ArchiveStore"]
                }],
                "summary": {"VaultStore": 0, "ArchiveStore": 1, "Deleted": 0}
            })
        );
    }

    #[test]
    fn refusals_say_what_to_do() {
        let policy = walkthrough_policy(&["R/2024-01-07T22:00:00+00:00/P1W"]);
        let at = t("2024-01-01T00:00:00Z");
        assert!(matches!(
            simulate(&policy, at, at, at),
            Err(SimulateError::EmptyWindow { .. })
        ));
        let mut adhoc = policy.clone();
        if let crate::policy::PolicyRule::Backup(rule) = &mut adhoc.policy_rules[0] {
            rule.trigger = serde_json::from_value(json!({
                "objectType": "AdhocBasedTriggerContext",
                "taggingCriteria": {"tagInfo": {"tagName": "Default"}}
            }))
            .unwrap();
        }
        let error = simulate(&adhoc, at, t("2025-01-01T00:00:00Z"), at).unwrap_err();
        assert!(error.to_string().contains("trigger set"), "{error}");
        let _ = Utc.timestamp_opt(0, 0);
    }
}
