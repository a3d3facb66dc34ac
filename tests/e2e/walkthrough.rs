//! The walkthrough through the CLI, as the README gives it: vault, policy, protect,
//! on-demand backup, jobs, recovery points, restore to a new database, restore as files.

use serde_json::Value;

use crate::support::{World, cluster, plain_dump, sample_database};

#[test]
fn backup_and_restore_round_trip_through_the_cli() {
    let w = World::new();
    let c = cluster();
    let db = sample_database("walk", 20_000);
    w.vault_with_policy("TestBkpVault");

    // The vault prints as Azure's resource.
    let vault = w.json(&["backup-vault", "show", "--vault-name", "TestBkpVault"]);
    assert_eq!(vault["type"], "Microsoft.DataProtection/backupVaults");
    assert_eq!(
        vault["properties"]["storageSettings"][0]["datastoreType"],
        "VaultStore"
    );

    let instance = w.protect("TestBkpVault", &db, &w.admin_secret(&db));
    let shown = w.json(&[
        "backup-instance",
        "show",
        "--vault-name",
        "TestBkpVault",
        "--name",
        &instance,
    ]);
    assert_eq!(
        shown["properties"]["currentProtectionState"],
        "ProtectionConfigured"
    );
    assert_eq!(
        shown["properties"]["dataSourceInfo"]["resourceName"],
        db.as_str()
    );

    let job = w.backup("TestBkpVault", &instance);
    assert_eq!(job["properties"]["status"], "Completed");
    // Azure's answer to an adhoc backup, `{jobId, objectType}`, is there at the top level.
    assert_eq!(job["jobId"], job["name"]);
    assert_eq!(job["objectType"], "OperationJobExtendedInfo");
    // Its steps, as Azure's sub-tasks.
    let tasks: Vec<(String, String)> = job["properties"]["extendedInfo"]["subTasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["taskName"].as_str().unwrap().to_owned(),
                t["taskStatus"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let completed = |name: &str| (name.to_owned(), "Completed".to_owned());
    assert_eq!(
        tasks,
        [
            completed("Validate"),
            completed("Dump"),
            completed("Upload"),
            completed("Commit")
        ],
        "{job:#}"
    );
    let rp_id = job["properties"]["result"]["recoveryPointId"]
        .as_str()
        .unwrap()
        .to_string();

    // The job history has the backup, completed, with bytes and a duration.
    let jobs = w.json(&[
        "job",
        "list",
        "--vault-name",
        "TestBkpVault",
        "--operation",
        "OnDemandBackup",
    ]);
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len(), 1);
    let p = &jobs[0]["properties"];
    assert_eq!(p["status"], "Completed");
    assert_eq!(p["pgvaultOperation"], "OnDemandBackup");
    // Azure's names: a backup is `Backup`, on demand because the user triggered it; the
    // list filters on Azure's name as on pgvault's.
    assert_eq!(p["operation"], "Backup");
    assert_eq!(p["isUserTriggered"], true);
    let by_azure_name = w.json(&[
        "job",
        "list",
        "--vault-name",
        "TestBkpVault",
        "--operation",
        "Backup",
    ]);
    assert_eq!(by_azure_name, Value::Array(jobs.clone()));
    assert_eq!(
        p["backupInstanceFriendlyName"].as_str().unwrap(),
        format!("127.0.0.1\\{db}")
    );
    let read: u64 = p["extendedInfo"]["additionalDetails"]["BytesRead"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let stored: u64 = p["extendedInfo"]["additionalDetails"]["BytesStored"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(read > 1_000_000, "read {read}");
    assert!(stored > 0 && stored < read, "stored {stored} of {read}");
    assert!(
        p["duration"].as_str().unwrap().starts_with("PT"),
        "{}",
        p["duration"]
    );
    // The table view names the same job.
    let table = String::from_utf8(
        w.run(&["job", "list", "--vault-name", "TestBkpVault", "-o", "table"])
            .stdout,
    )
    .unwrap();
    assert!(
        table.contains("OnDemandBackup") && table.contains("Completed"),
        "{table}"
    );
    // The configuration was a job too.
    let configure = w.json(&["job", "list", "--operation", "ConfigureBackup"]);
    assert_eq!(configure[0]["properties"]["status"], "Completed");
    assert_eq!(
        configure[0]["properties"]["backupInstanceFriendlyName"]
            .as_str()
            .unwrap(),
        format!("127.0.0.1\\{db}")
    );

    let rps = w.recovery_points("TestBkpVault", &instance);
    assert_eq!(rps.len(), 1);
    assert_eq!(rps[0]["name"], rp_id.as_str());
    assert_eq!(rps[0]["properties"]["retentionTagName"], "Default");
    assert!(
        rps[0]["properties"]["expiryTime"].is_string(),
        "Default keeps 3 months: {}",
        rps[0]
    );

    // Restore to a new database with credentials from the environment.
    let target = format!("{db}_restored");
    let restore_secret = format!(
        "postgres://{}:{}@{}:{}/postgres",
        c.admin_user(),
        c.admin_password(),
        c.host(),
        c.port()
    );
    let mut w = w;
    w.env
        .push(("PGVAULT_RESTORE_SECRET".into(), restore_secret));
    let req = w.json(&[
        "backup-instance",
        "restore",
        "initialize-for-data-recovery",
        "--vault-name",
        "TestBkpVault",
        "--backup-instance-name",
        &instance,
        "--recovery-point-id",
        &rp_id,
        "--target-database-url",
        &format!("postgres://{}:{}/{target}", c.host(), c.port()),
        "--secret-store-uri",
        "env:PGVAULT_RESTORE_SECRET",
    ]);
    assert_eq!(
        req["objectType"],
        "AzureBackupRecoveryPointBasedRestoreRequest"
    );
    assert_eq!(req["restoreTargetInfo"]["objectType"], "RestoreTargetInfo");
    let req_file = w.write("restore.json", &req.to_string());
    let restored = w.json(&[
        "backup-instance",
        "restore",
        "trigger",
        "--vault-name",
        "TestBkpVault",
        "--backup-instance-name",
        &instance,
        "--restore-request-object",
        req_file.to_str().unwrap(),
    ]);
    assert_eq!(restored["properties"]["status"], "Completed");
    assert_eq!(restored["properties"]["pgvaultOperation"], "Restore");
    // Azure's answer to a restore, `{jobId, objectType}`, is there at the top level.
    assert_eq!(restored["jobId"], restored["name"]);
    assert_eq!(restored["objectType"], "OperationJobExtendedInfo");
    // The job names its recovery point, with its time, and where it went, as Azure's does.
    let extended = &restored["properties"]["extendedInfo"];
    let point = &extended["sourceRecoverPoint"];
    assert_eq!(point["recoveryPointID"], rp_id.as_str(), "{extended:#}");
    assert!(
        chrono::DateTime::parse_from_rfc3339(point["recoveryPointTime"].as_str().unwrap()).is_ok(),
        "{extended:#}"
    );
    assert_eq!(extended["targetRecoverPoint"], *point);
    assert_eq!(
        extended["recoveryDestination"],
        format!("postgres://{}:{}/{target}", c.host(), c.port())
    );
    // And `job show` gives the same.
    let shown = w.json(&[
        "job",
        "show",
        "--job-id",
        restored["jobId"].as_str().unwrap(),
    ]);
    assert_eq!(
        shown["properties"]["extendedInfo"]["sourceRecoverPoint"],
        *point
    );
    assert_eq!(
        plain_dump(&target),
        plain_dump(&db),
        "the restored database differs from its source"
    );

    // Restoring to the same name again is refused, as Azure's FailIfExists.
    let err = w.run(&[
        "backup-instance",
        "restore",
        "trigger",
        "--vault-name",
        "TestBkpVault",
        "--backup-instance-name",
        &instance,
        "--restore-request-object",
        req_file.to_str().unwrap(),
    ]);
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("UserErrorDatabaseNameAlreadyInUse"));
    assert_eq!(
        plain_dump(&target),
        plain_dump(&db),
        "a refused restore must not touch the existing database"
    );

    // Restore as files: a custom-format dump a stock pg_restore reads.
    let out_dir = w.path("files");
    let req = w.json(&[
        "backup-instance",
        "restore",
        "initialize-for-data-recovery-as-files",
        "--vault-name",
        "TestBkpVault",
        "--backup-instance-name",
        &instance,
        "--recovery-point-id",
        &rp_id,
        "--target-directory",
        out_dir.to_str().unwrap(),
        "--target-file-name",
        "empdb",
    ]);
    assert_eq!(
        req["restoreTargetInfo"]["objectType"],
        "RestoreFilesTargetInfo"
    );
    let req_file = w.write("restore-files.json", &req.to_string());
    let done = w.json(&[
        "backup-instance",
        "restore",
        "trigger",
        "--vault-name",
        "TestBkpVault",
        "--backup-instance-name",
        &instance,
        "--restore-request-object",
        req_file.to_str().unwrap(),
    ]);
    assert_eq!(done["properties"]["status"], "Completed");
    let dump = out_dir.join("empdb.dump");
    let list = c
        .command("pg_restore")
        .arg("--list")
        .arg(&dump)
        .output()
        .unwrap();
    assert!(
        list.status.success(),
        "pg_restore --list: {}",
        String::from_utf8_lossy(&list.stderr)
    );
    let listing = String::from_utf8_lossy(&list.stdout);
    assert!(listing.contains("TABLE DATA sales orders"), "{listing}");
    // pg_restore by hand into another database gives the same database back.
    let by_hand = c.create_database("byhand");
    let r = c
        .command("pg_restore")
        .args(["--no-owner", "--no-acl", "--exit-on-error", "-d", &by_hand])
        .arg(&dump)
        .output()
        .unwrap();
    assert!(
        r.status.success(),
        "pg_restore: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert_eq!(plain_dump(&by_hand), plain_dump(&db));

    let all = w.json(&[
        "job",
        "list",
        "--vault-name",
        "TestBkpVault",
        "--operation",
        "Restore",
    ]);
    let statuses: Vec<&Value> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|j| &j["properties"]["status"])
        .collect();
    assert_eq!(statuses.len(), 3, "{all}");
    assert_eq!(
        statuses.iter().filter(|s| **s == "Failed").count(),
        1,
        "the refused restore is a failed job"
    );
}

#[test]
fn every_command_has_help_with_an_example() {
    let w = World::new();
    for args in [
        &["backup-vault", "create"][..],
        &["backup-policy", "get-default-policy-template"],
        &["backup-policy", "create"],
        &["backup-instance", "initialize"],
        &["backup-instance", "create"],
        &["backup-instance", "adhoc-backup"],
        &["backup-instance", "restore", "initialize-for-data-recovery"],
        &[
            "backup-instance",
            "restore",
            "initialize-for-data-recovery-as-files",
        ],
        &["backup-instance", "restore", "trigger"],
        &["backup-instance", "restore", "drill"],
        &["job", "list"],
        &["job", "show"],
        &["recovery-point", "list"],
        &["run"],
        &["backup-policy", "trigger", "create-schedule"],
        &["backup-policy", "trigger", "set"],
        &["backup-policy", "retention-rule", "create-lifecycle"],
        &["backup-policy", "retention-rule", "set"],
        &["backup-policy", "retention-rule", "remove"],
        &["backup-policy", "tag", "create-absolute-criteria"],
        &["backup-policy", "tag", "create-generic-criteria"],
        &["backup-policy", "tag", "set"],
        &["backup-policy", "tag", "remove"],
        &["backup-policy", "validate"],
        &["backup-policy", "simulate"],
        &["backup-instance", "suspend-backup"],
        &["backup-instance", "stop-protection"],
        &["backup-instance", "resume-protection"],
        &["tick"],
        &["retention", "sweep"],
        &["backup-vault", "update"],
        &["backup-vault", "gc"],
        &["recovery-point", "delete"],
        &["recovery-point", "rehydrate"],
        &["backup-instance", "delete"],
        &["job", "prune"],
        &["recovery-point", "verify"],
        &["backup-vault", "check"],
        &["backup-vault", "reindex"],
    ] {
        let mut a = args.to_vec();
        a.push("--help");
        let out = w.run(&a);
        assert!(out.status.success(), "{a:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            (text.contains("Example:") || text.contains("Examples:")) && text.contains("pgvault "),
            "{a:?} has no example:\n{text}"
        );
    }
}

#[test]
fn default_policy_template_is_azures() {
    let w = World::new();
    for (kind, file) in [
        (
            "AzureDatabaseForPostgreSQLFlexibleServer",
            "AzureDatabaseForPostgreSQLFlexibleServer.defaultPolicy.json",
        ),
        (
            "AzureDatabaseForPostgreSQL",
            "AzureDatabaseForPostgreSQL.defaultPolicy.json",
        ),
    ] {
        let ours = w.json(&[
            "backup-policy",
            "get-default-policy-template",
            "--datasource-type",
            kind,
        ]);
        let azure: Value = serde_json::from_str(
            &std::fs::read_to_string(format!(
                "{}/../../tests/conformance/azure/{file}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap(),
        )
        .unwrap();
        assert_eq!(ours, azure, "{kind}");
    }
}

/// `pgvault ... | head`: a reader that goes away ends pgvault quietly, with success, not a
/// panic. The read end is closed before pgvault starts writing.
#[test]
fn a_closed_stdout_ends_quietly() {
    let w = World::new();
    let mut child = w
        .command(&[
            "backup-policy",
            "get-default-policy-template",
            "--datasource-type",
            "AzureDatabaseForPostgreSQLFlexibleServer",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
