//! A damaged pack never makes a restore panic: the restore fails as a job with a code and a
//! message that name the damage and say what to do, and it leaves no staging database.
//!
//! The test runs against a PostgreSQL server of its own, so "no `pgvault_restore_*` database
//! is left" is exact: no other test's restore can be in progress there.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use pgvault_core::store::chunk::ChunkId;
use pgvault_core::store::manifest::Manifest;
use pgvault_core::store::pack::read_pack_trailer;

use crate::support::{World, files_under};
use pgvault_testkit::TestCluster;

fn pack_files(vault_dir: &Path) -> Vec<PathBuf> {
    let mut packs = files_under(&vault_dir.join("packs"));
    packs.sort();
    packs
}

/// The chunk-list blocks every recovery point of the vault names.
fn chunk_lists(vault_dir: &Path) -> BTreeSet<ChunkId> {
    files_under(&vault_dir.join("recovery-points"))
        .iter()
        .flat_map(|p| {
            Manifest::from_bytes(&std::fs::read(p).unwrap())
                .unwrap()
                .stream
                .chunk_lists
        })
        .collect()
}

fn staging_databases(cluster: &TestCluster) -> Vec<String> {
    let out = cluster.psql(
        "postgres",
        "SELECT datname FROM pg_database WHERE datname LIKE 'pgvault\\_restore\\_%' ORDER BY 1",
    );
    out.lines().map(str::to_owned).collect()
}

/// The restore jobs in the history, oldest first.
fn restore_jobs(w: &World) -> Vec<Value> {
    let jobs = w.json(&["job", "list", "--vault-name", "V"]);
    let mut out: Vec<Value> = jobs
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["properties"]["operation"] == "Restore")
        .cloned()
        .collect();
    out.sort_by_key(|j| j["properties"]["startTime"].as_str().unwrap().to_owned());
    out
}

#[test]
fn a_truncated_pack_fails_the_restore_with_guidance_and_leaves_no_staging_database() {
    let cluster = TestCluster::start();
    let mut w = World::new();
    let db = cluster.create_database("truncated");
    cluster.psql(
        &db,
        "CREATE TABLE t (id int PRIMARY KEY, body text);
         INSERT INTO t SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 4000) g;",
    );
    let vault_dir = w.vault_with_policy("V");
    // Small packs, so the data spans several and one of them holds no chunk-list block.
    crate::support::use_small_packs(&vault_dir);

    let secret = w.write(
        "source.secret",
        &format!(
            "Server={};Database={db};Port={};User Id={};Password={};Ssl Mode=Prefer;",
            cluster.host(),
            cluster.port(),
            cluster.admin_user(),
            cluster.admin_password()
        ),
    );
    let req = w.json(&[
        "backup-instance",
        "initialize",
        "--datasource-type",
        "AzureDatabaseForPostgreSQLFlexibleServer",
        "--datasource-id",
        &format!("postgres://{}:{}/{db}", cluster.host(), cluster.port()),
        "--policy-id",
        "OssPolicy",
        "--secret-store-type",
        "File",
        "--secret-store-uri",
        &format!("file://{}", secret.display()),
    ]);
    let file = w.write("instance.json", &req.to_string());
    let created = w.json(&[
        "backup-instance",
        "create",
        "--vault-name",
        "V",
        "--backup-instance",
        file.to_str().unwrap(),
    ]);
    let instance = created["name"].as_str().unwrap().to_owned();
    w.backup("V", &instance);
    let rp = w.recovery_points("V", &instance)[0]["name"]
        .as_str()
        .unwrap()
        .to_owned();

    // Truncate, in the middle of a blob, a pack of data chunks only: the restore's ranged
    // read of that pack then returns fewer bytes than it asked for.
    let lists = chunk_lists(&vault_dir);
    let (pack, cut) = pack_files(&vault_dir)
        .into_iter()
        .find_map(|p| {
            let entries = read_pack_trailer(&std::fs::read(&p).unwrap(), None).unwrap();
            if entries.len() < 3 || entries.iter().any(|e| lists.contains(&e.id)) {
                return None;
            }
            let e = entries[entries.len() / 2];
            Some((p, u64::from(e.offset) + u64::from(e.length) / 2))
        })
        .expect("a pack of data chunks only");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&pack)
        .unwrap()
        .set_len(cut)
        .unwrap();
    let pack_name = pack.file_name().unwrap().to_string_lossy().into_owned();

    w.env.push((
        "PGVAULT_RESTORE_SECRET".into(),
        format!(
            "postgres://{}:{}@{}:{}/postgres",
            cluster.admin_user(),
            cluster.admin_password(),
            cluster.host(),
            cluster.port()
        ),
    ));
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
        &format!(
            "postgres://{}:{}/truncated_target",
            cluster.host(),
            cluster.port()
        ),
        "--secret-store-uri",
        "env:PGVAULT_RESTORE_SECRET",
    ]);
    let req_file = w.write("restore.json", &req.to_string());

    // The first try and a retry end the same way.
    for attempt in 1..=2 {
        let out = w.run(&[
            "backup-instance",
            "restore",
            "trigger",
            "--vault-name",
            "V",
            "--backup-instance-name",
            &instance,
            "--restore-request-object",
            req_file.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "attempt {attempt}: the restore succeeded"
        );
        assert!(
            !stderr.contains("panicked"),
            "attempt {attempt}: pgvault panicked:\n{stderr}"
        );
        assert_ne!(out.status.code(), Some(101), "attempt {attempt}: {stderr}");

        let jobs = restore_jobs(&w);
        assert_eq!(jobs.len(), attempt, "{jobs:#?}");
        let job = &jobs[attempt - 1]["properties"];
        assert_eq!(job["status"], "Failed", "attempt {attempt}: {job:#}");
        let error = &job["errorDetails"][0];
        assert_eq!(error["code"], "RecoveryPointDamaged", "{job:#}");
        let message = error["message"].as_str().unwrap();
        for needle in [
            pack_name.as_str(),
            rp.as_str(),
            "pgvault recovery-point verify",
            "pgvault backup-vault repair",
        ] {
            assert!(
                message.contains(needle),
                "attempt {attempt}: the message does not name `{needle}`: {message}"
            );
        }
        assert!(stderr.contains("RecoveryPointDamaged"), "{stderr}");

        assert_eq!(
            staging_databases(&cluster),
            Vec::<String>::new(),
            "attempt {attempt} left a staging database"
        );
        assert!(
            cluster
                .psql(
                    "postgres",
                    "SELECT count(*) FROM pg_database WHERE datname = 'truncated_target'"
                )
                .trim()
                == "0",
            "attempt {attempt} left the target database"
        );
    }
}
