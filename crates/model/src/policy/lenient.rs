//! Reading a policy leniently, as the service does: property names in any case and in
//! snake_case, single values where arrays are declared, `objectType` in any case; and the
//! parse-then-check entry points.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::*;
use crate::drill::RestoreDrillSettings;

impl BackupPolicy {
    /// Parses a policy body (the `properties` of the REST resource, or what the az CLI prints)
    /// and validates it, reporting every problem with its JSON path.
    ///
    /// serde alone stops at the first error and says only "line 12 column 28"; when typed
    /// parsing fails this looks again, rule by rule, so that a bad duration is reported as
    /// `policyRules[1].lifecycles[0].deleteAfter.duration` and other defects at least name
    /// their rule.
    pub fn from_json(json: &str) -> Result<BackupPolicy, Vec<PolicyError>> {
        let policy = BackupPolicy::parse_json(json)?;
        policy.validate()?;
        Ok(policy)
    }

    /// Parses a policy body without the checks that span rules: what the editing commands
    /// (`retention-rule set`, `tag set`, ...) read, since a policy is legitimately incomplete
    /// between two edits (a retention rule added before its tag).
    pub fn parse_json(json: &str) -> Result<BackupPolicy, Vec<PolicyError>> {
        let value: Value = serde_json::from_str(json).map_err(|e| {
            vec![PolicyError::Malformed {
                path: ROOT.to_owned(),
                message: e.to_string(),
            }]
        })?;
        BackupPolicy::parse_value(value)
    }

    /// [`BackupPolicy::parse_json`] for JSON already parsed.
    pub fn parse_value(value: Value) -> Result<BackupPolicy, Vec<PolicyError>> {
        let mut value = crate::resource::unwrap_properties(value, "policyRules");
        normalize_property_names(&mut value);
        BackupPolicy::deserialize(&value).map_err(|e| locate_errors(&value, e))
    }
}

// ---------------------------------------------------------------------------------------------
// serde helpers
// ---------------------------------------------------------------------------------------------

/// Deserializes a declared array that may arrive as an array, a single value, or `null`
/// (empty), as the service accepts all three. Combine with `#[serde(default)]` where the field
/// may be missing too.
///
/// Written as a visitor rather than an untagged enum so that an error inside an element (a bad
/// duration, say) keeps its own message instead of "did not match any variant".
pub(crate) fn one_or_many<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct OneOrMany<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for OneOrMany<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array, a single value or null")
        }

        fn visit_unit<E: de::Error>(self) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }

        fn visit_none<E: de::Error>(self) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }

        fn visit_some<D2: Deserializer<'de>>(self, deserializer: D2) -> Result<Vec<T>, D2::Error> {
            deserializer.deserialize_any(self)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            // The hint comes from the input; cap it so a hostile length cannot reserve much.
            let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
            while let Some(item) = seq.next_element()? {
                items.push(item);
            }
            Ok(items)
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Vec<T>, A::Error> {
            T::deserialize(de::value::MapAccessDeserializer::new(map)).map(|item| vec![item])
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<T>, E> {
            T::deserialize(v.into_deserializer()).map(|item| vec![item])
        }

        fn visit_string<E: de::Error>(self, v: String) -> Result<Vec<T>, E> {
            T::deserialize(v.into_deserializer()).map(|item| vec![item])
        }

        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Vec<T>, E> {
            T::deserialize(v.into_deserializer()).map(|item| vec![item])
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Vec<T>, E> {
            T::deserialize(v.into_deserializer()).map(|item| vec![item])
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Vec<T>, E> {
            T::deserialize(v.into_deserializer()).map(|item| vec![item])
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Vec<T>, E> {
            T::deserialize(v.into_deserializer()).map(|item| vec![item])
        }
    }

    deserializer.deserialize_any(OneOrMany(PhantomData))
}

/// Every property name of the policy types, as Azure spells it. Input keys are matched against
/// these ignoring case and underscores, so `TagName`, `tagname` and the az CLI's
/// `days_of_the_week` all read as the property they mean.
const PROPERTY_NAMES: &[&str] = &[
    "absoluteCriteria",
    "afterBackups",
    "backupParameters",
    "backupType",
    "copyAfter",
    "criteria",
    "dataStore",
    "dataStoreType",
    "datasourceTypes",
    "date",
    "daysOfMonth",
    "daysOfTheWeek",
    "deleteAfter",
    "duration",
    "eTag",
    "every",
    "id",
    "isDefault",
    "isLast",
    "lifecycles",
    "monthsOfYear",
    "name",
    "objectType",
    "pgvaultRestoreDrill",
    "policyRules",
    "repeatingTimeIntervals",
    "schedule",
    "scheduleTimes",
    "secretStoreType",
    "secretStoreUri",
    "sourceDataStore",
    "tagInfo",
    "tagName",
    "taggingCriteria",
    "taggingPriority",
    "targetDataStoreCopySettings",
    "targetServerUrl",
    "timeZone",
    "trigger",
    "weeksOfTheMonth",
];

/// Rewrites every object key in `value` (recursively) that names a policy property in another
/// case or in snake_case to Azure's camelCase spelling. Keys that name no property are left as
/// they are (and later ignored). When one object holds a property under two spellings, the one
/// already in Azure's spelling wins, as it would with serde's own matching.
pub fn normalize_property_names(value: &mut Value) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(normalize_property_names),
        Value::Object(object) => {
            let needs_rename = object
                .keys()
                .any(|key| canonical_property(key).is_some_and(|name| name != key));
            if needs_rename {
                let old = std::mem::take(object);
                let (exact, other): (Vec<_>, Vec<_>) = old
                    .into_iter()
                    .partition(|(key, _)| canonical_property(key).is_none_or(|name| name == key));
                object.extend(exact);
                for (key, v) in other {
                    let name = canonical_property(&key).expect("partitioned on this");
                    object.entry(name.to_owned()).or_insert(v);
                }
            }
            object.values_mut().for_each(normalize_property_names);
        }
        _ => {}
    }
}

pub(super) fn canonical_property(key: &str) -> Option<&'static str> {
    let folded: String = key
        .chars()
        .filter(|c| *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    PROPERTY_NAMES
        .iter()
        .copied()
        .find(|name| name.eq_ignore_ascii_case(&folded))
}

/// Deserializes any part of a policy (a lifecycle, a tagging criterion, a whole policy) from
/// loose JSON: property names in any case or in snake_case, as [`normalize_property_names`]
/// reads them. The az CLI's `tag create-generic-criteria` writes snake_case, for instance.
pub fn from_lenient_value<T: serde::de::DeserializeOwned>(
    mut value: Value,
) -> Result<T, serde_json::Error> {
    normalize_property_names(&mut value);
    serde_json::from_value(value)
}

impl TryFrom<Value> for BackupPolicy {
    type Error = String;

    /// Every way into a `BackupPolicy` (a file, a script's map, a vault's stored resource)
    /// comes through here, so every one is lenient about property names, and takes the
    /// policy's ARM resource (`{id, name, type, properties}`, what `backup-policy show`
    /// prints) as well as its bare `properties`.
    fn try_from(value: Value) -> Result<Self, Self::Error> {
        let mut value = crate::resource::unwrap_properties(value, "policyRules");
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Raw {
            #[serde(default)]
            object_type: Option<String>,
            #[serde(default)]
            name: Option<String>,
            #[serde(deserialize_with = "one_or_many")]
            datasource_types: Vec<String>,
            #[serde(deserialize_with = "one_or_many")]
            policy_rules: Vec<PolicyRule>,
            #[serde(default)]
            pgvault_restore_drill: Option<RestoreDrillSettings>,
        }
        normalize_property_names(&mut value);
        let raw: Raw = serde_json::from_value(value).map_err(|e| e.to_string())?;
        if let Some(kind) = &raw.object_type
            && !kind.trim().eq_ignore_ascii_case("BackupPolicy")
        {
            return Err(format!(
                "unknown objectType {kind:?} for a policy; expected BackupPolicy"
            ));
        }
        Ok(BackupPolicy {
            name: raw.name,
            datasource_types: raw.datasource_types,
            policy_rules: raw.policy_rules,
            pgvault_restore_drill: raw.pgvault_restore_drill,
        })
    }
}

/// Reads a polymorphic object's `objectType` and returns the index of the matching name in
/// `expected`, with the object left without it. Case is ignored, in the key as in the value,
/// because clients send `objectType` values in any case and Azure accepts them.
///
/// Going through [`Value`] costs a copy of the (small) object but lets serde's derived code
/// do the rest, where serde's own internally tagged enums would compare case-sensitively.
pub(super) fn take_object_type<E: de::Error>(
    value: &mut Value,
    what: &str,
    expected: &[&str],
) -> Result<usize, E> {
    let Value::Object(object) = value else {
        return Err(E::custom(format!("{what} must be a JSON object")));
    };
    let key = object
        .keys()
        .find(|key| key.eq_ignore_ascii_case("objectType"))
        .cloned();
    let Some(Value::String(tag)) = key.and_then(|key| object.remove(&key)) else {
        return Err(E::custom(format!(
            "{what} needs an objectType, one of: {}",
            expected.join(", ")
        )));
    };
    expected
        .iter()
        .position(|name| name.eq_ignore_ascii_case(tag.trim()))
        .ok_or_else(|| {
            E::custom(format!(
                "unknown objectType {tag:?} for {what}; expected one of: {}",
                expected.join(", ")
            ))
        })
}

/// Finishes a polymorphic deserialization, prefixing errors with the variant so that "missing
/// field `name`" says which kind of object lacked it.
pub(super) fn variant<T, E: de::Error>(value: Value, kind: &str) -> Result<T, E>
where
    T: serde::de::DeserializeOwned,
{
    serde_json::from_value(value).map_err(|e| E::custom(format!("in {kind}: {e}")))
}

impl<'de> Deserialize<'de> for PolicyRule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        const KINDS: &[&str] = &["AzureBackupRule", "AzureRetentionRule"];
        let mut value = Value::deserialize(deserializer)?;
        match take_object_type(&mut value, "a policy rule", KINDS)? {
            0 => variant(value, KINDS[0]).map(PolicyRule::Backup),
            _ => variant(value, KINDS[1]).map(PolicyRule::Retention),
        }
    }
}

impl<'de> Deserialize<'de> for Trigger {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        const KINDS: &[&str] = &["ScheduleBasedTriggerContext", "AdhocBasedTriggerContext"];
        let mut value = Value::deserialize(deserializer)?;
        match take_object_type(&mut value, "a trigger", KINDS)? {
            0 => variant(value, KINDS[0]).map(Trigger::Schedule),
            _ => variant(value, KINDS[1]).map(Trigger::Adhoc),
        }
    }
}

impl<'de> Deserialize<'de> for CopyOption {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        const KINDS: &[&str] = &[
            "CopyOnExpiryOption",
            "ImmediateCopyOption",
            "CustomCopyOption",
        ];
        let mut value = Value::deserialize(deserializer)?;
        match take_object_type(&mut value, "copyAfter", KINDS)? {
            0 => Ok(CopyOption::CopyOnExpiry),
            1 => Ok(CopyOption::Immediate),
            _ => variant(value, KINDS[2]).map(CopyOption::Custom),
        }
    }
}
