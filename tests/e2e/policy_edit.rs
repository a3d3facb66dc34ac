//! `pgvault backup-policy trigger | retention-rule | tag | validate`: the flexible server CLI
//! walkthrough (shared/seeds/backup-postgresql-flex-cli.md) run file by file through the real
//! binary, as the walkthrough runs the az CLI, and the errors a user meets on the way. No
//! database: policies are files, and the vault is a folder.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{Value, json};

use crate::support::World;

/// Runs pgvault like the walkthrough's `... > name`: asserts success and writes stdout to
/// the file `name` in the test's folder.
fn to_file(w: &World, args: &[&str], name: &str) -> PathBuf {
    let out = w.run(args);
    assert!(
        out.status.success(),
        "pgvault {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let path = w.path(name);
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

fn read(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

const DAYS: [&str; 3] = [
    "2021-08-15T22:00:00",
    "2021-08-18T22:00:00",
    "2021-08-20T22:00:00",
];

/// The walkthrough up to the edited schedule: the template and `trigger set`.
fn edited_policy(w: &World) -> PathBuf {
    // az dataprotection backup-policy get-default-policy-template --datasource-type
    //   AzureDatabaseForPostgreSQLFlexibleServer
    let template = to_file(
        w,
        &[
            "backup-policy",
            "get-default-policy-template",
            "--datasource-type",
            "AzureDatabaseForPostgreSQLFlexibleServer",
        ],
        "OSSPolicy.json",
    );
    // az dataprotection backup-policy trigger create-schedule --interval-type Weekly
    //   --interval-count 1 --schedule-days 2021-08-15T22:00:00 2021-08-18T22:00:00 2021-08-20T22:00:00
    let mut args = vec![
        "backup-policy",
        "trigger",
        "create-schedule",
        "--interval-type",
        "Weekly",
        "--interval-count",
        "1",
        "--schedule-days",
    ];
    args.extend(DAYS);
    let schedule = w.json(&args);
    assert_eq!(
        schedule,
        json!([
            "R/2021-08-15T22:00:00+00:00/P1W",
            "R/2021-08-18T22:00:00+00:00/P1W",
            "R/2021-08-20T22:00:00+00:00/P1W"
        ])
    );
    // az dataprotection backup-policy trigger set --policy .\OSSPolicy.json --schedule
    //   R/2021-08-15T22:00:00+00:00/P1W R/2021-08-18T22:00:00+00:00/P1W
    //   R/2021-08-20T22:00:00+00:00/P1W > EditedOSSPolicy.json
    let mut args = vec![
        "backup-policy",
        "trigger",
        "set",
        "--policy",
        s(&template),
        "--schedule",
    ];
    let intervals: Vec<&str> = schedule
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    args.extend(&intervals);
    to_file(w, &args, "EditedOSSPolicy.json")
}

/// The walkthrough up to the Monthly retention rule (no tag yet).
fn added_retention_rule(w: &World) -> PathBuf {
    let edited = edited_policy(w);
    // az dataprotection backup-policy retention-rule create-lifecycle --retention-duration-count 6
    //   --retention-duration-type Months --source-datastore VaultStore > VaultLifeCycle.JSON
    let lifecycle = to_file(
        w,
        &[
            "backup-policy",
            "retention-rule",
            "create-lifecycle",
            "--retention-duration-count",
            "6",
            "--retention-duration-type",
            "Months",
            "--source-datastore",
            "VaultStore",
        ],
        "VaultLifeCycle.JSON",
    );
    // az dataprotection backup-policy retention-rule set --lifecycles .\VaultLifeCycle.JSON
    //   --name Monthly --policy .\EditedOSSPolicy.json > AddedRetentionRulePolicy.JSON
    to_file(
        w,
        &[
            "backup-policy",
            "retention-rule",
            "set",
            "--lifecycles",
            s(&lifecycle),
            "--name",
            "Monthly",
            "--policy",
            s(&edited),
        ],
        "AddedRetentionRulePolicy.JSON",
    )
}

#[test]
fn the_flexible_server_cli_walkthrough_edits_a_policy_file_by_file() {
    let w = World::new();
    let added_rule = added_retention_rule(&w);
    // az dataprotection backup-policy tag create-absolute-criteria --absolute-criteria
    //   FirstOfMonth > tagCriteria.JSON
    let criteria = to_file(
        &w,
        &[
            "backup-policy",
            "tag",
            "create-absolute-criteria",
            "--absolute-criteria",
            "FirstOfMonth",
        ],
        "tagCriteria.JSON",
    );
    assert_eq!(
        read(&criteria),
        json!({"objectType": "ScheduleBasedBackupCriteria", "absoluteCriteria": ["FirstOfMonth"]})
    );
    // az dataprotection backup-policy tag set --criteria .\tagCriteria.JSON --name Monthly
    //   --policy .\AddedRetentionRulePolicy.JSON > AddedRetentionRuleAndTag.JSON
    let final_policy = to_file(
        &w,
        &[
            "backup-policy",
            "tag",
            "set",
            "--criteria",
            s(&criteria),
            "--name",
            "Monthly",
            "--policy",
            s(&added_rule),
        ],
        "AddedRetentionRuleAndTag.JSON",
    );

    let policy = read(&final_policy);
    let backup = &policy["policyRules"][0];
    assert_eq!(backup["name"], "BackupWeekly");
    assert_eq!(
        backup["trigger"]["schedule"]["repeatingTimeIntervals"],
        json!([
            "R/2021-08-15T22:00:00+00:00/P1W",
            "R/2021-08-18T22:00:00+00:00/P1W",
            "R/2021-08-20T22:00:00+00:00/P1W"
        ])
    );
    // Tags keep the order they were given in, as Azure keeps them: the template's Default,
    // then Monthly as `tag set` appended it (its priority 15 still wins over Default's 99).
    assert_eq!(
        backup["trigger"]["taggingCriteria"],
        json!([
            {
                "isDefault": true,
                "taggingPriority": 99,
                "tagInfo": {"tagName": "Default", "id": "Default_"}
            },
            {
                "isDefault": false,
                "taggingPriority": 15,
                "tagInfo": {"tagName": "Monthly", "id": "Monthly_"},
                "criteria": [{
                    "objectType": "ScheduleBasedBackupCriteria",
                    "absoluteCriteria": ["FirstOfMonth"]
                }]
            }
        ])
    );
    assert_eq!(
        policy["policyRules"][2],
        json!({
            "objectType": "AzureRetentionRule",
            "name": "Monthly",
            "isDefault": false,
            "lifecycles": [{
                "sourceDataStore": {"objectType": "DataStoreInfoBase", "dataStoreType": "VaultStore"},
                "deleteAfter": {"objectType": "AbsoluteDeleteOption", "duration": "P6M"},
                "targetDataStoreCopySettings": []
            }]
        })
    );

    // `validate` accepts it and prints it unchanged; `create` stores it, as
    // `az dataprotection backup-policy create --backup-policy-name FinalOSSPolicy` does.
    let validated = w.json(&["backup-policy", "validate", "--policy", s(&final_policy)]);
    assert_eq!(validated, policy);
    w.json(&[
        "backup-vault",
        "create",
        "--vault-name",
        "TestBkpVault",
        "--storage-url",
        &format!("file://{}", w.path("vault").display()),
    ]);
    let created = w.json(&[
        "backup-policy",
        "create",
        "--backup-policy-name",
        "FinalOSSPolicy",
        "--policy",
        s(&final_policy),
        "--vault-name",
        "TestBkpVault",
    ]);
    assert_eq!(created["name"], "FinalOSSPolicy");
    assert_eq!(
        created["properties"]["policyRules"][0]["trigger"]["taggingCriteria"][1]["tagInfo"]["tagName"],
        "Monthly"
    );
}

#[test]
fn generic_criteria_replace_a_tags_criteria_and_files_may_come_from_stdin() {
    let w = World::new();
    let added_rule = added_retention_rule(&w);
    // az dataprotection backup-policy tag create-generic-criteria --days-of-week Sunday Friday
    //   > tagCriteria.JSON
    let criteria = to_file(
        &w,
        &[
            "backup-policy",
            "tag",
            "create-generic-criteria",
            "--days-of-week",
            "Sunday",
            "Friday",
        ],
        "tagCriteria.JSON",
    );
    assert_eq!(
        read(&criteria),
        json!({"objectType": "ScheduleBasedBackupCriteria", "daysOfTheWeek": ["Sunday", "Friday"]})
    );
    // The az CLI's own snake_case criteria (what its create-generic-criteria prints) read too.
    let az_criteria = w.write(
        "azCriteria.json",
        r#"{"object_type": "ScheduleBasedBackupCriteria", "days_of_month": [{"date": 1, "is_last": false}],
            "days_of_the_week": null, "months_of_year": null, "weeks_of_the_month": null}"#,
    );
    // The policy arrives on stdin, as in `... | pgvault backup-policy tag set --policy -`.
    let mut child = w
        .command(&[
            "backup-policy",
            "tag",
            "set",
            "--criteria",
            s(&criteria),
            s(&az_criteria),
            "--name",
            "monthly",
            "--policy",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(&added_rule).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let policy: Value = serde_json::from_slice(&out.stdout).unwrap();
    // After the template's Default, where `tag set` appended it.
    let monthly = &policy["policyRules"][0]["trigger"]["taggingCriteria"][1];
    assert_eq!(monthly["tagInfo"]["tagName"], "Monthly");
    assert_eq!(
        monthly["criteria"],
        json!([
            {"objectType": "ScheduleBasedBackupCriteria", "daysOfTheWeek": ["Sunday", "Friday"]},
            {"objectType": "ScheduleBasedBackupCriteria", "daysOfMonth": [{"date": 1, "isLast": false}]}
        ])
    );

    // Setting the tag again replaces its criteria: still one Monthly tag.
    let tagged = w.write("tagged.json", &policy.to_string());
    let again = w.json(&[
        "backup-policy",
        "tag",
        "set",
        "--criteria",
        s(&criteria),
        "--name",
        "Monthly",
        "--policy",
        s(&tagged),
    ]);
    let tags = again["policyRules"][0]["trigger"]["taggingCriteria"]
        .as_array()
        .unwrap();
    assert_eq!(tags.len(), 2);
    assert_eq!(tags[1]["tagInfo"]["tagName"], "Monthly");
    assert_eq!(tags[1]["criteria"].as_array().unwrap().len(), 1);
}

#[test]
fn an_archive_tier_is_added_with_a_copy_on_expiry_and_removed_again() {
    let w = World::new();
    let edited = edited_policy(&w);
    // The PowerShell walkthrough's Monthly rule, with the CLI: six months in the vault, then
    // moved to the archive and kept there 24 months.
    let vault_to_archive = w.json(&[
        "backup-policy",
        "retention-rule",
        "create-lifecycle",
        "--count",
        "6",
        "--type",
        "Months",
        "--source-datastore",
        "VaultStore",
        "--target-datastore",
        "ArchiveStore",
        "--copy-option",
        "CopyOnExpiryOption",
    ]);
    assert_eq!(
        vault_to_archive["targetDataStoreCopySettings"],
        json!([{
            "dataStore": {"objectType": "DataStoreInfoBase", "dataStoreType": "ArchiveStore"},
            "copyAfter": {"objectType": "CopyOnExpiryOption"}
        }])
    );
    let on_archive = w.json(&[
        "backup-policy",
        "retention-rule",
        "create-lifecycle",
        "--count",
        "24",
        "--type",
        "Months",
        "--source-datastore",
        "ArchiveStore",
    ]);
    // Both lifecycles in one file, as an array.
    let lifecycles = w.write(
        "lifecycles.json",
        &json!([vault_to_archive, on_archive]).to_string(),
    );
    let with_rule = to_file(
        &w,
        &[
            "backup-policy",
            "retention-rule",
            "set",
            "--name",
            "Monthly",
            "--lifecycles",
            s(&lifecycles),
            "--policy",
            s(&edited),
        ],
        "withRule.json",
    );
    let criteria = to_file(
        &w,
        &[
            "backup-policy",
            "tag",
            "create-absolute-criteria",
            "--absolute-criteria",
            "FirstOfMonth",
        ],
        "criteria.json",
    );
    let tagged = to_file(
        &w,
        &[
            "backup-policy",
            "tag",
            "set",
            "--name",
            "Monthly",
            "--criteria",
            s(&criteria),
            "--policy",
            s(&with_rule),
        ],
        "tagged.json",
    );
    let policy = w.json(&["backup-policy", "validate", "--policy", s(&tagged)]);
    assert_eq!(
        policy["policyRules"][2]["lifecycles"][1]["deleteAfter"]["duration"],
        "P24M"
    );

    // Remove the tag, then the rule: back to the edited template.
    let untagged = to_file(
        &w,
        &[
            "backup-policy",
            "tag",
            "remove",
            "--name",
            "Monthly",
            "--policy",
            s(&tagged),
        ],
        "untagged.json",
    );
    let removed = w.json(&[
        "backup-policy",
        "retention-rule",
        "remove",
        "--name",
        "Monthly",
        "--policy",
        s(&untagged),
    ]);
    assert_eq!(removed, read(&edited));
}

#[test]
fn editing_errors_say_what_was_wrong() {
    let w = World::new();
    let edited = edited_policy(&w);
    let criteria = to_file(
        &w,
        &[
            "backup-policy",
            "tag",
            "create-absolute-criteria",
            "--absolute-criteria",
            "FirstOfMonth",
        ],
        "criteria.json",
    );
    // (arguments, fragments stderr must contain)
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec![
                "backup-policy",
                "trigger",
                "create-schedule",
                "--interval-type",
                "Hourly",
                "--interval-count",
                "5",
                "--schedule-days",
                "2021-08-15T22:00:00",
            ],
            vec!["interval count 5", "4, 6, 8 or 12"],
        ),
        (
            vec![
                "backup-policy",
                "trigger",
                "create-schedule",
                "--interval-type",
                "Weekly",
                "--interval-count",
                "1",
                "--schedule-days",
                "2021-08-15T22:00:00+00:00",
            ],
            vec!["offset", "\"2021-08-15T22:00:00\""],
        ),
        (
            vec![
                "backup-policy",
                "retention-rule",
                "remove",
                "--name",
                "Default",
                "--policy",
                s(&edited),
            ],
            vec!["Default retention rule", "cannot be removed"],
        ),
        (
            vec![
                "backup-policy",
                "retention-rule",
                "remove",
                "--name",
                "Weekly",
                "--policy",
                s(&edited),
            ],
            vec!["no retention rule named \"Weekly\"", "rules are: Default"],
        ),
        (
            vec![
                "backup-policy",
                "tag",
                "set",
                "--name",
                "Quarterly",
                "--criteria",
                s(&criteria),
                "--policy",
                s(&edited),
            ],
            vec![
                "\"Quarterly\" cannot be added",
                "Yearly, Monthly, Weekly or Daily",
            ],
        ),
        (
            vec![
                "backup-policy",
                "tag",
                "remove",
                "--name",
                "Default",
                "--policy",
                s(&edited),
            ],
            vec!["Default tag", "cannot be removed"],
        ),
        (
            vec![
                "backup-policy",
                "retention-rule",
                "create-lifecycle",
                "--count",
                "6",
                "--type",
                "Months",
                "--source-datastore",
                "VaultStore",
                "--copy-option",
                "CopyOnExpiryOption",
            ],
            vec!["needs a target datastore"],
        ),
        (
            vec![
                "backup-policy",
                "retention-rule",
                "set",
                "--name",
                "Monthly",
                "--lifecycles",
                "missing-lifecycle.json",
                "--policy",
                s(&edited),
            ],
            vec!["cannot read the lifecycle file `missing-lifecycle.json`"],
        ),
        (
            vec![
                "backup-policy",
                "retention-rule",
                "set",
                "--name",
                "Monthly",
                "--lifecycles",
                s(&criteria),
                "--policy",
                s(&edited),
            ],
            vec!["criteria.json` is not a valid lifecycle", "sourceDataStore"],
        ),
        (
            vec![
                "backup-policy",
                "tag",
                "set",
                "--name",
                "Monthly",
                "--criteria",
                s(&criteria),
                "--policy",
                s(&criteria),
            ],
            vec!["criteria.json` is not a valid policy", "datasourceTypes"],
        ),
    ];
    for (args, fragments) in cases {
        let err = w.fails(&args);
        for fragment in fragments {
            assert!(err.contains(fragment), "{args:?}: {err}");
        }
    }
}

#[test]
fn validate_lists_every_problem_with_its_path() {
    let w = World::new();
    let edited = edited_policy(&w);
    let mut policy = read(&edited);
    // A Monthly tag without its rule, a zero retention, and a schedule that is not one.
    policy["policyRules"][0]["trigger"]["taggingCriteria"]
        .as_array_mut()
        .unwrap()
        .push(json!({
            "isDefault": false,
            "taggingPriority": 15,
            "tagInfo": {"tagName": "Monthly"},
            "criteria": [{"objectType": "ScheduleBasedBackupCriteria", "absoluteCriteria": ["FirstOfMonth"]}]
        }));
    policy["policyRules"][1]["lifecycles"][0]["deleteAfter"]["duration"] = json!("P0D");
    let broken = w.write("broken.json", &policy.to_string());

    let out = w.run(&["backup-policy", "validate", "--policy", s(&broken)]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "an invalid policy is not printed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    for path in [
        "policyRules[1].lifecycles[0].deleteAfter.duration: ",
        "policyRules[0].trigger.taggingCriteria[1].tagInfo.tagName: ",
    ] {
        assert!(
            lines.iter().any(|line| line.starts_with(path)),
            "{path} in:\n{stderr}"
        );
    }
    assert!(
        lines.iter().all(|line| line.starts_with("policyRules")),
        "every line leads with its path:\n{stderr}"
    );

    // A daily schedule is valid for pgvault; --azure-compatible warns that Azure would refuse
    // it, on stderr, and still prints the policy with exit status 0.
    let template = w.path("OSSPolicy.json");
    let daily = to_file(
        &w,
        &[
            "backup-policy",
            "trigger",
            "set",
            "--policy",
            s(&template),
            "--schedule",
            "R/2021-08-15T22:00:00+00:00/P1D",
        ],
        "daily.json",
    );
    assert_eq!(read(&daily)["policyRules"][0]["name"], "BackupDaily");
    let out = w.run(&[
        "backup-policy",
        "validate",
        "--policy",
        s(&daily),
        "--azure-compatible",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("policyRules[0].trigger.schedule.repeatingTimeIntervals[0]"),
        "{stderr}"
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, read(&daily));
    // Without the flag, no warning.
    let out = w.run(&["backup-policy", "validate", "--policy", s(&daily)]);
    assert!(out.status.success() && out.stderr.is_empty());
}
