//! The policy's types: every field of the REST spec, the closed vocabularies, and the
//! queries the engine asks of a policy.

use std::fmt;
use std::str::FromStr;

use serde::de::{self};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::drill::RestoreDrillSettings;
use crate::duration::IsoDuration;

use super::*;

/// The name of the retention rule that keeps every backup no other tag claims. Azure fixes it.
pub const DEFAULT_RULE_NAME: &str = "Default";

// ---------------------------------------------------------------------------------------------
// The policy
// ---------------------------------------------------------------------------------------------

/// A backup policy: `properties` of Azure's `backupPolicies` resource (`objectType`
/// `BackupPolicy`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "objectType",
    rename = "BackupPolicy",
    rename_all = "camelCase",
    try_from = "Value"
)]
pub struct BackupPolicy {
    /// Present in `get-default-policy-template` output (`OssPolicy1`) though not part of the
    /// REST body, where the name is the resource's; kept so templates round-trip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The datasource types as given (`OssDB`, `Microsoft.DBforPostgreSQL/flexibleServers`,
    /// ...). Kept as strings so a policy round-trips byte for byte; [`DatasourceType`] reads
    /// them.
    #[serde(deserialize_with = "one_or_many")]
    pub datasource_types: Vec<String>,
    #[serde(deserialize_with = "one_or_many")]
    pub policy_rules: Vec<PolicyRule>,
    /// pgvault's extension, not Azure's: restore drills for the instances under this policy
    /// (see [`crate::drill`]). Absent from Azure's policies, and written only when set,
    /// so a policy without it round-trips byte for byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgvault_restore_drill: Option<RestoreDrillSettings>,
}

/// One entry of `policyRules`, told apart by `objectType`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "objectType")]
pub enum PolicyRule {
    #[serde(rename = "AzureBackupRule")]
    Backup(AzureBackupRule),
    #[serde(rename = "AzureRetentionRule")]
    Retention(AzureRetentionRule),
}

impl PolicyRule {
    /// The rule's name, whichever kind it is.
    pub fn name(&self) -> &str {
        match self {
            PolicyRule::Backup(rule) => &rule.name,
            PolicyRule::Retention(rule) => &rule.name,
        }
    }
}

/// When backups are taken, of what kind, into which datastore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AzureBackupRule {
    pub name: String,
    /// Optional in Azure's schema (datasources without discrete backups leave it out);
    /// PostgreSQL policies always carry `Full`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_parameters: Option<BackupParameters>,
    pub data_store: DataStoreInfo,
    pub trigger: Trigger,
}

/// `AzureBackupParams`: the kind of backup a rule takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "objectType",
    rename = "AzureBackupParams",
    rename_all = "camelCase"
)]
pub struct BackupParameters {
    /// `Full` for PostgreSQL. Azure's schema types it as a free string (other datasources use
    /// other values), so it stays one rather than rejecting a policy Azure would accept.
    pub backup_type: String,
}

/// `DataStoreInfoBase`: names a datastore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "objectType",
    rename = "DataStoreInfoBase",
    rename_all = "camelCase"
)]
pub struct DataStoreInfo {
    pub data_store_type: DataStoreType,
}

impl DataStoreInfo {
    pub const fn new(data_store_type: DataStoreType) -> Self {
        DataStoreInfo { data_store_type }
    }
}

/// What starts a backup, told apart by `objectType`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "objectType")]
pub enum Trigger {
    #[serde(rename = "ScheduleBasedTriggerContext")]
    Schedule(ScheduleBasedTriggerContext),
    #[serde(rename = "AdhocBasedTriggerContext")]
    Adhoc(AdhocBasedTriggerContext),
}

/// Backups on a schedule, each tagged by the first matching criteria in priority order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleBasedTriggerContext {
    pub schedule: BackupSchedule,
    /// In the order they were given, and written back in that order, as the service keeps
    /// them; [`Self::tagging_criteria_by_priority`] is the order a backup is matched in.
    #[serde(deserialize_with = "one_or_many")]
    pub tagging_criteria: Vec<TaggingCriteria>,
}

impl ScheduleBasedTriggerContext {
    /// The tagging criteria in the order a new backup is matched against them: lowest
    /// `taggingPriority` first (Yearly 10, Monthly 15, Weekly 20 ... Default 99 in the Azure
    /// tools), ties in input order.
    pub fn tagging_criteria_by_priority(&self) -> Vec<&TaggingCriteria> {
        let mut sorted: Vec<&TaggingCriteria> = self.tagging_criteria.iter().collect();
        sorted.sort_by_key(|criteria| criteria.tagging_priority);
        sorted
    }
}

/// `schedule` of a schedule trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupSchedule {
    /// ISO 8601 repeating intervals (`R/2021-08-15T06:30:00+00:00/P1W`), kept as text here;
    /// the schedule engine parses them.
    #[serde(deserialize_with = "one_or_many")]
    pub repeating_time_intervals: Vec<String>,
    /// A Windows time zone name (`UTC`, `Pacific Standard Time`); absent means UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

/// On-demand backups only: the tag a backup gets is named in the trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdhocBasedTriggerContext {
    pub tagging_criteria: AdhocBasedTaggingCriteria,
}

/// The single tag of an ad hoc trigger (an object, not a list, in Azure's schema).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdhocBasedTaggingCriteria {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_info: Option<RetentionTag>,
}

/// Which backups get a tag. A backup is tagged by the first criteria (by priority) that matches
/// it; the default criteria matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaggingCriteria {
    pub is_default: bool,
    /// Lower is tried first.
    pub tagging_priority: i64,
    pub tag_info: RetentionTag,
    /// Any one matching criteria is enough. Empty for the default tag, and then left out of
    /// the output as the service does.
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub criteria: Vec<ScheduleBasedBackupCriteria>,
}

/// A tag: a name shared with the retention rule that keeps tagged backups.
///
/// `id` is not stored: the service always answers tag name + `_`, so it is computed on output
/// and whatever a client sent is ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionTag {
    pub tag_name: String,
    /// Read-only in Azure's schema; kept when the service sends one.
    #[serde(default)]
    pub e_tag: Option<String>,
}

impl RetentionTag {
    pub fn new(tag_name: impl Into<String>) -> Self {
        RetentionTag {
            tag_name: tag_name.into(),
            e_tag: None,
        }
    }

    /// The id the service assigns: the tag name followed by `_` (`Default_`, `Weekly_`).
    pub fn id(&self) -> String {
        format!("{}_", self.tag_name)
    }
}

impl Serialize for RetentionTag {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut tag = serializer.serialize_struct("RetentionTag", 3)?;
        tag.serialize_field("tagName", &self.tag_name)?;
        tag.serialize_field("id", &self.id())?;
        match &self.e_tag {
            Some(e_tag) => tag.serialize_field("eTag", e_tag)?,
            None => tag.skip_field("eTag")?,
        }
        tag.end()
    }
}

/// `ScheduleBasedBackupCriteria`: a backup matches when it satisfies every non-empty list
/// (an absolute marker such as `FirstOfMonth`, or days, weeks and months of the calendar).
/// Empty lists are left out of the output, as the service does.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(
    tag = "objectType",
    rename = "ScheduleBasedBackupCriteria",
    rename_all = "camelCase"
)]
pub struct ScheduleBasedBackupCriteria {
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub absolute_criteria: Vec<AbsoluteMarker>,
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub days_of_the_week: Vec<DayOfWeek>,
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub weeks_of_the_month: Vec<WeekNumber>,
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub months_of_year: Vec<Month>,
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub days_of_month: Vec<DayOfMonth>,
    /// Date-times whose time of day selects backups (`2019-03-01T13:00:00Z`), kept as text
    /// like the schedule's intervals; the schedule engine parses them.
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub schedule_times: Vec<String>,
}

/// A day of the month in tagging criteria: a date from 1 to 28 (every month has one), or the
/// last day, whatever its date. Azure's `Day` writes this as `{date, isLast}`, which can say
/// contradictory things; this type cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DayOfMonth {
    Date(u8),
    Last,
}

impl Serialize for DayOfMonth {
    /// As PowerShell's `New-AzDataProtectionPolicyTagCriteriaClientObject` writes them:
    /// `{"date": 5, "isLast": false}` and `{"isLast": true}`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut day = serializer.serialize_struct("Day", 2)?;
        match self {
            DayOfMonth::Date(date) => {
                day.serialize_field("date", date)?;
                day.serialize_field("isLast", &false)?;
            }
            DayOfMonth::Last => {
                day.skip_field("date")?;
                day.serialize_field("isLast", &true)?;
            }
        }
        day.end()
    }
}

impl<'de> Deserialize<'de> for DayOfMonth {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Day {
            #[serde(default)]
            date: Option<i64>,
            #[serde(default)]
            is_last: Option<bool>,
        }
        let day = Day::deserialize(deserializer)?;
        // `isLast` wins: the az CLI sends `{"date": 0, "isLast": true}` for the last day.
        if day.is_last == Some(true) {
            return Ok(DayOfMonth::Last);
        }
        match day.date {
            Some(date @ 1..=28) => Ok(DayOfMonth::Date(date as u8)),
            Some(date) => Err(de::Error::custom(format!(
                "day of month {date} is out of range: use 1 to 28, or isLast for the last day"
            ))),
            None => Err(de::Error::custom(
                "a day of month needs a date from 1 to 28, or isLast true",
            )),
        }
    }
}

/// How long backups with one tag are kept, datastore by datastore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AzureRetentionRule {
    pub name: String,
    #[serde(default)]
    pub is_default: bool,
    #[serde(deserialize_with = "one_or_many")]
    pub lifecycles: Vec<SourceLifeCycle>,
}

impl AzureRetentionRule {
    /// The lifecycle of backups in the vault tier, where every backup lands first.
    pub fn vault_store_lifecycle(&self) -> Option<&SourceLifeCycle> {
        self.lifecycle(DataStoreType::VaultStore)
    }

    /// The lifecycle of backups while they sit in `data_store`.
    pub fn lifecycle(&self, data_store: DataStoreType) -> Option<&SourceLifeCycle> {
        self.lifecycles
            .iter()
            .find(|lifecycle| lifecycle.source_data_store.data_store_type == data_store)
    }
}

/// What happens to a backup in one datastore: when it is deleted there, and where it is copied
/// first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceLifeCycle {
    pub source_data_store: DataStoreInfo,
    pub delete_after: AbsoluteDeleteOption,
    /// Always written, `[]` when there is no copy, as the az CLI templates show it.
    #[serde(default, deserialize_with = "one_or_many")]
    pub target_data_store_copy_settings: Vec<TargetCopySetting>,
}

/// `AbsoluteDeleteOption`: delete a fixed duration after the backup was taken. Azure's
/// `DeleteOption` has no other kind, so this is a struct rather than an enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "objectType", rename = "AbsoluteDeleteOption")]
pub struct AbsoluteDeleteOption {
    pub duration: IsoDuration,
}

impl AbsoluteDeleteOption {
    pub const fn new(duration: IsoDuration) -> Self {
        AbsoluteDeleteOption { duration }
    }
}

/// A copy of backups from a lifecycle's datastore to another one (vault to archive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetCopySetting {
    pub data_store: DataStoreInfo,
    pub copy_after: CopyOption,
}

/// When a copy is made, told apart by `objectType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "objectType")]
pub enum CopyOption {
    /// When the backup expires in the source datastore: a move to the archive tier.
    #[serde(rename = "CopyOnExpiryOption")]
    CopyOnExpiry,
    /// As soon as the backup is taken.
    #[serde(rename = "ImmediateCopyOption")]
    Immediate,
    /// A fixed duration after the backup was taken.
    #[serde(rename = "CustomCopyOption")]
    Custom(CustomCopyOption),
}

/// The duration of a `CustomCopyOption`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomCopyOption {
    pub duration: IsoDuration,
}

// ---------------------------------------------------------------------------------------------
// Closed vocabularies
// ---------------------------------------------------------------------------------------------

/// A value outside one of the policy's closed vocabularies (a datastore, a weekday ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}; expected one of: {}", expected.join(", "))]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
    pub expected: &'static [&'static str],
}

/// An enum written as its variant names. Parsing ignores case and surrounding blanks because
/// Azure does; output uses Azure's spelling.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal { $($(#[$vmeta:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            const NAMES: &'static [&'static str] = &[$(stringify!($variant)),+];

            /// Azure's spelling.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => stringify!($variant)),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|value| value.as_str().eq_ignore_ascii_case(s.trim()))
                    .ok_or_else(|| UnknownValue {
                        kind: $kind,
                        value: s.to_owned(),
                        expected: Self::NAMES,
                    })
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(de::Error::custom)
            }
        }
    };
}

string_enum! {
    /// A datastore: where a backup lives. PostgreSQL backups land in `VaultStore` and may move
    /// to `ArchiveStore`; `OperationalStore` (snapshots in the customer's own account) belongs
    /// to other datasources and parses only so that validation can name it.
    DataStoreType, "datastore type" {
        OperationalStore,
        VaultStore,
        ArchiveStore,
    }
}

string_enum! {
    /// An absolute tagging criterion: the first successful backup of a period, or every backup.
    AbsoluteMarker, "absolute criteria" {
        AllBackup,
        FirstOfDay,
        FirstOfWeek,
        FirstOfMonth,
        FirstOfYear,
    }
}

string_enum! {
    /// A day of the week, as Azure spells it.
    DayOfWeek, "day of the week" {
        Monday,
        Tuesday,
        Wednesday,
        Thursday,
        Friday,
        Saturday,
        Sunday,
    }
}

string_enum! {
    /// Which week of the month: the first four weeks, or the last (which may be the fourth or
    /// a fifth).
    WeekNumber, "week of the month" {
        First,
        Second,
        Third,
        Fourth,
        Last,
    }
}

string_enum! {
    /// A month of the year, as Azure spells it.
    Month, "month" {
        January,
        February,
        March,
        April,
        May,
        June,
        July,
        August,
        September,
        October,
        November,
        December,
    }
}

impl From<DayOfWeek> for chrono::Weekday {
    fn from(day: DayOfWeek) -> Self {
        match day {
            DayOfWeek::Monday => chrono::Weekday::Mon,
            DayOfWeek::Tuesday => chrono::Weekday::Tue,
            DayOfWeek::Wednesday => chrono::Weekday::Wed,
            DayOfWeek::Thursday => chrono::Weekday::Thu,
            DayOfWeek::Friday => chrono::Weekday::Fri,
            DayOfWeek::Saturday => chrono::Weekday::Sat,
            DayOfWeek::Sunday => chrono::Weekday::Sun,
        }
    }
}

impl Month {
    /// 1 for January to 12 for December, as chrono numbers months.
    pub const fn number(self) -> u32 {
        self as u32 + 1
    }
}

/// The kinds of datasource pgvault protects, by the names the Azure tools use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatasourceType {
    /// A database on Azure Database for PostgreSQL single server.
    AzureDatabaseForPostgreSQL,
    /// Azure Database for PostgreSQL flexible server.
    AzureDatabaseForPostgreSQLFlexibleServer,
}

/// A datasource type string that names no PostgreSQL datasource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown datasource type {0:?}; use AzureDatabaseForPostgreSQL \
     (Microsoft.DBforPostgreSQL/servers/databases, OssDB) or \
     AzureDatabaseForPostgreSQLFlexibleServer (Microsoft.DBforPostgreSQL/flexibleServers)"
)]
pub struct UnknownDatasourceType(pub String);

impl DatasourceType {
    pub const ALL: [DatasourceType; 2] = [
        DatasourceType::AzureDatabaseForPostgreSQL,
        DatasourceType::AzureDatabaseForPostgreSQLFlexibleServer,
    ];

    /// The name `az dataprotection ... --datasource-type` and PowerShell's `-DatasourceType`
    /// take.
    pub const fn cli_name(self) -> &'static str {
        match self {
            DatasourceType::AzureDatabaseForPostgreSQL => "AzureDatabaseForPostgreSQL",
            DatasourceType::AzureDatabaseForPostgreSQLFlexibleServer => {
                "AzureDatabaseForPostgreSQLFlexibleServer"
            }
        }
    }

    /// The ARM resource type a policy's `datasourceTypes` carries, as the default templates
    /// write it.
    pub const fn arm_type(self) -> &'static str {
        match self {
            DatasourceType::AzureDatabaseForPostgreSQL => {
                "Microsoft.DBforPostgreSQL/servers/databases"
            }
            DatasourceType::AzureDatabaseForPostgreSQLFlexibleServer => {
                "Microsoft.DBforPostgreSQL/flexibleServers"
            }
        }
    }

    /// Every spelling that means this type: the CLI name, the ARM types and, for single
    /// server, `OssDB`, the service's internal name that REST examples use.
    const fn aliases(self) -> &'static [&'static str] {
        match self {
            DatasourceType::AzureDatabaseForPostgreSQL => &[
                "AzureDatabaseForPostgreSQL",
                "Microsoft.DBforPostgreSQL/servers/databases",
                "OssDB",
            ],
            DatasourceType::AzureDatabaseForPostgreSQLFlexibleServer => &[
                "AzureDatabaseForPostgreSQLFlexibleServer",
                "Microsoft.DBforPostgreSQL/flexibleServers",
                "Microsoft.DBforPostgreSQL/flexibleServers/databases",
            ],
        }
    }
}

impl fmt::Display for DatasourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.cli_name())
    }
}

impl FromStr for DatasourceType {
    type Err = UnknownDatasourceType;

    /// Case-insensitive (ARM resource types are) and blind to surrounding blanks: the
    /// service itself has been seen answering `" Microsoft.DBforPostgreSQL/flexibleServers/databases"`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        DatasourceType::ALL
            .into_iter()
            .find(|kind| {
                kind.aliases()
                    .iter()
                    .any(|alias| alias.eq_ignore_ascii_case(wanted))
            })
            .ok_or_else(|| UnknownDatasourceType(s.to_owned()))
    }
}

impl Serialize for DatasourceType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.cli_name())
    }
}

impl<'de> Deserialize<'de> for DatasourceType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

// ---------------------------------------------------------------------------------------------
// Queries the engine needs
// ---------------------------------------------------------------------------------------------

impl BackupPolicy {
    /// The first backup rule: the one whose trigger starts scheduled backups. PostgreSQL
    /// policies have exactly one.
    pub fn backup_rule(&self) -> Option<&AzureBackupRule> {
        self.backup_rules().next()
    }

    /// Every backup rule, in order.
    pub fn backup_rules(&self) -> impl Iterator<Item = &AzureBackupRule> {
        self.policy_rules.iter().filter_map(|rule| match rule {
            PolicyRule::Backup(rule) => Some(rule),
            PolicyRule::Retention(_) => None,
        })
    }

    /// Every retention rule, in order.
    pub fn retention_rules(&self) -> impl Iterator<Item = &AzureRetentionRule> {
        self.policy_rules.iter().filter_map(|rule| match rule {
            PolicyRule::Retention(rule) => Some(rule),
            PolicyRule::Backup(_) => None,
        })
    }

    /// The retention rule called `name`, ignoring case as Azure does (an on-demand backup
    /// with rule `monthly` uses the rule `Monthly`).
    pub fn retention_rule(&self, name: &str) -> Option<&AzureRetentionRule> {
        self.retention_rules()
            .find(|rule| rule.name.eq_ignore_ascii_case(name))
    }

    /// The retention rule with `isDefault`, which keeps every backup no other tag claims.
    pub fn default_retention_rule(&self) -> Option<&AzureRetentionRule> {
        self.retention_rules().find(|rule| rule.is_default)
    }

    /// The names of the retention rules in order: the choices for an on-demand backup.
    pub fn retention_rule_names(&self) -> Vec<&str> {
        self.retention_rules()
            .map(|rule| rule.name.as_str())
            .collect()
    }

    /// The datasource type of the first `datasourceTypes` entry pgvault understands.
    pub fn datasource_type(&self) -> Option<DatasourceType> {
        self.datasource_types
            .iter()
            .find_map(|name| name.parse().ok())
    }
}
