//! Soft delete and immutable vaults, as Azure's: the settings and their one-way rules, a
//! deleted backup instance kept with its data (through garbage collection) until the purge,
//! undeleted in a stopped state, purged by the retention sweep only when its days have passed;
//! a deleted recovery point kept the same way; and on an immutable vault, every removal before
//! a point's expiry refused with the setting named, while expiry by the policy goes on.

use serde_json::Value;

use crate::support::{World, sample_database};

fn packs(dir: &std::path::Path) -> usize {
    crate::support::files_under(&dir.join("packs")).len()
}

fn update(w: &World, vault: &str, extra: &[&str]) -> Value {
    let mut args = vec!["backup-vault", "update", "--vault-name", vault];
    args.extend_from_slice(extra);
    w.json(&args)
}

fn update_fails(w: &World, vault: &str, extra: &[&str]) -> String {
    let mut args = vec!["backup-vault", "update", "--vault-name", vault];
    args.extend_from_slice(extra);
    w.fails(&args)
}

fn sweep(w: &World, vault: &str, at: &str) -> Value {
    w.json(&["retention", "sweep", "--vault-name", vault, "--at", at])[0].clone()
}

/// Deletes `instance` (soft, on a vault with soft delete on), sweeps at its
/// `scheduledPurgeTime` and checks the sweep purged it; returns the sweep's outcome.
fn delete_then_purge(w: &World, vault: &str, instance: &str) -> Value {
    w.json(&[
        "backup-instance",
        "delete",
        "--vault-name",
        vault,
        "--name",
        instance,
        "--yes",
    ]);
    let purge_at = w.json(&["backup-instance", "deleted", "list", "--vault-name", vault])[0]
        ["properties"]["deletionInfo"]["scheduledPurgeTime"]
        .as_str()
        .unwrap()
        .to_owned();
    let purged = sweep(w, vault, &purge_at);
    assert_eq!(
        purged["purged"]["backupInstances"],
        serde_json::json!([instance]),
        "{purged:#}"
    );
    purged
}

fn verify_all(w: &World, vault: &str) -> Value {
    w.json(&["recovery-point", "verify", "--vault-name", vault, "--all"])
}

#[test]
fn a_soft_deleted_instance_keeps_its_data_until_the_purge_and_comes_back_stopped() {
    let w = World::new();
    let db = sample_database("softdel", 300);
    let vault = "Soft";
    let dir = w.vault_with_policy(vault);
    let secret = w.admin_secret(&db);

    // A new vault has soft delete Off (see the report); it is turned On with its days.
    let shown = w.json(&["backup-vault", "show", "--vault-name", vault]);
    let settings = &shown["properties"]["securitySettings"];
    assert_eq!(settings["softDeleteSettings"]["state"], "Off", "{shown:#}");
    let refused = update_fails(&w, vault, &["--retention-duration-in-days", "13"]);
    assert!(
        refused.contains("UserErrorInvalidSoftDeleteRetention"),
        "{refused}"
    );
    let on = update(
        &w,
        vault,
        &[
            "--soft-delete-state",
            "On",
            "--retention-duration-in-days",
            "20",
        ],
    );
    assert_eq!(
        on["properties"]["securitySettings"]["softDeleteSettings"],
        serde_json::json!({"state": "On", "retentionDurationInDays": 20})
    );

    let instance = w.protect(vault, &db, &secret);
    w.backup(vault, &instance);
    w.backup(vault, &instance);
    let before = packs(&dir);
    assert!(before > 0);

    // The deletion is one DeleteBackupInstance job; the instance is soft-deleted.
    let jobs = w.json(&[
        "backup-instance",
        "delete",
        "--vault-name",
        vault,
        "--name",
        &instance,
        "--yes",
    ]);
    let job = &jobs[0];
    assert_eq!(
        job["properties"]["pgvaultOperation"], "DeleteBackupInstance",
        "{jobs:#}"
    );
    assert_eq!(job["properties"]["status"], "Completed", "{jobs:#}");
    let list = w.json(&["backup-instance", "list", "--vault-name", vault]);
    assert!(list.as_array().unwrap().is_empty(), "{list:#}");
    let deleted = w.json(&[
        "backup-instance",
        "deleted-backup-instance",
        "list",
        "--vault-name",
        vault,
    ]);
    let d = &deleted[0];
    assert_eq!(d["name"], instance.as_str(), "{deleted:#}");
    assert_eq!(
        d["type"],
        "Microsoft.DataProtection/backupVaults/deletedBackupInstances"
    );
    assert!(
        d["id"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/deletedBackupInstances/{instance}"))
    );
    assert_eq!(d["properties"]["currentProtectionState"], "SoftDeleted");
    let info = &d["properties"]["deletionInfo"];
    let job_id = job["name"].as_str().unwrap();
    assert_eq!(info["deleteActivityID"], job_id, "{d:#}");
    let deleted_at = info["deletionTime"].as_str().unwrap().to_owned();
    let purge_at = info["scheduledPurgeTime"].as_str().unwrap().to_owned();
    assert!(purge_at > deleted_at, "{info:#}");
    let shown = w.json(&[
        "backup-instance",
        "deleted",
        "show",
        "--vault-name",
        vault,
        "--name",
        &instance,
    ]);
    assert_eq!(shown, *d);

    // The name (and database) cannot be protected again while it is soft-deleted.
    let req = w.initialize(&db, &secret);
    let file = w.write("again.json", &req.to_string());
    let refused = w.fails(&[
        "backup-instance",
        "create",
        "--vault-name",
        vault,
        "--backup-instance",
        file.to_str().unwrap(),
    ]);
    assert!(
        refused.contains("UserErrorBackupInstanceSoftDeleted"),
        "{refused}"
    );
    // Nor is the vault deleted.
    let refused = w.fails(&["backup-vault", "delete", "--vault-name", vault, "--yes"]);
    assert!(
        refused.contains("UserErrorVaultHasSoftDeletedItems"),
        "{refused}"
    );

    // Garbage collection and a sweep before the purge time keep every byte.
    w.json(&["backup-vault", "gc", "--vault-name", vault]);
    let early = sweep(&w, vault, &deleted_at);
    assert!(
        early["purged"]["backupInstances"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{early:#}"
    );
    assert_eq!(packs(&dir), before, "soft-deleted data stays");

    // Undelete: back, protection stopped, with both points, which read back whole.
    let back = w.json(&[
        "backup-instance",
        "deleted",
        "undelete",
        "--vault-name",
        vault,
        "--name",
        &instance,
    ]);
    assert_eq!(
        back["properties"]["currentProtectionState"],
        "ProtectionStopped"
    );
    assert_eq!(w.recovery_points(vault, &instance).len(), 2);
    let verified = verify_all(&w, vault);
    assert_eq!(verified.as_array().unwrap().len(), 2, "{verified:#}");
    let list = w.json(&["backup-instance", "deleted", "list", "--vault-name", vault]);
    assert!(list.as_array().unwrap().is_empty(), "{list:#}");

    // Deleted again, it is purged when its days have passed, and the space comes back.
    let purged = delete_then_purge(&w, vault, &instance);
    assert_eq!(packs(&dir), 0, "{purged:#}");
    let gone = w.fails(&[
        "backup-instance",
        "deleted",
        "show",
        "--vault-name",
        vault,
        "--name",
        &instance,
    ]);
    assert!(
        gone.contains("UserErrorDeletedBackupInstanceNotFound"),
        "{gone}"
    );
    let deletions = w.json(&[
        "job",
        "list",
        "--vault-name",
        vault,
        "--operation",
        "DeleteRecoveryPoint",
    ]);
    let reasons: Vec<&str> = deletions
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|j| j["properties"]["extendedInfo"]["additionalDetails"]["Reason"].as_str())
        .collect();
    assert_eq!(reasons.len(), 2, "{deletions:#}");
    assert!(
        reasons.iter().all(|r| r.starts_with("purged")),
        "{reasons:?}"
    );
    // Nothing soft-deleted is left: the vault can go.
    let out = w.run(&["backup-vault", "delete", "--vault-name", vault, "--yes"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A user's deletion of a recovery point is soft too, and expiry by the policy is not a
/// deletion: it leaves nothing soft-deleted.
#[test]
fn a_soft_deleted_recovery_point_is_undeleted_and_expiry_is_not_soft() {
    let w = World::new();
    let db = sample_database("softrp", 200);
    let vault = "SoftRp";
    w.vault_with_policy(vault);
    update(&w, vault, &["--soft-delete-state", "AlwaysOn"]);
    let refused = update_fails(&w, vault, &["--soft-delete-state", "On"]);
    assert!(
        refused.contains("UserErrorUnsupportedSoftDeleteStateChange")
            && refused.contains("AlwaysOn"),
        "{refused}"
    );
    let secret = w.admin_secret(&db);
    let instance = w.protect(vault, &db, &secret);
    w.backup(vault, &instance);
    w.backup(vault, &instance);
    let points = w.recovery_points(vault, &instance);
    let oldest = points[1]["name"].as_str().unwrap().to_owned();

    let job = w.json(&[
        "recovery-point",
        "delete",
        "--vault-name",
        vault,
        "--backup-instance-name",
        &instance,
        "--recovery-point-id",
        &oldest,
        "--yes",
    ]);
    assert_eq!(job["properties"]["status"], "Completed", "{job:#}");
    assert_eq!(w.recovery_points(vault, &instance).len(), 1);
    let deleted = w.json(&["recovery-point", "deleted", "list", "--vault-name", vault]);
    assert_eq!(
        deleted[0]["recoveryPointId"],
        oldest.as_str(),
        "{deleted:#}"
    );
    assert_eq!(
        deleted[0]["deletionInfo"]["deleteActivityID"], job["name"],
        "{deleted:#}"
    );
    w.json(&["backup-vault", "gc", "--vault-name", vault]);
    // The vault's check counts the soft-deleted point's data as needed, not as garbage.
    let check = w.json(&["backup-vault", "check", "--vault-name", vault]);
    assert_eq!(check["status"], "OK", "{check:#}");
    let tier = &check["dataStores"][0];
    assert_eq!(tier["recoveryPoints"], 2, "{check:#}");
    assert_eq!(tier["unreferenced"]["chunks"], 0, "{check:#}");
    let back = w.json(&[
        "recovery-point",
        "deleted",
        "undelete",
        "--vault-name",
        vault,
        "--backup-instance-name",
        &instance,
        "--recovery-point-id",
        &oldest,
    ]);
    assert_eq!(back["name"], oldest.as_str());
    assert_eq!(verify_all(&w, vault).as_array().unwrap().len(), 2);

    // Far past both points' expiry the policy deletes the older one (the last is kept): a
    // hard deletion, nothing soft-deleted.
    let swept = sweep(&w, vault, "2099-01-01T00:00:00Z");
    let actions = swept["plan"]["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 1, "{swept:#}");
    assert_eq!(actions[0]["action"], "Delete");
    assert_eq!(w.recovery_points(vault, &instance).len(), 1);
    let deleted = w.json(&["recovery-point", "deleted", "list", "--vault-name", vault]);
    assert!(deleted.as_array().unwrap().is_empty(), "{deleted:#}");

    // Soft-deleted, then the vault made immutable: the purge keeps what has not expired.
    let last = w.recovery_points(vault, &instance)[0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    w.json(&[
        "backup-instance",
        "stop-protection",
        "--vault-name",
        vault,
        "--name",
        &instance,
    ]);
    w.json(&[
        "recovery-point",
        "delete",
        "--vault-name",
        vault,
        "--backup-instance-name",
        &instance,
        "--recovery-point-id",
        &last,
        "--yes",
    ]);
    update(&w, vault, &["--immutability-state", "Unlocked"]);
    let deleted = w.json(&["recovery-point", "deleted", "list", "--vault-name", vault]);
    let purge_at = deleted[0]["deletionInfo"]["scheduledPurgeTime"]
        .as_str()
        .unwrap()
        .to_owned();
    let swept = sweep(&w, vault, &purge_at);
    assert!(
        swept["purged"]["recoveryPoints"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{swept:#}"
    );
    assert_eq!(
        swept["purged"]["kept"],
        serde_json::json!([format!("{instance}/{last}")]),
        "{swept:#}"
    );
    let deleted = w.json(&["recovery-point", "deleted", "list", "--vault-name", vault]);
    assert_eq!(deleted.as_array().unwrap().len(), 1, "{deleted:#}");
}

#[test]
fn an_immutable_vault_refuses_every_removal_before_expiry_and_locked_is_for_good() {
    let w = World::new();
    let db = sample_database("immutable", 200);
    let vault = "Imm";
    w.vault_with_policy(vault);
    let shown = update(&w, vault, &["--immutability-state", "Unlocked"]);
    assert_eq!(
        shown["properties"]["securitySettings"]["immutabilitySettings"]["state"],
        "Unlocked"
    );
    let secret = w.admin_secret(&db);
    let instance = w.protect(vault, &db, &secret);
    w.backup(vault, &instance);
    w.backup(vault, &instance);
    let points = w.recovery_points(vault, &instance);
    let oldest = points[1]["name"].as_str().unwrap().to_owned();
    w.json(&[
        "backup-instance",
        "stop-protection",
        "--vault-name",
        vault,
        "--name",
        &instance,
    ]);

    let refused = w.fails(&[
        "recovery-point",
        "delete",
        "--vault-name",
        vault,
        "--backup-instance-name",
        &instance,
        "--recovery-point-id",
        &oldest,
        "--yes",
    ]);
    assert!(
        refused.contains("UserErrorImmutableVaultOperationNotAllowed")
            && refused.contains("immutabilityState Unlocked"),
        "{refused}"
    );
    let refused = w.fails(&[
        "backup-instance",
        "delete",
        "--vault-name",
        vault,
        "--name",
        &instance,
        "--yes",
    ]);
    assert!(
        refused.contains("UserErrorImmutableVaultOperationNotAllowed"),
        "{refused}"
    );
    assert_eq!(w.recovery_points(vault, &instance).len(), 2);

    // Unlocked can be disabled; Locked cannot be undone.
    update(&w, vault, &["--immutability-state", "Disabled"]);
    update(&w, vault, &["--immutability-state", "Locked"]);
    for state in ["Unlocked", "Disabled"] {
        let refused = update_fails(&w, vault, &["--immutability-state", state]);
        assert!(
            refused.contains("UserErrorUnsupportedVaultImmutabilityStateChange")
                && refused.contains("Locked"),
            "{refused}"
        );
    }
    let refused = w.fails(&[
        "recovery-point",
        "delete",
        "--vault-name",
        vault,
        "--backup-instance-name",
        &instance,
        "--recovery-point-id",
        &oldest,
        "--yes",
    ]);
    assert!(refused.contains("immutabilityState Locked"), "{refused}");

    // Expiry by the policy goes on: protected again and swept far past both expiries, the
    // older point is deleted and the last kept.
    w.json(&[
        "backup-instance",
        "resume-protection",
        "--vault-name",
        vault,
        "--name",
        &instance,
    ]);
    let swept = sweep(&w, vault, "2099-01-01T00:00:00Z");
    assert_eq!(
        swept["plan"]["actions"].as_array().unwrap().len(),
        1,
        "{swept:#}"
    );
    assert_eq!(w.recovery_points(vault, &instance).len(), 1);
    // The point the sweep kept is within its expiry on the real clock: still refused.
    let last = w.recovery_points(vault, &instance)[0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    w.json(&[
        "backup-instance",
        "stop-protection",
        "--vault-name",
        vault,
        "--name",
        &instance,
    ]);
    let refused = w.fails(&[
        "recovery-point",
        "delete",
        "--vault-name",
        vault,
        "--backup-instance-name",
        &instance,
        "--recovery-point-id",
        &last,
        "--yes",
    ]);
    assert!(
        refused.contains("UserErrorImmutableVaultOperationNotAllowed"),
        "{refused}"
    );
}

/// Soft delete on Blob Storage (Azurite), in an encrypted vault: a deleted instance keeps its
/// data through garbage collection (its sealed manifests moved unchanged), comes back stopped
/// with its points, which verify whole, and is purged by the sweep when its days have passed.
#[test]
fn soft_delete_on_blob_storage_keeps_an_encrypted_vaults_data_until_the_purge() {
    let azurite = pgvault_testkit::Azurite::start();
    let mut w = World::new();
    w.env.extend(azurite.env());
    w.env.push((
        "PGVAULT_TEST_PASSPHRASE".into(),
        "soft delete on blob storage".into(),
    ));
    let vault = "SoftBlob";
    w.json(&[
        "backup-vault",
        "create",
        "--vault-name",
        vault,
        "--storage-url",
        &format!("az://devstoreaccount1/vaults/sd-{}", std::process::id()),
        "--encryption-key-uri",
        "env:PGVAULT_TEST_PASSPHRASE",
        "--soft-delete-state",
        "On",
    ]);
    w.add_default_policy(vault);
    let db = sample_database("softblob", 500);
    let instance = w.protect(vault, &db, &w.admin_secret(&db));
    w.backup(vault, &instance);
    w.json(&[
        "backup-instance",
        "delete",
        "--vault-name",
        vault,
        "--name",
        &instance,
        "--yes",
    ]);
    let gc = w.json(&["backup-vault", "gc", "--vault-name", vault]);
    assert!(gc.is_array(), "{gc:#}");
    let checked = w.json(&[
        "backup-vault",
        "check",
        "--vault-name",
        vault,
        "--read-data",
    ]);
    assert!(
        !checked.to_string().contains("\"severity\":\"Error\""),
        "the soft-deleted instance's data is whole after GC: {checked:#}"
    );
    let back = w.json(&[
        "backup-instance",
        "deleted",
        "undelete",
        "--vault-name",
        vault,
        "--name",
        &instance,
    ]);
    assert_eq!(
        back["properties"]["currentProtectionState"],
        "ProtectionStopped"
    );
    assert_eq!(w.recovery_points(vault, &instance).len(), 1);
    assert_eq!(verify_all(&w, vault).as_array().unwrap().len(), 1);

    delete_then_purge(&w, vault, &instance);
}

/// Weakening a vault's protection raises a Security Setting Weakened alert for each thing
/// weakened (severity 0, never grouped): soft delete turned Off, immutability Disabled.
#[test]
fn weakening_soft_delete_or_immutability_raises_an_alert() {
    let w = World::new();
    let vault = "Weak";
    w.vault_with_policy(vault);
    update(
        &w,
        vault,
        &[
            "--soft-delete-state",
            "On",
            "--immutability-state",
            "Unlocked",
        ],
    );
    let none = w.json(&["alert", "list"]);
    assert!(
        none.as_array().unwrap().is_empty(),
        "strengthening alerts nobody: {none:#}"
    );
    update(
        &w,
        vault,
        &[
            "--soft-delete-state",
            "Off",
            "--immutability-state",
            "Disabled",
        ],
    );
    let alerts = w.json(&["alert", "list"]);
    let weakened: Vec<&Value> = alerts
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a.to_string().contains("SecuritySettingWeakened"))
        .collect();
    assert_eq!(weakened.len(), 2, "{alerts:#}");
    assert!(alerts.to_string().contains("Weak"), "{alerts:#}");
}
