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
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "protection_state"
    )]
    pub current_protection_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
}

fn instance_object_type() -> String {
    "BackupInstance".into()
}

/// Reads `currentProtectionState`, turning the `BackupsSuspended` older pgvault wrote after
/// `suspend-backup` into Azure's name for that state, [`BACKUPS_SUSPENDED`].
fn protection_state<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let state = Option::<String>::deserialize(d)?;
    Ok(state.map(|s| {
        if s == OLD_BACKUPS_SUSPENDED {
            BACKUPS_SUSPENDED.to_owned()
        } else {
            s
        }
    }))
}

impl BackupInstanceProperties {
    /// Moves the instance to `state` (`suspendBackups`, `stopProtection`, `resumeProtection`),
    /// with `protectionStatus` following as Azure's does: `ProtectionStopped` once backups
    /// stop, whether suspended or stopped (Azure's `Status` has no suspended value), and
    /// `ProtectionConfigured` again on resume.
    pub fn set_protection_state(&mut self, state: &str) {
        self.current_protection_state = Some(state.to_owned());
        self.sync_protection_status();
    }

    /// Makes `protectionStatus` say what `currentProtectionState` says, for an instance that
    /// older pgvault left `ProtectionConfigured` after a stop or a suspension. A state pgvault
    /// does not set leaves the status as it is.
    pub fn sync_protection_status(&mut self) {
        let status = match self.current_protection_state.as_deref() {
            Some(PROTECTION_CONFIGURED) => PROTECTION_CONFIGURED,
            Some(PROTECTION_STOPPED | BACKUPS_SUSPENDED) => PROTECTION_STOPPED,
            _ => return,
        };
        self.protection_status = Some(ProtectionStatus {
            status: status.to_owned(),
        });
    }
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

impl BackupInstanceRequest {
    /// Reads a request as `backup-instance initialize` prints it (pgvault's camelCase, or the
    /// az CLI's snake_case: `backup_instance_name`, `data_source_info`, ...) or as
    /// `backup-instance show` prints the instance (its ARM resource, whose `id`, `type` and
    /// read-only state are ignored), so each can be fed back to `backup-instance create`.
    pub fn from_value(mut value: serde_json::Value) -> Result<Self, serde_json::Error> {
        crate::resource::camel_case_keys(&mut value);
        serde_json::from_value(value)
    }
}

pub const PROTECTION_CONFIGURED: &str = "ProtectionConfigured";
/// After `backup-instance suspend-backup`: no backups, recovery points kept (Azure's
/// `CurrentProtectionState` value).
pub const BACKUPS_SUSPENDED: &str = "BackupSchedulesSuspended";
/// What pgvault before Azure's name wrote for [`BACKUPS_SUSPENDED`]; read as it.
const OLD_BACKUPS_SUSPENDED: &str = "BackupsSuspended";
/// After `backup-instance stop-protection`: no backups, recovery points kept.
pub const PROTECTION_STOPPED: &str = "ProtectionStopped";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn protected() -> serde_json::Value {
        json!({
            "dataSourceInfo": {"datasourceType": "Microsoft.DBforPostgreSQL/servers/databases",
                "resourceID": "postgres://pg1:5432/sales"},
            "datasourceAuthCredentials": {"objectType": "SecretStoreBasedAuthCredentials",
                "secretStoreResource": {"secretStoreType": "AzureKeyVault", "uri": "env:PG"}},
            "policyInfo": {"policyId": "OssPolicy"},
            "protectionStatus": {"status": "ProtectionConfigured"},
            "currentProtectionState": "ProtectionConfigured"
        })
    }

    /// Stop, suspend and resume move `protectionStatus` with `currentProtectionState`, to the
    /// values Azure's `Status` and `CurrentProtectionState` enums have.
    #[test]
    fn protection_status_follows_the_protection_state() {
        let cases = [
            (PROTECTION_STOPPED, "ProtectionStopped", "ProtectionStopped"),
            (
                BACKUPS_SUSPENDED,
                "BackupSchedulesSuspended",
                "ProtectionStopped",
            ),
            (
                PROTECTION_CONFIGURED,
                "ProtectionConfigured",
                "ProtectionConfigured",
            ),
        ];
        let mut props: BackupInstanceProperties = serde_json::from_value(protected()).unwrap();
        for (state, current, status) in cases {
            props.set_protection_state(state);
            let v = serde_json::to_value(&props).unwrap();
            assert_eq!(v["currentProtectionState"], current, "{state}");
            assert_eq!(v["protectionStatus"], json!({"status": status}), "{state}");
        }
    }

    /// An instance older pgvault suspended reads with Azure's state, and its status follows.
    #[test]
    fn an_instance_suspended_by_older_pgvault_reads_as_azures_state() {
        let mut old = protected();
        old["currentProtectionState"] = json!("BackupsSuspended");
        let mut props: BackupInstanceProperties = serde_json::from_value(old).unwrap();
        assert_eq!(
            props.current_protection_state.as_deref(),
            Some(BACKUPS_SUSPENDED)
        );
        props.sync_protection_status();
        assert_eq!(props.protection_status.unwrap().status, PROTECTION_STOPPED);

        // A state pgvault never sets is left as it is, status and all.
        let mut other = protected();
        other["currentProtectionState"] = json!("SoftDeleted");
        let mut props: BackupInstanceProperties = serde_json::from_value(other).unwrap();
        props.sync_protection_status();
        assert_eq!(
            props.current_protection_state.as_deref(),
            Some("SoftDeleted")
        );
        assert_eq!(
            props.protection_status.unwrap().status,
            PROTECTION_CONFIGURED
        );
    }
}
