//! Restore: a recovery point streamed back into `pg_restore` against a new database on
//! any server, or written out as the custom-format dump file.
//!
//! As Azure's `FailIfExists`, the target database must not exist: pgvault creates it, and
//! if the restore then fails it drops what it created, so a failed restore leaves the
//! target server as it found it. pg_restore always runs `--no-owner --no-acl`: the restored
//! objects are the restoring user's, as Azure's restores are; with `--keep-owners` the
//! archive's ownership and privilege statements are then applied one by one where the user
//! may (a non-superuser cannot give an object to a role it is not a member of), and what
//! stays with it is listed in the job. A selective restore (`--tables`, `--schemas`,
//! `--exclude-tables`) is a pg_restore `--use-list` planned from the recorded table of
//! contents ([`selection`]). The steps (validate, restore or write, apply owners, commit)
//! are told to a [`RestoreSteps`], which the host records as the job's sub-tasks.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::leftovers::{Leftover, Leftovers, Registration, error_chain};
use super::vault::Vault;
use super::{Error, Result};
use crate::model::instance::{AuthCredentials, DatasourceInfo, SecretStoreResource};
use crate::model::policy::DataStoreType;
use crate::model::restore::{
    AZURE_BLOBS, FAIL_IF_EXISTS, FILE_SYSTEM, RestoreOptions, RestoreRequest, RestoreTarget,
    TargetDetails,
};
use crate::postgres::archive::recorded_archive;
use crate::postgres::connection::{ConnectParams, ConnectionString, Datasource};
use crate::postgres::tools::{ToolProcess, find_tool};
use crate::secrets::ResolveSecret as _;
use crate::secrets::{SecretRef, SecretStoreType};
use crate::store::azure::AzureLocation;
use crate::store::manifest::Manifest;
use crate::store::reader::{read_stream, read_stream_ranges};

mod selection;
use selection::split_table;

/// A restore request's `sourceDataStoreType`: `VaultStore`, or `ArchiveStore` for a rehydrated
/// recovery point.
pub fn source_datastore(text: &str) -> Result<DataStoreType> {
    match text.parse::<DataStoreType>() {
        Ok(t @ (DataStoreType::VaultStore | DataStoreType::ArchiveStore)) => Ok(t),
        _ => Err(Error::new(
            "UserErrorDataStoreNotSupported",
            format!("`{text}` is not a datastore to restore from: use VaultStore or ArchiveStore"),
        )),
    }
}

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
        pgvault_restore_options: Default::default(),
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

/// Where a restore as files writes: a folder (`FileSystem`, pgvault's) or a Blob container
/// (`AzureBlobs`, Azure's `RestoreFilesTargetInfo`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilesTarget {
    /// A folder path, created if missing.
    Directory(String),
    /// `https://<account>.blob.core.windows.net/<container>[/<prefix>]` or
    /// `az://<account>/<container>[/<prefix>]`; the container must exist.
    BlobContainer(String),
}

impl FilesTarget {
    /// The target of `--target-directory` / `--target-blob-container-url` (and the Rhai
    /// `target_directory` / `target_blob_container_url` options): exactly one must be given.
    pub fn choose(directory: Option<&str>, container_url: Option<&str>) -> Result<FilesTarget> {
        fn given(v: Option<&str>) -> Option<&str> {
            v.map(str::trim).filter(|v| !v.is_empty())
        }
        match (given(directory), given(container_url)) {
            (Some(dir), None) => Ok(FilesTarget::Directory(dir.to_owned())),
            (None, Some(url)) => Ok(FilesTarget::BlobContainer(url.to_owned())),
            (Some(_), Some(_)) => Err(Error::new(
                "UserErrorInvalidTarget",
                "give one restore-as-files target, not both: --target-directory (a folder) or --target-blob-container-url (a Blob container)",
            )),
            (None, None) => Err(Error::new(
                "UserErrorInvalidTarget",
                "give where to write the files: --target-blob-container-url https://<account>.blob.core.windows.net/<container> or --target-directory <folder>",
            )),
        }
    }
}

/// Builds the request `restore initialize-for-data-recovery-as-files --target-directory`
/// prints: the dump file written to `target_directory` as `<file_prefix>.dump`.
pub fn initialize_for_data_recovery_as_files(
    recovery_point_id: &str,
    target_directory: &str,
    file_prefix: &str,
    source_resource_id: Option<String>,
) -> Result<RestoreRequest> {
    initialize_for_data_recovery_to_files(
        recovery_point_id,
        &FilesTarget::Directory(target_directory.to_owned()),
        file_prefix,
        source_resource_id,
    )
}

/// Builds the request `restore initialize-for-data-recovery-as-files` prints for either
/// target. A container URL is checked here (account and container names, no query string)
/// and kept as given, as Azure's `targetDetails.url`; the container itself is first
/// contacted by `restore trigger`.
pub fn initialize_for_data_recovery_to_files(
    recovery_point_id: &str,
    target: &FilesTarget,
    file_prefix: &str,
    source_resource_id: Option<String>,
) -> Result<RestoreRequest> {
    let (location_type, url) = match target {
        FilesTarget::Directory(target_directory) => {
            let dir = std::path::Path::new(target_directory);
            let dir = if dir.is_absolute() {
                dir.to_path_buf()
            } else {
                std::env::current_dir()
                    .map_err(|e| Error::new("UserErrorInvalidTarget", e.to_string()))?
                    .join(dir)
            };
            if !file_prefix.is_empty() {
                check_plain_file_name(file_prefix)?;
            }
            (FILE_SYSTEM, format!("file://{}", dir.display()))
        }
        FilesTarget::BlobContainer(url) => {
            let url = url.trim_end_matches('/');
            blob_location(url)?;
            if !file_prefix.is_empty() {
                blob_name(file_prefix, "dump")?;
            }
            (AZURE_BLOBS, url.to_owned())
        }
    };
    Ok(RestoreRequest {
        object_type: "AzureBackupRecoveryPointBasedRestoreRequest".into(),
        recovery_point_id: recovery_point_id.into(),
        source_data_store_type: "VaultStore".into(),
        pgvault_restore_options: Default::default(),
        source_resource_id,
        restore_target_info: RestoreTarget::Files {
            recovery_option: FAIL_IF_EXISTS.into(),
            restore_location: "local".into(),
            target_details: TargetDetails {
                file_prefix: file_prefix.into(),
                restore_target_location_type: location_type.into(),
                url,
            },
        },
    })
}

/// A URL as it may be shown: without a query string, and with any SAS signature redacted.
fn shown_url(url: &str) -> String {
    crate::store::azure::redact(url.split(['?', '#']).next().unwrap_or_default())
}

/// The container (and optional prefix) a Blob target URL names, or why it names none.
fn blob_location(url: &str) -> Result<AzureLocation> {
    let bad = |why: String| {
        Error::new(
            "UserErrorInvalidTarget",
            format!("`{}` is not a Blob container URL: {why}", shown_url(url)),
        )
    };
    match AzureLocation::parse(url) {
        Ok(Some(location)) => Ok(location),
        Ok(None) => Err(bad(
            "give https://<account>.blob.core.windows.net/<container> (or az://<account>/<container>)"
                .into(),
        )),
        Err(why) => Err(bad(why)),
    }
}

/// The blob name `<prefix>.<extension>`, checked as a blob path (no empty, `.` or `..`
/// segments, no leading slash).
fn blob_name(prefix: &str, extension: &str) -> Result<object_store::path::Path> {
    let name = format!("{prefix}.{extension}");
    let bad = || {
        Error::new(
            "UserErrorInvalidTarget",
            format!(
                "`{name}` is not a blob name: use letters, digits, `-`, `_` and `.`, with `/` only between folder names"
            ),
        )
    };
    if prefix.starts_with('/')
        || prefix
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(bad());
    }
    object_store::path::Path::parse(&name).map_err(|_| bad())
}

/// What a restore did, for the job and the caller.
#[derive(Clone, Debug)]
pub struct RestoreOutcome {
    pub bytes_written: u64,
    /// `database` or `file`, and where.
    pub target: Value,
    /// What the user should know although the restore worked (an older target server, what
    /// a selection left out, owners `--keep-owners` could not set).
    pub warnings: Vec<String>,
    /// With `--keep-owners`: the objects left with the restoring user, by the owner they
    /// should have had (`appowner: TABLE public.rental, ...`).
    pub owners_not_kept: Option<String>,
}

impl RestoreOutcome {
    /// What the Restore job records besides its target: the file or blob written (a blob's
    /// URL never carries a SAS) and its size; the objects whose owner was not kept.
    pub fn job_details(&self) -> Vec<(String, String)> {
        let written = [("file", "RestoreTargetFile"), ("blob", "RestoreTargetBlob")]
            .into_iter()
            .find_map(|(key, detail)| Some((detail, self.target[key].as_str()?)));
        let mut details = match written {
            Some((detail, place)) => vec![
                (detail.to_owned(), place.to_owned()),
                ("BytesWritten".to_owned(), self.bytes_written.to_string()),
            ],
            None => Vec::new(),
        };
        if let Some(objects) = &self.owners_not_kept {
            details.push(("OwnersNotKept".to_owned(), objects.clone()));
        }
        details
    }
}

/// The steps of a restore, which the host records as its job's sub-tasks, as a backup's.
/// `Restore` (or `Write`) reads the vault and feeds pg_restore (or the file) at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RestoreStep {
    /// The request, the recovery point, the secret, the connection and the privileges (or the
    /// target folder or container).
    Validate,
    /// The staging database is created and pg_restore fills it from the vault.
    Restore,
    /// The file (or blob) is written from the vault, under a temporary name.
    Write,
    /// `--keep-owners`: owners and privileges are applied where the restoring user may.
    ApplyOwners,
    /// The staging database takes the target's name (the file its name, the blob is
    /// committed): the restore exists.
    Commit,
}

impl RestoreStep {
    /// The sub-task name, as Azure's `extendedInfo.subTasks` shows it.
    pub fn name(self) -> &'static str {
        match self {
            RestoreStep::Validate => "Validate",
            RestoreStep::Restore => "Restore",
            RestoreStep::Write => "Write",
            RestoreStep::ApplyOwners => "ApplyOwners",
            RestoreStep::Commit => "Commit",
        }
    }
}

/// Told when a restore's step starts and how it ended (as [`super::backup::Steps`]).
pub trait RestoreSteps: Send + Sync {
    fn started(&self, step: RestoreStep);
    fn finished(&self, step: RestoreStep, result: std::result::Result<String, String>);
}

/// For callers that record no steps.
#[derive(Debug, Clone, Copy)]
pub struct NoRestoreSteps;

impl RestoreSteps for NoRestoreSteps {
    fn started(&self, _: RestoreStep) {}
    fn finished(&self, _: RestoreStep, _: std::result::Result<String, String>) {}
}

/// The step under way, so that whichever way the restore returns, the step it was in is
/// finished: with its detail by [`Tracker::done`], or failed with the restore's error by
/// [`restore_with_steps`]. (A restore whose future is dropped leaves its step running; the
/// job that ends then ends it.)
struct Tracker<'a> {
    steps: &'a dyn RestoreSteps,
    current: Option<RestoreStep>,
}

impl Tracker<'_> {
    fn start(&mut self, step: RestoreStep) {
        self.done(String::new());
        self.steps.started(step);
        self.current = Some(step);
    }

    fn done(&mut self, detail: String) {
        if let Some(step) = self.current.take() {
            self.steps.finished(step, Ok(detail));
        }
    }

    fn failed(&mut self, error: &Error) {
        if let Some(step) = self.current.take() {
            self.steps.finished(step, Err(error.message.clone()));
        }
    }
}

/// The major version in a `server_version` string (`15.4 (Debian ...)` is 15).
fn major_of(version: &str) -> u32 {
    version
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0)
}

/// What a restore into a server of major version `target` should say about a recovery point
/// taken from `source`: nothing for the same or a newer server (pg_dump's output restores
/// forward); for an older one, what may fail.
pub fn version_warning(source: u32, target: u32) -> Option<String> {
    (target < source && source > 0).then(|| {
        format!(
            "the recovery point was taken from PostgreSQL {source} and the target runs PostgreSQL {target}: \
             restoring to an older major version is not supported by pg_dump, and statements using \
             syntax, types or settings that {target} lacks will fail (the restore then stops and \
             leaves no database); restore to PostgreSQL {source} or newer, or restore --format plain \
             and edit the SQL"
        )
    })
}

/// Runs a restore request against a recovery point of `instance`. The staging database or
/// partial file it creates is recorded in `leftovers` first, so a killed restore's is removed
/// by the next pgvault that starts.
pub async fn restore(
    vault: &Vault,
    instance: &str,
    req: &RestoreRequest,
    written: Arc<AtomicU64>,
    leftovers: &Leftovers,
) -> Result<RestoreOutcome> {
    restore_with_steps(vault, instance, req, written, leftovers, &NoRestoreSteps).await
}

/// [`restore`], telling `steps` when each step starts and ends: every step started is
/// finished on every path it returns by.
pub async fn restore_with_steps(
    vault: &Vault,
    instance: &str,
    req: &RestoreRequest,
    written: Arc<AtomicU64>,
    leftovers: &Leftovers,
    steps: &dyn RestoreSteps,
) -> Result<RestoreOutcome> {
    let mut track = Tracker {
        steps,
        current: None,
    };
    track.start(RestoreStep::Validate);
    let result = restore_tracked(vault, instance, req, written, leftovers, &mut track).await;
    match &result {
        Ok(_) => track.done(String::new()),
        Err(e) => track.failed(e),
    }
    result
}

async fn restore_tracked(
    vault: &Vault,
    instance: &str,
    req: &RestoreRequest,
    written: Arc<AtomicU64>,
    leftovers: &Leftovers,
    track: &mut Tracker<'_>,
) -> Result<RestoreOutcome> {
    let source = source_datastore(&req.source_data_store_type)?;
    vault.instance(instance).await?;
    let manifest = vault
        .restorable_manifest(instance, &req.recovery_point_id, source, chrono::Utc::now())
        .await?;
    let damaged =
        |e| super::damaged_point_guidance(e, vault.name(), instance, &req.recovery_point_id);
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
            restore_to_database(
                vault,
                &manifest,
                &ds,
                &secret,
                &req.pgvault_restore_options,
                written,
                leftovers,
                track,
            )
            .await
            .map_err(damaged)
        }
        RestoreTarget::Files {
            recovery_option,
            target_details,
            ..
        } => {
            check_recovery_option(recovery_option)?;
            restore_to_file(
                vault,
                &manifest,
                target_details,
                &req.pgvault_restore_options,
                written,
                leftovers,
                track,
            )
            .await
            .map_err(damaged)
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

#[allow(clippy::too_many_arguments)]
async fn restore_to_database(
    vault: &Vault,
    manifest: &Manifest,
    ds: &Datasource,
    secret: &SecretRef,
    opts: &RestoreOptions,
    written: Arc<AtomicU64>,
    leftovers: &Leftovers,
    track: &mut Tracker<'_>,
) -> Result<RestoreOutcome> {
    if opts.format.is_some() {
        return Err(Error::new(
            "UserErrorInvalidRestoreOption",
            "--format applies to a restore as files; a restore to a database runs pg_restore",
        ));
    }
    let mut selection = Selection::new(opts, manifest)?;
    selection.leftovers = leftovers.clone();
    let conn = ConnectionString::parse(&secret.resolve().await?)?;
    // The target database does not exist yet: the secret names the server (often with its
    // maintenance database), not the target.
    let params = ConnectParams::for_server(ds, &conn);
    // Create the target from the server's maintenance database.
    let admin = params.with_database("postgres").connect().await?;
    let exists = admin
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[&ds.database()],
        )
        .await
        .map_err(|e| Error::new("UserErrorDBQueryFailed", e.to_string()))?
        .is_some();
    if exists {
        return Err(Error::new(
            "UserErrorDatabaseNameAlreadyInUse",
            format!(
                "database `{}` already exists on {}; restore to a new database name",
                ds.database(),
                ds.server_url()
            ),
        ));
    }
    let (user, can_create): (String, bool) = {
        let row = admin
            .query_one(
                "SELECT current_user::text, rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .await
            .map_err(|e| Error::new("UserErrorDBQueryFailed", e.to_string()))?;
        (row.get(0), row.get(1))
    };
    if !can_create {
        let quoted_user = format!("\"{}\"", user.replace('"', "\"\""));
        return Err(Error::new(
            "UserErrorMissingDBPermissions",
            format!(
                "user `{user}` cannot create databases on {}, and a restore creates its target. Grant it, as a superuser:\n\n    ALTER ROLE {quoted_user} CREATEDB;\n",
                ds.server_url()
            ),
        ));
    }
    track.done(format!(
        "database `{}` is free on {}; `{user}` may create databases{}",
        ds.database(),
        ds.server_url(),
        match &selection.listed {
            Some(ids) => format!("; {} archive entries selected", ids.len()),
            None => String::new(),
        }
    ));
    track.start(RestoreStep::Restore);
    // The restore goes into a database of its own name, renamed to the target only when it is
    // complete: nothing connects to half a restore, and a restore that fails, is cancelled or
    // is killed never leaves a database under the name asked for.
    let staging = format!(
        "{}{}",
        super::leftovers::STAGING_PREFIX,
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    let (quoted, quoted_staging) = (quote(ds.database()), quote(&staging));
    // Recorded before it exists: if this process is killed from here on, the next pgvault
    // drops it.
    let registration = leftovers.register("restore", Leftover::database(ds, &staging, secret))?;
    tracing::info!(staging = %staging, target = %ds.database(), "restoring into a staging database: renamed to the target when complete, dropped if the restore fails");
    if let Err(e) = admin
        .batch_execute(&format!("CREATE DATABASE {quoted_staging}"))
        .await
    {
        registration.done();
        return Err(Error::new(
            "UserErrorMissingDBPermissions",
            format!(
                "cannot create database `{staging}` for the restore: {}",
                error_chain(&e)
            ),
        ));
    }
    crate::fault::point("staging-created");
    let mut cleanup = DropOnCancel {
        params: Some(params.with_database("postgres")),
        name: staging.clone(),
        registration: Some(registration),
    };
    let staging_params = params.with_database(staging.clone());
    let mut result = create_schemas(&staging_params, &selection.schemas)
        .await
        .map(|n| (n, Vec::new()));
    if result.is_ok() {
        result = run_pg_restore(
            vault,
            manifest,
            &staging_params,
            &staging,
            &selection,
            written,
        )
        .await;
    }
    let mut owners_not_kept = None;
    if let Ok((bytes, warnings)) = &mut result {
        track.done(format!(
            "{bytes} bytes read from the vault into pg_restore (database `{staging}`)"
        ));
        if opts.keep_owners && !opts.data_only {
            track.start(RestoreStep::ApplyOwners);
            match apply_owners_and_privileges(
                vault,
                manifest,
                &staging_params,
                ds.database(),
                &selection,
            )
            .await
            {
                Ok(applied) => {
                    for w in applied.warnings(&user) {
                        tracing::warn!("{w}");
                        warnings.push(w);
                    }
                    owners_not_kept = applied.not_kept();
                    track.done(applied.summary());
                }
                Err(e) => result = Err(e),
            }
        }
    }
    if result.is_ok() {
        track.start(RestoreStep::Commit);
        crate::fault::point("before-rename");
    }
    if result.is_ok()
        && let Err(e) = admin
            .batch_execute(&format!(
                "ALTER DATABASE {quoted_staging} RENAME TO {quoted}"
            ))
            .await
    {
        result = Err(Error::new(
            "UserErrorDatabaseNameAlreadyInUse",
            format!(
                "the restore completed but could not take the name `{}` ({}); was it created meanwhile? The restored data was removed",
                ds.database(),
                error_chain(&e)
            ),
        ));
    }
    let registration = cleanup.disarm();
    match &result {
        // Renamed: the staging database is now the restored one.
        Ok(_) => registration.done(),
        Err(e) => {
            // A failed restore leaves nothing half done.
            let dropped = admin
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {quoted_staging} WITH (FORCE)"
                ))
                .await;
            match dropped {
                Ok(()) => registration.done(),
                // The record stays: the next pgvault (or `serve`'s next turn) tries again.
                Err(drop_err) => {
                    tracing::warn!(database = %staging, error = %error_chain(&drop_err), restore_error = %e, "could not drop the partial restore; pgvault tries again at its next start")
                }
            }
        }
    }
    let (bytes_written, warnings) = result?;
    track.done(format!("`{staging}` renamed to `{}`", ds.database()));
    Ok(RestoreOutcome {
        bytes_written,
        target: json!({ "database": ds.to_string() }),
        warnings,
        owners_not_kept,
    })
}

/// Creates the schemas a selective restore needs (owned by the restoring user, as `public` is).
async fn create_schemas(params: &ConnectParams, schemas: &[String]) -> Result<u64> {
    if schemas.is_empty() {
        return Ok(0);
    }
    let client = params.connect().await?;
    for schema in schemas {
        let quoted = format!("\"{}\"", schema.replace('"', "\"\""));
        client
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {quoted}"))
            .await
            .map_err(|e| {
                Error::new(
                    "UserErrorDBQueryFailed",
                    format!("cannot create schema `{schema}` for the restore: {e}"),
                )
            })?;
    }
    Ok(0)
}

/// Drops the staging database when a restore's future is dropped part-way (a cancelled job),
/// from a task of its own, and then forgets its record; a drop that fails keeps the record for
/// the next pgvault.
struct DropOnCancel {
    params: Option<ConnectParams>,
    name: String,
    registration: Option<Registration>,
}

impl DropOnCancel {
    /// The restore cleans up itself from here on: its record.
    fn disarm(&mut self) -> Registration {
        self.params = None;
        self.registration.take().expect("disarmed once")
    }
}

impl Drop for DropOnCancel {
    fn drop(&mut self) {
        let (Some(params), Some(registration)) = (self.params.take(), self.registration.take())
        else {
            return;
        };
        let name = self.name.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                match super::leftovers::drop_database(&params, &name).await {
                    Ok(()) => registration.done(),
                    Err(e) => {
                        tracing::warn!(database = %name, error = %e, "could not drop a cancelled restore's database; pgvault tries again at its next start")
                    }
                }
            });
        }
    }
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

/// Restores the whole recovery point into `params`' existing database (a drill's scratch
/// database): objects owned by the restoring user, every entry; returns the bytes read.
pub(crate) async fn restore_whole(
    vault: &Vault,
    manifest: &Manifest,
    params: &ConnectParams,
    written: Arc<AtomicU64>,
) -> Result<u64> {
    let selection = Selection::new(&RestoreOptions::default(), manifest)?;
    run_pg_restore(
        vault,
        manifest,
        params,
        params.database(),
        &selection,
        written,
    )
    .await
    .map(|(bytes, _)| bytes)
}

/// libpq's quoting of a connection-string value.
fn conninfo_value(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Runs pg_restore with the selection into `params`' database (without owners and
/// privileges: [`apply_owners_and_privileges`] restores those); returns the bytes read and
/// what the user should know (an older target server, what a selection left out).
async fn run_pg_restore(
    vault: &Vault,
    manifest: &Manifest,
    params: &ConnectParams,
    database: &str,
    selection: &Selection,
    written: Arc<AtomicU64>,
) -> Result<(u64, Vec<String>)> {
    let target = params.connect().await?;
    let version: i32 = target
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(|e| Error::new("UserErrorDBQueryFailed", e.to_string()))?
        .get(0);
    drop(target);
    let (source_major, target_major) = (
        major_of(&manifest.postgres.server_version),
        (version / 10000) as u32,
    );
    let mut warnings: Vec<String> = version_warning(source_major, target_major)
        .into_iter()
        .collect();
    warnings.extend(selection.warnings.iter().cloned());
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let pg_restore = restore_tool(manifest, target_major)?;
    let mut args = vec![
        "--exit-on-error".to_owned(),
        "--no-password".to_owned(),
        format!("--dbname=dbname={}", conninfo_value(database)),
    ];
    args.extend(selection.args.iter().cloned());
    let env = params.pg_env();
    let scrub: Vec<String> = params.password().into_iter().map(str::to_string).collect();
    let restored = feed_tool(
        vault,
        manifest,
        &pg_restore,
        args,
        &env,
        scrub.clone(),
        selection,
        written,
        None,
    )
    .await
    .map_err(|e| match e {
        FeedError::Tool(stderr) => {
            let mut message =
                format!("pg_restore failed, the target database was removed: {stderr}");
            if let Some(w) = warnings.first() {
                message.push_str(&format!(" (note: {w})"));
            }
            Error::new("UserErrorPgRestoreFailed", message)
        }
        FeedError::Other(e) => e,
    })?;
    Ok((restored, warnings))
}

/// A pg_restore at least as new as the pg_dump that wrote the archive (it reads older archive
/// formats, not newer ones) and as the target server.
fn restore_tool(manifest: &Manifest, target_major: u32) -> Result<PathBuf> {
    let source_major = major_of(&manifest.postgres.server_version);
    Ok(find_tool("pg_restore", source_major.max(target_major))?)
}

/// What `--keep-owners` restored, and what it could not.
#[derive(Debug, Default)]
struct OwnersApplied {
    /// Ownership and privilege statements that ran.
    applied: usize,
    /// Roles the target lacks: their statements were not run.
    missing_roles: std::collections::BTreeSet<String>,
    /// Objects the restoring user may not give to their owner (`TABLE public.rental`), by
    /// owner: they stay the restoring user's.
    fallbacks: std::collections::BTreeMap<String, Vec<String>>,
    /// Privilege statements PostgreSQL refused the restoring user.
    refused_privileges: Vec<String>,
}

impl OwnersApplied {
    /// The step's detail: what was done.
    fn summary(&self) -> String {
        let kept: usize = self.fallbacks.values().map(Vec::len).sum();
        format!(
            "{} ownership and privilege statements applied; {kept} objects kept by the restoring user; {} roles missing on the target",
            self.applied,
            self.missing_roles.len()
        )
    }

    /// One warning per kind of shortfall, naming what to do.
    fn warnings(&self, user: &str) -> Vec<String> {
        let mut out = Vec::new();
        if !self.missing_roles.is_empty() {
            out.push(format!(
                "owners and privileges were restored except for roles the target server lacks: {} (their objects belong to the restoring user; create the roles and restore again to keep them)",
                self.missing_roles.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        if !self.fallbacks.is_empty() {
            let roles: Vec<&str> = self.fallbacks.keys().map(String::as_str).collect();
            let count: usize = self.fallbacks.values().map(Vec::len).sum();
            let quoted = |r: &str| format!("\"{}\"", r.replace('"', "\"\""));
            out.push(format!(
                "--keep-owners: `{user}` may not give objects to {} (only a superuser or a member of the role may, and the role needs CREATE on the object's schema), so {count} objects stay owned by `{user}` (listed in the job's OwnersNotKept); to keep their owners, grant the roles as a superuser ({}) and restore again",
                roles.iter().map(|r| format!("`{r}`")).collect::<Vec<_>>().join(", "),
                roles
                    .iter()
                    .map(|r| format!("GRANT {} TO {};", quoted(r), quoted(user)))
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
        if !self.refused_privileges.is_empty() {
            out.push(format!(
                "--keep-owners: {} privilege statements were refused to `{user}` and not restored: {}",
                self.refused_privileges.len(),
                cap_list(&self.refused_privileges, 10)
            ));
        }
        out
    }

    /// The job's record of the objects whose owner was not kept: `owner: kind name, ...`.
    fn not_kept(&self) -> Option<String> {
        if self.fallbacks.is_empty() {
            return None;
        }
        let text = self
            .fallbacks
            .iter()
            .map(|(role, objects)| format!("{role}: {}", objects.join(", ")))
            .collect::<Vec<_>>()
            .join("; ");
        Some(crate::model::job::cap_text(&text, 4096))
    }
}

/// The first `n` items, and how many more.
fn cap_list(items: &[String], n: usize) -> String {
    let mut shown = items.iter().take(n).cloned().collect::<Vec<_>>().join(" ");
    if items.len() > n {
        shown.push_str(&format!(" and {} more", items.len() - n));
    }
    shown
}

/// Restores owners and privileges after pg_restore made every object the restoring user's.
///
/// The statements are the ones pg_restore itself writes for the restored part of the archive
/// (`pg_restore --schema-only` with the same selection: an `ALTER <kind> <name> OWNER TO`
/// for every object kind pg_dump emits, with a function's signature, a large object's OID,
/// then the `GRANT`s and `REVOKE`s), so no object kind needs knowing here. Each runs on its
/// own: those naming a role the target lacks are not run; one PostgreSQL refuses for lack of
/// privilege (the restoring user is not a superuser and may not act as the owner role) leaves
/// the object with the restoring user and is recorded; any other failure fails the restore.
async fn apply_owners_and_privileges(
    vault: &Vault,
    manifest: &Manifest,
    params: &ConnectParams,
    database: &str,
    selection: &Selection,
) -> Result<OwnersApplied> {
    let client = params.connect().await?;
    let query = |e: tokio_postgres::Error| Error::new("UserErrorDBQueryFailed", e.to_string());
    let existing: std::collections::HashSet<String> = client
        .query("SELECT rolname::text FROM pg_roles", &[])
        .await
        .map_err(query)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(query)?
        .get(0);
    let pg_restore = restore_tool(manifest, (version / 10000) as u32)?;
    let sql_file = TempFile::register(&selection.leftovers, "sql").map_err(|e| match e {
        FeedError::Other(e) => e,
        FeedError::Tool(e) => Error::new("RestoreStagingFailed", e),
    })?;
    let mut args = vec![
        "--schema-only".to_owned(),
        format!("--file={}", sql_file.0.display()),
    ];
    args.extend(
        selection
            .args
            .iter()
            .filter(|a| {
                !matches!(
                    a.as_str(),
                    "--schema-only" | "--data-only" | "--no-owner" | "--no-acl"
                )
            })
            .cloned(),
    );
    let definitions = Selection {
        leftovers: selection.leftovers.clone(),
        args: Vec::new(),
        jobs: None,
        list: selection.list.clone(),
        listed: None,
        schemas: Vec::new(),
        warnings: Vec::new(),
        // Definitions only: the header and table of contents suffice.
        ranges: recorded_archive(manifest).map(|a| std::iter::once(0..a.toc_end).collect()),
    };
    feed_tool(
        vault,
        manifest,
        &pg_restore,
        args,
        &[],
        Vec::new(),
        &definitions,
        Arc::new(AtomicU64::new(0)),
        None,
    )
    .await
    .map_err(|e| match e {
        FeedError::Tool(stderr) => Error::new(
            "UserErrorPgRestoreFailed",
            format!("pg_restore could not list the ownership statements: {stderr}"),
        ),
        FeedError::Other(e) => e,
    })?;
    let sql = std::fs::read_to_string(&sql_file.0).map_err(|e| {
        Error::new(
            "RestoreStagingFailed",
            format!("cannot read `{}`: {e}", sql_file.0.display()),
        )
    })?;
    drop(sql_file);
    let (mut statements, mut missing_roles) = ownership_statements(&sql, &existing);
    // The database's owner first, as `pg_restore --create` would set it: a schema can be
    // given only to a role that may create in the database, and a table only to one that may
    // create in its schema. pg_restore writes no statement for it into an existing database.
    let database_owner = recorded_archive(manifest)
        .iter()
        .flat_map(|a| &a.entries)
        .find(|e| e.desc == "DATABASE")
        .map(|e| e.owner.clone())
        .filter(|o| !o.is_empty());
    if let Some(owner) = database_owner {
        if existing.contains(&owner) {
            statements.insert(
                0,
                format!(
                    "ALTER DATABASE {} OWNER TO {};",
                    quote_ident(params.database()),
                    quote_ident(&owner)
                ),
            );
        } else {
            missing_roles.insert(owner);
        }
    }
    let mut applied = OwnersApplied {
        missing_roles,
        ..OwnersApplied::default()
    };
    for statement in &statements {
        match client.batch_execute(statement).await {
            Ok(()) => applied.applied += 1,
            // Refused for lack of privilege; or, for a serial column's sequence whose table
            // stayed with the restoring user, "cannot change owner of sequence ... linked to
            // table" (feature not supported): it follows its table, which already fell back.
            Err(e) if refused_owner(statement, &e) => {
                match owner_change(statement) {
                    Some((object, role)) => {
                        // The staging database is the target under another name for now.
                        let object = if object.starts_with("DATABASE ") {
                            format!("DATABASE {}", quote_ident(database))
                        } else {
                            object
                        };
                        // The log names the first few; the job lists them all.
                        let logged: usize = applied.fallbacks.values().map(Vec::len).sum();
                        if logged < LOGGED_FALLBACKS {
                            tracing::warn!(object = %object, owner = %role, error = %error_chain(&e), "--keep-owners: the object stays owned by the restoring user");
                        }
                        applied.fallbacks.entry(role).or_default().push(object);
                    }
                    None => {
                        tracing::warn!(statement = %statement, error = %error_chain(&e), "--keep-owners: a privilege statement was refused");
                        applied.refused_privileges.push(statement.clone());
                    }
                }
            }
            Err(e) => {
                return Err(Error::new(
                    "UserErrorPgRestoreFailed",
                    format!(
                        "restoring ownership failed at `{statement}`: {}",
                        error_chain(&e)
                    ),
                ));
            }
        }
    }
    Ok(applied)
}

/// How many objects left with the restoring user are named one by one in the log.
const LOGGED_FALLBACKS: usize = 20;

/// Whether `statement` failed because the restoring user may not run it, rather than because
/// something is wrong: insufficient privilege, or an owner change of a sequence linked to a
/// table (which follows its table's owner, and fails only when that table's change did).
fn refused_owner(statement: &str, e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    match e.code() {
        Some(code) if *code == SqlState::INSUFFICIENT_PRIVILEGE => true,
        Some(code) if *code == SqlState::FEATURE_NOT_SUPPORTED => owner_change(statement).is_some(),
        _ => false,
    }
}

/// An identifier quoted as SQL wants it.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The object and new owner of an `ALTER <kind> <name> OWNER TO <role>;` statement.
fn owner_change(statement: &str) -> Option<(String, String)> {
    let body = statement.strip_prefix("ALTER ")?;
    let at = body.rfind(" OWNER TO ")?;
    let role = statement_roles(statement).into_iter().next()?;
    Some((body[..at].to_owned(), role))
}

/// The `ALTER ... OWNER TO`, `GRANT`, `REVOKE` and `ALTER DEFAULT PRIVILEGES` statements of a
/// pg_restore SQL script (one line each, as pg_dump writes them) whose roles all exist, and
/// the missing roles of those left out. `PUBLIC` always exists.
fn ownership_statements(
    sql: &str,
    existing: &std::collections::HashSet<String>,
) -> (Vec<String>, std::collections::BTreeSet<String>) {
    let mut keep = Vec::new();
    let mut skipped = std::collections::BTreeSet::new();
    for line in sql.lines().map(str::trim) {
        let is_owner = line.starts_with("ALTER ") && line.contains(" OWNER TO ");
        let is_acl = line.starts_with("GRANT ")
            || line.starts_with("REVOKE ")
            || line.starts_with("ALTER DEFAULT PRIVILEGES ");
        if !(is_owner || is_acl) || !line.ends_with(';') {
            continue;
        }
        let roles = statement_roles(line);
        let missing: Vec<String> = roles
            .into_iter()
            .filter(|r| r != "PUBLIC" && !existing.contains(r))
            .collect();
        if missing.is_empty() {
            keep.push(line.to_owned());
        } else {
            skipped.extend(missing);
        }
    }
    (keep, skipped)
}

/// The roles a one-line ownership or privilege statement names: after `OWNER TO`, `FOR ROLE`,
/// and the last ` TO ` (a grant) or ` FROM ` (a revoke).
fn statement_roles(line: &str) -> Vec<String> {
    let body = line.trim_end_matches(';');
    let mut roles = Vec::new();
    let ident = |text: &str| -> Option<String> {
        let text = text.trim_start();
        if let Some(rest) = text.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = rest.chars().peekable();
            while let Some(c) = chars.next() {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        out.push('"');
                    } else {
                        return Some(out);
                    }
                } else {
                    out.push(c);
                }
            }
            None
        } else {
            text.split(|c: char| c.is_whitespace() || c == ',')
                .next()
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
        }
    };
    for keyword in [" OWNER TO ", " FOR ROLE "] {
        if let Some(i) = body.find(keyword) {
            roles.extend(ident(&body[i + keyword.len()..]));
        }
    }
    let grantee = if body.starts_with("REVOKE ") || body.contains(" REVOKE ") {
        body.rfind(" FROM ").map(|i| &body[i + 6..])
    } else if body.starts_with("GRANT ") || body.contains(" GRANT ") {
        body.rfind(" TO ").map(|i| &body[i + 4..])
    } else {
        None
    };
    if let Some(rest) = grantee {
        let rest = rest.split(" WITH ").next().unwrap_or(rest);
        let rest = rest.split(" GRANTED BY ").next().unwrap_or(rest);
        roles.extend(rest.split(',').filter_map(ident));
    }
    roles
}

/// What pg_restore is told to restore, from a request's options.
#[derive(Debug, Default)]
struct Selection {
    /// Selection and ownership arguments.
    args: Vec<String>,
    /// `-j N`: the archive is staged in a temporary file, which pg_restore can seek.
    jobs: Option<u32>,
    /// `--use-list` for a selective restore ([`selection::plan`]): written next to the
    /// staged archive.
    list: Option<String>,
    /// The dumpIds the list names.
    listed: Option<std::collections::HashSet<i32>>,
    /// Schemas a `--schemas` / `--tables` restore of a recovery point without a recorded table
    /// of contents needs created first: pg_restore's `--schema` selects a schema's contents,
    /// not the schema itself, and the target database is new.
    schemas: Vec<String>,
    /// For a selective restore: the parts of the stream pg_restore needs (the header and
    /// table of contents, and the data blocks of the entries it may restore), so only the
    /// chunks holding them are read. `None`: the whole stream.
    ranges: Option<Vec<std::ops::Range<u64>>>,
    /// What the plan left out, for the job.
    warnings: Vec<String>,
    /// Where the files it stages in the temporary folder (the archive for `--jobs`, the
    /// `--use-list` file, the owners SQL) are recorded before they are created.
    leftovers: Leftovers,
}

impl Selection {
    fn new(opts: &RestoreOptions, manifest: &Manifest) -> Result<Self> {
        let bad = |msg: String| Error::new("UserErrorInvalidRestoreOption", msg);
        if opts.schema_only && opts.data_only {
            return Err(bad(
                "--schema-only and --data-only exclude each other".to_owned()
            ));
        }
        if opts.no_table_dependents && opts.tables.is_empty() && opts.schemas.is_empty() {
            return Err(bad(
                "--no-table-dependents applies to the tables --tables or --schemas select; give one of them".to_owned(),
            ));
        }
        let mut sel = Selection::default();
        if let Some(jobs) = opts.jobs {
            if !(1..=64).contains(&jobs) {
                return Err(bad(format!("--jobs {jobs}: give 1 to 64")));
            }
            sel.jobs = (jobs > 1).then_some(jobs);
        }
        // Always without owners and privileges: with --keep-owners they are applied after the
        // restore, statement by statement, where the restoring user may
        // ([`apply_owners_and_privileges`]), instead of failing the whole restore at the
        // first object it may not give away.
        sel.args.push("--no-owner".into());
        sel.args.push("--no-acl".into());
        let selecting = !opts.tables.is_empty() || !opts.schemas.is_empty();
        match &recorded_archive(manifest) {
            Some(archive) if selecting || !opts.exclude_tables.is_empty() => {
                let plan = selection::plan(
                    archive,
                    &selection::Request {
                        tables: &opts.tables,
                        schemas: &opts.schemas,
                        exclude_tables: &opts.exclude_tables,
                        with_dependents: !opts.no_table_dependents,
                    },
                )?;
                sel.list = Some(plan.list);
                sel.listed = Some(plan.ids);
                sel.warnings = plan.warnings;
            }
            None if !opts.exclude_tables.is_empty() => {
                return Err(Error::new(
                    "UserErrorInvalidRestoreOption",
                    "--exclude-tables needs the recovery point's table of contents, which was not recorded for this one; restore it as files and run pg_restore -L by hand",
                ));
            }
            None if selecting => {
                // A recovery point without a recorded table of contents: pg_restore's own
                // selection, which takes a table's definition and data only.
                if opts.no_table_dependents {
                    return Err(bad("--no-table-dependents needs the recovery point's table of contents, which was not recorded for this one".to_owned()));
                }
                let mut schemas: Vec<String> = opts.schemas.clone();
                for table in &opts.tables {
                    let (schema, name) = split_table(table);
                    if let Some(schema) = schema {
                        schemas.push(schema.to_owned());
                    }
                    sel.args.push(format!("--table={name}"));
                }
                schemas.sort();
                schemas.dedup();
                for schema in &schemas {
                    sel.args.push(format!("--schema={schema}"));
                }
                sel.schemas = schemas;
                sel.warnings.push(
                    "this recovery point has no recorded table of contents, so the selected tables come without their sequences, indexes, constraints and triggers".to_owned(),
                );
            }
            _ => {}
        }
        if opts.schema_only {
            sel.args.push("--schema-only".into());
        }
        if opts.data_only {
            sel.args.push("--data-only".into());
        }
        sel.ranges = data_ranges(opts, manifest, sel.listed.as_ref());
        Ok(sel)
    }
}

/// The parts of the stream a selective restore needs: the header and table of contents, then
/// the data blocks of every entry pg_restore may ask for (a superset is harmless: pg_restore
/// skips blocks it does not want; a block it wants must be there). `None` (read everything)
/// without a selection, or when the recorded table of contents does not say where each
/// block is.
fn data_ranges(
    opts: &RestoreOptions,
    manifest: &Manifest,
    listed: Option<&std::collections::HashSet<i32>>,
) -> Option<Vec<std::ops::Range<u64>>> {
    if !opts.selects() {
        return None;
    }
    let archive = recorded_archive(manifest)?;
    if archive.stream_len != manifest.stream.length {
        return None;
    }
    let names: Vec<&str> = opts.tables.iter().map(|t| split_table(t).1).collect();
    let mut schemas: Vec<&str> = opts.schemas.iter().map(String::as_str).collect();
    schemas.extend(opts.tables.iter().filter_map(|t| split_table(t).0));
    let header_and_toc = 0..archive.toc_end;
    let mut ranges = Vec::with_capacity(archive.entries.len() + 1);
    ranges.push(header_and_toc);
    if !opts.schema_only {
        for e in archive.entries.iter().filter(|e| e.had_dumper) {
            let extent = e.data?;
            let wanted = match listed {
                Some(ids) => ids.contains(&e.dump_id),
                None => {
                    (names.is_empty() || names.contains(&e.tag.as_str()))
                        && (schemas.is_empty() || schemas.contains(&e.namespace.as_str()))
                }
            };
            if wanted {
                ranges.push(extent.start..extent.end);
            }
        }
    }
    ranges.sort_by_key(|r| r.start);
    // Blocks never overlap the table of contents or each other; if the record says they do,
    // it is not to be trusted for this.
    if ranges.windows(2).any(|w| w[0].end > w[1].start) {
        return None;
    }
    Some(ranges)
}

/// Why feeding a tool failed: the tool itself (its stderr), or the vault or the staging.
enum FeedError {
    Tool(String),
    Other(Error),
}

/// A restore's file in the temporary folder ([`super::leftovers::temp_file`]), recorded as a
/// leftover before it is created (so the next start removes it if this process is killed),
/// and removed when dropped, its record with it.
struct TempFile(PathBuf, Option<Registration>);

impl TempFile {
    /// Names and records a new temporary file with `extension`; the caller creates it.
    fn register(leftovers: &Leftovers, extension: &str) -> std::result::Result<Self, FeedError> {
        let path = super::leftovers::temp_file(extension);
        let registration = leftovers
            .register("restore", Leftover::TempFile { path: path.clone() })
            .map_err(FeedError::Other)?;
        Ok(TempFile(path, Some(registration)))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let removed = match std::fs::remove_file(&self.0) {
            Ok(()) => true,
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        };
        if let Some(registration) = self.1.take()
            && removed
        {
            registration.done();
        }
    }
}

/// A restore's partial file, removed when dropped (after the rename: already gone), and its
/// leftover record forgotten once it is; a file that cannot be removed keeps its record.
struct PartialFile {
    path: PathBuf,
    registration: Option<Registration>,
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        let removed = match std::fs::remove_file(&self.path) {
            Ok(()) => true,
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        };
        if let Some(registration) = self.registration.take()
            && removed
        {
            registration.done();
        }
    }
}

/// Marks each write of a restored stream as the test-only fault point `restore-stream` (see
/// [`crate::fault`]), so a test can kill a restore half way through its data.
struct FaultPoints<W>(W);

impl<W: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for FaultPoints<W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        crate::fault::point("restore-stream");
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Runs `tool` on the recovery point's stream: piped to its stdin, or, for parallel jobs,
/// staged in a temporary file it is given. With `stdout`, what the tool prints is copied into
/// it as it comes (not with parallel jobs). Returns the bytes read from the vault.
#[allow(clippy::too_many_arguments)]
async fn feed_tool(
    vault: &Vault,
    manifest: &Manifest,
    tool: &std::path::Path,
    mut args: Vec<String>,
    env: &[(String, String)],
    scrub: Vec<String>,
    selection: &Selection,
    written: Arc<AtomicU64>,
    stdout: Option<&mut (dyn tokio::io::AsyncWrite + Unpin + Send)>,
) -> std::result::Result<u64, FeedError> {
    let other = FeedError::Other;
    let counter = written.clone();
    let list = match &selection.list {
        Some(text) => {
            let file = TempFile::register(&selection.leftovers, "list")?;
            let path = file.0.clone();
            std::fs::write(&path, text).map_err(|e| {
                other(Error::new(
                    "RestoreStagingFailed",
                    format!("cannot write `{}`: {e}", path.display()),
                ))
            })?;
            args.push(format!("--use-list={}", path.display()));
            Some(file)
        }
        None => None,
    };
    let index = crate::store::damage::load_readable_index(&vault.store)
        .await
        .map_err(|e| other(e.into()))?
        .0;
    let key = vault.config.chunk_key().map_err(other)?;
    let arg_refs = |args: &[String]| -> Vec<String> { args.to_vec() };

    if stdout.is_some() && selection.jobs.is_some() {
        return Err(other(Error::new(
            "InternalError",
            "a tool's output is passed on only when it reads its input from a pipe",
        )));
    }
    let (bytes, finished, copied) = if let Some(jobs) = selection.jobs {
        check_room(&std::env::temp_dir(), manifest.stream.length).map_err(other)?;
        let staged = TempFile::register(&selection.leftovers, "dump")?;
        let path = staged.0.clone();
        let file = tokio::fs::File::create(&path).await.map_err(|e| {
            other(Error::new(
                "RestoreStagingFailed",
                format!("cannot create `{}`: {e}", path.display()),
            ))
        })?;
        let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
        let bytes = read_stream(
            &vault.store,
            &index,
            &key,
            &manifest.stream,
            &mut out,
            written,
        )
        .await
        .map_err(|e| other(e.into()))?;
        out.into_inner().sync_all().await.map_err(|e| {
            other(Error::new(
                "RestoreStagingFailed",
                format!("cannot write the staged archive: {e}"),
            ))
        })?;
        crate::fault::point("restore-staged");
        args.push(format!("--jobs={jobs}"));
        args.push(path.display().to_string());
        let refs = arg_refs(&args);
        let argv: Vec<&str> = refs.iter().map(String::as_str).collect();
        let proc = ToolProcess::spawn(tool, &argv, env, Stdio::null(), Stdio::null(), scrub)
            .map_err(|e| other(e.into()))?;
        let finished = tokio::task::spawn_blocking(move || proc.wait())
            .await
            .map_err(|_| other(Error::new("InternalError", "waiting for pg_restore failed")))?;
        drop(staged);
        (Ok(bytes), finished, Ok(()))
    } else {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = if stdout.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        let mut proc = ToolProcess::spawn(tool, &argv, env, Stdio::piped(), output, scrub)
            .map_err(|e| other(e.into()))?;
        let stdin = proc.child_mut().stdin.take().expect("stdin is piped");
        let mut stdin = FaultPoints(tokio::process::ChildStdin::from_std(stdin).map_err(|e| {
            other(Error::new(
                "InternalError",
                format!("cannot drive pg_restore's input: {e}"),
            ))
        })?);
        let printed = match proc.child_mut().stdout.take() {
            Some(out) => Some(tokio::process::ChildStdout::from_std(out).map_err(|e| {
                other(Error::new(
                    "InternalError",
                    format!("cannot read pg_restore's output: {e}"),
                ))
            })?),
            None => None,
        };
        let feeding = async {
            let streamed = read_stream_ranges(
                &vault.store,
                &index,
                &key,
                &manifest.stream,
                selection.ranges.as_deref(),
                &mut stdin,
                written,
            )
            .await;
            let _ = stdin.shutdown().await;
            drop(stdin);
            streamed
        };
        // Both at once: a tool whose output nobody reads stops reading its input.
        let copying = async move {
            match (printed, stdout) {
                (Some(mut printed), Some(out)) => {
                    tokio::io::copy(&mut printed, out).await.map(|_| ())
                }
                _ => Ok(()),
            }
        };
        let (streamed, copied) = tokio::join!(feeding, copying);
        let finished = tokio::task::spawn_blocking(move || proc.wait())
            .await
            .map_err(|_| other(Error::new("InternalError", "waiting for pg_restore failed")))?;
        (streamed, finished, copied)
    };
    drop(list);
    use crate::store::reader::ReadError;
    match (finished, bytes) {
        // The vault could not give the stream (a missing or corrupt chunk): that is the cause,
        // whatever the tool then said about its input ending.
        (_, Err(e)) if !matches!(e, ReadError::Write(_)) => Err(other(e.into())),
        // The tool's output could not be passed on: the tool then only saw a closed pipe.
        _ if copied.is_err() => Err(other(Error::new(
            "RestoreTargetWriteFailed",
            format!(
                "cannot pass the tool's output on: {}",
                copied.err().map(|e| e.to_string()).unwrap_or_default()
            ),
        ))),
        // Otherwise the tool's own error explains more than a broken pipe does.
        (Err(e), _) => Err(FeedError::Tool(match e {
            crate::postgres::tools::ToolError::Failed { stderr, .. } => stderr,
            other => other.to_string(),
        })),
        // The tool succeeded without reading the whole stream (a schema-only or selective
        // restore stops once it has what it was asked for); what it read was verified.
        (Ok(_), Err(ReadError::Write(e))) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(counter.load(std::sync::atomic::Ordering::Relaxed))
        }
        (Ok(_), result) => result.map_err(|e| other(e.into())),
    }
}

/// Refuses to stage `needed` bytes where the disk has no room for them (with a margin).
fn check_room(dir: &std::path::Path, needed: u64) -> Result<()> {
    let margin = 64 << 20;
    let stat = nix::sys::statvfs::statvfs(dir).map_err(|e| {
        Error::new(
            "RestoreStagingFailed",
            format!("cannot read the free space of `{}`: {e}", dir.display()),
        )
    })?;
    let free = stat.blocks_available() as u64 * stat.fragment_size() as u64;
    if free < needed + margin {
        return Err(Error::new(
            "UserErrorInsufficientDiskSpace",
            format!(
                "a parallel restore stages the {needed}-byte archive in `{}`, which has {free} bytes free; free space there, point TMPDIR at a larger disk, or restore without --jobs",
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// `--format` of a restore as files (`true`: plain SQL), with the options that go with it
/// checked; the same for every target.
fn files_format(opts: &RestoreOptions) -> Result<bool> {
    let plain = match opts
        .format
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("custom") => false,
        Some("plain") => true,
        Some(other) => {
            return Err(Error::new(
                "UserErrorInvalidRestoreOption",
                format!("--format {other}: write custom (the archive as stored) or plain (SQL)"),
            ));
        }
    };
    if !plain && (opts.selects() || opts.keep_owners || opts.jobs.is_some()) {
        return Err(Error::new(
            "UserErrorInvalidRestoreOption",
            "a custom-format file is the whole archive as stored; select schemas or tables with --format plain, or pass them to pg_restore when you restore the file",
        ));
    }
    if opts.jobs.is_some_and(|j| j > 1) {
        return Err(Error::new(
            "UserErrorInvalidRestoreOption",
            "--jobs applies to a restore to a database (pg_restore writes SQL files on one thread)",
        ));
    }
    Ok(plain)
}

/// The file (or blob) name of a restore as files: `<filePrefix>.dump` for the custom format,
/// `<filePrefix>.sql` for plain SQL; without a prefix, `<database>-<recovery point>` made a
/// safe name ([`safe_file_name`]: a database may be called `../../x`). For a folder, an
/// explicit prefix must be a plain file name ([`check_plain_file_name`]); a blob name is
/// checked by [`blob_name`]. (Azure's documentation does not say how it names the files of a
/// restore as files, so pgvault names them this way for a folder and a Blob container alike.)
fn files_prefix_and_extension(
    target: &TargetDetails,
    manifest: &Manifest,
    plain: bool,
) -> Result<(String, &'static str)> {
    let prefix = if target.file_prefix.is_empty() {
        safe_file_name(&format!(
            "{}-{}",
            manifest.datasource.database, manifest.recovery_point_id
        ))
    } else {
        if !target.is_blob_container() {
            check_plain_file_name(&target.file_prefix)?;
        }
        target.file_prefix.clone()
    };
    Ok((prefix, if plain { "sql" } else { "dump" }))
}

/// The longest name pgvault makes or accepts for a restore's file, in bytes: with its
/// extension and the partial file's `.` and `.<pid>.partial`, well under the 255 of Linux
/// file systems.
const MAX_FILE_NAME: usize = 200;

/// `name` as a file (and blob) name that stays in its folder: path separators and control
/// characters become `_`, and so do leading dots (no `.` or `..`, no hidden file); at most
/// [`MAX_FILE_NAME`] bytes; never empty.
fn safe_file_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let dots = out.len() - out.trim_start_matches('.').len();
    out.replace_range(..dots, &"_".repeat(dots));
    if out.len() > MAX_FILE_NAME {
        let mut end = MAX_FILE_NAME;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    if out.is_empty() {
        out.push_str("database");
    }
    out
}

/// Refuses a `--target-file-name` for a folder that is not a plain file name: one that is
/// empty, holds a path separator or a control character, starts with a dot (`.`, `..`, a
/// hidden file) or is too long.
fn check_plain_file_name(name: &str) -> Result<()> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
        && name.len() <= MAX_FILE_NAME;
    if plain {
        return Ok(());
    }
    let shown: String = name.chars().take(80).collect();
    Err(Error::new(
        "UserErrorInvalidTarget",
        format!(
            "--target-file-name {shown:?} is not a plain file name: give a name without `/` or `\\`, not starting with a dot, of at most {MAX_FILE_NAME} bytes; the file is written in the target folder"
        ),
    ))
}

/// Writes what a restore as files produces into `out`, whatever the target: the archive as
/// stored (custom format), or for `--format plain` the SQL pg_restore makes of it with the
/// selection options (pg_restore writing to its stdout, copied into `out`). Returns the bytes
/// read from the vault and what the selection left out.
async fn write_files_output(
    vault: &Vault,
    manifest: &Manifest,
    opts: &RestoreOptions,
    plain: bool,
    out: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
    written: Arc<AtomicU64>,
    leftovers: &Leftovers,
) -> Result<(u64, Vec<String>)> {
    if plain {
        let mut selection = Selection::new(opts, manifest)?;
        selection.leftovers = leftovers.clone();
        for w in &selection.warnings {
            tracing::warn!("{w}");
        }
        let pg_restore = find_tool("pg_restore", major_of(&manifest.postgres.server_version))?;
        // `-`: stdout (pg_restore 17 and later want an output named when there is no database).
        let mut args = vec!["--file=-".to_owned()];
        args.extend(selection.args.iter().cloned());
        return feed_tool(
            vault,
            manifest,
            &pg_restore,
            args,
            &[],
            Vec::new(),
            &selection,
            written,
            Some(out),
        )
        .await
        .map(|bytes| (bytes, selection.warnings.clone()))
        .map_err(|e| match e {
            FeedError::Tool(stderr) => Error::new(
                "UserErrorPgRestoreFailed",
                format!("pg_restore could not write the SQL file: {stderr}"),
            ),
            FeedError::Other(e) => e,
        });
    }
    let index = crate::store::damage::load_readable_index(&vault.store)
        .await?
        .0;
    let key = vault.config.chunk_key()?;
    let mut out = FaultPoints(out);
    let bytes = read_stream(
        &vault.store,
        &index,
        &key,
        &manifest.stream,
        &mut out,
        written,
    )
    .await?;
    out.flush().await.map_err(|e| {
        Error::new(
            "RestoreTargetWriteFailed",
            format!("cannot write the dump: {e}"),
        )
    })?;
    Ok((bytes, Vec::new()))
}

async fn restore_to_file(
    vault: &Vault,
    manifest: &Manifest,
    target: &TargetDetails,
    opts: &RestoreOptions,
    written: Arc<AtomicU64>,
    leftovers: &Leftovers,
    track: &mut Tracker<'_>,
) -> Result<RestoreOutcome> {
    let plain = files_format(opts)?;
    if target.is_blob_container() {
        return restore_to_container(
            vault, manifest, target, opts, plain, written, leftovers, track,
        )
        .await;
    }
    let dir = match target.url.strip_prefix("file://") {
        Some(p) => PathBuf::from(p),
        None if target.url.starts_with('/') => PathBuf::from(&target.url),
        None => {
            return Err(Error::new(
                "UserErrorInvalidTarget",
                format!(
                    "restore-as-files target `{}` is not a folder (file:///path); for a Blob container, restoreTargetLocationType is {AZURE_BLOBS} (--target-blob-container-url)",
                    shown_url(&target.url)
                ),
            ));
        }
    };
    let io = |what: &str, e: std::io::Error| {
        if crate::store::disk::io_is_disk_full(&e) {
            return disk_full(&dir);
        }
        Error::new("RestoreTargetWriteFailed", format!("{what}: {e}"))
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| io(&format!("cannot create `{}`", dir.display()), e))?;
    let (prefix, extension) = files_prefix_and_extension(target, manifest, plain)?;
    let path = dir.join(format!("{prefix}.{extension}"));
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
    // The partial file is recorded before it exists, for the next pgvault to remove if this
    // one is killed; an absolute path, so the record means the same file from any folder.
    let dir = std::path::absolute(&dir)
        .map_err(|e| io(&format!("cannot resolve `{}`", dir.display()), e))?;
    let path = dir.join(format!("{prefix}.{extension}"));
    let partial = dir.join(format!(
        ".{prefix}.{extension}.{}.partial",
        std::process::id()
    ));
    track.done(format!("`{}` is free", path.display()));
    track.start(RestoreStep::Write);
    let registration = leftovers.register(
        "restore",
        Leftover::File {
            path: partial.clone(),
        },
    )?;
    let tmp = PartialFile {
        path: partial,
        registration: Some(registration),
    };
    let file = tokio::fs::File::create(&tmp.path)
        .await
        .map_err(|e| io(&format!("cannot create `{}`", tmp.path.display()), e))?;
    crate::fault::point("staging-created");
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
    let (_, warnings) =
        write_files_output(vault, manifest, opts, plain, &mut out, written, leftovers)
            .await
            .map_err(|e| {
                // The write error (ours, or pg_restore's for a plain SQL file) carries no errno
                // here; a target disk left without room is what it means.
                let writing = matches!(
                    e.code.as_str(),
                    "RestoreTargetWriteFailed" | "UserErrorPgRestoreFailed"
                );
                if writing && crate::store::disk::has_no_room(&dir) {
                    disk_full(&dir)
                } else {
                    e
                }
            })?;
    out.flush()
        .await
        .map_err(|e| io("cannot write the file", e))?;
    let file = out.into_inner();
    file.sync_all()
        .await
        .map_err(|e| io("cannot flush the file", e))?;
    let bytes_written = file
        .metadata()
        .await
        .map_err(|e| io("cannot read the file's size", e))?
        .len();
    track.done(format!("{bytes_written} bytes written"));
    track.start(RestoreStep::Commit);
    crate::fault::point("before-rename");
    tokio::fs::rename(&tmp.path, &path)
        .await
        .map_err(|e| io("cannot rename the file into place", e))?;
    drop(tmp);
    track.done(format!("renamed to `{}`", path.display()));
    Ok(RestoreOutcome {
        bytes_written,
        target: json!({ "file": path.display().to_string() }),
        warnings,
        owners_not_kept: None,
    })
}

/// A restore target's disk is full.
fn disk_full(dir: &std::path::Path) -> Error {
    Error::new(
        "UserErrorDiskFull",
        crate::store::disk::disk_full_message(dir),
    )
}

/// Upload parts in flight at once: with [`blob_part_size`], what bounds a restore's memory.
const UPLOAD_CONCURRENCY: usize = 4;

/// The size of each uploaded part: 8 MiB, or more for a dump that would otherwise need more
/// than Azure's 50,000 blocks (a plain SQL file is guessed at 16 times the compressed
/// archive, with room to spare).
fn blob_part_size(stream_length: u64, plain: bool) -> usize {
    const MIB: u64 = 1 << 20;
    let expected = stream_length.saturating_mul(if plain { 16 } else { 1 });
    let needed = expected.div_ceil(45_000).div_ceil(MIB) * MIB;
    needed.clamp(8 * MIB, 2048 * MIB) as usize
}

/// A restore as files into a Blob container (Azure's `AzureBlobs` target): the same output
/// as for a folder, streamed into the blob `<prefix>/<filePrefix>.dump` (or `.sql`) of the
/// container by a multipart upload (Put Block, then Put Block List), so memory stays bounded
/// whatever the size of the dump and the blob appears only whole: a failed or cancelled
/// restore commits nothing under the name (the upload is aborted; uncommitted blocks expire).
///
/// `FailIfExists`: the blob is looked up (HEAD) before anything is written and an existing one
/// is refused. `object_store` offers create-only semantics (`PutMode::Create`) for single puts
/// only, not for multipart uploads, so a blob created by someone else between that check and
/// the commit would be replaced.
///
/// Credentials come from the environment variables a Blob vault uses
/// ([`crate::store::azure::build_store`]); an error never shows a SAS.
#[allow(clippy::too_many_arguments)]
async fn restore_to_container(
    vault: &Vault,
    manifest: &Manifest,
    target: &TargetDetails,
    opts: &RestoreOptions,
    plain: bool,
    written: Arc<AtomicU64>,
    leftovers: &Leftovers,
    track: &mut Tracker<'_>,
) -> Result<RestoreOutcome> {
    use object_store::{ObjectStore, WriteMultipart};

    let location = blob_location(&target.url)?;
    let (prefix, extension) = files_prefix_and_extension(target, manifest, plain)?;
    let name = blob_name(&prefix, extension)?;
    let blob_url = format!("{}/{name}", shown_url(target.url.trim_end_matches('/')));
    let store: Arc<dyn ObjectStore> = crate::store::azure::AzureAuth::from_env()
        .and_then(|auth| crate::store::azure::build_store(&location, &auth))
        .map_err(|e| {
            Error::new(
                "UserErrorInvalidTarget",
                format!("cannot open the Blob container for `{blob_url}`: {e}"),
            )
        })?;
    match store.head(&name).await {
        Ok(_) => {
            return Err(Error::new(
                "UserErrorFileAlreadyExists",
                format!(
                    "blob `{blob_url}` already exists and the recovery option is FailIfExists; choose another --target-file-name, or delete the blob first"
                ),
            ));
        }
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(blob_error(&location, &blob_url, "cannot look up", e)),
    }
    track.done(format!("blob `{blob_url}` is free"));
    track.start(RestoreStep::Write);
    let upload = store
        .put_multipart(&name)
        .await
        .map_err(|e| blob_error(&location, &blob_url, "cannot start writing", e))?;
    let mut parts =
        WriteMultipart::new_with_chunk_size(upload, blob_part_size(manifest.stream.length, plain));
    let (tx, rx) = tokio::io::duplex(1 << 20);
    let produce = async move {
        let mut tx = tx;
        let produced =
            write_files_output(vault, manifest, opts, plain, &mut tx, written, leftovers).await;
        // End of input for the upload (on success and failure alike; a failure is not
        // committed, below).
        let _ = tx.shutdown().await;
        produced
    };
    let (produced, pumped) = tokio::join!(produce, pump_into_upload(rx, &mut parts));
    let finished = match (produced, pumped) {
        // The upload failing is the cause: the writer then only saw a closed pipe.
        (_, Err(e)) => Err(blob_error(&location, &blob_url, "cannot write", e)),
        (Err(e), Ok(_)) => Err(e),
        (Ok((_, warnings)), Ok(bytes)) => match parts.wait_for_capacity(0).await {
            Ok(()) => Ok((bytes, warnings)),
            Err(e) => Err(blob_error(&location, &blob_url, "cannot write", e)),
        },
    };
    let (bytes_written, warnings) = match finished {
        Ok(done) => done,
        Err(e) => {
            if let Err(abort) = parts.abort().await {
                tracing::warn!(blob = %blob_url, error = %crate::store::azure::redact(&abort.to_string()), "could not abort the upload");
            }
            return Err(e);
        }
    };
    track.done(format!("{bytes_written} bytes uploaded"));
    track.start(RestoreStep::Commit);
    parts
        .finish()
        .await
        .map_err(|e| blob_error(&location, &blob_url, "cannot commit", e))?;
    track.done(format!("blob `{blob_url}` committed"));
    Ok(RestoreOutcome {
        bytes_written,
        target: json!({ "blob": blob_url }),
        warnings,
        owners_not_kept: None,
    })
}

/// Copies `input` into the upload until its end, waiting for a free upload slot before each
/// piece so at most [`UPLOAD_CONCURRENCY`] parts are in flight. Returns the bytes copied.
async fn pump_into_upload(
    mut input: tokio::io::DuplexStream,
    parts: &mut object_store::WriteMultipart,
) -> object_store::Result<u64> {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0u64;
    loop {
        let n = input
            .read(&mut buf)
            .await
            .map_err(|e| object_store::Error::Generic {
                store: "restore",
                source: Box::new(e),
            })?;
        if n == 0 {
            return Ok(total);
        }
        parts.wait_for_capacity(UPLOAD_CONCURRENCY).await?;
        parts.write(&buf[..n]);
        total += n as u64;
    }
}

/// A Blob Storage error of a restore as files, said for the user, without any SAS.
fn blob_error(
    location: &AzureLocation,
    blob_url: &str,
    what: &str,
    e: object_store::Error,
) -> Error {
    use crate::store::azure::redact;
    match e {
        object_store::Error::NotFound { .. } => Error::new(
            "UserErrorContainerNotFound",
            format!(
                "{what} `{blob_url}`: container `{}` does not exist in storage account `{}`; create it first (a restore writes into an existing container)",
                location.container(),
                location.account()
            ),
        ),
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => Error::new(
            "UserErrorTargetAccessDenied",
            redact(&format!(
                "{what} `{blob_url}`: access denied ({e}); check AZURE_STORAGE_ACCOUNT_KEY or AZURE_STORAGE_SAS_TOKEN (a SAS needs read, create and write permission on the container)"
            )),
        ),
        e => Error::new(
            "RestoreTargetWriteFailed",
            redact(&format!("{what} `{blob_url}`: {e}")),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_target_is_warned_about() {
        assert_eq!(major_of("15.4 (Debian 15.4-1.pgdg120+1)"), 15);
        assert_eq!(major_of("17beta2"), 17);
        assert!(version_warning(15, 15).is_none());
        assert!(version_warning(15, 17).is_none(), "forward is supported");
        let w = version_warning(17, 15).unwrap();
        assert!(
            w.contains("PostgreSQL 17") && w.contains("PostgreSQL 15"),
            "{w}"
        );
    }

    #[test]
    fn ownership_statements_naming_missing_roles_are_left_out() {
        let sql = r#"
SET statement_timeout = 0;
CREATE TABLE public.notes (id integer);
ALTER TABLE public.notes OWNER TO owner;
ALTER TABLE public.gone OWNER TO "Ghost ""Role""";
GRANT SELECT ON TABLE public.notes TO reader;
GRANT SELECT ON TABLE public.notes TO reader, ghost WITH GRANT OPTION;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE ghost IN SCHEMA public GRANT SELECT ON TABLES TO reader;
ALTER DEFAULT PRIVILEGES FOR ROLE owner IN SCHEMA public GRANT SELECT ON TABLES TO reader;
"#;
        let existing: std::collections::HashSet<String> =
            ["owner", "reader"].iter().map(|s| s.to_string()).collect();
        let (kept, skipped) = ownership_statements(sql, &existing);
        assert_eq!(
            kept,
            [
                "ALTER TABLE public.notes OWNER TO owner;",
                "GRANT SELECT ON TABLE public.notes TO reader;",
                "REVOKE ALL ON SCHEMA public FROM PUBLIC;",
                "ALTER DEFAULT PRIVILEGES FOR ROLE owner IN SCHEMA public GRANT SELECT ON TABLES TO reader;",
            ]
        );
        assert_eq!(
            skipped.into_iter().collect::<Vec<_>>(),
            ["Ghost \"Role\"", "ghost"]
        );
    }

    #[test]
    fn staging_is_refused_where_the_disk_has_no_room() {
        let dir = std::env::temp_dir();
        assert!(check_room(&dir, 1).is_ok());
        // More than any disk holds.
        let error = check_room(&dir, u64::MAX / 4).unwrap_err();
        assert_eq!(error.code, "UserErrorInsufficientDiskSpace");
        assert!(
            error.message.contains("TMPDIR") && error.message.contains("without --jobs"),
            "{}",
            error.message
        );
    }

    #[test]
    fn contradictory_or_misplaced_options_are_refused() {
        let m = |opts: RestoreOptions| {
            Selection::new(&opts, &test_manifest())
                .map(|_| ())
                .unwrap_err()
                .message
        };
        assert!(
            m(RestoreOptions {
                schema_only: true,
                data_only: true,
                ..Default::default()
            })
            .contains("exclude each other")
        );
        assert!(
            m(RestoreOptions {
                jobs: Some(0),
                ..Default::default()
            })
            .contains("1 to 64")
        );
        // Excluding needs the recorded table of contents.
        assert!(
            m(RestoreOptions {
                exclude_tables: vec!["t".into()],
                ..Default::default()
            })
            .contains("table of contents")
        );
    }

    /// The request for a Blob container is Azure's `RestoreFilesTargetInfo` with an
    /// `AzureBlobs` target, field for field as in the corpus's TriggerRestoreAsFiles.
    #[test]
    fn a_restore_to_a_container_is_azures_request() {
        let text = std::fs::read_to_string(format!(
            "{}/../../tests/conformance/azure/TriggerRestoreAsFiles.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let azure: Value = serde_json::from_str(&text).unwrap();
        let azure = &azure["parameters"]["parameters"];
        let req = initialize_for_data_recovery_to_files(
            "hardcodedRP",
            &FilesTarget::BlobContainer(
                "https://teststorage.blob.core.windows.net/restoretest/".into(),
            ),
            "restoredblob",
            None,
        )
        .unwrap();
        let ours = serde_json::to_value(&req).unwrap();
        for key in ["objectType", "recoveryPointId", "sourceDataStoreType"] {
            assert_eq!(ours[key], azure[key], "{key}");
        }
        let (ours, azure) = (&ours["restoreTargetInfo"], &azure["restoreTargetInfo"]);
        for key in ["objectType", "recoveryOption", "targetDetails"] {
            assert_eq!(ours[key], azure[key], "{key}");
        }
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(ours), keys(azure));
        // And it reads back as a container target.
        let back: RestoreRequest =
            serde_json::from_value(serde_json::to_value(&req).unwrap()).unwrap();
        let RestoreTarget::Files { target_details, .. } = back.restore_target_info else {
            panic!("not a files target");
        };
        assert!(target_details.is_blob_container());
        // The folder form is unchanged.
        let folder = initialize_for_data_recovery_as_files("rp", "/srv/out", "x", None).unwrap();
        let folder = serde_json::to_value(folder).unwrap();
        assert_eq!(
            folder["restoreTargetInfo"]["targetDetails"],
            json!({"filePrefix": "x", "restoreTargetLocationType": "FileSystem", "url": "file:///srv/out"})
        );
    }

    #[test]
    fn exactly_one_files_target_is_given() {
        assert_eq!(
            FilesTarget::choose(Some("/srv/out"), None).unwrap(),
            FilesTarget::Directory("/srv/out".into())
        );
        assert_eq!(
            FilesTarget::choose(None, Some("https://acct1.blob.core.windows.net/restores"))
                .unwrap(),
            FilesTarget::BlobContainer("https://acct1.blob.core.windows.net/restores".into())
        );
        assert_eq!(
            FilesTarget::choose(Some(" "), Some("az://acct1/restores")).unwrap(),
            FilesTarget::BlobContainer("az://acct1/restores".into())
        );
        let both = FilesTarget::choose(Some("/srv/out"), Some("az://acct1/restores")).unwrap_err();
        assert_eq!(both.code, "UserErrorInvalidTarget");
        assert!(both.message.contains("not both"), "{}", both.message);
        let none = FilesTarget::choose(None, Some("")).unwrap_err();
        assert!(
            none.message.contains("--target-blob-container-url")
                && none.message.contains("--target-directory"),
            "{}",
            none.message
        );
    }

    #[test]
    fn bad_container_urls_and_blob_names_are_refused_without_showing_a_sas() {
        let init = |url: &str, prefix: &str| {
            initialize_for_data_recovery_to_files(
                "rp",
                &FilesTarget::BlobContainer(url.into()),
                prefix,
                None,
            )
            .map(|_| ())
            .unwrap_err()
            .message
        };
        for (url, want) in [
            (
                "https://example.com/restores",
                "blob.core.windows.net/<container>",
            ),
            ("/srv/out", "not a Blob container URL"),
            ("https://acct1.blob.core.windows.net/", "name a container"),
            (
                "https://acct1.blob.core.windows.net/Bad_Name",
                "not a container name",
            ),
            (
                "https://acct1.blob.core.windows.net/restores?sv=1&sig=SECRET",
                "no query string",
            ),
            (
                "https://example.com/restores?sv=1&sig=SECRET",
                "not a Blob container URL",
            ),
        ] {
            let message = init(url, "");
            assert!(message.contains(want), "{url}: {message}");
            assert!(!message.contains("SECRET"), "{message}");
        }
        for prefix in ["../x", "/x", "a//b", "a/./b"] {
            let message = init("https://acct1.blob.core.windows.net/restores", prefix);
            assert!(message.contains("not a blob name"), "{prefix}: {message}");
        }
        assert_eq!(
            blob_name("daily/empdb11", "sql").unwrap().as_ref(),
            "daily/empdb11.sql"
        );
    }

    #[test]
    fn upload_parts_stay_within_azures_block_count() {
        const MIB: usize = 1 << 20;
        assert_eq!(blob_part_size(0, false), 8 * MIB);
        assert_eq!(blob_part_size(100 << 30, false), 8 * MIB);
        // 1 TiB of archive: fewer than 50,000 blocks.
        let part = blob_part_size(1 << 40, false);
        assert!((1u64 << 40).div_ceil(part as u64) < 50_000, "{part}");
        assert!(blob_part_size(1 << 40, true) > part);
    }

    #[test]
    fn the_job_records_the_file_written_and_its_size() {
        let outcome = RestoreOutcome {
            bytes_written: 42,
            target: json!({"blob": "https://acct1.blob.core.windows.net/restores/x.dump"}),
            warnings: Vec::new(),
            owners_not_kept: None,
        };
        assert_eq!(
            outcome.job_details(),
            [
                (
                    "RestoreTargetBlob".to_owned(),
                    "https://acct1.blob.core.windows.net/restores/x.dump".to_owned()
                ),
                ("BytesWritten".to_owned(), "42".to_owned())
            ]
        );
        let outcome = RestoreOutcome {
            bytes_written: 1,
            target: json!({"database": "postgres://h:5432/d"}),
            warnings: Vec::new(),
            owners_not_kept: None,
        };
        assert!(outcome.job_details().is_empty());
        let outcome = RestoreOutcome {
            owners_not_kept: Some("appowner: TABLE public.rental".into()),
            ..outcome
        };
        assert_eq!(
            outcome.job_details(),
            [(
                "OwnersNotKept".to_owned(),
                "appowner: TABLE public.rental".to_owned()
            )]
        );
    }

    #[test]
    fn a_restore_file_name_never_leads_out_of_its_folder() {
        let mut manifest = test_manifest();
        let folder = |prefix: &str| TargetDetails {
            file_prefix: prefix.into(),
            restore_target_location_type: FILE_SYSTEM.into(),
            url: "file:///restores".into(),
        };
        for (database, expected) in [
            ("a/../b", "a_.._b-rp"),
            ("../../etc/x", "___.._etc_x-rp"),
            ("..", "__-rp"),
            (".hidden", "_hidden-rp"),
            ("back\\slash\nnew", "back_slash_new-rp"),
            ("plain_name", "plain_name-rp"),
        ] {
            manifest.datasource.database = database.into();
            let (prefix, ext) = files_prefix_and_extension(&folder(""), &manifest, false).unwrap();
            assert_eq!(prefix, expected, "{database}");
            assert_eq!(ext, "dump");
            let path = std::path::Path::new("/restores").join(format!("{prefix}.{ext}"));
            assert_eq!(path.parent(), Some(std::path::Path::new("/restores")));
            assert!(path.components().all(|c| matches!(
                c,
                std::path::Component::RootDir | std::path::Component::Normal(_)
            )));
        }
        manifest.datasource.database = "é".repeat(150);
        let (prefix, _) = files_prefix_and_extension(&folder(""), &manifest, false).unwrap();
        assert!(prefix.len() <= MAX_FILE_NAME && prefix.starts_with('é'));
        // An explicit name must be plain for a folder; a blob name may have folders.
        for bad in ["../x", "a/b", "..", ".", ".hidden", "a\\b", "a\nb"] {
            let e = files_prefix_and_extension(&folder(bad), &manifest, true).unwrap_err();
            assert_eq!(e.code, "UserErrorInvalidTarget", "{bad}");
            assert!(e.message.contains("plain file name"), "{}", e.message);
        }
        let blob = TargetDetails {
            file_prefix: "restores/empdb".into(),
            restore_target_location_type: AZURE_BLOBS.into(),
            url: "https://acct.blob.core.windows.net/c".into(),
        };
        assert!(files_prefix_and_extension(&blob, &manifest, false).is_ok());
        let long = folder(&"x".repeat(MAX_FILE_NAME + 1));
        assert!(files_prefix_and_extension(&long, &manifest, true).is_err());
        assert_eq!(
            files_prefix_and_extension(&folder("empdb-2026"), &manifest, true).unwrap(),
            ("empdb-2026".to_owned(), "sql")
        );
        assert!(initialize_for_data_recovery_as_files("rp", "/restores", "../up", None).is_err());
        assert!(initialize_for_data_recovery_as_files("rp", "/restores", "fine", None).is_ok());
    }

    fn test_manifest() -> Manifest {
        let json = serde_json::json!({
            "formatVersion": 1, "recoveryPointId": "rp", "backupInstanceName": "i",
            "recoveryPointTime": "2026-01-01T00:00:00Z", "policyName": "P",
            "policyRuleName": "BackupWeekly", "retentionTagName": "Default", "expiryTime": null,
            "jobId": "", "datasource": {"resourceId": "x", "server": "h", "port": 5432, "database": "d"},
            "postgres": {"serverVersion": "17", "pgDumpVersion": "17", "databaseSize": 0, "usernameUsed": "u"},
            "chunker": {"algorithm": "fastcdc-2020", "minSize": 1, "avgSize": 2, "maxSize": 4},
            "stream": {"length": 0, "chunksBlake3": "", "chunkCount": 0, "chunkLists": []},
            "archive": null,
            "stats": {"bytesRead": 0, "bytesStored": 0, "newChunks": 0, "durationMs": 0}
        });
        serde_json::from_value(json).unwrap()
    }
}
