//! Readiness validation: can this user back up this database?
//!
//! Run on `backup-instance create` and before every backup, as Azure does. It checks the
//! privileges the seeds list (CONNECT on the database, USAGE on every schema, SELECT on
//! every table and sequence) and, when some are missing, names the objects and gives the
//! seeds' grant script written for the actual user, so the fix is one copy and paste.

use tokio_postgres::Client;

/// Objects listed in an error before "and N more".
const LIST_LIMIT: usize = 20;

/// What the server and database look like, recorded in the recovery point.
#[derive(Clone, Debug, PartialEq)]
pub struct DatabaseFacts {
    pub server_version: String,
    pub server_version_num: i32,
    pub database_size: i64,
    pub user: String,
}

impl DatabaseFacts {
    pub fn major(&self) -> u32 {
        (self.server_version_num / 10000) as u32
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadinessError {
    #[error(
        "user \"{user}\" lacks the privileges a backup needs on database \"{database}\": {missing}.\nGrant them by running this as the database owner or an administrator, connected to \"{database}\":\n\n{grant_sql}"
    )]
    MissingPermissions {
        user: String,
        database: String,
        missing: String,
        grant_sql: String,
    },
    #[error("checking privileges failed: {0}")]
    Query(#[from] tokio_postgres::Error),
}

impl ReadinessError {
    pub fn code(&self) -> &'static str {
        match self {
            ReadinessError::MissingPermissions { .. } => "UserErrorMissingDBPermissions",
            ReadinessError::Query(_) => "UserErrorDBQueryFailed",
        }
    }
}

pub async fn database_facts(client: &Client) -> Result<DatabaseFacts, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int, \
             pg_database_size(current_database()), current_user::text",
            &[],
        )
        .await?;
    Ok(DatabaseFacts {
        server_version: row.get(0),
        server_version_num: row.get(1),
        database_size: row.get(2),
        user: row.get(3),
    })
}

/// Checks the backup privileges of the connected user on the connected database.
pub async fn check_backup_privileges(client: &Client) -> Result<(), ReadinessError> {
    let who = client
        .query_one("SELECT current_user::text, current_database()::text", &[])
        .await?;
    let (user, database): (String, String) = (who.get(0), who.get(1));
    let mut missing: Vec<String> = Vec::new();

    let connect: bool = client
        .query_one(
            "SELECT has_database_privilege(current_database(), 'CONNECT')",
            &[],
        )
        .await?
        .get(0);
    if !connect {
        missing.push(format!("CONNECT on database {database}"));
    }
    // Schemas and relations pg_dump reads: everything but the system schemas and objects
    // that belong to extensions (pg_dump recreates those with CREATE EXTENSION).
    let rows = client
        .query(
            "SELECT 'USAGE on schema ' || quote_ident(n.nspname) FROM pg_namespace n \
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%' \
               AND NOT has_schema_privilege(n.oid, 'USAGE') \
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass AND d.objid = n.oid AND d.deptype = 'e') \
             ORDER BY 1",
            &[],
        )
        .await?;
    missing.extend(rows.iter().map(|r| r.get::<_, String>(0)));
    let rows = client
        .query(
            "SELECT 'SELECT on ' || CASE c.relkind WHEN 'S' THEN 'sequence ' ELSE 'table ' END \
                    || quote_ident(n.nspname) || '.' || quote_ident(c.relname) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%' \
               AND NOT has_table_privilege(c.oid, 'SELECT') \
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e') \
             ORDER BY 1",
            &[],
        )
        .await?;
    missing.extend(rows.iter().map(|r| r.get::<_, String>(0)));

    if missing.is_empty() {
        return Ok(());
    }
    let quoted_user: String = client
        .query_one("SELECT quote_ident($1)", &[&user])
        .await?
        .get(0);
    let mut listed = missing
        .iter()
        .take(LIST_LIMIT)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if missing.len() > LIST_LIMIT {
        listed.push_str(&format!(", and {} more", missing.len() - LIST_LIMIT));
    }
    Err(ReadinessError::MissingPermissions {
        user,
        database,
        missing: listed,
        grant_sql: grant_script(&quoted_user),
    })
}

/// The seeds' grant script (about-postgresql-backup.md) for `quoted_user`, an identifier
/// already quoted with `quote_ident`.
pub fn grant_script(quoted_user: &str) -> String {
    // format('%I') of an already quoted identifier would quote it twice, so the user is
    // spliced in as SQL text instead; quote_ident made that safe.
    format!(
        "DO $do$\n\
DECLARE\n\
sch text;\n\
BEGIN\n\
EXECUTE format('grant connect on database %I to {u_lit}', current_database());\n\
FOR sch IN select nspname from pg_catalog.pg_namespace\n\
LOOP\n\
EXECUTE format($$ GRANT USAGE ON SCHEMA %I TO {u} $$, sch);\n\
EXECUTE format($$ GRANT SELECT ON ALL TABLES IN SCHEMA %I TO {u} $$, sch);\n\
EXECUTE format($$ ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT ON TABLES TO {u} $$, sch);\n\
EXECUTE format($$ GRANT SELECT ON ALL SEQUENCES IN SCHEMA %I TO {u} $$, sch);\n\
EXECUTE format($$ ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT ON SEQUENCES TO {u} $$, sch);\n\
END LOOP;\n\
END;\n\
$do$;",
        u = quoted_user,
        u_lit = quoted_user.replace('\'', "''")
    )
}
