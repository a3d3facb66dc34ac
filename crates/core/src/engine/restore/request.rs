//! The restore requests `restore initialize-for-data-recovery` and
//! `initialize-for-data-recovery-as-files` print: Azure's `RestoreRequest` for a database
//! target or a files target (a folder, pgvault's, or a Blob container, Azure's), checked here
//! so a request that cannot run is refused before anything is contacted.

use super::blob::{blob_location, blob_name};
use super::files::check_plain_file_name;
use crate::engine::{Error, Result};
use crate::model::code::ErrorCode;
use crate::model::instance::{AuthCredentials, DatasourceInfo, SecretStoreResource};
use crate::model::restore::{
    AZURE_BLOBS, FAIL_IF_EXISTS, FILE_SYSTEM, RestoreRequest, RestoreTarget, TargetDetails,
};
use crate::postgres::connection::Datasource;
use crate::secrets::{SecretRef, SecretStoreType};

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
    Ok(request(
        recovery_point_id,
        source_resource_id,
        RestoreTarget::Database {
            recovery_option: FAIL_IF_EXISTS.into(),
            restore_location: "local".into(),
            datasource_info: info("Datasource", ds.to_string(), ds.database().to_string()),
            datasource_set_info: Some(info(
                "DatasourceSet",
                ds.server_url(),
                ds.server_name().to_string(),
            )),
            datasource_auth_credentials: Some(AuthCredentials {
                object_type: "SecretStoreBasedAuthCredentials".into(),
                secret_store_resource: SecretStoreResource {
                    secret_store_type: store_type.to_string(),
                    uri: secret_store_uri.into(),
                },
            }),
        },
    ))
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
                ErrorCode::UserErrorInvalidTarget,
                "give one restore-as-files target, not both: --target-directory (a folder) or --target-blob-container-url (a Blob container)",
            )),
            (None, None) => Err(Error::new(
                ErrorCode::UserErrorInvalidTarget,
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
                    .map_err(|e| {
                        Error::caused_by(ErrorCode::UserErrorInvalidTarget, e.to_string(), e)
                    })?
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
    Ok(request(
        recovery_point_id,
        source_resource_id,
        RestoreTarget::Files {
            recovery_option: FAIL_IF_EXISTS.into(),
            restore_location: "local".into(),
            target_details: TargetDetails {
                file_prefix: file_prefix.into(),
                restore_target_location_type: location_type.into(),
                url,
            },
        },
    ))
}

/// A restore request from the vault tier, as az's `initialize-for-data-recovery*` print one,
/// with pgvault's options left at their defaults.
fn request(
    recovery_point_id: &str,
    source_resource_id: Option<String>,
    restore_target_info: RestoreTarget,
) -> RestoreRequest {
    RestoreRequest {
        object_type: "AzureBackupRecoveryPointBasedRestoreRequest".into(),
        recovery_point_id: recovery_point_id.into(),
        source_data_store_type: "VaultStore".into(),
        pgvault_restore_options: Default::default(),
        source_resource_id,
        restore_target_info,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

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
        assert_eq!(both.code.as_str(), "UserErrorInvalidTarget");
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
}
