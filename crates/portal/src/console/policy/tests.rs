//! The editor's form against the model: the template's form builds the template, a richer form
//! builds the policy the az CLI's edits would, a stored policy fills the form it came from,
//! and each kind of mistake is reported at the field that made it.

use chrono::TimeZone;
use serde_json::json;

use super::*;

fn draft() -> Draft {
    Draft::template("v")
}

fn rule<'a>(d: &'a mut Draft, name: &str) -> &'a mut RuleDraft {
    d.rules.get_mut(name).unwrap()
}

/// Weekly on Monday and Wednesday at 22:00 Berlin time, Default kept 4 weeks, and monthly
/// backups kept 12 months in the vault then moved to the archive for 3 years.
fn monthly_archive() -> Draft {
    let mut d = draft();
    d.days = vec!["Monday".into(), "Wednesday".into()];
    d.time = "22:00".into();
    d.timezone = "Europe/Berlin".into();
    rule(&mut d, "Default").keep = "4".into();
    rule(&mut d, "Default").unit = "Weeks".into();
    let m = rule(&mut d, "Monthly");
    m.on = true;
    m.archive = "CopyOnExpiryOption".into();
    m.archive_keep = "3".into();
    m.archive_unit = "Years".into();
    d
}

#[test]
fn the_templates_form_builds_the_default_template() {
    let mut expected =
        default_policy_template(DatasourceType::AzureDatabaseForPostgreSQLFlexibleServer);
    expected.name = None;
    assert_eq!(build(&draft(), false).unwrap(), expected);
}

#[test]
fn a_form_builds_the_policy_the_az_edits_make() {
    let policy = build(&monthly_archive(), false).unwrap();
    let value = serde_json::to_value(&policy).unwrap();
    let rules = value["policyRules"].as_array().unwrap();
    assert_eq!(rules[0]["name"], "BackupWeekly");
    assert_eq!(
        rules[0]["trigger"]["schedule"],
        json!({
            // No offset: the wall clock of the chosen zone, on a Monday and a Wednesday.
            "repeatingTimeIntervals": ["R/2021-08-16T22:00:00/P1W", "R/2021-08-18T22:00:00/P1W"],
            "timeZone": "Europe/Berlin"
        })
    );
    let tags: Vec<(&str, i64)> = rules[0]["trigger"]["taggingCriteria"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["tagInfo"]["tagName"].as_str().unwrap(),
                t["taggingPriority"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(tags, [("Default", 99), ("Monthly", 15)]);
    assert_eq!(
        rules[0]["trigger"]["taggingCriteria"][1]["criteria"][0]["absoluteCriteria"],
        json!(["FirstOfMonth"])
    );
    let default = policy.retention_rule("Default").unwrap();
    assert_eq!(
        default.lifecycles[0].delete_after.duration.to_string(),
        "P4W"
    );
    let monthly = policy.retention_rule("Monthly").unwrap();
    let vault = monthly.lifecycle(DataStoreType::VaultStore).unwrap();
    assert_eq!(vault.delete_after.duration.to_string(), "P12M");
    assert_eq!(
        vault.target_data_store_copy_settings[0].copy_after,
        CopyOption::CopyOnExpiry
    );
    let archive = monthly.lifecycle(DataStoreType::ArchiveStore).unwrap();
    assert_eq!(archive.delete_after.duration.to_string(), "P3Y");
}

#[test]
fn a_stored_policy_fills_the_form_it_was_built_from() {
    let mut d = monthly_archive();
    let y = rule(&mut d, "Yearly");
    y.on = true;
    y.criterion = "Days".into();
    y.months = "January, July".into();
    y.days_of_month = "1, Last".into();
    let w = rule(&mut d, "Weekly");
    w.on = true;
    w.archive = "CustomCopyOption".into();
    w.copy_after = "2".into();
    w.copy_unit = "Weeks".into();
    w.archive_keep = "6".into();
    w.archive_unit = "Months".into();
    let policy = build(&d, false).unwrap();
    assert_eq!(Draft::from_policy("v", &policy), d);

    let mut hourly = draft();
    hourly.frequency = "Hourly".into();
    hourly.hours = "6".into();
    hourly.time = "01:15".into();
    let policy = build(&hourly, false).unwrap();
    assert_eq!(
        policy_edit_intervals(&policy),
        ["R/2021-08-15T01:15:00+00:00/PT6H"]
    );
    assert_eq!(Draft::from_policy("v", &policy), hourly);
}

fn policy_edit_intervals(policy: &BackupPolicy) -> Vec<String> {
    match &policy.backup_rule().unwrap().trigger {
        Trigger::Schedule(t) => t.schedule.repeating_time_intervals.clone(),
        Trigger::Adhoc(_) => Vec::new(),
    }
}

#[test]
fn each_mistake_is_shown_at_its_field() {
    type Edit = fn(&mut Draft);
    let cases: &[(&str, Edit, &str, &str)] = &[
        ("no name", |_| {}, "name", "give the policy a name"),
        ("no day", |d| d.days.clear(), "days", "at least one day"),
        ("bad time", |d| d.time = "25:00".into(), "time", "HH:MM"),
        (
            "bad zone",
            |d| d.timezone = "Mars/Olympus".into(),
            "timezone",
            "Mars/Olympus",
        ),
        (
            "zero retention",
            |d| rule(d, "Default").keep = "0".into(),
            "Default.keep",
            "above 0",
        ),
        (
            "vault retention too short (validation)",
            |d| {
                let r = rule(d, "Default");
                r.keep = "3".into();
                r.unit = "Days".into();
            },
            "Default.keep",
            "7 days to 10 years",
        ),
        (
            "archive retention too short (validation)",
            |d| {
                let m = rule(d, "Monthly");
                m.on = true;
                m.archive = "CopyOnExpiryOption".into();
                m.archive_keep = "1".into();
                m.archive_unit = "Months".into();
            },
            "Monthly.archive_keep",
            "6 months to 10 years",
        ),
        (
            "copy after the vault deletes (validation)",
            |d| {
                let m = rule(d, "Monthly");
                m.on = true;
                m.archive = "CustomCopyOption".into();
                m.copy_after = "2".into();
                m.copy_unit = "Years".into();
            },
            "Monthly.archive",
            "comes after the vault tier deletes",
        ),
        (
            "unknown day in a criterion",
            |d| {
                let y = rule(d, "Yearly");
                y.on = true;
                y.criterion = "Days".into();
                y.days_of_week = "Funday".into();
            },
            "Yearly.criterion",
            "Funday",
        ),
        (
            "hourly every 5 hours",
            |d| {
                d.frequency = "Hourly".into();
                d.hours = "5".into();
            },
            "hours",
            "4, 6, 8 or 12",
        ),
    ];
    for (what, edit, field, needle) in cases {
        let mut d = draft();
        d.name = "P".into();
        if *what == "no name" {
            d.name.clear();
        }
        edit(&mut d);
        let errors = build(&d, true).expect_err(what);
        let at = errors
            .get(*field)
            .unwrap_or_else(|| panic!("{what}: no error at {field}: {errors:?}"));
        assert!(
            at.iter().any(|m| m.contains(needle)),
            "{what}: {at:?} does not say {needle:?}"
        );
        assert_eq!(errors.len(), 1, "{what}: errors elsewhere too: {errors:?}");
    }
}

#[test]
fn the_timeline_follows_the_policy() {
    let start = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
    let template = timeline(&build(&draft(), false).unwrap(), start).unwrap();
    assert!(template.contains("<svg"), "{template}");
    assert!(template.contains("2026"));
    assert!(template.contains("2036"), "ten years from the start's day");
    assert!(!template.contains("ArchiveStore") && !template.contains("Monthly"));

    let archived = timeline(&build(&monthly_archive(), false).unwrap(), start).unwrap();
    assert!(archived.contains("Monthly"));
    assert_ne!(archived, template);
    // Deterministic: the same policy at the same start draws the same picture.
    assert_eq!(
        archived,
        timeline(&build(&monthly_archive(), false).unwrap(), start).unwrap()
    );
}

#[test]
fn a_posted_form_reads_back_as_the_draft() {
    let form: Vec<(String, String)> = [
        ("vault", "v"),
        ("name", "P"),
        ("frequency", "Daily"),
        ("time", "03:00"),
        ("timezone", "W. Europe Standard Time"),
        ("Default.keep", "30"),
        ("Default.unit", "Days"),
        ("Weekly.on", "on"),
        ("Weekly.criterion", "FirstOfWeek"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let d = Draft::from_form(&form);
    assert_eq!(d.frequency, "Daily");
    assert!(d.days.is_empty(), "unticked boxes are absent from a post");
    assert!(d.rules["Weekly"].on && !d.rules["Monthly"].on);
    let policy = build(&d, true).unwrap();
    assert_eq!(
        policy_edit_intervals(&policy),
        ["R/2021-08-15T03:00:00/P1D"]
    );
    assert_eq!(
        policy.retention_rule("Default").unwrap().lifecycles[0]
            .delete_after
            .duration
            .to_string(),
        "P30D"
    );
}
