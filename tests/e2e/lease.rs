//! The lock of destructive operations: on Blob Storage a lease taken by one of two concurrent
//! processes, so two hosts never sweep or collect the same vault at once; the holder named to
//! the refused one; `backup-vault break-lock` for a holder that crashed; the same on a local
//! vault.
//!
//! The holder is this test process, through the core API (a real lease on Azurite), while the
//! `pgvault` binary tries the same vault: deterministic, no sleeping. Two binaries started
//! together show the race itself, with an assertion that holds whichever wins.

use std::process::Output;

use pgvault_core::store::azure::{AzureAuth, AzureLocation, EMULATOR_ACCOUNT_KEY};
use pgvault_core::store::blob_rest::BlobRest;
use pgvault_core::store::lease::{DestructiveGuard, LEASE_BLOB, LeaseTiming};
use pgvault_core::store::lock::{LockInfo, LockKind};
use pgvault_testkit::Azurite;
use serde_json::Value;

use crate::support::{World, sample_database};

const VAULT: &str = "LeaseVault";
/// Far enough ahead that every recovery point but the last has expired.
const LATER: &str = "2099-01-01T00:00:00Z";

/// A Blob vault with an instance of a fresh database and three recovery points, and the
/// Blob REST client of the vault's location, as a second process would have.
fn blob_vault(azurite: &Azurite, name: &str) -> (World, String, BlobRest) {
    let mut w = World::new();
    w.env.extend(azurite.env());
    let url = format!("az://devstoreaccount1/vaults/{name}-{}", std::process::id());
    let template = w.json(&[
        "backup-policy",
        "get-default-policy-template",
        "--datasource-type",
        "AzureDatabaseForPostgreSQLFlexibleServer",
    ]);
    let policy = w.write("policy.json", &template.to_string());
    w.json(&[
        "backup-vault",
        "create",
        "--vault-name",
        VAULT,
        "--storage-url",
        &url,
    ]);
    w.json(&[
        "backup-policy",
        "create",
        "--vault-name",
        VAULT,
        "--backup-policy-name",
        "OssPolicy",
        "--policy",
        policy.to_str().unwrap(),
    ]);
    let db = sample_database(name, 200);
    let instance = w.protect(VAULT, &db, &w.admin_secret(&db));
    for _ in 0..3 {
        let job = w.backup(VAULT, &instance);
        assert_eq!(job["properties"]["status"], "Completed", "{job:#}");
    }
    let rest = BlobRest::new(
        AzureLocation::parse(&url).unwrap().unwrap(),
        AzureAuth::Emulator {
            endpoint: azurite.blob_url(),
            key: EMULATOR_ACCOUNT_KEY.into(),
        },
    );
    (w, instance, rest)
}

fn sweep_args() -> [&'static str; 6] {
    ["retention", "sweep", "--vault-name", VAULT, "--at", LATER]
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The recovery points deleted according to the job history, one entry per job.
fn deletion_jobs(w: &World) -> Vec<Value> {
    w.json(&[
        "job",
        "list",
        "--vault-name",
        VAULT,
        "--operation",
        "DeleteRecoveryPoint",
    ])
    .as_array()
    .unwrap()
    .clone()
}

#[test]
fn a_held_lease_refuses_sweeps_gc_and_deletions_naming_the_holder_until_released() {
    let azurite = Azurite::start();
    let (w, instance, rest) = blob_vault(&azurite, "lease_held");
    let points = w.recovery_points(VAULT, &instance);
    assert_eq!(points.len(), 3);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let held = rt
        .block_on(DestructiveGuard::acquire_lease(
            &rest,
            None,
            VAULT,
            "garbage collection",
            LeaseTiming::default(),
        ))
        .unwrap();

    let holder = format!("garbage collection by pid {} on ", std::process::id());
    let oldest = points.last().unwrap()["name"].as_str().unwrap().to_owned();
    for args in [
        &sweep_args()[..],
        &["backup-vault", "gc", "--vault-name", VAULT],
        &[
            "recovery-point",
            "delete",
            "--vault-name",
            VAULT,
            "--backup-instance-name",
            &instance,
            "--recovery-point-id",
            &oldest,
            "--yes",
        ],
    ] {
        let err = w.fails(args);
        for part in [
            "UserErrorDestructiveOperationInProgress",
            &holder,
            "expires by itself within 60 seconds",
            "pgvault backup-vault break-lock --vault-name LeaseVault --yes",
        ] {
            assert!(err.contains(part), "{args:?}: `{part}` missing from: {err}");
        }
    }
    // Nothing was deleted, and no deletion was even recorded.
    assert_eq!(w.recovery_points(VAULT, &instance).len(), 3);
    assert!(deletion_jobs(&w).is_empty());
    // A dry run needs no lock.
    let mut dry = sweep_args().to_vec();
    dry.push("--dry-run");
    assert_eq!(
        w.json(&dry)[0]["plan"]["actions"].as_array().unwrap().len(),
        2
    );

    rt.block_on(held.release()).unwrap();
    let swept = w.json(&sweep_args());
    assert_eq!(
        swept[0]["job"]["properties"]["status"], "Completed",
        "{swept:#}"
    );
    assert_eq!(w.recovery_points(VAULT, &instance).len(), 1);
    assert_eq!(deletion_jobs(&w).len(), 2);
}

#[test]
fn of_two_concurrent_sweeps_never_both_delete() {
    let azurite = Azurite::start();
    let (w, instance, _rest) = blob_vault(&azurite, "lease_race");
    let spawn = || {
        w.command(&sweep_args())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    // Whichever wins, and whether or not they overlapped: each either swept, or was refused
    // because the other held the lease (named, or, in the moment between taking the lease
    // and writing its name into the blob, described as just started).
    for out in &outs {
        assert!(
            out.status.success()
                || stderr(out).contains("UserErrorDestructiveOperationInProgress")
                    && (stderr(out).contains("(retention sweep by pid ")
                        || stderr(out).contains("(a process that has just started")),
            "{}",
            stderr(out)
        );
    }
    assert!(outs.iter().any(|o| o.status.success()));
    // Each expired point was deleted once, by one sweep: a sweep plans under the lease, so
    // one that runs after the other finds nothing left to do.
    let deletions = deletion_jobs(&w);
    assert_eq!(deletions.len(), 2, "{deletions:#?}");
    assert!(
        deletions
            .iter()
            .all(|j| j["properties"]["status"] == "Completed"),
        "{deletions:#?}"
    );
    let sweeps = w.json(&[
        "job",
        "list",
        "--vault-name",
        VAULT,
        "--operation",
        "RetentionSweep",
    ]);
    let planned: Vec<&Value> = sweeps
        .as_array()
        .unwrap()
        .iter()
        .map(|j| &j["properties"]["extendedInfo"]["additionalDetails"]["Planned"])
        .collect();
    assert_eq!(
        planned.iter().filter(|p| **p != "0").count(),
        1,
        "{sweeps:#}"
    );
    assert_eq!(w.recovery_points(VAULT, &instance).len(), 1);
}

#[test]
fn a_crashed_holders_lease_is_broken_with_break_lock() {
    let azurite = Azurite::start();
    let (w, instance, rest) = blob_vault(&azurite, "lease_crash");
    // A process on another host took the lease, wrote who it is, and died: nothing renews
    // or releases the lease. (Blob Storage would end it within 60 seconds.)
    let rt = tokio::runtime::Runtime::new().unwrap();
    let crashed = LockInfo {
        kind: LockKind::Destructive,
        host: "crashed-host".into(),
        pid: 4242,
        operation: "retention sweep".into(),
        created: chrono::Utc::now(),
        refreshed: chrono::Utc::now(),
    };
    rt.block_on(async {
        let id = "0f0f0f0f-0000-4000-8000-000000000001";
        let _ = rest
            .put_blob(LEASE_BLOB, bytes_of(&crashed).into(), &[])
            .await;
        rest.acquire_lease(LEASE_BLOB, 60, id).await.unwrap();
    });

    let err = w.fails(&sweep_args());
    assert!(
        err.contains("(retention sweep by pid 4242 on crashed-host since "),
        "{err}"
    );
    let unconfirmed = w.fails(&["backup-vault", "break-lock", "--vault-name", VAULT]);
    assert!(
        unconfirmed.contains("UserErrorConfirmationRequired") && unconfirmed.contains("--yes"),
        "{unconfirmed}"
    );
    assert_eq!(w.recovery_points(VAULT, &instance).len(), 3);

    let broken = w.json(&["backup-vault", "break-lock", "--vault-name", VAULT, "--yes"]);
    assert_eq!(broken["mechanism"], "lease", "{broken:#}");
    assert_eq!(broken["broken"], true, "{broken:#}");
    assert_eq!(broken["holders"][0]["host"], "crashed-host", "{broken:#}");
    w.json(&sweep_args());
    assert_eq!(w.recovery_points(VAULT, &instance).len(), 1);
    // Nothing holds it now; breaking again says so.
    let again = w.json(&["backup-vault", "break-lock", "--vault-name", VAULT, "--yes"]);
    assert_eq!(again["broken"], false, "{again:#}");
}

#[test]
fn a_local_vault_names_the_holder_and_break_lock_removes_its_lock() {
    let w = World::new();
    let dir = w.vault_with_policy("LocalVault");
    // A destructive lock of a live process elsewhere (refreshed now: not stale).
    let elsewhere = LockInfo {
        kind: LockKind::Destructive,
        host: "other-host".into(),
        pid: 77,
        operation: "garbage collection".into(),
        created: chrono::Utc::now(),
        refreshed: chrono::Utc::now(),
    };
    std::fs::create_dir_all(dir.join("locks")).unwrap();
    std::fs::write(dir.join("locks/elsewhere.json"), bytes_of(&elsewhere)).unwrap();

    let err = w.fails(&["backup-vault", "gc", "--vault-name", "LocalVault"]);
    for part in [
        "UserErrorDestructiveOperationInProgress",
        "(garbage collection by pid 77 on other-host since ",
        "goes stale",
        "pgvault backup-vault break-lock --vault-name LocalVault --yes",
    ] {
        assert!(err.contains(part), "`{part}` missing from: {err}");
    }
    let broken = w.json(&[
        "backup-vault",
        "break-lock",
        "--vault-name",
        "LocalVault",
        "--yes",
    ]);
    assert_eq!(broken["mechanism"], "lock", "{broken:#}");
    assert_eq!(broken["holders"][0]["pid"], 77, "{broken:#}");
    assert!(!dir.join("locks/elsewhere.json").exists());
    w.json(&["backup-vault", "gc", "--vault-name", "LocalVault"]);
}

fn bytes_of(info: &LockInfo) -> Vec<u8> {
    serde_json::to_vec(info).unwrap()
}
