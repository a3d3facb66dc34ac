//! Recovery you can trust: what a backup records of the database, restore drills that compare
//! a restore with it, and drills a policy asks for. Real server, real `pg_dump` and
//! `pg_restore`; the scratch databases are looked for on the server afterwards.

use serde_json::{Value, json};

use pgvault_core::postgres::contents::recorded_contents;
use pgvault_core::store::manifest::Manifest;
use pgvault_core::store::observe::Recorded;

use crate::support::{World, cluster, files_under, sample_database};

/// Rows `sample_database` puts in `sales.orders` here (and a quarter of it in `public.notes`).
const ROWS: u32 = 2000;

/// The target server as a drill takes it: the database is only where its sessions start.
fn server_url() -> String {
    let c = cluster();
    format!("postgres://{}:{}/postgres", c.host(), c.port())
}

fn database_exists(name: &str) -> bool {
    cluster().psql(
        "postgres",
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"),
    ) == "1"
}

/// A protected, backed-up sample database with an extension and an awkward table name.
fn backed_up(w: &World, vault: &str, prefix: &str) -> (String, String) {
    let db = sample_database(prefix, ROWS);
    cluster().psql(
        &db,
        "CREATE EXTENSION citext;
         CREATE TABLE sales.\"Line Items\" (id int, sku citext);
         INSERT INTO sales.\"Line Items\" VALUES (1, 'A-1'), (2, 'b-2');",
    );
    w.vault_with_policy(vault);
    let instance = w.protect(vault, &db, &w.admin_secret(&db));
    let job = w.backup(vault, &instance);
    assert_eq!(job["properties"]["status"], "Completed", "{job:#}");
    (db, instance)
}

fn drill_args<'a>(
    vault: &'a str,
    instance: &'a str,
    url: &'a str,
    secret: &'a str,
) -> Vec<&'a str> {
    vec![
        "backup-instance",
        "restore",
        "drill",
        "--vault-name",
        vault,
        "--backup-instance-name",
        instance,
        "--target-server-url",
        url,
        "--secret-store-uri",
        secret,
    ]
}

fn details(job: &Value) -> &Value {
    &job["properties"]["extendedInfo"]["additionalDetails"]
}

fn table<'a>(contents: &'a Value, schema: &str, name: &str) -> &'a Value {
    contents["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["schema"] == schema && t["name"] == name)
        .unwrap_or_else(|| panic!("{schema}.{name} not in {contents:#}"))
}

#[test]
fn a_backup_records_the_contents_and_a_drill_of_it_passes() {
    let w = World::new();
    let (_db, instance) = backed_up(&w, "V", "drill_pass");

    // recovery-point show: Azure's fields as before, pgvault's facts beside them.
    let points = w.recovery_points("V", &instance);
    let id = points[0]["name"].as_str().unwrap().to_owned();
    assert!(
        points[0]["properties"].get("pgvaultContents").is_none(),
        "a list stays short"
    );
    let shown = w.json(&[
        "recovery-point",
        "show",
        "--vault-name",
        "V",
        "--backup-instance-name",
        &instance,
        "--recovery-point-id",
        &id,
    ]);
    let meta: Value = serde_json::from_str(
        shown["properties"]["recoveryPointDataStoresDetails"][0]["metaData"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(meta["objectType"], "PostgresBackupMetadata");
    let contents = &shown["properties"]["pgvaultContents"];
    assert_eq!(
        contents["schemas"],
        json!(["public", "sales"]),
        "{contents:#}"
    );
    let extensions: Vec<&str> = contents["extensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(extensions, ["citext", "plpgsql"]);
    assert_eq!(table(contents, "sales", "orders")["exactRows"], ROWS);
    assert_eq!(table(contents, "public", "notes")["exactRows"], ROWS / 4);
    assert_eq!(table(contents, "public", "empty_table")["exactRows"], 0);
    assert_eq!(table(contents, "sales", "Line Items")["exactRows"], 2);

    let secret = w.admin_secret("postgres");
    let url = server_url();
    let job = w.json(&drill_args("V", &instance, &url, &secret));
    let p = &job["properties"];
    assert_eq!(p["pgvaultOperation"], "RestoreDrill", "{job:#}");
    assert_eq!(p["operationCategory"], "Restore");
    assert_eq!(p["status"], "Completed", "{job:#}");
    let d = details(&job);
    assert_eq!(d["DrillVerdict"], "Passed", "{job:#}");
    assert_eq!(d["RecoveryPointId"], id.as_str());
    assert_eq!(d["TablesChecked"], "4");
    assert_eq!(d["RowCountsChecked"], "4");
    assert_eq!(d["ScratchDatabaseDropped"], "true");
    assert!(d.get("DrillDifferences").is_none(), "{job:#}");
    let time_to_restore = d["TimeToRestore"].as_str().unwrap();
    assert!(
        time_to_restore.starts_with("00:00:") && time_to_restore != "00:00:00",
        "{time_to_restore}"
    );
    let report = &p["result"];
    assert_eq!(report["verdict"], "Passed");
    assert_eq!(report["differences"], json!([]));
    assert!(report["timeToRestore"].as_u64().unwrap() > 0);
    assert!(report["bytesRestored"].as_u64().unwrap() > 0);
    let tasks: Vec<(&str, &str)> = p["extendedInfo"]["subTasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["taskName"].as_str().unwrap(),
                t["taskStatus"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        tasks,
        [
            ("Restore", "Completed"),
            ("Compare", "Completed"),
            ("DropScratchDatabase", "Completed")
        ]
    );
    // The scratch database is gone.
    let scratch = d["DrillDatabase"].as_str().unwrap();
    assert!(scratch.starts_with("pgvault_drill_"), "{scratch}");
    assert!(!database_exists(scratch), "{scratch} is still there");

    // The evidence, in the job history.
    let listed = w.json(&[
        "job",
        "list",
        "--vault-name",
        "V",
        "--operation",
        "RestoreDrill",
    ]);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(details(&listed[0])["DrillVerdict"], "Passed");
}

#[test]
fn a_drill_that_finds_differences_fails_and_drops_its_database_too() {
    let w = World::new();
    let (_db, instance) = backed_up(&w, "V", "drill_mismatch");
    let id = w.recovery_points("V", &instance)[0]["name"]
        .as_str()
        .unwrap()
        .to_owned();

    // A recovery point whose manifest was written by a build that recorded one more order and
    // a table the dump does not have: rewritten through the manifest's own API, so its
    // checksum holds and only the expectations differ.
    let path = files_under(&w.path("vault-V"))
        .into_iter()
        .find(|p| p.ends_with(format!("recovery-points/{instance}/{id}.json")))
        .unwrap();
    let mut manifest = Manifest::from_bytes(&std::fs::read(&path).unwrap()).unwrap();
    let mut contents = recorded_contents(&manifest).unwrap();
    let orders = contents
        .tables
        .iter_mut()
        .find(|t| t.schema == "sales" && t.name == "orders")
        .unwrap();
    orders.exact_rows = Some(i64::from(ROWS) + 1);
    let mut ghost = orders.clone();
    ghost.name = "ghost".into();
    ghost.exact_rows = Some(3);
    contents.tables.push(ghost);
    manifest.contents = Some(Recorded::of(&contents).unwrap());
    std::fs::write(&path, manifest.to_bytes()).unwrap();

    let secret = w.admin_secret("postgres");
    let url = server_url();
    let out = w.run(&drill_args("V", &instance, &url, &secret));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("RestoreDrillMismatch"), "{stderr}");
    let job: Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = &job["properties"];
    assert_eq!(p["status"], "Failed", "{job:#}");
    assert_eq!(p["errorDetails"][0]["code"], "RestoreDrillMismatch");
    let d = details(&job);
    assert_eq!(d["DrillVerdict"], "Failed");
    assert_eq!(
        d["DrillDifferences"],
        format!(
            "table sales.ghost is missing; table sales.orders has {ROWS} rows, the backup recorded {}",
            ROWS + 1
        )
    );
    assert_eq!(
        p["result"]["differences"],
        json!([
            {"kind": "missingTable", "table": "sales.ghost"},
            {"kind": "rowCount", "table": "sales.orders", "expected": ROWS + 1, "found": ROWS},
        ])
    );
    // The restore itself took as long as it took: the recovery time is recorded either way.
    assert!(d["TimeToRestore"].as_str().is_some());
    let scratch = d["DrillDatabase"].as_str().unwrap();
    assert!(!database_exists(scratch), "{scratch} is still there");

    let failed = w.json(&[
        "job",
        "list",
        "--vault-name",
        "V",
        "--operation",
        "RestoreDrill",
        "--status",
        "Failed",
    ]);
    assert_eq!(failed.as_array().unwrap().len(), 1);
}

#[test]
fn a_policy_asks_for_drills_and_tick_runs_them() {
    let w = World::new();
    let db = sample_database("drill_policy", 200);
    let mut policy = w.json(&[
        "backup-policy",
        "get-default-policy-template",
        "--datasource-type",
        "AzureDatabaseForPostgreSQLFlexibleServer",
    ]);
    policy["pgvaultRestoreDrill"] = json!({
        "afterBackups": 1,
        "targetServerUrl": server_url(),
        "secretStoreType": "File",
        "secretStoreUri": w.admin_secret("postgres"),
    });
    let file = w.write("drill-policy.json", &policy.to_string());
    let file = file.to_str().unwrap();

    // Valid for pgvault; --azure-compatible says Azure has no such thing.
    let out = w.run(&[
        "backup-policy",
        "validate",
        "--policy",
        file,
        "--azure-compatible",
    ]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: pgvaultRestoreDrill: restore drills are pgvault's extension"),
        "{stderr}"
    );

    w.vault_with_policy_file("V", std::path::Path::new(file));
    let instance = w.protect("V", &db, &w.admin_secret(&db));
    let drills = |jobs: &Value| -> Vec<Value> {
        jobs.as_array()
            .unwrap()
            .iter()
            .filter(|j| j["properties"]["pgvaultOperation"] == "RestoreDrill")
            .cloned()
            .collect()
    };
    // Nothing to drill before the first backup.
    assert!(drills(&w.json(&["tick"])).is_empty());

    w.backup("V", &instance);
    let ran = drills(&w.json(&["tick"]));
    assert_eq!(ran.len(), 1, "{ran:#?}");
    let p = &ran[0]["properties"];
    assert_eq!(p["status"], "Completed", "{:#}", ran[0]);
    assert_eq!(p["isUserTriggered"], false);
    assert_eq!(details(&ran[0])["DrillVerdict"], "Passed");
    assert_eq!(
        details(&ran[0])["DrillReason"],
        "the instance has not been drilled yet"
    );
    assert!(!database_exists(
        details(&ran[0])["DrillDatabase"].as_str().unwrap()
    ));

    // Drilled: nothing more until the next backup.
    assert!(drills(&w.json(&["tick"])).is_empty());
    w.backup("V", &instance);
    let ran = drills(&w.json(&["tick"]));
    assert_eq!(ran.len(), 1, "{ran:#?}");
    assert_eq!(
        details(&ran[0])["DrillReason"],
        "1 backup since the last drill"
    );
}
