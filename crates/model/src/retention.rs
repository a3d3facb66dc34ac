//! The policy engine: which tag a backup gets, and where its recovery point lives and for how
//! long. Pure functions of the policy, the instance's history and a time given as a parameter;
//! the backup engine, the scheduler, the retention sweep and the simulator all call these, so
//! what `backup-policy simulate` shows is what the vault does.
//!
//! The rules, as the README states them:
//!
//! - **Tagging a scheduled backup.** Tagging criteria are tried in ascending
//!   `taggingPriority`; the first that matches names the tag; the default one matches when
//!   none other does. `FirstOfDay/Week/Month/Year` matches when the instance has no earlier
//!   successful recovery point in the same calendar day, ISO week (Monday to Sunday), month or
//!   year in the policy's time zone; `AllBackup` always matches. In generic criteria every
//!   field given must match (days of week, weeks of month where First is days 1 to 7 and Last
//!   is the month's last seven days, months, days of month, times of day); a tagging criteria
//!   with several criteria matches when any one of them does.
//! - **Tagging an on-demand backup.** It names a rule: a backup rule name (`BackupWeekly`)
//!   takes the default tag unless `--retention-tag-override` names another; a retention rule
//!   or tag name (`--rule-name Monthly`) takes that tag.
//! - **Retention.** A recovery point follows the retention rule named as its tag (the default
//!   rule when the policy no longer has one of that name). Its vault-tier lifecycle deletes it
//!   `deleteAfter` after its creation. A copy setting to ArchiveStore makes it enter the
//!   archive tier at creation (`ImmediateCopyOption`), at creation + the custom duration
//!   (`CustomCopyOption`), or when it expires from the vault tier (`CopyOnExpiryOption`, which
//!   is a move). The archive-tier lifecycle's `deleteAfter` counts from the time it entered
//!   the archive tier. Durations are calendar steps in the policy's time zone.
//! - **The last remaining recovery point of a protected instance is never deleted**: when
//!   every recovery point has expired, the one that would have been deleted last stays, in the
//!   tier it was last in, until a newer backup exists.

use std::fmt;

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::duration::IsoDuration;
use crate::policy::{
    AbsoluteMarker, BackupPolicy, CopyOption, DataStoreType, DayOfMonth,
    ScheduleBasedBackupCriteria, ScheduleBasedTriggerContext, Trigger, WeekNumber,
};
use crate::schedule::{ScheduleError, add_in_zone, parse_time_zone, schedule_time_of_day};

/// The tag the default tagging criteria carries when a policy has none (it always has one
/// once validated).
const DEFAULT_TAG: &str = "Default";

// ---------------------------------------------------------------------------------------------
// The policy's time zone
// ---------------------------------------------------------------------------------------------

/// The time zone the policy's schedule, tags and durations are reckoned in: its schedule
/// trigger's `timeZone`, UTC when it names none.
pub fn policy_zone(policy: &BackupPolicy) -> Result<Tz, ScheduleError> {
    parse_time_zone(schedule_trigger(policy).and_then(|t| t.schedule.time_zone.as_deref()))
}

/// The schedule trigger of the policy's first backup rule, if it has one.
pub fn schedule_trigger(policy: &BackupPolicy) -> Option<&ScheduleBasedTriggerContext> {
    match &policy.backup_rule()?.trigger {
        Trigger::Schedule(trigger) => Some(trigger),
        Trigger::Adhoc(_) => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Tagging
// ---------------------------------------------------------------------------------------------

/// The tag a scheduled backup taken at `time` gets. `previous` is the time of the instance's
/// latest successful recovery point before `time` (of any tag, on demand or scheduled), which
/// is all the `FirstOf...` criteria need: periods are contiguous, so an earlier point in the
/// same period exists exactly when the latest one is in it.
pub fn scheduled_backup_tag(
    policy: &BackupPolicy,
    zone: Tz,
    time: DateTime<Utc>,
    previous: Option<DateTime<Utc>>,
) -> String {
    let Some(trigger) = schedule_trigger(policy) else {
        return default_tag(policy);
    };
    for tagging in trigger.tagging_criteria_by_priority() {
        if tagging.is_default {
            continue;
        }
        if tagging
            .criteria
            .iter()
            .any(|criteria| criteria_matches(criteria, zone, time, previous))
        {
            return tagging.tag_info.tag_name.clone();
        }
    }
    default_tag(policy)
}

/// The name of the default tag: the schedule's default tagging criteria's, `Default` when
/// there is none.
pub fn default_tag(policy: &BackupPolicy) -> String {
    schedule_trigger(policy)
        .and_then(|t| t.tagging_criteria.iter().find(|c| c.is_default))
        .map(|c| c.tag_info.tag_name.clone())
        .unwrap_or_else(|| DEFAULT_TAG.to_owned())
}

/// Whether one `ScheduleBasedBackupCriteria` matches a backup at `time`: every list given must
/// contain the backup's value (an empty criteria matches nothing: it names no backup).
pub fn criteria_matches(
    criteria: &ScheduleBasedBackupCriteria,
    zone: Tz,
    time: DateTime<Utc>,
    previous: Option<DateTime<Utc>>,
) -> bool {
    let ScheduleBasedBackupCriteria {
        absolute_criteria,
        days_of_the_week,
        weeks_of_the_month,
        months_of_year,
        days_of_month,
        schedule_times,
    } = criteria;
    let given = !absolute_criteria.is_empty()
        || !days_of_the_week.is_empty()
        || !weeks_of_the_month.is_empty()
        || !months_of_year.is_empty()
        || !days_of_month.is_empty()
        || !schedule_times.is_empty();
    if !given {
        return false;
    }
    let local = time.with_timezone(&zone);
    let date = local.date_naive();
    let days_in_month = days_in_month(date.year(), date.month());

    let absolute_ok = absolute_criteria
        .iter()
        .all(|marker| absolute_matches(*marker, zone, time, previous));
    let weekday_ok = days_of_the_week.is_empty()
        || days_of_the_week
            .iter()
            .any(|d| chrono::Weekday::from(*d) == date.weekday());
    let week_ok = weeks_of_the_month.is_empty()
        || weeks_of_the_month
            .iter()
            .any(|w| week_matches(*w, date.day(), days_in_month));
    let month_ok =
        months_of_year.is_empty() || months_of_year.iter().any(|m| m.number() == date.month());
    let day_ok = days_of_month.is_empty()
        || days_of_month.iter().any(|d| match d {
            DayOfMonth::Date(n) => u32::from(*n) == date.day(),
            DayOfMonth::Last => date.day() == days_in_month,
        });
    let time_ok = schedule_times.is_empty()
        || schedule_times
            .iter()
            .filter_map(|text| schedule_time_of_day(text, zone))
            .any(|t| t.hour() == local.hour() && t.minute() == local.minute());
    absolute_ok && weekday_ok && week_ok && month_ok && day_ok && time_ok
}

fn absolute_matches(
    marker: AbsoluteMarker,
    zone: Tz,
    time: DateTime<Utc>,
    previous: Option<DateTime<Utc>>,
) -> bool {
    let Some(previous) = previous.filter(|p| *p < time) else {
        // No earlier recovery point at all: this is the first of every period.
        return true;
    };
    let (now, before) = (
        time.with_timezone(&zone).date_naive(),
        previous.with_timezone(&zone).date_naive(),
    );
    match marker {
        AbsoluteMarker::AllBackup => true,
        AbsoluteMarker::FirstOfDay => now != before,
        AbsoluteMarker::FirstOfWeek => now.iso_week() != before.iso_week(),
        AbsoluteMarker::FirstOfMonth => {
            (now.year(), now.month()) != (before.year(), before.month())
        }
        AbsoluteMarker::FirstOfYear => now.year() != before.year(),
    }
}

/// First is days 1 to 7, Second 8 to 14, Third 15 to 21, Fourth 22 to 28, Last the month's
/// last seven days (so day 25 of a 31-day month is both Fourth and Last).
fn week_matches(week: WeekNumber, day: u32, days_in_month: u32) -> bool {
    match week {
        WeekNumber::First => (1..=7).contains(&day),
        WeekNumber::Second => (8..=14).contains(&day),
        WeekNumber::Third => (15..=21).contains(&day),
        WeekNumber::Fourth => (22..=28).contains(&day),
        WeekNumber::Last => day + 7 > days_in_month,
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    chrono::NaiveDate::from_ymd_opt(next_year, next_month, 1)
        .and_then(|d| d.pred_opt())
        .map_or(31, |d| d.day())
}

/// Why an on-demand backup's rule name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleNameError {
    #[error(
        "the policy has no rule or tag named `{name}`; name a backup rule ({backup_rules}) or a \
         retention rule ({retention_rules})"
    )]
    Unknown {
        name: String,
        backup_rules: String,
        retention_rules: String,
    },
    #[error(
        "the retention tag override `{name}` names no retention rule of the policy; its rules \
         are: {retention_rules}"
    )]
    UnknownOverride {
        name: String,
        retention_rules: String,
    },
    #[error(
        "`{rule}` is a retention rule, which already names the tag; a retention tag override \
         applies only with a backup rule name such as `{backup_rule}`"
    )]
    OverrideWithRetentionRule { rule: String, backup_rule: String },
}

/// The tag an on-demand backup gets from the rule it names (`--rule-name`) and an optional
/// `--retention-tag-override`, names matched case-insensitively and returned as the policy
/// spells them.
pub fn on_demand_backup_tag(
    policy: &BackupPolicy,
    rule_name: &str,
    tag_override: Option<&str>,
) -> Result<String, RuleNameError> {
    let retention_rules = || policy.retention_rule_names().join(", ");
    let backup_rules = || {
        policy
            .backup_rules()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rule_name = rule_name.trim();
    if policy
        .backup_rules()
        .any(|r| r.name.eq_ignore_ascii_case(rule_name))
    {
        return match tag_override {
            None => Ok(default_tag(policy)),
            Some(tag) => policy
                .retention_rule(tag.trim())
                .map(|r| r.name.clone())
                .ok_or_else(|| RuleNameError::UnknownOverride {
                    name: tag.to_owned(),
                    retention_rules: retention_rules(),
                }),
        };
    }
    let tag = policy
        .retention_rule(rule_name)
        .map(|r| r.name.clone())
        .or_else(|| {
            schedule_trigger(policy).and_then(|t| {
                t.tagging_criteria
                    .iter()
                    .find(|c| c.tag_info.tag_name.eq_ignore_ascii_case(rule_name))
                    .map(|c| c.tag_info.tag_name.clone())
            })
        })
        .ok_or_else(|| RuleNameError::Unknown {
            name: rule_name.to_owned(),
            backup_rules: backup_rules(),
            retention_rules: retention_rules(),
        })?;
    match tag_override {
        Some(_) => Err(RuleNameError::OverrideWithRetentionRule {
            rule: tag,
            backup_rule: policy
                .backup_rule()
                .map_or_else(|| "BackupWeekly".to_owned(), |r| r.name.clone()),
        }),
        None => Ok(tag),
    }
}

// ---------------------------------------------------------------------------------------------
// Retention plans
// ---------------------------------------------------------------------------------------------

/// A stretch of time a recovery point spends in one datastore: `[from, until)`. `until` is
/// `None` only for a point kept because it is the last one remaining.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DataStoreSpan {
    pub data_store_type: DataStoreType,
    pub from: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
}

impl DataStoreSpan {
    /// Whether the point is in this datastore at `at`.
    pub fn holds_at(&self, at: DateTime<Utc>) -> bool {
        self.from <= at && self.until.is_none_or(|until| at < until)
    }
}

/// Where a recovery point lives over its life, as its policy decides at its creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPlan {
    pub created: DateTime<Utc>,
    /// The tag, which names the retention rule followed.
    pub tag: String,
    /// The retention rule actually followed: the tag's, or the default rule's when the policy
    /// has no rule of that name.
    pub rule: String,
    /// The vault-tier span first, then the archive-tier span if the rule copies there.
    pub spans: Vec<DataStoreSpan>,
    /// What the rule says, for people: `Monthly: P6M in vault, then moved to archive for P24M`.
    pub description: String,
}

impl RetentionPlan {
    /// The datastores holding the point at `at`, by the plan alone (no last-point rule).
    pub fn stores_at(&self, at: DateTime<Utc>) -> Vec<DataStoreType> {
        self.spans
            .iter()
            .filter(|s| s.holds_at(at))
            .map(|s| s.data_store_type)
            .collect()
    }

    /// When the point leaves its last datastore: the latest `until` of its spans.
    pub fn final_deletion(&self) -> Option<DateTime<Utc>> {
        self.spans
            .iter()
            .map(|s| s.until)
            .try_fold(DateTime::<Utc>::MIN_UTC, |latest, until| {
                until.map(|u| latest.max(u))
            })
    }
}

/// The retention plan of a recovery point created at `created` with tag `tag`.
pub fn retention_plan(
    policy: &BackupPolicy,
    zone: Tz,
    created: DateTime<Utc>,
    tag: &str,
) -> RetentionPlan {
    let rule = policy
        .retention_rule(tag)
        .or_else(|| policy.default_retention_rule());
    let mut plan = RetentionPlan {
        created,
        tag: tag.to_owned(),
        rule: rule.map_or_else(|| DEFAULT_TAG.to_owned(), |r| r.name.clone()),
        spans: Vec::new(),
        description: String::new(),
    };
    let Some(rule) = rule else {
        // No rule at all (an invalid policy): kept in the vault, never planned for deletion.
        plan.spans.push(DataStoreSpan {
            data_store_type: DataStoreType::VaultStore,
            from: created,
            until: None,
        });
        plan.description = "no retention rule: kept".to_owned();
        return plan;
    };
    let add = |d: &IsoDuration, t: DateTime<Utc>| add_in_zone(d, t, zone);
    let vault_life = rule.vault_store_lifecycle();
    let vault_keep = vault_life.map(|l| l.delete_after.duration);
    let vault_until = vault_keep.map(|d| add(&d, created));
    plan.spans.push(DataStoreSpan {
        data_store_type: DataStoreType::VaultStore,
        from: created,
        until: vault_until,
    });
    let mut description = format!(
        "{}: {} in vault",
        rule.name,
        vault_keep.map_or_else(|| "kept".to_owned(), |d| d.to_string())
    );

    let copy = vault_life.and_then(|l| {
        l.target_data_store_copy_settings
            .iter()
            .find(|c| c.data_store.data_store_type == DataStoreType::ArchiveStore)
    });
    let archive_keep = rule
        .lifecycle(DataStoreType::ArchiveStore)
        .map(|l| l.delete_after.duration);
    if let (Some(copy), Some(archive_keep)) = (copy, archive_keep) {
        let (entry, how) = match copy.copy_after {
            CopyOption::Immediate => (Some(created), "copied to archive at once".to_owned()),
            CopyOption::Custom(custom) => (
                Some(add(&custom.duration, created)),
                format!("copied to archive after {}", custom.duration),
            ),
            CopyOption::CopyOnExpiry => (vault_until, "then moved to archive".to_owned()),
        };
        if let Some(entry) = entry {
            plan.spans.push(DataStoreSpan {
                data_store_type: DataStoreType::ArchiveStore,
                from: entry,
                until: Some(add(&archive_keep, entry)),
            });
            description.push_str(&format!(", {how} for {archive_keep}"));
        }
    }
    plan.description = description;
    plan
}

// ---------------------------------------------------------------------------------------------
// State at a time, with the last-point rule
// ---------------------------------------------------------------------------------------------

/// Where one recovery point is at a given time, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointState {
    /// The datastores holding it; empty when it is deleted (or not yet taken).
    pub stores: Vec<DataStoreType>,
    /// Kept past its planned deletion because it is the instance's last recovery point.
    pub kept_as_last: bool,
    pub fate: Fate,
}

/// What has become of a recovery point at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Taken after the time asked about.
    NotYetTaken,
    /// In the datastores its plan says.
    Retained,
    /// Past its planned deletion, kept as the last remaining recovery point.
    KeptAsLast,
    /// Deleted from every datastore.
    Deleted,
}

impl fmt::Display for Fate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fate::NotYetTaken => "not yet taken",
            Fate::Retained => "retained",
            Fate::KeptAsLast => "kept as the last recovery point",
            Fate::Deleted => "deleted",
        })
    }
}

/// The state at `at` of every recovery point of one instance, in the order given. With
/// `keep_last` (a protected instance), when every point taken by `at` is past its planned
/// deletion, the one planned to be deleted last (the newest among equals) is kept in the
/// datastore it was last in.
pub fn states_at(plans: &[RetentionPlan], at: DateTime<Utc>, keep_last: bool) -> Vec<PointState> {
    let mut states: Vec<PointState> = plans
        .iter()
        .map(|plan| {
            if plan.created > at {
                return PointState {
                    stores: Vec::new(),
                    kept_as_last: false,
                    fate: Fate::NotYetTaken,
                };
            }
            let stores = plan.stores_at(at);
            let fate = if stores.is_empty() {
                Fate::Deleted
            } else {
                Fate::Retained
            };
            PointState {
                stores,
                kept_as_last: false,
                fate,
            }
        })
        .collect();
    let any_taken = states.iter().any(|s| s.fate != Fate::NotYetTaken);
    let any_retained = states.iter().any(|s| s.fate == Fate::Retained);
    if keep_last && any_taken && !any_retained {
        let last = plans
            .iter()
            .enumerate()
            .filter(|(_, plan)| plan.created <= at)
            .max_by_key(|(_, plan)| (plan.final_deletion(), plan.created))
            .map(|(i, _)| i);
        if let Some(i) = last {
            let store = plans[i]
                .spans
                .iter()
                .max_by_key(|s| (s.until, s.data_store_type == DataStoreType::ArchiveStore))
                .map_or(DataStoreType::VaultStore, |s| s.data_store_type);
            states[i] = PointState {
                stores: vec![store],
                kept_as_last: true,
                fate: Fate::KeptAsLast,
            };
        }
    }
    states
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::{Value, json};

    fn t(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .with_timezone(&Utc)
    }

    fn lifecycle(store: &str, keep: &str, copy: Option<Value>) -> Value {
        let mut l = json!({
            "sourceDataStore": {"dataStoreType": store, "objectType": "DataStoreInfoBase"},
            "deleteAfter": {"duration": keep, "objectType": "AbsoluteDeleteOption"},
        });
        if let Some(copy_after) = copy {
            l["targetDataStoreCopySettings"] = json!([{
                "dataStore": {"dataStoreType": "ArchiveStore", "objectType": "DataStoreInfoBase"},
                "copyAfter": copy_after,
            }]);
        }
        l
    }

    /// A policy with the given tags (name, priority, criteria) and retention rules (name,
    /// lifecycles), a weekly schedule, in `zone`.
    fn policy(
        zone: &str,
        tags: &[(&str, i64, Value)],
        rules: &[(&str, Vec<Value>)],
    ) -> BackupPolicy {
        let mut tagging = vec![json!({
            "isDefault": true, "taggingPriority": 99, "tagInfo": {"tagName": "Default"}
        })];
        for (name, priority, criteria) in tags {
            tagging.push(json!({
                "isDefault": false, "taggingPriority": priority,
                "tagInfo": {"tagName": name}, "criteria": criteria
            }));
        }
        let mut policy_rules = vec![json!({
            "name": "BackupWeekly", "objectType": "AzureBackupRule",
            "backupParameters": {"backupType": "Full", "objectType": "AzureBackupParams"},
            "dataStore": {"dataStoreType": "VaultStore", "objectType": "DataStoreInfoBase"},
            "trigger": {
                "objectType": "ScheduleBasedTriggerContext",
                "schedule": {
                    "repeatingTimeIntervals": ["R/2024-01-07T22:00:00+00:00/P1W"],
                    "timeZone": zone
                },
                "taggingCriteria": tagging
            }
        })];
        let mut has_default = false;
        for (name, lifecycles) in rules {
            has_default |= *name == "Default";
            policy_rules.push(json!({
                "name": name, "objectType": "AzureRetentionRule",
                "isDefault": *name == "Default", "lifecycles": lifecycles
            }));
        }
        if !has_default {
            policy_rules.push(json!({
                "name": "Default", "objectType": "AzureRetentionRule", "isDefault": true,
                "lifecycles": [lifecycle("VaultStore", "P3M", None)]
            }));
        }
        let body = json!({
            "datasourceTypes": ["Microsoft.DBforPostgreSQL/flexibleServers/databases"],
            "objectType": "BackupPolicy",
            "policyRules": policy_rules
        });
        let policy = BackupPolicy::parse_value(body).unwrap();
        assert_eq!(policy.validate(), Ok(()));
        policy
    }

    fn absolute(marker: &str) -> Value {
        json!([{"objectType": "ScheduleBasedBackupCriteria", "absoluteCriteria": [marker]}])
    }

    fn keep(store: &str) -> Vec<Value> {
        vec![lifecycle(store, "P1Y", None)]
    }

    fn first_of_policy(zone: &str) -> BackupPolicy {
        policy(
            zone,
            &[
                ("Weekly", 20, absolute("FirstOfWeek")),
                ("Yearly", 10, absolute("FirstOfYear")),
                ("Monthly", 15, absolute("FirstOfMonth")),
            ],
            &[
                ("Weekly", keep("VaultStore")),
                ("Monthly", keep("VaultStore")),
                ("Yearly", keep("VaultStore")),
            ],
        )
    }

    #[test]
    fn first_of_criteria_by_priority() {
        let p = first_of_policy("UTC");
        let zone = policy_zone(&p).unwrap();
        // (backup time, latest earlier recovery point, tag)
        let cases: &[(&str, Option<&str>, &str)] = &[
            ("2024-01-07T22:00:00Z", None, "Yearly"),
            // Monday 2024-01-01 and Sunday 2024-01-07 share ISO week 1.
            (
                "2024-01-07T22:00:00Z",
                Some("2024-01-01T09:00:00Z"),
                "Default",
            ),
            (
                "2024-01-08T22:00:00Z",
                Some("2024-01-07T22:00:00Z"),
                "Weekly",
            ),
            // A new month on a Thursday, same ISO week as the previous backup: Monthly wins
            // over Weekly by priority only when both match; here only Monthly does.
            (
                "2024-02-01T22:00:00Z",
                Some("2024-01-29T22:00:00Z"),
                "Monthly",
            ),
            // New week and new month: Monthly (15) before Weekly (20).
            (
                "2024-04-01T22:00:00Z",
                Some("2024-03-31T22:00:00Z"),
                "Monthly",
            ),
            // New year, new month, new week: Yearly (10) first.
            (
                "2025-01-06T22:00:00Z",
                Some("2024-12-29T22:00:00Z"),
                "Yearly",
            ),
            // 2024-12-30 is in ISO week 1 of 2025, but it is still 2024: not FirstOfYear,
            // and the same month as the previous backup.
            (
                "2024-12-30T22:00:00Z",
                Some("2024-12-23T22:00:00Z"),
                "Weekly",
            ),
            // A previous point after the backup is ignored (history out of order).
            (
                "2024-03-05T22:00:00Z",
                Some("2024-03-09T22:00:00Z"),
                "Yearly",
            ),
        ];
        for (time, previous, tag) in cases {
            assert_eq!(
                scheduled_backup_tag(&p, zone, t(time), previous.map(t)),
                *tag,
                "{time} after {previous:?}"
            );
        }
    }

    #[test]
    fn first_of_periods_are_in_the_policy_time_zone() {
        let p = first_of_policy("Pacific Standard Time");
        let zone = policy_zone(&p).unwrap();
        // 2024-03-01T05:00Z is 2024-02-29 21:00 in Los Angeles: still February there.
        assert_eq!(
            scheduled_backup_tag(
                &p,
                zone,
                t("2024-03-01T05:00:00Z"),
                Some(t("2024-02-26T20:00:00Z"))
            ),
            "Default"
        );
        // In UTC it would be the first of March.
        let utc = first_of_policy("UTC");
        assert_eq!(
            scheduled_backup_tag(
                &utc,
                chrono_tz::UTC,
                t("2024-03-01T05:00:00Z"),
                Some(t("2024-02-26T20:00:00Z"))
            ),
            "Monthly"
        );
    }

    #[test]
    fn generic_criteria_match_every_field_given() {
        let criteria = |v: Value| -> ScheduleBasedBackupCriteria {
            crate::policy::from_lenient_value(v).unwrap()
        };
        let zone = chrono_tz::UTC;
        // (criteria, time, matches)
        let cases: Vec<(Value, &str, bool)> = vec![
            (
                json!({"daysOfTheWeek": ["Sunday", "Friday"]}),
                "2024-01-07T22:00:00Z",
                true,
            ),
            (
                json!({"daysOfTheWeek": ["Sunday", "Friday"]}),
                "2024-01-08T22:00:00Z",
                false,
            ),
            (
                json!({"weeksOfTheMonth": ["First"]}),
                "2024-01-07T22:00:00Z",
                true,
            ),
            (
                json!({"weeksOfTheMonth": ["First"]}),
                "2024-01-08T22:00:00Z",
                false,
            ),
            (
                json!({"weeksOfTheMonth": ["Second"]}),
                "2024-01-08T22:00:00Z",
                true,
            ),
            (
                json!({"weeksOfTheMonth": ["Fourth"]}),
                "2024-01-28T22:00:00Z",
                true,
            ),
            (
                json!({"weeksOfTheMonth": ["Fourth"]}),
                "2024-01-29T22:00:00Z",
                false,
            ),
            // Last: the month's last seven days; February 2024 has 29, so 23 to 29.
            (
                json!({"weeksOfTheMonth": ["Last"]}),
                "2024-02-23T10:00:00Z",
                true,
            ),
            (
                json!({"weeksOfTheMonth": ["Last"]}),
                "2024-02-22T10:00:00Z",
                false,
            ),
            (
                json!({"weeksOfTheMonth": ["Last"]}),
                "2024-01-25T10:00:00Z",
                true,
            ),
            (
                json!({"monthsOfYear": ["December"]}),
                "2024-12-01T10:00:00Z",
                true,
            ),
            (
                json!({"monthsOfYear": ["December"]}),
                "2024-11-30T10:00:00Z",
                false,
            ),
            (
                json!({"daysOfMonth": [{"date": 28}]}),
                "2024-02-28T10:00:00Z",
                true,
            ),
            (
                json!({"daysOfMonth": [{"isLast": true}]}),
                "2024-02-28T10:00:00Z",
                false,
            ),
            (
                json!({"daysOfMonth": [{"isLast": true}]}),
                "2024-02-29T10:00:00Z",
                true,
            ),
            (
                json!({"daysOfMonth": [{"isLast": true}]}),
                "2023-02-28T10:00:00Z",
                true,
            ),
            (
                json!({"scheduleTimes": ["2019-03-01T22:00:00Z"]}),
                "2024-01-07T22:00:00Z",
                true,
            ),
            (
                json!({"scheduleTimes": ["2019-03-01T22:00:00Z"]}),
                "2024-01-07T21:00:00Z",
                false,
            ),
            // Every field given must match: the first Sunday of the month.
            (
                json!({"daysOfTheWeek": ["Sunday"], "weeksOfTheMonth": ["First"]}),
                "2024-01-07T22:00:00Z",
                true,
            ),
            (
                json!({"daysOfTheWeek": ["Sunday"], "weeksOfTheMonth": ["First"]}),
                "2024-01-14T22:00:00Z",
                false,
            ),
            // The last day of December only.
            (
                json!({"monthsOfYear": ["December"], "daysOfMonth": [{"isLast": true}]}),
                "2024-12-31T22:00:00Z",
                true,
            ),
            (
                json!({"monthsOfYear": ["December"], "daysOfMonth": [{"isLast": true}]}),
                "2024-11-30T22:00:00Z",
                false,
            ),
            (
                json!({"absoluteCriteria": ["AllBackup"]}),
                "2024-11-30T22:00:00Z",
                true,
            ),
            // Nothing given names no backup.
            (json!({}), "2024-11-30T22:00:00Z", false),
        ];
        for (c, time, expected) in cases {
            assert_eq!(
                criteria_matches(
                    &criteria(c.clone()),
                    zone,
                    t(time),
                    Some(t("2020-01-01T00:00:00Z"))
                ),
                expected,
                "{c} at {time}"
            );
        }
        // Days are the policy's: 2024-01-08T02:00Z is Sunday evening in Los Angeles.
        let la: Tz = "America/Los_Angeles".parse().unwrap();
        assert!(criteria_matches(
            &criteria(json!({"daysOfTheWeek": ["Sunday"]})),
            la,
            t("2024-01-08T02:00:00Z"),
            None
        ));
    }

    #[test]
    fn tags_fall_through_by_priority_to_the_default() {
        let p = policy(
            "UTC",
            &[
                (
                    "Monthly",
                    15,
                    json!([{"daysOfTheWeek": ["Sunday"], "weeksOfTheMonth": ["First"]}]),
                ),
                (
                    "Weekly",
                    20,
                    json!([{"daysOfTheWeek": ["Friday"]}, {"daysOfTheWeek": ["Sunday"]}]),
                ),
            ],
            &[
                ("Monthly", keep("VaultStore")),
                ("Weekly", keep("VaultStore")),
            ],
        );
        let previous = Some(t("2024-01-01T00:00:00Z"));
        let tag = |time| scheduled_backup_tag(&p, chrono_tz::UTC, t(time), previous);
        assert_eq!(tag("2024-01-07T22:00:00Z"), "Monthly"); // first Sunday: both match
        assert_eq!(tag("2024-01-14T22:00:00Z"), "Weekly"); // second criteria of Weekly
        assert_eq!(tag("2024-01-12T22:00:00Z"), "Weekly"); // Friday
        assert_eq!(tag("2024-01-10T22:00:00Z"), "Default"); // Wednesday
    }

    #[test]
    fn on_demand_rule_names() {
        let p = first_of_policy("UTC");
        // (rule name, override, result)
        let cases: &[(&str, Option<&str>, Result<&str, &str>)] = &[
            ("BackupWeekly", None, Ok("Default")),
            ("backupweekly", None, Ok("Default")),
            ("BackupWeekly", Some("monthly"), Ok("Monthly")),
            ("Monthly", None, Ok("Monthly")),
            ("yearly", None, Ok("Yearly")),
            ("Default", None, Ok("Default")),
            (
                "Monthly",
                Some("Yearly"),
                Err("applies only with a backup rule name"),
            ),
            (
                "BackupWeekly",
                Some("Quarterly"),
                Err("override `Quarterly` names no retention rule"),
            ),
            ("Quarterly", None, Err("no rule or tag named `Quarterly`")),
        ];
        for (rule, tag_override, expected) in cases {
            let got = on_demand_backup_tag(&p, rule, *tag_override);
            match expected {
                Ok(tag) => assert_eq!(got.as_deref(), Ok(*tag), "{rule} {tag_override:?}"),
                Err(text) => {
                    let message = got.unwrap_err().to_string();
                    assert!(message.contains(text), "{rule}: {message}");
                }
            }
        }
    }

    #[test]
    fn retention_plans_for_each_copy_option() {
        let copy = |kind: &str| json!({"objectType": kind});
        let custom = json!({"objectType": "CustomCopyOption", "duration": "P1M"});
        let p = policy(
            "UTC",
            &[
                ("Weekly", 20, absolute("FirstOfWeek")),
                ("Monthly", 15, absolute("FirstOfMonth")),
                ("Yearly", 10, absolute("FirstOfYear")),
            ],
            &[
                // The PowerShell walkthrough: six months in the vault, moved to archive, kept
                // there 24 months.
                (
                    "Monthly",
                    vec![
                        lifecycle("VaultStore", "P6M", Some(copy("CopyOnExpiryOption"))),
                        lifecycle("ArchiveStore", "P24M", None),
                    ],
                ),
                (
                    "Yearly",
                    vec![
                        lifecycle("VaultStore", "P1Y", Some(copy("ImmediateCopyOption"))),
                        lifecycle("ArchiveStore", "P10Y", None),
                    ],
                ),
                (
                    "Weekly",
                    vec![
                        lifecycle("VaultStore", "P3M", Some(custom)),
                        lifecycle("ArchiveStore", "P6M", None),
                    ],
                ),
            ],
        );
        let created = t("2024-01-31T22:00:00Z");
        let span = |store, from: &str, until: &str| DataStoreSpan {
            data_store_type: store,
            from: t(from),
            until: Some(t(until)),
        };
        use DataStoreType::{ArchiveStore, VaultStore};
        // (tag, spans)
        let cases = [
            (
                "Default",
                vec![span(
                    VaultStore,
                    "2024-01-31T22:00:00Z",
                    "2024-04-30T22:00:00Z",
                )],
            ),
            (
                "Monthly",
                vec![
                    // Jan 31 + 6 months: July 31; + 24 months: July 31, 2026.
                    span(VaultStore, "2024-01-31T22:00:00Z", "2024-07-31T22:00:00Z"),
                    span(ArchiveStore, "2024-07-31T22:00:00Z", "2026-07-31T22:00:00Z"),
                ],
            ),
            (
                "Yearly",
                vec![
                    span(VaultStore, "2024-01-31T22:00:00Z", "2025-01-31T22:00:00Z"),
                    span(ArchiveStore, "2024-01-31T22:00:00Z", "2034-01-31T22:00:00Z"),
                ],
            ),
            (
                "Weekly",
                vec![
                    // Jan 31 + 1 month lands on Feb 29 (2024 is a leap year).
                    span(VaultStore, "2024-01-31T22:00:00Z", "2024-04-30T22:00:00Z"),
                    span(ArchiveStore, "2024-02-29T22:00:00Z", "2024-08-29T22:00:00Z"),
                ],
            ),
            // A tag the policy no longer has a rule for follows the default rule.
            (
                "Quarterly",
                vec![span(
                    VaultStore,
                    "2024-01-31T22:00:00Z",
                    "2024-04-30T22:00:00Z",
                )],
            ),
        ];
        for (tag, spans) in cases {
            let plan = retention_plan(&p, chrono_tz::UTC, created, tag);
            assert_eq!(plan.spans, spans, "{tag}");
        }
        let plan = retention_plan(&p, chrono_tz::UTC, created, "Quarterly");
        assert_eq!(plan.rule, "Default");
        assert_eq!(
            retention_plan(&p, chrono_tz::UTC, created, "Monthly").description,
            "Monthly: P6M in vault, then moved to archive for P24M"
        );
    }

    #[test]
    fn retention_durations_are_calendar_steps_in_the_policy_zone() {
        let p = policy("W. Europe Standard Time", &[], &[]);
        let zone = policy_zone(&p).unwrap();
        // 23:30 on Jan 31 in Berlin (22:30Z, winter time) + P3M = 23:30 on Apr 30 in Berlin,
        // which is 21:30Z in summer time. In UTC it would have been Apr 30 22:30Z.
        let created = t("2024-01-31T22:30:00Z");
        let plan = retention_plan(&p, zone, created, "Default");
        assert_eq!(plan.spans[0].until, Some(t("2024-04-30T21:30:00Z")));
        assert_eq!(
            zone.from_utc_datetime(&plan.spans[0].until.unwrap().naive_utc())
                .to_string(),
            "2024-04-30 23:30:00 CEST"
        );
    }

    #[test]
    fn the_last_recovery_point_is_never_deleted() {
        let p = policy(
            "UTC",
            &[("Yearly", 10, absolute("FirstOfYear"))],
            &[(
                "Yearly",
                vec![
                    lifecycle(
                        "VaultStore",
                        "P1M",
                        Some(json!({"objectType": "CopyOnExpiryOption"})),
                    ),
                    lifecycle("ArchiveStore", "P6M", None),
                ],
            )],
        );
        let plans = vec![
            // Yearly: vault until Feb 1, archive until Aug 1.
            retention_plan(&p, chrono_tz::UTC, t("2024-01-01T00:00:00Z"), "Yearly"),
            // Default: vault until May 8.
            retention_plan(&p, chrono_tz::UTC, t("2024-02-08T00:00:00Z"), "Default"),
        ];
        use DataStoreType::{ArchiveStore, VaultStore};
        // (at, keep_last, stores of each, fates)
        /// (at, keep_last, stores of each point, fate of each point)
        type Case<'a> = (&'a str, bool, [&'a [DataStoreType]; 2], [Fate; 2]);
        let cases: &[Case] = &[
            (
                "2023-12-01T00:00:00Z",
                true,
                [&[], &[]],
                [Fate::NotYetTaken, Fate::NotYetTaken],
            ),
            (
                "2024-01-15T00:00:00Z",
                true,
                [&[VaultStore], &[]],
                [Fate::Retained, Fate::NotYetTaken],
            ),
            (
                "2024-03-01T00:00:00Z",
                true,
                [&[ArchiveStore], &[VaultStore]],
                [Fate::Retained, Fate::Retained],
            ),
            (
                "2024-06-01T00:00:00Z",
                true,
                [&[ArchiveStore], &[]],
                [Fate::Retained, Fate::Deleted],
            ),
            // Both past their deletion: the one deleted last (the Yearly, in archive) stays.
            (
                "2024-09-01T00:00:00Z",
                true,
                [&[ArchiveStore], &[]],
                [Fate::KeptAsLast, Fate::Deleted],
            ),
            (
                "2034-09-01T00:00:00Z",
                true,
                [&[ArchiveStore], &[]],
                [Fate::KeptAsLast, Fate::Deleted],
            ),
            // An instance no longer protected keeps nothing past its retention.
            (
                "2024-09-01T00:00:00Z",
                false,
                [&[], &[]],
                [Fate::Deleted, Fate::Deleted],
            ),
        ];
        for (at, keep_last, stores, fates) in cases {
            let states = states_at(&plans, t(at), *keep_last);
            for i in 0..2 {
                assert_eq!(states[i].stores, stores[i], "{at} point {i}");
                assert_eq!(states[i].fate, fates[i], "{at} point {i}");
            }
        }
        // Only the older point expired, with a newer one retained: nothing is kept.
        let one = retention_plan(&p, chrono_tz::UTC, t("2024-01-01T00:00:00Z"), "Default");
        let two = retention_plan(&p, chrono_tz::UTC, t("2024-06-01T00:00:00Z"), "Default");
        let states = states_at(&[one, two], t("2024-07-01T00:00:00Z"), true);
        assert_eq!(states[0].fate, Fate::Deleted);
        assert_eq!(states[1].fate, Fate::Retained);
    }
}
