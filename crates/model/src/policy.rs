//! Azure Backup's `BackupPolicy` as typed data: the JSON that `az dataprotection backup-policy`
//! prints and the Data Protection REST API accepts, so a policy copied from Azure loads here
//! unchanged and one written here is accepted by Azure.
//!
//! A policy is a list of rules. One `AzureBackupRule` says when backups are taken (a schedule
//! trigger) and how each is tagged (tagging criteria, by priority); `AzureRetentionRule`s say how
//! long a backup with a given tag lives in each datastore (lifecycles), and whether it is copied
//! to the archive tier on the way. The tag name is the link: a backup tagged `Monthly` is kept
//! by the retention rule named `Monthly`, and everything else by the default rule `Default`.
//!
//! Input is read loosely and output is written the way the service answers, because clients
//! send loose JSON and compare what they get back:
//! - property names match whatever their case, and in snake_case too (`TagName`,
//!   `days_of_the_week`, as the az CLI's `tag create-generic-criteria` writes them): see
//!   [`normalize_property_names`];
//! - `objectType` values match whatever their case (`azureretentionrule` is accepted) where
//!   they choose between kinds (rules, triggers, copy options); objects Azure defines with a
//!   single kind (`DataStoreInfoBase`, `AbsoluteDeleteOption`, `AzureBackupParams`, ...) are
//!   written with their `objectType` and read without looking at it;
//! - where an array is declared, a single object or `null` is accepted too (the service takes a
//!   lone `targetDataStoreCopySettings` object) and always written back as an array;
//! - unknown fields are ignored, so a body carrying extra properties still loads;
//! - `tagInfo.id` is computed, never stored: the service assigns tag name + `_`;
//! - tagging criteria are written in priority order (lowest `taggingPriority` first, as
//!   `az dataprotection backup-policy show` lists them), but kept in memory in input order so
//!   that validation paths point at the entries the user wrote.
//!
//! Loading is two steps, parse then check: serde turns the JSON into these types (durations
//! become [`IsoDuration`]s there), then [`BackupPolicy::validate`] checks the rules that span
//! several fields (one default retention rule, a rule for every tag, ...) and names the JSON
//! path of each problem. [`BackupPolicy::from_json`] does both.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::de::{self, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::drill::{self, RestoreDrillSettings};
use crate::duration::{DurationError, IsoDuration};
use crate::schedule::{RepeatingInterval, parse_time_zone};

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
    /// In input order; written sorted by priority (see the module doc).
    #[serde(
        deserialize_with = "one_or_many",
        serialize_with = "serialize_by_priority"
    )]
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
    pub fn parse_value(mut value: Value) -> Result<BackupPolicy, Vec<PolicyError>> {
        normalize_property_names(&mut value);
        BackupPolicy::deserialize(&value).map_err(|e| locate_errors(&value, e))
    }

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

    /// Checks the rules that span fields, returning every violation with its JSON path:
    /// a known, single datasource type; at least one backup rule, backing up to VaultStore on
    /// a schedule with a default tag; exactly one default retention rule, named `Default`;
    /// unique rule and tag names; a retention rule of the same name for every other tag; in
    /// each retention rule a VaultStore lifecycle, one lifecycle per datastore, only VaultStore
    /// and ArchiveStore, and no zero retention.
    ///
    /// Indexes in paths are positions in the input as written (tagging criteria are only
    /// sorted on output), so they point at the entry to fix.
    pub fn validate(&self) -> Result<(), Vec<PolicyError>> {
        let mut errors = Vec::new();
        self.check_datasource_types(&mut errors);
        self.check_retention_rules(&mut errors);
        self.check_backup_rules(&mut errors);
        self.check_rules_have_tags(&mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn check_datasource_types(&self, errors: &mut Vec<PolicyError>) {
        if self.datasource_types.is_empty() {
            errors.push(PolicyError::NoDatasourceType {
                path: "datasourceTypes".to_owned(),
            });
        }
        let mut first: Option<(DatasourceType, &str)> = None;
        for (i, name) in self.datasource_types.iter().enumerate() {
            let path = format!("datasourceTypes[{i}]");
            match name.parse::<DatasourceType>() {
                Err(source) => errors.push(PolicyError::UnknownDatasourceType { path, source }),
                Ok(kind) => match first {
                    None => first = Some((kind, name)),
                    Some((first_kind, first_name)) if first_kind != kind => {
                        errors.push(PolicyError::MixedDatasourceTypes {
                            path,
                            value: name.clone(),
                            first: first_name.to_owned(),
                        });
                    }
                    Some(_) => {}
                },
            }
        }
    }

    fn check_retention_rules(&self, errors: &mut Vec<PolicyError>) {
        let mut default_path: Option<String> = None;
        let mut seen_names: Vec<(&str, String)> = Vec::new();
        for (i, rule) in self.policy_rules.iter().enumerate() {
            let PolicyRule::Retention(rule) = rule else {
                continue;
            };
            let rule_path = format!("policyRules[{i}]");

            match seen_names
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(&rule.name))
            {
                Some((_, first_path)) => errors.push(PolicyError::DuplicateRuleName {
                    path: format!("{rule_path}.name"),
                    name: rule.name.clone(),
                    first_path: first_path.clone(),
                }),
                None => seen_names.push((&rule.name, format!("{rule_path}.name"))),
            }

            if rule.is_default {
                if !rule.name.eq_ignore_ascii_case(DEFAULT_RULE_NAME) {
                    errors.push(PolicyError::DefaultRetentionRuleName {
                        path: format!("{rule_path}.name"),
                        name: rule.name.clone(),
                    });
                }
                match &default_path {
                    Some(first_path) => errors.push(PolicyError::ExtraDefaultRetentionRule {
                        path: format!("{rule_path}.isDefault"),
                        name: rule.name.clone(),
                        first_path: first_path.clone(),
                    }),
                    None => default_path = Some(format!("{rule_path}.isDefault")),
                }
            }

            check_lifecycles(rule, &rule_path, errors);
        }
        if default_path.is_none() {
            errors.push(PolicyError::NoDefaultRetentionRule {
                path: "policyRules".to_owned(),
            });
        }
    }

    fn check_backup_rules(&self, errors: &mut Vec<PolicyError>) {
        if self.backup_rule().is_none() {
            errors.push(PolicyError::NoBackupRule {
                path: "policyRules".to_owned(),
            });
        }
        for (i, rule) in self.policy_rules.iter().enumerate() {
            let PolicyRule::Backup(rule) = rule else {
                continue;
            };
            let rule_path = format!("policyRules[{i}]");
            if rule.data_store.data_store_type != DataStoreType::VaultStore {
                errors.push(PolicyError::BackupNotToVaultStore {
                    path: format!("{rule_path}.dataStore.dataStoreType"),
                    data_store: rule.data_store.data_store_type,
                });
            }
            match &rule.trigger {
                Trigger::Schedule(trigger) => {
                    self.check_schedule(trigger, &format!("{rule_path}.trigger"), errors);
                }
                Trigger::Adhoc(trigger) => {
                    if let Some(tag) = &trigger.tagging_criteria.tag_info {
                        self.check_tag_has_rule(
                            tag,
                            format!("{rule_path}.trigger.taggingCriteria.tagInfo.tagName"),
                            errors,
                        );
                    }
                }
            }
        }
    }

    fn check_schedule(
        &self,
        trigger: &ScheduleBasedTriggerContext,
        trigger_path: &str,
        errors: &mut Vec<PolicyError>,
    ) {
        if trigger.schedule.repeating_time_intervals.is_empty() {
            errors.push(PolicyError::NoScheduleInterval {
                path: format!("{trigger_path}.schedule.repeatingTimeIntervals"),
            });
        }
        for (k, interval) in trigger.schedule.repeating_time_intervals.iter().enumerate() {
            if let Err(source) = interval.parse::<RepeatingInterval>() {
                errors.push(PolicyError::InvalidSchedule {
                    path: format!("{trigger_path}.schedule.repeatingTimeIntervals[{k}]"),
                    source,
                });
            }
        }
        if let Err(source) = parse_time_zone(trigger.schedule.time_zone.as_deref()) {
            errors.push(PolicyError::InvalidTimeZone {
                path: format!("{trigger_path}.schedule.timeZone"),
                source,
            });
        }
        for (k, tagging) in trigger.tagging_criteria.iter().enumerate() {
            for (c, criteria) in tagging.criteria.iter().enumerate() {
                for (t, time) in criteria.schedule_times.iter().enumerate() {
                    if crate::retention::schedule_time_of_day(time, chrono_tz::UTC).is_none() {
                        errors.push(PolicyError::Malformed {
                            path: format!(
                                "{trigger_path}.taggingCriteria[{k}].criteria[{c}].scheduleTimes[{t}]"
                            ),
                            message: format!(
                                "{time:?} is not a date-time; write one such as \
                                 2021-08-15T22:00:00Z (only its time of day counts)"
                            ),
                        });
                    }
                }
            }
        }
        if !trigger.tagging_criteria.iter().any(|c| c.is_default) {
            errors.push(PolicyError::NoDefaultTag {
                path: format!("{trigger_path}.taggingCriteria"),
            });
        }
        let mut seen: Vec<(&str, String)> = Vec::new();
        for (k, criteria) in trigger.tagging_criteria.iter().enumerate() {
            let path = format!("{trigger_path}.taggingCriteria[{k}].tagInfo.tagName");
            let tag = &criteria.tag_info;
            if let Some((_, first_path)) = seen
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(&tag.tag_name))
            {
                errors.push(PolicyError::DuplicateTag {
                    path: path.clone(),
                    tag: tag.tag_name.clone(),
                    first_path: first_path.clone(),
                });
            } else {
                seen.push((&tag.tag_name, path.clone()));
            }
            // The default tag is kept by the default retention rule, whatever it is called;
            // every other tag needs the rule of its own name.
            if !criteria.is_default {
                self.check_tag_has_rule(tag, path, errors);
            }
        }
    }

    /// The reverse of [`Self::check_tag_has_rule`]: a retention rule other than the default
    /// is reached only through a tag of its name, so without one it keeps nothing. (An
    /// on-demand backup can name it, but a policy that means that should say so with a tag.)
    fn check_rules_have_tags(&self, errors: &mut Vec<PolicyError>) {
        if self.backup_rule().is_none() {
            // Reported as NoBackupRule; every rule lacking a tag would only repeat it.
            return;
        }
        let tags: Vec<&str> = self
            .backup_rules()
            .flat_map(|rule| match &rule.trigger {
                Trigger::Schedule(t) => t
                    .tagging_criteria
                    .iter()
                    .map(|c| c.tag_info.tag_name.as_str())
                    .collect::<Vec<_>>(),
                Trigger::Adhoc(t) => t
                    .tagging_criteria
                    .tag_info
                    .iter()
                    .map(|tag| tag.tag_name.as_str())
                    .collect(),
            })
            .collect();
        for (i, rule) in self.policy_rules.iter().enumerate() {
            let PolicyRule::Retention(rule) = rule else {
                continue;
            };
            if !rule.is_default && !tags.iter().any(|t| t.eq_ignore_ascii_case(&rule.name)) {
                errors.push(PolicyError::RetentionRuleWithoutTag {
                    path: format!("policyRules[{i}].name"),
                    name: rule.name.clone(),
                });
            }
        }
    }

    fn check_tag_has_rule(&self, tag: &RetentionTag, path: String, errors: &mut Vec<PolicyError>) {
        if self.retention_rule(&tag.tag_name).is_none() {
            errors.push(PolicyError::TagWithoutRetentionRule {
                path,
                tag: tag.tag_name.clone(),
            });
        }
    }
}

fn check_lifecycles(rule: &AzureRetentionRule, rule_path: &str, errors: &mut Vec<PolicyError>) {
    if rule.lifecycles.is_empty() {
        errors.push(PolicyError::NoLifecycle {
            path: format!("{rule_path}.lifecycles"),
        });
        return;
    }
    let mut seen_sources: Vec<DataStoreType> = Vec::new();
    for (j, lifecycle) in rule.lifecycles.iter().enumerate() {
        let path = format!("{rule_path}.lifecycles[{j}]");
        let source = lifecycle.source_data_store.data_store_type;
        if !is_postgres_store(source) {
            errors.push(PolicyError::UnsupportedDataStore {
                path: format!("{path}.sourceDataStore.dataStoreType"),
                data_store: source,
            });
        } else if seen_sources.contains(&source) {
            errors.push(PolicyError::DuplicateLifecycle {
                path: format!("{path}.sourceDataStore.dataStoreType"),
                data_store: source,
            });
        } else {
            seen_sources.push(source);
        }
        let keep = lifecycle.delete_after.duration;
        if keep.is_zero() {
            errors.push(PolicyError::ZeroRetention {
                path: format!("{path}.deleteAfter.duration"),
            });
        } else if let Some((min, max)) = retention_bounds(source)
            && !(min..=max).contains(&approximate_days(&keep))
        {
            errors.push(PolicyError::RetentionOutOfRange {
                path: format!("{path}.deleteAfter.duration"),
                data_store: source,
                duration: keep,
            });
        }
        for (k, copy) in lifecycle.target_data_store_copy_settings.iter().enumerate() {
            let copy_path = format!("{path}.targetDataStoreCopySettings[{k}]");
            let target = copy.data_store.data_store_type;
            if !is_postgres_store(target) {
                errors.push(PolicyError::UnsupportedDataStore {
                    path: format!("{copy_path}.dataStore.dataStoreType"),
                    data_store: target,
                });
            } else if source != DataStoreType::VaultStore || target != DataStoreType::ArchiveStore {
                errors.push(PolicyError::UnsupportedCopy {
                    path: format!("{copy_path}.dataStore.dataStoreType"),
                    from: source,
                    to: target,
                });
            } else if k > 0 {
                errors.push(PolicyError::DuplicateCopy {
                    path: copy_path.clone(),
                });
            } else if rule.lifecycle(DataStoreType::ArchiveStore).is_none() {
                errors.push(PolicyError::CopyWithoutArchiveLifecycle {
                    path: format!("{copy_path}.dataStore.dataStoreType"),
                    rule: rule.name.clone(),
                });
            }
            if let CopyOption::Custom(custom) = copy.copy_after
                && source == DataStoreType::VaultStore
                && approximate_days(&custom.duration) >= approximate_days(&keep)
            {
                errors.push(PolicyError::CopyAfterDeletion {
                    path: format!("{copy_path}.copyAfter.duration"),
                    copy_after: custom.duration,
                    delete_after: keep,
                });
            }
        }
    }
    match rule.vault_store_lifecycle() {
        None => errors.push(PolicyError::NoVaultStoreLifecycle {
            path: format!("{rule_path}.lifecycles"),
        }),
        Some(vault) => {
            // Any copy setting counts: one to the wrong store is reported on its own.
            let copies_to_archive = !vault.target_data_store_copy_settings.is_empty();
            if let Some(j) = rule
                .lifecycles
                .iter()
                .position(|l| l.source_data_store.data_store_type == DataStoreType::ArchiveStore)
                && !copies_to_archive
            {
                errors.push(PolicyError::UnreachableArchiveLifecycle {
                    path: format!("{rule_path}.lifecycles[{j}]"),
                    rule: rule.name.clone(),
                });
            }
        }
    }
}

/// The retention a datastore allows, in [`approximate_days`]: the vault tier 7 days to 10
/// years, the archive tier 6 months to 10 years, as Azure Backup for PostgreSQL allows.
fn retention_bounds(store: DataStoreType) -> Option<(u64, u64)> {
    const TEN_YEARS: u64 = 10 * 365;
    match store {
        DataStoreType::VaultStore => Some((7, TEN_YEARS)),
        DataStoreType::ArchiveStore => Some((6 * 30, TEN_YEARS)),
        DataStoreType::OperationalStore => None,
    }
}

/// A duration's length for comparing against limits, with 365-day years, 30-day months and
/// 7-day weeks, so that `P10Y`, `P120M` and `P3650D` all count as ten years and `P6M` and
/// `P180D` both as six months. (Calendar lengths vary with the start; limits should not.)
pub fn approximate_days(duration: &IsoDuration) -> u64 {
    u64::from(duration.year_part()) * 365
        + u64::from(duration.month_part()) * 30
        + u64::from(duration.week_part()) * 7
        + u64::from(duration.day_part())
        + (u64::from(duration.hour_part()) * 3600
            + u64::from(duration.minute_part()) * 60
            + u64::from(duration.second_part()))
            / 86_400
}

fn is_postgres_store(store: DataStoreType) -> bool {
    matches!(
        store,
        DataStoreType::VaultStore | DataStoreType::ArchiveStore
    )
}

// ---------------------------------------------------------------------------------------------
// Azure compatibility
// ---------------------------------------------------------------------------------------------

/// Something pgvault accepts but Azure Backup for PostgreSQL would refuse, found by
/// [`azure_compatibility_warnings`] (`backup-policy validate --azure-compatible`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyWarning {
    pub path: String,
    pub message: String,
}

impl PolicyWarning {
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl fmt::Display for PolicyWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The tag and retention rule names Azure accepts for PostgreSQL besides `Default`.
pub const AZURE_POSTGRES_TAGS: &[&str] = &["Weekly", "Monthly", "Yearly"];

/// Where Azure would refuse a policy pgvault accepts: schedules that are not weekly (Azure
/// allows only weekly backups of PostgreSQL; pgvault also runs daily and hourly ones), tag and
/// rule names other than Default, Weekly, Monthly and Yearly, time zones written as IANA names
/// (Azure writes Windows names such as `Pacific Standard Time`), and pgvault's own extensions
/// (`pgvaultRestoreDrill`).
pub fn azure_compatibility_warnings(policy: &BackupPolicy) -> Vec<PolicyWarning> {
    let mut warnings = Vec::new();
    let azure_name = |name: &str| {
        name.eq_ignore_ascii_case(DEFAULT_RULE_NAME)
            || AZURE_POSTGRES_TAGS
                .iter()
                .any(|t| t.eq_ignore_ascii_case(name))
    };
    for (i, rule) in policy.policy_rules.iter().enumerate() {
        match rule {
            PolicyRule::Retention(rule) if !azure_name(&rule.name) => {
                warnings.push(PolicyWarning {
                    path: format!("policyRules[{i}].name"),
                    message: format!(
                        "Azure accepts only the retention rules Default, {} for PostgreSQL, not {:?}",
                        AZURE_POSTGRES_TAGS.join(", "),
                        rule.name
                    ),
                });
            }
            PolicyRule::Retention(_) => {}
            PolicyRule::Backup(rule) => {
                let Trigger::Schedule(trigger) = &rule.trigger else {
                    continue;
                };
                let trigger_path = format!("policyRules[{i}].trigger");
                for (k, interval) in trigger.schedule.repeating_time_intervals.iter().enumerate() {
                    let weekly = interval
                        .parse::<RepeatingInterval>()
                        .is_ok_and(|r| r.period() == IsoDuration::weeks(1));
                    if !weekly {
                        warnings.push(PolicyWarning {
                            path: format!("{trigger_path}.schedule.repeatingTimeIntervals[{k}]"),
                            message: format!(
                                "Azure allows only weekly backups of PostgreSQL (a period of P1W), \
                                 not {interval:?}; pgvault runs it as written"
                            ),
                        });
                    }
                }
                if let Some(zone) = &trigger.schedule.time_zone
                    && zone.contains('/')
                {
                    warnings.push(PolicyWarning {
                        path: format!("{trigger_path}.schedule.timeZone"),
                        message: format!(
                            "Azure writes Windows time zone names (\"Pacific Standard Time\"), \
                             not IANA names such as {zone:?}"
                        ),
                    });
                }
                for (k, tagging) in trigger.tagging_criteria.iter().enumerate() {
                    if !tagging.is_default && !azure_name(&tagging.tag_info.tag_name) {
                        warnings.push(PolicyWarning {
                            path: format!("{trigger_path}.taggingCriteria[{k}].tagInfo.tagName"),
                            message: format!(
                                "Azure accepts only the tags {} for PostgreSQL, not {:?}",
                                AZURE_POSTGRES_TAGS.join(", "),
                                tagging.tag_info.tag_name
                            ),
                        });
                    }
                }
            }
        }
    }
    if policy.pgvault_restore_drill.is_some() {
        warnings.push(PolicyWarning {
            path: drill::POLICY_PROPERTY.to_owned(),
            message: "restore drills are pgvault's extension; Azure Backup has no such property \
                      and would refuse or drop it"
                .to_owned(),
        });
    }
    warnings
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// The path of the policy body itself, for errors that belong to no one field.
pub const ROOT: &str = "$";

/// A defect in a policy, with the JSON path of the field to fix (relative to the policy body,
/// `$` for the body itself) and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("{path}: {message}")]
    Malformed { path: String, message: String },
    #[error("{path}: {source}")]
    InvalidDuration { path: String, source: DurationError },
    #[error(
        "{path}: the policy names no datasource type; use \
         Microsoft.DBforPostgreSQL/servers/databases or Microsoft.DBforPostgreSQL/flexibleServers"
    )]
    NoDatasourceType { path: String },
    #[error("{path}: {source}")]
    UnknownDatasourceType {
        path: String,
        source: UnknownDatasourceType,
    },
    #[error(
        "{path}: {value:?} is not the same datasource type as {first:?}; a policy protects one \
         kind of datasource"
    )]
    MixedDatasourceTypes {
        path: String,
        value: String,
        first: String,
    },
    #[error(
        "{path}: the policy has no backup rule; add an AzureBackupRule with a schedule trigger \
         (get-default-policy-template has one)"
    )]
    NoBackupRule { path: String },
    #[error(
        "{path}: backups of PostgreSQL land in VaultStore, not {data_store}; set dataStoreType \
         to VaultStore"
    )]
    BackupNotToVaultStore {
        path: String,
        data_store: DataStoreType,
    },
    #[error(
        "{path}: the schedule has no repeating time interval; add one such as \
         R/2021-08-15T06:30:00+00:00/P1W"
    )]
    NoScheduleInterval { path: String },
    #[error(
        "{path}: the schedule has no default tagging criteria; add one with isDefault true, \
         tagName Default and taggingPriority 99"
    )]
    NoDefaultTag { path: String },
    #[error(
        "{path}: the tag {tag:?} is already defined at {first_path}; tag names are case-insensitive"
    )]
    DuplicateTag {
        path: String,
        tag: String,
        first_path: String,
    },
    #[error(
        "{path}: the tag {tag:?} has no retention rule of the same name; add an \
         AzureRetentionRule named {tag:?} or remove the tag"
    )]
    TagWithoutRetentionRule { path: String, tag: String },
    #[error(
        "{path}: the policy has no default retention rule; add an AzureRetentionRule named \
         Default with isDefault true"
    )]
    NoDefaultRetentionRule { path: String },
    #[error(
        "{path}: {name:?} is a second default retention rule (the first is at {first_path}); \
         exactly one rule, named Default, has isDefault true"
    )]
    ExtraDefaultRetentionRule {
        path: String,
        name: String,
        first_path: String,
    },
    #[error("{path}: the default retention rule is named {name:?}; name it Default")]
    DefaultRetentionRuleName { path: String, name: String },
    #[error(
        "{path}: a retention rule named {name:?} already exists at {first_path}; rule names are \
         case-insensitive"
    )]
    DuplicateRuleName {
        path: String,
        name: String,
        first_path: String,
    },
    #[error(
        "{path}: the retention rule has no lifecycle; add one whose sourceDataStore is VaultStore"
    )]
    NoLifecycle { path: String },
    #[error(
        "{path}: the retention rule has no lifecycle for VaultStore, where every backup lands; \
         add one"
    )]
    NoVaultStoreLifecycle { path: String },
    #[error("{path}: a second lifecycle for {data_store}; give each datastore one lifecycle")]
    DuplicateLifecycle {
        path: String,
        data_store: DataStoreType,
    },
    #[error(
        "{path}: {data_store} does not hold PostgreSQL backups; use VaultStore or ArchiveStore"
    )]
    UnsupportedDataStore {
        path: String,
        data_store: DataStoreType,
    },
    #[error(
        "{path}: a retention of zero would delete each backup as it is taken; use a positive \
         duration such as P7D or P3M"
    )]
    ZeroRetention { path: String },
    #[error(
        "{path}: {duration} is outside what {data_store} allows ({}); months count as 30 days \
         and years as 365",
        match data_store {
            DataStoreType::ArchiveStore => "6 months to 10 years",
            _ => "7 days to 10 years",
        }
    )]
    RetentionOutOfRange {
        path: String,
        data_store: DataStoreType,
        duration: IsoDuration,
    },
    #[error(
        "{path}: the retention rule {name:?} has no tag of the same name, so no backup is ever \
         kept by it; add one (`backup-policy tag set --name {name}`) or remove the rule"
    )]
    RetentionRuleWithoutTag { path: String, name: String },
    #[error("{path}: copies go from VaultStore to ArchiveStore only, not from {from} to {to}")]
    UnsupportedCopy {
        path: String,
        from: DataStoreType,
        to: DataStoreType,
    },
    #[error(
        "{path}: a lifecycle copies to the archive tier at most once; remove this copy setting"
    )]
    DuplicateCopy { path: String },
    #[error(
        "{path}: the rule {rule:?} copies to ArchiveStore but has no ArchiveStore lifecycle to \
         say how long the copy is kept; add one (`retention-rule create-lifecycle \
         --source-datastore ArchiveStore ...`)"
    )]
    CopyWithoutArchiveLifecycle { path: String, rule: String },
    #[error(
        "{path}: the rule {rule:?} has an ArchiveStore lifecycle but its VaultStore lifecycle \
         copies nothing there; add a copy setting (--target-datastore ArchiveStore \
         --copy-option CopyOnExpiryOption) or remove the ArchiveStore lifecycle"
    )]
    UnreachableArchiveLifecycle { path: String, rule: String },
    #[error(
        "{path}: a copy after {copy_after} comes after the vault tier deletes the backup \
         ({delete_after}); copy sooner, or use CopyOnExpiryOption"
    )]
    CopyAfterDeletion {
        path: String,
        copy_after: IsoDuration,
        delete_after: IsoDuration,
    },
    #[error("{path}: {source}")]
    InvalidTimeZone {
        path: String,
        source: crate::schedule::ScheduleError,
    },
    #[error("{path}: {source}")]
    InvalidSchedule {
        path: String,
        source: crate::schedule::ScheduleError,
    },
}

impl PolicyError {
    /// The JSON path of the offending field, relative to the policy body.
    pub fn path(&self) -> &str {
        match self {
            PolicyError::Malformed { path, .. }
            | PolicyError::InvalidDuration { path, .. }
            | PolicyError::NoDatasourceType { path }
            | PolicyError::UnknownDatasourceType { path, .. }
            | PolicyError::MixedDatasourceTypes { path, .. }
            | PolicyError::NoBackupRule { path }
            | PolicyError::BackupNotToVaultStore { path, .. }
            | PolicyError::NoScheduleInterval { path }
            | PolicyError::NoDefaultTag { path }
            | PolicyError::DuplicateTag { path, .. }
            | PolicyError::TagWithoutRetentionRule { path, .. }
            | PolicyError::NoDefaultRetentionRule { path }
            | PolicyError::ExtraDefaultRetentionRule { path, .. }
            | PolicyError::DefaultRetentionRuleName { path, .. }
            | PolicyError::DuplicateRuleName { path, .. }
            | PolicyError::NoLifecycle { path }
            | PolicyError::NoVaultStoreLifecycle { path }
            | PolicyError::DuplicateLifecycle { path, .. }
            | PolicyError::UnsupportedDataStore { path, .. }
            | PolicyError::ZeroRetention { path }
            | PolicyError::RetentionOutOfRange { path, .. }
            | PolicyError::RetentionRuleWithoutTag { path, .. }
            | PolicyError::UnsupportedCopy { path, .. }
            | PolicyError::DuplicateCopy { path }
            | PolicyError::CopyWithoutArchiveLifecycle { path, .. }
            | PolicyError::UnreachableArchiveLifecycle { path, .. }
            | PolicyError::CopyAfterDeletion { path, .. }
            | PolicyError::InvalidTimeZone { path, .. }
            | PolicyError::InvalidSchedule { path, .. } => path,
        }
    }
}

/// After typed parsing failed on `value`, finds where: bad durations by their exact path,
/// other defects by the rule that holds them, and the whole body's error when no rule is to
/// blame (a missing `policyRules`, a bad `datasourceTypes`).
fn locate_errors(value: &Value, whole: serde_json::Error) -> Vec<PolicyError> {
    let mut errors = Vec::new();
    for (i, rule) in as_list(value.get("policyRules")).into_iter().enumerate() {
        let Err(rule_error) = PolicyRule::deserialize(rule) else {
            continue;
        };
        let rule_path = format!("policyRules[{i}]");
        let before = errors.len();
        for (j, lifecycle) in as_list(rule.get("lifecycles")).into_iter().enumerate() {
            let lifecycle_path = format!("{rule_path}.lifecycles[{j}]");
            check_raw_duration(
                lifecycle.pointer("/deleteAfter/duration"),
                format!("{lifecycle_path}.deleteAfter.duration"),
                &mut errors,
            );
            let copies = as_list(lifecycle.get("targetDataStoreCopySettings"));
            for (k, copy) in copies.into_iter().enumerate() {
                check_raw_duration(
                    copy.pointer("/copyAfter/duration"),
                    format!("{lifecycle_path}.targetDataStoreCopySettings[{k}].copyAfter.duration"),
                    &mut errors,
                );
            }
        }
        if errors.len() == before {
            errors.push(PolicyError::Malformed {
                path: rule_path,
                message: rule_error.to_string(),
            });
        }
    }
    if let Some(settings) = value.get(drill::POLICY_PROPERTY)
        && let Err(e) = Option::<RestoreDrillSettings>::deserialize(settings)
    {
        errors.push(PolicyError::Malformed {
            path: drill::POLICY_PROPERTY.to_owned(),
            message: e.to_string(),
        });
    }
    if errors.is_empty() {
        errors.push(PolicyError::Malformed {
            path: ROOT.to_owned(),
            message: whole.to_string(),
        });
    }
    errors
}

fn check_raw_duration(value: Option<&Value>, path: String, errors: &mut Vec<PolicyError>) {
    if let Some(Value::String(text)) = value
        && let Err(source) = text.parse::<IsoDuration>()
    {
        errors.push(PolicyError::InvalidDuration { path, source });
    }
}

/// A raw JSON field read the way [`one_or_many`] reads it.
fn as_list(value: Option<&Value>) -> Vec<&Value> {
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(single) => vec![single],
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

fn canonical_property(key: &str) -> Option<&'static str> {
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
    /// comes through here, so every one is lenient about property names.
    fn try_from(mut value: Value) -> Result<Self, Self::Error> {
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

/// Writes tagging criteria lowest priority number first, the order the service answers in.
/// The sort is stable, so equal priorities keep their input order.
fn serialize_by_priority<S: Serializer>(
    criteria: &[TaggingCriteria],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut sorted: Vec<&TaggingCriteria> = criteria.iter().collect();
    sorted.sort_by_key(|criteria| criteria.tagging_priority);
    serializer.collect_seq(sorted)
}

/// Reads a polymorphic object's `objectType` and returns the index of the matching name in
/// `expected`, with the object left without it. Case is ignored, in the key as in the value,
/// because clients send `objectType` values in any case and Azure accepts them.
///
/// Going through [`Value`] costs a copy of the (small) object but lets serde's derived code
/// do the rest, where serde's own internally tagged enums would compare case-sensitively.
fn take_object_type<E: de::Error>(
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
fn variant<T, E: de::Error>(value: Value, kind: &str) -> Result<T, E>
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CREATE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/conformance/azure/CreateOrUpdateBackupPolicy.json"
    ));
    const GET: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/conformance/azure/GetBackupPolicy.json"
    ));
    const LIST: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/conformance/azure/ListBackupPolicy.json"
    ));

    /// `az dataprotection backup-policy show` output from the flexible server CLI walkthrough
    /// (shared/seeds/backup-postgresql-flex-cli.md), `properties` only: what the live service
    /// answers, with its `null`s, its leading blank in a datasource type, and its tagging
    /// criteria in priority order.
    const CLI_SHOW: &str = r#"{
      "datasourceTypes": [" Microsoft.DBforPostgreSQL/flexibleServers/databases"],
      "objectType": "BackupPolicy",
      "policyRules": [
        {
          "backupParameters": {"backupType": "Full", "objectType": "AzureBackupParams"},
          "dataStore": {"dataStoreType": "VaultStore", "objectType": "DataStoreInfoBase"},
          "name": "BackupWeekly",
          "objectType": "AzureBackupRule",
          "trigger": {
            "objectType": "ScheduleBasedTriggerContext",
            "schedule": {
              "repeatingTimeIntervals": ["R/2020-04-04T20:00:00+00:00/P1W", "R/2020-04-01T20:00:00+00:00/P1W"],
              "timeZone": "UTC"
            },
            "taggingCriteria": [
              {
                "criteria": [
                  {
                    "absoluteCriteria": ["FirstOfMonth"],
                    "daysOfMonth": null,
                    "daysOfTheWeek": null,
                    "monthsOfYear": null,
                    "objectType": "ScheduleBasedBackupCriteria",
                    "scheduleTimes": null,
                    "weeksOfTheMonth": null
                  }
                ],
                "isDefault": false,
                "tagInfo": {"eTag": null, "id": "Monthly_", "tagName": "Monthly"},
                "taggingPriority": 15
              },
              {
                "criteria": null,
                "isDefault": true,
                "tagInfo": {"eTag": null, "id": "Default_", "tagName": "Default"},
                "taggingPriority": 99
              }
            ]
          }
        },
        {
          "isDefault": false,
          "lifecycles": [
            {
              "deleteAfter": {"duration": "P10Y", "objectType": "AbsoluteDeleteOption"},
              "sourceDataStore": {"dataStoreType": "VaultStore", "objectType": "DataStoreInfoBase"},
              "targetDataStoreCopySettings": []
            }
          ],
          "name": "Monthly",
          "objectType": "AzureRetentionRule"
        },
        {
          "isDefault": true,
          "lifecycles": [
            {
              "deleteAfter": {"duration": "P1Y", "objectType": "AbsoluteDeleteOption"},
              "sourceDataStore": {"dataStoreType": "VaultStore", "objectType": "DataStoreInfoBase"},
              "targetDataStoreCopySettings": []
            }
          ],
          "name": "Default",
          "objectType": "AzureRetentionRule"
        }
      ]
    }"#;

    /// A policy with an archive tier: the PowerShell walkthrough's `Monthly` rule (six months
    /// in the vault, then moved to archive and kept 24 months there) on the default template.
    fn archive_policy() -> Value {
        json!({
            "datasourceTypes": ["Microsoft.DBforPostgreSQL/servers/databases"],
            "objectType": "BackupPolicy",
            "policyRules": [
                {
                    "name": "BackupWeekly",
                    "objectType": "AzureBackupRule",
                    "backupParameters": {"backupType": "Full", "objectType": "AzureBackupParams"},
                    "dataStore": {"dataStoreType": "VaultStore", "objectType": "DataStoreInfoBase"},
                    "trigger": {
                        "objectType": "ScheduleBasedTriggerContext",
                        "schedule": {
                            "repeatingTimeIntervals": ["R/2021-08-15T22:00:00+00:00/P1W"],
                            "timeZone": "UTC"
                        },
                        "taggingCriteria": [
                            {
                                "isDefault": true,
                                "taggingPriority": 99,
                                "tagInfo": {"id": "Default_", "tagName": "Default"}
                            },
                            {
                                "isDefault": false,
                                "taggingPriority": 15,
                                "tagInfo": {"id": "Monthly_", "tagName": "Monthly"},
                                "criteria": [{
                                    "objectType": "ScheduleBasedBackupCriteria",
                                    "absoluteCriteria": ["FirstOfMonth"]
                                }]
                            }
                        ]
                    }
                },
                {
                    "name": "Default",
                    "objectType": "AzureRetentionRule",
                    "isDefault": true,
                    "lifecycles": [{
                        "deleteAfter": {"duration": "P3M", "objectType": "AbsoluteDeleteOption"},
                        "sourceDataStore": {"dataStoreType": "VaultStore", "objectType": "DataStoreInfoBase"},
                        "targetDataStoreCopySettings": []
                    }]
                },
                {
                    "name": "Monthly",
                    "objectType": "AzureRetentionRule",
                    "isDefault": false,
                    "lifecycles": [
                        {
                            "deleteAfter": {"duration": "P6M", "objectType": "AbsoluteDeleteOption"},
                            "sourceDataStore": {"dataStoreType": "VaultStore", "objectType": "DataStoreInfoBase"},
                            "targetDataStoreCopySettings": [{
                                "dataStore": {"dataStoreType": "ArchiveStore", "objectType": "DataStoreInfoBase"},
                                "copyAfter": {"objectType": "CopyOnExpiryOption"}
                            }]
                        },
                        {
                            "deleteAfter": {"duration": "P24M", "objectType": "AbsoluteDeleteOption"},
                            "sourceDataStore": {"dataStoreType": "ArchiveStore", "objectType": "DataStoreInfoBase"},
                            "targetDataStoreCopySettings": []
                        }
                    ]
                }
            ]
        })
    }

    fn parse(value: &Value) -> BackupPolicy {
        serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{e}\n{value:#}"))
    }

    fn normalized(value: &Value) -> Value {
        serde_json::to_value(parse(value)).unwrap()
    }

    /// Every policy body in the REST examples: request bodies at
    /// `parameters.parameters.properties`, response bodies at `responses.*.body.properties`
    /// (and each element of a list response's `value`).
    fn corpus_bodies() -> Vec<(String, Value)> {
        let mut bodies = Vec::new();
        for (file, text) in [("Create", CREATE), ("Get", GET), ("List", LIST)] {
            let example: Value = serde_json::from_str(text).unwrap();
            if let Some(body) = example.pointer("/parameters/parameters/properties") {
                bodies.push((format!("{file} request"), body.clone()));
            }
            for (status, response) in example["responses"].as_object().unwrap() {
                let body = &response["body"];
                if let Some(properties) = body.get("properties") {
                    bodies.push((format!("{file} {status}"), properties.clone()));
                }
                for (i, item) in as_list(body.get("value")).into_iter().enumerate() {
                    bodies.push((
                        format!("{file} {status} value[{i}]"),
                        item["properties"].clone(),
                    ));
                }
            }
        }
        bodies
    }

    /// What the live service answers for a body the REST examples show, where the two differ.
    /// The service assigns tag ids (tag name + `_`; the Create example's response shows it).
    /// Beyond that, the examples are written by hand and echo the request, while the service
    /// as the az CLI shows it (`CLI_SHOW`, and the templates) does two things more, which
    /// pgvault's output copies: it writes `targetDataStoreCopySettings: []` when there is no
    /// copy, and it lists tagging criteria by priority (the examples list `Default` (99) before
    /// `Weekly` (20)). These two are the inherent differences from the examples' responses.
    fn as_the_service_writes_it(mut body: Value) -> Value {
        for rule in body["policyRules"].as_array_mut().unwrap() {
            if let Some(lifecycles) = rule.get_mut("lifecycles") {
                for lifecycle in lifecycles.as_array_mut().unwrap() {
                    let lifecycle = lifecycle.as_object_mut().unwrap();
                    lifecycle
                        .entry("targetDataStoreCopySettings")
                        .or_insert_with(|| json!([]));
                }
            }
            if let Some(criteria) = rule.pointer_mut("/trigger/taggingCriteria") {
                let criteria = criteria.as_array_mut().unwrap();
                for c in criteria.iter_mut() {
                    let id = format!("{}_", c["tagInfo"]["tagName"].as_str().unwrap());
                    c["tagInfo"]["id"] = json!(id);
                }
                criteria.sort_by_key(|c| c["taggingPriority"].as_i64().unwrap());
            }
        }
        body
    }

    #[test]
    fn every_corpus_body_deserializes_and_validates() {
        let bodies = corpus_bodies();
        assert_eq!(bodies.len(), 4, "Create request + response, Get, List");
        for (name, body) in bodies {
            let policy = parse(&body);
            assert_eq!(policy.validate(), Ok(()), "{name}");
            assert_eq!(
                policy.datasource_type(),
                Some(DatasourceType::AzureDatabaseForPostgreSQL),
                "{name}: OssDB is single server"
            );
            // Normalizing is idempotent, and equal to the body up to the service's own
            // normalization.
            let once = serde_json::to_value(&policy).unwrap();
            assert_eq!(normalized(&once), once, "{name}");
            assert_eq!(once, as_the_service_writes_it(body), "{name}");
        }
    }

    #[test]
    fn create_request_normalizes_to_its_response() {
        let example: Value = serde_json::from_str(CREATE).unwrap();
        let request = &example["parameters"]["parameters"]["properties"];
        let response = &example["responses"]["200"]["body"]["properties"];

        let ours = normalized(request);
        // What the service adds that the request lacks: tag ids.
        assert_eq!(
            ours.pointer("/policyRules/0/trigger/taggingCriteria/1/tagInfo/id"),
            Some(&json!("Default_"))
        );
        assert_eq!(
            ours.pointer("/policyRules/0/trigger/taggingCriteria/0/tagInfo/id"),
            Some(&json!("Weekly_"))
        );
        // Everything else the response gives, after the two inherent differences explained in
        // `as_the_service_writes_it`.
        assert_eq!(ours, as_the_service_writes_it(response.clone()));
        // And the response, read back, is the same policy as the request.
        assert_eq!(parse(request), parse(response));
    }

    #[test]
    fn cli_output_loads_and_normalizes() {
        let body: Value = serde_json::from_str(CLI_SHOW).unwrap();
        let policy = parse(&body);
        assert_eq!(policy.validate(), Ok(()));
        assert_eq!(
            policy.datasource_type(),
            Some(DatasourceType::AzureDatabaseForPostgreSQLFlexibleServer)
        );
        // Kept as given, leading blank included.
        assert_eq!(
            policy.datasource_types,
            [" Microsoft.DBforPostgreSQL/flexibleServers/databases"]
        );
        assert_eq!(policy.retention_rule_names(), ["Monthly", "Default"]);

        // The service's nulls become absent (optional lists) and no eTag; the rest is as sent.
        let mut expected = body.clone();
        let criteria = expected
            .pointer_mut("/policyRules/0/trigger/taggingCriteria")
            .unwrap();
        for tag in criteria.as_array_mut().unwrap() {
            let tag = tag.as_object_mut().unwrap();
            if tag["criteria"].is_null() {
                tag.remove("criteria");
            }
            tag["tagInfo"].as_object_mut().unwrap().remove("eTag");
            if let Some(list) = tag.get_mut("criteria") {
                for c in list.as_array_mut().unwrap() {
                    c.as_object_mut().unwrap().retain(|_, v| !v.is_null());
                }
            }
        }
        assert_eq!(serde_json::to_value(&policy).unwrap(), expected);
    }

    #[test]
    fn loose_input_is_accepted_and_normalized() {
        // (what, input fragment applied to the archive policy, pointer, normalized value there)
        type Edit = fn(&mut Value);
        let cases: &[(&str, Edit, &str, Value)] = &[
            (
                "a single copy setting object becomes an array",
                |p| {
                    let copy = p["policyRules"][2]["lifecycles"][0]["targetDataStoreCopySettings"]
                        [0]
                    .clone();
                    p["policyRules"][2]["lifecycles"][0]["targetDataStoreCopySettings"] = copy;
                },
                "/policyRules/2/lifecycles/0/targetDataStoreCopySettings/0/dataStore/dataStoreType",
                json!("ArchiveStore"),
            ),
            (
                "null copy settings become []",
                |p| {
                    p["policyRules"][1]["lifecycles"][0]["targetDataStoreCopySettings"] =
                        Value::Null
                },
                "/policyRules/1/lifecycles/0/targetDataStoreCopySettings",
                json!([]),
            ),
            (
                "missing copy settings become []",
                |p| {
                    p["policyRules"][1]["lifecycles"][0]
                        .as_object_mut()
                        .unwrap()
                        .remove("targetDataStoreCopySettings");
                },
                "/policyRules/1/lifecycles/0/targetDataStoreCopySettings",
                json!([]),
            ),
            (
                "a single datasource type string becomes an array",
                |p| p["datasourceTypes"] = json!("OssDB"),
                "/datasourceTypes",
                json!(["OssDB"]),
            ),
            (
                "a single lifecycle object becomes an array",
                |p| {
                    let lifecycle = p["policyRules"][1]["lifecycles"][0].clone();
                    p["policyRules"][1]["lifecycles"] = lifecycle;
                },
                "/policyRules/1/lifecycles/0/deleteAfter/duration",
                json!("P3M"),
            ),
            (
                "a single absolute criterion becomes an array",
                |p| {
                    p["policyRules"][0]["trigger"]["taggingCriteria"][1]["criteria"][0]["absoluteCriteria"] =
                        json!("FirstOfMonth")
                },
                "/policyRules/0/trigger/taggingCriteria/0/criteria/0/absoluteCriteria",
                json!(["FirstOfMonth"]),
            ),
            (
                "objectType values in any case",
                |p| {
                    p["policyRules"][1]["objectType"] = json!("azureretentionrule");
                    p["policyRules"][0]["trigger"]["objectType"] =
                        json!("SCHEDULEBASEDTRIGGERCONTEXT");
                    p["policyRules"][2]["lifecycles"][0]["targetDataStoreCopySettings"][0]["copyAfter"]
                        ["objectType"] = json!("copyOnExpiryOption");
                },
                "/policyRules/1/objectType",
                json!("AzureRetentionRule"),
            ),
            (
                "enum values in any case",
                |p| {
                    p["policyRules"][1]["lifecycles"][0]["sourceDataStore"]["dataStoreType"] =
                        json!("vaultstore")
                },
                "/policyRules/1/lifecycles/0/sourceDataStore/dataStoreType",
                json!("VaultStore"),
            ),
            (
                "unknown fields are ignored",
                |p| {
                    p["name"] = json!("OSSDBPolicy");
                    p["policyRules"][1]["somethingNew"] = json!({"x": 1});
                    p["policyRules"][0]["trigger"]["schedule"]["extra"] = json!(true);
                },
                "/policyRules/1/somethingNew",
                Value::Null,
            ),
            (
                "a tag id sent by the client is replaced by the service's",
                |p| {
                    p["policyRules"][0]["trigger"]["taggingCriteria"][0]["tagInfo"]["id"] =
                        json!("whatever")
                },
                "/policyRules/0/trigger/taggingCriteria/1/tagInfo/id",
                json!("Default_"),
            ),
            (
                "a missing tag id is assigned",
                |p| {
                    p["policyRules"][0]["trigger"]["taggingCriteria"][1]["tagInfo"]
                        .as_object_mut()
                        .unwrap()
                        .remove("id");
                },
                "/policyRules/0/trigger/taggingCriteria/0/tagInfo/id",
                json!("Monthly_"),
            ),
            (
                "durations are written canonically",
                |p| {
                    p["policyRules"][2]["lifecycles"][1]["deleteAfter"]["duration"] = json!("p2y0m")
                },
                "/policyRules/2/lifecycles/1/deleteAfter/duration",
                json!("P2Y"),
            ),
        ];
        for (what, edit, pointer, expected) in cases {
            let mut input = archive_policy();
            edit(&mut input);
            let output = normalized(&input);
            assert_eq!(
                output.pointer(pointer).unwrap_or(&Value::Null),
                expected,
                "{what}"
            );
            assert_eq!(parse(&input).validate(), Ok(()), "{what}");
        }
    }

    #[test]
    fn property_names_match_in_any_case_and_in_snake_case() {
        let expected = parse(&archive_policy());
        // Every key upper-cased: the policy still reads the same.
        fn shout(value: &mut Value) {
            match value {
                Value::Array(items) => items.iter_mut().for_each(shout),
                Value::Object(object) => {
                    let old = std::mem::take(object);
                    for (key, mut v) in old {
                        shout(&mut v);
                        object.insert(key.to_ascii_uppercase(), v);
                    }
                }
                _ => {}
            }
        }
        let mut loud = archive_policy();
        shout(&mut loud);
        assert_eq!(parse(&loud), expected);
        assert_eq!(BackupPolicy::from_json(&loud.to_string()), Ok(expected));

        // What `az dataprotection backup-policy tag create-generic-criteria --days-of-week
        // Sunday Friday --days-of-month 1 Last` prints, snake_case and nulls included.
        let az_cli = json!({
            "object_type": "ScheduleBasedBackupCriteria",
            "days_of_month": [{"date": 1, "is_last": false}, {"is_last": true}],
            "days_of_the_week": ["Sunday", "Friday"],
            "months_of_year": null,
            "weeks_of_the_month": null
        });
        let criteria: ScheduleBasedBackupCriteria = from_lenient_value(az_cli).unwrap();
        assert_eq!(
            criteria.days_of_the_week,
            [DayOfWeek::Sunday, DayOfWeek::Friday]
        );
        assert_eq!(
            criteria.days_of_month,
            [DayOfMonth::Date(1), DayOfMonth::Last]
        );
        assert!(criteria.months_of_year.is_empty());

        // A key in Azure's spelling wins over the same property in another spelling.
        let mut both = json!({"tagName": "Monthly", "TAGNAME": "Weekly"});
        normalize_property_names(&mut both);
        assert_eq!(both, json!({"tagName": "Monthly"}));
        // Keys that name no property are left alone.
        let mut unknown = json!({"Some_Thing": 1});
        normalize_property_names(&mut unknown);
        assert_eq!(unknown, json!({"Some_Thing": 1}));
    }

    #[test]
    fn tagging_criteria_are_written_by_priority_and_kept_in_input_order() {
        let policy = parse(&archive_policy());
        let Some(Trigger::Schedule(trigger)) = policy.backup_rule().map(|r| &r.trigger) else {
            panic!("schedule trigger expected");
        };
        let names = |list: Vec<&TaggingCriteria>| -> Vec<String> {
            list.into_iter()
                .map(|c| c.tag_info.tag_name.clone())
                .collect()
        };
        assert_eq!(
            names(trigger.tagging_criteria.iter().collect()),
            ["Default", "Monthly"]
        );
        assert_eq!(
            names(trigger.tagging_criteria_by_priority()),
            ["Monthly", "Default"]
        );
        let output = normalized(&archive_policy());
        let written: Vec<&Value> = output["policyRules"][0]["trigger"]["taggingCriteria"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| &c["tagInfo"]["tagName"])
            .collect();
        assert_eq!(written, [&json!("Monthly"), &json!("Default")]);
    }

    #[test]
    fn every_variant_round_trips() {
        let policy = BackupPolicy {
            pgvault_restore_drill: None,
            name: None,
            datasource_types: vec!["Microsoft.DBforPostgreSQL/flexibleServers".into()],
            policy_rules: vec![
                PolicyRule::Backup(AzureBackupRule {
                    name: "BackupAdhoc".into(),
                    backup_parameters: None,
                    data_store: DataStoreInfo::new(DataStoreType::VaultStore),
                    trigger: Trigger::Adhoc(AdhocBasedTriggerContext {
                        tagging_criteria: AdhocBasedTaggingCriteria {
                            tag_info: Some(RetentionTag::new("Default")),
                        },
                    }),
                }),
                PolicyRule::Backup(AzureBackupRule {
                    name: "BackupDaily".into(),
                    backup_parameters: Some(BackupParameters {
                        backup_type: "Full".into(),
                    }),
                    data_store: DataStoreInfo::new(DataStoreType::VaultStore),
                    trigger: Trigger::Schedule(ScheduleBasedTriggerContext {
                        schedule: BackupSchedule {
                            repeating_time_intervals: vec![
                                "R/2021-08-15T06:30:00+00:00/P1D".into(),
                            ],
                            time_zone: Some("W. Europe Standard Time".into()),
                        },
                        tagging_criteria: vec![
                            TaggingCriteria {
                                is_default: true,
                                tagging_priority: 99,
                                tag_info: RetentionTag::new("Default"),
                                criteria: vec![],
                            },
                            TaggingCriteria {
                                is_default: false,
                                tagging_priority: 10,
                                tag_info: RetentionTag {
                                    tag_name: "Yearly".into(),
                                    e_tag: Some("etag-1".into()),
                                },
                                criteria: vec![ScheduleBasedBackupCriteria {
                                    absolute_criteria: vec![],
                                    days_of_the_week: vec![DayOfWeek::Sunday, DayOfWeek::Friday],
                                    weeks_of_the_month: vec![WeekNumber::First, WeekNumber::Last],
                                    months_of_year: vec![Month::January, Month::July],
                                    days_of_month: vec![DayOfMonth::Date(1), DayOfMonth::Last],
                                    schedule_times: vec!["2019-03-01T13:00:00Z".into()],
                                }],
                            },
                            TaggingCriteria {
                                is_default: false,
                                tagging_priority: 15,
                                tag_info: RetentionTag::new("Monthly"),
                                criteria: vec![ScheduleBasedBackupCriteria {
                                    absolute_criteria: vec![AbsoluteMarker::FirstOfMonth],
                                    ..Default::default()
                                }],
                            },
                        ],
                    }),
                }),
                PolicyRule::Retention(AzureRetentionRule {
                    name: "Default".into(),
                    is_default: true,
                    lifecycles: vec![
                        SourceLifeCycle {
                            source_data_store: DataStoreInfo::new(DataStoreType::VaultStore),
                            delete_after: AbsoluteDeleteOption::new(IsoDuration::days(7)),
                            target_data_store_copy_settings: vec![TargetCopySetting {
                                data_store: DataStoreInfo::new(DataStoreType::ArchiveStore),
                                copy_after: CopyOption::Immediate,
                            }],
                        },
                        SourceLifeCycle {
                            source_data_store: DataStoreInfo::new(DataStoreType::ArchiveStore),
                            delete_after: AbsoluteDeleteOption::new(IsoDuration::months(6)),
                            target_data_store_copy_settings: vec![],
                        },
                    ],
                }),
                PolicyRule::Retention(AzureRetentionRule {
                    name: "Monthly".into(),
                    is_default: false,
                    lifecycles: vec![
                        SourceLifeCycle {
                            source_data_store: DataStoreInfo::new(DataStoreType::VaultStore),
                            delete_after: AbsoluteDeleteOption::new(IsoDuration::months(3)),
                            target_data_store_copy_settings: vec![TargetCopySetting {
                                data_store: DataStoreInfo::new(DataStoreType::ArchiveStore),
                                copy_after: CopyOption::Custom(CustomCopyOption {
                                    duration: IsoDuration::hours(4),
                                }),
                            }],
                        },
                        SourceLifeCycle {
                            source_data_store: DataStoreInfo::new(DataStoreType::ArchiveStore),
                            delete_after: AbsoluteDeleteOption::new(IsoDuration::years(1)),
                            target_data_store_copy_settings: vec![],
                        },
                    ],
                }),
                PolicyRule::Retention(AzureRetentionRule {
                    name: "Yearly".into(),
                    is_default: false,
                    lifecycles: vec![
                        SourceLifeCycle {
                            source_data_store: DataStoreInfo::new(DataStoreType::VaultStore),
                            delete_after: AbsoluteDeleteOption::new(IsoDuration::months(6)),
                            target_data_store_copy_settings: vec![TargetCopySetting {
                                data_store: DataStoreInfo::new(DataStoreType::ArchiveStore),
                                copy_after: CopyOption::CopyOnExpiry,
                            }],
                        },
                        SourceLifeCycle {
                            source_data_store: DataStoreInfo::new(DataStoreType::ArchiveStore),
                            delete_after: AbsoluteDeleteOption::new(IsoDuration::years(10)),
                            target_data_store_copy_settings: vec![],
                        },
                    ],
                }),
            ],
        };
        assert_eq!(policy.validate(), Ok(()));
        let value = serde_json::to_value(&policy).unwrap();
        let back: BackupPolicy = serde_json::from_value(value.clone()).unwrap();
        // Tagging criteria come back in priority order, as written; otherwise identical.
        let mut expected = policy.clone();
        if let PolicyRule::Backup(rule) = &mut expected.policy_rules[1]
            && let Trigger::Schedule(trigger) = &mut rule.trigger
        {
            trigger.tagging_criteria.sort_by_key(|c| c.tagging_priority);
        }
        assert_eq!(back, expected);

        let criteria = &value["policyRules"][1]["trigger"]["taggingCriteria"][0];
        assert_eq!(
            criteria,
            &json!({
                "isDefault": false,
                "taggingPriority": 10,
                "tagInfo": {"tagName": "Yearly", "id": "Yearly_", "eTag": "etag-1"},
                "criteria": [{
                    "objectType": "ScheduleBasedBackupCriteria",
                    "daysOfTheWeek": ["Sunday", "Friday"],
                    "weeksOfTheMonth": ["First", "Last"],
                    "monthsOfYear": ["January", "July"],
                    "daysOfMonth": [{"date": 1, "isLast": false}, {"isLast": true}],
                    "scheduleTimes": ["2019-03-01T13:00:00Z"]
                }]
            })
        );
        assert_eq!(
            value["policyRules"][0]["trigger"],
            json!({
                "objectType": "AdhocBasedTriggerContext",
                "taggingCriteria": {"tagInfo": {"tagName": "Default", "id": "Default_"}}
            })
        );
        assert_eq!(
            value["policyRules"][2]["lifecycles"][0]["targetDataStoreCopySettings"],
            json!([{
                "dataStore": {"dataStoreType": "ArchiveStore", "objectType": "DataStoreInfoBase"},
                "copyAfter": {"objectType": "ImmediateCopyOption"}
            }])
        );
        assert_eq!(
            value["policyRules"][3]["lifecycles"][0]["targetDataStoreCopySettings"],
            json!([{
                "dataStore": {"dataStoreType": "ArchiveStore", "objectType": "DataStoreInfoBase"},
                "copyAfter": {"objectType": "CustomCopyOption", "duration": "PT4H"}
            }])
        );
    }

    #[test]
    fn days_of_month_read_every_spelling() {
        let cases = [
            (
                json!({"date": 5, "isLast": false}),
                Some(DayOfMonth::Date(5)),
            ),
            (json!({"date": 28}), Some(DayOfMonth::Date(28))),
            (json!({"isLast": true}), Some(DayOfMonth::Last)),
            (json!({"date": 0, "isLast": true}), Some(DayOfMonth::Last)),
            (json!({"date": 0, "isLast": false}), None),
            (json!({"date": 31}), None),
            (json!({}), None),
        ];
        for (input, expected) in cases {
            let parsed = serde_json::from_value::<DayOfMonth>(input.clone()).ok();
            assert_eq!(parsed, expected, "{input}");
        }
    }

    #[test]
    fn datasource_types_parse_every_name() {
        use DatasourceType::*;
        let cases = [
            (
                "AzureDatabaseForPostgreSQL",
                Some(AzureDatabaseForPostgreSQL),
            ),
            (
                "Microsoft.DBforPostgreSQL/servers/databases",
                Some(AzureDatabaseForPostgreSQL),
            ),
            (
                "microsoft.dbforpostgresql/servers/databases",
                Some(AzureDatabaseForPostgreSQL),
            ),
            ("OssDB", Some(AzureDatabaseForPostgreSQL)),
            (
                "AzureDatabaseForPostgreSQLFlexibleServer",
                Some(AzureDatabaseForPostgreSQLFlexibleServer),
            ),
            (
                "Microsoft.DBforPostgreSQL/flexibleServers",
                Some(AzureDatabaseForPostgreSQLFlexibleServer),
            ),
            (
                " Microsoft.DBforPostgreSQL/flexibleServers/databases",
                Some(AzureDatabaseForPostgreSQLFlexibleServer),
            ),
            ("Microsoft.Storage/storageAccounts/blobServices", None),
            ("AzureDisk", None),
        ];
        for (name, expected) in cases {
            assert_eq!(name.parse::<DatasourceType>().ok(), expected, "{name}");
        }
        for kind in DatasourceType::ALL {
            assert_eq!(kind.cli_name().parse::<DatasourceType>(), Ok(kind));
            assert_eq!(kind.arm_type().parse::<DatasourceType>(), Ok(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), json!(kind.cli_name()));
        }
        let err = "AzureDisk".parse::<DatasourceType>().unwrap_err();
        assert!(err.to_string().contains("\"AzureDisk\""), "{err}");
    }

    #[test]
    fn vocabularies_reject_unknown_values_naming_them() {
        let err = serde_json::from_value::<DataStoreType>(json!("TapeStore")).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("\"TapeStore\""), "{message}");
        assert!(message.contains("VaultStore, ArchiveStore"), "{message}");
        assert_eq!("sunday".parse::<DayOfWeek>(), Ok(DayOfWeek::Sunday));
        assert_eq!(
            chrono::Weekday::from(DayOfWeek::Sunday),
            chrono::Weekday::Sun
        );
        assert_eq!(Month::December.number(), 12);
        assert_eq!(Month::January.number(), 1);
        assert!("Fifth".parse::<WeekNumber>().is_err());
        assert_eq!(AbsoluteMarker::FirstOfYear.to_string(), "FirstOfYear");
    }

    #[test]
    fn lookups_ignore_case() {
        let policy = parse(&archive_policy());
        assert_eq!(
            policy.backup_rule().map(|r| r.name.as_str()),
            Some("BackupWeekly")
        );
        assert_eq!(policy.retention_rule_names(), ["Default", "Monthly"]);
        assert_eq!(
            policy.default_retention_rule().map(|r| r.name.as_str()),
            Some("Default")
        );
        for name in ["Monthly", "monthly", "MONTHLY"] {
            assert_eq!(
                policy.retention_rule(name).map(|r| r.name.as_str()),
                Some("Monthly")
            );
        }
        assert!(policy.retention_rule("Weekly").is_none());

        let monthly = policy.retention_rule("monthly").unwrap();
        let vault = monthly.vault_store_lifecycle().unwrap();
        assert_eq!(vault.delete_after.duration, IsoDuration::months(6));
        assert_eq!(
            vault.target_data_store_copy_settings[0].copy_after,
            CopyOption::CopyOnExpiry
        );
        let archive = monthly.lifecycle(DataStoreType::ArchiveStore).unwrap();
        assert_eq!(archive.delete_after.duration, IsoDuration::months(24));
        assert_eq!(
            archive.source_data_store.data_store_type,
            DataStoreType::ArchiveStore
        );
        assert!(
            policy
                .retention_rule("Default")
                .unwrap()
                .lifecycle(DataStoreType::ArchiveStore)
                .is_none()
        );
    }

    #[test]
    fn validation_names_the_path_of_each_problem() {
        type Edit = fn(&mut Value);
        // (what, edit of the archive policy, expected error paths in order)
        let cases: &[(&str, Edit, &[&str])] = &[
            (
                "no datasource type",
                |p| p["datasourceTypes"] = json!([]),
                &["datasourceTypes"],
            ),
            (
                "a datasource type that is not PostgreSQL",
                |p| p["datasourceTypes"] = json!(["OssDB", "AzureDisk"]),
                &["datasourceTypes[1]"],
            ),
            (
                "two different datasource types",
                |p| {
                    p["datasourceTypes"] =
                        json!(["OssDB", "Microsoft.DBforPostgreSQL/flexibleServers"])
                },
                &["datasourceTypes[1]"],
            ),
            (
                "no backup rule",
                |p| {
                    p["policyRules"].as_array_mut().unwrap().remove(0);
                },
                &["policyRules"],
            ),
            (
                "backups into the archive tier",
                |p| p["policyRules"][0]["dataStore"]["dataStoreType"] = json!("ArchiveStore"),
                &["policyRules[0].dataStore.dataStoreType"],
            ),
            (
                "no schedule interval",
                |p| {
                    p["policyRules"][0]["trigger"]["schedule"]["repeatingTimeIntervals"] = json!([])
                },
                &["policyRules[0].trigger.schedule.repeatingTimeIntervals"],
            ),
            (
                "no default tag",
                |p| {
                    p["policyRules"][0]["trigger"]["taggingCriteria"][0]["isDefault"] = json!(false)
                },
                &["policyRules[0].trigger.taggingCriteria"],
            ),
            (
                "a tag without a retention rule",
                |p| {
                    p["policyRules"][0]["trigger"]["taggingCriteria"][1]["tagInfo"]["tagName"] =
                        json!("Weekly")
                },
                // And the Monthly rule has lost its tag.
                &[
                    "policyRules[0].trigger.taggingCriteria[1].tagInfo.tagName",
                    "policyRules[2].name",
                ],
            ),
            (
                "the same tag twice",
                |p| {
                    let tag = p["policyRules"][0]["trigger"]["taggingCriteria"][1].clone();
                    p["policyRules"][0]["trigger"]["taggingCriteria"]
                        .as_array_mut()
                        .unwrap()
                        .push(tag);
                },
                &["policyRules[0].trigger.taggingCriteria[2].tagInfo.tagName"],
            ),
            (
                "an ad hoc trigger naming a missing rule",
                |p| {
                    p["policyRules"][0]["trigger"] = json!({
                        "objectType": "AdhocBasedTriggerContext",
                        "taggingCriteria": {"tagInfo": {"tagName": "Weekly"}}
                    });
                },
                // The schedule went with the old trigger, so Monthly has no tag either.
                &[
                    "policyRules[0].trigger.taggingCriteria.tagInfo.tagName",
                    "policyRules[2].name",
                ],
            ),
            (
                "no default retention rule",
                |p| p["policyRules"][1]["isDefault"] = json!(false),
                &["policyRules"],
            ),
            (
                "a default retention rule not named Default",
                |p| {
                    p["policyRules"][1]["name"] = json!("Basic");
                },
                &["policyRules[1].name"],
            ),
            (
                "two default retention rules",
                |p| p["policyRules"][2]["isDefault"] = json!(true),
                &["policyRules[2].name", "policyRules[2].isDefault"],
            ),
            (
                "two rules with one name, in different case",
                |p| p["policyRules"][2]["name"] = json!("DEFAULT"),
                &[
                    "policyRules[2].name",
                    "policyRules[0].trigger.taggingCriteria[1].tagInfo.tagName",
                ],
            ),
            (
                "a retention rule without lifecycles",
                |p| p["policyRules"][2]["lifecycles"] = json!([]),
                &["policyRules[2].lifecycles"],
            ),
            (
                "a retention rule without a vault lifecycle",
                |p| {
                    p["policyRules"][2]["lifecycles"]
                        .as_array_mut()
                        .unwrap()
                        .remove(0);
                },
                &["policyRules[2].lifecycles"],
            ),
            (
                "an operational store lifecycle",
                |p| {
                    p["policyRules"][2]["lifecycles"][1]["sourceDataStore"]["dataStoreType"] =
                        json!("OperationalStore")
                },
                // The archive lifecycle it replaced is now missing for the copy.
                &[
                    "policyRules[2].lifecycles[0].targetDataStoreCopySettings[0].dataStore.dataStoreType",
                    "policyRules[2].lifecycles[1].sourceDataStore.dataStoreType",
                ],
            ),
            (
                "a copy into the operational store",
                |p| {
                    p["policyRules"][2]["lifecycles"][0]["targetDataStoreCopySettings"][0]["dataStore"]
                        ["dataStoreType"] = json!("OperationalStore")
                },
                &[
                    "policyRules[2].lifecycles[0].targetDataStoreCopySettings[0].dataStore.dataStoreType",
                ],
            ),
            (
                "two lifecycles for one datastore",
                |p| {
                    p["policyRules"][2]["lifecycles"][1]["sourceDataStore"]["dataStoreType"] =
                        json!("VaultStore")
                },
                // The archive lifecycle it replaced is now missing for the copy.
                &[
                    "policyRules[2].lifecycles[0].targetDataStoreCopySettings[0].dataStore.dataStoreType",
                    "policyRules[2].lifecycles[1].sourceDataStore.dataStoreType",
                ],
            ),
            (
                "a zero retention",
                |p| p["policyRules"][1]["lifecycles"][0]["deleteAfter"]["duration"] = json!("P0D"),
                &["policyRules[1].lifecycles[0].deleteAfter.duration"],
            ),
            (
                "several problems at once",
                |p| {
                    p["datasourceTypes"] = json!(["AzureDisk"]);
                    p["policyRules"][1]["lifecycles"][0]["deleteAfter"]["duration"] = json!("PT0S");
                    p["policyRules"][0]["trigger"]["taggingCriteria"][1]["tagInfo"]["tagName"] =
                        json!("Weekly");
                },
                &[
                    "datasourceTypes[0]",
                    "policyRules[1].lifecycles[0].deleteAfter.duration",
                    "policyRules[0].trigger.taggingCriteria[1].tagInfo.tagName",
                    "policyRules[2].name",
                ],
            ),
            (
                "retentions outside what each tier allows",
                |p| {
                    p["policyRules"][1]["lifecycles"][0]["deleteAfter"]["duration"] = json!("P6D");
                    p["policyRules"][2]["lifecycles"][0]["deleteAfter"]["duration"] =
                        json!("P3651D");
                    p["policyRules"][2]["lifecycles"][1]["deleteAfter"]["duration"] =
                        json!("P179D");
                },
                &[
                    "policyRules[1].lifecycles[0].deleteAfter.duration",
                    "policyRules[2].lifecycles[0].deleteAfter.duration",
                    "policyRules[2].lifecycles[1].deleteAfter.duration",
                ],
            ),
            (
                "a custom copy after the vault tier has deleted the backup",
                |p| {
                    p["policyRules"][2]["lifecycles"][0]["targetDataStoreCopySettings"][0]["copyAfter"] =
                        json!({"objectType": "CustomCopyOption", "duration": "P7M"});
                },
                &["policyRules[2].lifecycles[0].targetDataStoreCopySettings[0].copyAfter.duration"],
            ),
            (
                "a copy from the archive tier",
                |p| {
                    let copy =
                        p["policyRules"][2]["lifecycles"][0]["targetDataStoreCopySettings"].clone();
                    p["policyRules"][2]["lifecycles"][1]["targetDataStoreCopySettings"] = copy;
                },
                &[
                    "policyRules[2].lifecycles[1].targetDataStoreCopySettings[0].dataStore.dataStoreType",
                ],
            ),
            (
                "an archive lifecycle nothing copies to",
                |p| {
                    p["policyRules"][2]["lifecycles"][0]["targetDataStoreCopySettings"] = json!([]);
                },
                &["policyRules[2].lifecycles[1]"],
            ),
            (
                "a bad schedule, a bad time zone and a bad schedule time",
                |p| {
                    p["policyRules"][0]["trigger"]["schedule"]["repeatingTimeIntervals"] = json!([
                        "R/2021-08-15T22:00:00+00:00/P1W",
                        "2021-08-15T22:00:00/P1W",
                        "R/2021-08-15T22:00:00Z/P1M"
                    ]);
                    p["policyRules"][0]["trigger"]["schedule"]["timeZone"] = json!("Mars/Olympus");
                    p["policyRules"][0]["trigger"]["taggingCriteria"][1]["criteria"][0]["scheduleTimes"] =
                        json!(["22:00"]);
                },
                &[
                    "policyRules[0].trigger.schedule.repeatingTimeIntervals[1]",
                    "policyRules[0].trigger.schedule.repeatingTimeIntervals[2]",
                    "policyRules[0].trigger.schedule.timeZone",
                    "policyRules[0].trigger.taggingCriteria[1].criteria[0].scheduleTimes[0]",
                ],
            ),
        ];
        for (what, edit, expected_paths) in cases {
            let mut input = archive_policy();
            edit(&mut input);
            let errors = parse(&input).validate().unwrap_err();
            let paths: Vec<&str> = errors.iter().map(PolicyError::path).collect();
            assert_eq!(&paths, expected_paths, "{what}: {errors:#?}");
            for error in &errors {
                assert!(
                    error
                        .to_string()
                        .starts_with(&format!("{}: ", error.path())),
                    "{what}: the message leads with its path: {error}"
                );
            }
        }
    }

    #[test]
    fn from_json_locates_parse_errors() {
        type Edit = fn(&mut Value);
        // (what, edit, expected paths, a fragment every message must contain)
        let cases: &[(&str, Edit, &[&str], &str)] = &[
            (
                "a bad retention duration",
                |p| p["policyRules"][2]["lifecycles"][1]["deleteAfter"]["duration"] = json!("P2X"),
                &["policyRules[2].lifecycles[1].deleteAfter.duration"],
                "\"P2X\"",
            ),
            (
                "bad durations in two rules",
                |p| {
                    p["policyRules"][1]["lifecycles"][0]["deleteAfter"]["duration"] =
                        json!("3 months");
                    p["policyRules"][2]["lifecycles"][0]["targetDataStoreCopySettings"][0]["copyAfter"] =
                        json!({"objectType": "CustomCopyOption", "duration": "P1.5M"});
                },
                &[
                    "policyRules[1].lifecycles[0].deleteAfter.duration",
                    "policyRules[2].lifecycles[0].targetDataStoreCopySettings[0].copyAfter.duration",
                ],
                "invalid ISO 8601 duration",
            ),
            (
                "an unknown rule kind",
                |p| p["policyRules"][1]["objectType"] = json!("AzureArchiveRule"),
                &["policyRules[1]"],
                "\"AzureArchiveRule\"",
            ),
            (
                "a rule without a name",
                |p| {
                    p["policyRules"][0].as_object_mut().unwrap().remove("name");
                },
                &["policyRules[0]"],
                "AzureBackupRule",
            ),
            (
                "an unknown datastore",
                |p| {
                    p["policyRules"][1]["lifecycles"][0]["sourceDataStore"]["dataStoreType"] =
                        json!("TapeStore")
                },
                &["policyRules[1]"],
                "\"TapeStore\"",
            ),
            (
                "no rules at all",
                |p| {
                    p.as_object_mut().unwrap().remove("policyRules");
                },
                &["$"],
                "policyRules",
            ),
            (
                "valid JSON, invalid policy",
                |p| p["policyRules"][1]["lifecycles"][0]["deleteAfter"]["duration"] = json!("P0D"),
                &["policyRules[1].lifecycles[0].deleteAfter.duration"],
                "zero",
            ),
        ];
        for (what, edit, expected_paths, fragment) in cases {
            let mut input = archive_policy();
            edit(&mut input);
            let errors = BackupPolicy::from_json(&input.to_string()).unwrap_err();
            let paths: Vec<&str> = errors.iter().map(PolicyError::path).collect();
            assert_eq!(&paths, expected_paths, "{what}: {errors:#?}");
            for error in &errors {
                assert!(error.to_string().contains(fragment), "{what}: {error}");
            }
        }

        let errors = BackupPolicy::from_json("{ not json").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path(), ROOT);
        assert!(BackupPolicy::from_json(&archive_policy().to_string()).is_ok());
    }

    #[test]
    fn restore_drills_are_a_pgvault_extension() {
        let mut input = archive_policy();
        input["PgvaultRestoreDrill"] = json!({
            "after_backups": 3,
            "targetServerUrl": "postgres://drills.example:5432/postgres",
            "secretStoreUri": "env:DRILL_SECRET"
        });
        let policy = BackupPolicy::from_json(&input.to_string()).unwrap();
        let settings = policy.pgvault_restore_drill.as_ref().unwrap();
        assert_eq!(settings.cadence(), &drill::DrillCadence::AfterBackups(3));
        // Written back under its own, normalized name; Azure's part is unchanged.
        let written = serde_json::to_value(&policy).unwrap();
        assert_eq!(written["pgvaultRestoreDrill"]["afterBackups"], json!(3));
        let mut azure_part = written.clone();
        azure_part
            .as_object_mut()
            .unwrap()
            .remove("pgvaultRestoreDrill");
        assert_eq!(azure_part, normalized(&archive_policy()));
        // Azure has no such property, which --azure-compatible says.
        let warnings = azure_compatibility_warnings(&policy);
        assert_eq!(
            warnings.iter().map(PolicyWarning::path).collect::<Vec<_>>(),
            ["pgvaultRestoreDrill"]
        );
        // A malformed one is reported at its path.
        input["PgvaultRestoreDrill"]["every"] = json!("P1W");
        let errors = BackupPolicy::from_json(&input.to_string()).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(PolicyError::path).collect();
        assert_eq!(paths, ["pgvaultRestoreDrill"], "{errors:#?}");
        assert!(errors[0].to_string().contains("not both"), "{}", errors[0]);
    }
}
