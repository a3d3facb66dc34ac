//! Small holes found after the guards: a `pg_dump --version` that never ends, and a restore as
//! files named after a database whose name leads out of the target folder.
//!
//! A wrapper placed first through PGVAULT_PG_BINDIR answers `--version` badly (endless output,
//! or no answer at all) and runs the real `pg_dump` otherwise. pgvault runs under a memory
//! limit and a watchdog of the test's own, so a pgvault that grows or hangs fails the test
//! instead of taking the machine with it.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::support::{World, cluster, sample_database};

/// `pg_dump` in `dir`: `version` answers `--version`, anything else runs the real one.
fn version_wrapper(dir: &Path, version: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join("pg_dump");
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\nif [ \"$1\" = --version ]; then {version}; fi\nexec '{}' \"$@\"\n",
            cluster().bindir().join("pg_dump").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir.to_path_buf()
}

/// Runs pgvault `args` with `bin` as PGVAULT_PG_BINDIR under a 4 GiB address-space limit, and
/// kills it if it has not ended within `secs`: (exit status, stdout, stderr).
fn bounded_run(
    w: &World,
    bin: &Path,
    args: &[&str],
    secs: u64,
) -> (std::process::ExitStatus, String, String) {
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -v 4194304 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_pgvault"))
        .args(args)
        .env_remove("RUST_LOG")
        .env("PGVAULT_PG_BINDIR", bin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in &w.env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(out) => {
            let out = out.unwrap();
            (
                out.status,
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
            panic!("pgvault {args:?} hung (no end within {secs} s)");
        }
    }
}

#[test]
fn a_pg_dump_whose_version_never_ends_neither_grows_nor_hangs_the_backup() {
    let w = World::new();
    let db = sample_database("tidy_version", 500);
    w.vault_with_policy("V");
    let instance = w.protect("V", &db, &w.admin_secret(&db));
    for (i, version) in [
        // Endless output, faster than anything can keep.
        "exec yes 'pg_dump (PostgreSQL) 17.0'",
        // No answer and no end.
        "exec sleep 100000",
    ]
    .into_iter()
    .enumerate()
    {
        let bin = version_wrapper(&w.path(&format!("bin-{i}")), version);
        let (status, stdout, stderr) = bounded_run(
            &w,
            &bin,
            &[
                "backup-instance",
                "adhoc-backup",
                "--vault-name",
                "V",
                "--name",
                &instance,
                "--rule-name",
                "Default",
            ],
            120,
        );
        assert!(
            status.success() && status.signal().is_none(),
            "{version}: {status}\n{stdout}\n{stderr}"
        );
        let job: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(job["properties"]["status"], "Completed", "{job:#}");
        // The version is recorded as unknown, and the log says why.
        assert!(
            stderr.contains("--version") && stderr.contains("unknown"),
            "{version}: {stderr}"
        );
        let points = w.recovery_points("V", &instance);
        assert_eq!(points.len(), i + 1);
        let meta: Value = serde_json::from_str(
            points[0]["properties"]["recoveryPointDataStoresDetails"][0]["metaData"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(meta["backupToolVersion"], "unknown", "{meta:#}");
    }
}

#[test]
fn a_restore_as_files_named_after_a_database_stays_in_its_folder() {
    let w = World::new();
    let c = cluster();
    let db = format!("tidy/../../escape_{}", std::process::id());
    c.psql("postgres", &format!("DROP DATABASE IF EXISTS \"{db}\""));
    c.psql("postgres", &format!("CREATE DATABASE \"{db}\""));
    c.psql(&db, "CREATE TABLE t (x int); INSERT INTO t VALUES (42);");
    w.vault_with_policy("V");
    let encoded = db.replace('/', "%2F");
    let instance = w.protect("V", &encoded, &w.admin_secret("postgres"));
    w.backup("V", &instance);
    let rp = w.recovery_points("V", &instance)[0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let deep = w.path("deep");
    let dir = deep.join("files");
    // Were the name used as it is, `tidy/../../` would lead from `files` to `deep`.
    std::fs::create_dir_all(dir.join("tidy")).unwrap();
    std::fs::create_dir_all(dir.join(".tidy")).unwrap();
    let init = |name: Option<&str>| {
        let mut args = vec![
            "backup-instance",
            "restore",
            "initialize-for-data-recovery-as-files",
            "--vault-name",
            "V",
            "--backup-instance-name",
            &instance,
            "--recovery-point-id",
            &rp,
            "--target-directory",
            dir.to_str().unwrap(),
        ];
        if let Some(name) = name {
            args.extend(["--target-file-name", name]);
        }
        w.run(&args)
    };
    let request = |name: Option<&str>| {
        let out = init(None);
        assert!(out.status.success());
        let mut req: Value = serde_json::from_slice(&out.stdout).unwrap();
        if let Some(name) = name {
            // As a hand-edited request would name it.
            req["restoreTargetInfo"]["targetDetails"]["filePrefix"] = name.into();
        }
        w.write("files.json", &req.to_string())
    };
    let trigger = |request: &Path| {
        w.run(&[
            "backup-instance",
            "restore",
            "trigger",
            "--vault-name",
            "V",
            "--backup-instance-name",
            &instance,
            "--restore-request-object",
            request.to_str().unwrap(),
        ])
    };
    let out = trigger(&request(None));
    let job: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(
        job["properties"]["status"],
        "Completed",
        "{job:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        names(&deep),
        ["files"],
        "nothing was written outside the folder"
    );
    let expected = format!("tidy_.._.._escape_{}-{rp}.dump", std::process::id());
    assert_eq!(names(&dir), [".tidy", "tidy", expected.as_str()]);
    assert!(names(&dir.join("tidy")).is_empty() && names(&dir.join(".tidy")).is_empty());

    // An explicit name that is not a plain file name is refused, and nothing is written.
    for bad in ["../out", "a/b", "..", ".hidden"] {
        let out = init(Some(bad));
        assert!(!out.status.success(), "{bad}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("plain file name"),
            "{bad}"
        );
        let out = trigger(&request(Some(bad)));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("UserErrorInvalidTarget") && text.contains("plain file name"),
            "{bad}: {text}"
        );
        assert_eq!(names(&deep), ["files"], "{bad}");
        assert_eq!(names(&dir).len(), 3, "{bad}");
    }
    c.psql("postgres", &format!("DROP DATABASE IF EXISTS \"{db}\""));
}
