//! `pgvault retention sweep` on real backups: a monthly point moves to the archive tier when
//! it leaves the vault tier, weekly points expire, the result is what `backup-policy simulate`
//! says, each move and deletion is a job, and garbage collection returns the space.

use std::path::Path;

use serde_json::{Value, json};

use crate::support::{World, archive_policy, files_under, sample_database};

fn packs(dir: &Path) -> usize {
    files_under(&dir.join("packs")).len()
}

#[test]
fn the_sweep_moves_to_the_archive_tier_and_expires_as_simulated() {
    let w = World::new();
    let db = sample_database("swept", 2000);
    let vault = "Swept";
    let policy = archive_policy(&w);
    let vault_dir = w.vault_with_policy_file(vault, Path::new(&policy));
    let archive_dir = w.path("archive");
    let updated = w.json(&[
        "backup-vault",
        "update",
        "--vault-name",
        vault,
        "--archive-storage-url",
        &format!("file://{}", archive_dir.display()),
    ]);
    assert_eq!(
        updated["properties"]["storageSettings"][1]["datastoreType"], "ArchiveStore",
        "{updated:#}"
    );
    let instance = w.protect(vault, &db, &w.admin_secret(&db));
    let tick = |at: &str| -> Vec<String> {
        w.json(&["tick", "--at", at])
            .as_array()
            .unwrap()
            .iter()
            .map(|j| {
                j["properties"]["pgvaultOperation"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    // Each pass collects garbage (the last collection is over twenty hours old), so each
    // records a sweep; an hour later there is nothing to do and nothing is recorded.
    assert_eq!(
        tick("2041-01-06T02:00:00Z"),
        ["ScheduledBackup", "RetentionSweep"]
    );
    assert!(tick("2041-01-06T03:00:00Z").is_empty());
    assert_eq!(
        tick("2041-01-13T02:00:00Z"),
        ["ScheduledBackup", "RetentionSweep"]
    );
    // A week later the second (Default, seven days) expires: tick sweeps it away.
    assert_eq!(
        tick("2041-01-20T02:00:00Z"),
        ["ScheduledBackup", "DeleteRecoveryPoint", "RetentionSweep"]
    );
    assert_eq!(w.recovery_points(vault, &instance).len(), 2);
    let packs_before = packs(&vault_dir);

    let at = "2041-02-07T00:00:00Z";
    let sweep = |extra: &[&str]| -> Value {
        let mut args = vec!["retention", "sweep", "--vault-name", vault, "--at", at];
        args.extend_from_slice(extra);
        w.json(&args)[0].clone()
    };
    // A dry run says what would happen and does nothing.
    let dry = sweep(&["--dry-run"]);
    let actions: Vec<&str> = dry["plan"]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["MoveToArchive", "Delete"], "{dry:#}");
    assert_eq!(w.recovery_points(vault, &instance).len(), 2);
    assert!(dry.get("job").is_none());

    let done = sweep(&[]);
    assert_eq!(
        done["job"]["properties"]["pgvaultOperation"],
        "RetentionSweep"
    );
    assert_eq!(done["job"]["properties"]["status"], "Completed", "{done:#}");
    let jobs: Vec<(&str, &str)> = done["actionJobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["properties"]["pgvaultOperation"].as_str().unwrap(),
                j["properties"]["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        jobs,
        [
            ("MoveToArchive", "Completed"),
            ("DeleteRecoveryPoint", "Completed")
        ]
    );

    // Restoring the expired one says when and why it went.
    let expired = dry["plan"]["actions"][1]["recoveryPointId"]
        .as_str()
        .unwrap()
        .to_owned();
    let gone = w.fails(&[
        "backup-instance",
        "restore",
        "initialize-for-data-recovery-as-files",
        "--vault-name",
        vault,
        "--backup-instance-name",
        &instance,
        "--recovery-point-id",
        &expired,
        "--target-directory",
        w.path("files").to_str().unwrap(),
    ]);
    assert!(
        gone.contains("UserErrorRecoveryPointExpired")
            && gone.contains("deleted on 2041-02-07")
            && gone.contains("expired"),
        "{gone}"
    );

    // What is left is what the simulator says for those three backups at that time.
    let simulated = w.json(&[
        "backup-policy",
        "simulate",
        "--policy",
        &policy,
        "--from",
        "2041-01-06",
        "--to",
        "2041-01-21",
        "--at",
        at,
    ]);
    let states: Vec<Value> = simulated["recoveryPoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["stateAt"].clone())
        .collect();
    assert_eq!(states, [json!(["ArchiveStore"]), json!([]), json!([])]);
    let left = w.recovery_points(vault, &instance);
    assert_eq!(left.len(), 1);
    let details = &left[0]["properties"]["recoveryPointDataStoresDetails"];
    assert_eq!(details.as_array().unwrap().len(), 1, "{details:#}");
    assert_eq!(details[0]["type"], "ArchiveStore");
    assert_eq!(details[0]["expiryTime"], "2041-08-06T02:00:00Z");
    assert_eq!(left[0]["properties"]["retentionTagName"], "Monthly");

    // The vault tier holds no recovery point any more, so garbage collection emptied it; the
    // archive tier holds the moved point's data.
    assert!(packs_before > 0);
    assert_eq!(
        packs(&vault_dir),
        0,
        "the vault tier's packs were collected"
    );
    assert!(packs(&archive_dir) > 0);
    let gc = &done["garbageCollection"][0];
    assert_eq!(gc["dataStoreType"], "VaultStore");
    assert!(
        gc["outcome"]["Ok"]["bytesFreed"].as_u64().unwrap() > 0,
        "{gc:#}"
    );

    // An archive-only point is not restored without rehydration.
    let id = left[0]["name"].as_str().unwrap();
    let refused = w.fails(&[
        "backup-instance",
        "restore",
        "initialize-for-data-recovery-as-files",
        "--vault-name",
        vault,
        "--backup-instance-name",
        &instance,
        "--recovery-point-id",
        id,
        "--target-directory",
        w.path("files").to_str().unwrap(),
        "--target-file-name",
        "x",
    ]);
    assert!(
        refused.contains("UserErrorRecoveryPointInArchiveTier"),
        "{refused}"
    );

    // Rehydrated for ten days (Azure allows 10 to 30), it restores from ArchiveStore.
    let rehydrate = |days: &str| {
        w.run(&[
            "recovery-point",
            "rehydrate",
            "--vault-name",
            vault,
            "--backup-instance-name",
            &instance,
            "--recovery-point-id",
            id,
            "--rehydration-duration",
            days,
            "--rehydration-priority",
            "High",
        ])
    };
    let too_short = rehydrate("5");
    assert!(!too_short.status.success());
    assert!(String::from_utf8_lossy(&too_short.stderr).contains("10 to 30 days"));
    let done = rehydrate("P10D");
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let job: Value = serde_json::from_slice(&done.stdout).unwrap();
    assert_eq!(job["properties"]["pgvaultOperation"], "Rehydrate");
    assert_eq!(job["properties"]["status"], "Completed", "{job:#}");
    let point = &w.recovery_points(vault, &instance)[0];
    let tiers: Vec<(&str, &Value)> = point["properties"]["recoveryPointDataStoresDetails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["type"].as_str().unwrap(), &d["rehydrationStatus"]))
        .collect();
    assert_eq!(
        tiers,
        [
            ("VaultStore", &json!("COMPLETED")),
            ("ArchiveStore", &Value::Null)
        ]
    );
    let as_files = |datastore: &str| {
        w.run(&[
            "backup-instance",
            "restore",
            "initialize-for-data-recovery-as-files",
            "--vault-name",
            vault,
            "--backup-instance-name",
            &instance,
            "--recovery-point-id",
            id,
            "--source-datastore",
            datastore,
            "--target-directory",
            w.path("files").to_str().unwrap(),
            "--target-file-name",
            "rehydrated",
        ])
    };
    let wrong = as_files("VaultStore");
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("--source-datastore ArchiveStore"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
    let request = as_files("ArchiveStore");
    assert!(
        request.status.success(),
        "{}",
        String::from_utf8_lossy(&request.stderr)
    );
    let request_file = w.write("rehydrated.json", &String::from_utf8_lossy(&request.stdout));
    let restored = w.json(&[
        "backup-instance",
        "restore",
        "trigger",
        "--vault-name",
        vault,
        "--backup-instance-name",
        &instance,
        "--restore-request-object",
        request_file.to_str().unwrap(),
    ]);
    assert_eq!(
        restored["properties"]["status"], "Completed",
        "{restored:#}"
    );
    let listed = crate::support::cluster()
        .command("pg_restore")
        .arg("--list")
        .arg(w.path("files").join("rehydrated.dump"))
        .output()
        .unwrap();
    assert!(listed.status.success());
    assert!(String::from_utf8_lossy(&listed.stdout).contains("TABLE DATA sales orders"));
    // The same from a runbook: a dry-run sweep sees the copy's end coming, and every tier's
    // copy of the point reads back.
    let script = w.write(
        "sweep.rhai",
        &format!(
            r#"let v = vault("{vault}");
let sweep = v.retention_sweep(#{{ dry_run: true, at: "2041-03-01T00:00:00Z" }});
print(`actions: ${{sweep.plan.actions.len()}} ${{sweep.plan.actions[0].action}}`);
let results = v.verify("{instance}");
print(`verified: ${{results.len()}} ${{results[0].status}}`);
"#
        ),
    );
    let ran = w.run(&["run", script.to_str().unwrap()]);
    let printed = String::from_utf8_lossy(&ran.stdout);
    assert!(
        ran.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert!(printed.contains("actions: 1 DeleteFromVault"), "{printed}");
    assert!(printed.contains("verified: 1 OK"), "{printed}");

    // When the rehydration ends the sweep removes the copy; the archive tier keeps the point.
    let after = w.json(&[
        "retention",
        "sweep",
        "--vault-name",
        vault,
        "--at",
        "2041-03-01T00:00:00Z",
    ]);
    assert_eq!(
        after[0]["plan"]["actions"][0]["action"], "DeleteFromVault",
        "{after:#}"
    );
    let point = &w.recovery_points(vault, &instance)[0];
    assert_eq!(
        point["properties"]["recoveryPointDataStoresDetails"][0]["type"],
        "ArchiveStore"
    );

    // Past its archive expiry it is the instance's last point: kept.
    let later = w.json(&[
        "retention",
        "sweep",
        "--vault-name",
        vault,
        "--at",
        "2042-01-01T00:00:00Z",
    ]);
    assert!(later[0]["plan"]["actions"].as_array().unwrap().is_empty());
    assert_eq!(w.recovery_points(vault, &instance).len(), 1);

    // A user can delete it (with --yes).
    let refused = w.fails(&[
        "recovery-point",
        "delete",
        "--vault-name",
        vault,
        "--backup-instance-name",
        &instance,
        "--recovery-point-id",
        id,
    ]);
    assert!(refused.contains("--yes"), "{refused}");
    // It is the last point of a protected instance: refused until protection stops.
    let last = [
        "recovery-point",
        "delete",
        "--vault-name",
        vault,
        "--backup-instance-name",
        &instance,
        "--recovery-point-id",
        id,
        "--yes",
    ];
    let refused = w.fails(&last);
    assert!(refused.contains("UserErrorLastRecoveryPoint"), "{refused}");
    w.json(&[
        "backup-instance",
        "stop-protection",
        "--vault-name",
        vault,
        "--name",
        &instance,
    ]);
    let deleted = w.json(&[
        "recovery-point",
        "delete",
        "--vault-name",
        vault,
        "--backup-instance-name",
        &instance,
        "--recovery-point-id",
        id,
        "--yes",
    ]);
    assert_eq!(
        deleted["properties"]["pgvaultOperation"],
        "DeleteRecoveryPoint"
    );
    assert_eq!(deleted["properties"]["status"], "Completed");
    assert!(w.recovery_points(vault, &instance).is_empty());
    w.json(&["backup-vault", "gc", "--vault-name", vault]);
    assert_eq!(packs(&archive_dir), 0);
}
