//! Restore drills ([`pgvault_core::engine::drill`]) where they can go wrong: a restore that
//! fails on the target server, and a drill cancelled half way. Either way the scratch database
//! the drill created must not stay behind. (Drills that pass or find differences are tested
//! end to end, through the CLI, in `tests/e2e/drill.rs`.)

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use pgvault_core::engine::backup::NoSteps;
use pgvault_core::engine::drill::{
    DrillStep, DrillSteps, DrillTarget, drill, scratch_database_name,
};
use pgvault_core::engine::leftovers::Leftovers;
use pgvault_testkit::TestCluster;
use tokio::sync::Notify;

use crate::contents::Protected;
use crate::{LOGIN_PASSWORD, create_login_role, server_address};

/// Every step's end, in order: its name and whether it succeeded.
#[derive(Default)]
struct Recorded {
    ended: Mutex<Vec<(&'static str, bool)>>,
    /// Told when the restore has finished (and the scratch database is full).
    restored: Notify,
}

impl DrillSteps for Recorded {
    fn started(&self, _: DrillStep) {}

    fn finished(&self, step: DrillStep, result: Result<String, String>) {
        self.ended
            .lock()
            .unwrap()
            .push((step.name(), result.is_ok()));
        if step == DrillStep::Restore {
            self.restored.notify_one();
        }
    }
}

fn database_exists(cluster: &TestCluster, name: &str) -> bool {
    cluster.psql(
        "postgres",
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"),
    ) == "1"
}

/// A target on the shared cluster with the login in `secret` (written to `dir`).
fn target(cluster: &TestCluster, dir: &std::path::Path, secret: &str) -> DrillTarget {
    let file = dir.join("target.secret");
    std::fs::write(&file, secret).unwrap();
    DrillTarget::parse(
        &format!("postgres://{}/postgres", server_address(cluster)),
        Some("File"),
        &format!("file://{}", file.display()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_whose_restore_fails_drops_its_scratch_database() {
    let cluster = TestCluster::shared();
    let db = cluster.create_database("drill_restore_fails");
    // adminpack is not a trusted extension: only a superuser may create it, so a restore by
    // an ordinary login with CREATEDB fails half way, after the scratch database exists.
    cluster.psql(
        &db,
        "CREATE EXTENSION adminpack; CREATE TABLE t (x int); INSERT INTO t VALUES (1);",
    );
    let protected = Protected::new(cluster, &db).await;
    let manifest = protected.back_up(&NoSteps).await;

    let login = create_login_role(cluster, &db);
    let dir = tempfile::tempdir().unwrap();
    let target = target(
        cluster,
        dir.path(),
        &format!(
            "User Id={login};Password=\"{}\"",
            LOGIN_PASSWORD.replace('"', "\"\"")
        ),
    );
    let scratch = scratch_database_name();
    let steps = Recorded::default();
    let err = drill(
        &protected.vault,
        &manifest,
        &target,
        &scratch,
        Arc::new(AtomicU64::new(0)),
        &steps,
        &Leftovers::untracked(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.code.as_str(),
        "UserErrorPgRestoreFailed",
        "{}",
        err.message
    );
    assert!(err.message.contains("adminpack"), "{}", err.message);
    assert_eq!(
        *steps.ended.lock().unwrap(),
        [("Restore", false), ("DropScratchDatabase", true)]
    );
    assert!(!database_exists(cluster, &scratch), "{scratch} stayed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_drill_drops_its_scratch_database() {
    let cluster = TestCluster::shared();
    let db = cluster.create_database("drill_cancelled");
    cluster.psql(&db, "CREATE TABLE t (x int); INSERT INTO t VALUES (1);");
    let protected = Protected::new(cluster, &db).await;
    let manifest = protected.back_up(&NoSteps).await;
    let dir = tempfile::tempdir().unwrap();
    let target = target(
        cluster,
        dir.path(),
        &format!(
            "User Id={};Password=\"{}\"",
            cluster.admin_user(),
            cluster.admin_password().replace('"', "\"\"")
        ),
    );
    let scratch = scratch_database_name();
    let steps = Recorded::default();

    // The drill is dropped once its restore is done: the scratch database exists and the drill
    // will never reach its own drop.
    let untracked = Leftovers::untracked();
    tokio::select! {
        _ = drill(&protected.vault, &manifest, &target, &scratch, Arc::new(AtomicU64::new(0)), &steps, &untracked) => {
            panic!("the drill finished before it could be cancelled")
        }
        _ = steps.restored.notified() => {}
    }
    assert_eq!(*steps.ended.lock().unwrap(), [("Restore", true)]);

    // The guard's task drops it; wait for that, boundedly, one catalog query at a time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while database_exists(cluster, &scratch) {
        assert!(
            std::time::Instant::now() < deadline,
            "{scratch} stayed after the drill was cancelled"
        );
        tokio::task::yield_now().await;
    }
}
