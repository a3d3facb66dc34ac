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

/// The `properties` of an ARM resource (`{id, name, type, properties}`, as `show` commands
/// print one), where the body itself is wanted; anything else as it is. `marker` is a
/// property only the body has (`policyRules`), so a body that merely has a `properties`
/// field of its own is left alone. Keys match in any case and in snake_case.
pub fn unwrap_properties(value: Value, marker: &str) -> Value {
    let same = |key: &str, name: &str| {
        let folded: String = key.chars().filter(|c| *c != '_').collect();
        folded.eq_ignore_ascii_case(name)
    };
    match value {
        Value::Object(mut object)
            if !object.keys().any(|k| same(k, marker))
                && object
                    .iter()
                    .any(|(k, v)| same(k, "properties") && v.is_object()) =>
        {
            let key = object
                .keys()
                .find(|k| same(k, "properties"))
                .cloned()
                .expect("checked above");
            object.remove(&key).unwrap_or_default()
        }
        other => other,
    }
}

/// Rewrites every object key in `value` (recursively) from snake_case to camelCase
/// (`data_source_info` to `dataSourceInfo`), the way the az CLI's `initialize` commands
/// print requests and the REST API names them; keys without `_` are left as they are.
/// Where both spellings are present, the camelCase one wins.
pub fn camel_case_keys(value: &mut Value) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(camel_case_keys),
        Value::Object(object) => {
            if object.keys().any(|k| k.contains('_')) {
                let old = std::mem::take(object);
                let (plain, snake): (Vec<_>, Vec<_>) =
                    old.into_iter().partition(|(k, _)| !k.contains('_'));
                object.extend(plain);
                for (key, v) in snake {
                    object.entry(camel_case(&key)).or_insert(v);
                }
            }
            object.values_mut().for_each(camel_case_keys);
        }
        _ => {}
    }
}

fn camel_case(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for (i, part) in key.split('_').filter(|p| !p.is_empty()).enumerate() {
        if i == 0 {
            out.push_str(part);
        } else {
            let mut chars = part.chars();
            if let Some(first) = chars.next() {
                out.extend(first.to_uppercase());
                out.push_str(chars.as_str());
            }
        }
    }
    out
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
    fn arm_resources_unwrap_to_their_properties() {
        let body = json!({"policyRules": [], "datasourceTypes": ["OssDB"]});
        let wrapped = envelope(policy_id("V", "P"), "P", POLICY_TYPE, body.clone());
        assert_eq!(unwrap_properties(wrapped, "policyRules"), body);
        assert_eq!(unwrap_properties(body.clone(), "policyRules"), body);
        // A body with a `properties` of its own is not a resource.
        let odd = json!({"policyRules": [], "properties": {"x": 1}});
        assert_eq!(unwrap_properties(odd.clone(), "policyRules"), odd);
        assert_eq!(
            unwrap_properties(json!({"Properties": {"a": 1}}), "policy_rules"),
            json!({"a": 1})
        );
        assert_eq!(unwrap_properties(json!([1]), "x"), json!([1]));
    }

    #[test]
    fn snake_case_keys_become_camel_case() {
        let mut v = json!({
            "backup_instance_name": "b",
            "properties": {"data_source_info": {"resource_id": "r", "resourceName": "n"},
                "object_type": "BackupInstance", "friendly_name": "f"},
            "list": [{"recovery_point_id": "rp", "recoveryPointId": "wins"}]
        });
        camel_case_keys(&mut v);
        assert_eq!(
            v,
            json!({
                "backupInstanceName": "b",
                "properties": {"dataSourceInfo": {"resourceId": "r", "resourceName": "n"},
                    "objectType": "BackupInstance", "friendlyName": "f"},
                "list": [{"recoveryPointId": "wins"}]
            })
        );
    }

    #[test]
    fn last_segment_of_ids_and_names() {
        assert_eq!(last_segment("OssPolicy"), "OssPolicy");
        assert_eq!(last_segment(&policy_id("V", "OssPolicy")), "OssPolicy");
        assert_eq!(last_segment("/a/b/"), "b");
    }
}
