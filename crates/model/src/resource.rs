//! Azure resource envelopes and ids.
//!
//! Every object pgvault prints has Azure's resource shape: `id`, `name`, `type`,
//! `properties`. Ids follow ARM's path form so anything that splits them on
//! `/backupVaults/` or `/backupInstances/` works, rooted at `/providers/...` since a
//! self-hosted vault has no subscription or resource group.

use serde_json::{Value, json};

pub const VAULT_TYPE: &str = "Microsoft.DataProtection/backupVaults";
pub const POLICY_TYPE: &str = "Microsoft.DataProtection/backupVaults/backupPolicies";
pub const INSTANCE_TYPE: &str = "Microsoft.DataProtection/backupVaults/backupInstances";
pub const RECOVERY_POINT_TYPE: &str =
    "Microsoft.DataProtection/backupVaults/backupInstances/recoveryPoints";
pub const JOB_TYPE: &str = "Microsoft.DataProtection/backupVaults/backupJobs";

pub fn vault_id(vault: &str) -> String {
    format!("/providers/Microsoft.DataProtection/backupVaults/{vault}")
}

pub fn policy_id(vault: &str, policy: &str) -> String {
    format!("{}/backupPolicies/{policy}", vault_id(vault))
}

pub fn instance_id(vault: &str, instance: &str) -> String {
    format!("{}/backupInstances/{instance}", vault_id(vault))
}

pub fn recovery_point_id(vault: &str, instance: &str, rp: &str) -> String {
    format!("{}/recoveryPoints/{rp}", instance_id(vault, instance))
}

/// `{id, name, type, properties}`.
pub fn envelope(id: String, name: &str, kind: &str, properties: Value) -> Value {
    json!({ "id": id, "name": name, "type": kind, "properties": properties })
}

/// The last path segment of an ARM-style id, or the string itself when it has no `/`:
/// `--policy-id OssPolicy` and `--policy-id /.../backupPolicies/OssPolicy` name the same.
pub fn last_segment(id: &str) -> &str {
    id.trim_end_matches('/').rsplit('/').next().unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_segment_of_ids_and_names() {
        assert_eq!(last_segment("OssPolicy"), "OssPolicy");
        assert_eq!(last_segment(&policy_id("V", "OssPolicy")), "OssPolicy");
        assert_eq!(last_segment("/a/b/"), "b");
    }
}
