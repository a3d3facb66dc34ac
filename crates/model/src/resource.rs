//! Azure resource envelopes and ids.
//!
//! Every object pgvault prints has Azure's resource shape: `id`, `name`, `type`,
//! `properties`. Ids are ARM's full form,
//! `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.DataProtection/backupVaults/{vault}/...`:
//! a host serves one subscription ([`SubscriptionId`], the all-zero GUID unless told
//! otherwise) and each vault lives in a resource group ([`ResourceGroup`], `pgvault` unless
//! told otherwise), so an id pgvault prints is one Azure's SDKs, az and the REST layer take
//! back. [`ArmId`] parses one, strictly, for `--ids` and the REST API alike.
//!
//! Stored policies and instances keep whatever id they were written with (older versions
//! wrote `/providers/...` ids); ids are built from the vault's [`VaultRef`] when printed,
//! never read back from a file.

use std::fmt;

use serde_json::{Value, json};
use thiserror::Error;

use crate::code::ErrorCode;

pub const VAULT_TYPE: &str = "Microsoft.DataProtection/backupVaults";
pub const POLICY_TYPE: &str = "Microsoft.DataProtection/backupVaults/backupPolicies";
pub const INSTANCE_TYPE: &str = "Microsoft.DataProtection/backupVaults/backupInstances";
pub const DELETED_INSTANCE_TYPE: &str =
    "Microsoft.DataProtection/backupVaults/deletedBackupInstances";
pub const RECOVERY_POINT_TYPE: &str =
    "Microsoft.DataProtection/backupVaults/backupInstances/recoveryPoints";
pub const JOB_TYPE: &str = "Microsoft.DataProtection/backupVaults/backupJobs";

/// The resource provider every pgvault id is under.
pub const PROVIDER: &str = "Microsoft.DataProtection";

/// The subscription a host serves unless `PGVAULT_SUBSCRIPTION_ID` says otherwise.
pub const DEFAULT_SUBSCRIPTION_ID: &str = "00000000-0000-0000-0000-000000000000";

/// The resource group of a vault created without `-g`, and of every vault written before
/// vaults had one.
pub const DEFAULT_RESOURCE_GROUP: &str = "pgvault";

/// An id or one of its parts that is not what ARM accepts.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdError {
    #[error(
        "`{input}` is not a subscription id: expected a GUID such as 00000000-0000-0000-0000-000000000000"
    )]
    Subscription { input: String },
    #[error(
        "`{input}` is not a resource group name: {why}; use 1 to 90 letters, digits, '_', '-', '.', '(' or ')', not ending in '.'"
    )]
    ResourceGroup { input: String, why: &'static str },
    #[error(
        "`{input}` is not a pgvault resource id: {why}; expected /subscriptions/<sub>/resourceGroups/<group>/providers/Microsoft.DataProtection/backupVaults/<vault>[/backupPolicies/<policy>|/backupInstances/<instance>[/recoveryPoints/<id>]|/backupJobs/<id>]"
    )]
    Malformed { input: String, why: String },
}

impl IdError {
    pub fn code(&self) -> ErrorCode {
        match self {
            IdError::Subscription { .. } => ErrorCode::InvalidSubscriptionId,
            IdError::ResourceGroup { .. } => ErrorCode::InvalidResourceGroup,
            IdError::Malformed { .. } => ErrorCode::InvalidResourceId,
        }
    }
}

/// A subscription id: a GUID, kept in lower case (ARM compares them ignoring case).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SubscriptionId(String);

impl SubscriptionId {
    pub fn parse(input: &str) -> Result<Self, IdError> {
        let bad = || IdError::Subscription {
            input: input.to_owned(),
        };
        let groups: Vec<&str> = input.split('-').collect();
        let lengths_ok = groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12]);
        if !lengths_ok
            || !groups
                .iter()
                .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Err(bad());
        }
        Ok(SubscriptionId(input.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for SubscriptionId {
    fn default() -> Self {
        SubscriptionId(DEFAULT_SUBSCRIPTION_ID.to_owned())
    }
}

impl fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for SubscriptionId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::parse(s)
    }
}

/// A resource group's name, as ARM allows it: 1 to 90 characters, letters (Unicode ones
/// too), digits, `_`, `-`, `.`, `(` and `)`, not ending in `.`. Kept as written; two names
/// are the same group when they are equal ignoring case, as in ARM.
#[derive(Clone, Debug, Eq)]
pub struct ResourceGroup(String);

impl ResourceGroup {
    pub fn parse(input: &str) -> Result<Self, IdError> {
        let bad = |why| IdError::ResourceGroup {
            input: input.to_owned(),
            why,
        };
        if input.is_empty() {
            return Err(bad("it is empty"));
        }
        if input.chars().count() > 90 {
            return Err(bad("it is longer than 90 characters"));
        }
        if !input
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '(' | ')'))
        {
            return Err(bad("it has a character ARM does not allow"));
        }
        if input.ends_with('.') {
            return Err(bad("it ends in '.'"));
        }
        Ok(ResourceGroup(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PartialEq for ResourceGroup {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_lowercase() == other.0.to_lowercase()
    }
}

impl Default for ResourceGroup {
    fn default() -> Self {
        ResourceGroup(DEFAULT_RESOURCE_GROUP.to_owned())
    }
}

impl fmt::Display for ResourceGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ResourceGroup {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::parse(s)
    }
}

/// A vault's place in ARM: subscription, resource group, name. Every id of the vault and
/// of what it holds is built from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultRef {
    pub subscription: SubscriptionId,
    pub resource_group: ResourceGroup,
    pub name: String,
}

impl VaultRef {
    pub fn new(subscription: SubscriptionId, resource_group: ResourceGroup, name: &str) -> Self {
        VaultRef {
            subscription,
            resource_group,
            name: name.to_owned(),
        }
    }

    /// The vault's id.
    pub fn id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/{PROVIDER}/backupVaults/{}",
            self.subscription, self.resource_group, self.name
        )
    }

    pub fn policy_id(&self, policy: &str) -> String {
        format!("{}/backupPolicies/{policy}", self.id())
    }

    pub fn instance_id(&self, instance: &str) -> String {
        format!("{}/backupInstances/{instance}", self.id())
    }

    /// A soft-deleted backup instance's id (Azure's `deletedBackupInstances`).
    pub fn deleted_instance_id(&self, instance: &str) -> String {
        format!("{}/deletedBackupInstances/{instance}", self.id())
    }

    pub fn recovery_point_id(&self, instance: &str, rp: &str) -> String {
        format!("{}/recoveryPoints/{rp}", self.instance_id(instance))
    }

    pub fn job_id(&self, job: &str) -> String {
        format!("{}/backupJobs/{job}", self.id())
    }

    /// Whether `other` is this vault: the same subscription, group and name, ignoring case
    /// as ARM does.
    pub fn same_vault(&self, other: &VaultRef) -> bool {
        self.subscription == other.subscription
            && self.resource_group == other.resource_group
            && self.name.eq_ignore_ascii_case(&other.name)
    }

    /// The name of a resource of kind `kind` that `input` names in this vault: a bare name,
    /// or a full id of this vault's resource of that kind. A full id of another vault
    /// (another group or subscription) is refused, never rebound to this one. `what` names
    /// the input in the error (`policyInfo.policyId`).
    pub fn child_name(
        &self,
        input: &str,
        kind: ResourceKind,
        what: &str,
    ) -> Result<String, ForeignIdError> {
        if !input.contains('/') {
            return Ok(input.to_owned());
        }
        let id = ArmId::parse(input).map_err(ForeignIdError::Id)?;
        if id.kind() != kind {
            return Err(ForeignIdError::Id(IdError::Malformed {
                input: input.to_owned(),
                why: format!(
                    "{what} must name a {}, not a {}",
                    kind.noun(),
                    id.kind().noun()
                ),
            }));
        }
        if !self.same_vault(&id.vault) {
            return Err(ForeignIdError::AnotherVault {
                what: what.to_owned(),
                input: input.to_owned(),
                this: self.id(),
            });
        }
        Ok(id.name().to_owned())
    }
}

/// Why a full id given for a resource of one vault was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ForeignIdError {
    #[error(transparent)]
    Id(IdError),
    #[error(
        "{what} `{input}` names a resource of another vault; this one is `{this}`: give a bare name or an id under it"
    )]
    AnotherVault {
        what: String,
        input: String,
        this: String,
    },
}

impl ForeignIdError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ForeignIdError::Id(e) => e.code(),
            ForeignIdError::AnotherVault { .. } => ErrorCode::UserErrorResourceInAnotherVault,
        }
    }
}

/// The kinds of resource an [`ArmId`] names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceKind {
    Vault,
    Policy,
    Instance,
    RecoveryPoint,
    Job,
}

impl ResourceKind {
    /// The resource's ARM type (`Microsoft.DataProtection/backupVaults/backupPolicies`).
    pub fn arm_type(self) -> &'static str {
        match self {
            ResourceKind::Vault => VAULT_TYPE,
            ResourceKind::Policy => POLICY_TYPE,
            ResourceKind::Instance => INSTANCE_TYPE,
            ResourceKind::RecoveryPoint => RECOVERY_POINT_TYPE,
            ResourceKind::Job => JOB_TYPE,
        }
    }

    /// How an error names the kind.
    pub fn noun(self) -> &'static str {
        match self {
            ResourceKind::Vault => "backup vault",
            ResourceKind::Policy => "backup policy",
            ResourceKind::Instance => "backup instance",
            ResourceKind::RecoveryPoint => "recovery point",
            ResourceKind::Job => "backup job",
        }
    }
}

/// What an [`ArmId`] names below its vault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Child {
    Vault,
    Policy(String),
    Instance(String),
    RecoveryPoint { instance: String, id: String },
    Job(String),
}

/// A parsed pgvault resource id. The fixed segments (`subscriptions`, `resourceGroups`,
/// `providers`, `Microsoft.DataProtection`, `backupVaults`...) match ignoring case, as ARM
/// matches them; the names are kept as written. Nothing else parses: no empty segment, no
/// trailing `/`, no other provider or resource type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArmId {
    pub vault: VaultRef,
    pub child: Child,
}

impl ArmId {
    pub fn parse(input: &str) -> Result<Self, IdError> {
        let malformed = |why: String| IdError::Malformed {
            input: input.to_owned(),
            why,
        };
        let Some(rest) = input.strip_prefix('/') else {
            return Err(malformed("it does not start with '/'".into()));
        };
        let segments: Vec<&str> = rest.split('/').collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(malformed("it has an empty segment".into()));
        }
        let fixed = [
            (0, "subscriptions"),
            (2, "resourceGroups"),
            (4, "providers"),
            (5, PROVIDER),
            (6, "backupVaults"),
        ];
        for (at, word) in fixed {
            if let Some(found) = segments.get(at)
                && !found.eq_ignore_ascii_case(word)
            {
                return Err(malformed(format!(
                    "segment {} is `{found}` where `{word}` belongs",
                    at + 1
                )));
            }
        }
        if segments.len() < 8 {
            return Err(malformed(
                "it stops before the vault's name (backupVaults/<vault>)".into(),
            ));
        }
        let subscription = SubscriptionId::parse(segments[1])?;
        let resource_group = ResourceGroup::parse(segments[3])?;
        let vault = VaultRef::new(subscription, resource_group, segments[7]);
        let tail = &segments[8..];
        let is = |s: &str, word: &str| s.eq_ignore_ascii_case(word);
        let child = match tail {
            [] => Child::Vault,
            [kind, name] if is(kind, "backupPolicies") => Child::Policy((*name).to_owned()),
            [kind, name] if is(kind, "backupInstances") => Child::Instance((*name).to_owned()),
            [kind, name, points, id]
                if is(kind, "backupInstances") && is(points, "recoveryPoints") =>
            {
                Child::RecoveryPoint {
                    instance: (*name).to_owned(),
                    id: (*id).to_owned(),
                }
            }
            [kind, name] if is(kind, "backupJobs") => Child::Job((*name).to_owned()),
            _ => {
                return Err(malformed(format!(
                    "`{}` after the vault is not a policy, instance, recovery point or job",
                    tail.join("/")
                )));
            }
        };
        Ok(ArmId { vault, child })
    }

    pub fn kind(&self) -> ResourceKind {
        match self.child {
            Child::Vault => ResourceKind::Vault,
            Child::Policy(_) => ResourceKind::Policy,
            Child::Instance(_) => ResourceKind::Instance,
            Child::RecoveryPoint { .. } => ResourceKind::RecoveryPoint,
            Child::Job(_) => ResourceKind::Job,
        }
    }

    /// The name of the resource the id names (its last segment).
    pub fn name(&self) -> &str {
        match &self.child {
            Child::Vault => &self.vault.name,
            Child::Policy(n) | Child::Instance(n) | Child::Job(n) => n,
            Child::RecoveryPoint { id, .. } => id,
        }
    }

    /// The backup instance the id names or is under.
    pub fn instance(&self) -> Option<&str> {
        match &self.child {
            Child::Instance(n) | Child::RecoveryPoint { instance: n, .. } => Some(n),
            _ => None,
        }
    }
}

impl fmt::Display for ArmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = &self.vault;
        let id = match &self.child {
            Child::Vault => v.id(),
            Child::Policy(p) => v.policy_id(p),
            Child::Instance(i) => v.instance_id(i),
            Child::RecoveryPoint { instance, id } => v.recovery_point_id(instance, id),
            Child::Job(j) => v.job_id(j),
        };
        f.write_str(&id)
    }
}

impl std::str::FromStr for ArmId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::parse(s)
    }
}

/// Where a job on no vault (a script run) is addressed: the provider under the host's
/// subscription, so its id keeps the shape `<prefix>/backupJobs/<id>`.
pub fn no_vault_prefix(subscription: &SubscriptionId) -> String {
    format!("/subscriptions/{subscription}/providers/{PROVIDER}")
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

/// The last path segment of an ARM-style id, or the string itself when it has no `/`: how a
/// *stored* `policyInfo.policyId` (written by any version, in any id form) names its
/// policy. Input from a user goes through [`VaultRef::child_name`] instead, which refuses
/// another vault's id.
pub fn last_segment(id: &str) -> &str {
    id.trim_end_matches('/').rsplit('/').next().unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vault(sub: &str, rg: &str, name: &str) -> VaultRef {
        VaultRef::new(
            SubscriptionId::parse(sub).unwrap(),
            ResourceGroup::parse(rg).unwrap(),
            name,
        )
    }

    #[test]
    fn arm_resources_unwrap_to_their_properties() {
        let body = json!({"policyRules": [], "datasourceTypes": ["OssDB"]});
        let wrapped = envelope(
            VaultRef::new(SubscriptionId::default(), ResourceGroup::default(), "V").policy_id("P"),
            "P",
            POLICY_TYPE,
            body.clone(),
        );
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
        let v = VaultRef::new(Default::default(), Default::default(), "V");
        assert_eq!(last_segment("OssPolicy"), "OssPolicy");
        assert_eq!(last_segment(&v.policy_id("OssPolicy")), "OssPolicy");
        assert_eq!(last_segment("/a/b/"), "b");
    }

    #[test]
    fn ids_are_arms_full_form() {
        let v = VaultRef::new(Default::default(), Default::default(), "V");
        assert_eq!(
            v.recovery_point_id("db", "rp"),
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/pgvault/providers/Microsoft.DataProtection/backupVaults/V/backupInstances/db/recoveryPoints/rp"
        );
        assert_eq!(
            v.job_id("j"),
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/pgvault/providers/Microsoft.DataProtection/backupVaults/V/backupJobs/j"
        );
    }

    #[test]
    fn subscription_ids_are_guids() {
        let s = SubscriptionId::parse("04CF684A-D41F-4550-9F70-7708A3A2283B").unwrap();
        assert_eq!(s.as_str(), "04cf684a-d41f-4550-9f70-7708a3a2283b");
        for bad in [
            "",
            "sub",
            "04cf684a-d41f-4550-9f70-7708a3a2283",
            "04cf684a-d41f-4550-9f70-7708a3a2283bb",
            "04cf684ad41f-4550-9f70-7708a3a2283b-",
            "04cf684g-d41f-4550-9f70-7708a3a2283b",
            "{04cf684a-d41f-4550-9f70-7708a3a2283b}",
        ] {
            let e = SubscriptionId::parse(bad).unwrap_err();
            assert_eq!(e.code(), ErrorCode::InvalidSubscriptionId, "{bad}");
            assert!(e.to_string().contains("GUID"), "{e}");
        }
    }

    #[test]
    fn resource_group_names_follow_arm() {
        for good in ["pgvault", "a", "My_RG-1.(x)", "grüße", &"r".repeat(90)] {
            assert!(ResourceGroup::parse(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("", "empty"),
            (&*"r".repeat(91), "longer than 90"),
            ("rg.", "ends in '.'"),
            ("rg/x", "character"),
            ("rg x", "character"),
            ("rg*", "character"),
        ] {
            let e = ResourceGroup::parse(bad).unwrap_err();
            assert_eq!(e.code(), ErrorCode::InvalidResourceGroup);
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
        assert_eq!(
            ResourceGroup::parse("RG").unwrap(),
            ResourceGroup::parse("rg").unwrap()
        );
    }

    #[test]
    fn parses_every_kind_ignoring_the_case_of_fixed_segments() {
        let v = vault(
            "04cf684a-d41f-4550-9f70-7708a3a2283b",
            "HelloTest",
            "HelloTestVault",
        );
        let rp = "/SUBSCRIPTIONS/04cf684a-d41f-4550-9f70-7708a3a2283b/resourcegroups/HelloTest/Providers/microsoft.dataprotection/Backupvaults/HelloTestVault/BACKUPINSTANCES/db/recoverypoints/7fb2";
        let id = ArmId::parse(rp).unwrap();
        assert_eq!(id.vault, v);
        assert_eq!(id.kind(), ResourceKind::RecoveryPoint);
        assert_eq!(id.instance(), Some("db"));
        assert_eq!(id.name(), "7fb2");
        assert_eq!(id.to_string(), v.recovery_point_id("db", "7fb2"));
        for (text, kind, name) in [
            (v.id(), ResourceKind::Vault, "HelloTestVault"),
            (v.policy_id("p"), ResourceKind::Policy, "p"),
            (v.instance_id("i"), ResourceKind::Instance, "i"),
            (v.job_id("j"), ResourceKind::Job, "j"),
        ] {
            let id = ArmId::parse(&text).unwrap();
            assert_eq!((id.kind(), id.name()), (kind, name), "{text}");
            assert_eq!(id.to_string(), text);
        }
    }

    #[test]
    fn refuses_malformed_ids_saying_what_is_wrong() {
        let v = vault(DEFAULT_SUBSCRIPTION_ID, "rg", "V");
        for (bad, why) in [
            ("backupVaults/V".to_owned(), "start with '/'"),
            (format!("{}/", v.id()), "empty segment"),
            (v.id().replace("/V", ""), "stops before"),
            (
                v.id()
                    .replace("Microsoft.DataProtection", "Microsoft.Storage"),
                "segment 6",
            ),
            (v.id().replace("resourceGroups", "groups"), "segment 3"),
            (format!("{}/backupPolicies", v.id()), "after the vault"),
            (format!("{}/backupPolicies/p/x", v.id()), "after the vault"),
            (format!("{}/recoveryPoints/r", v.id()), "after the vault"),
            (
                "/providers/Microsoft.DataProtection/backupVaults/V".to_owned(),
                "segment 1",
            ),
        ] {
            let e = ArmId::parse(&bad).unwrap_err();
            assert_eq!(e.code(), ErrorCode::InvalidResourceId, "{bad}");
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
        let e = ArmId::parse(&v.id().replace("00000000-0000", "x")).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidSubscriptionId);
        let e = ArmId::parse(&v.id().replace("/rg/", "/rg./")).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidResourceGroup);
    }

    #[test]
    fn a_child_id_of_another_vault_is_refused_not_rebound() {
        let v = vault(DEFAULT_SUBSCRIPTION_ID, "rg", "V");
        let name = |input: &str| v.child_name(input, ResourceKind::Policy, "policyId");
        assert_eq!(name("P").unwrap(), "P");
        assert_eq!(name(&v.policy_id("P")).unwrap(), "P");
        // ARM ignores case in the vault's coordinates.
        assert_eq!(
            name(&v.policy_id("P").replace("/rg/", "/RG/")).unwrap(),
            "P"
        );
        for other in [
            vault(DEFAULT_SUBSCRIPTION_ID, "rg", "W"),
            vault(DEFAULT_SUBSCRIPTION_ID, "other", "V"),
            vault("11111111-1111-1111-1111-111111111111", "rg", "V"),
        ] {
            let e = name(&other.policy_id("P")).unwrap_err();
            assert_eq!(e.code(), ErrorCode::UserErrorResourceInAnotherVault);
            assert!(e.to_string().contains(&v.id()), "{e}");
        }
        let e = name(&v.instance_id("P")).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidResourceId);
        assert!(e.to_string().contains("backup policy"), "{e}");
        assert_eq!(
            name("/backupPolicies/P").unwrap_err().code(),
            ErrorCode::InvalidResourceId
        );
    }

    fn segment() -> impl Strategy<Value = String> {
        "[A-Za-z0-9][A-Za-z0-9._-]{0,20}"
    }

    fn group() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_()-][A-Za-z0-9_().-]{0,30}[A-Za-z0-9_()-]"
    }

    fn arm_id() -> impl Strategy<Value = ArmId> {
        let sub = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";
        let child = prop_oneof![
            Just(Child::Vault),
            segment().prop_map(Child::Policy),
            segment().prop_map(Child::Instance),
            (segment(), segment()).prop_map(|(instance, id)| Child::RecoveryPoint { instance, id }),
            segment().prop_map(Child::Job),
        ];
        (sub, group(), segment(), child).prop_map(|(sub, rg, name, child)| ArmId {
            vault: vault(&sub, &rg, &name),
            child,
        })
    }

    proptest! {
        #[test]
        fn format_then_parse_is_the_identity(id in arm_id()) {
            let text = id.to_string();
            let back = ArmId::parse(&text).unwrap();
            prop_assert_eq!(&back, &id);
            prop_assert_eq!(back.vault.resource_group.as_str(), id.vault.resource_group.as_str());
            prop_assert_eq!(back.to_string(), text);
        }

        #[test]
        fn parse_never_panics(text in "(/[A-Za-z0-9.()_-]{0,12}){0,12}/?") {
            let _ = ArmId::parse(&text);
        }
    }
}
