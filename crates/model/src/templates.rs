//! The default policy for each datasource type, as `az dataprotection backup-policy
//! get-default-policy-template` and `Get-AzDataProtectionPolicyTemplate` print it: a full
//! backup every week (Sundays at 06:30 UTC) kept three months in the vault. Users start from
//! this and edit the schedule, add tags and retention rules, exactly as in the Azure
//! walkthroughs.
//!
//! Built from the typed model rather than embedded JSON so that a change to the model cannot
//! leave the template behind; the tests compare its JSON with the az CLI's, field for field.

use crate::duration::IsoDuration;
use crate::policy::{
    AbsoluteDeleteOption, AzureBackupRule, AzureRetentionRule, BackupParameters, BackupPolicy,
    BackupSchedule, DEFAULT_RULE_NAME, DataStoreInfo, DataStoreType, DatasourceType, PolicyRule,
    RetentionTag, ScheduleBasedTriggerContext, SourceLifeCycle, TaggingCriteria, Trigger,
};

/// The priority the Azure tools give the default tag: last, after every named tag.
pub const DEFAULT_TAGGING_PRIORITY: i64 = 99;

/// The default policy template for `datasource_type`.
pub fn default_policy_template(datasource_type: DatasourceType) -> BackupPolicy {
    // The names differ only to match the CLI's output: it calls the single server template
    // OssPolicy1 and the flexible server one OssFlexiblePolicy1.
    let name = match datasource_type {
        DatasourceType::AzureDatabaseForPostgreSQL => "OssPolicy1",
        DatasourceType::AzureDatabaseForPostgreSQLFlexibleServer => "OssFlexiblePolicy1",
    };
    let vault = DataStoreInfo::new(DataStoreType::VaultStore);
    BackupPolicy {
        pgvault_restore_drill: None,
        name: Some(name.to_owned()),
        datasource_types: vec![datasource_type.arm_type().to_owned()],
        policy_rules: vec![
            PolicyRule::Backup(AzureBackupRule {
                name: "BackupWeekly".to_owned(),
                backup_parameters: Some(BackupParameters {
                    backup_type: "Full".to_owned(),
                }),
                data_store: vault,
                trigger: Trigger::Schedule(ScheduleBasedTriggerContext {
                    schedule: BackupSchedule {
                        // A Sunday: a weekly interval repeats on the weekday of its start.
                        repeating_time_intervals: vec![
                            "R/2021-08-15T06:30:00+00:00/P1W".to_owned(),
                        ],
                        time_zone: Some("UTC".to_owned()),
                    },
                    tagging_criteria: vec![TaggingCriteria {
                        is_default: true,
                        tagging_priority: DEFAULT_TAGGING_PRIORITY,
                        tag_info: RetentionTag::new(DEFAULT_RULE_NAME),
                        criteria: Vec::new(),
                    }],
                }),
            }),
            PolicyRule::Retention(AzureRetentionRule {
                name: DEFAULT_RULE_NAME.to_owned(),
                is_default: true,
                lifecycles: vec![SourceLifeCycle {
                    source_data_store: vault,
                    delete_after: AbsoluteDeleteOption::new(IsoDuration::months(3)),
                    target_data_store_copy_settings: Vec::new(),
                }],
            }),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const SINGLE_SERVER: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/conformance/azure/AzureDatabaseForPostgreSQL.defaultPolicy.json"
    ));
    const FLEXIBLE_SERVER: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/conformance/azure/AzureDatabaseForPostgreSQLFlexibleServer.defaultPolicy.json"
    ));

    fn cases() -> [(DatasourceType, &'static str); 2] {
        [
            (DatasourceType::AzureDatabaseForPostgreSQL, SINGLE_SERVER),
            (
                DatasourceType::AzureDatabaseForPostgreSQLFlexibleServer,
                FLEXIBLE_SERVER,
            ),
        ]
    }

    #[test]
    fn templates_equal_the_az_cli_output() {
        for (kind, cli_output) in cases() {
            let expected: Value = serde_json::from_str(cli_output).unwrap();
            let ours = serde_json::to_value(default_policy_template(kind)).unwrap();
            assert_eq!(ours, expected, "{kind}");
        }
    }

    #[test]
    fn templates_are_valid_and_read_back_unchanged() {
        for (kind, cli_output) in cases() {
            let template = default_policy_template(kind);
            assert_eq!(template.validate(), Ok(()), "{kind}");
            assert_eq!(template.datasource_type(), Some(kind));
            assert_eq!(
                BackupPolicy::from_json(cli_output),
                Ok(template.clone()),
                "{kind}"
            );

            let default = template.retention_rule("Default").unwrap();
            let vault = default.vault_store_lifecycle().unwrap();
            assert_eq!(vault.delete_after.duration.to_string(), "P3M");
            assert_eq!(template.backup_rule().unwrap().name, "BackupWeekly");
        }
    }
}
