use serde_json::Value;

use crate::drill;
use crate::duration::IsoDuration;

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
/// copy, and it assigns tag ids. Tagging criteria keep the order they were sent in (the
/// examples list `Default` (99) before `Weekly` (20), in the request and the answer alike).
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
        ours.pointer("/policyRules/0/trigger/taggingCriteria/0/tagInfo/id"),
        Some(&json!("Default_"))
    );
    assert_eq!(
        ours.pointer("/policyRules/0/trigger/taggingCriteria/1/tagInfo/id"),
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
                let copy =
                    p["policyRules"][2]["lifecycles"][0]["targetDataStoreCopySettings"][0].clone();
                p["policyRules"][2]["lifecycles"][0]["targetDataStoreCopySettings"] = copy;
            },
            "/policyRules/2/lifecycles/0/targetDataStoreCopySettings/0/dataStore/dataStoreType",
            json!("ArchiveStore"),
        ),
        (
            "null copy settings become []",
            |p| p["policyRules"][1]["lifecycles"][0]["targetDataStoreCopySettings"] = Value::Null,
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
            "/policyRules/0/trigger/taggingCriteria/1/criteria/0/absoluteCriteria",
            json!(["FirstOfMonth"]),
        ),
        (
            "objectType values in any case",
            |p| {
                p["policyRules"][1]["objectType"] = json!("azureretentionrule");
                p["policyRules"][0]["trigger"]["objectType"] = json!("SCHEDULEBASEDTRIGGERCONTEXT");
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
            "/policyRules/0/trigger/taggingCriteria/0/tagInfo/id",
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
            "/policyRules/0/trigger/taggingCriteria/1/tagInfo/id",
            json!("Monthly_"),
        ),
        (
            "durations are written canonically",
            |p| p["policyRules"][2]["lifecycles"][1]["deleteAfter"]["duration"] = json!("p2y0m"),
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
fn tagging_criteria_are_written_in_input_order_and_matched_by_priority() {
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
    // As given (the service keeps the order it was sent), not sorted by priority.
    assert_eq!(written, [&json!("Default"), &json!("Monthly")]);
    // Read back, the order is the same again.
    let again = normalized(&output);
    assert_eq!(again, output);
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
                        repeating_time_intervals: vec!["R/2021-08-15T06:30:00+00:00/P1D".into()],
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
    // Identical, tagging criteria in the order they were given.
    assert_eq!(back, policy);

    // Yearly was given second, after Default, and stays there.
    let criteria = &value["policyRules"][1]["trigger"]["taggingCriteria"][1];
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
                p["datasourceTypes"] = json!(["OssDB", "Microsoft.DBforPostgreSQL/flexibleServers"])
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
            |p| p["policyRules"][0]["trigger"]["schedule"]["repeatingTimeIntervals"] = json!([]),
            &["policyRules[0].trigger.schedule.repeatingTimeIntervals"],
        ),
        (
            "no default tag",
            |p| p["policyRules"][0]["trigger"]["taggingCriteria"][0]["isDefault"] = json!(false),
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
                p["policyRules"][2]["lifecycles"][0]["deleteAfter"]["duration"] = json!("P3651D");
                p["policyRules"][2]["lifecycles"][1]["deleteAfter"]["duration"] = json!("P179D");
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
                p["policyRules"][1]["lifecycles"][0]["deleteAfter"]["duration"] = json!("3 months");
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
