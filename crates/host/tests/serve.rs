//! The host's event loop on tokio's paused clock: hours of schedules pass in milliseconds, and
//! what ran, when, and how often is read back from the job history.
//!
//! The instances point at a database that does not exist, so every backup fails at once, with
//! a job: these tests are about *when* the loop runs work, not about backups (the e2e tests
//! run real ones, including a SIGTERM during one).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use tokio::sync::mpsc;

use pgvault_core::engine::Vault;
use pgvault_core::engine::home::Home;
use pgvault_core::model::job::{Job, JobFilter, JobOutcome, JobStatus, NewJob, Operation};
use pgvault_core::model::policy::BackupPolicy;
use pgvault_core::store::VaultStore;
use pgvault_core::store::paths;
use pgvault_host::agenda::{Agenda, tick};
use pgvault_host::history::{DEFAULT_JOB_HISTORY_RETENTION, current_owner};
use pgvault_host::serve::{Event, ScriptsOptions, ServeOptions, TokioClock, serve};
use pgvault_host::service::Pgvault;

fn t(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn hourly_policy() -> BackupPolicy {
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
                    "schedule": {"repeatingTimeIntervals": ["R/2030-01-01T00:00:00+00:00/PT1H"], "timeZone": "UTC"},
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

/// A home with vault `V`, the hourly policy and `instances`, each protected at `protected`
/// (its ConfigureBackup job). Their database is unreachable: backups fail fast.
async fn home(dir: &std::path::Path, instances: &[&str], protected: DateTime<Utc>) -> Arc<Pgvault> {
    let svc = Pgvault::open(Home::at(dir.join("home"))).unwrap();
    let url = format!("file://{}", dir.join("vault").display());
    svc.create_vault("V", &Default::default(), Some(&url))
        .await
        .unwrap();
    svc.create_policy("V", "Hourly", &hourly_policy())
        .await
        .unwrap();
    let vault = Vault::open(VaultStore::open(&url).unwrap()).await.unwrap();
    for name in instances {
        let instance = json!({
            "name": name,
            "properties": {
                "dataSourceInfo": {
                    "datasourceType": "Microsoft.DBforPostgreSQL/flexibleServers/databases",
                    "resourceID": format!("postgres://127.0.0.1:1/{name}"),
                    "resourceName": name,
                },
                "datasourceAuthCredentials": {
                    "objectType": "SecretStoreBasedAuthCredentials",
                    "secretStoreResource": {"secretStoreType": "Environment", "uri": "env:PGVAULT_TEST_NO_SUCH_SECRET"},
                },
                "friendlyName": name,
                "policyInfo": {"policyId": "/backupPolicies/Hourly"},
                "currentProtectionState": "ProtectionConfigured",
            }
        });
        vault
            .store
            .put_json(&paths::instance(name), &instance)
            .await
            .unwrap();
        let mut new = NewJob::new(Operation::ConfigureBackup, "V", protected, current_owner());
        new.backup_instance_name = Some(name.to_string());
        let job = svc.history().start(&new).unwrap();
        svc.history()
            .finish(
                job.id,
                &JobOutcome::Completed {
                    recovery_point_id: None,
                },
                protected,
                0,
                0,
            )
            .unwrap();
    }
    Arc::new(svc)
}

fn scheduled(svc: &Pgvault, instance: &str) -> Vec<Job> {
    let mut jobs = svc
        .jobs(
            &JobFilter::default()
                .instance(instance)
                .operation(Operation::ScheduledBackup),
        )
        .unwrap();
    jobs.reverse();
    jobs
}

#[tokio::test(start_paused = true)]
async fn the_loop_runs_each_occurrence_once_at_its_time_and_sweeps_daily() {
    let dir = tempfile::tempdir().unwrap();
    let svc = home(dir.path(), &["a", "b"], t("2030-01-01T00:30:00Z")).await;
    let (events, rx) = mpsc::channel(4);
    let clock = Arc::new(TokioClock::starting_at(t("2030-01-01T00:40:00Z")));
    let opts = ServeOptions {
        max_concurrent_jobs: 1,
        ..ServeOptions::default()
    };
    let host = tokio::spawn(serve(svc.clone(), opts, clock, rx));

    // Until 03:40 (on the paused clock: no real waiting).
    tokio::time::sleep(Duration::from_secs(3 * 3600)).await;
    events.send(Event::Shutdown).await.unwrap();
    let summary = host.await.unwrap().unwrap();
    assert_eq!(summary.cancelled, 0);

    for instance in ["a", "b"] {
        let jobs = scheduled(&svc, instance);
        let due: Vec<DateTime<Utc>> = jobs.iter().map(|j| j.scheduled.unwrap().due_time).collect();
        assert_eq!(
            due,
            [
                t("2030-01-01T01:00:00Z"),
                t("2030-01-01T02:00:00Z"),
                t("2030-01-01T03:00:00Z")
            ],
            "{instance}: each occurrence once"
        );
        for job in &jobs {
            assert!(!job.scheduled.unwrap().late);
            // Started at its occurrence (one job at a time, so b waits for a's few moments).
            assert!(job.state.start() - job.scheduled.unwrap().due_time < TimeDelta::seconds(5));
            assert_eq!(
                job.status(),
                JobStatus::Failed,
                "the database is unreachable"
            );
        }
    }
    // The sweep ran when the host started (nothing to delete; the first collection is due),
    // after the backups that were due with it: it runs alone.
    let sweeps = svc
        .jobs(&JobFilter::default().operation(Operation::RetentionSweep))
        .unwrap();
    assert_eq!(sweeps.len(), 1);
    let swept = sweeps[0].state.start();
    assert!(
        swept >= t("2030-01-01T00:40:00Z") && swept < t("2030-01-01T00:41:00Z"),
        "{swept}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_host_that_was_down_runs_the_missed_occurrence_once_late() {
    let dir = tempfile::tempdir().unwrap();
    let svc = home(dir.path(), &["a"], t("2030-01-01T00:30:00Z")).await;
    let (events, rx) = mpsc::channel(4);
    // The host starts at 05:20: 01:00 to 05:00 were missed.
    let clock = Arc::new(TokioClock::starting_at(t("2030-01-01T05:20:00Z")));
    let host = tokio::spawn(serve(svc.clone(), ServeOptions::default(), clock, rx));
    tokio::time::sleep(Duration::from_secs(50 * 60)).await;
    events.send(Event::Shutdown).await.unwrap();
    host.await.unwrap().unwrap();

    let jobs = scheduled(&svc, "a");
    assert_eq!(jobs.len(), 2, "{jobs:#?}");
    let first = jobs[0].scheduled.unwrap();
    assert_eq!(first.due_time, t("2030-01-01T05:00:00Z"));
    assert!(first.late);
    assert_eq!(jobs[0].extended_details["MissedOccurrences"], "4");
    assert_eq!(jobs[0].state.start(), t("2030-01-01T05:20:00Z"));
    let second = jobs[1].scheduled.unwrap();
    assert_eq!(second.due_time, t("2030-01-01T06:00:00Z"));
    assert!(!second.late);
}

#[tokio::test(start_paused = true)]
async fn the_retention_sweep_runs_daily_and_prunes_old_job_history() {
    let dir = tempfile::tempdir().unwrap();
    let svc = home(dir.path(), &[], t("2030-01-01T00:30:00Z")).await;
    // A job from two years before: older than the year of history the host keeps.
    let old = svc
        .history()
        .start(&NewJob::new(
            Operation::OnDemandBackup,
            "V",
            t("2028-01-01T00:00:00Z"),
            current_owner(),
        ))
        .unwrap();
    svc.history()
        .finish(
            old.id,
            &JobOutcome::Completed {
                recovery_point_id: None,
            },
            t("2028-01-01T00:05:00Z"),
            0,
            0,
        )
        .unwrap();
    let (events, rx) = mpsc::channel(4);
    let clock = Arc::new(TokioClock::starting_at(t("2030-01-01T00:40:00Z")));
    let host = tokio::spawn(serve(svc.clone(), ServeOptions::default(), clock, rx));
    tokio::time::sleep(Duration::from_secs(2 * 86400 + 3600)).await;
    events.send(Event::Shutdown).await.unwrap();
    host.await.unwrap().unwrap();
    let mut starts: Vec<DateTime<Utc>> = svc
        .jobs(&JobFilter::default().operation(Operation::RetentionSweep))
        .unwrap()
        .iter()
        .map(|j| j.state.start())
        .collect();
    starts.sort();
    assert_eq!(
        starts,
        [
            t("2030-01-01T00:40:00Z"),
            t("2030-01-02T00:40:00Z"),
            t("2030-01-03T00:40:00Z")
        ]
    );
    assert!(svc.history().get(old.id).unwrap().is_none(), "pruned");
}

#[tokio::test(start_paused = true)]
async fn dropped_scripts_run_once_are_filed_and_a_bad_one_does_not_stop_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let svc = home(dir.path(), &["a"], t("2030-01-01T00:30:00Z")).await;
    let scripts = dir.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    let (events, rx) = mpsc::channel(4);
    let clock = Arc::new(TokioClock::starting_at(t("2030-01-01T00:40:00Z")));
    let opts = ServeOptions {
        scripts: Some(ScriptsOptions {
            dir: scripts.clone(),
            settle: Duration::from_secs(2),
            grants: Default::default(),
        }),
        ..ServeOptions::default()
    };
    let host = tokio::spawn(serve(svc.clone(), opts, clock, rx));

    std::fs::write(
        scripts.join("good.rhai"),
        "print(\"hello from a drop-in\");\n",
    )
    .unwrap();
    std::fs::write(scripts.join("bad.rhai"), "let x = ;\n").unwrap();
    std::fs::write(
        scripts.join("hourly.rhai"),
        "// schedule: R/2030-01-01T00:00:00+00:00/PT1H\nprint(\"every hour\");\n",
    )
    .unwrap();
    events.send(Event::ScriptsChanged).await.unwrap();
    // Past 02:00: the dropped scripts settle and run, the hourly one runs at 01:00 and 02:00,
    // and the scheduled backups go on.
    tokio::time::sleep(Duration::from_secs(90 * 60)).await;
    events.send(Event::Shutdown).await.unwrap();
    host.await.unwrap().unwrap();

    assert!(scripts.join("done/good.rhai").exists());
    assert!(scripts.join("done/good.log").exists());
    assert!(scripts.join("failed/bad.rhai").exists());
    let log = std::fs::read_to_string(scripts.join("failed/bad.log")).unwrap();
    assert!(log.contains("bad.rhai:1:"), "{log}");
    assert!(
        scripts.join("hourly.rhai").exists(),
        "a recurring script stays"
    );

    let runs = svc
        .jobs(&JobFilter::default().operation(Operation::ScriptRun))
        .unwrap();
    let by_script = |name: &str| -> Vec<&Job> {
        runs.iter()
            .filter(|j| j.script_path.as_deref().is_some_and(|p| p.ends_with(name)))
            .collect()
    };
    let good = by_script("good.rhai");
    assert_eq!(good.len(), 1, "run once");
    assert_eq!(good[0].status(), JobStatus::Completed);
    assert!(
        good[0]
            .script_output
            .as_deref()
            .unwrap_or("")
            .contains("hello from a drop-in")
    );
    let bad = by_script("bad.rhai");
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].status(), JobStatus::Failed);
    let hourly: Vec<DateTime<Utc>> = by_script("hourly.rhai")
        .iter()
        .map(|j| j.scheduled.unwrap().due_time)
        .collect();
    assert!(hourly.contains(&t("2030-01-01T01:00:00Z")), "{hourly:?}");
    assert!(hourly.contains(&t("2030-01-01T02:00:00Z")), "{hourly:?}");
    // The host kept running its schedules.
    assert_eq!(scheduled(&svc, "a").len(), 2);
}

/// A finished job started and ended at `at`, two years before the serve tests' times: older
/// than the year of history the host keeps.
fn old_job(svc: &Pgvault, at: DateTime<Utc>) -> pgvault_core::model::job::JobId {
    let old = svc
        .history()
        .start(&NewJob::new(
            Operation::OnDemandBackup,
            "V",
            at,
            current_owner(),
        ))
        .unwrap();
    svc.history()
        .finish(
            old.id,
            &JobOutcome::Completed {
                recovery_point_id: None,
            },
            at,
            0,
            0,
        )
        .unwrap();
    old.id
}

#[tokio::test(start_paused = true)]
async fn the_agenda_scans_the_vaults_once_until_something_changes() {
    let dir = tempfile::tempdir().unwrap();
    let svc = home(dir.path(), &["a", "b"], t("2030-01-01T00:30:00Z")).await;
    let mut agenda = Agenda::new();
    let due = |turn: &pgvault_host::agenda::Turn| -> Vec<String> {
        turn.due.iter().map(|w| w.key()).collect()
    };

    let first = agenda.turn(&svc, t("2030-01-01T01:00:00Z")).await;
    assert_eq!(agenda.scans(), 1);
    assert_eq!(due(&first), ["backup/V/a", "backup/V/b"]);
    assert_eq!(first.wake, Some(t("2030-01-01T02:00:00Z")));
    // Ten minutes later, nothing having changed: the same answer from the same scan.
    let again = agenda.turn(&svc, t("2030-01-01T01:10:00Z")).await;
    assert_eq!(agenda.scans(), 1);
    assert_eq!(due(&again), due(&first));

    // `b` suspended, and the agenda told: it reads the vault again and `b` is not due.
    svc.set_protection_state("V", "b", "BackupSchedulesSuspended")
        .await
        .unwrap();
    agenda.invalidate();
    let told = agenda.turn(&svc, t("2030-01-01T01:20:00Z")).await;
    assert_eq!(agenda.scans(), 2);
    assert_eq!(due(&told), ["backup/V/a"]);

    // `b` resumed behind the agenda's back (another process): seen once the scan is an hour
    // old, not before.
    svc.set_protection_state("V", "b", "ProtectionConfigured")
        .await
        .unwrap();
    agenda.turn(&svc, t("2030-01-01T01:30:00Z")).await;
    assert_eq!(agenda.scans(), 2);
    agenda.turn(&svc, t("2030-01-01T02:20:00Z")).await;
    assert_eq!(agenda.scans(), 3);
}

#[tokio::test(start_paused = true)]
async fn the_loop_scans_the_vaults_at_most_once_a_turn() {
    let dir = tempfile::tempdir().unwrap();
    let svc = home(dir.path(), &["a", "b"], t("2030-01-01T00:30:00Z")).await;
    let (events, rx) = mpsc::channel(4);
    let clock = Arc::new(TokioClock::starting_at(t("2030-01-01T00:40:00Z")));
    let opts = ServeOptions {
        max_concurrent_jobs: 1,
        ..ServeOptions::default()
    };
    let host = tokio::spawn(serve(svc.clone(), opts, clock, rx));
    tokio::time::sleep(Duration::from_secs(3 * 3600)).await;
    events.send(Event::Shutdown).await.unwrap();
    let summary = host.await.unwrap().unwrap();
    // Six backups and a sweep ran; the loop turned for each start, each end and each
    // occurrence, and read the vaults at most once a turn (it used to list every vault,
    // instance and policy four times a turn), and not at the turns nothing had changed.
    assert_eq!(scheduled(&svc, "a").len() + scheduled(&svc, "b").len(), 6);
    assert!(summary.scans >= 1);
    assert!(
        summary.scans < summary.turns,
        "{} scans in {} turns",
        summary.scans,
        summary.turns
    );
}

/// A job as the comparison of tick and serve sees it: operation, instance, occurrence, late.
type Ran = (String, Option<String>, Option<DateTime<Utc>>, bool);

#[tokio::test(start_paused = true)]
async fn tick_and_serve_run_the_same_work_at_the_same_time_and_both_prune_history() {
    let at = t("2030-01-01T03:10:00Z");
    let old_at = t("2028-01-01T00:00:00Z");
    // What ran, in a home, sorted.
    let ran = |svc: &Pgvault| {
        let mut ran: Vec<Ran> = svc
            .jobs(&JobFilter::default())
            .unwrap()
            .into_iter()
            .filter(|j| j.operation != Operation::ConfigureBackup)
            .map(|j| {
                (
                    j.operation.to_string(),
                    j.backup_instance_name.clone(),
                    j.scheduled.map(|s| s.due_time),
                    j.scheduled.is_some_and(|s| s.late),
                )
            })
            .collect();
        ran.sort();
        ran
    };

    let tick_dir = tempfile::tempdir().unwrap();
    let ticked = home(tick_dir.path(), &["a", "b"], t("2030-01-01T00:30:00Z")).await;
    let tick_old = old_job(&ticked, old_at);
    let mut agenda = Agenda::new().sweeping(TimeDelta::days(1), DEFAULT_JOB_HISTORY_RETENTION);
    tick(&ticked, &mut agenda, at).await.unwrap();

    let serve_dir = tempfile::tempdir().unwrap();
    let served = home(serve_dir.path(), &["a", "b"], t("2030-01-01T00:30:00Z")).await;
    let serve_old = old_job(&served, old_at);
    let (events, rx) = mpsc::channel(4);
    let clock = Arc::new(TokioClock::starting_at(at));
    let host = tokio::spawn(serve(served.clone(), ServeOptions::default(), clock, rx));
    // Until 03:40, before the next occurrence.
    tokio::time::sleep(Duration::from_secs(30 * 60)).await;
    events.send(Event::Shutdown).await.unwrap();
    host.await.unwrap().unwrap();

    let expected = vec![
        ("RetentionSweep".to_owned(), None, None, false),
        (
            "ScheduledBackup".to_owned(),
            Some("a".to_owned()),
            Some(t("2030-01-01T03:00:00Z")),
            true,
        ),
        (
            "ScheduledBackup".to_owned(),
            Some("b".to_owned()),
            Some(t("2030-01-01T03:00:00Z")),
            true,
        ),
    ];
    assert_eq!(ran(&ticked), expected);
    assert_eq!(ran(&served), expected);
    assert!(
        ticked.history().get(tick_old).unwrap().is_none(),
        "tick pruned"
    );
    assert!(
        served.history().get(serve_old).unwrap().is_none(),
        "serve pruned"
    );
}

#[tokio::test(start_paused = true)]
async fn a_vault_that_cannot_be_read_does_not_make_the_loop_spin() {
    let dir = tempfile::tempdir().unwrap();
    let svc = home(dir.path(), &["a"], t("2030-01-01T00:30:00Z")).await;
    // The vault's disk is gone (unmounted, deleted): every scan fails.
    std::fs::remove_dir_all(dir.path().join("vault")).unwrap();
    let (events, rx) = mpsc::channel(4);
    let clock = Arc::new(TokioClock::starting_at(t("2030-01-01T00:40:00Z")));
    let scripts = dir.path().join("scripts");
    std::fs::create_dir(&scripts).unwrap();
    let opts = ServeOptions {
        scripts: Some(ScriptsOptions {
            dir: scripts,
            settle: Duration::from_secs(2),
            grants: Default::default(),
        }),
        ..ServeOptions::default()
    };
    let host = tokio::spawn(serve(svc.clone(), opts, clock, rx));
    tokio::time::sleep(Duration::from_secs(600)).await;
    events.send(Event::Shutdown).await.unwrap();
    let summary = host.await.unwrap().unwrap();
    // It looks again once a minute (RETRY_SCAN_AFTER), not at every turn of a busy loop.
    assert!(
        summary.turns <= 15,
        "{} turns and {} scans in ten minutes",
        summary.turns,
        summary.scans
    );
}
