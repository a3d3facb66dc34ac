//! The runbooks in `scripts/` run for real through `pgvault run`: the nightly backup of every
//! instance, protecting a whole server from a drop-in script, and the failed-jobs report.
//! Failures are real too: a secret whose password is wrong, a database that does not exist.

use pgvault_testkit::TestCluster;

use crate::support::{World, cluster, sample_database};

fn script(name: &str) -> String {
    format!("{}/../../scripts/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs a script; returns (succeeded, stdout, stderr).
fn run_script(w: &World, name: &str) -> (bool, String, String) {
    let out = w.run(&["run", &script(name)]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Replaces the password in a secret file written by `World::secret_file`.
fn break_password(secret_uri: &str) -> String {
    let path = secret_uri.strip_prefix("file://").unwrap();
    let good = std::fs::read_to_string(path).unwrap();
    let (head, _) = good.split_once("Password=").unwrap();
    std::fs::write(
        path,
        format!("{head}Password=WrongHunter2;Ssl Mode=Prefer;"),
    )
    .unwrap();
    good
}

fn friendly(database: &str) -> String {
    format!("{}\\{database}", cluster().host())
}

#[test]
fn nightly_runbook_backs_up_every_instance_and_fails_when_one_backup_fails() {
    let w = World::new();
    let [a, b, c, d] = ["nightly_a", "nightly_b", "nightly_c", "nightly_d"]
        .map(|prefix| sample_database(prefix, 200));
    w.vault_with_policy("Alpha");
    w.vault_with_policy("Beta");
    let ia = w.protect("Alpha", &a, &w.admin_secret(&a));
    let id = w.protect("Alpha", &d, &w.admin_secret(&d));
    let ib = w.protect("Beta", &b, &w.admin_secret(&b));
    let c_secret = w.admin_secret(&c);
    let ic = w.protect("Beta", &c, &c_secret);
    // d's backups are suspended: the runbook leaves it alone. c's password then goes wrong:
    // its backup fails, and must not stop the others.
    w.json(&[
        "backup-instance",
        "suspend-backup",
        "--vault-name",
        "Alpha",
        "--name",
        &id,
    ]);
    let good = break_password(&c_secret);

    let (ok, stdout, stderr) = run_script(&w, "nightly-runbook.rhai");
    assert!(!ok, "a failed backup must fail the runbook:\n{stdout}");
    assert!(
        stdout.contains("Nightly backups: 3 run, 2 completed, 1 failed, 1 skipped"),
        "{stdout}"
    );
    let line = |needle: &str| -> String {
        stdout
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle} in:\n{stdout}"))
            .to_string()
    };
    for (vault, db) in [("Alpha", &a), ("Beta", &b)] {
        let l = line(&format!("{vault}/{}  ", friendly(db)));
        assert!(l.trim_start().starts_with("Completed"), "{l}");
    }
    let l = line(&format!("Beta/{}  ", friendly(&c)));
    assert!(
        l.trim_start().starts_with("Failed") && l.contains("UserErrorDBUserAuthFailed"),
        "{l}"
    );
    assert!(
        line(&format!("Alpha/{}", friendly(&d))).contains("Skipped"),
        "{stdout}"
    );
    assert!(
        stderr.contains("1 of 3 nightly backups failed") && stderr.contains(&c),
        "{stderr}"
    );
    assert!(!stdout.contains("WrongHunter2") && !stderr.contains("WrongHunter2"));
    let points = |vault: &str, instance: &str| w.recovery_points(vault, instance).len();
    assert_eq!(
        [
            points("Alpha", &ia),
            points("Beta", &ib),
            points("Beta", &ic),
            points("Alpha", &id)
        ],
        [1, 1, 0, 0]
    );

    // With the secret fixed, the next night passes and backs up all three again.
    std::fs::write(c_secret.strip_prefix("file://").unwrap(), good).unwrap();
    let (ok, stdout, stderr) = run_script(&w, "nightly-runbook.rhai");
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("Nightly backups: 3 run, 3 completed, 0 failed, 1 skipped"),
        "{stdout}"
    );
    assert_eq!(
        [
            points("Alpha", &ia),
            points("Beta", &ib),
            points("Beta", &ic),
            points("Alpha", &id)
        ],
        [2, 2, 1, 0]
    );
}

/// `backup-instance initialize` + `create` against `server`, for a database of a server other
/// than the shared one.
fn protect_on(w: &World, server: &TestCluster, database: &str, secret_uri: &str) -> String {
    let request = w.json(&[
        "backup-instance",
        "initialize",
        "--datasource-type",
        "AzureDatabaseForPostgreSQLFlexibleServer",
        "--datasource-id",
        &format!("postgres://{}:{}/{database}", server.host(), server.port()),
        "--policy-id",
        "OssPolicy",
        "--secret-store-type",
        "File",
        "--secret-store-uri",
        secret_uri,
    ]);
    let file = w.write(&format!("request-{database}.json"), &request.to_string());
    let created = w.json(&[
        "backup-instance",
        "create",
        "--vault-name",
        "V",
        "--backup-instance",
        file.to_str().unwrap(),
    ]);
    created["name"].as_str().unwrap().to_string()
}

/// The vault's instances as (database, instance name), sorted.
fn instances(w: &World) -> Vec<(String, String)> {
    let list = w.json(&["backup-instance", "list", "--vault-name", "V"]);
    let mut out: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["properties"]["dataSourceInfo"]["resourceName"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                i["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn protect_unprotected_protects_and_backs_up_each_new_database_once() {
    // A server of its own: the script protects every database it finds, and the shared
    // cluster holds every other test's databases.
    let server = TestCluster::start();
    for db in ["sales", "hr", "inventory", "closed"] {
        server.psql("postgres", &format!("CREATE DATABASE {db};"));
        server.psql(
            db,
            "CREATE TABLE t AS SELECT g, md5(g::text) AS h FROM generate_series(1, 500) g;",
        );
    }
    server.psql(
        "postgres",
        "ALTER DATABASE closed WITH ALLOW_CONNECTIONS false;",
    );
    let mut w = World::new();
    w.vault_with_policy("V");
    let secret = w.write(
        "server.secret",
        &format!(
            "User Id={};Password={};Ssl Mode=Prefer;",
            server.admin_user(),
            server.admin_password()
        ),
    );
    let secret_uri = format!("file://{}", secret.display());
    let hr = protect_on(&w, &server, "hr", &secret_uri);
    w.env.extend([
        ("PGVAULT_VAULT_NAME".to_string(), "V".to_string()),
        ("PGVAULT_POLICY_NAME".to_string(), "OssPolicy".to_string()),
        // Written another way than hr's datasource was: the script must still see that hr
        // is protected.
        (
            "PGVAULT_SERVER_URL".to_string(),
            format!("postgresql://{}:{}/postgres", server.host(), server.port()),
        ),
        ("PGVAULT_SERVER_SECRET_URI".to_string(), secret_uri),
    ]);

    let (ok, stdout, stderr) = run_script(&w, "protect-unprotected.rhai");
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("already protected: hr\n"), "{stdout}");
    assert!(stdout.contains("newly protected:   2\n"), "{stdout}");
    let after = instances(&w);
    let databases: Vec<&str> = after.iter().map(|(db, _)| db.as_str()).collect();
    // Not `postgres` (the script's skip list), not `closed`, not the templates.
    assert_eq!(databases, ["hr", "inventory", "sales"], "{stdout}");
    for (db, name) in &after {
        let expected = if *name == hr { 0 } else { 1 };
        assert_eq!(w.recovery_points("V", name).len(), expected, "{db}");
    }

    // Nothing is new the second time: no instance, no job but the script's own run.
    let operations = |w: &World| -> Vec<String> {
        w.json(&["job", "list"])
            .as_array()
            .unwrap()
            .iter()
            .map(|j| {
                j["properties"]["pgvaultOperation"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    let jobs_before = operations(&w);
    let (ok, stdout, stderr) = run_script(&w, "protect-unprotected.rhai");
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("already protected: hr, inventory, sales\n")
            && stdout.contains("newly protected:   0\n"),
        "{stdout}"
    );
    assert_eq!(instances(&w), after);
    let jobs_after = operations(&w);
    assert_eq!(jobs_after.len(), jobs_before.len() + 1);
    assert_eq!(jobs_after[0], "ScriptRun", "newest first: {jobs_after:?}");
}

#[test]
fn protect_unprotected_reports_a_login_that_cannot_reach_the_server() {
    let mut w = World::new();
    w.vault_with_policy("V");
    let secret = w.write("wrong.secret", "User Id=nobody;Password=WrongHunter2;");
    let c = cluster();
    w.env.extend([
        ("PGVAULT_VAULT_NAME".to_string(), "V".to_string()),
        (
            "PGVAULT_SERVER_URL".to_string(),
            format!("postgres://{}:{}/postgres", c.host(), c.port()),
        ),
        (
            "PGVAULT_SERVER_SECRET_URI".to_string(),
            format!("file://{}", secret.display()),
        ),
    ]);
    let (ok, stdout, stderr) = run_script(&w, "protect-unprotected.rhai");
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains("protect-unprotected.rhai:")
            && stderr.contains("UserErrorDBUserAuthFailed"),
        "{stderr}"
    );
    assert!(!stderr.contains("WrongHunter2"), "{stderr}");
    assert!(instances(&w).is_empty());
}

#[test]
fn failed_jobs_report_counts_failures_per_instance_with_the_latest_error() {
    let mut w = World::new();
    let good = sample_database("report_good", 200);
    let bad = sample_database("report_bad", 200);
    w.vault_with_policy("V");
    let ig = w.protect("V", &good, &w.admin_secret(&good));
    let bad_secret = w.admin_secret(&bad);
    let ib = w.protect("V", &bad, &bad_secret);
    break_password(&bad_secret);
    assert_eq!(w.backup("V", &ig)["properties"]["status"], "Completed");
    for _ in 0..2 {
        w.fails(&[
            "backup-instance",
            "adhoc-backup",
            "--vault-name",
            "V",
            "--name",
            &ib,
        ]);
    }
    // A protect that fails is a failed ConfigureBackup job of an instance of its own.
    let missing = format!("{bad}_missing");
    let request = w.initialize(&missing, &w.admin_secret(&good));
    let file = w.write("missing.json", &request.to_string());
    let err = w.fails(&[
        "backup-instance",
        "create",
        "--vault-name",
        "V",
        "--backup-instance",
        file.to_str().unwrap(),
    ]);
    assert!(err.contains("UserErrorDBNotFound"), "{err}");

    let (ok, stdout, stderr) = run_script(&w, "failed-jobs-report.rhai");
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("Failed jobs in the last P7D: 3, in 2 backup instance(s)"),
        "{stdout}"
    );
    // Each instance's block: its heading, then the count, the latest job, the code, the
    // message. The newest failure (the create) comes first.
    let blocks: Vec<&str> = stdout.split("\n\n").skip(1).collect();
    assert_eq!(blocks.len(), 2, "{stdout}");
    assert!(
        blocks[0].starts_with(&format!("V {}\n", friendly(&missing))),
        "{}",
        blocks[0]
    );
    assert!(
        blocks[0].contains("  1 failed (ConfigureBackup)\n")
            && blocks[0].contains("  UserErrorDBNotFound\n"),
        "{}",
        blocks[0]
    );
    assert!(
        blocks[1].starts_with(&format!("V {}\n", friendly(&bad))),
        "{}",
        blocks[1]
    );
    assert!(
        blocks[1].contains("  2 failed (OnDemandBackup)\n")
            && blocks[1].contains("  UserErrorDBUserAuthFailed\n")
            && blocks[1].contains("password authentication failed"),
        "{}",
        blocks[1]
    );
    assert!(
        !stdout.contains(&good) && !stdout.contains("WrongHunter2"),
        "{stdout}"
    );

    // The window is applied: nothing failed in the last zero seconds.
    w.env
        .push(("PGVAULT_REPORT_WINDOW".to_string(), "PT0S".to_string()));
    let (ok, stdout, stderr) = run_script(&w, "failed-jobs-report.rhai");
    assert!(ok, "{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), "No failed jobs in the last PT0S.");
}
