//! `pgvault backup-policy simulate` through the real binary (JSON, table, plot), and the tags
//! on-demand backups get from the rule they name, against the test PostgreSQL.

use std::path::Path;

use serde_json::{Value, json};

use crate::support::{World, sample_database};

/// The PowerShell walkthrough's policy: weekly, Default kept 3 months, the first backup of
/// each month tagged Monthly, six months in the vault then 24 in the archive tier.
fn walkthrough_policy(w: &World) -> String {
    let template = w.json(&[
        "backup-policy",
        "get-default-policy-template",
        "--datasource-type",
        "AzureDatabaseForPostgreSQL",
    ]);
    let template = w.write("template.json", &template.to_string());
    let to_vault = w.json(&[
        "backup-policy",
        "retention-rule",
        "create-lifecycle",
        "--source-datastore",
        "VaultStore",
        "--retention-duration-type",
        "Months",
        "--retention-duration-count",
        "6",
        "--target-datastore",
        "ArchiveStore",
        "--copy-option",
        "CopyOnExpiryOption",
    ]);
    let on_archive = w.json(&[
        "backup-policy",
        "retention-rule",
        "create-lifecycle",
        "--source-datastore",
        "ArchiveStore",
        "--retention-duration-type",
        "Months",
        "--retention-duration-count",
        "24",
    ]);
    let lifecycles = w.write(
        "lifecycles.json",
        &json!([to_vault, on_archive]).to_string(),
    );
    let with_rule = w.json(&[
        "backup-policy",
        "retention-rule",
        "set",
        "--name",
        "Monthly",
        "--lifecycles",
        lifecycles.to_str().unwrap(),
        "--policy",
        template.to_str().unwrap(),
    ]);
    let with_rule = w.write("with-rule.json", &with_rule.to_string());
    let criteria = w.json(&[
        "backup-policy",
        "tag",
        "create-absolute-criteria",
        "--absolute-criteria",
        "FirstOfMonth",
    ]);
    let criteria = w.write("criteria.json", &criteria.to_string());
    let policy = w.json(&[
        "backup-policy",
        "tag",
        "set",
        "--name",
        "Monthly",
        "--criteria",
        criteria.to_str().unwrap(),
        "--policy",
        with_rule.to_str().unwrap(),
    ]);
    w.write("policy.json", &policy.to_string())
        .to_str()
        .unwrap()
        .to_owned()
}

#[test]
fn simulate_prints_json_a_table_and_a_plot() {
    let w = World::new();
    let policy = walkthrough_policy(&w);
    let sim = w.json(&[
        "backup-policy",
        "simulate",
        "--policy",
        &policy,
        "--from",
        "2025-01-01",
        "--to",
        "2035-01-01",
    ]);
    let points = sim["recoveryPoints"].as_array().unwrap();
    // The template's schedule is weekly: 522 Sundays in ten years.
    assert_eq!(points.len(), 522);
    let monthly: Vec<&Value> = points
        .iter()
        .filter(|p| p["retentionTagName"] == "Monthly")
        .collect();
    assert_eq!(monthly.len(), 120, "one Monthly per month");
    // As of the end: 6 months of Monthly points in the vault and 24 in the archive; the
    // Default points of the last three months (less the Monthly ones among them) in the vault.
    let summary = &sim["summary"];
    assert_eq!(summary["ArchiveStore"], 24, "{summary}");
    let vault = summary["VaultStore"].as_u64().unwrap();
    assert!((6 + 9..=6 + 11).contains(&vault), "{summary}");
    assert_eq!(
        summary["Deleted"].as_u64().unwrap() + vault + 24,
        522,
        "{summary}"
    );
    assert_eq!(
        monthly[0]["dataStores"][1]["dataStoreType"], "ArchiveStore",
        "{}",
        monthly[0]
    );

    // --at after the window: the backups taken in it, years later.
    let later = w.json(&[
        "backup-policy",
        "simulate",
        "--policy",
        &policy,
        "--from",
        "2025-01-01",
        "--to",
        "2035-01-01",
        "--at",
        "2036-01-01T00:00:00Z",
    ]);
    assert_eq!(later["summary"]["VaultStore"], 0, "{}", later["summary"]);
    // Monthly points moved to the archive within the last 24 months: those taken from
    // July 2033 (moved January 2034) to the window's end, December 2034.
    assert_eq!(later["summary"]["ArchiveStore"], 18, "{}", later["summary"]);

    // The table gives the reason for each fate, and the plot is an SVG with both tiers.
    let plot = w.path("ten-years.svg");
    let out = w.run(&[
        "backup-policy",
        "simulate",
        "--policy",
        &policy,
        "--from",
        "2025-01-01",
        "--to",
        "2035-01-01",
        "-o",
        "table",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("Recovery point (UTC)"), "{table}");
    assert!(
        table.contains("Monthly: P6M in vault, then moved to archive for P24M"),
        "{table}"
    );
    assert!(table.contains("deleted 20"), "{table}");
    assert!(table.contains("As of 2035-01-01 00:00 UTC:"), "{table}");
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.contains("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("Archive tier") && svg.contains("Vault tier"));
}

#[test]
fn simulate_refuses_what_it_cannot_simulate() {
    let w = World::new();
    let policy = walkthrough_policy(&w);
    // An invalid policy: every problem with its path.
    let mut broken: Value =
        serde_json::from_str(&std::fs::read_to_string(&policy).unwrap()).unwrap();
    broken["policyRules"][1]["lifecycles"][0]["deleteAfter"]["duration"] = json!("P11Y");
    let broken = w.write("broken.json", &broken.to_string());
    let error = w.fails(&[
        "backup-policy",
        "simulate",
        "--policy",
        broken.to_str().unwrap(),
        "--from",
        "2025-01-01",
        "--to",
        "2026-01-01",
    ]);
    assert!(
        error.contains("policyRules[1].lifecycles[0].deleteAfter.duration")
            && error.contains("7 days to 10 years"),
        "{error}"
    );
    let error = w.fails(&[
        "backup-policy",
        "simulate",
        "--policy",
        &policy,
        "--from",
        "2026-01-01",
        "--to",
        "2025-01-01",
    ]);
    assert!(error.contains("not before"), "{error}");
    let error = w.fails(&[
        "backup-policy",
        "simulate",
        "--policy",
        &policy,
        "--from",
        "1/1/2025",
        "--to",
        "2026-01-01",
    ]);
    assert!(error.contains("2025-01-01T02:00:00Z"), "{error}");
}

#[test]
fn on_demand_backups_take_the_tag_their_rule_names() {
    let w = World::new();
    let db = sample_database("ruletags", 200);
    let vault = "RuleTags";
    let policy = walkthrough_policy(&w);
    w.vault_with_policy_file(vault, Path::new(&policy));
    let instance = w.protect(vault, &db, &w.admin_secret(&db));
    let backup = |rule: &str, tag_override: Option<&str>| {
        let mut args = vec![
            "backup-instance",
            "adhoc-backup",
            "--vault-name",
            vault,
            "--name",
            &instance,
            "--rule-name",
            rule,
        ];
        if let Some(tag) = tag_override {
            args.extend(["--retention-tag-override", tag]);
        }
        w.run(&args)
    };
    // (rule, override, the recovery point's tag)
    for (rule, tag_override, tag) in [
        ("Default", None, "Default"),
        ("monthly", None, "Monthly"),
        ("BackupWeekly", None, "Default"),
        ("BackupWeekly", Some("Monthly"), "Monthly"),
    ] {
        let out = backup(rule, tag_override);
        assert!(
            out.status.success(),
            "{rule}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let job: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            job["properties"]["extendedInfo"]["additionalDetails"]["RetentionTag"], tag,
            "{rule} {tag_override:?}: {job:#}"
        );
    }
    let mut tags: Vec<String> = w
        .recovery_points(vault, &instance)
        .iter()
        .map(|rp| {
            rp["properties"]["retentionTagName"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    tags.sort();
    assert_eq!(tags, ["Default", "Default", "Monthly", "Monthly"]);

    // A rule the policy does not have fails before any job starts, naming the choices.
    let out = backup("Quarterly", None);
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(
        error.contains("UserErrorInvalidRuleName")
            && error.contains("BackupWeekly")
            && error.contains("Monthly"),
        "{error}"
    );
    let out = backup("Monthly", Some("Default"));
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(
        error.contains("applies only with a backup rule name"),
        "{error}"
    );
}

/// The README's simulate example is what the binary prints for `examples/policy.ten-years.json`.
#[test]
fn the_readme_simulation_example_is_true() {
    let w = World::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let policy = root.join("examples/policy.ten-years.json");
    let sim = w.json(&[
        "backup-policy",
        "simulate",
        "--policy",
        policy.to_str().unwrap(),
        "--from",
        "2025-01-01",
        "--to",
        "2035-01-01",
    ]);
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let summary = format!(
        "\"summary\": {{\"VaultStore\": {}, \"ArchiveStore\": {}, \"Deleted\": {}}}",
        sim["summary"]["VaultStore"], sim["summary"]["ArchiveStore"], sim["summary"]["Deleted"]
    );
    assert!(readme.contains(&summary), "README lacks {summary}");
    let archive = &sim["recoveryPoints"][0]["dataStores"][1];
    let first = format!(
        "{{\"dataStoreType\": {}, \"from\": {}, \"until\": {}}}",
        archive["dataStoreType"], archive["from"], archive["until"]
    );
    assert!(readme.contains(&first), "README lacks {first}");
}
