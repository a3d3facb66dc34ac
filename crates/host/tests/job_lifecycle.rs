//! Every kind of operation, cancelled half way, ends its job `Cancelled` and leaves the vault's
//! locks free (`pgvault_host`'s one job lifecycle, `job_run.rs`).
//!
//! Each test starts an operation and drives it by hand, one poll at a time, until its job is
//! `InProgress` in the history; then it drops the operation's future there, as the REPL's
//! Ctrl-C, a script's wall time or the host's shutdown would. Operations that talk to
//! PostgreSQL talk to a listener of the test's that never answers, so they are held inside
//! their work for as long as the test likes. The vault is a real folder; the recovery points
//! are written through the real write path (no PostgreSQL is needed to sweep, move, rehydrate
//! or delete them).

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use pgvault_core::engine::Vault;
use pgvault_core::engine::drill::{DrillTarget, RecoveryPointChoice};
use pgvault_core::engine::home::Home;
use pgvault_core::model::instance::BackupInstanceRequest;
use pgvault_core::model::job::{JobFilter, JobId, JobStatus, Operation};
use pgvault_core::model::policy::{BackupPolicy, DataStoreType};
use pgvault_core::model::restore::RestoreRequest;
use pgvault_core::store::VaultStore;
use pgvault_core::store::lease::DestructiveGuard;
use pgvault_core::store::lock::{InstanceLock, LockError, LockKind, VaultLock};
use pgvault_core::store::manifest::{
    BackupStats, ChunkerParams, DatasourceInfo, MANIFEST_FORMAT, Manifest, PostgresInfo,
};
use pgvault_core::store::paths;
use pgvault_core::store::reader::load_index;
use pgvault_core::store::writer::{Progress, write_stream};
use pgvault_host::dropin::{ReadyScript, RunOptions, run_script_file};
use pgvault_host::retention::GcMode;
use pgvault_host::service::Pgvault;

fn t(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// How long a test may take to see what it waits for before it fails (never waited out
/// when things work: each wait ends as soon as its condition holds).
const PATIENCE: Duration = Duration::from_secs(60);

fn weekly_policy() -> BackupPolicy {
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
                    "schedule": {"repeatingTimeIntervals": ["R/2030-01-06T00:00:00+00:00/P1W"], "timeZone": "UTC"},
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
    BackupPolicy::from_json(&policy.to_string()).unwrap()
}

fn ten_year_policy() -> BackupPolicy {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/policy.ten-years.json"
    );
    BackupPolicy::from_json(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A PostgreSQL server that never answers: connections are accepted by the kernel (the
/// listener's backlog) and then wait for a reply that never comes.
struct SilentServer {
    listener: std::net::TcpListener,
}

impl SilentServer {
    fn start() -> Self {
        SilentServer {
            listener: std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        }
    }

    fn port(&self) -> u16 {
        self.listener.local_addr().unwrap().port()
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://127.0.0.1:{}/{database}", self.port())
    }
}

struct World {
    dir: tempfile::TempDir,
    svc: Arc<Pgvault>,
    vault: Vault,
    server: SilentServer,
}

impl World {
    /// A home with vault `V` (with an archive tier if `archive`), `policy` as `P`, and
    /// instance `db` under it, protected, whose database is on the silent server.
    async fn new(policy: BackupPolicy, archive: bool) -> World {
        let dir = tempfile::tempdir().unwrap();
        let svc = Pgvault::open(Home::at(dir.path().join("home"))).unwrap();
        let url = format!("file://{}", dir.path().join("vault").display());
        svc.create_vault("V", &Default::default(), Some(&url))
            .await
            .unwrap();
        if archive {
            let archive_url = format!("file://{}", dir.path().join("archive").display());
            svc.set_archive_storage("V", &archive_url).await.unwrap();
        }
        svc.create_policy("V", "P", &policy).await.unwrap();
        let server = SilentServer::start();
        let world = World {
            vault: Vault::open(VaultStore::open(&url).unwrap()).await.unwrap(),
            svc: Arc::new(svc),
            dir,
            server,
        };
        world
            .vault
            .store
            .put_json(&paths::instance("db"), &world.instance_json("db"))
            .await
            .unwrap();
        world
    }

    /// A secret file holding a connection string to the silent server.
    fn secret(&self) -> String {
        let path = self.dir.path().join("secret");
        std::fs::write(
            &path,
            format!(
                "Server=127.0.0.1;Database=db;Port={};User Id=backup;Password=pw;Ssl Mode=Disable;",
                self.server.port()
            ),
        )
        .unwrap();
        format!("file://{}", path.display())
    }

    fn instance_json(&self, name: &str) -> Value {
        json!({
            "name": name,
            "properties": {
                "dataSourceInfo": {
                    "datasourceType": "Microsoft.DBforPostgreSQL/flexibleServers/databases",
                    "objectType": "Datasource",
                    "resourceID": self.server.url(name),
                    "resourceName": name,
                },
                "datasourceAuthCredentials": {
                    "objectType": "SecretStoreBasedAuthCredentials",
                    "secretStoreResource": {"secretStoreType": "File", "uri": self.secret()},
                },
                "friendlyName": name,
                "objectType": "BackupInstance",
                "policyInfo": {"policyId": "/backupPolicies/P"},
                "currentProtectionState": "ProtectionConfigured",
            }
        })
    }

    /// Writes a recovery point of `db` taken at `time` with `tag` through the real write path.
    async fn point(&self, n: usize, time: DateTime<Utc>, tag: &str) -> String {
        let vault = &self.vault;
        let mut data = Vec::new();
        for i in 0..3000u32 {
            data.extend_from_slice(format!("{n}\t{i}\t{}\n", i * 7 + n as u32).as_bytes());
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
        let id = format!("db-{n:04}");
        let manifest = Manifest {
            format_version: MANIFEST_FORMAT,
            recovery_point_id: id.clone(),
            backup_instance_name: "db".into(),
            recovery_point_time: time,
            policy_name: "P".into(),
            policy_rule_name: "BackupWeekly".into(),
            retention_tag_name: tag.into(),
            expiry_time: None,
            rehydration_expiry_time: None,
            job_id: String::new(),
            datasource: DatasourceInfo {
                resource_id: self.server.url("db"),
                server: "127.0.0.1".into(),
                port: self.server.port(),
                database: "db".into(),
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
                &paths::recovery_point("db", &id),
                manifest.to_bytes().into(),
            )
            .await
            .unwrap();
        id
    }

    fn status(&self, id: JobId) -> JobStatus {
        self.svc.job(&id.to_string()).unwrap().status()
    }

    fn jobs(&self, operation: Operation) -> Vec<pgvault_core::model::job::Job> {
        self.svc
            .jobs(&JobFilter::default().operation(operation))
            .unwrap()
    }

    /// Drives `op` one poll at a time until a job of `operation` is `InProgress`, then drops
    /// it there, half way through its work; returns that job. Fails if `op` ends first.
    async fn cancel_once_running<F: Future>(&self, operation: Operation, op: F) -> JobId {
        let mut op = Box::pin(op);
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let ended =
                std::future::poll_fn(|cx| Poll::Ready(op.as_mut().poll(cx).is_ready())).await;
            assert!(!ended, "the {operation} ended before it could be cancelled");
            let running = self
                .svc
                .jobs(
                    &JobFilter::default()
                        .operation(operation)
                        .status(JobStatus::InProgress),
                )
                .unwrap();
            if let Some(job) = running.first() {
                drop(op);
                return job.id;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {operation} job started"
            );
            tokio::task::yield_now().await;
        }
    }

    /// Every lock a job can hold on the vault is free: another process's garbage collection
    /// (the exclusive lock, on each tier), destructive operation (the guard) and backup of
    /// `db` (its instance lock) can all start. A dropped job's locks are released by tasks its
    /// drop spawned; this waits for them.
    async fn assert_locks_free(&self) {
        let deadline = std::time::Instant::now() + PATIENCE;
        for tier in [DataStoreType::VaultStore, DataStoreType::ArchiveStore] {
            let Some(store) = self.vault.tier_store(tier) else {
                continue;
            };
            loop {
                match VaultLock::acquire(store, LockKind::Exclusive, "the test").await {
                    Ok(lock) => {
                        lock.release().await.unwrap();
                        break;
                    }
                    Err(e @ LockError::Locked { .. }) => {
                        assert!(
                            std::time::Instant::now() < deadline,
                            "{tier} stays locked: {e}"
                        );
                        tokio::task::yield_now().await;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }
        loop {
            match DestructiveGuard::acquire(&self.vault.store, "V", "the test").await {
                Ok(guard) => {
                    guard.release().await.unwrap();
                    break;
                }
                Err(e) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the destructive-operation guard stays held: {e}"
                    );
                    tokio::task::yield_now().await;
                }
            }
        }
        loop {
            match InstanceLock::acquire(&self.vault.store, "db", "the test", None).await {
                Ok(lock) => {
                    lock.release().await.unwrap();
                    break;
                }
                Err(e) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "db's backup lock stays held: {e}"
                    );
                    tokio::task::yield_now().await;
                }
            }
        }
    }
}

#[tokio::test]
async fn a_cancelled_backup_ends_cancelled_and_frees_the_vault_and_the_instance() {
    let w = World::new(weekly_policy(), false).await;
    let job = w
        .cancel_once_running(
            Operation::OnDemandBackup,
            w.svc.adhoc_backup("V", "db", "BackupWeekly", None),
        )
        .await;
    assert_eq!(w.status(job), JobStatus::Cancelled);
    w.assert_locks_free().await;
}

#[tokio::test]
async fn a_cancelled_protection_ends_cancelled() {
    let w = World::new(weekly_policy(), false).await;
    let request: BackupInstanceRequest = serde_json::from_value(w.instance_json("other")).unwrap();
    let job = w
        .cancel_once_running(Operation::ConfigureBackup, w.svc.protect("V", request))
        .await;
    assert_eq!(w.status(job), JobStatus::Cancelled);
    w.assert_locks_free().await;
}

#[tokio::test]
async fn a_cancelled_protection_state_change_ends_cancelled() {
    let w = World::new(weekly_policy(), false).await;
    let job = w
        .cancel_once_running(
            Operation::ConfigureBackup,
            w.svc
                .set_protection_state("V", "db", "BackupSchedulesSuspended"),
        )
        .await;
    assert_eq!(w.status(job), JobStatus::Cancelled);
    w.assert_locks_free().await;
}

#[tokio::test]
async fn a_cancelled_restore_ends_cancelled_and_frees_the_vault() {
    let w = World::new(weekly_policy(), false).await;
    let point = w.point(1, t("2030-01-06T00:00:00Z"), "Default").await;
    let request: RestoreRequest = serde_json::from_value(json!({
        "objectType": "AzureBackupRecoveryPointBasedRestoreRequest",
        "recoveryPointId": point,
        "restoreTargetInfo": {
            "objectType": "RestoreTargetInfo",
            "recoveryOption": "FailIfExists",
            "datasourceInfo": {
                "datasourceType": "Microsoft.DBforPostgreSQL/flexibleServers/databases",
                "objectType": "Datasource",
                "resourceID": w.server.url("restored"),
                "resourceName": "restored",
            },
            "datasourceAuthCredentials": {
                "objectType": "SecretStoreBasedAuthCredentials",
                "secretStoreResource": {"secretStoreType": "File", "uri": w.secret()},
            },
        }
    }))
    .unwrap();
    let job = w
        .cancel_once_running(Operation::Restore, w.svc.restore("V", "db", &request))
        .await;
    assert_eq!(w.status(job), JobStatus::Cancelled);
    w.assert_locks_free().await;
}

#[tokio::test]
async fn a_cancelled_drill_ends_cancelled_and_frees_the_vault() {
    let w = World::new(weekly_policy(), false).await;
    w.point(1, t("2030-01-06T00:00:00Z"), "Default").await;
    let target = DrillTarget::parse(&w.server.url("postgres"), None, &w.secret()).unwrap();
    let job = w
        .cancel_once_running(
            Operation::RestoreDrill,
            w.svc
                .restore_drill("V", "db", &RecoveryPointChoice::Latest, &target),
        )
        .await;
    assert_eq!(w.status(job), JobStatus::Cancelled);
    w.assert_locks_free().await;
}

#[tokio::test]
async fn a_sweep_cancelled_during_a_deletion_ends_both_jobs_cancelled_and_frees_the_guard() {
    let w = World::new(weekly_policy(), false).await;
    w.point(1, t("2030-01-06T00:00:00Z"), "Default").await;
    w.point(2, t("2030-01-20T00:00:00Z"), "Default").await;
    let at = t("2030-01-21T00:00:00Z");
    let deletion = w
        .cancel_once_running(
            Operation::DeleteRecoveryPoint,
            w.svc.retention_sweep("V", at, false, GcMode::Always),
        )
        .await;
    assert_eq!(w.status(deletion), JobStatus::Cancelled);
    let sweeps = w.jobs(Operation::RetentionSweep);
    assert_eq!(sweeps.len(), 1);
    assert_eq!(sweeps[0].status(), JobStatus::Cancelled);
    w.assert_locks_free().await;
    // The next sweep is not refused, and does what the cancelled one did not finish.
    let outcome = w
        .svc
        .retention_sweep("V", at, false, GcMode::Always)
        .await
        .unwrap();
    assert_eq!(
        outcome.job.as_ref().map(|j| j.status()),
        Some(JobStatus::Completed)
    );
}

#[tokio::test]
async fn a_sweep_cancelled_during_a_move_to_archive_and_a_cancelled_rehydration_end_cancelled() {
    let w = World::new(ten_year_policy(), true).await;
    let monthly = w.point(1, t("2030-01-31T00:00:00Z"), "Monthly").await;
    w.point(2, t("2030-09-01T00:00:00Z"), "Default").await;
    let at = t("2030-09-02T00:00:00Z");
    let moving = w
        .cancel_once_running(
            Operation::MoveToArchive,
            w.svc.retention_sweep("V", at, false, GcMode::Never),
        )
        .await;
    assert_eq!(w.status(moving), JobStatus::Cancelled);
    assert_eq!(
        w.jobs(Operation::RetentionSweep)[0].status(),
        JobStatus::Cancelled
    );
    w.assert_locks_free().await;

    // Moved for real this time, then a rehydration of it, cancelled half way.
    w.svc
        .retention_sweep("V", at, false, GcMode::Never)
        .await
        .unwrap();
    assert!(
        w.vault
            .manifest_in(DataStoreType::ArchiveStore, "db", &monthly)
            .await
            .is_ok()
    );
    let rehydration = w
        .cancel_once_running(
            Operation::Rehydrate,
            w.svc.rehydrate("V", "db", &monthly, 10, "Standard"),
        )
        .await;
    assert_eq!(w.status(rehydration), JobStatus::Cancelled);
    w.assert_locks_free().await;
}

#[tokio::test]
async fn cancelled_user_deletions_end_cancelled_and_free_the_guard() {
    let w = World::new(weekly_policy(), false).await;
    let old = w.point(1, t("2030-01-06T00:00:00Z"), "Default").await;
    w.point(2, t("2030-01-13T00:00:00Z"), "Default").await;
    let job = w
        .cancel_once_running(
            Operation::DeleteRecoveryPoint,
            w.svc.delete_recovery_point("V", "db", &old),
        )
        .await;
    assert_eq!(w.status(job), JobStatus::Cancelled);
    w.assert_locks_free().await;

    let job = w
        .cancel_once_running(
            Operation::DeleteRecoveryPoint,
            w.svc.delete_backup_instance("V", "db"),
        )
        .await;
    assert_eq!(w.status(job), JobStatus::Cancelled);
    w.assert_locks_free().await;
}

#[tokio::test]
async fn a_cancelled_script_run_ends_cancelled() {
    let w = World::new(weekly_policy(), false).await;
    let path = w.dir.path().join("forever.rhai");
    std::fs::write(&path, "let n = 0;\nloop { n += 1; }\n").unwrap();
    let script = ReadyScript::run_once(&path);
    let options = RunOptions::operator();
    let job = w
        .cancel_once_running(
            Operation::ScriptRun,
            run_script_file(w.svc.clone(), &script, &options, Utc::now()),
        )
        .await;
    assert_eq!(w.status(job), JobStatus::Cancelled);
    // The script stopped too, rather than looping on behind its ended job: its engine, on the
    // script's thread, held the service, and lets it go when the thread ends.
    let deadline = std::time::Instant::now() + PATIENCE;
    while Arc::strong_count(&w.svc) > 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the script runs on after its job was cancelled"
        );
        tokio::task::yield_now().await;
    }
    w.assert_locks_free().await;
}

/// Wakes the test when the operation it polls by hand is ready to be polled again.
struct Woken(tokio::sync::Notify);

impl std::task::Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.0.notify_one();
    }
}

/// Polls `op` at most `polls` times, each time once it asked to be (so each poll takes it to
/// its next await), then drops it; whether it ended first.
async fn drop_after_polls<F: Future>(op: F, polls: usize) -> bool {
    let woken = Arc::new(Woken(tokio::sync::Notify::new()));
    let waker = std::task::Waker::from(woken.clone());
    let mut cx = std::task::Context::from_waker(&waker);
    let mut op = Box::pin(op);
    for _ in 0..polls {
        if op.as_mut().poll(&mut cx).is_ready() {
            return true;
        }
        tokio::time::timeout(PATIENCE, woken.0.notified())
            .await
            .expect("the operation was never woken");
    }
    false
}

/// Cancels `op` (made afresh in a fresh world by `start`) after one poll, then two, and so
/// on until it ends by itself: at every await it passes, its job ends and the vault is free.
async fn cancel_at_every_point<F, Fut>(policy: fn() -> BackupPolicy, start: F)
where
    F: Fn(Arc<World>) -> Fut,
    Fut: Future,
{
    for polls in 1.. {
        let w = Arc::new(World::new(policy(), false).await);
        w.point(1, t("2030-01-06T00:00:00Z"), "Default").await;
        w.point(2, t("2030-01-20T00:00:00Z"), "Default").await;
        let ended = drop_after_polls(start(w.clone()), polls).await;
        let running = w
            .svc
            .jobs(&JobFilter::default().status(JobStatus::InProgress))
            .unwrap();
        assert!(running.is_empty(), "after {polls} polls: {running:#?}");
        w.assert_locks_free().await;
        if ended {
            break;
        }
        assert!(polls < 500, "the operation never ends");
    }
}

#[tokio::test]
async fn a_user_deletion_cancelled_at_any_await_leaves_no_job_running_and_the_vault_free() {
    cancel_at_every_point(weekly_policy, |w| async move {
        w.svc.delete_recovery_point("V", "db", "db-0001").await
    })
    .await;
}

#[tokio::test]
async fn a_sweep_cancelled_at_any_await_leaves_no_job_running_and_the_vault_free() {
    cancel_at_every_point(weekly_policy, |w| async move {
        w.svc
            .retention_sweep("V", t("2030-01-21T00:00:00Z"), false, GcMode::Always)
            .await
    })
    .await;
}
