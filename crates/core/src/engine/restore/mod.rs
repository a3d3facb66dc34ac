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
//!
//! One job per file: [`request`] builds the requests `initialize-for-data-recovery*` print;
//! [`steps`] the steps told to the host; [`database`] a restore into a new database (staging
//! database, renamed at the end) and the scratch database of a drill; [`options`] a request's
//! options as pg_restore arguments; [`selection`] the pure `--use-list` plan; [`pg_restore`]
//! the tool fed from the vault; [`owners`] `--keep-owners`; [`files`] a restore as files into
//! a folder and [`blob`] into a Blob container.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use serde_json::Value;

use super::leftovers::Leftovers;
use super::vault::Vault;
use super::{Error, Result};
use crate::model::code::ErrorCode;
use crate::model::policy::DataStoreType;
use crate::model::restore::{FAIL_IF_EXISTS, RestoreRequest, RestoreTarget};
use crate::postgres::connection::Datasource;
use crate::secrets::SecretRef;

mod blob;
mod database;
mod files;
mod options;
mod owners;
mod pg_restore;
mod request;
mod selection;
mod steps;

use database::restore_to_database;
pub(crate) use database::{CreatedDatabase, restore_whole};
use files::restore_to_file;
pub use pg_restore::version_warning;
pub use request::{
    FilesTarget, initialize_for_data_recovery, initialize_for_data_recovery_as_files,
    initialize_for_data_recovery_to_files,
};
use steps::Tracker;
pub use steps::{NoRestoreSteps, RestoreStep, RestoreSteps};

/// A restore request's `sourceDataStoreType`: `VaultStore`, or `ArchiveStore` for a rehydrated
/// recovery point.
pub fn source_datastore(text: &str) -> Result<DataStoreType> {
    match text.parse::<DataStoreType>() {
        Ok(t @ (DataStoreType::VaultStore | DataStoreType::ArchiveStore)) => Ok(t),
        _ => Err(Error::new(
            ErrorCode::UserErrorDataStoreNotSupported,
            format!("`{text}` is not a datastore to restore from: use VaultStore or ArchiveStore"),
        )),
    }
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
    let manifest = restorable(vault, instance, req, chrono::Utc::now()).await?;
    let damaged =
        |e| super::damaged_point_guidance(e, vault.name(), instance, &req.recovery_point_id);
    let opts = &req.pgvault_restore_options;
    let restored = match &req.restore_target_info {
        RestoreTarget::Database {
            recovery_option,
            datasource_info,
            datasource_auth_credentials,
            ..
        } => {
            check_recovery_option(recovery_option)?;
            let ds: Datasource = datasource_info.resource_id.parse()?;
            let secret = target_secret(datasource_auth_credentials.as_ref())?;
            let to = (&ds, &secret);
            restore_to_database(vault, &manifest, to, opts, written, leftovers, track).await
        }
        RestoreTarget::Files {
            recovery_option,
            target_details,
            ..
        } => {
            check_recovery_option(recovery_option)?;
            let to = target_details;
            restore_to_file(vault, &manifest, to, opts, written, leftovers, track).await
        }
    };
    restored.map_err(damaged)
}

/// `validateRestore`: what [`restore`] checks before it writes anything, at `now`: the
/// request, that the recovery point can be restored from its source tier, and for a database
/// target the server, the secret and the privileges. Nothing is created.
pub async fn validate_restore(
    vault: &Vault,
    instance: &str,
    req: &RestoreRequest,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    let manifest = restorable(vault, instance, req, now).await?;
    match &req.restore_target_info {
        RestoreTarget::Database {
            recovery_option,
            datasource_info,
            datasource_auth_credentials,
            ..
        } => {
            check_recovery_option(recovery_option)?;
            let ds: Datasource = datasource_info.resource_id.parse()?;
            let secret = target_secret(datasource_auth_credentials.as_ref())?;
            database::check_database_target(&manifest, (&ds, &secret), &req.pgvault_restore_options)
                .await
        }
        RestoreTarget::Files {
            recovery_option, ..
        } => check_recovery_option(recovery_option),
    }
}

/// The manifest of the recovery point `req` names, once the instance exists and the point can
/// be restored from the request's source tier at `now`.
async fn restorable(
    vault: &Vault,
    instance: &str,
    req: &RestoreRequest,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<crate::store::manifest::Manifest> {
    let source = source_datastore(&req.source_data_store_type)?;
    vault.instance(instance).await?;
    vault
        .restorable_manifest(instance, &req.recovery_point_id, source, now)
        .await
}

/// The secret a restore into a database logs in to the target with.
fn target_secret(
    credentials: Option<&crate::model::instance::AuthCredentials>,
) -> Result<SecretRef> {
    let Some(credentials) = credentials else {
        return Err(Error::new(
            ErrorCode::UserErrorInvalidInput,
            "the restore request's restoreTargetInfo has no datasourceAuthCredentials: a restore \
             into a database needs a reference to the target's credentials \
             (`initialize-for-data-recovery --secret-store-uri` writes one)",
        ));
    };
    let store = &credentials.secret_store_resource;
    Ok(SecretRef::from_store(
        store.secret_store_type.parse()?,
        &store.uri,
    )?)
}

fn check_recovery_option(option: &str) -> Result<()> {
    if option.eq_ignore_ascii_case(FAIL_IF_EXISTS) {
        Ok(())
    } else {
        Err(Error::new(
            ErrorCode::UserErrorInvalidRecoveryOption,
            format!("recovery option `{option}` is not supported: use FailIfExists"),
        ))
    }
}

/// A recovery point's manifest for the unit tests.
#[cfg(test)]
pub(super) fn test_manifest() -> crate::store::manifest::Manifest {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
}
