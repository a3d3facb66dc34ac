//! Guards that hold under races and kills: one backup per instance even when two start at the
//! same instant, and nothing left behind (no staging or scratch database, no partial file, no
//! `pg_dump` or `pg_restore`) by a backup or restore killed at any step.
//!
//! Steps are hit exactly with the test-only fault hook (`PGVAULT_FAULT=<point>[:<n>]`, see
//! `pgvault_core::fault`): the process kills itself with SIGKILL there, as `kill -9` would.
//! Simultaneous starts are made with a FIFO both processes block on until the test opens it.
//! The only waits are bounded ones for processes the kernel is already ending.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{World, cluster, sample_database};

/// A folder of wrappers for PGVAULT_PG_BINDIR: each tool records its pid in `<tool>.pids`,
/// optionally waits on `hold` (a FIFO the test opens to release it), then execs the real tool,
/// so the recorded pid is the tool's own.
fn wrappers(w: &World, hold: Option<&Path>) -> PathBuf {
    let bin = w.path("wrapped-bin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in ["pg_dump", "pg_restore"] {
        let real = cluster().bindir().join(tool);
        let pids = w.path(&format!("{tool}.pids"));
        // `--version` (asked before each backup) passes.
        let wait = match hold {
            Some(fifo) if tool == "pg_dump" => format!(
                "case \"$1\" in --version) ;; *) read _ < '{}' ;; esac\n",
                fifo.display()
            ),
            _ => String::new(),
        };
        let p = bin.join(tool);
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\necho $$ >> '{}'\n{wait}exec '{}' \"$@\"\n",
                pids.display(),
                real.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

fn mkfifo(path: &Path) {
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
}

/// Whether `pid` is a live process (not a zombie).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next()),
            Some("Z" | "X")
        ),
        Err(_) => false,
    }
}

/// The pids the wrappers recorded for `tool`.
fn tool_pids(w: &World, tool: &str) -> Vec<u32> {
    std::fs::read_to_string(w.path(&format!("{tool}.pids")))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Asserts every `tool` the wrappers started is gone within `bound` (they are being ended by
/// the kernel's parent-death signal; the bound turns a survivor into a failure, not a hang).
fn no_tool_left(w: &World, tool: &str, bound: Duration) {
    let deadline = Instant::now() + bound;
    for pid in tool_pids(w, tool) {
        while running(pid) {
            assert!(
                Instant::now() < deadline,
                "{tool} (pid {pid}) outlived the pgvault that started it"
            );
            std::thread::yield_now();
        }
    }
}

/// Runs `f` on a thread and waits at most `secs` for it, so a hang fails with `what`.
fn within<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("{what} (no answer within {secs} s)"))
}

/// Runs pgvault with `PGVAULT_FAULT=fault` and asserts it was killed there.
fn killed_at(w: &World, fault: &str, bin: &Path, args: &[&str]) -> Output {
    let out = w
        .command(args)
        .env("PGVAULT_FAULT", fault)
        .env("PGVAULT_PG_BINDIR", bin)
        .output()
        .unwrap();
    assert_eq!(
        out.status.signal(),
        Some(9),
        "pgvault {args:?} should have been killed at {fault}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn backup_args(instance: &str) -> [&str; 8] {
    crate::support::backup_args("V", instance)
}

/// The vault checks without damage.
fn check_clean(w: &World) {
    let out = w.run(&["backup-vault", "check", "--vault-name", "V"]);
    let check: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "{check:#}");
    for store in check["dataStores"].as_array().unwrap() {
        for f in store["findings"].as_array().unwrap() {
            assert_ne!(f["severity"], "Error", "{check:#}");
        }
    }
}

/// The leftover records in the home: (database or path, kind).
fn pending_records(w: &World) -> Vec<Value> {
    let dir = w.path("home").join("pending");
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().extension().is_some_and(|x| x == "json") {
            out.push(serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap());
        }
    }
    out
}

fn database_exists(name: &str) -> bool {
    cluster()
        .psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"),
        )
        .trim()
        == "1"
}

#[test]
fn two_backups_of_an_instance_started_at_the_same_instant_never_both_run() {
    let w = World::new();
    let db = sample_database("guard_race", 200);
    w.vault_with_policy("V");
    let instance = w.protect("V", &db, &w.admin_secret(&db));
    let (start, hold) = (w.path("start.fifo"), w.path("hold.fifo"));
    mkfifo(&start);
    mkfifo(&hold);
    let bin = wrappers(&w, Some(&hold));

    let mut completed = 0;
    for round in 0..10 {
        // Held open for reading and writing (Linux allows it without blocking), so both
        // shells open it at once and block in `read` until the test writes their two lines:
        // they go on at the same instant.
        let mut barrier = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&start)
            .unwrap();
        let spawn = || -> Child {
            let mut cmd = Command::new("/bin/sh");
            cmd.arg("-c")
                .arg(format!(
                    "read _ < '{}'; exec \"$0\" \"$@\"",
                    start.display()
                ))
                .arg(env!("CARGO_BIN_EXE_pgvault"))
                .args(backup_args(&instance))
                .env("PGVAULT_PG_BINDIR", &bin)
                .env_remove("RUST_LOG")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            for (k, v) in &w.env {
                cmd.env(k, v);
            }
            cmd.spawn().unwrap()
        };
        let children = [spawn(), spawn()];
        barrier.write_all(b"go\ngo\n").unwrap();
        // The refused one ends; the one that runs waits in its pg_dump for `hold`. Had both
        // run, neither would end.
        let (tx, rx) = mpsc::channel();
        for (i, child) in children.into_iter().enumerate() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = tx.send((i, child.wait_with_output().unwrap()));
            });
        }
        let (_, refused) = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!("round {round}: neither backup was refused: both are running")
            });
        let stderr = String::from_utf8_lossy(&refused.stderr).into_owned();
        assert!(!refused.status.success(), "round {round}: {stderr}");
        assert!(
            stderr.contains("UserErrorMaxConcurrentOperationLimitReached")
                && stderr.contains(&format!(
                    "backup instance `{instance}` is already being backed up"
                )),
            "round {round}: {stderr}"
        );
        // Release the running one's pg_dump.
        let hold_path = hold.clone();
        within(60, "the running backup never reached pg_dump", move || {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&hold_path)
                .unwrap()
                .write_all(b"go\n")
                .unwrap()
        });
        let (_, ran) = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("the running backup finished");
        let job: Value = serde_json::from_slice(&ran.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&ran.stderr)));
        assert_eq!(job["properties"]["status"], "Completed", "{job:#}");
        let job_id = job["name"].as_str().unwrap();
        // The refusal named the job that was running.
        assert!(
            stderr.contains(&format!("job {job_id}")),
            "round {round}: {stderr}"
        );
        completed += 1;
    }
    assert_eq!(w.recovery_points("V", &instance).len(), completed);
    // Exactly one job per round was recorded: a refused backup records none.
    let jobs = w.json(&["job", "list", "--operation", "OnDemandBackup"]);
    assert_eq!(jobs.as_array().unwrap().len(), 10);
}

#[test]
fn a_backup_killed_at_any_write_step_leaves_a_consistent_vault_and_no_pg_dump() {
    let w = World::new();
    let db = sample_database("guard_kill_backup", 20_000);
    let vault_dir = w.vault_with_policy("V");
    // Small packs, so a backup stores several and can be killed between them.
    crate::support::use_small_packs(&vault_dir);
    let instance = w.protect("V", &db, &w.admin_secret(&db));
    let bin = wrappers(&w, None);
    w.backup("V", &instance);

    for (i, fault) in ["pack-stored:2", "index-checkpoint", "before-manifest"]
        .into_iter()
        .enumerate()
    {
        // New data, so the killed backup stores new packs rather than only referencing old.
        let from = 1_000_000 * (i + 1);
        cluster().psql(
            &db,
            &format!(
                "INSERT INTO public.notes SELECT g, repeat(md5('killed ' || g), 20) FROM generate_series({from}, {from} + 3000) g"
            ),
        );
        let points = w.recovery_points("V", &instance).len();
        killed_at(&w, fault, &bin, &backup_args(&instance));
        no_tool_left(&w, "pg_dump", Duration::from_secs(10));
        check_clean(&w);
        assert_eq!(
            w.recovery_points("V", &instance).len(),
            points,
            "killed at {fault}: no recovery point from the killed backup"
        );
        let job = &w.json(&["job", "list", "--operation", "OnDemandBackup"])[0];
        assert_eq!(job["properties"]["status"], "Failed", "{job:#}");
        // The next backup works, and the instance's backup lock of the killed one is no
        // obstacle (its process is gone).
        let next = w.backup("V", &instance);
        assert_eq!(
            next["properties"]["status"], "Completed",
            "{fault}: {next:#}"
        );
        check_clean(&w);
    }
}

#[test]
fn pg_dump_dies_with_a_killed_pgvault_even_while_it_waits_on_the_server() {
    let w = World::new();
    let db = sample_database("guard_orphan_dump", 100);
    w.vault_with_policy("V");
    let instance = w.protect("V", &db, &w.admin_secret(&db));
    let bin = wrappers(&w, None);
    // A session holds a lock pg_dump needs: pg_dump waits on the server and writes nothing,
    // so no broken pipe would ever end it.
    let c = cluster();
    let mut locker = c
        .command("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", &db])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = locker.stdin.take().unwrap();
    writeln!(
        stdin,
        "BEGIN; LOCK TABLE public.notes IN ACCESS EXCLUSIVE MODE; SELECT 'locked';"
    )
    .unwrap();
    let mut stdout = locker.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&seen).contains("locked") {
        assert_eq!(stdout.read(&mut byte).unwrap(), 1, "psql ended");
        seen.push(byte[0]);
    }

    // The backup runs until its pg_dump waits for the lock, then pgvault is killed. (Killed
    // any earlier, pg_dump fails by itself: the snapshot it must import dies with pgvault.)
    let mut backup = w
        .command(&backup_args(&instance))
        .env("PGVAULT_PG_BINDIR", &bin)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let waiting = format!(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
         WHERE NOT l.granted AND a.datname = '{db}' AND a.query ILIKE 'LOCK TABLE%'"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    // pg_dump's `LOCK TABLE ... IN ACCESS SHARE MODE` of every table waits on ours.
    while c.psql("postgres", &waiting).trim() != "1" {
        assert!(
            Instant::now() < deadline,
            "pg_dump never waited for the lock"
        );
        assert!(
            backup.try_wait().unwrap().is_none(),
            "the backup ended early"
        );
    }
    backup.kill().unwrap();
    backup.wait().unwrap();
    // `pg_dump --version` ran first, and then the dump.
    assert!(tool_pids(&w, "pg_dump").len() >= 2);
    no_tool_left(&w, "pg_dump", Duration::from_secs(10));
    drop(stdin);
    locker.wait().unwrap();
}

/// A restore request for `instance`'s newest point into `target` (a new database).
fn restore_request(w: &World, instance: &str, target: &str, name: &str) -> PathBuf {
    let c = cluster();
    let rp = w.recovery_points("V", instance)[0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let req = w.json(&[
        "backup-instance",
        "restore",
        "initialize-for-data-recovery",
        "--vault-name",
        "V",
        "--backup-instance-name",
        instance,
        "--recovery-point-id",
        &rp,
        "--target-database-url",
        &format!("postgres://{}:{}/{target}", c.host(), c.port()),
        "--secret-store-uri",
        &w.admin_secret("postgres"),
    ]);
    w.write(name, &req.to_string())
}

/// A restore-as-files request for `instance`'s newest point into the folder `dir`.
fn files_request(w: &World, instance: &str, dir: &Path, name: &str) -> PathBuf {
    let rp = w.recovery_points("V", instance)[0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let req = w.json(&[
        "backup-instance",
        "restore",
        "initialize-for-data-recovery-as-files",
        "--vault-name",
        "V",
        "--backup-instance-name",
        instance,
        "--recovery-point-id",
        &rp,
        "--target-directory",
        dir.to_str().unwrap(),
        "--target-file-name",
        "out",
    ]);
    w.write(name, &req.to_string())
}

fn trigger_args<'a>(instance: &'a str, request: &'a str) -> Vec<&'a str> {
    vec![
        "backup-instance",
        "restore",
        "trigger",
        "--vault-name",
        "V",
        "--backup-instance-name",
        instance,
        "--restore-request-object",
        request,
    ]
}

#[test]
fn a_restore_killed_at_any_step_leaves_nothing_the_next_start_does_not_remove() {
    let w = World::new();
    let db = sample_database("guard_kill_restore", 20_000);
    w.vault_with_policy("V");
    let instance = w.protect("V", &db, &w.admin_secret(&db));
    w.backup("V", &instance);
    let bin = wrappers(&w, None);

    for (i, fault) in ["staging-created", "restore-stream:20", "before-rename"]
        .into_iter()
        .enumerate()
    {
        let target = format!("{db}_restored_{i}");
        let request = restore_request(&w, &instance, &target, &format!("req-{i}.json"));
        let request = request.to_str().unwrap();
        killed_at(&w, fault, &bin, &trigger_args(&instance, request));
        // The killed restore recorded its staging database, which is there.
        let records = pending_records(&w);
        assert_eq!(records.len(), 1, "{fault}: {records:#?}");
        assert_eq!(records[0]["kind"], "database");
        let staging = records[0]["database"].as_str().unwrap().to_owned();
        assert!(staging.starts_with("pgvault_restore_"), "{staging}");
        assert!(database_exists(&staging), "{fault}: {staging}");
        assert!(
            !serde_json::to_string(&records[0])
                .unwrap()
                .contains(cluster().admin_password()),
            "a record holds no secret"
        );
        no_tool_left(&w, "pg_restore", Duration::from_secs(10));

        // The next pgvault to start removes it and says so.
        let out = w.run(&["job", "list"]);
        assert!(out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("removed the database `{staging}`"))
                && stderr.contains("interrupted restore"),
            "{fault}: {stderr}"
        );
        assert!(
            !database_exists(&staging),
            "{fault}: {staging} is still there"
        );
        assert!(
            !database_exists(&target),
            "{fault}: a half restore took the name"
        );
        assert!(pending_records(&w).is_empty());
    }
    check_clean(&w);
    // A restore that is not killed still works.
    let request = restore_request(&w, &instance, &format!("{db}_restored_ok"), "req-ok.json");
    let job = w.json(&trigger_args(&instance, request.to_str().unwrap()));
    assert_eq!(job["properties"]["status"], "Completed", "{job:#}");
    assert!(pending_records(&w).is_empty());
}

#[test]
fn a_restore_as_files_killed_at_any_step_leaves_no_partial_file() {
    let w = World::new();
    let db = sample_database("guard_kill_files", 20_000);
    w.vault_with_policy("V");
    let instance = w.protect("V", &db, &w.admin_secret(&db));
    w.backup("V", &instance);
    let bin = wrappers(&w, None);
    let dir = w.path("files");

    for (i, fault) in ["staging-created", "restore-stream:5", "before-rename"]
        .into_iter()
        .enumerate()
    {
        let request = files_request(&w, &instance, &dir, &format!("files-{i}.json"));
        killed_at(
            &w,
            fault,
            &bin,
            &trigger_args(&instance, request.to_str().unwrap()),
        );
        let partial: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert_eq!(partial.len(), 1, "{fault}: {partial:?}");
        assert!(partial[0].to_str().unwrap().ends_with(".partial"));
        let out = w.run(&["job", "list"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("removed the file") && stderr.contains(".partial"),
            "{fault}: {stderr}"
        );
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert!(left.is_empty(), "{fault}: {left:?}");
        assert!(pending_records(&w).is_empty());
    }
}

#[test]
fn a_drill_killed_after_creating_its_scratch_database_leaves_nothing_behind() {
    let w = World::new();
    let db = sample_database("guard_kill_drill", 2_000);
    w.vault_with_policy("V");
    let instance = w.protect("V", &db, &w.admin_secret(&db));
    w.backup("V", &instance);
    let bin = wrappers(&w, None);
    let c = cluster();
    let url = format!("postgres://{}:{}/postgres", c.host(), c.port());
    let secret = w.admin_secret("postgres");
    for fault in ["drill-scratch-created", "restore-stream:3"] {
        killed_at(
            &w,
            fault,
            &bin,
            &[
                "backup-instance",
                "restore",
                "drill",
                "--vault-name",
                "V",
                "--backup-instance-name",
                &instance,
                "--target-server-url",
                &url,
                "--secret-store-uri",
                &secret,
            ],
        );
        let records = pending_records(&w);
        assert_eq!(records.len(), 1, "{fault}: {records:#?}");
        let scratch = records[0]["database"].as_str().unwrap().to_owned();
        assert!(scratch.starts_with("pgvault_drill_"), "{scratch}");
        assert!(database_exists(&scratch), "{fault}: {scratch}");
        no_tool_left(&w, "pg_restore", Duration::from_secs(10));
        let out = w.run(&["job", "list"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("removed the database `{scratch}`"))
                && stderr.contains("interrupted restore drill"),
            "{fault}: {stderr}"
        );
        assert!(
            !database_exists(&scratch),
            "{fault}: {scratch} is still there"
        );
        assert!(pending_records(&w).is_empty());
    }
}

#[test]
fn a_parallel_restore_killed_with_its_archive_staged_leaves_no_temporary_file() {
    let w = World::new();
    let db = sample_database("guard_kill_jobs", 5_000);
    w.vault_with_policy("V");
    let instance = w.protect("V", &db, &w.admin_secret(&db));
    w.backup("V", &instance);
    let bin = wrappers(&w, None);
    // The restore's own temporary folder, so what it leaves there can be listed.
    let tmp = w.path("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mine = tmp.join("pgvault-restore-mine.dump");
    std::fs::write(&mine, b"a user's file with pgvault's prefix").unwrap();
    let target = format!("{db}_jobs");
    let c = cluster();
    let rp = w.recovery_points("V", &instance)[0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let req = w.json(&[
        "backup-instance",
        "restore",
        "initialize-for-data-recovery",
        "--vault-name",
        "V",
        "--backup-instance-name",
        &instance,
        "--recovery-point-id",
        &rp,
        "--target-database-url",
        &format!("postgres://{}:{}/{target}", c.host(), c.port()),
        "--secret-store-uri",
        &w.admin_secret("postgres"),
        "--exclude-tables",
        "public.notes",
        "--jobs",
        "2",
    ]);
    let request = w.write("req-jobs.json", &req.to_string());
    let args = trigger_args(&instance, request.to_str().unwrap());
    let out = w
        .command(&args)
        .env("PGVAULT_FAULT", "restore-staged")
        .env("PGVAULT_PG_BINDIR", &bin)
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    assert_eq!(
        out.status.signal(),
        Some(9),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let staged = |ext: &str| -> Vec<PathBuf> {
        std::fs::read_dir(&tmp)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p != &mine && p.extension().is_some_and(|x| x == ext))
            .collect()
    };
    assert_eq!(staged("dump").len(), 1, "the staged archive is there");
    assert_eq!(staged("list").len(), 1, "the --use-list file is there");
    // The killed restore recorded both before creating them (and its staging database).
    let records = pending_records(&w);
    assert_eq!(records.len(), 3, "{records:#?}");

    // The next start (with the same TMPDIR) removes them and says so; the user's file with
    // the same prefix but a name pgvault never makes stays.
    let out = w
        .command(&["job", "list"])
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("removed the temporary file") && stderr.contains(".list"),
        "{stderr}"
    );
    let left: Vec<PathBuf> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(left, std::slice::from_ref(&mine));
    assert!(pending_records(&w).is_empty());

    // A record pointing at a file pgvault never makes is refused and kept.
    let forged = serde_json::json!({
        "id": "forged", "pid": u32::MAX - 1, "host": records[0]["host"],
        "operation": "restore", "created": "2026-01-01T00:00:00Z",
        "kind": "tempFile", "path": mine,
    });
    let pending = w.path("home").join("pending");
    std::fs::write(pending.join("forged.json"), forged.to_string()).unwrap();
    let out = w
        .command(&["job", "list"])
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(mine.exists(), "a user's file is never removed");
    assert_eq!(pending_records(&w).len(), 1);
}
