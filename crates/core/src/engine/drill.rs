//! Restore drills: a recovery point restored into a scratch database, compared with what the
//! backup recorded of the database, then thrown away.
//!
//! A backup you have never restored is a hope. A drill turns it into evidence: the restore ran
//! on a real server, took this long (the recovery time a user can expect), and produced the
//! schemas, extensions and tables the backup recorded, with the same row counts wherever the
//! backup counted exactly (see [`crate::postgres::contents`]). Each difference is named.
//!
//! The scratch database (`pgvault_drill_<id>`) is created by the drill, so it is the drill's
//! to drop, and it is dropped whatever happened: after a pass, after a mismatch, after a failed
//! restore, and, when the drill's future is dropped half way (a cancelled job), by a task the
//! [`ScratchDatabase`] guard spawns. A drill never touches a database it did not create: the
//! name is fresh and creation refuses one that exists.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::leftovers::{Leftover, Leftovers, Registration, error_chain};
use super::restore::{CreatedDatabase, restore_whole};
use super::vault::Vault;
use super::{Error, Result};
use crate::model::code::ErrorCode;
pub use crate::model::drill::DrillTarget;
use crate::postgres::connection::{ConnectParams, ConnectionString};
use crate::postgres::contents::{
    DatabaseContents, TableInfo, recorded_contents, restored_contents,
};
use crate::secrets::ResolveSecret as _;
use crate::store::manifest::Manifest;

/// The error code of a drill whose restore differs from what the backup recorded.
pub const MISMATCH_CODE: ErrorCode = ErrorCode::RestoreDrillMismatch;
/// The error code of a drill that passed but could not drop its scratch database.
pub const CLEANUP_FAILED_CODE: ErrorCode = ErrorCode::RestoreDrillCleanupFailed;
/// Scratch databases are named with this prefix and a fresh id.
pub const SCRATCH_PREFIX: &str = "pgvault_drill_";

/// Which recovery point a drill restores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecoveryPointChoice {
    /// The instance's newest recovery point in the vault tier.
    Latest,
    Id(String),
}

impl FromStr for RecoveryPointChoice {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(if s.trim().eq_ignore_ascii_case("latest") {
            RecoveryPointChoice::Latest
        } else {
            RecoveryPointChoice::Id(s.trim().to_owned())
        })
    }
}

/// A fresh scratch database name: [`SCRATCH_PREFIX`] and 12 hex digits.
pub fn scratch_database_name() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{SCRATCH_PREFIX}{}", &id[..12])
}

/// The recovery point `choice` names, from the vault tier (a drill restores what a restore
/// would).
pub async fn choose_recovery_point(
    vault: &Vault,
    instance: &str,
    choice: &RecoveryPointChoice,
) -> Result<Manifest> {
    vault.instance(instance).await?;
    match choice {
        RecoveryPointChoice::Id(id) => vault.recovery_point(instance, id).await,
        RecoveryPointChoice::Latest => vault
            .recovery_points(instance)
            .await?
            .into_iter()
            .find_map(|p| p.vault)
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::UserErrorRecoveryPointNotFound,
                    format!(
                        "backup instance `{instance}` has no recovery point in the vault tier to drill; take a backup first"
                    ),
                )
            }),
    }
}

/// The outcome of the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Verdict {
    Passed,
    Failed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Passed => "Passed",
            Verdict::Failed => "Failed",
        }
    }
}

/// One way the restored database differs from what the backup recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Difference {
    MissingSchema {
        schema: String,
    },
    UnexpectedSchema {
        schema: String,
    },
    MissingExtension {
        extension: String,
    },
    UnexpectedExtension {
        extension: String,
        version: String,
    },
    ExtensionVersion {
        extension: String,
        expected: String,
        found: String,
    },
    MissingTable {
        table: String,
    },
    UnexpectedTable {
        table: String,
    },
    RowCount {
        table: String,
        expected: i64,
        found: i64,
    },
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::MissingSchema { schema } => write!(f, "schema {schema} is missing"),
            Difference::UnexpectedSchema { schema } => {
                write!(f, "schema {schema} is in the restore but not in the backup")
            }
            Difference::MissingExtension { extension } => {
                write!(f, "extension {extension} is missing")
            }
            Difference::UnexpectedExtension { extension, version } => write!(
                f,
                "extension {extension} {version} is in the restore but not in the backup"
            ),
            Difference::ExtensionVersion {
                extension,
                expected,
                found,
            } => write!(
                f,
                "extension {extension} is version {found}, the backup recorded {expected}"
            ),
            Difference::MissingTable { table } => write!(f, "table {table} is missing"),
            Difference::UnexpectedTable { table } => {
                write!(f, "table {table} is in the restore but not in the backup")
            }
            Difference::RowCount {
                table,
                expected,
                found,
            } => write!(
                f,
                "table {table} has {found} rows, the backup recorded {expected}"
            ),
        }
    }
}

/// How the restored database differs from what the backup recorded: every schema, extension
/// and table in one and not the other, every extension at another version, and every table
/// whose exact count the backup recorded and the restore does not reproduce. Empty when they
/// agree.
pub fn compare(expected: &DatabaseContents, found: &DatabaseContents) -> Vec<Difference> {
    use std::collections::BTreeMap;
    let mut out = Vec::new();

    let missing_or_extra = |want: &[String], have: &[String]| {
        let missing: Vec<String> = want.iter().filter(|s| !have.contains(s)).cloned().collect();
        let extra: Vec<String> = have.iter().filter(|s| !want.contains(s)).cloned().collect();
        (missing, extra)
    };
    let (missing, extra) = missing_or_extra(&expected.schemas, &found.schemas);
    out.extend(
        missing
            .into_iter()
            .map(|schema| Difference::MissingSchema { schema }),
    );
    out.extend(
        extra
            .into_iter()
            .map(|schema| Difference::UnexpectedSchema { schema }),
    );

    let versions = |c: &DatabaseContents| -> BTreeMap<String, String> {
        c.extensions
            .iter()
            .map(|e| (e.name.clone(), e.version.clone()))
            .collect()
    };
    let (want, have) = (versions(expected), versions(found));
    for (name, version) in &want {
        match have.get(name) {
            None => out.push(Difference::MissingExtension {
                extension: name.clone(),
            }),
            Some(found) if found != version => out.push(Difference::ExtensionVersion {
                extension: name.clone(),
                expected: version.clone(),
                found: found.clone(),
            }),
            Some(_) => {}
        }
    }
    for (name, version) in &have {
        if !want.contains_key(name) {
            out.push(Difference::UnexpectedExtension {
                extension: name.clone(),
                version: version.clone(),
            });
        }
    }

    fn tables(c: &DatabaseContents) -> BTreeMap<(&str, &str), &TableInfo> {
        c.tables
            .iter()
            .map(|t| ((t.schema.as_str(), t.name.as_str()), t))
            .collect()
    }
    let (want, have) = (tables(expected), tables(found));
    for (key, table) in &want {
        match have.get(key) {
            None => out.push(Difference::MissingTable {
                table: table.display_name(),
            }),
            Some(restored) => {
                if let (Some(expected), Some(found)) = (table.exact_rows, restored.exact_rows)
                    && expected != found
                {
                    out.push(Difference::RowCount {
                        table: table.display_name(),
                        expected,
                        found,
                    });
                }
            }
        }
    }
    for (key, table) in &have {
        if !want.contains_key(key) {
            out.push(Difference::UnexpectedTable {
                table: table.display_name(),
            });
        }
    }
    out
}

/// What a drill found, for the job and the caller.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillReport {
    pub recovery_point_id: String,
    pub recovery_point_time: DateTime<Utc>,
    /// The server restored to, without a database.
    pub target_server: String,
    pub scratch_database: String,
    pub verdict: Verdict,
    pub differences: Vec<Difference>,
    /// From the start of `CREATE DATABASE` to the end of `pg_restore`: how long a restore of
    /// this recovery point to this server takes.
    #[serde(serialize_with = "millis")]
    pub time_to_restore: Duration,
    pub bytes_restored: u64,
    /// Whether the backup recorded the database's contents; a recovery point from before it
    /// did is only checked to restore.
    pub contents_recorded: bool,
    pub tables_checked: usize,
    /// Tables whose exact row count was compared.
    pub row_counts_checked: usize,
    pub scratch_database_dropped: bool,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl DrillReport {
    /// The differences as one line each, at most `limit` of them and a count of the rest.
    pub fn differences_text(&self, limit: usize) -> String {
        let mut lines: Vec<String> = self
            .differences
            .iter()
            .take(limit)
            .map(|d| d.to_string())
            .collect();
        if self.differences.len() > limit {
            lines.push(format!("and {} more", self.differences.len() - limit));
        }
        lines.join("; ")
    }
}

/// The steps of a drill, which the host records as its job's sub-tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DrillStep {
    /// The scratch database is created and `pg_restore` fills it.
    Restore,
    /// The restored database is read and compared with the manifest.
    Compare,
    /// The scratch database is dropped.
    DropScratchDatabase,
}

impl DrillStep {
    pub fn name(self) -> &'static str {
        match self {
            DrillStep::Restore => "Restore",
            DrillStep::Compare => "Compare",
            DrillStep::DropScratchDatabase => "DropScratchDatabase",
        }
    }
}

/// Told when a drill's step starts and how it ended (as [`super::backup::Steps`]).
pub trait DrillSteps: Send + Sync {
    fn started(&self, step: DrillStep);
    fn finished(&self, step: DrillStep, result: std::result::Result<String, String>);
}

/// The scratch database, dropped by [`ScratchDatabase::drop_now`] or, if the drill's future is
/// dropped first, by a task spawned on the runtime when this guard is dropped.
struct ScratchDatabase {
    created: Option<CreatedDatabase>,
    /// Its leftover record, forgotten once it is dropped.
    registration: Option<Registration>,
}

impl ScratchDatabase {
    async fn drop_now(mut self) -> std::result::Result<(), String> {
        let created = self.created.take().expect("dropped once");
        let registration = self.registration.take();
        created.drop_database().await.map_err(|e| error_chain(&e))?;
        if let Some(r) = registration {
            r.done();
        }
        Ok(())
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let Some(created) = self.created.take() else {
            return;
        };
        let registration = self.registration.take();
        // Drop cannot wait, so the drop happens on the runtime, after the restore's own
        // session is gone (FORCE ends any that is not). If there is no runtime any more the
        // database stays, and the log says which.
        let name = created.name().to_owned();
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    match created.drop_database().await {
                        Ok(()) => {
                            if let Some(r) = registration {
                                r.done();
                            }
                            tracing::info!(database = %name, "scratch database of a cancelled drill dropped")
                        }
                        Err(e) => tracing::error!(database = %name, error = %error_chain(&e), "could not drop the scratch database of a cancelled drill; pgvault tries again at its next start"),
                    }
                });
            }
            Err(_) => {
                tracing::error!(database = %name, "the scratch database of a cancelled drill was left behind; pgvault drops it at its next start")
            }
        }
    }
}

/// Runs one drill of `manifest` against `target`, in the scratch database `scratch`.
///
/// A restore that fails is the drill's error (with the restore's code); a restore that
/// succeeds returns a report whose verdict says whether it matched the manifest. The scratch
/// database is dropped in every case.
pub async fn drill(
    vault: &Vault,
    manifest: &Manifest,
    target: &DrillTarget,
    scratch: &str,
    written: Arc<AtomicU64>,
    steps: &dyn DrillSteps,
    leftovers: &Leftovers,
) -> Result<DrillReport> {
    steps.started(DrillStep::Restore);
    let began = Instant::now();
    let restored = restore_scratch(vault, manifest, target, scratch, written, leftovers).await;
    let time_to_restore = began.elapsed();
    let (guard, params, restored) = match restored {
        Ok((guard, params, restored)) => (guard, params, restored),
        Err(e) => {
            // Nothing was created, so there is nothing to drop.
            steps.finished(
                DrillStep::Restore,
                Err(format!("{}: {}", e.code, e.message)),
            );
            return Err(e);
        }
    };
    steps.finished(
        DrillStep::Restore,
        restored
            .as_ref()
            .map(|bytes| {
                format!(
                    "{bytes} bytes restored into {scratch} in {:.1} s",
                    time_to_restore.as_secs_f64()
                )
            })
            .map_err(|e| format!("{}: {}", e.code, e.message)),
    );

    let compared = match &restored {
        Ok(_) => {
            steps.started(DrillStep::Compare);
            let compared = compare_scratch(manifest, &params).await;
            steps.finished(
                DrillStep::Compare,
                compared
                    .as_ref()
                    .map(|(differences, tables, counts)| match &manifest.contents {
                        None => "the recovery point records no contents (it predates them); only the restore was checked".to_owned(),
                        Some(_) => format!(
                            "{tables} tables and {counts} exact row counts checked: {} differences",
                            differences.len()
                        ),
                    })
                    .map_err(|e| format!("{}: {}", e.code, e.message)),
            );
            Some(compared)
        }
        Err(_) => None,
    };

    steps.started(DrillStep::DropScratchDatabase);
    let dropped = guard.drop_now().await;
    steps.finished(
        DrillStep::DropScratchDatabase,
        dropped
            .as_ref()
            .map(|_| format!("{scratch} dropped"))
            .map_err(|e| format!("could not drop {scratch}: {e}; drop it by hand")),
    );
    if let Err(e) = &dropped {
        tracing::error!(database = %scratch, error = %e, "could not drop a drill's scratch database; drop it by hand");
    }

    let bytes_restored = restored?;
    let (differences, tables_checked, row_counts_checked) = compared.expect("compared")?;
    Ok(DrillReport {
        recovery_point_id: manifest.recovery_point_id.clone(),
        recovery_point_time: manifest.recovery_point_time,
        target_server: target.server.server_url(),
        scratch_database: scratch.to_owned(),
        verdict: if differences.is_empty() {
            Verdict::Passed
        } else {
            Verdict::Failed
        },
        differences,
        time_to_restore,
        bytes_restored,
        contents_recorded: manifest.contents.is_some(),
        tables_checked,
        row_counts_checked,
        scratch_database_dropped: dropped.is_ok(),
    })
}

/// Creates the scratch database and restores into it. `Err` when nothing was created; `Ok`
/// with the guard that drops it and how the restore went otherwise.
async fn restore_scratch(
    vault: &Vault,
    manifest: &Manifest,
    target: &DrillTarget,
    scratch: &str,
    written: Arc<AtomicU64>,
    leftovers: &Leftovers,
) -> Result<(ScratchDatabase, ConnectParams, Result<u64>)> {
    let conn = ConnectionString::parse(&target.secret.resolve().await?)?;
    // Connecting as the target URL says, then to the scratch database, so the warning about a
    // secret naming another database compares the secret with what the user wrote.
    let params = ConnectParams::new(&target.server, &conn).with_database(scratch);
    // Recorded before it exists, for the next pgvault to drop if this one is killed.
    let registration = leftovers.register(
        "restore drill",
        Leftover::database(&target.server, scratch, &target.secret),
    )?;
    let created = match CreatedDatabase::create(&params).await {
        Ok(created) => created,
        Err(e) => {
            registration.done();
            return Err(e);
        }
    };
    crate::fault::point("drill-scratch-created");
    let guard = ScratchDatabase {
        created: Some(created),
        registration: Some(registration),
    };
    let restored = restore_whole(vault, manifest, &params, written).await;
    Ok((guard, params, restored))
}

/// Reads the scratch database and compares it with the manifest: the differences, the tables
/// and the exact counts checked.
async fn compare_scratch(
    manifest: &Manifest,
    params: &ConnectParams,
) -> Result<(Vec<Difference>, usize, usize)> {
    let Some(expected) = &recorded_contents(manifest) else {
        return Ok((Vec::new(), 0, 0));
    };
    let client = params.connect().await?;
    let found = restored_contents(&client, expected).await.map_err(|e| {
        Error::caused_by(
            ErrorCode::UserErrorDBQueryFailed,
            format!(
                "reading the restored database `{}` failed: {e}",
                params.database()
            ),
            e,
        )
    })?;
    let counts = expected
        .tables
        .iter()
        .filter(|t| t.exact_rows.is_some())
        .count();
    Ok((compare(expected, &found), expected.tables.len(), counts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::contents::ExtensionInfo;

    fn table(schema: &str, name: &str, exact: Option<i64>) -> TableInfo {
        TableInfo {
            schema: schema.into(),
            name: name.into(),
            estimated_rows: None,
            exact_rows: exact,
        }
    }

    fn contents(
        schemas: &[&str],
        extensions: &[(&str, &str)],
        tables: Vec<TableInfo>,
    ) -> DatabaseContents {
        DatabaseContents {
            schemas: schemas.iter().map(|s| s.to_string()).collect(),
            extensions: extensions
                .iter()
                .map(|(n, v)| ExtensionInfo {
                    name: n.to_string(),
                    version: v.to_string(),
                })
                .collect(),
            tables,
        }
    }

    #[test]
    fn differences_between_backup_and_restore() {
        let backup = contents(
            &["public", "sales"],
            &[("citext", "1.6"), ("plpgsql", "1.0")],
            vec![
                table("sales", "orders", Some(1000)),
                table("sales", "big", None),
                table("public", "Notes", Some(3)),
            ],
        );
        // (what the restore holds, the differences expected)
        let cases: Vec<(DatabaseContents, Vec<Difference>)> = vec![
            // The same: nothing to report, whatever the restore's estimates say.
            (backup.clone(), vec![]),
            // A table the backup could not count exactly is only checked to exist.
            (
                contents(
                    &["public", "sales"],
                    &[("citext", "1.6"), ("plpgsql", "1.0")],
                    vec![
                        table("sales", "orders", Some(1000)),
                        table("sales", "big", Some(7)),
                        table("public", "Notes", Some(3)),
                    ],
                ),
                vec![],
            ),
            (
                contents(
                    &["public", "audit"],
                    &[("citext", "1.5"), ("pgcrypto", "1.3")],
                    vec![
                        table("sales", "orders", Some(999)),
                        table("public", "extra", None),
                    ],
                ),
                vec![
                    Difference::MissingSchema {
                        schema: "sales".into(),
                    },
                    Difference::UnexpectedSchema {
                        schema: "audit".into(),
                    },
                    Difference::ExtensionVersion {
                        extension: "citext".into(),
                        expected: "1.6".into(),
                        found: "1.5".into(),
                    },
                    Difference::MissingExtension {
                        extension: "plpgsql".into(),
                    },
                    Difference::UnexpectedExtension {
                        extension: "pgcrypto".into(),
                        version: "1.3".into(),
                    },
                    Difference::MissingTable {
                        table: "public.\"Notes\"".into(),
                    },
                    Difference::MissingTable {
                        table: "sales.big".into(),
                    },
                    Difference::RowCount {
                        table: "sales.orders".into(),
                        expected: 1000,
                        found: 999,
                    },
                    Difference::UnexpectedTable {
                        table: "public.extra".into(),
                    },
                ],
            ),
        ];
        for (restored, expected) in cases {
            assert_eq!(compare(&backup, &restored), expected, "{restored:?}");
        }
    }

    #[test]
    fn differences_read_as_sentences() {
        let d = Difference::RowCount {
            table: "sales.orders".into(),
            expected: 1000,
            found: 999,
        };
        assert_eq!(
            d.to_string(),
            "table sales.orders has 999 rows, the backup recorded 1000"
        );
        assert_eq!(
            serde_json::to_value(&d).unwrap(),
            serde_json::json!({"kind": "rowCount", "table": "sales.orders", "expected": 1000, "found": 999})
        );
    }

    #[test]
    fn recovery_point_choice_and_scratch_names() {
        assert_eq!(
            "latest".parse::<RecoveryPointChoice>().unwrap(),
            RecoveryPointChoice::Latest
        );
        assert_eq!(
            "LATEST".parse::<RecoveryPointChoice>().unwrap(),
            RecoveryPointChoice::Latest
        );
        assert_eq!(
            "abc123".parse::<RecoveryPointChoice>().unwrap(),
            RecoveryPointChoice::Id("abc123".into())
        );
        let (a, b) = (scratch_database_name(), scratch_database_name());
        assert!(a.starts_with(SCRATCH_PREFIX) && a.len() == SCRATCH_PREFIX.len() + 12);
        assert_ne!(a, b);
    }
}
