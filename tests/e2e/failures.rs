//! Backups that do not finish leave no recovery point and a job that says why.
//!
//! `pg_dump` failures are produced with a wrapper placed first through PGVAULT_PG_BINDIR:
//! the real `pg_dump` runs, and the wrapper cuts its stream or holds it, so the failure is
//! deterministic without timing games.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::{World, cluster, sample_database};

fn wrapper(dir: &Path, body: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join("pg_dump");
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_dump_that_dies_half_way_leaves_no_recovery_point() {
    let mut w = World::new();
    let db = sample_database("dies", 40_000);
    w.vault_with_policy("V");
    let instance = w.protect("V", &db, &w.admin_secret(&db));

    let real = cluster().bindir().join("pg_dump");
    let bin = w.path("broken-bin");
    wrapper(
        &bin,
        &format!(
            "\"{}\" \"$@\" | head -c 300000\necho 'pg_dump: error: connection to server lost (simulated)' >&2\nexit 1",
            real.display()
        ),
    );
    w.env
        .push(("PGVAULT_PG_BINDIR".into(), bin.display().to_string()));
    let out = w.run(&[
        "backup-instance",
        "adhoc-backup",
        "--vault-name",
        "V",
        "--name",
        &instance,
        "--rule-name",
        "Default",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("UserErrorPgDumpFailed") && stderr.contains("connection to server lost"),
        "{stderr}"
    );
    let job: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(job["properties"]["status"], "Failed");
    // The sub-tasks say which step failed, and why.
    let tasks = job["properties"]["extendedInfo"]["subTasks"]
        .as_array()
        .unwrap();
    assert_eq!(tasks[0]["taskName"], "Validate");
    assert_eq!(tasks[0]["taskStatus"], "Completed");
    let dump = tasks.iter().find(|t| t["taskName"] == "Dump").unwrap();
    assert_eq!(dump["taskStatus"], "Failed", "{job:#}");
    assert!(
        dump["additionalDetails"]["Detail"]
            .as_str()
            .unwrap()
            .contains("connection to server lost"),
        "{dump:#}"
    );
    assert!(tasks.iter().all(|t| t["taskName"] != "Commit"));
    assert_eq!(
        job["properties"]["errorDetails"][0]["code"],
        "UserErrorPgDumpFailed"
    );
    w.env.pop();

    assert!(
        w.recovery_points("V", &instance).is_empty(),
        "a failed dump must not make a recovery point"
    );
    let listed = w.json(&["job", "list", "--status", "Failed"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);

    // The vault is fine: the next backup works and restores.
    let ok = w.backup("V", &instance);
    assert_eq!(ok["properties"]["status"], "Completed");
    assert_eq!(w.recovery_points("V", &instance).len(), 1);
}

#[test]
fn a_killed_backup_is_marked_interrupted_and_leaves_no_recovery_point() {
    let w = World::new();
    let db = sample_database("killed", 100);
    w.vault_with_policy("V");
    let instance = w.protect("V", &db, &w.admin_secret(&db));

    // The wrapper announces itself on one FIFO, then holds on another until released.
    let started = w.path("started.fifo");
    let hold = w.path("hold.fifo");
    for f in [&started, &hold] {
        assert!(
            std::process::Command::new("mkfifo")
                .arg(f)
                .status()
                .unwrap()
                .success()
        );
    }
    let bin = w.path("hold-bin");
    wrapper(
        &bin,
        &format!(
            "echo started > '{}'\nexec cat < '{}'",
            started.display(),
            hold.display()
        ),
    );
    let mut child = w
        .command(&[
            "backup-instance",
            "adhoc-backup",
            "--vault-name",
            "V",
            "--name",
            &instance,
            "--rule-name",
            "Default",
        ])
        .env("PGVAULT_PG_BINDIR", &bin)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Blocks until pg_dump (the wrapper) is running, so the job is InProgress now.
    let mut msg = String::new();
    std::fs::File::open(&started)
        .unwrap()
        .read_to_string(&mut msg)
        .unwrap();
    assert_eq!(msg.trim(), "started");
    let running = w.json(&["job", "list", "--status", "InProgress"]);
    assert_eq!(running.as_array().unwrap().len(), 1, "{running}");

    child.kill().unwrap();
    child.wait().unwrap();
    // Release the wrapper if it outlived pgvault. It should not have (pgvault's tools die
    // with it), so there may be no reader: open without blocking, and ENXIO means none.
    use std::os::unix::fs::OpenOptionsExt;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(&hold)
    {
        f.write_all(b"").unwrap();
    }

    let jobs = w.json(&["job", "list", "--operation", "OnDemandBackup"]);
    let p = &jobs[0]["properties"];
    assert_eq!(p["status"], "Failed", "{jobs}");
    assert_eq!(p["errorDetails"][0]["code"], "JobInterrupted");
    assert!(w.recovery_points("V", &instance).is_empty());
}
