//! Rhai bindings for policies: `policy_template(datasource_type)`, which returns the default
//! policy as a map, and the edits of PowerShell's `*ClientObject` cmdlets on such maps:
//!
//! | Rhai | PowerShell |
//! |---|---|
//! | `schedule(type, count, days)` | `New-AzDataProtectionPolicyTriggerScheduleClientObject` |
//! | `policy.set_trigger(schedule)` | `Edit-AzDataProtectionPolicyTriggerClientObject` |
//! | `lifecycle(#{..})` | `New-AzDataProtectionRetentionLifeCycleClientObject` |
//! | `policy.set_retention_rule(name, lifecycles)`, `policy.remove_retention_rule(name)` | `Edit-AzDataProtectionPolicyRetentionRuleClientObject` |
//! | `tag_criteria(#{..})` | `New-AzDataProtectionPolicyTagCriteriaClientObject` |
//! | `policy.set_tag(name, criteria)`, `policy.remove_tag(name)` | `Edit-AzDataProtectionPolicyTagClientObject` |
//! | `policy.simulate(from, to[, at])` | (pgvault's `backup-policy simulate`) |
//!
//! A policy stays a plain map that a script may also edit by hand; each edit reads it into
//! the typed model (leniently, without the checks that span rules, since a policy is
//! incomplete between edits), applies the edit from
//! [`pgvault_core::model::policy_edit`], and writes the normalized map back in place, as
//! PowerShell's `Edit-*` cmdlets change the object they are given. `vault.create_policy`
//! validates the result.

use chrono::{DateTime, Utc};
use rhai::{Array, Dynamic, Engine, INT, Map};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{RhaiResult, ScriptContext, fail, to_dynamic};
use pgvault_core::model::duration::{DurationUnit, IsoDuration};
use pgvault_core::model::policy::{
    AbsoluteMarker, BackupPolicy, DataStoreType, DatasourceType, ScheduleBasedBackupCriteria,
    SourceLifeCycle, from_lenient_value,
};
use pgvault_core::model::policy_edit::{
    self, CopyOptionKind, EditError, IntervalType, absolute_criteria, create_lifecycle,
    create_schedule, generic_criteria,
};
use pgvault_core::model::simulate::{parse_time, simulate};
use pgvault_core::model::templates::default_policy_template;

/// The options `lifecycle(#{..})` takes, after PowerShell's parameters.
const LIFECYCLE_OPTIONS: &[&str] = &[
    "source_data_store",
    "retention_duration_type",
    "retention_duration_count",
    "target_data_store",
    "copy_option",
    "copy_after_duration",
];

/// The options `tag_criteria(#{..})` takes: `absolute_criteria` alone, or any of the others.
const CRITERIA_OPTIONS: &[&str] = &[
    "absolute_criteria",
    "days_of_week",
    "weeks_of_month",
    "months_of_year",
    "days_of_month",
];

pub fn register(engine: &mut Engine, _ctx: &ScriptContext) {
    register_pure(engine);
}

/// Everything here needs no service (policies are maps until `vault.create_policy`), so
/// the tests run these on a bare engine.
fn register_pure(engine: &mut Engine) {
    engine.register_fn(
        "policy_template",
        |datasource_type: &str| -> RhaiResult<Dynamic> {
            let t: DatasourceType = datasource_type.parse().map_err(fail)?;
            to_dynamic(&default_policy_template(t))
        },
    );
    engine.register_fn(
        "schedule",
        |interval_type: &str, interval_count: INT, days: Array| -> RhaiResult<Dynamic> {
            let interval_type: IntervalType = interval_type.parse().map_err(fail)?;
            let count = u32::try_from(interval_count).map_err(|_| {
                fail(format!(
                    "interval count {interval_count} is not valid; use 1 for Weekly and Daily, 4, 6, 8 or 12 for Hourly"
                ))
            })?;
            let days = strings("schedule days", days)?;
            let schedule = create_schedule(interval_type, count, &days).map_err(fail)?;
            Ok(Dynamic::from_array(
                schedule.into_iter().map(Dynamic::from).collect(),
            ))
        },
    );
    engine.register_fn(
        "set_trigger",
        |policy: &mut Map, schedule: Array| -> RhaiResult<()> {
            let schedule = strings("the schedule", schedule)?;
            edit(policy, |p| policy_edit::set_trigger(p, schedule))
        },
    );
    engine.register_fn("lifecycle", |options: Map| -> RhaiResult<Dynamic> {
        check_keys("lifecycle", &options, LIFECYCLE_OPTIONS)?;
        let source: DataStoreType = required(&options, "source_data_store")?;
        let unit: DurationUnit = required(&options, "retention_duration_type")?;
        let count = match options.get("retention_duration_count") {
            None => return Err(fail("lifecycle needs `retention_duration_count`")),
            Some(v) => v
                .as_int()
                .ok()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    fail(format!(
                        "`retention_duration_count` must be a whole number of {unit}, not {v}"
                    ))
                })?,
        };
        let lifecycle = create_lifecycle(
            source,
            count,
            unit,
            optional(&options, "target_data_store")?,
            optional::<CopyOptionKind>(&options, "copy_option")?,
            optional::<IsoDuration>(&options, "copy_after_duration")?,
        )
        .map_err(fail)?;
        to_dynamic(&lifecycle)
    });
    engine.register_fn(
        "set_retention_rule",
        |policy: &mut Map, name: &str, lifecycles: Dynamic| -> RhaiResult<()> {
            let lifecycles: Vec<SourceLifeCycle> = items("lifecycle", lifecycles)?;
            edit(policy, |p| {
                policy_edit::set_retention_rule(p, name, lifecycles)
            })
        },
    );
    engine.register_fn(
        "remove_retention_rule",
        |policy: &mut Map, name: &str| -> RhaiResult<()> {
            edit(policy, |p| policy_edit::remove_retention_rule(p, name))
        },
    );
    engine.register_fn("tag_criteria", |options: Map| -> RhaiResult<Dynamic> {
        check_keys("tag_criteria", &options, CRITERIA_OPTIONS)?;
        let criteria = if options.contains_key("absolute_criteria") {
            if options.len() > 1 {
                return Err(fail(
                    "`absolute_criteria` stands alone; give it, or days_of_week, weeks_of_month, \
                     months_of_year and days_of_month, not both",
                ));
            }
            absolute_criteria(required::<AbsoluteMarker>(&options, "absolute_criteria")?)
        } else {
            let list = |key: &str| match options.get(key) {
                None => Ok(Vec::new()),
                Some(v) => list_of_strings(key, v.clone()),
            };
            generic_criteria(
                &list("days_of_week")?,
                &list("weeks_of_month")?,
                &list("months_of_year")?,
                &list("days_of_month")?,
            )
            .map_err(fail)?
        };
        to_dynamic(&criteria)
    });
    engine.register_fn(
        "set_tag",
        |policy: &mut Map, name: &str, criteria: Dynamic| -> RhaiResult<()> {
            let criteria: Vec<ScheduleBasedBackupCriteria> = items("criteria", criteria)?;
            edit(policy, |p| policy_edit::set_tag(p, name, criteria))
        },
    );
    engine.register_fn(
        "remove_tag",
        |policy: &mut Map, name: &str| -> RhaiResult<()> {
            edit(policy, |p| policy_edit::remove_tag(p, name))
        },
    );
    // `policy.simulate("2025-01-01", "2035-01-01")`: what `backup-policy simulate` prints,
    // as a map: #{recoveryPoints: [..], summary: #{VaultStore, ArchiveStore, Deleted}}.
    engine.register_fn(
        "simulate",
        |policy: &mut Map, from: &str, to: &str| -> RhaiResult<Dynamic> {
            simulate_policy(policy, from, to, None)
        },
    );
    engine.register_fn(
        "simulate",
        |policy: &mut Map, from: &str, to: &str, at: &str| -> RhaiResult<Dynamic> {
            simulate_policy(policy, from, to, Some(at))
        },
    );
}

/// `policy.simulate(from, to[, at])`: times are RFC 3339 or dates (midnight UTC); the policy
/// must be valid.
fn simulate_policy(policy: &Map, from: &str, to: &str, at: Option<&str>) -> RhaiResult<Dynamic> {
    let time = |what: &str, text: &str| -> RhaiResult<DateTime<Utc>> {
        parse_time(text).map_err(|e| fail(format!("simulate: {what} {e}")))
    };
    let (from, to) = (time("from", from)?, time("to", to)?);
    let at = match at {
        Some(at) => time("at", at)?,
        None => to,
    };
    let value: Value = rhai::serde::from_dynamic(&Dynamic::from_map(policy.clone()))
        .map_err(|e| fail(format!("the policy is not valid JSON data: {e}")))?;
    let typed = BackupPolicy::parse_value(value)
        .and_then(|p| p.validate().map(|()| p))
        .map_err(|errors| {
            let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
            fail(format!("the policy is not valid:\n{}", lines.join("\n")))
        })?;
    to_dynamic(&simulate(&typed, from, to, at).map_err(fail)?)
}

/// Applies `f` to the typed form of `policy` and writes the result back into the map. A
/// refused edit leaves the map as it was.
fn edit(
    policy: &mut Map,
    f: impl FnOnce(&mut BackupPolicy) -> Result<(), EditError>,
) -> RhaiResult<()> {
    let value: Value = rhai::serde::from_dynamic(&Dynamic::from_map(policy.clone()))
        .map_err(|e| fail(format!("the policy is not valid JSON data: {e}")))?;
    let mut typed = BackupPolicy::parse_value(value).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
        fail(format!("the policy is not valid:\n{}", lines.join("\n")))
    })?;
    f(&mut typed).map_err(fail)?;
    *policy = to_dynamic(&typed)?
        .try_cast::<Map>()
        .expect("a policy serializes as a map");
    Ok(())
}

/// Lifecycles or criteria: one map, or an array of them, each read leniently like a file.
fn items<T: DeserializeOwned>(what: &str, value: Dynamic) -> RhaiResult<Vec<T>> {
    let list: Array = if value.is_array() {
        value.cast::<Array>()
    } else {
        vec![value]
    };
    list.into_iter()
        .enumerate()
        .map(|(i, item)| {
            let json: Value = rhai::serde::from_dynamic(&item)
                .map_err(|e| fail(format!("{what} {i} is not valid: {e}")))?;
            from_lenient_value(json).map_err(|e| fail(format!("{what} {i} is not valid: {e}")))
        })
        .collect()
}

fn check_keys(function: &str, options: &Map, allowed: &[&str]) -> RhaiResult<()> {
    match options.keys().find(|key| !allowed.contains(&key.as_str())) {
        None => Ok(()),
        Some(key) => Err(fail(format!(
            "unknown {function} option `{key}`; use {}",
            allowed.join(", ")
        ))),
    }
}

/// A string option parsed into its domain type; `()` counts as absent.
fn optional<T>(options: &Map, key: &str) -> RhaiResult<Option<T>>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    match options.get(key) {
        None => Ok(None),
        Some(v) if v.is_unit() => Ok(None),
        Some(v) => {
            let text = v
                .clone()
                .into_string()
                .map_err(|t| fail(format!("`{key}` must be a string, not {t}")))?;
            text.parse()
                .map(Some)
                .map_err(|e| fail(format!("`{key}`: {e}")))
        }
    }
}

fn required<T>(options: &Map, key: &str) -> RhaiResult<T>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    optional(options, key)?.ok_or_else(|| fail(format!("missing `{key}`")))
}

fn strings(what: &str, items: Array) -> RhaiResult<Vec<String>> {
    items
        .into_iter()
        .map(|item| {
            item.into_string()
                .map_err(|t| fail(format!("{what} must be strings, not {t}")))
        })
        .collect()
}

/// A list option: an array or a single value, of strings or (days of the month) numbers.
fn list_of_strings(key: &str, value: Dynamic) -> RhaiResult<Vec<String>> {
    let list: Array = if value.is_array() {
        value.cast::<Array>()
    } else {
        vec![value]
    };
    list.into_iter()
        .map(|item| {
            if let Ok(n) = item.as_int() {
                return Ok(n.to_string());
            }
            item.into_string()
                .map_err(|t| fail(format!("`{key}` must hold strings, not {t}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::script::{ScriptContext, describe_error, new_engine};
    use crate::service::Pgvault;

    /// Evaluates `script` on an engine with only this module's functions and returns its
    /// result as JSON, or the error as `file:line:col: message`.
    fn eval(script: &str) -> Result<Value, String> {
        let mut engine = Engine::new();
        register_pure(&mut engine);
        engine
            .eval::<Dynamic>(script)
            .map(|v| rhai::serde::from_dynamic(&v).unwrap())
            .map_err(|e| describe_error("t.rhai", &e))
    }

    fn check(script: &str, expected: Result<Value, &str>) {
        match (eval(script), expected) {
            (Ok(actual), Ok(expected)) => assert_eq!(actual, expected, "{script}"),
            (Err(actual), Err(fragment)) => {
                assert!(actual.contains(fragment), "{script}\ngave: {actual}")
            }
            (actual, expected) => panic!("{script}\ngave {actual:?}, expected {expected:?}"),
        }
    }

    const TEMPLATE: &str =
        r#"let p = policy_template("AzureDatabaseForPostgreSQLFlexibleServer");"#;

    #[test]
    fn schedules_and_triggers() {
        let cases: &[(&str, Result<Value, &str>)] = &[
            (
                r#"schedule("Weekly", 1, ["2021-08-15T22:00:00", "2021-08-18T22:00:00"])"#,
                Ok(serde_json::json!([
                    "R/2021-08-15T22:00:00+00:00/P1W",
                    "R/2021-08-18T22:00:00+00:00/P1W"
                ])),
            ),
            (
                r#"schedule("hourly", 4, ["2021-08-15T00:00:00"])"#,
                Ok(serde_json::json!(["R/2021-08-15T00:00:00+00:00/PT4H"])),
            ),
            (
                r#"schedule("Hourly", 5, ["2021-08-15T00:00:00"])"#,
                Err("t.rhai:1:1: Hourly backups cannot repeat with interval count 5"),
            ),
            (
                r#"schedule("Weekly", -1, ["2021-08-15T00:00:00"])"#,
                Err("interval count -1 is not valid"),
            ),
            (
                r#"schedule("Monthly", 1, ["2021-08-15T00:00:00"])"#,
                Err("unknown interval type \"Monthly\""),
            ),
            (
                r#"schedule("Weekly", 1, [20210815])"#,
                Err("schedule days must be strings"),
            ),
            (
                // Set in place: the map itself changes, and the rule is renamed.
                r#"let p = policy_template("AzureDatabaseForPostgreSQLFlexibleServer");
                   p.set_trigger(schedule("Daily", 1, ["2021-08-15T22:00:00"]));
                   [p.policyRules[0].name, p.policyRules[0].trigger.schedule.repeatingTimeIntervals]"#,
                Ok(serde_json::json!([
                    "BackupDaily",
                    ["R/2021-08-15T22:00:00+00:00/P1D"]
                ])),
            ),
            (
                r#"let p = policy_template("AzureDatabaseForPostgreSQLFlexibleServer");
                   p.set_trigger(["R/2021-08-15T22:00:00+00:00/P1M"]);"#,
                Err("t.rhai:2:"),
            ),
            (
                // A map edited by hand into something that is not a policy is named as such.
                r#"let p = policy_template("AzureDatabaseForPostgreSQLFlexibleServer");
                   p.policyRules = 3;
                   p.set_trigger(["R/2021-08-15T22:00:00+00:00/P1W"]);"#,
                Err("the policy is not valid:\n  policyRules[0]"),
            ),
        ];
        for (script, expected) in cases {
            check(script, expected.clone());
        }
    }

    #[test]
    fn lifecycles_and_retention_rules() {
        let cases: &[(&str, Result<Value, &str>)] = &[
            (
                r#"lifecycle(#{ source_data_store: "VaultStore", retention_duration_type: "Months",
                    retention_duration_count: 6, target_data_store: "ArchiveStore",
                    copy_option: "CustomCopyOption", copy_after_duration: "P3M" })"#,
                Ok(serde_json::json!({
                    "sourceDataStore": {"objectType": "DataStoreInfoBase", "dataStoreType": "VaultStore"},
                    "deleteAfter": {"objectType": "AbsoluteDeleteOption", "duration": "P6M"},
                    "targetDataStoreCopySettings": [{
                        "dataStore": {"objectType": "DataStoreInfoBase", "dataStoreType": "ArchiveStore"},
                        "copyAfter": {"objectType": "CustomCopyOption", "duration": "P3M"}
                    }]
                })),
            ),
            (
                r#"lifecycle(#{ source_data_store: "VaultStore", retention_duration_type: "Months",
                    retention_duration_count: 6, target: "ArchiveStore" })"#,
                Err(
                    "unknown lifecycle option `target`; use source_data_store, retention_duration_type",
                ),
            ),
            (
                r#"lifecycle(#{ retention_duration_type: "Months", retention_duration_count: 6 })"#,
                Err("missing `source_data_store`"),
            ),
            (
                r#"lifecycle(#{ source_data_store: "VaultStore", retention_duration_type: "Months",
                    retention_duration_count: "6" })"#,
                Err("`retention_duration_count` must be a whole number of Months"),
            ),
            (
                r#"lifecycle(#{ source_data_store: "TapeStore", retention_duration_type: "Months",
                    retention_duration_count: 6 })"#,
                Err("`source_data_store`: unknown datastore type \"TapeStore\""),
            ),
            (
                r#"lifecycle(#{ source_data_store: "VaultStore", retention_duration_type: "Months",
                    retention_duration_count: 6, copy_option: "CopyOnExpiryOption" })"#,
                Err("needs a target datastore"),
            ),
            (
                &format!(
                    r#"{TEMPLATE}
                    let l = lifecycle(#{{ source_data_store: "VaultStore", retention_duration_type: "Weeks", retention_duration_count: 5 }});
                    p.set_retention_rule("weekly", l);
                    p.set_retention_rule("Weekly", [l, l]);
                    p.policyRules.map(|r| [r.name, r.lifecycles?.len()])"#
                ),
                Ok(serde_json::json!([
                    ["BackupWeekly", null],
                    ["Default", 1],
                    ["Weekly", 2]
                ])),
            ),
            (
                &format!(
                    r#"{TEMPLATE}
                    p.set_retention_rule("Monthly", []);"#
                ),
                Err("needs at least one lifecycle"),
            ),
            (
                &format!(
                    r#"{TEMPLATE}
                    p.set_retention_rule("Monthly", #{{ sourceDataStore: 1 }});"#
                ),
                Err("lifecycle 0 is not valid"),
            ),
            (
                &format!(
                    r#"{TEMPLATE}
                    let l = lifecycle(#{{ source_data_store: "VaultStore", retention_duration_type: "Months", retention_duration_count: 6 }});
                    p.set_retention_rule("Monthly", l);
                    p.remove_retention_rule("MONTHLY");
                    p.policyRules.map(|r| r.name)"#
                ),
                Ok(serde_json::json!(["BackupWeekly", "Default"])),
            ),
            (
                &format!(
                    r#"{TEMPLATE}
                    p.remove_retention_rule("Default");"#
                ),
                Err("Default retention rule keeps every backup"),
            ),
            (
                &format!(
                    r#"{TEMPLATE}
                    p.remove_retention_rule("Yearly");"#
                ),
                Err("no retention rule named \"Yearly\"; its retention rules are: Default"),
            ),
        ];
        for (script, expected) in cases {
            check(script, expected.clone());
        }
    }

    #[test]
    fn tag_criteria_and_tags() {
        let cases: &[(&str, Result<Value, &str>)] = &[
            (
                r#"tag_criteria(#{ absolute_criteria: "FirstOfMonth" })"#,
                Ok(serde_json::json!({
                    "objectType": "ScheduleBasedBackupCriteria",
                    "absoluteCriteria": ["FirstOfMonth"]
                })),
            ),
            (
                r#"tag_criteria(#{ days_of_week: ["Sunday", "Friday"], weeks_of_month: "Last",
                    months_of_year: ["December"], days_of_month: [1, "Last"] })"#,
                Ok(serde_json::json!({
                    "objectType": "ScheduleBasedBackupCriteria",
                    "daysOfTheWeek": ["Sunday", "Friday"],
                    "weeksOfTheMonth": ["Last"],
                    "monthsOfYear": ["December"],
                    "daysOfMonth": [{"date": 1, "isLast": false}, {"isLast": true}]
                })),
            ),
            (
                r#"tag_criteria(#{ absolute_criteria: "FirstOfMonth", days_of_week: ["Sunday"] })"#,
                Err("`absolute_criteria` stands alone"),
            ),
            (
                r#"tag_criteria(#{ days_of_the_week: ["Sunday"] })"#,
                Err(
                    "unknown tag_criteria option `days_of_the_week`; use absolute_criteria, days_of_week",
                ),
            ),
            (r#"tag_criteria(#{})"#, Err("name no day, week or month")),
            (
                r#"tag_criteria(#{ days_of_month: [29] })"#,
                Err("day of the month \"29\" is not valid"),
            ),
            (
                r#"tag_criteria(#{ absolute_criteria: "FirstOfQuarter" })"#,
                Err("unknown absolute criteria \"FirstOfQuarter\""),
            ),
            (
                &format!(
                    r#"{TEMPLATE}
                    p.set_tag("Monthly", tag_criteria(#{{ absolute_criteria: "FirstOfMonth" }}));
                    p.set_tag("monthly", [tag_criteria(#{{ days_of_week: "Sunday" }}), tag_criteria(#{{ absolute_criteria: "FirstOfMonth" }})]);
                    p.policyRules[0].trigger.taggingCriteria.map(|t| [t.tagInfo.id, t.taggingPriority, t.criteria?.len()])"#
                ),
                // In the order given: the template's Default, then Monthly.
                Ok(serde_json::json!([
                    ["Default_", 99, null],
                    ["Monthly_", 15, 2]
                ])),
            ),
            (
                &format!(
                    r#"{TEMPLATE}
                    p.set_tag("Monthly", tag_criteria(#{{ absolute_criteria: "FirstOfMonth" }}));
                    p.remove_tag("Monthly");
                    p.policyRules[0].trigger.taggingCriteria.map(|t| t.tagInfo.tagName)"#
                ),
                Ok(serde_json::json!(["Default"])),
            ),
            (
                &format!(
                    r#"{TEMPLATE}
                    p.set_tag("Hourly", tag_criteria(#{{ absolute_criteria: "FirstOfDay" }}));"#
                ),
                Err("\"Hourly\" cannot be added"),
            ),
            (
                &format!(
                    r#"{TEMPLATE}
                    p.set_tag("Default", tag_criteria(#{{ absolute_criteria: "FirstOfDay" }}));"#
                ),
                Err("Default tag matches every backup"),
            ),
            (
                &format!(
                    r#"{TEMPLATE}
                    p.remove_tag("Default");"#
                ),
                Err("Default tag marks every backup"),
            ),
            (
                &format!(
                    r#"{TEMPLATE}
                    p.remove_tag("Weekly");"#
                ),
                Err("no tag named \"Weekly\"; its tags are: Default"),
            ),
        ];
        for (script, expected) in cases {
            check(script, expected.clone());
        }
    }

    const POWERSHELL_WALKTHROUGH: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/powershell-walkthrough.rhai"
    ));

    /// The line where the walkthrough turns from building the policy to the database.
    const CONFIGURE_BACKUP: &str = "// ## Configure backup";

    /// scripts/powershell-walkthrough.rhai compiles against the registered API, and its part
    /// up to `New-AzDataProtectionBackupPolicy` runs without a database, in a fresh vault,
    /// creating the archive policy the PowerShell walkthrough describes.
    #[test]
    fn simulate_shows_what_the_policy_keeps() {
        // The default template: weekly, kept three months. Over one year, as of its end,
        // thirteen or fourteen weekly points are still in the vault.
        let result = eval(&format!(
            r#"{TEMPLATE} let s = p.simulate("2025-01-01", "2026-01-01"); s.summary"#
        ))
        .unwrap();
        let total = result["VaultStore"].as_u64().unwrap() + result["Deleted"].as_u64().unwrap();
        assert_eq!(total, 52, "{result}");
        assert!(
            (13..=14).contains(&result["VaultStore"].as_u64().unwrap()),
            "{result}"
        );
        assert_eq!(result["ArchiveStore"], 0);
        // With an as-of time long after the window, only the last point survives.
        let result = eval(&format!(
            r#"{TEMPLATE} p.simulate("2025-01-01", "2026-01-01", "2040-01-01T00:00:00Z").summary"#
        ))
        .unwrap();
        assert_eq!(result["VaultStore"], 1, "{result}");
        check(
            &format!(r#"{TEMPLATE} p.simulate("2025-01-01", "next year")"#),
            Err("simulate: to \"next year\" is not a time"),
        );
        check(
            &format!(
                r#"{TEMPLATE} p.policyRules[1].lifecycles[0].deleteAfter.duration = "P1D"; p.simulate("2025-01-01", "2026-01-01")"#
            ),
            Err("outside what VaultStore allows"),
        );
    }

    #[test]
    fn the_powershell_walkthrough_script_builds_its_policy() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let pgvault = Pgvault::open(pgvault_core::engine::home::Home::at(dir.path())).unwrap();
        let engine = new_engine(ScriptContext::operator(
            Arc::new(pgvault),
            runtime.handle().clone(),
        ));
        engine
            .compile(POWERSHELL_WALKTHROUGH)
            .unwrap_or_else(|e| panic!("the walkthrough does not compile: {e}"));
        let (policy_part, _) = POWERSHELL_WALKTHROUGH
            .split_once(CONFIGURE_BACKUP)
            .expect("the walkthrough marks where configuring backup starts");
        // Scripts block on the runtime, so they run off its threads (as `run_script` does).
        let result = std::thread::scope(|s| {
            s.spawn(|| {
                engine
                    .eval::<Dynamic>(&format!("{policy_part}\npolOss"))
                    .map(|v| rhai::serde::from_dynamic::<Value>(&v).unwrap())
                    .map_err(|e| describe_error("powershell-walkthrough.rhai", &e))
            })
            .join()
            .unwrap()
        });
        drop(runtime);
        let created = result.unwrap();
        assert_eq!(created["name"], "TestOSSPolicy");
        let policy = &created["properties"];
        let rules = policy["policyRules"].as_array().unwrap();
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[0]["name"], "BackupWeekly");
        assert_eq!(
            rules[0]["trigger"]["schedule"]["repeatingTimeIntervals"],
            serde_json::json!([
                "R/2021-08-15T22:00:00+00:00/P1W",
                "R/2021-08-18T22:00:00+00:00/P1W",
                "R/2021-08-20T22:00:00+00:00/P1W"
            ])
        );
        // The walkthrough's last tag edit wins: Sundays and Fridays are tagged Monthly.
        assert_eq!(
            rules[0]["trigger"]["taggingCriteria"][1],
            serde_json::json!({
                "isDefault": false,
                "taggingPriority": 15,
                "tagInfo": {"tagName": "Monthly", "id": "Monthly_"},
                "criteria": [{
                    "objectType": "ScheduleBasedBackupCriteria",
                    "daysOfTheWeek": ["Sunday", "Friday"]
                }]
            })
        );
        assert_eq!(
            rules[2],
            serde_json::json!({
                "objectType": "AzureRetentionRule",
                "name": "Monthly",
                "isDefault": false,
                "lifecycles": [
                    {
                        "sourceDataStore": {"objectType": "DataStoreInfoBase", "dataStoreType": "VaultStore"},
                        "deleteAfter": {"objectType": "AbsoluteDeleteOption", "duration": "P6M"},
                        "targetDataStoreCopySettings": [{
                            "dataStore": {"objectType": "DataStoreInfoBase", "dataStoreType": "ArchiveStore"},
                            "copyAfter": {"objectType": "CopyOnExpiryOption"}
                        }]
                    },
                    {
                        "sourceDataStore": {"objectType": "DataStoreInfoBase", "dataStoreType": "ArchiveStore"},
                        "deleteAfter": {"objectType": "AbsoluteDeleteOption", "duration": "P24M"},
                        "targetDataStoreCopySettings": []
                    }
                ]
            })
        );
        assert!(
            BackupPolicy::from_json(&policy.to_string()).is_ok(),
            "the stored policy validates"
        );
    }
}
