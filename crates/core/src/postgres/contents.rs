//! What a database holds, as a restore should find it again: its schemas, its extensions
//! (name and version) and its tables, each with the planner's row estimate and, where
//! counting is cheap, the exact number of rows.
//!
//! A backup records these facts in the recovery point's manifest, and a restore drill
//! compares a restored copy with them. The facts are only worth comparing if they describe
//! the very snapshot `pg_dump` dumped, so a backup reads them through an [`ExportedSnapshot`]:
//! one session opens a `REPEATABLE READ` transaction and exports its snapshot
//! (`pg_export_snapshot()`), `pg_dump --snapshot=<id>` imports it, and the session reads the
//! facts in the same transaction while the dump runs. Rows committed after the export are
//! invisible to both. The transaction stays open until `pg_dump` has finished: an exported
//! snapshot can be imported only while its transaction lives, and `pg_dump` with `--snapshot`
//! takes no snapshot of its own.
//!
//! Which tables are listed is what `pg_dump` dumps the data of: ordinary tables (partitions
//! included, partitioned parents not, as they hold no rows of their own), permanent or
//! unlogged, outside the system schemas, not belonging to an extension.

use serde::{Deserialize, Serialize};

use crate::store::manifest::Manifest;
use tokio_postgres::Client;

/// Tables whose row estimate is under this many rows are counted exactly (`count(*)`).
pub const EXACT_COUNT_MAX_ROWS: i64 = 1_000_000;

/// A table the planner has no estimate for yet (never vacuumed or analyzed) is counted
/// exactly when its heap is under this size: about a million narrow rows, and a scan that
/// takes a moment.
pub const EXACT_COUNT_MAX_BYTES: i64 = 128 << 20;

/// What a manifest recorded of the database's contents, typed; `None` when it recorded none
/// (it predates them) or one that does not read (logged, as for the table of contents).
pub fn recorded_contents(manifest: &Manifest) -> Option<DatabaseContents> {
    let recorded = manifest.contents.as_ref()?;
    recorded
        .read()
        .inspect_err(|e| {
            tracing::warn!(recovery_point = %manifest.recovery_point_id, error = %e, "the recovery point's recorded contents do not read; going on without them");
        })
        .ok()
}

/// The facts a restore should reproduce, recorded at backup time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseContents {
    /// Every schema but the system ones, sorted.
    pub schemas: Vec<String>,
    /// Every installed extension, sorted by name.
    pub extensions: Vec<ExtensionInfo>,
    /// Every table `pg_dump` dumps the rows of, sorted by schema and name.
    pub tables: Vec<TableInfo>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionInfo {
    pub name: String,
    pub version: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableInfo {
    pub schema: String,
    pub name: String,
    /// `pg_class.reltuples`, rounded; `None` when the planner has no estimate yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_rows: Option<i64>,
    /// `count(*)` in the dumped snapshot, for tables small enough to count (see
    /// [`EXACT_COUNT_MAX_ROWS`]); `None` for larger ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact_rows: Option<i64>,
}

impl TableInfo {
    /// `schema.name`, quoted where SQL would need it, for messages.
    pub fn display_name(&self) -> String {
        format!(
            "{}.{}",
            display_ident(&self.schema),
            display_ident(&self.name)
        )
    }
}

/// An identifier as `psql` would show it: bare when that is unambiguous, quoted otherwise.
fn display_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_owned()
    } else {
        quote_ident(name)
    }
}

pub use super::quote_ident;

/// A table as the catalog lists it, before any counting.
#[derive(Clone, Debug)]
struct ListedTable {
    schema: String,
    name: String,
    estimate: Option<i64>,
    heap_bytes: i64,
}

impl ListedTable {
    /// Whether a `count(*)` of this table is cheap enough to run during a backup.
    fn cheap_to_count(&self) -> bool {
        match self.estimate {
            Some(rows) => rows < EXACT_COUNT_MAX_ROWS,
            None => self.heap_bytes < EXACT_COUNT_MAX_BYTES,
        }
    }
}

async fn list_schemas(client: &Client) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT nspname::text FROM pg_namespace \
             WHERE nspname <> 'information_schema' AND nspname NOT LIKE 'pg\\_%' \
             ORDER BY 1",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

async fn list_extensions(client: &Client) -> Result<Vec<ExtensionInfo>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT extname::text, extversion FROM pg_extension ORDER BY 1",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ExtensionInfo {
            name: r.get(0),
            version: r.get(1),
        })
        .collect())
}

async fn list_tables(client: &Client) -> Result<Vec<ListedTable>, tokio_postgres::Error> {
    // reltuples is -1 for a table never vacuumed or analyzed (PostgreSQL 14 and later; 0
    // before, which then reads as "small", and the size bound still applies).
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, c.reltuples::float8, pg_relation_size(c.oid) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND c.relpersistence IN ('p', 'u') \
               AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%' \
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
                               AND d.objid = c.oid AND d.deptype = 'e') \
             ORDER BY 1, 2",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let estimate: f64 = r.get(2);
            ListedTable {
                schema: r.get(0),
                name: r.get(1),
                estimate: (estimate >= 0.0).then(|| estimate.round() as i64),
                heap_bytes: r.get(3),
            }
        })
        .collect())
}

/// `count(*)` of one table.
pub async fn count_rows(
    client: &Client,
    schema: &str,
    name: &str,
) -> Result<i64, tokio_postgres::Error> {
    let sql = format!(
        "SELECT count(*) FROM {}.{}",
        quote_ident(schema),
        quote_ident(name)
    );
    Ok(client.query_one(&sql, &[]).await?.get(0))
}

/// The database's schemas, extensions and tables, with exact counts for the tables
/// `count_exactly` picks (given the table's schema and name and whether counting it is
/// cheap). Reads what the client's current transaction sees.
async fn read_contents(
    client: &Client,
    count_exactly: impl Fn(&str, &str, bool) -> bool,
) -> Result<DatabaseContents, tokio_postgres::Error> {
    let schemas = list_schemas(client).await?;
    let extensions = list_extensions(client).await?;
    let mut tables = Vec::new();
    for t in list_tables(client).await? {
        let exact_rows = if count_exactly(&t.schema, &t.name, t.cheap_to_count()) {
            Some(count_rows(client, &t.schema, &t.name).await?)
        } else {
            None
        };
        tables.push(TableInfo {
            schema: t.schema,
            name: t.name,
            estimated_rows: t.estimate,
            exact_rows,
        });
    }
    Ok(DatabaseContents {
        schemas,
        extensions,
        tables,
    })
}

/// What a backup records: every table that is cheap to count is counted.
pub async fn database_contents(client: &Client) -> Result<DatabaseContents, tokio_postgres::Error> {
    read_contents(client, |_, _, cheap| cheap).await
}

/// What a restored database holds, counting exactly the tables `expected` has exact counts
/// for (and no others: a restored table's size says nothing the backup can check).
pub async fn restored_contents(
    client: &Client,
    expected: &DatabaseContents,
) -> Result<DatabaseContents, tokio_postgres::Error> {
    let counted: std::collections::HashSet<(&str, &str)> = expected
        .tables
        .iter()
        .filter(|t| t.exact_rows.is_some())
        .map(|t| (t.schema.as_str(), t.name.as_str()))
        .collect();
    read_contents(client, |schema, name, _| counted.contains(&(schema, name))).await
}

/// A session whose `REPEATABLE READ` transaction has exported its snapshot for `pg_dump
/// --snapshot`. Keep it until `pg_dump` has exited: the snapshot can be imported only while
/// this transaction is open. Dropping it ends the session (and with it the transaction).
pub struct ExportedSnapshot {
    client: Client,
    id: String,
}

impl std::fmt::Debug for ExportedSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportedSnapshot")
            .field("id", &self.id)
            .finish()
    }
}

impl ExportedSnapshot {
    /// Opens the transaction on `client` (a fresh session) and exports its snapshot.
    pub async fn export(client: Client) -> Result<Self, tokio_postgres::Error> {
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await?;
        // The first statement of a REPEATABLE READ transaction fixes its snapshot, so the
        // snapshot exported here is the one every later query in the transaction reads.
        let id: String = client
            .query_one("SELECT pg_export_snapshot()", &[])
            .await?
            .get(0);
        Ok(ExportedSnapshot { client, id })
    }

    /// The snapshot's id, for `pg_dump --snapshot`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The database's contents in the exported snapshot (see [`database_contents`]).
    ///
    /// Read inside a savepoint: should a query fail, the transaction is rolled back to it and
    /// stays usable, so the snapshot `pg_dump` imports (or has imported) is not lost with it.
    pub async fn contents(&self) -> Result<DatabaseContents, tokio_postgres::Error> {
        self.client.batch_execute("SAVEPOINT contents").await?;
        match database_contents(&self.client).await {
            Ok(contents) => {
                self.client
                    .batch_execute("RELEASE SAVEPOINT contents")
                    .await?;
                Ok(contents)
            }
            Err(e) => {
                if let Err(rollback) = self
                    .client
                    .batch_execute("ROLLBACK TO SAVEPOINT contents")
                    .await
                {
                    tracing::warn!(error = %rollback, "could not roll back to the savepoint after reading the database's contents failed");
                }
                Err(e)
            }
        }
    }

    /// Ends the transaction, once `pg_dump` is done with the snapshot.
    pub async fn finish(self) -> Result<(), tokio_postgres::Error> {
        self.client.batch_execute("COMMIT").await
    }
}
