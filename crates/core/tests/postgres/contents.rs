//! The facts a backup records about a database ([`pgvault_core::postgres::contents`]) and the
//! snapshot they share with `pg_dump`: rows committed after the snapshot was exported are
//! neither counted nor dumped, while the database itself moves on.

use pgvault_core::postgres::contents::{
    DatabaseContents, EXACT_COUNT_MAX_ROWS, ExportedSnapshot, ExtensionInfo, database_contents,
    restored_contents,
};
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
