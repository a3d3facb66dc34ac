//! The facts a backup records about a database ([`pgvault_core::postgres::contents`]) and the
//! snapshot they share with `pg_dump`: rows committed after the snapshot was exported are
//! neither counted nor dumped, while the database itself moves on.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use chrono::Utc;

use pgvault_core::engine::Vault;
use pgvault_core::engine::backup::{BackupRequest, Step, Steps, Trigger, backup, backup_context};
use pgvault_core::engine::protect::{InitializeArgs, create_instance, initialize_instance};
use pgvault_core::engine::restore::{initialize_for_data_recovery, restore};
use pgvault_core::model::policy::DatasourceType;
use pgvault_core::model::templates::default_policy_template;
use pgvault_core::postgres::contents::{
    DatabaseContents, EXACT_COUNT_MAX_ROWS, ExportedSnapshot, ExtensionInfo, database_contents,
    recorded_contents, restored_contents,
};
use pgvault_core::store::VaultStore;
use pgvault_core::store::manifest::Manifest;
use pgvault_core::store::writer::Progress;
use pgvault_testkit::TestCluster;

use crate::{params, run_ok, server_address};

/// The kit's superuser as a secret's connection string.
fn admin_secret(cluster: &TestCluster) -> String {
    format!(
        "User Id={};Password=\"{}\"",
        cluster.admin_user(),
        cluster.admin_password().replace('"', "\"\"")
    )
}

async fn connect(cluster: &TestCluster, database: &str) -> tokio_postgres::Client {
    params(
        &format!("postgres://{}/{database}", server_address(cluster)),
        &admin_secret(cluster),
    )
    .connect()
    .await
    .unwrap()
}

fn exact(contents: &DatabaseContents, schema: &str, name: &str) -> Option<i64> {
    contents
        .tables
        .iter()
        .find(|t| t.schema == schema && t.name == name)
        .unwrap_or_else(|| panic!("{schema}.{name} is not listed: {:?}", contents.tables))
        .exact_rows
}

fn listed(contents: &DatabaseContents) -> Vec<String> {
    contents.tables.iter().map(|t| t.display_name()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facts_and_dump_share_one_snapshot() {
    let cluster = TestCluster::shared();
    let db = cluster.create_database("contents_snapshot");
    cluster.psql(
        &db,
        "CREATE SCHEMA sales;
         CREATE SCHEMA \"Odd Schema\";
         CREATE EXTENSION citext;
         CREATE TABLE sales.orders (id int PRIMARY KEY, customer citext);
         INSERT INTO sales.orders SELECT g, 'c' || g FROM generate_series(1, 100) g;
         CREATE TABLE \"Odd Schema\".\"Mixed \"\"Case\"\"\" (x int);
         INSERT INTO \"Odd Schema\".\"Mixed \"\"Case\"\"\" VALUES (1), (2), (3);
         CREATE UNLOGGED TABLE public.scratch (x int);
         INSERT INTO public.scratch VALUES (7);
         CREATE TABLE public.events (at date, n int) PARTITION BY RANGE (at);
         CREATE TABLE public.events_2024 PARTITION OF public.events
             FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
         INSERT INTO public.events SELECT date '2024-01-01' + g, g FROM generate_series(0, 9) g;
         CREATE VIEW sales.v AS SELECT * FROM sales.orders;",
    );

    let snapshot = ExportedSnapshot::export(connect(cluster, &db).await)
        .await
        .unwrap();
    // After the export, from another session: rows added, rows deleted, a table created.
    // None of it is in the snapshot.
    cluster.psql(
        &db,
        "INSERT INTO sales.orders SELECT g, 'late' FROM generate_series(101, 150) g;
         DELETE FROM \"Odd Schema\".\"Mixed \"\"Case\"\"\" WHERE x = 1;
         CREATE TABLE public.late (x int);",
    );
    let facts = snapshot.contents().await.unwrap();

    // pg_dump imports the same snapshot while the exporting transaction is open.
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("db.dump");
    run_ok(
        cluster.command("pg_dump").args([
            "--format=custom",
            &format!("--snapshot={}", snapshot.id()),
            "--file",
            dump.to_str().unwrap(),
            &db,
        ]),
        "pg_dump --snapshot",
    );
    snapshot.finish().await.unwrap();

    assert_eq!(facts.schemas, ["Odd Schema", "public", "sales"]);
    let citext: Vec<&ExtensionInfo> = facts
        .extensions
        .iter()
        .filter(|e| e.name == "citext")
        .collect();
    assert_eq!(citext.len(), 1, "{:?}", facts.extensions);
    assert!(!citext[0].version.is_empty());
    // Ordinary tables, partitions and unlogged ones; not the partitioned parent (it holds no
    // rows of its own), not the view, not what was created after the snapshot.
    assert_eq!(
        listed(&facts),
        [
            "\"Odd Schema\".\"Mixed \"\"Case\"\"\"",
            "public.events_2024",
            "public.scratch",
            "sales.orders"
        ]
    );
    assert_eq!(exact(&facts, "sales", "orders"), Some(100));
    assert_eq!(exact(&facts, "Odd Schema", "Mixed \"Case\""), Some(3));
    assert_eq!(exact(&facts, "public", "events_2024"), Some(10));
    assert_eq!(exact(&facts, "public", "scratch"), Some(1));

    // The dump holds what the facts say, restored and read back the way a drill reads it.
    let restored = cluster.create_database("contents_restored");
    run_ok(
        cluster
            .command("pg_restore")
            .args(["--no-owner", "--exit-on-error", "-d", &restored])
            .arg(&dump),
        "pg_restore",
    );
    let found = restored_contents(&connect(cluster, &restored).await, &facts)
        .await
        .unwrap();
    assert_eq!(listed(&found), listed(&facts));
    for t in &facts.tables {
        assert_eq!(
            exact(&found, &t.schema, &t.name),
            t.exact_rows,
            "{}",
            t.display_name()
        );
    }
    assert_eq!(found.schemas, facts.schemas);
    assert_eq!(found.extensions, facts.extensions);

    // The database itself moved on, and a fresh read says so.
    let now = database_contents(&connect(cluster, &db).await)
        .await
        .unwrap();
    assert_eq!(exact(&now, "sales", "orders"), Some(150));
    assert_eq!(exact(&now, "Odd Schema", "Mixed \"Case\""), Some(2));
    assert!(listed(&now).contains(&"public.late".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_tables_are_estimated_not_counted() {
    let cluster = TestCluster::shared();
    let db = cluster.create_database("contents_large");
    // A table the planner believes is large (the estimate is set as ANALYZE would on a big
    // table) is not scanned; a small analyzed one is counted and carries its estimate.
    cluster.psql(
        &db,
        &format!(
            "CREATE TABLE big (x int);
             INSERT INTO big SELECT generate_series(1, 20);
             CREATE TABLE small (x int);
             INSERT INTO small SELECT generate_series(1, 5);
             ANALYZE small;
             UPDATE pg_class SET reltuples = {} WHERE oid = 'big'::regclass;",
            EXACT_COUNT_MAX_ROWS * 3
        ),
    );
    let facts = database_contents(&connect(cluster, &db).await)
        .await
        .unwrap();
    let big = facts.tables.iter().find(|t| t.name == "big").unwrap();
    assert_eq!(big.estimated_rows, Some(EXACT_COUNT_MAX_ROWS * 3));
    assert_eq!(big.exact_rows, None);
    let small = facts.tables.iter().find(|t| t.name == "small").unwrap();
    assert_eq!(small.estimated_rows, Some(5));
    assert_eq!(small.exact_rows, Some(5));
}

/// A vault with the default policy and `database` protected in it, logging in as the kit's
/// superuser through a file secret.
pub(crate) struct Protected {
    _dir: tempfile::TempDir,
    pub vault: Vault,
    pub instance: String,
    pub secret_uri: String,
    /// `host:port`.
    pub server: String,
}

impl Protected {
    pub async fn new(cluster: &TestCluster, database: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("admin.secret");
        std::fs::write(&secret, admin_secret(cluster)).unwrap();
        let secret_uri = format!("file://{}", secret.display());
        let store = VaultStore::create(&format!("file://{}", dir.path().join("vault").display()))
            .await
            .unwrap();
        let vault = Vault::create(store, "V", &Default::default(), Utc::now(), None)
            .await
            .unwrap();
        vault
            .create_policy(
                "OssPolicy",
                &default_policy_template(DatasourceType::AzureDatabaseForPostgreSQLFlexibleServer),
            )
            .await
            .unwrap();
        let server = server_address(cluster);
        let request = initialize_instance(&InitializeArgs {
            datasource_type: "AzureDatabaseForPostgreSQLFlexibleServer".into(),
            datasource_id: format!("postgres://{server}/{database}"),
            policy_id: "OssPolicy".into(),
            secret_store_type: "File".into(),
            secret_store_uri: secret_uri.clone(),
            location: None,
        })
        .unwrap();
        let instance = request.name.clone();
        create_instance(&vault, request).await.unwrap();
        Protected {
            _dir: dir,
            vault,
            instance,
            secret_uri,
            server,
        }
    }

    /// An on-demand backup, its steps told to `steps`.
    pub async fn back_up(&self, steps: &dyn Steps) -> Manifest {
        let req = BackupRequest {
            instance: self.instance.clone(),
            rule_name: "Default".into(),
            tag_override: None,
            trigger: Trigger::OnDemand,
            job_id: "test".into(),
            now: Utc::now(),
        };
        let ctx = backup_context(&self.vault, &req).await.unwrap();
        backup(
            &self.vault,
            &req,
            &ctx,
            Arc::new(Progress::default()),
            steps,
        )
        .await
        .unwrap()
    }
}

/// Inserts rows the moment the backup's upload starts: after its snapshot was exported and
/// before `pg_dump` has even started, so the rows are committed while the backup runs.
struct InsertWhenUploadStarts<'a> {
    cluster: &'a TestCluster,
    database: String,
}

impl Steps for InsertWhenUploadStarts<'_> {
    fn started(&self, step: Step) {
        if step == Step::Upload {
            self.cluster.psql(
                &self.database,
                "INSERT INTO orders SELECT g FROM generate_series(101, 150) g;
                 CREATE TABLE late (x int);",
            );
        }
    }

    fn finished(&self, _: Step, _: Result<String, String>) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_records_what_it_dumped_not_what_came_after() {
    let cluster = TestCluster::shared();
    let db = cluster.create_database("contents_backup");
    cluster.psql(
        &db,
        "CREATE TABLE orders (id int);
         INSERT INTO orders SELECT generate_series(1, 100);",
    );
    let p = Protected::new(cluster, &db).await;
    let steps = InsertWhenUploadStarts {
        cluster,
        database: db.clone(),
    };
    let manifest = p.back_up(&steps).await;

    // The manifest describes the snapshot: 100 orders, no `late` table ...
    let recorded = &recorded_contents(&manifest).unwrap();
    assert_eq!(listed(recorded), ["public.orders"]);
    assert_eq!(exact(recorded, "public", "orders"), Some(100));
    // ... the database had moved on while the backup ran ...
    let live = database_contents(&connect(cluster, &db).await)
        .await
        .unwrap();
    assert_eq!(exact(&live, "public", "orders"), Some(150));
    // ... and the dump is the snapshot, as a restore of it shows.
    let restored = format!("{db}_restored");
    let request = initialize_for_data_recovery(
        &manifest.recovery_point_id,
        &format!("postgres://{}/{restored}", p.server),
        Some("File"),
        &p.secret_uri,
        None,
    )
    .unwrap();
    restore(
        &p.vault,
        &p.instance,
        &request,
        Arc::new(AtomicU64::new(0)),
        &pgvault_core::engine::leftovers::Leftovers::untracked(),
    )
    .await
    .unwrap();
    let found = restored_contents(&connect(cluster, &restored).await, recorded)
        .await
        .unwrap();
    assert_eq!(listed(&found), ["public.orders"]);
    assert_eq!(exact(&found, "public", "orders"), Some(100));
}
