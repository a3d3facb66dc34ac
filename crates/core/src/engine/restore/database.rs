//! A restore into a database: the target must not exist (Azure's `FailIfExists`), the
//! restore goes into a staging database of its own name and takes the target's name only when
//! complete; a failed or cancelled restore drops it. [`CreatedDatabase`] is the same creation
//! for a drill's scratch database, and [`restore_whole`] fills one.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use serde_json::json;

use super::RestoreOutcome;
use super::options::Selection;
use super::owners::apply_owners_and_privileges;
use super::pg_restore::run_pg_restore;
use super::steps::{RestoreStep, Tracker};
use crate::engine::leftovers::{Leftover, Leftovers, Registration, error_chain};
use crate::engine::vault::Vault;
use crate::engine::{Error, Result};
use crate::model::code::ErrorCode;
use crate::model::restore::RestoreOptions;
use crate::postgres::connection::{ConnectParams, ConnectionString, Datasource};
use crate::postgres::quote_ident;
use crate::secrets::ResolveSecret as _;
use crate::secrets::SecretRef;
use crate::store::manifest::Manifest;

#[allow(clippy::too_many_arguments)]
pub(super) async fn restore_to_database(
    vault: &Vault,
    manifest: &Manifest,
    (ds, secret): (&Datasource, &SecretRef),
    opts: &RestoreOptions,
    written: Arc<AtomicU64>,
    leftovers: &Leftovers,
    track: &mut Tracker<'_>,
) -> Result<RestoreOutcome> {
    let Target {
        mut selection,
        params,
        admin,
        user,
    } = Target::prepare(manifest, (ds, secret), opts).await?;
    selection.leftovers = leftovers.clone();
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
        crate::engine::leftovers::STAGING_PREFIX,
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let (quoted, quoted_staging) = (quote_ident(ds.database()), quote_ident(&staging));
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
            ErrorCode::UserErrorMissingDBPermissions,
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
            ErrorCode::UserErrorDatabaseNameAlreadyInUse,
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

/// What a restore to a database would check before writing anything (`validateRestore`):
/// the options against the recovery point, the secret, the connection to the server, that the
/// target database does not exist and that the user may create it.
pub(crate) async fn check_database_target(
    manifest: &Manifest,
    target: (&Datasource, &SecretRef),
    opts: &RestoreOptions,
) -> Result<()> {
    Target::prepare(manifest, target, opts).await.map(|_| ())
}

/// A restore's target, checked before anything is written: the options against the
/// recovery point, the secret, a session to the server's maintenance database, the target
/// database free, and its user allowed to create it.
struct Target {
    selection: Selection,
    params: ConnectParams,
    admin: tokio_postgres::Client,
    user: String,
}

impl Target {
    async fn prepare(
        manifest: &Manifest,
        (ds, secret): (&Datasource, &SecretRef),
        opts: &RestoreOptions,
    ) -> Result<Target> {
        if opts.format.is_some() {
            return Err(Error::new(
                ErrorCode::UserErrorInvalidRestoreOption,
                "--format applies to a restore as files; a restore to a database runs pg_restore",
            ));
        }
        let selection = Selection::new(opts, manifest)?;
        let conn = ConnectionString::parse(&secret.resolve().await?)?;
        // The target database does not exist yet: the secret names the server (often with its
        // maintenance database), not the target.
        let params = ConnectParams::for_server(ds, &conn);
        // Create the target from the server's maintenance database.
        let admin = params.with_database("postgres").connect().await?;
        refuse_existing(&admin, ds.database(), &ds.server_url()).await?;
        let (user, can_create): (String, bool) = {
            let row = admin
                .query_one(
                    "SELECT current_user::text, rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user",
                    &[],
                )
                .await
                .map_err(|e| Error::caused_by(ErrorCode::UserErrorDBQueryFailed, e.to_string(), e))?;
            (row.get(0), row.get(1))
        };
        if !can_create {
            let quoted_user = quote_ident(&user);
            return Err(Error::new(
                ErrorCode::UserErrorMissingDBPermissions,
                format!(
                    "user `{user}` cannot create databases on {}, and a restore creates its target. Grant it, as a superuser:\n\n    ALTER ROLE {quoted_user} CREATEDB;\n",
                    ds.server_url()
                ),
            ));
        }
        Ok(Target {
            selection,
            params,
            admin,
            user,
        })
    }
}

/// Refuses a target database that exists on `server` (Azure's `FailIfExists`), asked through
/// `admin`, a session to the server's maintenance database: a restore and a drill create
/// their database, so what they drop when they fail is always their own.
async fn refuse_existing(admin: &tokio_postgres::Client, name: &str, server: &str) -> Result<()> {
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .map_err(|e| Error::caused_by(ErrorCode::UserErrorDBQueryFailed, e.to_string(), e))?
        .is_some();
    if exists {
        return Err(Error::new(
            ErrorCode::UserErrorDatabaseNameAlreadyInUse,
            format!("database `{name}` already exists on {server}; restore to a new database name"),
        ));
    }
    Ok(())
}

/// Creates the schemas a selective restore needs (owned by the restoring user, as `public` is).
pub(super) async fn create_schemas(params: &ConnectParams, schemas: &[String]) -> Result<u64> {
    if schemas.is_empty() {
        return Ok(0);
    }
    let client = params.connect().await?;
    for schema in schemas {
        let quoted = quote_ident(schema);
        client
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {quoted}"))
            .await
            .map_err(|e| {
                Error::caused_by(
                    ErrorCode::UserErrorDBQueryFailed,
                    format!("cannot create schema `{schema}` for the restore: {e}"),
                    e,
                )
            })?;
    }
    Ok(0)
}

/// Drops the staging database when a restore's future is dropped part-way (a cancelled job),
/// from a task of its own, and then forgets its record; a drop that fails keeps the record for
/// the next pgvault.
pub(super) struct DropOnCancel {
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
                match crate::engine::leftovers::drop_database(&params, &name).await {
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
        let server = Datasource::new(params.host(), params.port(), &name)
            .map(|ds| ds.server_url())
            .unwrap_or_else(|_| params.host().to_owned());
        refuse_existing(&admin, &name, &server).await?;
        let quoted: String = admin
            .query_one("SELECT quote_ident($1)", &[&name])
            .await
            .map_err(|e| Error::caused_by(ErrorCode::UserErrorDBQueryFailed, e.to_string(), e))?
            .get(0);
        admin.batch_execute(&format!("CREATE DATABASE {quoted}")).await.map_err(|e| {
            Error::caused_by(
                ErrorCode::UserErrorMissingDBPermissions,
                format!("cannot create database `{name}`: {e}; the restoring user needs CREATEDB (ALTER USER ... CREATEDB)"),
                e,
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
