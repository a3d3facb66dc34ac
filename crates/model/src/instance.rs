//! Backup instances: a database under protection, in Azure's `BackupInstance` JSON.
//!
//! The instance names its datasource without credentials (`postgres://host:port/db`,
//! or an Azure ARM id) and a *reference* to the secret that holds them; the secret value
//! itself is never part of an instance. Property names follow the REST API; on input the
//! REST spelling variants seen in the corpus (`resourceID` / `resourceId`) are accepted.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasourceInfo {
    pub datasource_type: String,
    #[serde(default = "datasource_object_type")]
    pub object_type: String,
    #[serde(rename = "resourceID", alias = "resourceId", alias = "resourceid")]
    pub resource_id: String,
    #[serde(default)]
    pub resource_location: String,
    #[serde(default)]
    pub resource_name: String,
    #[serde(default)]
    pub resource_type: String,
    #[serde(default)]
    pub resource_uri: String,
}

fn datasource_object_type() -> String {
    "Datasource".into()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretStoreResource {
    pub secret_store_type: String,
    pub uri: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthCredentials {
    pub object_type: String,
    pub secret_store_resource: SecretStoreResource,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyInfo {
    pub policy_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProtectionStatus {
    pub status: String,
}

/// `properties` of a backup instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupInstanceProperties {
    pub data_source_info: DatasourceInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_source_set_info: Option<DatasourceInfo>,
    pub datasource_auth_credentials: AuthCredentials,
    #[serde(default)]
    pub friendly_name: String,
    #[serde(default = "instance_object_type")]
    pub object_type: String,
    pub policy_info: PolicyInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protection_status: Option<ProtectionStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_protection_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
}

fn instance_object_type() -> String {
    "BackupInstance".into()
}

/// What `backup-instance initialize` prints and `backup-instance create` reads: the
/// instance's name and properties (`name` also accepted as the az CLI's
/// `backup_instance_name` or `backupInstanceName`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackupInstanceRequest {
    #[serde(alias = "backupInstanceName", alias = "backup_instance_name")]
    pub name: String,
    pub properties: BackupInstanceProperties,
}

pub const PROTECTION_CONFIGURED: &str = "ProtectionConfigured";
/// After `backup-instance suspend-backup`: no backups, recovery points kept.
pub const BACKUPS_SUSPENDED: &str = "BackupsSuspended";
/// After `backup-instance stop-protection`: no backups, recovery points kept.
pub const PROTECTION_STOPPED: &str = "ProtectionStopped";
