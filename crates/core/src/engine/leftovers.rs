//! What interrupted restores and drills leave outside the vault, and its removal.
//!
//! A restore creates a staging database (`pgvault_restore_<id>`) or a partial file
//! (`.<name>.<pid>.partial`), a drill a scratch database (`pgvault_drill_<id>`); a parallel
//! restore (`--jobs`) also stages the archive, and a selective one its `--use-list` file, in the
//! temporary folder (`pgvault-restore-<id>.dump`, `.list`; see [`temp_file`]). When the
//! operation fails or is cancelled it removes them itself; when its process is killed
//! (`kill -9`, the OOM killer, a power cut) nothing runs, and a database of the full size stays
//! on the server. So each of them is *recorded before it is created*, in
//! `PGVAULT_HOME/pending/<id>.json` ([`Record`]: pid, host, what it is, and for a database the
//! server and the secret *reference* needed to connect, never a secret), and the record is
//! removed once the thing is gone or has become the result. The next pgvault that opens the
//! home (every command, and `serve` on each turn) calls [`Leftovers::clean`]: every record
//! whose process is gone (or is this process, no longer using it) is cleaned up and removed,
//! and what was removed is reported; a record that cannot be cleaned stays, with the reason,
//! for the next start.
//!
//! A record only ever removes what pgvault names: a database whose name has one of the two
//! prefixes, a file whose name ends in `.partial`, a temporary file named exactly as
//! [`temp_file`] names them, directly in this process's temporary folder. An edited record
//! cannot make it drop a user's database or delete a user's file.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::drill::SCRATCH_PREFIX;
use super::{Error, Result};
use crate::model::code::ErrorCode;
use crate::postgres::connection::{ConnectParams, ConnectionString, Datasource};
use crate::process::{local_host_name, process_alive};
use crate::secrets::ResolveSecret as _;
use crate::secrets::SecretRef;

/// The prefix of a restore's staging database.
pub const STAGING_PREFIX: &str = "pgvault_restore_";
/// The prefix of a restore's files in the temporary folder.
pub const TEMP_PREFIX: &str = "pgvault-restore-";
/// The extensions a restore's temporary files have: the staged archive, the `--use-list`
/// file, the owners-and-privileges SQL.
const TEMP_EXTENSIONS: [&str; 3] = ["dump", "list", "sql"];

/// A new restore temporary file in the temporary folder (`TMPDIR`):
/// `pgvault-restore-<32 hex digits>.<extension>`, absolute. `extension` is one of
/// `dump`, `list`, `sql`.
pub fn temp_file(extension: &str) -> PathBuf {
    debug_assert!(TEMP_EXTENSIONS.contains(&extension));
    let dir = std::env::temp_dir();
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    dir.join(format!(
        "{TEMP_PREFIX}{}.{extension}",
        uuid::Uuid::new_v4().simple()
    ))
}

/// Whether `path` is one [`temp_file`] could have named in this process's temporary folder.
fn is_temp_file(path: &Path) -> bool {
    let dir = std::env::temp_dir();
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let named = name
        .strip_prefix(TEMP_PREFIX)
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(id, ext)| {
            id.len() == 32
                && id.bytes().all(|b| b.is_ascii_hexdigit())
                && TEMP_EXTENSIONS.contains(&ext)
        });
    named && path.is_absolute() && path.parent() == Some(dir.as_path())
}
/// How long the cleanup of one leftover may take (an unreachable server must not hold up
/// every command).
const CLEAN_TIMEOUT: Duration = Duration::from_secs(30);

/// A thing an operation creates outside the vault.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Leftover {
    /// A database on a server: a restore's staging database or a drill's scratch database.
    #[serde(rename_all = "camelCase")]
    Database {
        /// `postgres://host:port/db` of the target (its database is not the one to drop).
        server: String,
        database: String,
        /// The reference to the credentials that created it.
        secret: SecretRef,
    },
    /// A partial file of a restore as files.
    #[serde(rename_all = "camelCase")]
    File { path: PathBuf },
    /// A restore's file in the temporary folder (see [`temp_file`]).
    #[serde(rename_all = "camelCase")]
    TempFile { path: PathBuf },
}

impl Leftover {
    /// A database named `database` on `server`, reached with `secret`.
    pub fn database(server: &Datasource, database: &str, secret: &SecretRef) -> Leftover {
        Leftover::Database {
            server: server.to_string(),
            database: database.to_owned(),
            secret: secret.clone(),
        }
    }

    /// What it is, for messages.
    pub fn describe(&self) -> String {
        match self {
            Leftover::Database {
                server, database, ..
            } => {
                let server = server
                    .parse::<Datasource>()
                    .map(|ds| ds.server_url())
                    .unwrap_or_else(|_| server.clone());
                format!("database `{database}` on {server}")
            }
            Leftover::File { path } => format!("file `{}`", path.display()),
            Leftover::TempFile { path } => format!("temporary file `{}`", path.display()),
        }
    }

    /// Why pgvault would not remove it, if the record names something it never creates.
    fn refusal(&self) -> Option<String> {
        match self {
            Leftover::Database { database, .. }
                if !(database.starts_with(STAGING_PREFIX)
                    || database.starts_with(SCRATCH_PREFIX)) =>
            {
                Some(format!(
                    "pgvault creates only databases named {STAGING_PREFIX}* or {SCRATCH_PREFIX}*; remove the record if it is wrong"
                ))
            }
            Leftover::File { path }
                if !path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(".partial"))
                    || !path.is_absolute() =>
            {
                Some(
                    "pgvault creates only absolute `.partial` files; remove the record if it is wrong"
                        .to_owned(),
                )
            }
            Leftover::TempFile { path } if !is_temp_file(path) => Some(format!(
                "pgvault creates only files named {TEMP_PREFIX}<id>.dump, .list or .sql directly in the temporary folder `{}` (TMPDIR; start pgvault with the TMPDIR of the interrupted restore); remove the record if it is wrong",
                std::env::temp_dir().display()
            )),
            _ => None,
        }
    }

    /// Removes it; one already gone is removed.
    async fn remove(&self) -> std::result::Result<(), String> {
        if let Some(refusal) = self.refusal() {
            return Err(refusal);
        }
        match self {
            Leftover::Database {
                server,
                database,
                secret,
            } => {
                let ds: Datasource = server
                    .parse()
                    .map_err(|e| format!("the recorded server `{server}`: {e}"))?;
                let value = secret
                    .resolve()
                    .await
                    .map_err(|e| format!("its secret {secret}: {e}"))?;
                let conn = ConnectionString::parse(&value)
                    .map_err(|e| format!("its secret {secret}: {e}"))?;
                let params = ConnectParams::new(&ds, &conn).with_database("postgres");
                drop_database(&params, database).await
            }
            Leftover::File { path } | Leftover::TempFile { path } => {
                match std::fs::remove_file(path) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(format!("cannot remove it: {e}")),
                }
            }
        }
    }
}

/// Drops `database` through `admin` params (a maintenance database), ending its sessions;
/// the error says the server's reason.
pub async fn drop_database(
    admin: &ConnectParams,
    database: &str,
) -> std::result::Result<(), String> {
    let client = admin
        .connect()
        .await
        .map_err(|e| format!("cannot connect: {}", error_chain(&e)))?;
    let quoted = crate::postgres::quote_ident(database);
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
        .await
        .map_err(|e| format!("DROP DATABASE failed: {}", error_chain(&e)))
}

/// An error with its `source` chain: `tokio_postgres` says only "db error" and keeps the
/// server's message (and its hint) in its source.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut next = e.source();
    while let Some(source) = next {
        let text = source.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        next = source.source();
    }
    parts.join(": ")
}

/// One record of `pending/`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub id: String,
    pub pid: u32,
    pub host: String,
    /// What created it: `restore`, `restore drill`.
    pub operation: String,
    pub created: DateTime<Utc>,
    #[serde(flatten)]
    pub leftover: Leftover,
}

/// Ids of the records this process still uses; a record of this process that is not here
/// was left by an operation that could not clean up (a drop that failed), and `serve`'s next
/// turn retries it.
static IN_USE: Mutex<Option<HashSet<String>>> = Mutex::new(None);

fn in_use(f: impl FnOnce(&mut HashSet<String>) -> bool) -> bool {
    let mut guard = IN_USE.lock().unwrap_or_else(|p| p.into_inner());
    f(guard.get_or_insert_with(HashSet::new))
}

/// Where leftovers are recorded: a home's `pending/` folder, or nowhere (a library caller
/// without a home; the default).
#[derive(Clone, Debug, Default)]
pub struct Leftovers {
    dir: Option<PathBuf>,
}

/// A recorded leftover. [`Registration::done`] removes the record once the thing is gone or
/// has become the result; dropped without it, the record stays for [`Leftovers::clean`].
#[derive(Debug)]
pub struct Registration {
    id: String,
    path: Option<PathBuf>,
}

impl Registration {
    /// The thing is gone (or is now the result): forget it.
    pub fn done(mut self) {
        if let Some(path) = self.path.take()
            && let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(record = %path.display(), error = %e, "could not remove a leftover record");
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        in_use(|set| set.remove(&self.id));
    }
}

/// What [`Leftovers::clean`] did with one record.
#[derive(Clone, Debug)]
pub struct Cleaned {
    pub record: Record,
    /// `Ok`: removed; `Err`: kept, and why.
    pub outcome: std::result::Result<(), String>,
}

impl Leftovers {
    /// The `pending/` folder of the home at `home_dir`.
    pub fn in_home(home_dir: &Path) -> Leftovers {
        Leftovers {
            dir: Some(home_dir.join("pending")),
        }
    }

    /// Records nothing: for callers without a home (the library's own tests).
    pub fn untracked() -> Leftovers {
        Leftovers { dir: None }
    }

    /// Records `leftover`, about to be created by `operation` of this process. Fails (and the
    /// caller must not create it) when the record cannot be written.
    pub fn register(&self, operation: &str, leftover: Leftover) -> Result<Registration> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        in_use(|set| set.insert(id.clone()));
        let Some(dir) = &self.dir else {
            return Ok(Registration { id, path: None });
        };
        let record = Record {
            id: id.clone(),
            pid: std::process::id(),
            host: local_host_name(),
            operation: operation.to_owned(),
            created: Utc::now(),
            leftover,
        };
        let path = dir.join(format!("{id}.json"));
        let failed = |e: std::io::Error| {
            Error::new(
                ErrorCode::PendingRecordFailed,
                format!(
                    "cannot record the {} this {operation} is about to create in `{}`: {e}; nothing was created",
                    record.leftover.describe(),
                    dir.display()
                ),
            )
        };
        std::fs::create_dir_all(dir).map_err(failed)?;
        // Written whole under a temporary name, then renamed: a record is never torn.
        let tmp = dir.join(format!(".{id}.json.tmp"));
        let bytes = serde_json::to_vec_pretty(&record).expect("a record serializes");
        std::fs::write(&tmp, bytes).map_err(failed)?;
        std::fs::rename(&tmp, &path).map_err(failed)?;
        Ok(Registration {
            id,
            path: Some(path),
        })
    }

    /// Removes every recorded leftover whose process is gone (or is this process, no longer
    /// using it), and its record; a leftover that cannot be removed keeps its record. Records
    /// of another host are left alone (whether their process lives cannot be told from here).
    pub async fn clean(&self) -> Vec<Cleaned> {
        let Some(dir) = &self.dir else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        let (host, me) = (local_host_name(), std::process::id());
        let mut out = Vec::new();
        for path in paths {
            let record: Record = match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(record) => record,
                Err(e) => {
                    tracing::warn!(record = %path.display(), error = %e, "an unreadable leftover record was kept; remove it by hand");
                    continue;
                }
            };
            let orphaned = record.host == host
                && if record.pid == me {
                    !in_use(|set| set.contains(&record.id))
                } else {
                    !process_alive(record.pid)
                };
            if !orphaned {
                continue;
            }
            let outcome = match tokio::time::timeout(CLEAN_TIMEOUT, record.leftover.remove()).await
            {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {} s", CLEAN_TIMEOUT.as_secs())),
            };
            if outcome.is_ok()
                && let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(record = %path.display(), error = %e, "could not remove a leftover record");
            }
            out.push(Cleaned { record, outcome });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn files_of_dead_processes_are_removed_and_foreign_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let leftovers = Leftovers::in_home(&dir.path().join("home"));
        let partial = dir.path().join(".x.dump.1.partial");
        let in_use = leftovers
            .register(
                "restore",
                Leftover::File {
                    path: partial.clone(),
                },
            )
            .unwrap();
        std::fs::write(&partial, b"half").unwrap();
        // This process still uses it: nothing is cleaned.
        assert!(leftovers.clean().await.is_empty());
        assert!(partial.exists());
        // Its operation ended without cleaning up (the registration dropped, not done): the
        // next pass removes it, as it does for a dead process's.
        drop(in_use);
        let dead_file = dir.path().join(".y.sql.2.partial");
        std::fs::write(&dead_file, b"half").unwrap();
        let user_file = dir.path().join("precious.sql");
        std::fs::write(&user_file, b"mine").unwrap();
        for (id, leftover) in [
            (
                "dead",
                Leftover::File {
                    path: dead_file.clone(),
                },
            ),
            (
                "foreign",
                Leftover::File {
                    path: user_file.clone(),
                },
            ),
        ] {
            let record = Record {
                id: id.into(),
                pid: u32::MAX - 1,
                host: local_host_name(),
                operation: "restore".into(),
                created: Utc::now(),
                leftover,
            };
            std::fs::write(
                dir.path().join("home/pending").join(format!("{id}.json")),
                serde_json::to_vec(&record).unwrap(),
            )
            .unwrap();
        }
        let cleaned = leftovers.clean().await;
        assert_eq!(cleaned.len(), 3, "{cleaned:?}");
        assert!(!partial.exists() && !dead_file.exists());
        assert!(
            user_file.exists(),
            "a file pgvault never creates is never removed"
        );
        let kept: Vec<_> = cleaned.iter().filter(|c| c.outcome.is_err()).collect();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].record.id, "foreign");
        // The kept record stays for an operator; the others are gone.
        let left: Vec<_> = std::fs::read_dir(dir.path().join("home/pending"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, ["foreign.json"]);
    }

    #[test]
    fn only_temporary_files_pgvault_names_are_removable() {
        let named = temp_file("dump");
        assert!(is_temp_file(&named), "{}", named.display());
        assert!(is_temp_file(&temp_file("list")) && is_temp_file(&temp_file("sql")));
        let tmp = std::path::absolute(std::env::temp_dir()).unwrap();
        let id = "0123456789abcdef0123456789abcdef";
        for path in [
            // Not pgvault's naming.
            tmp.join("pgvault-restore-mine.dump"),
            tmp.join(format!("pgvault-restore-{id}.txt")),
            tmp.join(format!("pgvault-restore-{id}.dump.bak")),
            tmp.join(format!("other-{id}.dump")),
            // Not directly in the temporary folder.
            tmp.join("sub").join(format!("pgvault-restore-{id}.dump")),
            PathBuf::from("/home/u").join(format!("pgvault-restore-{id}.dump")),
            tmp.join("..").join(format!("pgvault-restore-{id}.dump")),
            // Relative.
            PathBuf::from(format!("pgvault-restore-{id}.dump")),
        ] {
            let leftover = Leftover::TempFile { path: path.clone() };
            assert!(leftover.refusal().is_some(), "{}", path.display());
        }
        let leftover = Leftover::TempFile {
            path: tmp.join(format!("pgvault-restore-{id}.list")),
        };
        assert!(leftover.refusal().is_none());
        assert!(leftover.describe().starts_with("temporary file"));
    }

    #[test]
    fn a_record_holds_the_secret_reference_never_a_secret() {
        let dir = tempfile::tempdir().unwrap();
        let leftovers = Leftovers::in_home(dir.path());
        let ds: Datasource = "postgres://db.example:5432/target".parse().unwrap();
        let secret: SecretRef = "env:RESTORE_SECRET".parse().unwrap();
        let registration = leftovers
            .register(
                "restore",
                Leftover::database(&ds, "pgvault_restore_0123456789ab", &secret),
            )
            .unwrap();
        let text = std::fs::read_to_string(registration.path.clone().unwrap()).unwrap();
        let record: Record = serde_json::from_str(&text).unwrap();
        assert_eq!(record.pid, std::process::id());
        assert!(
            text.contains("\"secret\": \"env:RESTORE_SECRET\""),
            "{text}"
        );
        registration.done();
        assert_eq!(
            std::fs::read_dir(dir.path().join("pending"))
                .unwrap()
                .count(),
            0
        );
    }
}
