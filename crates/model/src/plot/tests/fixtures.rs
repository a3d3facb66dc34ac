//! Realistic simulations for the plot's tests: policies written as the JSON a user gives
//! (`BackupPolicy::from_json`, so they pass the same validation) and run through the real
//! simulator, so that the plot is tested on the shapes `backup-policy simulate` produces.
//!
//! This module depends on nothing of the plot, so that a throwaway program can include it
//! with `#[path]` to draw the README's example from the very same policy.

use crate::policy::BackupPolicy;
use crate::simulate::{Simulation, simulate};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};

pub fn utc(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
}

fn store(name: &str) -> Value {
    json!({"dataStoreType": name, "objectType": "DataStoreInfoBase"})
}

/// A tagging criteria that tags the first backup of a calendar period (`FirstOfYear`, ...).
fn first_of(tag: &str, priority: u32, marker: &str) -> Value {
    json!({
        "isDefault": false, "taggingPriority": priority, "tagInfo": {"tagName": tag},
        "criteria": [{"objectType": "ScheduleBasedBackupCriteria", "absoluteCriteria": [marker]}]
    })
}

/// A retention rule: `vault` in the vault tier, then, with `archive`, moved to the archive
/// tier when it expires there (`CopyOnExpiryOption`) and kept `archive` more.
fn retention(name: &str, vault: &str, archive: Option<&str>) -> Value {
    let mut vault_lifecycle = json!({
        "sourceDataStore": store("VaultStore"),
        "deleteAfter": {"duration": vault, "objectType": "AbsoluteDeleteOption"}
    });
    let mut lifecycles = Vec::new();
    if let Some(archive) = archive {
        vault_lifecycle["targetDataStoreCopySettings"] = json!({
            "dataStore": store("ArchiveStore"),
            "copyAfter": {"objectType": "CopyOnExpiryOption"}
        });
        lifecycles.push(json!({
            "sourceDataStore": store("ArchiveStore"),
            "deleteAfter": {"duration": archive, "objectType": "AbsoluteDeleteOption"}
        }));
    }
    lifecycles.insert(0, vault_lifecycle);
    json!({
        "name": name, "objectType": "AzureRetentionRule", "isDefault": name == "Default",
        "lifecycles": lifecycles
    })
}

/// A PostgreSQL policy: one backup rule on `interval` in UTC with a Default tag and the
/// `tags` given, and the retention `rules`.
fn policy(interval: &str, tags: Vec<Value>, rules: Vec<Value>) -> BackupPolicy {
    let mut tagging = vec![json!({
        "isDefault": true, "taggingPriority": 99, "tagInfo": {"tagName": "Default"}
    })];
    tagging.extend(tags);
    let mut policy_rules = vec![json!({
        "name": "BackupSchedule", "objectType": "AzureBackupRule",
        "dataStore": store("VaultStore"),
        "trigger": {
            "objectType": "ScheduleBasedTriggerContext",
            "schedule": {"repeatingTimeIntervals": [interval], "timeZone": "UTC"},
            "taggingCriteria": tagging
        }
    })];
    policy_rules.extend(rules);
    let body = json!({
        "datasourceTypes": ["Microsoft.DBforPostgreSQL/servers/databases"],
        "objectType": "BackupPolicy",
        "policyRules": policy_rules
    });
    BackupPolicy::from_json(&body.to_string())
        .unwrap_or_else(|errors| panic!("fixture policy is invalid: {errors:?}"))
}

/// The README's walkthrough: weekly on Sundays at 22:00 UTC; Default kept 3 months; the first
/// backup of each month tagged Monthly, 6 months in the vault then 24 months in the archive;
/// the first of each year tagged Yearly, kept 10 years.
pub fn weekly_policy() -> BackupPolicy {
    policy(
        "R/2024-01-07T22:00:00+00:00/P1W",
        vec![
            first_of("Yearly", 10, "FirstOfYear"),
            first_of("Monthly", 15, "FirstOfMonth"),
        ],
        vec![
            retention("Default", "P3M", None),
            retention("Monthly", "P6M", Some("P24M")),
            retention("Yearly", "P10Y", None),
        ],
    )
}

/// The walkthrough policy over ten years, as of the end of the window.
pub fn weekly_ten_years() -> Simulation {
    let (from, to) = (utc(2025, 1, 5), utc(2035, 1, 1));
    simulate(&weekly_policy(), from, to, to).unwrap()
}

/// Hourly backups over ten years (87,648 points): Default 7 days, Daily 30 days, Weekly 12
/// weeks, Monthly 12 months then 60 months in the archive, Yearly 10 years.
pub fn hourly_ten_years() -> Simulation {
    let policy = policy(
        "R/2025-01-01T00:00:00+00:00/PT1H",
        vec![
            first_of("Yearly", 10, "FirstOfYear"),
            first_of("Monthly", 15, "FirstOfMonth"),
            first_of("Weekly", 20, "FirstOfWeek"),
            first_of("Daily", 25, "FirstOfDay"),
        ],
        vec![
            retention("Default", "P7D", None),
            retention("Daily", "P30D", None),
            retention("Weekly", "P12W", None),
            retention("Monthly", "P12M", Some("P60M")),
            retention("Yearly", "P10Y", None),
        ],
    );
    let (from, to) = (utc(2025, 1, 1), utc(2035, 1, 1));
    simulate(&policy, from, to, to).unwrap()
}

/// Daily backups at midnight for six months, seen from the middle of the window: Default
/// 14 days, Weekly 8 weeks, Monthly 2 months in the vault then 6 in the archive.
pub fn daily_half_year() -> Simulation {
    let policy = policy(
        "R/2026-01-01T00:00:00+00:00/P1D",
        vec![
            first_of("Monthly", 15, "FirstOfMonth"),
            first_of("Weekly", 20, "FirstOfWeek"),
        ],
        vec![
            retention("Default", "P14D", None),
            retention("Weekly", "P8W", None),
            retention("Monthly", "P2M", Some("P6M")),
        ],
    );
    simulate(&policy, utc(2026, 1, 1), utc(2026, 7, 1), utc(2026, 4, 15)).unwrap()
}
