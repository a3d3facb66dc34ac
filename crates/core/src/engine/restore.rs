//! Restore: a recovery point streamed back into `pg_restore` against a new database on
//! any server, or written out as the custom-format dump file.
//!
//! As Azure's `FailIfExists`, the target database must not exist: pgvault creates it, and
//! if the restore then fails it drops what it created, so a failed restore leaves the
//! target server as it found it. The restored objects are owned by the restoring user
//! (`--no-owner --no-acl`), as Azure's restores are; the dump itself keeps owners and
//! privileges, so a later restore option can apply them.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::vault::Vault;
use super::{Error, Result};
use crate::model::instance::{AuthCredentials, DatasourceInfo, SecretStoreResource};
use crate::model::restore::{FAIL_IF_EXISTS, RestoreRequest, RestoreTarget, TargetDetails};
use crate::postgres::connection::{ConnectParams, ConnectionString, Datasource};
use crate::postgres::tools::{ToolProcess, find_tool};
use crate::secrets::{SecretRef, SecretStoreType};
use crate::store::manifest::Manifest;
use crate::store::reader::{load_index, read_stream};

/// Builds the request `restore initialize-for-data-recovery` prints: restore as a database
/// at `target_database_url` with credentials from `secret_store_uri`.
pub fn initialize_for_data_recovery(
    recovery_point_id: &str,
    target_database_url: &str,
    secret_store_type: Option<&str>,
    secret_store_uri: &str,
    source_resource_id: Option<String>,
) -> Result<RestoreRequest> {
    let ds: Datasource = target_database_url.parse()?;
    let store_type: SecretStoreType = match secret_store_type {
        Some(t) => t.parse()?,
        None => secret_store_uri.parse::<SecretRef>()?.store_type(),
    };
    SecretRef::from_store(store_type, secret_store_uri)?;
    let info = |object_type: &str, id: String, name: String| DatasourceInfo {
        datasource_type: "Microsoft.DBforPostgreSQL/flexibleServers/databases".into(),
        object_type: object_type.into(),
        resource_id: id,
        resource_location: "local".into(),
        resource_name: name,
        resource_type: "Microsoft.DBforPostgreSQL/flexibleServers/databases".into(),
        resource_uri: String::new(),
    };
    Ok(RestoreRequest {
        object_type: "AzureBackupRecoveryPointBasedRestoreRequest".into(),
        recovery_point_id: recovery_point_id.into(),
        source_data_store_type: "VaultStore".into(),
        source_resource_id,
        restore_target_info: RestoreTarget::Database {
            recovery_option: FAIL_IF_EXISTS.into(),
            restore_location: "local".into(),
            datasource_info: info("Datasource", ds.to_string(), ds.database().to_string()),
            datasource_set_info: Some(info(
                "DatasourceSet",
                ds.server_url(),
                ds.server_name().to_string(),
            )),
            datasource_auth_credentials: AuthCredentials {
                object_type: "SecretStoreBasedAuthCredentials".into(),
                secret_store_resource: SecretStoreResource {
                    secret_store_type: store_type.to_string(),
                    uri: secret_store_uri.into(),
                },
            },
        },
    })
}

/// Builds the request `restore initialize-for-data-recovery-as-files` prints: the dump
/// file written to `target_directory` as `<file_prefix>.dump`.
pub fn initialize_for_data_recovery_as_files(
    recovery_point_id: &str,
    target_directory: &str,
    file_prefix: &str,
    source_resource_id: Option<String>,
) -> Result<RestoreRequest> {
    let dir = std::path::Path::new(target_directory);
    let dir = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::new("UserErrorInvalidTarget", e.to_string()))?
            .join(dir)
    };
    Ok(RestoreRequest {
        object_type: "AzureBackupRecoveryPointBasedRestoreRequest".into(),
        recovery_point_id: recovery_point_id.into(),
        source_data_store_type: "VaultStore".into(),
        source_resource_id,
        restore_target_info: RestoreTarget::Files {
            recovery_option: FAIL_IF_EXISTS.into(),
            restore_location: "local".into(),
            target_details: TargetDetails {
                file_prefix: file_prefix.into(),
                restore_target_location_type: "FileSystem".into(),
                url: format!("file://{}", dir.display()),
            },
        },
    })
}

/// What a restore did, for the job and the caller.
#[derive(Clone, Debug)]
pub struct RestoreOutcome {
    pub bytes_written: u64,
    /// `database` or `file`, and where.
    pub target: Value,
}

/// Runs a restore request against a recovery point of `instance`.
pub async fn restore(
    vault: &Vault,
    instance: &str,
    req: &RestoreRequest,
    written: Arc<AtomicU64>,
) -> Result<RestoreOutcome> {
    if !req
        .source_data_store_type
        .eq_ignore_ascii_case("VaultStore")
    {
        return Err(Error::new(
            "UserErrorDataStoreNotSupported",
            format!(
                "restoring from `{}` is not supported yet: restore from VaultStore",
                req.source_data_store_type
            ),
        ));
    }
    vault.instance(instance).await?;
    let manifest = vault
        .recovery_point(instance, &req.recovery_point_id)
        .await?;
    match &req.restore_target_info {
        RestoreTarget::Database {
            recovery_option,
            datasource_info,
            datasource_auth_credentials,
            ..
        } => {
            check_recovery_option(recovery_option)?;
            let ds: Datasource = datasource_info.resource_id.parse()?;
            let store = &datasource_auth_credentials.secret_store_resource;
            let secret = SecretRef::from_store(store.secret_store_type.parse()?, &store.uri)?;
            restore_to_database(vault, &manifest, &ds, &secret, written).await
        }
        RestoreTarget::Files {
            recovery_option,
            target_details,
            ..
        } => {
            check_recovery_option(recovery_option)?;
            restore_to_file(vault, &manifest, target_details, written).await
        }
    }
}

fn check_recovery_option(option: &str) -> Result<()> {
    if option.eq_ignore_ascii_case(FAIL_IF_EXISTS) {
        Ok(())
    } else {
        Err(Error::new(
            "UserErrorInvalidRecoveryOption",
            format!("recovery option `{option}` is not supported: use FailIfExists"),
        ))
    }
}

async fn restore_to_database(
    vault: &Vault,
    manifest: &Manifest,
    ds: &Datasource,
    secret: &SecretRef,
    written: Arc<AtomicU64>,
) -> Result<RestoreOutcome> {
    let conn = ConnectionString::parse(&secret.resolve()?)?;
    let params = ConnectParams::new(ds, &conn);
    let created = CreatedDatabase::create(&params).await?;
    let result = run_pg_restore(vault, manifest, &params, written).await;
    if let Err(e) = &result {
        // We created it, so we remove it: a failed restore leaves nothing half done.
        if let Err(drop_err) = created.drop_database().await {
            tracing::warn!(database = %ds.database(), error = %drop_err, restore_error = %e, "could not drop the partially restored database");
        }
    }
    let bytes_written = result?;
    Ok(RestoreOutcome {
        bytes_written,
        target: json!({ "database": ds.to_string() }),
    })
}

/// A database a restore created, with the session (to the server's maintenance database)
/// that created it and can drop it again.
pub(crate) struct CreatedDatabase {
    admin: tokio_postgres::Client,
    name: String,
    quoted: String,
}

impl CreatedDatabase {
    /// Creates `params`' database from the server's maintenance database; refuses one that
    /// exists (Azure's `FailIfExists`), so what this returns is always ours to drop.
    pub(crate) async fn create(params: &ConnectParams) -> Result<Self> {
        let name = params.database().to_owned();
        let admin = params.with_database("postgres").connect().await?;
        let exists = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await
            .map_err(|e| Error::new("UserErrorDBQueryFailed", e.to_string()))?
            .is_some();
        if exists {
            return Err(Error::new(
                "UserErrorDatabaseNameAlreadyInUse",
                format!(
                    "database `{name}` already exists on {}; restore to a new database name",
                    Datasource::new(params.host(), params.port(), &name)
                        .map(|ds| ds.server_url())
                        .unwrap_or_else(|_| params.host().to_owned())
                ),
            ));
        }
        let quoted: String = admin
            .query_one("SELECT quote_ident($1)", &[&name])
            .await
            .map_err(|e| Error::new("UserErrorDBQueryFailed", e.to_string()))?
            .get(0);
        admin.batch_execute(&format!("CREATE DATABASE {quoted}")).await.map_err(|e| {
            Error::new(
                "UserErrorMissingDBPermissions",
                format!("cannot create database `{name}`: {e}; the restoring user needs CREATEDB (ALTER USER ... CREATEDB)"),
            )
        })?;
        Ok(CreatedDatabase {
            admin,
            name,
            quoted,
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Drops the database, ending any session still connected to it.
    pub(crate) async fn drop_database(&self) -> Result<(), tokio_postgres::Error> {
        self.admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.quoted
            ))
            .await
    }
}

/// libpq's quoting of a connection-string value.
fn conninfo_value(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Streams the recovery point into `pg_restore` against `params`' database; returns the bytes
/// written to it.
pub(crate) async fn run_pg_restore(
    vault: &Vault,
    manifest: &Manifest,
    params: &ConnectParams,
    written: Arc<AtomicU64>,
) -> Result<u64> {
    let target_facts = params.connect().await?;
    let version: i32 = target_facts
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(|e| Error::new("UserErrorDBQueryFailed", e.to_string()))?
        .get(0);
    drop(target_facts);
    let pg_restore = find_tool("pg_restore", (version / 10000) as u32)?;
    let dbname = format!("--dbname=dbname={}", conninfo_value(params.database()));
    let mut proc = ToolProcess::spawn(
        &pg_restore,
        &[
            "--no-owner",
            "--no-acl",
            "--exit-on-error",
            "--no-password",
            &dbname,
        ],
        &params.pg_env(),
        Stdio::piped(),
        Stdio::null(),
        params.password().into_iter().map(str::to_string).collect(),
    )?;
    let stdin = proc.child_mut().stdin.take().expect("stdin is piped");
    let mut stdin = tokio::process::ChildStdin::from_std(stdin).map_err(|e| {
        Error::new(
            "InternalError",
            format!("cannot drive pg_restore's input: {e}"),
        )
    })?;

    let index = load_index(&vault.store).await?;
    let key = vault.config.chunk_key()?;
    let streamed = read_stream(
        &vault.store,
        &index,
        &key,
        &manifest.stream,
        &mut stdin,
        written,
    )
    .await;
    let _ = stdin.shutdown().await;
    drop(stdin);
    let finished = tokio::task::spawn_blocking(move || proc.wait())
        .await
        .map_err(|_| Error::new("InternalError", "waiting for pg_restore failed"))?;
    // pg_restore's own error explains more than a broken pipe does, so it goes first.
    if let Err(e) = finished {
        return Err(Error::new(
            "UserErrorPgRestoreFailed",
            format!("pg_restore failed, the target database was removed: {e}"),
        ));
    }
    Ok(streamed?)
}

async fn restore_to_file(
    vault: &Vault,
    manifest: &Manifest,
    target: &TargetDetails,
    written: Arc<AtomicU64>,
) -> Result<RestoreOutcome> {
    let dir = match target.url.strip_prefix("file://") {
        Some(p) => PathBuf::from(p),
        None if target.url.starts_with('/') => PathBuf::from(&target.url),
        None => {
            return Err(Error::new(
                "UserErrorInvalidTarget",
                format!(
                    "restore-as-files target `{}` is not a folder (file:///path); restoring to Blob containers arrives with Azure support",
                    target.url
                ),
            ));
        }
    };
    let io = |what: &str, e: std::io::Error| {
        Error::new("RestoreTargetWriteFailed", format!("{what}: {e}"))
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| io(&format!("cannot create `{}`", dir.display()), e))?;
    let prefix = if target.file_prefix.is_empty() {
        format!(
            "{}-{}",
            manifest.datasource.database, manifest.recovery_point_id
        )
    } else {
        target.file_prefix.clone()
    };
    let path = dir.join(format!("{prefix}.dump"));
    if path.exists() {
        return Err(Error::new(
            "UserErrorFileAlreadyExists",
            format!(
                "`{}` already exists; choose another --target-file-name or folder",
                path.display()
            ),
        ));
    }
    // Write to a temporary name and rename, so a file with the final name is always whole.
    let tmp = dir.join(format!(".{prefix}.dump.{}.partial", std::process::id()));
    let file = tokio::fs::File::create(&tmp)
        .await
        .map_err(|e| io(&format!("cannot create `{}`", tmp.display()), e))?;
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
    let index = load_index(&vault.store).await?;
    let key = vault.config.chunk_key()?;
    let result = read_stream(
        &vault.store,
        &index,
        &key,
        &manifest.stream,
        &mut out,
        written,
    )
    .await;
    let bytes = match result {
        Ok(n) => n,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e.into());
        }
    };
    let file = out.into_inner();
    file.sync_all()
        .await
        .map_err(|e| io("cannot flush the dump file", e))?;
    tokio::fs::rename(&tmp, &path)
        .await
        .map_err(|e| io("cannot rename the dump file into place", e))?;
    Ok(RestoreOutcome {
        bytes_written: bytes,
        target: json!({ "file": path.display().to_string() }),
    })
}
