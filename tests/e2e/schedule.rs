//! `pgvault tick --at T`: scheduled backups driven by an explicit clock, against the test
//! PostgreSQL. A weekly schedule in Berlin time across the March DST change, the FirstOfMonth
//! tag on each month's first scheduled backup, a missed run caught up once and marked late,
//! and suspended protection honoured.

use std::path::Path;

use serde_json::{Value, json};

use crate::support::{World, sample_database};

/// Sundays 02:30 Berlin wall-clock time; the first backup of each month is Monthly.
fn berlin_policy(w: &World) -> String {
    let lifecycle = |keep: &str| {
        json!([{
            "sourceDataStore": {"dataStoreType": "VaultStore", "objectType": "DataStoreInfoBase"},
            "deleteAfter": {"duration": keep, "objectType": "AbsoluteDeleteOption"}
        }])
    };
    let policy = json!({
        "datasourceTypes": ["Microsoft.DBforPostgreSQL/flexibleServers/databases"],
        "objectType": "BackupPolicy",
        "policyRules": [
            {
                "name": "BackupWeekly", "objectType": "AzureBackupRule",
                "backupParameters": {"backupType": "Full", "objectType": "AzureBackupParams"},
                "dataStore": {"dataStoreType": "VaultStore", "objectType": "DataStoreInfoBase"},
                "trigger": {
                    "objectType": "ScheduleBasedTriggerContext",
                    "schedule": {
                        "repeatingTimeIntervals": ["R/2041-03-24T02:30:00/P1W"],
                        "timeZone": "W. Europe Standard Time"
                    },
                    "taggingCriteria": [
                        {"isDefault": true, "taggingPriority": 99, "tagInfo": {"tagName": "Default"}},
                        {"isDefault": false, "taggingPriority": 15, "tagInfo": {"tagName": "Monthly"},
                         "criteria": [{"objectType": "ScheduleBasedBackupCriteria", "absoluteCriteria": ["FirstOfMonth"]}]}
                    ]
                }
            },
            {"name": "Default", "objectType": "AzureRetentionRule", "isDefault": true, "lifecycles": lifecycle("P3M")},
            {"name": "Monthly", "objectType": "AzureRetentionRule", "isDefault": false, "lifecycles": lifecycle("P1Y")}
        ]
    });
    w.write("berlin.json", &policy.to_string())
        .to_str()
        .unwrap()
        .to_owned()
}

fn details(job: &Value) -> &Value {
    &job["properties"]["extendedInfo"]["additionalDetails"]
}

#[test]
fn tick_runs_what_is_due_once_in_the_policy_time_zone() {
    let w = World::new();
    let db = sample_database("ticked", 100);
    let vault = "Ticked";
    let policy = berlin_policy(&w);
    w.vault_with_policy_file(vault, Path::new(&policy));
    let instance = w.protect(vault, &db, &w.admin_secret(&db));
    // The pass's scheduled backups (it also sweeps retention; see retention.rs).
    let tick = |at: &str| -> Vec<Value> {
        w.json(&["tick", "--at", at])
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["properties"]["pgvaultOperation"] == "ScheduledBackup")
            .cloned()
            .collect()
    };

    // Before the first occurrence: nothing is due.
    assert!(tick("2041-03-24T01:29:00Z").is_empty());
    // 02:30 CET is 01:30 UTC. The instance's first backup is the first of March: Monthly.
    let jobs = tick("2041-03-24T01:30:00Z");
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    let job = &jobs[0];
    assert_eq!(job["properties"]["pgvaultOperation"], "ScheduledBackup");
    assert_eq!(job["properties"]["status"], "Completed", "{job:#}");
    assert_eq!(
        details(job)["ScheduledTime"],
        "2041-03-24T01:30:00.0000000Z"
    );
    assert_eq!(details(job)["Late"], "false");
    assert_eq!(details(job)["RetentionTag"], "Monthly");
    // The same occurrence never runs twice.
    assert!(tick("2041-03-24T03:00:00Z").is_empty());

    // 2041-03-31 is the spring-forward Sunday: 02:30 does not exist and becomes 03:30 CEST,
    // still 01:30 UTC. Same month: Default.
    assert!(tick("2041-03-31T01:29:00Z").is_empty());
    let jobs = tick("2041-03-31T01:30:00Z");
    assert_eq!(
        details(&jobs[0])["ScheduledTime"],
        "2041-03-31T01:30:00.0000000Z"
    );
    assert_eq!(details(&jobs[0])["RetentionTag"], "Default");
    // A week later it is 02:30 CEST, 00:30 UTC: the first backup of April is Monthly.
    let jobs = tick("2041-04-07T00:30:00Z");
    assert_eq!(
        details(&jobs[0])["ScheduledTime"],
        "2041-04-07T00:30:00.0000000Z"
    );
    assert_eq!(details(&jobs[0])["RetentionTag"], "Monthly");

    // The host is down for three Sundays: the latest occurrence runs once, late, and says
    // how many it stands in for.
    let jobs = tick("2041-04-29T12:00:00Z");
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    assert_eq!(
        details(&jobs[0])["ScheduledTime"],
        "2041-04-28T00:30:00.0000000Z"
    );
    assert_eq!(details(&jobs[0])["Late"], "true");
    assert_eq!(details(&jobs[0])["MissedOccurrences"], "2");
    assert!(tick("2041-04-30T12:00:00Z").is_empty());

    // Suspended: nothing runs, on schedule or on demand; resumed: the due backup runs.
    w.json(&[
        "backup-instance",
        "suspend-backup",
        "--vault-name",
        vault,
        "--name",
        &instance,
    ]);
    assert!(tick("2041-05-05T00:30:00Z").is_empty());
    let error = w.fails(&[
        "backup-instance",
        "adhoc-backup",
        "--vault-name",
        vault,
        "--name",
        &instance,
    ]);
    assert!(
        error.contains("BackupSchedulesSuspended") && error.contains("resume-protection"),
        "{error}"
    );
    let resumed = w.json(&[
        "backup-instance",
        "resume-protection",
        "--vault-name",
        vault,
        "--name",
        &instance,
    ]);
    assert_eq!(
        resumed["properties"]["currentProtectionState"],
        "ProtectionConfigured"
    );
    let jobs = tick("2041-05-05T00:31:00Z");
    assert_eq!(details(&jobs[0])["RetentionTag"], "Monthly", "first of May");

    // Stopped protection is skipped too.
    w.json(&[
        "backup-instance",
        "stop-protection",
        "--vault-name",
        vault,
        "--name",
        &instance,
    ]);
    assert!(tick("2041-05-12T00:30:00Z").is_empty());

    // Every scheduled backup made a recovery point at its tick time, tagged as above.
    let mut points: Vec<(String, String)> = w
        .recovery_points(vault, &instance)
        .iter()
        .map(|rp| {
            (
                rp["properties"]["recoveryPointTime"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                rp["properties"]["retentionTagName"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    points.sort();
    let tags: Vec<&str> = points.iter().map(|(_, tag)| tag.as_str()).collect();
    assert_eq!(
        tags,
        ["Monthly", "Default", "Monthly", "Default", "Monthly"],
        "{points:?}"
    );
}
