//! The bodies of Azure's action requests that are not a resource themselves: an adhoc
//! backup (`backupInstances/{name}/backup`), validate-for-backup and validate-restore, as
//! the REST API takes them. The resources they carry are [`crate::instance`]'s and
//! [`crate::restore`]'s types; reading is as lenient as theirs (snake_case too).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::instance::BackupInstanceProperties;
use crate::restore::RestoreRequest;

/// `TriggerBackupRequest`: which backup rule an adhoc backup runs under and, optionally, the
/// retention tag it gets instead of the rule's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdhocBackupRequest {
    pub backup_rule_options: AdhocBackupRuleOptions,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdhocBackupRuleOptions {
    pub rule_name: String,
    #[serde(default)]
    pub trigger_option: AdhocBackupTriggerOption,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdhocBackupTriggerOption {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_tag_override: Option<String>,
}

/// `ValidateForBackupRequest`: an instance's properties, checked before it is protected.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidateForBackupRequest {
    pub backup_instance: BackupInstanceProperties,
}

/// `ValidateRestoreRequestObject`: a restore request, checked before it runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidateRestoreRequest {
    pub restore_request_object: RestoreRequest,
}

/// Deserializes any of these bodies from loose JSON: camelCase as the REST API names
/// properties, or the az CLI's snake_case.
pub fn from_request_value<T: serde::de::DeserializeOwned>(
    mut value: Value,
) -> Result<T, serde_json::Error> {
    crate::resource::camel_case_keys(&mut value);
    serde_json::from_value(value)
}

/// Azure's recorded request bodies (the REST spec's examples in `tests/conformance/azure`)
/// each parse into pgvault's type for them. The policy bodies are `policy::tests`'.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::BackupInstanceRequest;
    use crate::restore::RestoreTarget;
    use serde_json::json;

    /// The request body of a conformance file (`parameters.parameters`).
    fn body(file: &str) -> Value {
        // A test reads Azure's recorded requests; the model's code never reads files.
        #[allow(clippy::disallowed_methods)]
        let text = std::fs::read_to_string(format!(
            "{}/../../tests/conformance/azure/{file}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        v["parameters"]["parameters"].clone()
    }

    #[test]
    fn put_backup_instance() {
        let b = body("PutBackupInstance.json");
        let props: BackupInstanceProperties =
            serde_json::from_value(b["properties"].clone()).unwrap();
        assert_eq!(props.data_source_info.resource_name, "testdb");
        assert_eq!(
            props.datasource_auth_credentials.secret_store_resource.uri,
            "https://samplevault.vault.azure.net/secrets/credentials"
        );
        assert!(
            props
                .policy_info
                .policy_id
                .ends_with("/backupPolicies/PratikPolicy1")
        );
        // The same body with the name its URL gives is an instance request.
        let mut named = b.clone();
        named["name"] = json!("testInstance1");
        let req = BackupInstanceRequest::from_value(named).unwrap();
        assert_eq!(req.properties, props);
    }

    #[test]
    fn validate_for_backup() {
        let req: ValidateForBackupRequest =
            from_request_value(body("ValidateForBackup.json")).unwrap();
        assert_eq!(
            req.backup_instance.data_source_info.datasource_type,
            "OssDB"
        );
        assert_eq!(req.backup_instance.friendly_name, "harshitbi2");
    }

    #[test]
    fn trigger_backup() {
        let req: AdhocBackupRequest = from_request_value(body("TriggerBackup.json")).unwrap();
        assert_eq!(req.backup_rule_options.rule_name, "BackupWeekly");
        assert_eq!(
            req.backup_rule_options
                .trigger_option
                .retention_tag_override
                .as_deref(),
            Some("yearly")
        );
        // The trigger option may be left out.
        let bare: AdhocBackupRequest =
            from_request_value(json!({"backup_rule_options": {"rule_name": "Default"}})).unwrap();
        assert_eq!(bare.backup_rule_options.trigger_option, Default::default());
    }

    #[test]
    fn validate_restore() {
        let req: ValidateRestoreRequest = from_request_value(body("ValidateRestore.json")).unwrap();
        let r = req.restore_request_object;
        assert_eq!(r.recovery_point_id, "hardcodedRP");
        let RestoreTarget::Database {
            datasource_info, ..
        } = &r.restore_target_info
        else {
            panic!("a database target: {r:?}");
        };
        assert_eq!(datasource_info.resource_name, "targetdb");
    }

    #[test]
    fn trigger_restore_to_a_database() {
        let r = RestoreRequest::from_value(body("TriggerRestore.json")).unwrap();
        assert_eq!(r.object_type, "AzureBackupRecoveryPointBasedRestoreRequest");
        assert!(matches!(
            r.restore_target_info,
            RestoreTarget::Database { .. }
        ));
    }

    #[test]
    fn trigger_restore_as_files() {
        let r = RestoreRequest::from_value(body("TriggerRestoreAsFiles.json")).unwrap();
        let RestoreTarget::Files { target_details, .. } = &r.restore_target_info else {
            panic!("a files target: {r:?}");
        };
        assert!(target_details.is_blob_container());
    }

    #[test]
    fn trigger_restore_with_rehydration() {
        let r = RestoreRequest::from_value(body("TriggerRestoreWithRehydration.json")).unwrap();
        assert_eq!(r.object_type, "AzureBackupRestoreWithRehydrationRequest");
        // As Azure's own recording has it.
        assert_eq!(r.source_data_store_type, "VaultStore");
        assert_eq!(r.recovery_point_id, "hardcodedRP");
    }
}
