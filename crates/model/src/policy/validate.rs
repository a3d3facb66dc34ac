//! Checking a policy: the rules that span several fields, each problem with its JSON path;
//! what Azure would refuse; and the errors.

use std::fmt;

use serde::Deserialize;
use serde_json::Value;

use super::*;
use crate::drill::{self, RestoreDrillSettings};
use crate::duration::{DurationError, IsoDuration};
use crate::schedule::{RepeatingInterval, parse_time_zone};

impl BackupPolicy {
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
                    if crate::schedule::schedule_time_of_day(time, chrono_tz::UTC).is_none() {
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

pub(super) fn check_lifecycles(
    rule: &AzureRetentionRule,
    rule_path: &str,
    errors: &mut Vec<PolicyError>,
) {
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
pub(super) fn retention_bounds(store: DataStoreType) -> Option<(u64, u64)> {
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

pub(super) fn is_postgres_store(store: DataStoreType) -> bool {
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
pub(super) fn locate_errors(value: &Value, whole: serde_json::Error) -> Vec<PolicyError> {
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

pub(super) fn check_raw_duration(
    value: Option<&Value>,
    path: String,
    errors: &mut Vec<PolicyError>,
) {
    if let Some(Value::String(text)) = value
        && let Err(source) = text.parse::<IsoDuration>()
    {
        errors.push(PolicyError::InvalidDuration { path, source });
    }
}

/// A raw JSON field read the way [`one_or_many`] reads it.
pub(super) fn as_list(value: Option<&Value>) -> Vec<&Value> {
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(single) => vec![single],
    }
}
