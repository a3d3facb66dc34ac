//! Every JSON pgvault prints that the az CLI feeds back is taken back unchanged and means the
//! same: `backup-policy show` (an ARM resource) to `backup-policy create`; the az CLI's
//! snake_case `initialize` outputs to `backup-instance create` and `restore trigger`;
//! `backup-instance show` (an ARM resource) to `backup-instance create`.

use serde_json::{Map, Value};

use crate::support::{World, cluster, plain_dump, sample_database};

/// `value` with every key in snake_case, as the az CLI's `initialize` commands print their
/// requests (`backup_instance_name`, `data_source_info`, `resource_id`, ...).
fn snake_case(value: &Value) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.iter().map(snake_case).collect()),
        Value::Object(object) => {
            let mut out = Map::new();
            for (key, v) in object {
                let mut snake = String::new();
                let mut previous_upper = false;
                for c in key.chars() {
                    if c.is_ascii_uppercase() {
                        // `resourceID` is `resource_id`, one word.
                        if !snake.is_empty() && !previous_upper {
                            snake.push('_');
                        }
                        snake.push(c.to_ascii_lowercase());
                    } else {
                        snake.push(c);
                    }
                    previous_upper = c.is_ascii_uppercase();
                }
                out.insert(snake, snake_case(v));
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

#[test]
fn snake_case_is_what_az_prints() {
    let v = serde_json::json!({"backupInstanceName": "b", "properties": {"dataSourceInfo": {"resourceID": "r"}}});
    assert_eq!(
        snake_case(&v),
        serde_json::json!({"backup_instance_name": "b", "properties": {"data_source_info": {"resource_id": "r"}}})
    );
}

#[test]
fn a_shown_policy_creates_the_same_policy() {
    let w = World::new();
    w.vault_with_policy("RoundVault");
    let shown = w.json(&[
        "backup-policy",
        "show",
        "--vault-name",
        "RoundVault",
        "--name",
        "OssPolicy",
    ]);
    assert!(
        shown["id"].is_string() && shown["properties"].is_object(),
        "{shown:#}"
    );
    // The template it was created from (`vault_with_policy`) is the policy it became, but
    // for the template's own `name`, which the resource's name (`OssPolicy`) replaces.
    let mut template = w.json(&[
        "backup-policy",
        "get-default-policy-template",
        "--datasource-type",
        "AzureDatabaseForPostgreSQLFlexibleServer",
    ]);
    assert_eq!(template["name"], "OssFlexiblePolicy1");
    template.as_object_mut().unwrap().remove("name");
    assert_eq!(shown["properties"], template);
    let file = w.write("shown-policy.json", &shown.to_string());
    let created = w.json(&[
        "backup-policy",
        "create",
        "--vault-name",
        "RoundVault",
        "--backup-policy-name",
        "Copy",
        "--policy",
        file.to_str().unwrap(),
    ]);
    assert_eq!(created["name"], "Copy");
    assert_eq!(created["properties"], shown["properties"]);
    // `validate` takes the resource as well.
    w.json(&[
        "backup-policy",
        "validate",
        "--policy",
        file.to_str().unwrap(),
    ]);
}

#[test]
fn az_shaped_requests_protect_and_restore_and_a_shown_instance_protects_again() {
    let w = World::new();
    let c = cluster();
    let db = sample_database("round", 2_000);
    w.vault_with_policy("RoundVault");

    // az's snake_case `initialize` output protects the database.
    let camel = w.initialize(&db, &w.admin_secret(&db));
    let mut snake = snake_case(&camel);
    // az names the instance `backup_instance_name`, where pgvault prints `name`.
    let name = snake.as_object_mut().unwrap().remove("name").unwrap();
    snake["backup_instance_name"] = name;
    let file = w.write("instance-snake.json", &snake.to_string());
    let created = w.json(&[
        "backup-instance",
        "create",
        "--vault-name",
        "RoundVault",
        "--backup-instance",
        file.to_str().unwrap(),
    ]);
    let instance = created["name"].as_str().unwrap().to_owned();
    assert_eq!(instance, camel["name"].as_str().unwrap());
    let show = |w: &World| {
        w.json(&[
            "backup-instance",
            "show",
            "--vault-name",
            "RoundVault",
            "--name",
            &instance,
        ])
    };
    let shown = show(&w);
    for key in [
        "dataSourceInfo",
        "datasourceAuthCredentials",
        "friendlyName",
    ] {
        assert_eq!(shown["properties"][key], camel["properties"][key], "{key}");
    }

    // What `show` printed protects it again, the same, once it is gone.
    let shown_file = w.write("instance-shown.json", &shown.to_string());
    w.json(&[
        "backup-instance",
        "delete",
        "--vault-name",
        "RoundVault",
        "--name",
        &instance,
        "--yes",
    ]);
    w.json(&[
        "backup-instance",
        "create",
        "--vault-name",
        "RoundVault",
        "--backup-instance",
        shown_file.to_str().unwrap(),
    ]);
    assert_eq!(show(&w), shown);

    // az's snake_case restore requests run: into a database...
    let job = w.backup("RoundVault", &instance);
    let rp = job["properties"]["result"]["recoveryPointId"]
        .as_str()
        .unwrap()
        .to_owned();
    let target = format!("{db}_rt");
    let req = w.json(&[
        "backup-instance",
        "restore",
        "initialize-for-data-recovery",
        "--vault-name",
        "RoundVault",
        "--backup-instance-name",
        &instance,
        "--recovery-point-id",
        &rp,
        "--target-database-url",
        &format!("postgres://{}:{}/{target}", c.host(), c.port()),
        "--secret-store-uri",
        &w.admin_secret("postgres"),
    ]);
    let req_file = w.write("restore-snake.json", &snake_case(&req).to_string());
    let restored = w.json(&[
        "backup-instance",
        "restore",
        "trigger",
        "--vault-name",
        "RoundVault",
        "--backup-instance-name",
        &instance,
        "--restore-request-object",
        req_file.to_str().unwrap(),
    ]);
    assert_eq!(
        restored["properties"]["status"], "Completed",
        "{restored:#}"
    );
    assert_eq!(plain_dump(&target), plain_dump(&db));

    // ...and as files.
    let out_dir = w.path("files");
    std::fs::create_dir_all(&out_dir).unwrap();
    let req = w.json(&[
        "backup-instance",
        "restore",
        "initialize-for-data-recovery-as-files",
        "--vault-name",
        "RoundVault",
        "--backup-instance-name",
        &instance,
        "--recovery-point-id",
        &rp,
        "--target-directory",
        out_dir.to_str().unwrap(),
        "--target-file-name",
        "rt",
    ]);
    let req_file = w.write("restore-files-snake.json", &snake_case(&req).to_string());
    let done = w.json(&[
        "backup-instance",
        "restore",
        "trigger",
        "--vault-name",
        "RoundVault",
        "--backup-instance-name",
        &instance,
        "--restore-request-object",
        req_file.to_str().unwrap(),
    ]);
    assert_eq!(done["properties"]["status"], "Completed", "{done:#}");
    assert!(out_dir.join("rt.dump").is_file());
}
