//! Everything that talks to PostgreSQL: `tokio-postgres` for connection tests, privilege
//! checks and creating restore targets; `pg_dump` / `pg_restore` child processes for the
//! data itself, streamed, never buffered whole; and a scanner of the custom archive
//! format that records where each table's data lies in the stream; the facts a restore
//! should find again (schemas, extensions, tables and row counts), read in `pg_dump`'s
//! snapshot.

pub mod archive;
pub mod connection;
pub mod contents;
pub mod readiness;
pub mod tools;

/// SQL's quoting of an identifier: in double quotes, a double quote doubled. Every name
/// pgvault puts into SQL it writes (databases, roles, schemas, tables) goes through it.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Databases that are never offered for backup: Azure's internal ones (the seeds say so)
/// and the template a server cannot connect to.
pub const EXCLUDED_DATABASES: &[&str] = &["azure_maintenance", "azure_sys", "template0"];
