//! The retention sweep does what `backup-policy simulate` predicts.
//!
//! Two years of weekly recovery points are written into a real vault folder (streams through
//! the real write path; no PostgreSQL is needed, since the sweep reads only manifests and
//! chunks), for two instances: one under the README's ten-year policy (monthly and yearly
//! points *move* to the archive tier when they leave the vault tier) and one under a variant
//! whose monthly points are *copied* to the archive tier at once. The sweep then runs at
//! successive times across eleven years, and after each run the tiers holding every point must
//! be exactly the simulator's `stateAt` for that time. Jobs, garbage collection and the last
//! point are checked on the way.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

use pgvault_core::engine::Vault;
use pgvault_core::engine::home::Home;
use pgvault_core::engine::sweep::{self, ActionKind};
use pgvault_core::model::job::{JobFilter, JobStatus, Operation};
use pgvault_core::model::policy::{BackupPolicy, DataStoreType};
use pgvault_core::model::simulate::simulate;
use pgvault_core::store::VaultStore;
use pgvault_core::store::manifest::{
    BackupStats, ChunkerParams, DatasourceInfo, MANIFEST_FORMAT, Manifest, PostgresInfo,
};
use pgvault_core::store::paths;
use pgvault_core::store::reader::{load_index, read_stream};
use pgvault_core::store::writer::{Progress, write_stream};
use pgvault_host::retention::GcMode;
use pgvault_host::service::Pgvault;

fn t(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn ten_year_policy() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/policy.ten-years.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The ten-year policy with its monthly points copied to the archive tier at once.
fn immediate_copy_policy() -> Value {
    let mut p = ten_year_policy();
    let rules = p["policyRules"].as_array_mut().unwrap();
    let monthly = rules.iter_mut().find(|r| r["name"] == "Monthly").unwrap();
    monthly["lifecycles"][0]["targetDataStoreCopySettings"][0]["copyAfter"] =
        json!({"objectType": "ImmediateCopyOption"});
    p
}

fn instance_json(name: &str, policy: &str) -> Value {
    json!({
        "id": format!("/backupInstances/{name}"),
        "name": name,
        "type": "Microsoft.DataProtection/backupVaults/backupInstances",
        "properties": {
            "dataSourceInfo": {
                "datasourceType": "Microsoft.DBforPostgreSQL/flexibleServers/databases",
                "objectType": "Datasource",
                "resourceID": format!("postgres://db.example:5432/{name}"),
                "resourceName": name,
            },
            "datasourceAuthCredentials": {
                "objectType": "SecretStoreBasedAuthCredentials",
                "secretStoreResource": {"secretStoreType": "Environment", "uri": "env:UNUSED"},
            },
            "friendlyName": name,
            "objectType": "BackupInstance",
            "policyInfo": {"policyId": format!("/backupPolicies/{policy}")},
            "currentProtectionState": "ProtectionConfigured",
        }
    })
}

/// Writes one recovery point of `instance` taken at `time` with `tag`; its dump is a few
/// chunks, most shared with the instance's other points.
async fn write_point(
    vault: &pgvault_core::engine::Vault,
    instance: &str,
    n: usize,
    time: DateTime<Utc>,
    tag: &str,
) -> String {
    let mut data = Vec::new();
    for i in 0..3000u32 {
        let row = if i % 1000 == (n as u32 % 1000) {
            n as u32
        } else {
            i
        };
        data.extend_from_slice(
            format!(
                "{instance}\t{i}\t{row}\t{}\n",
                blake3::hash(&i.to_le_bytes()).to_hex()
            )
            .as_bytes(),
        );
    }
    let known = Arc::new(load_index(&vault.store).await.unwrap());
    let out = write_stream(
        &vault.store,
        known,
        &vault.writer_config().unwrap(),
        std::io::Cursor::new(data),
        Arc::new(Progress::default()),
        None,
        pgvault_core::store::observe::StreamFormat::observer(
            &pgvault_core::store::observe::AnyBytes,
        ),
    )
    .await
    .unwrap();
    let id = format!("{instance}-{n:04}");
    let manifest = Manifest {
        format_version: MANIFEST_FORMAT,
        recovery_point_id: id.clone(),
        backup_instance_name: instance.into(),
        recovery_point_time: time,
        policy_name: String::new(),
        policy_rule_name: "BackupWeekly".into(),
        retention_tag_name: tag.into(),
        expiry_time: None,
        rehydration_expiry_time: None,
        job_id: String::new(),
        datasource: DatasourceInfo {
            resource_id: format!("postgres://db.example:5432/{instance}"),
            server: "db.example".into(),
            port: 5432,
            database: instance.into(),
        },
        postgres: PostgresInfo {
            server_version: "17.0".into(),
            pg_dump_version: "17.0".into(),
            database_size: 0,
            username_used: "backup".into(),
        },
        chunker: ChunkerParams {
            ..vault.config.chunker.clone()
        },
        stream: out.stream,
        archive: None,
        contents: None,
        stats: BackupStats {
            bytes_read: 0,
            bytes_stored: 0,
            new_chunks: 0,
            duration_ms: 0,
        },
    };
    vault
        .store
        .put(
            &paths::recovery_point(instance, &id),
            manifest.to_bytes().into(),
        )
        .await
        .unwrap();
    id
}

type Case = (&'static str, BackupPolicy, Vec<String>);

fn window() -> (DateTime<Utc>, DateTime<Utc>) {
    (t("2025-01-01T00:00:00Z"), t("2027-01-01T00:00:00Z"))
}

/// A vault with an archive tier and two instances with two years of weekly points each.
async fn setup() -> (
    tempfile::TempDir,
    Pgvault,
    pgvault_core::engine::Vault,
    Vec<Case>,
) {
    let dir = tempfile::tempdir().unwrap();
    let svc = Pgvault::open(Home::at(dir.path().join("home"))).unwrap();
    let vault_url = format!("file://{}", dir.path().join("vault").display());
    let archive_url = format!("file://{}", dir.path().join("archive").display());
    svc.create_vault("V", &Default::default(), Some(&vault_url))
        .await
        .unwrap();
    svc.set_archive_storage("V", &archive_url).await.unwrap();
    let vault = Vault::open(VaultStore::open(&vault_url).unwrap())
        .await
        .unwrap();

    let (from, to) = window();
    let mut cases = Vec::new();
    for (instance, policy_name, policy_json) in [
        ("moves", "TenYears", ten_year_policy()),
        ("copies", "ImmediateCopy", immediate_copy_policy()),
    ] {
        let policy = BackupPolicy::from_json(&policy_json.to_string()).unwrap();
        svc.create_policy("V", policy_name, &policy).await.unwrap();
        vault
            .store
            .put_json(
                &paths::instance(instance),
                &instance_json(instance, policy_name),
            )
            .await
            .unwrap();
        // The points the simulator assumes: every scheduled backup of the window, tagged as
        // the policy tags them.
        let sim = simulate(&policy, from, to, to).unwrap();
        let mut ids = Vec::new();
        for (n, p) in sim.recovery_points.iter().enumerate() {
            ids.push(
                write_point(
                    &vault,
                    instance,
                    n,
                    p.recovery_point_time,
                    &p.retention_tag_name,
                )
                .await,
            );
        }
        cases.push((instance, policy, ids));
    }
    (dir, svc, vault, cases)
}

/// The tiers holding each point of each case, against the simulator's at `at`.
async fn assert_as_simulated(
    vault: &pgvault_core::engine::Vault,
    cases: &[Case],
    at: DateTime<Utc>,
) {
    let (from, to) = window();
    for (instance, policy, ids) in cases {
        let expected = simulate(policy, from, to, at).unwrap();
        let stored = vault.recovery_points(instance).await.unwrap();
        for (point, id) in expected.recovery_points.iter().zip(ids) {
            let mut held: Vec<DataStoreType> = stored
                .iter()
                .find(|s| s.manifest().recovery_point_id == *id)
                .map(|s| s.tiers().map(|(tier, _)| tier).collect())
                .unwrap_or_default();
            let mut want = point.state_at.clone();
            want.sort_by_key(|d| d.to_string());
            held.sort_by_key(|d| d.to_string());
            assert_eq!(
                held, want,
                "{instance} point {id} at {at} ({})",
                point.reason
            );
        }
    }
}

/// A sweep killed half way (a point copied to the archive tier but not yet removed from the
/// vault tier; a point removed from the archive tier but not yet from the vault tier) is
/// finished by the next sweep, which ends exactly where an uninterrupted one would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_killed_half_way_is_finished_by_the_next() {
    let (_dir, svc, vault, cases) = setup().await;
    let at = t("2028-06-01T00:00:00Z");
    let plan = sweep::plan_sweep(&vault, at).await.unwrap();
    let moved = plan
        .actions
        .iter()
        .find(|a| a.action == ActionKind::MoveToArchive)
        .expect("the plan moves a point");
    let deleted = plan
        .actions
        .iter()
        .find(|a| a.action == ActionKind::Delete)
        .expect("the plan deletes a point");
    // Killed between the two halves of a move: the copy is committed, the original remains.
    let manifest = vault
        .recovery_point(&moved.backup_instance_name, &moved.recovery_point_id)
        .await
        .unwrap();
    sweep::copy_to_archive(&vault, &manifest, moved.archive_expiry_time, Arc::default())
        .await
        .unwrap();
    // Killed half way through a deletion: the vault-tier manifest is gone, nothing else.
    vault
        .delete_from(
            DataStoreType::VaultStore,
            &deleted.backup_instance_name,
            &deleted.recovery_point_id,
        )
        .await
        .unwrap();

    let replanned = sweep::plan_sweep(&vault, at).await.unwrap();
    let action_for = |id: &str| {
        replanned
            .actions
            .iter()
            .find(|a| a.recovery_point_id == id)
            .map(|a| a.action)
    };
    assert_eq!(
        action_for(&moved.recovery_point_id),
        Some(ActionKind::DeleteFromVault),
        "the move finishes without copying again"
    );
    assert_eq!(replanned.actions.len(), plan.actions.len() - 1);

    let outcome = svc
        .retention_sweep("V", at, false, GcMode::Always)
        .await
        .unwrap();
    assert_eq!(outcome.job.unwrap().status(), JobStatus::Completed);
    assert_as_simulated(&vault, &cases, at).await;
    assert!(
        sweep::plan_sweep(&vault, at)
            .await
            .unwrap()
            .actions
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_archives_and_deletes_exactly_what_the_simulator_predicts() {
    let (_dir, svc, vault, cases) = setup().await;
    let (from, to) = window();
    assert!(cases[0].2.len() > 100);

    // Across eleven years, every 41 days (so sweeps fall on varied days).
    let times: Vec<DateTime<Utc>> = (0..100).map(|k| to + TimeDelta::days(41 * k)).collect();
    let mut moved_or_deleted = 0usize;
    for at in times {
        let outcome = svc
            .retention_sweep("V", at, false, GcMode::WhenDue)
            .await
            .unwrap();
        assert_eq!(
            outcome.job.as_ref().unwrap().status(),
            JobStatus::Completed,
            "{at}: {outcome:?}"
        );
        assert!(
            outcome.plan.warnings.is_empty(),
            "{:?}",
            outcome.plan.warnings
        );
        assert!(
            outcome
                .action_jobs
                .iter()
                .all(|j| j.status() == JobStatus::Completed)
        );
        moved_or_deleted += outcome.action_jobs.len();
        assert_as_simulated(&vault, &cases, at).await;
        // A second sweep at the same time has nothing to do.
        let again = svc
            .retention_sweep("V", at, true, GcMode::Never)
            .await
            .unwrap();
        assert!(
            again.plan.actions.is_empty(),
            "{at}: {:?}",
            again.plan.actions
        );
    }

    // Every action was a job of its own, recorded at its sweep's time.
    let action_jobs = svc
        .jobs(
            &JobFilter::default()
                .vault("V")
                .operation(Operation::MoveToArchive),
        )
        .unwrap()
        .len()
        + svc
            .jobs(
                &JobFilter::default()
                    .vault("V")
                    .operation(Operation::DeleteRecoveryPoint),
            )
            .unwrap()
            .len();
    assert_eq!(action_jobs, moved_or_deleted);
    assert!(moved_or_deleted > 200, "{moved_or_deleted}");

    // In 2037 everything has expired: each instance keeps exactly one point, which reads back,
    // and garbage collection has nothing left to do.
    for (instance, policy, ids) in &cases {
        let left = vault.recovery_points(instance).await.unwrap();
        assert_eq!(left.len(), 1, "{instance}");
        let kept = left[0].manifest();
        let tier = left[0].tiers().next().unwrap().0;
        // The one planned to be deleted last (a yearly point, nine years in the archive).
        let sim = simulate(policy, from, to, t("2037-06-01T00:00:00Z")).unwrap();
        let planned_last = sim
            .recovery_points
            .iter()
            .position(|p| !p.state_at.is_empty())
            .unwrap();
        assert_eq!(kept.recovery_point_id, ids[planned_last]);
        assert_eq!(kept.retention_tag_name, "Yearly");
        let store = vault.tier_store(tier).unwrap();
        let index = load_index(store).await.unwrap();
        let mut out = Vec::new();
        read_stream(
            store,
            &index,
            &vault.chunk_key(),
            &kept.stream,
            &mut out,
            Arc::default(),
        )
        .await
        .unwrap();
        assert_eq!(out.len() as u64, kept.stream.length);
    }
    let gc = svc.collect_vault_garbage("V").await.unwrap();
    for tier in &gc {
        let report = tier.outcome.as_ref().unwrap();
        assert_eq!(
            (report.dead_packs, report.repacked_packs),
            (0, 0),
            "{:?}",
            tier.data_store_type
        );
    }
}
