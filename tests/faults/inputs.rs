//! Inputs: every file a user hands pgvault is read with a limit, and nothing it is given (a
//! device, a FIFO nobody writes to, a file one byte too large) makes it hang, grow or panic.
//! Also the smaller promises about the command line: a byte order mark is accepted, a wrong
//! `--log-level` is a usage error, `check` reads policies and instances back, a closed stdout
//! ends quietly and `gc -o table` prints a table.
//!
//! The binary runs under `timeout` (a hang is a failure, not a stuck suite) and `prlimit` (a
//! regression that reads `/dev/zero` to the end fails here instead of taking the machine's
//! memory).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::support::World;

const MIB: usize = 1024 * 1024;
const POLICY_LIMIT: usize = MIB;
const REQUEST_LIMIT: usize = MIB;
const SECRET_LIMIT: usize = 64 * 1024;
/// `pgvault_host::dropin::MAX_SCRIPT_BYTES`.
const SCRIPT_LIMIT: usize = 4 * MIB;
/// `pgvault_core::limits::VAULT_JSON_BYTES`.
const VAULT_JSON_LIMIT: usize = 8 * MIB;
/// What `timeout` exits with when it had to stop the command.
const TIMED_OUT: i32 = 124;

/// `pgvault args` with a time limit and an address-space limit.
fn guarded(w: &World, args: &[&str]) -> Command {
    let inner = w.command(args);
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--as={}", 4u64 << 30))
        .args(["--", "timeout", "--kill-after=10", "120"])
        .arg(inner.get_program())
        .args(inner.get_args());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd
}

fn run(w: &World, args: &[&str]) -> Output {
    let out = guarded(w, args)
        .stdin(Stdio::null())
        .output()
        .expect("run pgvault");
    assert_ne!(
        out.status.code(),
        Some(TIMED_OUT),
        "pgvault {args:?} hung: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs pgvault, expects a clean failure (an error message, no panic), returns stderr.
fn refused(w: &World, args: &[&str]) -> String {
    let out = run(w, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "pgvault {args:?} should fail with an error: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn fifo(w: &World, name: &str) -> PathBuf {
    let path = w.path(name);
    let status = Command::new("mkfifo").arg(&path).status().unwrap();
    assert!(status.success());
    path
}

/// `text` padded with trailing spaces (still the same JSON) to exactly `size` bytes.
fn padded(w: &World, name: &str, text: &str, size: usize) -> PathBuf {
    assert!(text.len() <= size);
    let mut bytes = text.as_bytes().to_vec();
    bytes.resize(size, b' ');
    let path = w.path(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn template(w: &World) -> String {
    w.json(&[
        "backup-policy",
        "get-default-policy-template",
        "--datasource-type",
        "AzureDatabaseForPostgreSQLFlexibleServer",
    ])
    .to_string()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The error names the file and says what is wrong with it.
fn names(stderr: &str, file: &Path, what: &str) {
    assert!(stderr.contains(s(file)), "no file name in: {stderr}");
    assert!(stderr.contains(what), "expected `{what}` in: {stderr}");
}

#[test]
fn policy_files_are_read_with_a_limit() {
    let w = World::new();
    let template = template(&w);
    w.vault_with_policy("V");
    let create = |file: &Path, name: &str| {
        run(
            &w,
            &[
                "backup-policy",
                "create",
                "--vault-name",
                "V",
                "--backup-policy-name",
                name,
                "--policy",
                s(file),
            ],
        )
    };

    let zero = Path::new("/dev/zero");
    names(
        &refused(&w, &["backup-policy", "validate", "--policy", "/dev/zero"]),
        zero,
        "not a regular file",
    );
    let out = create(zero, "Zero");
    assert_eq!(out.status.code(), Some(1));
    names(
        &String::from_utf8_lossy(&out.stderr),
        zero,
        "not a regular file",
    );

    // Stdin has the same limit: `pgvault ... --policy - < /dev/zero`.
    let out = guarded(&w, &["backup-policy", "validate", "--policy", "-"])
        .stdin(std::fs::File::open(zero).unwrap())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the policy on stdin is larger than 1 MiB"),
        "{stderr}"
    );

    // A FIFO no process writes to reads as empty at once (not a policy), instead of hanging.
    let fifo = fifo(&w, "policy.fifo");
    let out = create(&fifo, "Fifo");
    assert_eq!(out.status.code(), Some(1));
    names(&String::from_utf8_lossy(&out.stderr), &fifo, "");

    // At the limit it is a policy; one byte more and it is refused unparsed.
    let at = padded(&w, "at-limit.json", &template, POLICY_LIMIT);
    let out = create(&at, "AtLimit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let over = padded(&w, "over-limit.json", &template, POLICY_LIMIT + 1);
    let out = create(&over, "OverLimit");
    assert_eq!(out.status.code(), Some(1));
    names(
        &String::from_utf8_lossy(&out.stderr),
        &over,
        "larger than 1 MiB",
    );
}

#[test]
fn lifecycle_and_criteria_files_are_read_with_a_limit() {
    let w = World::new();
    let policy = w.write("policy.json", &template(&w));
    let lifecycle = w.json(&[
        "backup-policy",
        "retention-rule",
        "create-lifecycle",
        "--count",
        "6",
        "--type",
        "Months",
        "--source-datastore",
        "VaultStore",
    ]);
    let criteria = w.json(&[
        "backup-policy",
        "tag",
        "create-absolute-criteria",
        "--absolute-criteria",
        "FirstOfMonth",
    ]);
    let fifo = fifo(&w, "items.fifo");
    let big_lifecycle = padded(
        &w,
        "lifecycle.json",
        &lifecycle.to_string(),
        POLICY_LIMIT + 1,
    );
    let big_criteria = padded(&w, "criteria.json", &criteria.to_string(), POLICY_LIMIT + 1);
    let lifecycles = |file: &Path| {
        refused(
            &w,
            &[
                "backup-policy",
                "retention-rule",
                "set",
                "--name",
                "Monthly",
                "--policy",
                s(&policy),
                "--lifecycles",
                s(file),
            ],
        )
    };
    let tag = |file: &Path| {
        refused(
            &w,
            &[
                "backup-policy",
                "tag",
                "set",
                "--name",
                "Monthly",
                "--policy",
                s(&policy),
                "--criteria",
                s(file),
            ],
        )
    };
    let zero = Path::new("/dev/zero");
    names(&lifecycles(zero), zero, "not a regular file");
    names(&lifecycles(&fifo), &fifo, "");
    names(
        &lifecycles(&big_lifecycle),
        &big_lifecycle,
        "larger than 1 MiB",
    );
    names(&tag(zero), zero, "not a regular file");
    names(&tag(&fifo), &fifo, "");
    names(&tag(&big_criteria), &big_criteria, "larger than 1 MiB");
}

#[test]
fn instance_and_restore_requests_are_read_with_a_limit() {
    let w = World::new();
    w.vault_with_policy("V");
    let create = |file: &Path| {
        refused(
            &w,
            &[
                "backup-instance",
                "create",
                "--vault-name",
                "V",
                "--backup-instance",
                s(file),
            ],
        )
    };
    let restore = |file: &Path| {
        refused(
            &w,
            &[
                "backup-instance",
                "restore",
                "trigger",
                "--vault-name",
                "V",
                "--backup-instance-name",
                "db",
                "--restore-request-object",
                s(file),
            ],
        )
    };
    let zero = Path::new("/dev/zero");
    let fifo = fifo(&w, "request.fifo");
    let big = padded(&w, "request.json", "{}", REQUEST_LIMIT + 1);
    for read in [&create as &dyn Fn(&Path) -> String, &restore] {
        names(&read(zero), zero, "not a regular file");
        names(&read(&fifo), &fifo, "");
        names(&read(&big), &big, "larger than 1 MiB");
    }
}

#[test]
fn secret_files_are_read_with_a_limit() {
    let w = World::new();
    w.vault_with_policy("V");
    let fifo = fifo(&w, "secret.fifo");
    let big = w.path("big.secret");
    std::fs::write(&big, "x".repeat(SECRET_LIMIT + 1)).unwrap();
    for (i, secret) in [Path::new("/dev/zero"), &fifo, &big]
        .into_iter()
        .enumerate()
    {
        // Nothing connects: the secret is resolved before the server is reached.
        let request = w.json(&[
            "backup-instance",
            "initialize",
            "--datasource-type",
            "AzureDatabaseForPostgreSQLFlexibleServer",
            "--datasource-id",
            "postgres://127.0.0.1:1/db",
            "--policy-id",
            "OssPolicy",
            "--secret-store-type",
            "File",
            "--secret-store-uri",
            &format!("file://{}", secret.display()),
        ]);
        let file = w.write(&format!("instance-{i}.json"), &request.to_string());
        let stderr = refused(
            &w,
            &[
                "backup-instance",
                "create",
                "--vault-name",
                "V",
                "--backup-instance",
                s(&file),
            ],
        );
        assert!(stderr.contains("UserErrorInvalidSecret"), "{stderr}");
        let expected = match i {
            0 => "not a regular file",
            1 => "is empty",
            _ => "larger than 64 KiB",
        };
        names(&stderr, secret, expected);
        // The secret's content never reaches an error.
        assert!(!stderr.contains("xxxxxxxx"), "{stderr}");
    }
}

#[test]
fn script_files_are_read_with_a_limit() {
    let w = World::new();
    let fifo = fifo(&w, "script.fifo");
    let big = padded(&w, "big.rhai", "print(1);", SCRIPT_LIMIT + 1);
    let zero = Path::new("/dev/zero");
    names(
        &refused(&w, &["run", "/dev/zero"]),
        zero,
        "not a regular file",
    );
    // The FIFO reads as an empty script, which does nothing: what matters is that it ends.
    let out = run(&w, &["run", s(&fifo)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    names(&refused(&w, &["run", s(&big)]), &big, "larger than 4 MiB");
}

#[test]
fn a_policy_with_a_byte_order_mark_is_accepted() {
    let w = World::new();
    let policy = w.write("bom.json", &format!("\u{feff}{}", template(&w)));
    let lifecycle = w.json(&[
        "backup-policy",
        "retention-rule",
        "create-lifecycle",
        "--count",
        "6",
        "--type",
        "Months",
        "--source-datastore",
        "VaultStore",
    ]);
    let lifecycle = w.write("bom-lifecycle.json", &format!("\u{feff}{lifecycle}"));
    w.json(&["backup-policy", "validate", "--policy", s(&policy)]);
    let edited = w.json(&[
        "backup-policy",
        "retention-rule",
        "set",
        "--name",
        "Monthly",
        "--policy",
        s(&policy),
        "--lifecycles",
        s(&lifecycle),
    ]);
    assert!(edited.to_string().contains("Monthly"));
    w.vault_with_policy_file("V", &policy);
}

#[test]
fn a_wrong_log_level_is_a_usage_error() {
    let w = World::new();
    let out = run(&w, &["--log-level", "bogus", "job", "list"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`bogus` is not a log level"), "{stderr}");
    let out = run(
        &w,
        &["--log-level", "warn,pgvault_host=debug", "job", "list"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_reports_policies_and_instances_that_do_not_read_back() {
    let w = World::new();
    let dir = w.vault_with_policy("V");
    std::fs::write(dir.join("policies/Garbage.json"), "this is not a policy").unwrap();
    // No instance was created, so the folder is the test's to make.
    std::fs::create_dir_all(dir.join("instances")).unwrap();
    std::fs::write(dir.join("instances/broken.json"), "{\"name\": ").unwrap();
    std::fs::write(
        dir.join("policies/Huge.json"),
        vec![b' '; VAULT_JSON_LIMIT + 1],
    )
    .unwrap();

    let out = run(&w, &["backup-vault", "check", "--vault-name", "V"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("VaultDamaged"));
    let check: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(check["status"], "Damaged");
    let findings = check["configuration"].as_array().unwrap();
    let about = |kind: &str, name: &str| {
        findings
            .iter()
            .find(|f| f["kind"] == kind && f["message"].as_str().unwrap().contains(name))
            .unwrap_or_else(|| panic!("no {kind} finding for {name}: {findings:#?}"))
    };
    assert_eq!(about("PolicyUnreadable", "`Garbage`")["severity"], "Error");
    assert_eq!(about("InstanceUnreadable", "`broken`")["severity"], "Error");
    assert!(
        about("PolicyUnreadable", "`Huge`")["message"]
            .as_str()
            .unwrap()
            .contains("8 MiB")
    );
    // The good policy is not among them.
    assert_eq!(findings.len(), 3, "{findings:#?}");

    let out = run(
        &w,
        &["backup-vault", "check", "--vault-name", "V", "-o", "table"],
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("PolicyUnreadable") && table.contains("InstanceUnreadable"),
        "{table}"
    );
}

/// One damaged backup instance or policy file does not hide the others or stop their
/// backups: `list` prints what reads and fails naming the rest; the scheduler still backs up
/// the sound instance, and another database can still be protected.
#[test]
fn one_damaged_instance_or_policy_file_does_not_stop_the_others() {
    let w = World::new();
    let dir = w.vault_with_policy("V");
    let db = crate::support::sample_database("sound", 100);
    let sound = w.protect("V", &db, &w.admin_secret(&db));
    std::fs::write(dir.join("instances/broken.json"), "{\"name\": ").unwrap();
    std::fs::write(dir.join("policies/Garbage.json"), "this is not a policy").unwrap();
    std::fs::write(
        dir.join("policies/Huge.json"),
        vec![b' '; VAULT_JSON_LIMIT + 1],
    )
    .unwrap();

    let out = run(&w, &["backup-instance", "list", "--vault-name", "V"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed:#}");
    assert_eq!(listed[0]["name"], sound.as_str());
    assert!(
        stderr.contains("VaultCorrupt") && stderr.contains("broken"),
        "{stderr}"
    );

    let out = run(&w, &["backup-policy", "list", "--vault-name", "V"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed:#}");
    assert!(
        stderr.contains("Garbage") && stderr.contains("Huge") && stderr.contains("8 MiB"),
        "{stderr}"
    );

    // The scheduler: the sound instance's latest weekly occurrence runs.
    let jobs = w.json(&["tick", "--at", "2041-01-01T00:00:00Z"]);
    let backups: Vec<&Value> = jobs
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["properties"]["pgvaultOperation"] == "ScheduledBackup")
        .collect();
    assert_eq!(backups.len(), 1, "{jobs:#}");
    assert_eq!(backups[0]["properties"]["status"], "Completed", "{jobs:#}");

    // Protection of another database is not refused because of the damaged file.
    let other = crate::support::sample_database("other", 10);
    w.protect("V", &other, &w.admin_secret(&other));
}

#[test]
fn a_closed_stdout_ends_table_commands_quietly() {
    let w = World::new();
    w.vault_with_policy("V");
    let commands: &[&[&str]] = &[
        &["backup-vault", "check", "--vault-name", "V", "-o", "table"],
        &[
            "backup-vault",
            "reindex",
            "--vault-name",
            "V",
            "-o",
            "table",
        ],
        &["backup-vault", "gc", "--vault-name", "V", "-o", "table"],
        &["backup-vault", "list", "-o", "table"],
        &["backup-policy", "list", "--vault-name", "V", "-o", "table"],
        &["job", "list", "-o", "table"],
        &["job", "prune", "-o", "table"],
        &[
            "recovery-point",
            "verify",
            "--vault-name",
            "V",
            "--all",
            "-o",
            "table",
        ],
    ];
    for args in commands {
        // A pipe whose reader is gone before pgvault writes: `| head -1` at its most abrupt.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = guarded(&w, args)
            .stdin(Stdio::null())
            .stdout(writer)
            .output()
            .expect("run pgvault");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked"),
            "pgvault {args:?} panicked: {stderr}"
        );
        assert!(
            out.status.success(),
            "pgvault {args:?}: {:?} {stderr}",
            out.status
        );
        assert!(stderr.is_empty(), "pgvault {args:?} said: {stderr}");
    }
}

#[test]
fn gc_prints_a_table() {
    let w = World::new();
    w.vault_with_policy("V");
    let out = run(
        &w,
        &["backup-vault", "gc", "--vault-name", "V", "-o", "table"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("Tier") && header.contains("Bytes freed"),
        "{table}"
    );
    assert!(lines.next().unwrap().starts_with("----"), "{table}");
    assert!(
        lines.next().unwrap().starts_with("VaultStore  Completed"),
        "{table}"
    );
}
