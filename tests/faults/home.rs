//! The home and the vault folders: where a vault may live, who can read what pgvault writes,
//! and errors that name the fault (a full disk, a missing vault) instead of a symptom.
//!
//! Issue 12, findings 6 (vaults nested in one another or in system folders), 9 (world-readable
//! files), 11 (a full disk never named; a sweep over all vaults stopped by a missing one) and
//! the case-insensitive vault names of finding 12.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::{World, cluster, sample_database};

fn create(w: &World, name: &str, url: &str) -> Output {
    w.run(&[
        "backup-vault",
        "create",
        "--vault-name",
        name,
        "--storage-url",
        url,
    ])
}

fn refused(out: &Output, what: &str, needle: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "{what} should have been refused:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains(needle),
        "{what}: the error should say `{needle}`:\n{stderr}"
    );
    stderr
}

fn url(p: &Path) -> String {
    format!("file://{}", p.display())
}

#[test]
fn a_vault_cannot_nest_in_another_vault_nor_sit_in_a_system_folder() {
    let w = World::new();
    let outer = w.path("outer");
    let a = outer.join("vault-A");
    assert!(create(&w, "A", &url(&a)).status.success());

    // Inside a registered vault: its garbage collection would delete the nested vault's packs.
    let out = create(&w, "B", &url(&a.join("packs/nested")));
    refused(&out, "a vault inside vault A", "inside vault `A`");
    assert!(
        !a.join("packs/nested").exists(),
        "the refused folder was created"
    );
    // Around one.
    let out = create(&w, "B", &url(&outer));
    refused(&out, "a vault around vault A", "vault `A`");
    // Through a symlink and `..`: the canonical path is what counts.
    std::os::unix::fs::symlink(&a, w.path("link")).unwrap();
    let out = create(&w, "B", &url(&w.path("link/sub")));
    refused(
        &out,
        "a vault inside vault A through a symlink",
        "inside vault `A`",
    );
    let dotdot = format!("{}/elsewhere/../outer/vault-A/x", w.dir.path().display());
    refused(
        &create(&w, "B", &dotdot),
        "a vault inside A through ..",
        "inside vault `A`",
    );

    // A vault this home does not know about is found by its vault.json, above or below.
    let other = World::new();
    let foreign = w.path("foreign");
    let out = other.run(&[
        "backup-vault",
        "create",
        "--vault-name",
        "F",
        "--storage-url",
        &url(&foreign.join("x/vault-F")),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = create(&w, "B", &url(&foreign.join("x/vault-F/index/deep")));
    refused(
        &out,
        "a vault inside an unregistered vault",
        "holds a vault",
    );
    let out = create(&w, "B", &url(&foreign));
    refused(
        &out,
        "a vault around an unregistered vault",
        "holds a vault",
    );

    // The archive tier follows the same rules, at create and at update.
    let b = w.path("vault-B");
    let out = w.run(&[
        "backup-vault",
        "create",
        "--vault-name",
        "B",
        "--storage-url",
        &url(&b),
        "--archive-storage-url",
        &url(&a.join("archive")),
    ]);
    refused(&out, "an archive tier inside vault A", "inside vault `A`");
    assert!(
        !b.join("vault.json").exists(),
        "a vault was created with a refused archive tier"
    );
    assert!(create(&w, "B", &url(&b)).status.success());
    let out = w.run(&[
        "backup-vault",
        "update",
        "--vault-name",
        "B",
        "--archive-storage-url",
        &url(&a.join("archive")),
    ]);
    refused(
        &out,
        "an archive tier moved inside vault A",
        "inside vault `A`",
    );
    let out = w.run(&[
        "backup-vault",
        "update",
        "--vault-name",
        "B",
        "--archive-storage-url",
        &url(&b.join("archive")),
    ]);
    refused(
        &out,
        "an archive tier inside its own vault",
        "inside vault `B`",
    );

    // Names are unique ignoring case: `a` would be unreachable behind `A`.
    let out = create(&w, "a", &url(&w.path("vault-a2")));
    refused(&out, "vault `a` beside vault `A`", "`A`");
    assert!(!w.path("vault-a2").exists());

    // System folders and the home's own bookkeeping.
    for place in [
        "/",
        "/etc",
        "/usr/lib/pgvault",
        "/proc/self",
        "/var",
        "/boot",
    ] {
        let out = create(&w, "S", &url(Path::new(place)));
        refused(&out, place, "system folder");
    }
    assert!(!Path::new("/etc/vault.json").exists());
    let home = w.path("home");
    for place in [home.clone(), home.join("jobs.sqlite"), home.join("scripts")] {
        let out = create(&w, "S", &url(&place));
        refused(&out, &place.display().to_string(), "PGVAULT_HOME");
    }
    // A default vault folder (`$PGVAULT_HOME/vaults/<name>`) and an ordinary one still work.
    assert!(
        w.run(&["backup-vault", "create", "--vault-name", "D"])
            .status
            .success()
    );
    assert!(create(&w, "C", &url(&w.path("vault-C"))).status.success());
    let names = w.json(&["backup-vault", "list"]);
    let names: Vec<&str> = names
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["A", "B", "C", "D"]);
}

/// The command with the usual 022 umask, whatever the test runner's is.
fn with_umask_022(w: &World, args: &[&str]) -> Output {
    let inner = w.command(args);
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("umask 022 && exec \"$0\" \"$@\"")
        .arg(inner.get_program())
        .args(inner.get_args())
        .env_remove("RUST_LOG");
    for (k, v) in inner.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "pgvault {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every folder and file under `root` (itself included) whose mode is not 0700 / 0600.
fn not_private(root: &Path) -> Vec<String> {
    let mut bad = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        let want = if meta.is_dir() { 0o700 } else { 0o600 };
        if mode != want {
            bad.push(format!("{} is {mode:o}", p.display()));
        }
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    bad
}

#[test]
fn the_home_and_vault_files_are_private_whatever_the_umask() {
    let w = World::new();
    let db = sample_database("modes", 2_000);
    let run = |args: &[&str]| -> Value {
        serde_json::from_slice(&with_umask_022(&w, args).stdout).unwrap()
    };
    let template = run(&[
        "backup-policy",
        "get-default-policy-template",
        "--datasource-type",
        "AzureDatabaseForPostgreSQLFlexibleServer",
    ]);
    let policy = w.write("policy.json", &template.to_string());
    // A vault in a folder pgvault creates, two levels deep, with its archive tier; and one in
    // the home's default place.
    let vault = w.path("backups/deep/vault-V");
    let archive = w.path("backups/archive-V");
    run(&[
        "backup-vault",
        "create",
        "--vault-name",
        "V",
        "--storage-url",
        &url(&vault),
        "--archive-storage-url",
        &url(&archive),
    ]);
    run(&["backup-vault", "create", "--vault-name", "D"]);
    run(&[
        "backup-policy",
        "create",
        "--vault-name",
        "V",
        "--backup-policy-name",
        "OssPolicy",
        "--policy",
        policy.to_str().unwrap(),
    ]);
    let secret = w.admin_secret(&db);
    let c = cluster();
    let request = run(&[
        "backup-instance",
        "initialize",
        "--datasource-type",
        "AzureDatabaseForPostgreSQLFlexibleServer",
        "--datasource-id",
        &format!("postgres://{}:{}/{db}", c.host(), c.port()),
        "--policy-id",
        "OssPolicy",
        "--secret-store-type",
        "File",
        "--secret-store-uri",
        &secret,
    ]);
    let request = w.write("instance.json", &request.to_string());
    let instance = run(&[
        "backup-instance",
        "create",
        "--vault-name",
        "V",
        "--backup-instance",
        request.to_str().unwrap(),
    ]);
    let instance = instance["name"].as_str().unwrap().to_string();
    run(&[
        "backup-instance",
        "adhoc-backup",
        "--vault-name",
        "V",
        "--name",
        &instance,
        "--rule-name",
        "Default",
    ]);
    let points = run(&[
        "recovery-point",
        "list",
        "--vault-name",
        "V",
        "--backup-instance-name",
        &instance,
    ]);
    let rp = points[0]["name"].as_str().unwrap().to_string();
    let files = w.path("restored/here");
    let request = run(&[
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
        files.to_str().unwrap(),
        "--target-file-name",
        "modes",
    ]);
    let request = w.write("restore.json", &request.to_string());
    run(&[
        "backup-instance",
        "restore",
        "trigger",
        "--vault-name",
        "V",
        "--backup-instance-name",
        &instance,
        "--restore-request-object",
        request.to_str().unwrap(),
    ]);
    assert!(
        files.join("modes.dump").exists(),
        "{:?}",
        crate::support::files_under(&files)
    );

    let mut bad = Vec::new();
    for root in [w.path("home"), w.path("backups"), w.path("restored")] {
        bad.extend(not_private(&root));
    }
    assert!(bad.is_empty(), "not private:\n{}", bad.join("\n"));
    // The packs and vault.json (with its chunk-id key) were among the files checked.
    assert!(vault.join("vault.json").exists() && vault.join("packs").is_dir());
}

#[test]
fn a_sweep_over_all_vaults_reports_each_and_goes_past_a_missing_one() {
    let w = World::new();
    for name in ["V1", "V2", "V3"] {
        assert!(
            create(&w, name, &url(&w.path(&format!("vault-{name}"))))
                .status
                .success()
        );
    }
    let missing = w.path("vault-V2");
    std::fs::remove_dir_all(&missing).unwrap();

    let out = w.run(&["retention", "sweep"]);
    assert!(
        !out.status.success(),
        "a sweep that could not reach V2 succeeded"
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no report ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let report = report.as_array().unwrap();
    let vaults: Vec<&str> = report
        .iter()
        .map(|o| o["vault"].as_str().unwrap())
        .collect();
    assert_eq!(vaults, ["V1", "V2", "V3"], "{report:#?}");
    assert_eq!(report[0]["job"]["properties"]["status"], "Completed");
    assert_eq!(report[2]["job"]["properties"]["status"], "Completed");
    let error = report[1]["error"]["message"].as_str().unwrap_or_default();
    assert!(
        error.contains(&missing.display().to_string()) && error.contains("does not exist"),
        "{report:#?}"
    );
    assert!(
        !missing.exists(),
        "the sweep created the missing vault's folder"
    );

    // Nothing else that opens a vault creates its folder either.
    let err = w.fails(&["backup-vault", "show", "--vault-name", "V2"]);
    assert!(err.contains("does not exist"), "{err}");
    assert!(
        !missing.exists(),
        "backup-vault show created the missing vault's folder"
    );
}

/// A tmpfs of `size` mounted at `dir`, unmounted when dropped; `None` (with the reason
/// printed) when this process may not mount one.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: PathBuf, size: &str) -> Option<Tmpfs> {
        if nix_uid() != 0 {
            eprintln!(
                "SKIPPED: the full-disk test mounts a small tmpfs, which needs root (uid {}); run the fault suite as root to include it",
                nix_uid()
            );
            return None;
        }
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&dir)
            .output()
            .unwrap();
        if !out.status.success() {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs at {} although root ({}); the container forbids it",
                dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(Tmpfs(dir))
    }

    /// Fills what is left of the disk with a file.
    fn fill(&self) {
        self.fill_leaving(0);
    }

    /// Fills the disk with a file, then gives `bytes` of it back.
    fn fill_leaving(&self, bytes: u64) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.0.join("filler")).unwrap();
        let block = vec![7u8; 64 << 10];
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("filling {}: {e}", self.0.display()),
            }
        }
        let len = f.metadata().unwrap().len();
        f.set_len(len.saturating_sub(bytes)).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn nix_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

#[test]
fn a_full_disk_is_named_for_a_vault_a_home_and_a_restore_target() {
    let mut w = World::new();
    let Some(disk) = Tmpfs::mount(w.path("small"), "2m") else {
        return;
    };
    let db = sample_database("fulldisk", 30_000);
    let secret = w.admin_secret(&db);

    // A vault on a full disk: what its store writes names the disk.
    let vault = disk.0.join("vault-V");
    w.vault_with_policy("Big");
    assert!(create(&w, "V", &url(&vault)).status.success());
    disk.fill();
    let template = w.path("policy-Big.json");
    let out = w.run(&[
        "backup-policy",
        "create",
        "--vault-name",
        "V",
        "--backup-policy-name",
        "OssPolicy",
        "--policy",
        template.to_str().unwrap(),
    ]);
    let want = format!("the disk holding `{}` is full", vault.display());
    refused(&out, "a policy written to a full vault disk", &want);
    std::fs::remove_file(disk.0.join("filler")).unwrap();

    // A backup bigger than the disk.
    let out = w.run(&[
        "backup-policy",
        "create",
        "--vault-name",
        "V",
        "--backup-policy-name",
        "OssPolicy",
        "--policy",
        template.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let instance = w.protect("V", &db, &secret);
    // Room for the lock and a small object, not for a pack.
    disk.fill_leaving(256 << 10);
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
    let job: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(job["properties"]["status"], "Failed", "{job:#}");
    let errors = job["properties"]["errorDetails"].to_string();
    assert!(errors.contains(&want), "{errors}");
    std::fs::remove_file(disk.0.join("filler")).unwrap();
    std::fs::remove_dir_all(&vault).unwrap();

    // A restore-as-files target on a full disk (a dump bigger than the disk).
    let instance = w.protect("Big", &db, &secret);
    w.backup("Big", &instance);
    let rp = w.recovery_points("Big", &instance)[0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let target = disk.0.join("restored");
    let request = w.json(&[
        "backup-instance",
        "restore",
        "initialize-for-data-recovery-as-files",
        "--vault-name",
        "Big",
        "--backup-instance-name",
        &instance,
        "--recovery-point-id",
        &rp,
        "--target-directory",
        target.to_str().unwrap(),
        "--target-file-name",
        "big",
    ]);
    let request = w.write("restore.json", &request.to_string());
    let out = w.run(&[
        "backup-instance",
        "restore",
        "trigger",
        "--vault-name",
        "Big",
        "--backup-instance-name",
        &instance,
        "--restore-request-object",
        request.to_str().unwrap(),
    ]);
    refused(
        &out,
        "a restore into a full disk",
        &format!("the disk holding `{}` is full", target.display()),
    );
    std::fs::remove_dir_all(&target).unwrap();

    // A home on a full disk: the job history says so.
    let home = disk.0.join("home");
    w.env = vec![("PGVAULT_HOME".into(), home.display().to_string())];
    let other = w.path("vault-W");
    assert!(create(&w, "W", &url(&other)).status.success());
    disk.fill();
    let out = w.run(&["retention", "sweep", "--vault-name", "W"]);
    refused(
        &out,
        "a job recorded in a home on a full disk",
        &format!("the disk holding `{}` is full", home.display()),
    );
}
