//! ARM's scope on the command line: the host's subscription (`PGVAULT_SUBSCRIPTION_ID`), a
//! vault's resource group (`backup-vault create -g`), and az's `-g`, `--subscription` and
//! `--ids` on the commands that name a resource. Every id pgvault prints is ARM's full form,
//! and a full id is taken back wherever a name is.

use serde_json::Value;

use crate::support::*;

const SUB: &str = "04cf684a-d41f-4550-9f70-7708a3a2283b";
const OTHER_SUB: &str = "11111111-2222-3333-4444-555555555555";

fn prefix(group: &str, vault: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.DataProtection/backupVaults/{vault}"
    )
}

fn id(v: &Value) -> &str {
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}"))
}

/// A world whose host serves [`SUB`] (given in upper case: ARM ignores a GUID's case, pgvault
/// prints it in lower case).
fn world() -> World {
    let mut w = World::new();
    w.env
        .push(("PGVAULT_SUBSCRIPTION_ID".into(), SUB.to_ascii_uppercase()));
    w
}

fn create_vault(w: &World, vault: &str, group: Option<&str>) -> Value {
    let url = format!("file://{}", w.path(&format!("vault-{vault}")).display());
    let mut args = vec![
        "backup-vault",
        "create",
        "--vault-name",
        vault,
        "--storage-url",
        &url,
    ];
    if let Some(g) = group {
        args.extend(["-g", g]);
    }
    w.json(&args)
}

fn create_policy(w: &World, vault: &str) -> Value {
    let template = w.json(&[
        "backup-policy",
        "get-default-policy-template",
        "--datasource-type",
        "AzureDatabaseForPostgreSQLFlexibleServer",
    ]);
    let policy = w.write(&format!("policy-{vault}.json"), &template.to_string());
    w.json(&[
        "backup-policy",
        "create",
        "--vault-name",
        vault,
        "--backup-policy-name",
        "OssPolicy",
        "--policy",
        policy.to_str().unwrap(),
    ])
}

/// One walk through a vault in group `Sales`: every id printed (vault, policy, instance and
/// its policyId, recovery point, job and the ids inside it) is under the subscription and the
/// group, and each is taken back by `--ids`.
#[test]
fn every_id_is_under_the_subscription_and_the_vault_group() {
    let w = world();
    let vault = create_vault(&w, "SalesVault", Some("Sales"));
    let base = prefix("Sales", "SalesVault");
    assert_eq!(id(&vault), base);
    let policy = create_policy(&w, "SalesVault");
    assert_eq!(id(&policy), format!("{base}/backupPolicies/OssPolicy"));

    let db = sample_database("arm_scope", 200);
    let secret = w.admin_secret(&db);
    let instance = w.protect("SalesVault", &db, &secret);
    let shown = w.json(&[
        "backup-instance",
        "show",
        "-v",
        "SalesVault",
        "-n",
        &instance,
    ]);
    let instance_id = format!("{base}/backupInstances/{instance}");
    assert_eq!(id(&shown), instance_id);
    assert_eq!(
        shown["properties"]["policyInfo"]["policyId"],
        format!("{base}/backupPolicies/OssPolicy")
    );

    // Backup through --ids, and the job's ids.
    let job = w.json(&["backup-instance", "adhoc-backup", "--ids", &instance_id]);
    assert_eq!(job["properties"]["status"], "Completed", "{job}");
    let job_id = id(&job).to_owned();
    assert!(
        job_id.starts_with(&format!("{base}/backupJobs/")),
        "{job_id}"
    );
    assert_eq!(job["properties"]["backupInstanceId"], instance_id);
    assert_eq!(
        job["properties"]["policyId"],
        format!("{base}/backupPolicies/OssPolicy")
    );
    assert_eq!(job["properties"]["subscriptionId"], SUB);
    assert_eq!(w.json(&["job", "show", "--ids", &job_id])["id"], job_id);
    let uuid = job["name"].as_str().unwrap();
    assert_eq!(
        w.json(&["job", "show", "--job-id", uuid, "-g", "Sales"])["id"],
        job_id
    );
    let err = w.fails(&["job", "show", "--job-id", uuid, "-g", "Marketing"]);
    assert!(
        err.contains("UserErrorJobNotFound") && err.contains("`Sales`"),
        "{err}"
    );
    let err = w.fails(&[
        "job",
        "show",
        "--ids",
        &job_id.replace("/Sales/", "/Marketing/"),
    ]);
    assert!(err.contains("UserErrorVaultNotFound"), "{err}");
    let listed = w.json(&["job", "list", "-v", "SalesVault", "-g", "sales"]);
    assert!(
        listed.as_array().unwrap().iter().any(|j| j["id"] == job_id),
        "{listed}"
    );

    let points = w.recovery_points("SalesVault", &instance);
    let rp_id = id(&points[0]).to_owned();
    assert!(
        rp_id.starts_with(&format!("{instance_id}/recoveryPoints/")),
        "{rp_id}"
    );
    assert_eq!(
        w.json(&["recovery-point", "show", "--ids", &rp_id])["id"],
        rp_id
    );

    // A restore request naming its recovery point by full id, triggered by the instance's
    // id; one naming a point under another instance is refused, not rebound.
    let out_dir = w.path("restored");
    std::fs::create_dir(&out_dir).unwrap();
    let mut req = w.json(&[
        "backup-instance",
        "restore",
        "initialize-for-data-recovery-as-files",
        "--vault-name",
        "SalesVault",
        "--backup-instance-name",
        &instance,
        "--recovery-point-id",
        points[0]["name"].as_str().unwrap(),
        "--target-directory",
        out_dir.to_str().unwrap(),
        "--target-file-name",
        "sales",
    ]);
    let elsewhere = rp_id.replace(
        &format!("/backupInstances/{instance}/"),
        "/backupInstances/other/",
    );
    req["recoveryPointId"] = elsewhere.clone().into();
    let file = w.write("restore-elsewhere.json", &req.to_string());
    let trigger = |file: &std::path::Path| {
        vec![
            "backup-instance".to_owned(),
            "restore".into(),
            "trigger".into(),
            "--ids".into(),
            instance_id.clone(),
            "--restore-request-object".into(),
            file.display().to_string(),
        ]
    };
    let args = trigger(&file);
    let err = w.fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(err.contains("UserErrorResourceInAnotherVault"), "{err}");
    req["recoveryPointId"] = rp_id.clone().into();
    let file = w.write("restore-by-id.json", &req.to_string());
    let args = trigger(&file);
    let done = w.json(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(done["properties"]["status"], "Completed", "{done}");
    assert!(out_dir.join("sales.dump").exists());

    // --ids on show and on the protection actions; several ids print a list.
    let policy_id = format!("{base}/backupPolicies/OssPolicy");
    assert_eq!(
        w.json(&["backup-policy", "show", "--ids", &policy_id])["id"],
        policy_id
    );
    assert_eq!(
        w.json(&["backup-vault", "show", "--ids", &base])["id"],
        base
    );
    let both = w.json(&["backup-vault", "show", "--ids", &base, &base]);
    assert_eq!(both.as_array().map(Vec::len), Some(2), "{both}");
    let suspended = w.json(&["backup-instance", "suspend-backup", "--ids", &instance_id]);
    assert_eq!(
        suspended["properties"]["currentProtectionState"],
        "BackupSchedulesSuspended"
    );
    // The fixed segments match ignoring case, as in ARM; the subscription too.
    let shouting = instance_id
        .replace("resourceGroups", "RESOURCEGROUPS")
        .replace(SUB, &SUB.to_ascii_uppercase());
    let resumed = w.json(&["backup-instance", "resume-protection", "--ids", &shouting]);
    assert_eq!(
        resumed["properties"]["currentProtectionState"],
        "ProtectionConfigured"
    );

    // -g and --subscription, right.
    w.json(&[
        "backup-vault",
        "show",
        "-v",
        "SalesVault",
        "-g",
        "Sales",
        "--subscription",
        SUB,
    ]);
    w.json(&["backup-instance", "list", "-v", "SalesVault", "-g", "SALES"]);
    w.json(&[
        "recovery-point",
        "list",
        "-v",
        "SalesVault",
        "--backup-instance-name",
        &instance,
        "-g",
        "Sales",
    ]);
}

/// -g, --subscription and --ids with wrong values: each refused with the code and what is
/// right, before anything runs.
#[test]
fn wrong_groups_subscriptions_and_ids_are_refused() {
    let w = world();
    create_vault(&w, "V", Some("Sales"));
    create_policy(&w, "V");
    let base = prefix("Sales", "V");

    let err = w.fails(&["backup-vault", "show", "-v", "V", "-g", "Marketing"]);
    assert!(err.contains("UserErrorVaultNotFound"), "{err}");
    assert!(err.contains("resource group `Sales`"), "{err}");
    let err = w.fails(&[
        "backup-policy",
        "show",
        "-v",
        "V",
        "-n",
        "OssPolicy",
        "-g",
        "pgvault",
    ]);
    assert!(
        err.contains("UserErrorVaultNotFound") && err.contains("`Sales`"),
        "{err}"
    );

    let err = w.fails(&[
        "backup-vault",
        "show",
        "-v",
        "V",
        "--subscription",
        OTHER_SUB,
    ]);
    assert!(err.contains("SubscriptionNotFound"), "{err}");
    assert!(err.contains(SUB), "names the host's subscription: {err}");
    let err = w.fails(&["backup-vault", "list", "--subscription", "not-a-guid"]);
    assert!(err.contains("InvalidSubscriptionId"), "{err}");

    // An id in another group, another subscription, of another kind, or malformed.
    let err = w.fails(&["backup-vault", "show", "--ids", &prefix("Marketing", "V")]);
    assert!(
        err.contains("UserErrorVaultNotFound") && err.contains("`Sales`"),
        "{err}"
    );
    let other = base.replace(SUB, OTHER_SUB);
    let err = w.fails(&["backup-vault", "show", "--ids", &other]);
    assert!(err.contains("SubscriptionNotFound"), "{err}");
    let err = w.fails(&[
        "backup-vault",
        "show",
        "--ids",
        &format!("{base}/backupPolicies/OssPolicy"),
    ]);
    assert!(
        err.contains("InvalidResourceId") && err.contains("backup policy"),
        "{err}"
    );
    for bad in [
        "/providers/Microsoft.DataProtection/backupVaults/V".to_owned(),
        format!("{base}/"),
        base.replace("Microsoft.DataProtection", "Microsoft.Storage"),
        format!("{base}/backupPolicies/OssPolicy/extra"),
    ] {
        let err = w.fails(&["backup-policy", "show", "--ids", &bad]);
        assert!(err.contains("InvalidResourceId"), "{bad}: {err}");
    }
    let err = w.fails(&[
        "backup-policy",
        "show",
        "--ids",
        &base.replace("/Sales/", "/Sales./"),
    ]);
    assert!(err.contains("InvalidResourceGroup"), "{err}");
    // As in az, --ids takes the place of the names and of -g.
    let err = w.fails(&["backup-vault", "show", "--ids", &base, "-g", "Sales"]);
    assert!(err.contains("cannot be used with"), "{err}");
    let err = w.fails(&["backup-vault", "show", "--ids", &base, "-v", "V"]);
    assert!(err.contains("cannot be used with"), "{err}");

    // A group ARM would refuse is refused at creation, and nothing is created.
    for bad in ["ends.", "has space", "a/b", &"g".repeat(91)] {
        let url = format!("file://{}", w.path("bad-vault").display());
        let err = w.fails(&[
            "backup-vault",
            "create",
            "-v",
            "Bad",
            "--storage-url",
            &url,
            "-g",
            bad,
        ]);
        assert!(err.contains("InvalidResourceGroup"), "{bad}: {err}");
    }
    assert!(!w.path("bad-vault").exists());

    // A subscription that is not a GUID stops the host before it does anything.
    let mut bad = World::new();
    bad.env
        .push(("PGVAULT_SUBSCRIPTION_ID".into(), "my-subscription".into()));
    let err = bad.fails(&["backup-vault", "list"]);
    assert!(
        err.contains("InvalidSubscriptionId") && err.contains("GUID"),
        "{err}"
    );
}

/// `backup-vault list -g` lists that group's vaults only (ignoring case, as ARM compares
/// groups); without -g, every vault.
#[test]
fn vault_list_by_group() {
    let w = world();
    create_vault(&w, "A", Some("Sales"));
    create_vault(&w, "B", Some("Marketing"));
    create_vault(&w, "C", None);
    let names = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names(w.json(&["backup-vault", "list", "-g", "sales"])),
        ["A"]
    );
    assert_eq!(
        names(w.json(&["backup-vault", "list", "-g", "pgvault"])),
        ["C"]
    );
    assert_eq!(names(w.json(&["backup-vault", "list"])), ["A", "B", "C"]);
    assert!(names(w.json(&["backup-vault", "list", "-g", "Nobody"])).is_empty());
}

/// A vault written before vaults had a resource group (no `resourceGroup` in vault.json) is
/// in `pgvault`, and its stored policy, written with an old `/providers/...` id, prints in
/// full.
#[test]
fn an_old_vault_without_a_group_is_in_pgvault() {
    let w = world();
    create_vault(&w, "Old", None);
    create_policy(&w, "Old");
    let dir = w.path("vault-Old");
    let config = dir.join("vault.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert_eq!(v["resourceGroup"], "pgvault");
    v.as_object_mut().unwrap().remove("resourceGroup");
    std::fs::write(&config, v.to_string()).unwrap();
    let policy_file = dir.join("policies/OssPolicy.json");
    let text = std::fs::read_to_string(&policy_file).unwrap();
    let old_id = "/providers/Microsoft.DataProtection/backupVaults/Old/backupPolicies/OssPolicy";
    let mut policy: Value = serde_json::from_str(&text).unwrap();
    policy["id"] = old_id.into();
    std::fs::write(&policy_file, policy.to_string()).unwrap();

    let base = prefix("pgvault", "Old");
    assert_eq!(
        w.json(&["backup-vault", "show", "-v", "Old", "-g", "pgvault"])["id"],
        base
    );
    assert_eq!(
        w.json(&["backup-policy", "show", "-v", "Old", "-n", "OssPolicy"])["id"],
        format!("{base}/backupPolicies/OssPolicy")
    );
    let err = w.fails(&["backup-vault", "show", "-v", "Old", "-g", "Sales"]);
    assert!(err.contains("`pgvault`"), "{err}");
}

/// A `policyId` naming another vault's policy is refused, not rebound to this vault's policy
/// of the same name; this vault's own full id and a bare name are taken.
#[test]
fn a_policy_id_of_another_vault_is_refused() {
    let w = world();
    create_vault(&w, "V", Some("Sales"));
    create_policy(&w, "V");
    create_vault(&w, "W", Some("Sales"));
    create_policy(&w, "W");
    let db = sample_database("arm_policy", 50);
    let secret = w.admin_secret(&db);

    let with_policy = |policy_id: &str| {
        let mut req = w.initialize(&db, &secret);
        req["properties"]["policyInfo"]["policyId"] = policy_id.into();
        w.write("instance.json", &req.to_string())
    };
    for foreign in [
        format!("{}/backupPolicies/OssPolicy", prefix("Sales", "W")),
        format!("{}/backupPolicies/OssPolicy", prefix("Other", "V")),
        format!("{}/backupPolicies/OssPolicy", prefix("Sales", "V")).replace(SUB, OTHER_SUB),
    ] {
        let file = with_policy(&foreign);
        let err = w.fails(&[
            "backup-instance",
            "create",
            "-v",
            "V",
            "--backup-instance",
            file.to_str().unwrap(),
        ]);
        assert!(
            err.contains("UserErrorResourceInAnotherVault"),
            "{foreign}: {err}"
        );
        assert!(
            err.contains(&prefix("Sales", "V")),
            "names this vault: {err}"
        );
    }
    assert!(
        w.json(&["backup-instance", "list", "-v", "V"])
            .as_array()
            .unwrap()
            .is_empty()
    );

    let own = format!("{}/backupPolicies/OssPolicy", prefix("Sales", "V"));
    let file = with_policy(&own.replace("resourceGroups/Sales", "resourcegroups/SALES"));
    let created = w.json(&[
        "backup-instance",
        "create",
        "-v",
        "V",
        "-g",
        "Sales",
        "--backup-instance",
        file.to_str().unwrap(),
    ]);
    assert_eq!(created["properties"]["policyInfo"]["policyId"], own);
}
