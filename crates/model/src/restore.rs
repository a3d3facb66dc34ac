//! Restore requests, in Azure's `AzureBackupRecoveryPointBasedRestoreRequest` JSON.
//!
//! `backup-instance restore initialize-for-data-recovery[-as-files]` prints one and
//! `backup-instance restore trigger` runs it, as in the az CLI. Two targets: a database
//! on any server (`RestoreTargetInfo`, with its own secret reference for the target's
//! credentials) or files (`RestoreFilesTargetInfo`: the dump written into a Blob container,
//! `restoreTargetLocationType` `AzureBlobs` as in Azure, or into a folder, `FileSystem`,
//! pgvault's addition).

use serde::{Deserialize, Serialize};

use super::instance::{AuthCredentials, DatasourceInfo};

pub const FAIL_IF_EXISTS: &str = "FailIfExists";
/// `restoreTargetLocationType` of a restore as files into a Blob container (Azure's).
pub const AZURE_BLOBS: &str = "AzureBlobs";
/// `restoreTargetLocationType` of a restore as files into a folder (pgvault's).
pub const FILE_SYSTEM: &str = "FileSystem";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreRequest {
    #[serde(default = "request_object_type")]
    pub object_type: String,
    pub recovery_point_id: String,
    #[serde(default = "vault_store")]
    pub source_data_store_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_resource_id: Option<String>,
    pub restore_target_info: RestoreTarget,
    /// pgvault's restore options (not Azure's): what to restore and how.
    #[serde(default, skip_serializing_if = "RestoreOptions::is_default")]
    pub pgvault_restore_options: RestoreOptions,
}

/// What to restore and how, beyond Azure's whole-database restore: pg_restore's selection and
/// ownership options, parallelism, and the format of a restore as files.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RestoreOptions {
    /// Only these schemas: the schema itself and everything in it, with what that needs from
    /// elsewhere (functions, types); a foreign key to a table outside is left out, with a
    /// warning.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub schemas: Vec<String>,
    /// Only these tables, as `table` or `schema.table`, with their dependents (owned sequences
    /// and their values, defaults, indexes, constraints, triggers, comments, privileges) and
    /// what their definitions need. With `schemas`, the union of both.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    /// With `tables` or `schemas`: a selected table comes without its indexes, constraints
    /// (keys, foreign keys, separately dumped checks), triggers, rules, policies and
    /// statistics objects; its owned sequences, defaults, comments and privileges still come.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_table_dependents: bool,
    /// Everything but these tables (`table` or `schema.table`) and what depends on them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude_tables: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub schema_only: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub data_only: bool,
    /// Restore owners and privileges where the roles exist on the target and the restoring
    /// user may give objects to them (default: objects owned by the restoring user, as Azure
    /// restores); the rest stay with the restoring user, and the job lists them.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub keep_owners: bool,
    /// Parallel restore (pg_restore `-j`): the archive is staged in a temporary file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jobs: Option<u32>,
    /// For a restore as files: `custom` (the archive as stored, default) or `plain` (SQL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

impl RestoreRequest {
    /// Reads a request as `initialize-for-data-recovery[-as-files]` prints it, in pgvault's
    /// camelCase or the az CLI's snake_case (`restore_target_info`, `recovery_point_id`, ...),
    /// so either can be fed to `restore trigger`.
    pub fn from_value(mut value: serde_json::Value) -> Result<Self, serde_json::Error> {
        crate::resource::camel_case_keys(&mut value);
        serde_json::from_value(value)
    }
}

impl RestoreOptions {
    pub fn is_default(&self) -> bool {
        *self == RestoreOptions::default()
    }

    /// Whether anything narrows what is restored.
    pub fn selects(&self) -> bool {
        !self.schemas.is_empty()
            || !self.tables.is_empty()
            || !self.exclude_tables.is_empty()
            || self.schema_only
            || self.data_only
    }
}

fn request_object_type() -> String {
    "AzureBackupRecoveryPointBasedRestoreRequest".into()
}

fn vault_store() -> String {
    "VaultStore".into()
}

fn fail_if_exists() -> String {
    FAIL_IF_EXISTS.into()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "objectType")]
#[allow(clippy::large_enum_variant)] // one per request; boxing would only obscure the serde shape
pub enum RestoreTarget {
    #[serde(rename = "RestoreTargetInfo", rename_all = "camelCase")]
    Database {
        #[serde(default = "fail_if_exists")]
        recovery_option: String,
        #[serde(default)]
        restore_location: String,
        datasource_info: DatasourceInfo,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        datasource_set_info: Option<DatasourceInfo>,
        /// The target's credentials, which a restore into a database needs; optional in
        /// Azure's schema (its rehydration example leaves it out), so a request without it
        /// reads and the restore says what is missing.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        datasource_auth_credentials: Option<AuthCredentials>,
    },
    #[serde(rename = "RestoreFilesTargetInfo", rename_all = "camelCase")]
    Files {
        #[serde(default = "fail_if_exists")]
        recovery_option: String,
        #[serde(default)]
        restore_location: String,
        target_details: TargetDetails,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetDetails {
    pub file_prefix: String,
    pub restore_target_location_type: String,
    pub url: String,
}

impl TargetDetails {
    /// Whether the target is a Blob container (`AzureBlobs`) rather than a folder.
    pub fn is_blob_container(&self) -> bool {
        self.restore_target_location_type
            .eq_ignore_ascii_case(AZURE_BLOBS)
    }

    /// The Restore job's record of the target: its kind and its URL, with any query string
    /// (a SAS someone pasted into the request) left out.
    pub fn job_detail(&self) -> (&'static str, String) {
        if self.is_blob_container() {
            let url = self.url.split(['?', '#']).next().unwrap_or_default();
            ("RestoreTargetContainer", crate::redact::redact(url))
        } else {
            ("RestoreTargetFolder", self.url.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_records_a_container_without_a_sas() {
        let details = |kind: &str, url: &str| TargetDetails {
            file_prefix: "x".into(),
            restore_target_location_type: kind.into(),
            url: url.into(),
        };
        assert_eq!(
            details(
                AZURE_BLOBS,
                "https://acct1.blob.core.windows.net/restores?sv=1&sig=SECRET"
            )
            .job_detail(),
            (
                "RestoreTargetContainer",
                "https://acct1.blob.core.windows.net/restores".to_owned()
            )
        );
        assert_eq!(
            details(FILE_SYSTEM, "file:///srv/out").job_detail(),
            ("RestoreTargetFolder", "file:///srv/out".to_owned())
        );
    }

    /// The corpus's restore requests parse, both targets.
    #[test]
    fn azure_restore_requests_parse() {
        for (file, files_target) in [
            ("TriggerRestore.json", false),
            ("TriggerRestoreAsFiles.json", true),
        ] {
            // A test reads Azure's recorded requests; the model's code never reads files.
            #[allow(clippy::disallowed_methods)]
            let text = std::fs::read_to_string(format!(
                "{}/../../tests/conformance/azure/{file}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let req: RestoreRequest =
                serde_json::from_value(v["parameters"]["parameters"].clone()).unwrap();
            assert_eq!(req.recovery_point_id, "hardcodedRP");
            assert_eq!(
                matches!(req.restore_target_info, RestoreTarget::Files { .. }),
                files_target,
                "{file}"
            );
        }
    }
}
