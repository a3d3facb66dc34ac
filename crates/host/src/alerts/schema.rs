//! An incident as Azure Monitor's common alert schema, the JSON every notice carries: the
//! webhook's body, the Rhai hook's `alert()` map, the email's attachment-free appendix.
//!
//! The `essentials` are the documented fields with their documented names and formats
//! (`alertId` under `Microsoft.AlertsManagement/alerts`, `severity` `Sev0`..`Sev4`,
//! `monitorCondition` `Fired` / `Resolved`, `alertTargetIDs` the ARM ids of the instance or
//! vault, times in ISO 8601 UTC, `essentialsVersion` and `alertContextVersion` `1.0`), so the
//! receivers built for Azure Monitor (Logic Apps, Teams and Slack connectors, incident tools)
//! route and show them unchanged. `alertContext` says what pgvault knows of the incident:
//! the vault, the instance, how many occurrences it groups, the last job and its error.
//! Pure: the caller gives the ids.

use serde_json::{Value, json};

use pgvault_core::model::job::azure_time;

use super::{Condition, Incident};

/// The common alert schema of `incident` as a `condition` notice. `subscription` is the
/// host's subscription id, `targets` the ARM ids of what it is about (the instance, else the
/// vault).
pub fn common_alert_schema(
    incident: &Incident,
    condition: Condition,
    subscription: &str,
    targets: &[String],
) -> Value {
    let configuration_items: Vec<&str> = incident
        .instance
        .iter()
        .chain(incident.vault.iter())
        .map(String::as_str)
        .take(1)
        .collect();
    json!({
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": {
                "alertId": format!(
                    "/subscriptions/{subscription}/providers/Microsoft.AlertsManagement/alerts/{}",
                    incident.id
                ),
                "alertRule": incident.kind.rule_name(),
                "severity": incident.severity,
                "signalType": incident.kind.signal_type(),
                "monitorCondition": condition.as_str(),
                "monitoringService": "Azure Backup",
                "alertTargetIDs": targets,
                "configurationItems": configuration_items,
                "originAlertId": incident.id,
                "firedDateTime": azure_time(incident.fired),
                "resolvedDateTime": match (condition, incident.resolved) {
                    (Condition::Resolved, Some(t)) => Value::String(azure_time(t)),
                    _ => Value::Null,
                },
                "description": incident.description,
                "essentialsVersion": "1.0",
                "alertContextVersion": "1.0"
            },
            "alertContext": {
                "alertKind": incident.kind.as_str(),
                "vaultName": incident.vault,
                "backupInstanceName": incident.instance,
                "occurrences": incident.count,
                "lastOccurrenceDateTime": azure_time(incident.last),
                "jobId": incident.job_id,
                "errorCode": incident.error_code,
            },
            "customProperties": null
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::AlertKind;
    use chrono::{DateTime, Utc};

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// The essentials carry the documented names, values and formats: what a receiver built
    /// for Azure Monitor reads.
    #[test]
    fn essentials_follow_the_documented_schema() {
        let incident = Incident {
            id: "6f1b7c8e-0000-4000-8000-000000000001".into(),
            kind: AlertKind::BackupFailure,
            severity: "Sev1".into(),
            vault: Some("V".into()),
            instance: Some("db1".into()),
            condition: Condition::Resolved,
            count: 5,
            fired: t("2030-01-01T00:00:00Z"),
            last: t("2030-01-05T00:00:00Z"),
            resolved: Some(t("2030-01-06T00:00:01Z")),
            description: "The backup failed".into(),
            job_id: Some("j".into()),
            error_code: Some("UserErrorDBServerUnreachable".into()),
        };
        let target = "/subscriptions/s/resourceGroups/g/providers/Microsoft.DataProtection/backupVaults/V/backupInstances/db1".to_owned();
        let fired = common_alert_schema(
            &incident,
            Condition::Fired,
            "s",
            std::slice::from_ref(&target),
        );
        let e = &fired["data"]["essentials"];
        assert_eq!(fired["schemaId"], "azureMonitorCommonAlertSchema");
        assert_eq!(
            e["alertId"],
            "/subscriptions/s/providers/Microsoft.AlertsManagement/alerts/6f1b7c8e-0000-4000-8000-000000000001"
        );
        assert_eq!(e["alertRule"], "Backup Failure");
        assert_eq!(e["severity"], "Sev1");
        assert_eq!(e["monitorCondition"], "Fired");
        assert_eq!(e["alertTargetIDs"], json!([target]));
        assert_eq!(e["configurationItems"], json!(["db1"]));
        assert_eq!(e["firedDateTime"], "2030-01-01T00:00:00.0000000Z");
        // A fired notice has no resolution time, even for an incident resolved since.
        assert_eq!(e["resolvedDateTime"], Value::Null);
        assert_eq!(e["essentialsVersion"], "1.0");
        assert_eq!(e["alertContextVersion"], "1.0");
        assert_eq!(fired["data"]["alertContext"]["occurrences"], 5);

        let resolved = common_alert_schema(&incident, Condition::Resolved, "s", &[target]);
        let e = &resolved["data"]["essentials"];
        assert_eq!(e["monitorCondition"], "Resolved");
        assert_eq!(e["resolvedDateTime"], "2030-01-06T00:00:01.0000000Z");
    }
}
