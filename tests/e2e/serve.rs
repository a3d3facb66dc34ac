//! `pgvault serve` as a process: a scheduled backup starts at its time, and a SIGTERM while
//! it runs ends with the job `Cancelled`, no recovery point and no `pg_dump` left behind.
//!
//! The backup is held in `pg_dump` deterministically: the test holds an ACCESS EXCLUSIVE lock
//! on a table, which `pg_dump`'s ACCESS SHARE lock waits for. The test waits on the host's own
//! log lines (read from its stderr as they come), never on a timer.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;

use crate::support::{World, cluster, sample_database};

/// An hourly policy whose first occurrence is `start`.
fn hourly_from(w: &World, start: &str) -> String {
    let policy = json!({
        "datasourceTypes": ["Microsoft.DBforPostgreSQL/flexibleServers/databases"],
        "objectType": "BackupPolicy",
        "policyRules": [
            {
                "name": "BackupHourly", "objectType": "AzureBackupRule",
                "backupParameters": {"backupType": "Full", "objectType": "AzureBackupParams"},
                "dataStore": {"dataStoreType": "VaultStore", "objectType": "DataStoreInfoBase"},
                "trigger": {
                    "objectType": "ScheduleBasedTriggerContext",
                    "schedule": {"repeatingTimeIntervals": [format!("R/{start}/PT1H")], "timeZone": "UTC"},
                    "taggingCriteria": [{"isDefault": true, "taggingPriority": 99, "tagInfo": {"tagName": "Default"}}]
                }
            },
            {"name": "Default", "objectType": "AzureRetentionRule", "isDefault": true,
             "lifecycles": [{
                "sourceDataStore": {"dataStoreType": "VaultStore", "objectType": "DataStoreInfoBase"},
                "deleteAfter": {"duration": "P7D", "objectType": "AbsoluteDeleteOption"}
             }]}
        ]
    });
    w.write("hourly.json", &policy.to_string())
        .to_str()
        .unwrap()
        .to_owned()
}

/// The lines a child writes to stderr, as they come.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line containing `needle`; returns every line seen. The deadline only bounds a
/// broken test; the wait ends on the line itself.
fn wait_for(lines: &mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) {
    loop {
        match lines.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => {
                let found = line.contains(needle);
                seen.push(line);
                if found {
                    return;
                }
            }
            Err(_) => panic!(
                "no log line with {needle:?}; the host said:\n{}",
                seen.join("\n")
            ),
        }
    }
}

/// `pg_dump` processes dumping `database` (pgvault passes the database in the environment).
fn pg_dumps_of(database: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let (Ok(cmdline), Ok(environ)) = (
            std::fs::read(entry.path().join("cmdline")),
            std::fs::read(entry.path().join("environ")),
        ) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let environ = String::from_utf8_lossy(&environ);
        if cmdline.contains("pg_dump")
            && environ
                .split('\0')
                .any(|v| v == format!("PGDATABASE={database}"))
        {
            out.push(format!(
                "{}: {cmdline}",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    out
}

#[test]
fn sigterm_during_a_backup_cancels_it_and_leaves_no_recovery_point() {
    let w = World::new();
    let c = cluster();
    let db = sample_database("served", 500);
    // The first occurrence a few seconds from now: after the instance is protected, soon
    // enough that the host starts it right away.
    let start = (chrono::Utc::now() + chrono::TimeDelta::seconds(4))
        .format("%Y-%m-%dT%H:%M:%S+00:00")
        .to_string();
    let policy = hourly_from(&w, &start);
    w.vault_with_policy_file("Served", Path::new(&policy));
    let instance = w.protect("Served", &db, &w.admin_secret(&db));

    // Hold the table pg_dump will need.
    let mut holder = c
        .command("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &db])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut sql = holder.stdin.take().unwrap();
    writeln!(
        sql,
        "BEGIN; LOCK TABLE sales.orders IN ACCESS EXCLUSIVE MODE; SELECT 1;"
    )
    .unwrap();
    sql.flush().unwrap();

    let mut host = w
        .command(&["serve", "--shutdown-grace", "1", "--log-format", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(&mut host);
    let mut seen = Vec::new();
    wait_for(&lines, "pg_dump started", &mut seen);
    assert_eq!(pg_dumps_of(&db).len(), 1, "the check below can see pg_dump");
    // JSON log lines, one object each.
    for line in &seen {
        let parsed: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(parsed["level"].is_string(), "{line}");
    }

    let status = Command::new("kill")
        .args(["-TERM", &host.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for(&lines, "cancelling running jobs", &mut seen);
    let exit = host.wait().unwrap();
    assert!(
        exit.success(),
        "the host exits cleanly on SIGTERM: {exit:?}"
    );

    // pg_dump was killed with its process group, not left waiting on the lock.
    assert_eq!(pg_dumps_of(&db), Vec::<String>::new());
    writeln!(sql, "ROLLBACK;").unwrap();
    drop(sql);
    holder.wait().unwrap();

    let jobs = w.json(&["job", "list", "--operation", "ScheduledBackup"]);
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    assert_eq!(
        jobs[0]["properties"]["status"], "Cancelled",
        "{:#}",
        jobs[0]
    );
    assert!(
        w.recovery_points("Served", &instance).is_empty(),
        "no partial recovery point"
    );
    // The instance is free for its next backup.
    let next = w.backup("Served", &instance);
    assert_eq!(next["properties"]["status"], "Completed", "{next:#}");
}
