//! The README as a new user follows it: the walkthrough's commands pasted one by one against a
//! database owned by a non-superuser (the grant script run by that owner), the Rhai walkthrough
//! run twice with its own restore secret, and the demo on a machine without PostgreSQL.
//!
//! The commands are read from README.md itself, so a README that stops working fails here.
//! Only what a user fills in is replaced: the server's host and port, the database, role and
//! folder names (made unique to this test), the passwords, and `<instance name>` / `<id>`,
//! which the user reads from an earlier command's output, as the test does.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::{OwnedDatabase, World, cluster, owned_database, plain_dump};

const README: &str = include_str!("../../README.md");

/// The text of the README section under `heading`, up to the next heading of any level
/// (a `#` line inside a code block is a shell comment, not a heading).
fn section(heading: &str) -> String {
    let mut lines = README.lines().skip_while(|l| *l != heading);
    assert!(lines.next().is_some(), "README has no {heading:?}");
    let mut in_code = false;
    let mut out = String::new();
    for line in lines {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            break;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The shell commands in a section's ```sh blocks, in order: continuation lines joined,
/// blank lines and whole-line comments left out (bash drops a trailing comment itself).
fn commands(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_block = line == "```sh";
            continue;
        }
        if !in_block {
            continue;
        }
        let trimmed = line.trim();
        if pending.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head);
                pending.push(' ');
            }
            None => {
                pending.push_str(trimmed);
                out.push(std::mem::take(&mut pending));
            }
        }
    }
    out
}

/// A user at a shell: the README's placeholders filled in, `export`s remembered, `pgvault`,
/// `psql` and `pg_restore` on PATH, a working folder of its own.
struct Shell<'a> {
    w: &'a World,
    fill: Vec<(String, String)>,
    env: BTreeMap<String, String>,
    passwords: BTreeMap<String, String>,
    cwd: std::path::PathBuf,
}

impl<'a> Shell<'a> {
    fn new(w: &'a World, db: &'a OwnedDatabase) -> Self {
        let c = cluster();
        let cwd = w.path("cwd");
        std::fs::create_dir_all(&cwd).unwrap();
        let backup_user = format!("{}_backup", db.name);
        let restore_user = format!("{}_restore", db.name);
        let server = c.host().to_string();
        let mut passwords = BTreeMap::new();
        passwords.insert(c.admin_user().to_owned(), c.admin_password().to_owned());
        passwords.insert(db.owner.clone(), db.owner_password.clone());
        passwords.insert(backup_user.clone(), "pw-backup".to_owned());
        passwords.insert(restore_user.clone(), "pw-restore".to_owned());
        let fill = [
            // Passwords first: they are found by the user name beside them.
            (
                "User Id=backup_user;Password=...",
                format!("User Id={backup_user};Password=pw-backup"),
            ),
            (
                "User Id=restore_user;Password=...",
                format!("User Id={restore_user};Password=pw-restore"),
            ),
            (
                "backup_user LOGIN PASSWORD '...'",
                format!("{backup_user} LOGIN PASSWORD 'pw-backup'"),
            ),
            (
                "restore_user LOGIN PASSWORD '...'",
                format!("{restore_user} LOGIN PASSWORD 'pw-restore'"),
            ),
            ("backup_user", backup_user.clone()),
            ("restore_user", restore_user.clone()),
            ("-h db.example", format!("-h {server} -p {}", c.port())),
            ("-U postgres", format!("-U {}", c.admin_user())),
            ("db2.example", server.clone()),
            ("db.example", server.clone()),
            ("5432", c.port().to_string()),
            ("empdb11", db.name.clone()),
            ("appowner", db.owner.clone()),
            (
                "/var/backups/pgvault",
                w.path("vault").display().to_string(),
            ),
            ("/etc/pgvault", w.path("etc").display().to_string()),
            ("/tmp/out", w.path("out").display().to_string()),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b))
        .collect();
        Shell {
            w,
            fill,
            env: BTreeMap::new(),
            passwords,
            cwd,
        }
    }

    fn fill_in(&self, command: &str) -> String {
        let mut out = command.to_owned();
        for (from, to) in &self.fill {
            out = out.replace(from, to);
        }
        out
    }

    /// Runs one command as bash would, after filling it in.
    fn run(&mut self, command: &str) -> Output {
        let command = self.fill_in(command);
        if let Some(rest) = command.strip_prefix("export ")
            && let Some((name, value)) = rest.split_once('=')
        {
            let value = value.trim().trim_matches('\'').to_owned();
            self.env.insert(name.to_owned(), value);
        }
        let c = cluster();
        let bin = Path::new(env!("CARGO_BIN_EXE_pgvault")).parent().unwrap();
        let path = format!(
            "{}:{}:{}",
            bin.display(),
            c.bindir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new("bash");
        cmd.env_remove("RUST_LOG");
        for (k, _) in std::env::vars() {
            if k.starts_with("PG") {
                cmd.env_remove(k);
            }
        }
        cmd.current_dir(&self.cwd)
            .arg("-c")
            .arg(format!("set -eo pipefail\n{command}"))
            .env("PATH", path)
            .env("HOME", self.w.path("cwd"));
        for (k, v) in self.w.env.iter().cloned().chain(self.env.clone()) {
            cmd.env(k, v);
        }
        // psql asks for the password of the user it logs in as; a user types it.
        if command.starts_with("psql ") {
            let user = command
                .split_whitespace()
                .skip_while(|a| *a != "-U")
                .nth(1)
                .unwrap_or_default()
                .to_owned();
            let password = self.passwords.get(&user).cloned().unwrap_or_default();
            cmd.env("PGPASSWORD", password);
        }
        cmd.output().expect("run bash")
    }

    fn succeeds(&mut self, command: &str) -> String {
        let out = self.run(command);
        assert!(
            out.status.success(),
            "README command failed: {}\nstdout: {}\nstderr: {}",
            self.fill_in(command),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// The GRANT script from a `UserErrorMissingDBPermissions` error: from its first SQL line
/// (a comment naming who runs the part, or a statement) to the end.
fn grant_script_from(error: &str) -> String {
    let start = error
        .lines()
        .position(|l| {
            let l = l.trim_start();
            l.starts_with("--")
                || l.starts_with("GRANT ")
                || l.starts_with("ALTER ")
                || l.starts_with("DO ")
        })
        .unwrap_or_else(|| panic!("no GRANT script in: {error}"));
    let mut script = error.lines().skip(start).collect::<Vec<_>>().join("\n");
    script.push('\n');
    script
}

/// Asserts two databases dump the same, showing only the lines that differ.
fn same_database(restored: &str, source: &str) {
    let (a, b) = (plain_dump(restored), plain_dump(source));
    if a != b {
        let only = |x: &str, y: &str| -> Vec<String> {
            let ys: std::collections::HashSet<&str> = y.lines().collect();
            x.lines()
                .filter(|l| !ys.contains(l))
                .take(10)
                .map(str::to_owned)
                .collect()
        };
        panic!(
            "{restored} differs from {source}:\nonly in the restore: {:#?}\nonly in the source: {:#?}",
            only(&a, &b),
            only(&b, &a)
        );
    }
}

#[test]
fn the_readme_walkthrough_works_as_written_on_a_database_owned_by_a_non_superuser() {
    let w = World::new();
    let db = owned_database("readme", 2_000);
    let mut shell = Shell::new(&w, &db);
    let steps = commands(&section("## The walkthrough"));
    assert!(steps.len() >= 15, "{steps:#?}");

    let mut instance: Option<String> = None;
    let mut point: Option<String> = None;
    let mut restore_stderr = String::new();
    let mut creates = 0;
    for step in &steps {
        let mut step = step.clone();
        if let Some(name) = &instance {
            step = step.replace("<instance name>", name);
        }
        if let Some(id) = &point {
            step = step.replace("<id>", id);
        }
        assert!(
            !step.contains('<'),
            "a placeholder the README does not explain: {step}"
        );
        if step.contains("backup-instance create ") {
            creates += 1;
            if creates == 1 {
                // A backup user with no privileges: the README says this one fails.
                let out = shell.run(&step);
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(!out.status.success(), "the first create should fail");
                assert!(stderr.contains("UserErrorMissingDBPermissions"), "{stderr}");
                std::fs::write(shell.cwd.join("grants.sql"), grant_script_from(&stderr)).unwrap();
                continue;
            }
            let created: Value = serde_json::from_str(&shell.succeeds(&step)).unwrap();
            instance = Some(created["name"].as_str().unwrap().to_owned());
            continue;
        }
        if step.starts_with("psql ") && step.contains("grants.sql") {
            let out = shell.run(&step);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && !stderr.contains("ERROR"),
                "the grant script failed as the owner:\n{stderr}\n{}",
                std::fs::read_to_string(shell.cwd.join("grants.sql")).unwrap()
            );
            continue;
        }
        let out = shell.run(&step);
        assert!(
            out.status.success(),
            "README command failed: {}\nstdout: {}\nstderr: {}",
            shell.fill_in(&step),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if step.contains("restore trigger") && step.contains("restore.json") {
            restore_stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        }
        if step.contains("recovery-point list") {
            // The user reads the id off the table; the test from the JSON.
            let name = instance.as_deref().unwrap();
            let points = w.recovery_points("TestBkpVault", name);
            point = Some(points[0]["name"].as_str().unwrap().to_owned());
        }
        if step.starts_with("pg_restore --list") {
            let listing = String::from_utf8_lossy(&out.stdout);
            assert!(listing.contains("TABLE DATA public rental"), "{listing}");
        }
    }
    assert_eq!(
        creates, 2,
        "the README creates the instance, grants, and creates again"
    );

    // The restore is the source, and belongs to the restoring user.
    let restored = format!("{}_restored", db.name);
    same_database(&restored, &db.name);
    let owner = cluster().psql(
        "postgres",
        &format!("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{restored}'"),
    );
    assert_eq!(owner, format!("{}_restore", db.name));
    assert!(
        !restore_stderr.contains("WARN"),
        "a restore as the README shows it should not warn: {restore_stderr}"
    );

    // The backup user can back up tables the owner creates later (default privileges).
    db.as_owner(
        "CREATE TABLE public.added_later (id int); INSERT INTO public.added_later VALUES (1);",
    );
    let job = w.backup("TestBkpVault", instance.as_deref().unwrap());
    assert_eq!(job["properties"]["status"], "Completed", "{job:#}");
}

/// The Rhai walkthrough as the README runs it: a backup user, a restore user of its own, and a
/// second run that finds the vault, policy and protection of the first.
#[test]
fn the_rhai_walkthrough_uses_its_restore_secret_and_runs_twice() {
    let c = cluster();
    let db = owned_database("readme_rhai", 1_000);
    let restore_user = format!("{}_restore", db.name);
    c.psql(
        "postgres",
        &format!("CREATE ROLE {restore_user} LOGIN PASSWORD 'pw-restore' CREATEDB;"),
    );
    let mut w = World::new();
    // The owner backs up (it may read everything it owns); the restore user restores.
    let backup_secret = w.secret_file("backup.secret", &db.name, &db.owner, &db.owner_password);
    let restore_secret = format!(
        "Server={};Database=postgres;Port={};User Id={restore_user};Password=pw-restore;Ssl Mode=Prefer;",
        c.host(),
        c.port()
    );
    let target = format!("{}_restored", db.name);
    w.env.extend([
        (
            "PGVAULT_DATASOURCE".to_owned(),
            format!("postgres://{}:{}/{}", c.host(), c.port(), db.name),
        ),
        ("PGVAULT_SECRET_URI".to_owned(), backup_secret),
        (
            "PGVAULT_RESTORE_URL".to_owned(),
            format!("postgres://{}:{}/{target}", c.host(), c.port()),
        ),
        ("PGVAULT_RESTORE_SECRET".to_owned(), restore_secret),
        (
            "PGVAULT_RESTORE_SECRET_URI".to_owned(),
            "env:PGVAULT_RESTORE_SECRET".to_owned(),
        ),
        (
            "PGVAULT_VAULT_URL".to_owned(),
            format!("file://{}", w.path("vault").display()),
        ),
    ]);
    let script = format!(
        "{}/../../scripts/walkthrough.rhai",
        env!("CARGO_MANIFEST_DIR")
    );
    let run = |w: &World| {
        let out = w.run(&["run", &script]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "stdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let first = run(&w);
    assert!(
        first.contains("Created vault") && first.contains("Protected"),
        "{first}"
    );
    let second = run(&w);
    assert!(
        second.contains("Using vault")
            && second.contains("Using policy")
            && second.contains("Already protected"),
        "{second}"
    );
    assert!(
        second.contains(&format!("restoring into {target}_2")),
        "{second}"
    );

    for restored in [target.clone(), format!("{target}_2")] {
        same_database(&restored, &db.name);
        let owner = c.psql(
            "postgres",
            &format!(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{restored}'"
            ),
        );
        assert_eq!(owner, restore_user, "restored with the restore secret");
    }
    // The secret's password never reaches the script's output.
    assert!(!first.contains("pw-restore") && !second.contains("pw-restore"));
}

/// The README's first command, as `tools/demo.sh` ends up running it (small): the whole
/// walkthrough on a throwaway server of its own, the backup user granted with the script
/// pgvault prints, both restores checked, its folder removed.
#[test]
fn the_demo_runs_through() {
    let w = World::new();
    let out = w.run(&["demo", "--scale", "1"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "protected: ",
        "restored in ",
        "pg_restore --list shows",
        "Done.",
    ] {
        assert!(stdout.contains(step), "no {step:?} in:\n{stdout}");
    }
    // The folder it worked in: the path up to `pgvault-demo-XXXXXX` in what it printed.
    let path = stdout
        .split_whitespace()
        .find(|w| w.contains("/pgvault-demo-"))
        .unwrap_or_else(|| panic!("no demo folder named in:\n{stdout}"));
    let at = path.find("/pgvault-demo-").unwrap() + 1;
    let end = path[at..].find('/').map_or(path.len(), |i| at + i);
    let folder = &path[..end];
    assert!(!Path::new(folder).exists(), "{folder} is left behind");
}

/// `pgvault demo` without the PostgreSQL server binaries ends with what to install, not a panic.
#[test]
fn the_demo_without_postgresql_says_how_to_get_it() {
    let w = World::new();
    let mut cmd = w.command(&["demo", "--scale", "1"]);
    cmd.env("PGVAULT_PG_BINDIR", w.path("no-postgresql-here"));
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("initdb")
            && stderr.contains("tools/demo.sh")
            && stderr.contains("apt-get install postgresql"),
        "{stderr}"
    );
}

#[test]
fn the_readme_gives_exactly_two_set_up_commands_and_they_exist() {
    let setup: Vec<String> = commands(&section("## Set up"))
        .iter()
        .map(|c| c.split(" #").next().unwrap().trim().to_owned())
        .collect();
    assert_eq!(setup, ["tools/demo.sh", "tools/test.sh"], "{setup:?}");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for script in &setup {
        let path = root.join(script);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert!(mode & 0o111 != 0, "{script} is not executable");
    }
    let ci = std::fs::read_to_string(root.join(".ci/run")).unwrap();
    assert!(ci.contains("tools/test.sh"), "{ci}");
}
