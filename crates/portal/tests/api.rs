//! The REST API through its router, with a real home (vault registry, SQLite history) in a
//! temporary folder: authentication, roles, ARM's errors, api-version, paging, the audit
//! table, and vault and policy resources. What needs PostgreSQL (protect, backup, restore)
//! is proven end to end by Microsoft's SDK (tests/e2e/sdk.rs).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use pgvault_host::access::Role;
use pgvault_host::api::Home;
use pgvault_host::service::Pgvault;
use pgvault_portal::{DEFAULT_SUBSCRIPTION_ID, Portal, router};

const V: &str = "api-version=2026-06-01";

struct Api {
    _dir: tempfile::TempDir,
    svc: Arc<Pgvault>,
    app: axum::Router,
}

fn api() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let svc = Arc::new(Pgvault::open(Home::at(dir.path().join("home"))).unwrap());
    let portal = Portal::new(svc.clone(), false, "127.0.0.1:8080".parse().unwrap());
    Api {
        _dir: dir,
        svc,
        app: router(Arc::new(portal)),
    }
}

fn group_path(rg: &str) -> String {
    format!(
        "/subscriptions/{DEFAULT_SUBSCRIPTION_ID}/resourceGroups/{rg}/providers/Microsoft.DataProtection"
    )
}

impl Api {
    fn token(&self, name: &str, role: Role) -> String {
        self.svc.create_api_token(name, role).unwrap()
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, axum::http::HeaderMap, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "pgvault.test:8080");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let response = self.app.clone().oneshot(req).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
            .await
            .unwrap();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "{method} {uri}: not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        (status, headers, value)
    }
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn requests_without_a_valid_token_get_401_in_arms_shape() {
    let api = api();
    let token = api.token("ci", Role::Reader);
    let url = format!(
        "/subscriptions/{DEFAULT_SUBSCRIPTION_ID}/providers/Microsoft.DataProtection/backupVaults?{V}"
    );

    let (status, headers, body) = api.call("GET", &url, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(code(&body), "AuthenticationFailed");
    assert!(headers.contains_key("www-authenticate"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Authorization")
    );

    let (status, _, body) = api.call("GET", &url, Some("pgv_not-a-token"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(code(&body), "InvalidAuthenticationToken");

    let (status, _, body) = api.call("GET", &url, Some(&token), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"value": []}));

    api.svc.revoke_api_token("ci").unwrap();
    let (status, _, body) = api.call("GET", &url, Some(&token), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(code(&body), "InvalidAuthenticationToken");
}

#[tokio::test]
async fn api_version_is_required_and_checked() {
    let api = api();
    let token = api.token("ci", Role::Reader);
    let base = format!(
        "/subscriptions/{DEFAULT_SUBSCRIPTION_ID}/providers/Microsoft.DataProtection/backupVaults"
    );
    let (status, _, body) = api.call("GET", &base, Some(&token), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code(&body), "MissingApiVersionParameter");
    let (status, _, body) = api
        .call(
            "GET",
            &format!("{base}?api-version=2019-05-13"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code(&body), "InvalidApiVersionParameter");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2026-06-01")
    );
    for version in ["2025-07-01", "2026-03-01", "2026-06-01"] {
        let (status, _, _) = api
            .call(
                "GET",
                &format!("{base}?api-version={version}"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{version}");
    }
}

#[tokio::test]
async fn unknown_paths_and_subscriptions_get_arms_errors() {
    let api = api();
    let token = api.token("ci", Role::Contributor);
    let (status, _, body) = api
        .call(
            "GET",
            &format!("/subscriptions/11111111-1111-1111-1111-111111111111/providers/Microsoft.DataProtection/backupVaults?{V}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(code(&body), "SubscriptionNotFound");
    let (status, _, body) = api
        .call(
            "GET",
            &format!("{}/backupVaults/nope?{V}", group_path("rg")),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(code(&body), "ResourceNotFound");
    let (status, _, body) = api
        .call(
            "GET",
            &format!("{}/backupVaults/v/widgets?{V}", group_path("rg")),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code(&body), "InvalidResourceType");
    let (status, _, body) = api
        .call(
            "POST",
            &format!("{}/backupVaults/v/backupPolicies?{V}", group_path("rg")),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code(&body), "MethodNotAllowed");
}

#[tokio::test]
async fn roles_decide_who_may_change_what_and_changes_are_audited() {
    let api = api();
    let reader = api.token("reader", Role::Reader);
    let operator = api.token("operator", Role::Operator);
    let contributor = api.token("contributor", Role::Contributor);
    let vault = format!("{}/backupVaults/v1?{V}", group_path("rg"));
    let body = json!({"location": "local", "properties": {"storageSettings": [{"datastoreType": "VaultStore", "type": "LocallyRedundant"}]}});

    for token in [&reader, &operator] {
        let (status, _, answer) = api
            .call("PUT", &vault, Some(token), Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        assert_eq!(code(&answer), "AuthorizationFailed");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Contributor")
        );
    }
    assert!(
        api.svc.vault_names().unwrap().is_empty(),
        "a refused PUT created the vault"
    );

    let (status, _, created) = api
        .call("PUT", &vault, Some(&contributor), Some(body.clone()))
        .await;
    assert!(
        status == StatusCode::CREATED || status == StatusCode::OK,
        "{status} {created}"
    );
    assert_eq!(created["name"], "v1");
    assert_eq!(created["properties"]["provisioningState"], "Succeeded");
    let (status, _, read) = api.call("GET", &vault, Some(&reader), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["name"], "v1");

    // A second PUT of the same vault is an update, not a second vault.
    let (status, _, _) = api
        .call("PUT", &vault, Some(&contributor), Some(body))
        .await;
    assert_eq!(status, StatusCode::OK);

    let audit = api.svc.audit_entries(10).unwrap();
    let rows: Vec<(&str, u16)> = audit
        .iter()
        .map(|a| (a.token_name.as_str(), a.status))
        .collect();
    assert_eq!(
        rows,
        [
            ("contributor", 200),
            ("contributor", 201),
            ("operator", 403),
            ("reader", 403)
        ],
        "every change asked for is audited with the token's name, refused ones too; reads are not"
    );
}

#[tokio::test]
async fn policies_are_created_read_listed_and_deleted_as_azure_does() {
    let api = api();
    let token = api.token("ci", Role::Contributor);
    let vault = format!("{}/backupVaults/v1", group_path("rg"));
    api.call(
        "PUT",
        &format!("{vault}?{V}"),
        Some(&token),
        Some(json!({"location": "local"})),
    )
    .await;
    let template: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/conformance/azure/AzureDatabaseForPostgreSQL.defaultPolicy.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let policy = format!("{vault}/backupPolicies/Daily?{V}");
    let (status, _, created) = api
        .call(
            "PUT",
            &policy,
            Some(&token),
            Some(json!({"properties": template})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "Azure's SDK accepts only 200 here: {created}"
    );
    assert_eq!(created["name"], "Daily");
    assert_eq!(created["properties"]["objectType"], "BackupPolicy");

    // Azure never updates a policy in place.
    let (status, _, refused) = api
        .call(
            "PUT",
            &policy,
            Some(&token),
            Some(json!({"properties": template})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code(&refused), "UserErrorBMSUpdatePolicyNotSupported");

    // A policy that does not validate names what is wrong.
    let mut bad = template.clone();
    bad["policyRules"][1]["lifecycles"][0]["deleteAfter"]["duration"] = json!("P1Q");
    let (status, _, refused) = api
        .call(
            "PUT",
            &format!("{vault}/backupPolicies/Bad?{V}"),
            Some(&token),
            Some(json!({"properties": bad})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code(&refused), "UserErrorInvalidPolicy");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("policyRules[1]"),
        "{refused}"
    );

    let (status, _, list) = api
        .call(
            "GET",
            &format!("{vault}/backupPolicies?{V}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["value"].as_array().unwrap().len(), 1);
    assert!(list.get("nextLink").is_none());

    let (status, _, _) = api.call("DELETE", &policy, Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, gone) = api.call("GET", &policy, Some(&token), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(code(&gone), "UserErrorPolicyNotFound");
    let (status, _, _) = api.call("DELETE", &policy, Some(&token), None).await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "deleting what is gone is not an error in ARM"
    );
}

#[tokio::test]
async fn long_lists_page_with_next_link() {
    let api = api();
    let token = api.token("ci", Role::Contributor);
    let names: Vec<String> = (0..205).map(|i| format!("v{i:03}")).collect();
    let group = pgvault_model::resource::ResourceGroup::default();
    for name in &names {
        api.svc.create_vault(name, &group, None).await.unwrap();
    }
    let mut url = format!(
        "/subscriptions/{DEFAULT_SUBSCRIPTION_ID}/providers/Microsoft.DataProtection/backupVaults?{V}"
    );
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let (status, _, page) = api.call("GET", &url, Some(&token), None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        for v in page["value"].as_array().unwrap() {
            seen.push(v["name"].as_str().unwrap().to_owned());
        }
        match page["nextLink"].as_str() {
            Some(next) => {
                assert!(
                    next.starts_with("http://pgvault.test:8080/subscriptions/"),
                    "{next}"
                );
                url = next
                    .trim_start_matches("http://pgvault.test:8080")
                    .to_owned();
            }
            None => break,
        }
    }
    assert_eq!(pages, 2);
    assert_eq!(seen, names, "every vault once, in order");
}

#[tokio::test]
async fn a_failed_long_running_operation_reports_its_error_in_its_status() {
    let api = api();
    let token = api.token("ops", Role::Contributor);
    let vault = format!("{}/backupVaults/v1", group_path("rg"));
    api.call(
        "PUT",
        &format!("{vault}?{V}"),
        Some(&token),
        Some(json!({"location": "local"})),
    )
    .await;
    let template: Value = serde_json::to_value(pgvault_model::templates::default_policy_template(
        pgvault_model::policy::DatasourceType::AzureDatabaseForPostgreSQLFlexibleServer,
    ))
    .unwrap();
    api.call(
        "PUT",
        &format!("{vault}/backupPolicies/P?{V}"),
        Some(&token),
        Some(json!({"properties": template})),
    )
    .await;
    let instance = json!({
        "objectType": "BackupInstance",
        "dataSourceInfo": {"objectType": "Datasource", "datasourceType": "Microsoft.DBforPostgreSQL/flexibleServers/databases",
            "resourceID": "postgres://127.0.0.1:1/shop", "resourceName": "shop", "resourceType": "Microsoft.DBforPostgreSQL/flexibleServers/databases", "resourceLocation": "local", "resourceUri": ""},
        "policyInfo": {"policyId": "P"},
        "datasourceAuthCredentials": {"objectType": "SecretStoreBasedAuthCredentials",
            "secretStoreResource": {"secretStoreType": "Environment", "uri": "env:PGVAULT_TEST_SECRET_THAT_IS_NOT_SET"}}
    });
    let (status, headers, _) = api
        .call(
            "POST",
            &format!("{vault}/validateForBackup?{V}"),
            Some(&token),
            Some(json!({"backupInstance": instance})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let status_url = headers["azure-asyncoperation"].to_str().unwrap().to_owned();
    assert!(
        status_url.contains("/operationStatus/") && status_url.contains(V),
        "{status_url}"
    );
    assert!(headers.contains_key("location") && headers.contains_key("retry-after"));
    let path = status_url.trim_start_matches("http://pgvault.test:8080");
    // The operation runs on its own task: wait for it by yielding, not sleeping.
    let mut last = Value::Null;
    for _ in 0..10_000 {
        let (status, _, body) = api.call("GET", path, Some(&token), None).await;
        assert_eq!(status, StatusCode::OK);
        last = body;
        if last["status"] != "InProgress" {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(last["status"], "Failed", "{last}");
    assert_eq!(last["error"]["code"], "UserErrorInvalidSecret", "{last}");
    assert!(last["startTime"].is_string() && last["endTime"].is_string());
}

#[tokio::test]
async fn a_deleted_vault_can_be_made_again_in_another_resource_group() {
    let api = api();
    let token = api.token("ci", Role::Contributor);
    let body = json!({"location": "local"});
    let in_a = format!("{}/backupVaults/v1?{V}", group_path("group-a"));
    let in_b = format!("{}/backupVaults/v1?{V}", group_path("group-b"));
    let (status, _, created) = api
        .call("PUT", &in_a, Some(&token), Some(body.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(
        created["id"]
            .as_str()
            .unwrap()
            .contains("/resourceGroups/group-a/"),
        "{created}"
    );
    // Another group does not see it.
    let (status, _, _) = api.call("GET", &in_b, Some(&token), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = api.call("DELETE", &in_a, Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = api.call("GET", &in_a, Some(&token), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, created) = api.call("PUT", &in_b, Some(&token), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (status, _, shown) = api.call("GET", &in_b, Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        shown["id"]
            .as_str()
            .unwrap()
            .contains("/resourceGroups/group-b/"),
        "{shown}"
    );
}

#[tokio::test]
async fn a_vaults_tags_and_location_are_kept_and_changed_as_arm_changes_them() {
    let api = api();
    let token = api.token("ci", Role::Contributor);
    let vault = format!("{}/backupVaults/v1?{V}", group_path("rg"));
    let body = json!({"location": "westeurope", "tags": {"env": "prod", "owner": "dba"},
        "properties": {"storageSettings": [{"datastoreType": "VaultStore", "type": "GeoRedundant"}]}});
    let (status, _, created) = api.call("PUT", &vault, Some(&token), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (_, _, shown) = api.call("GET", &vault, Some(&token), None).await;
    assert_eq!(shown["location"], "westeurope");
    assert_eq!(shown["tags"], json!({"env": "prod", "owner": "dba"}));
    assert_eq!(
        shown["properties"]["storageSettings"][0]["type"],
        "GeoRedundant"
    );

    // PATCH replaces the tag set and leaves the rest.
    let (status, _, patched) = api
        .call(
            "PATCH",
            &vault,
            Some(&token),
            Some(json!({"tags": {"env": "test"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["tags"], json!({"env": "test"}));
    assert_eq!(patched["location"], "westeurope");

    for bad in [
        json!({"tags": ["env"]}),
        json!({"tags": {"a/b": "x"}}),
        json!({"tags": {"n": 5}}),
    ] {
        let (status, _, refused) = api
            .call("PATCH", &vault, Some(&token), Some(bad.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(code(&refused), "InvalidRequestContent", "{refused}");
    }
    let (_, _, shown) = api.call("GET", &vault, Some(&token), None).await;
    assert_eq!(
        shown["tags"],
        json!({"env": "test"}),
        "a refused PATCH changed nothing"
    );
}

/// `securitySettings.encryptionSettings` on a vault's PUT creates it encrypted with the key
/// `keyVaultProperties.keyUri` names (here a key file; a Key Vault key in Azure's own use); a
/// later PUT or PATCH may repeat the state but not turn encryption off, nor on for a vault
/// made without it.
#[tokio::test]
async fn a_vault_put_with_encryption_settings_is_created_encrypted() {
    let api = api();
    let token = api.token("ci", Role::Contributor);
    let key = api._dir.path().join("vault.key");
    std::fs::write(&key, [42u8; 32]).unwrap();
    let key_ref = format!("file:{}", key.display());
    let vault = format!("{}/backupVaults/sealed?{V}", group_path("rg"));
    let enabled = json!({"location": "local", "properties": {"securitySettings": {
        "encryptionSettings": {"state": "Enabled", "keyVaultProperties": {"keyUri": key_ref}}}}});
    let (status, _, created) = api
        .call("PUT", &vault, Some(&token), Some(enabled.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        created["properties"]["securitySettings"]["encryptionSettings"]["state"], "Enabled",
        "{created}"
    );
    let (status, _, again) = api.call("PUT", &vault, Some(&token), Some(enabled)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the same state again is fine: {again}"
    );
    let off =
        json!({"properties": {"securitySettings": {"encryptionSettings": {"state": "Disabled"}}}});
    let (status, _, refused) = api.call("PATCH", &vault, Some(&token), Some(off)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(code(&refused), "UserErrorVaultNotEncrypted", "{refused}");

    let plain = format!("{}/backupVaults/plain?{V}", group_path("rg"));
    let (status, _, created) = api
        .call(
            "PUT",
            &plain,
            Some(&token),
            Some(json!({"location": "local"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(
        created["properties"]["securitySettings"]
            .get("encryptionSettings")
            .is_none(),
        "{created}"
    );
    let on = json!({"properties": {"securitySettings": {"encryptionSettings": {
        "state": "Enabled", "keyVaultProperties": {"keyUri": format!("file:{}", key.display())}}}}});
    let (status, _, refused) = api.call("PATCH", &plain, Some(&token), Some(on)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(code(&refused), "UserErrorVaultNotEncrypted", "{refused}");
    let no_key = json!({"location": "local", "properties": {"securitySettings": {
        "encryptionSettings": {"state": "Enabled"}}}});
    let other = format!("{}/backupVaults/nokey?{V}", group_path("rg"));
    let (status, _, refused) = api.call("PUT", &other, Some(&token), Some(no_key)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(refused.to_string().contains("keyUri"), "{refused}");
}

/// `properties.securitySettings` is taken from a PUT and a PATCH as Azure's spec names it
/// (the examples' `Enabled` reads as On), shown back, and a change Azure refuses (Locked
/// immutability undone) is refused with its code and changes nothing else in the body.
#[tokio::test]
async fn a_vaults_security_settings_are_set_and_locked_stays_locked() {
    let api = api();
    let token = api.token("ci", Role::Contributor);
    let vault = format!("{}/backupVaults/v1?{V}", group_path("rg"));
    let body = json!({"location": "local", "properties": {"securitySettings": {
        "softDeleteSettings": {"state": "Enabled", "retentionDurationInDays": 30}}}});
    let (status, _, created) = api.call("PUT", &vault, Some(&token), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        created["properties"]["securitySettings"],
        json!({"softDeleteSettings": {"state": "On", "retentionDurationInDays": 30},
               "immutabilitySettings": {"state": "Disabled"}})
    );
    let lock =
        json!({"properties": {"securitySettings": {"immutabilitySettings": {"state": "Locked"}}}});
    let (status, _, patched) = api.call("PATCH", &vault, Some(&token), Some(lock)).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(
        patched["properties"]["securitySettings"]["immutabilitySettings"]["state"],
        "Locked"
    );
    let undo = json!({"tags": {"x": "y"}, "properties": {"securitySettings": {"immutabilitySettings": {"state": "Disabled"}}}});
    let (status, _, refused) = api.call("PATCH", &vault, Some(&token), Some(undo)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(
        code(&refused),
        "UserErrorUnsupportedVaultImmutabilityStateChange",
        "{refused}"
    );
    let (_, _, shown) = api.call("GET", &vault, Some(&token), None).await;
    assert_eq!(
        shown["properties"]["securitySettings"]["immutabilitySettings"]["state"],
        "Locked"
    );
    assert_eq!(shown["tags"], json!({}), "a refused PATCH changed nothing");
    // A new vault with settings it cannot take is not created.
    let other = format!("{}/backupVaults/v2?{V}", group_path("rg"));
    let bad = json!({"location": "local", "properties": {"securitySettings": {
        "softDeleteSettings": {"state": "On", "retentionDurationInDays": 7}}}});
    let (status, _, refused) = api.call("PUT", &other, Some(&token), Some(bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(code(&refused), "UserErrorInvalidSoftDeleteRetention");
    let (status, _, _) = api.call("GET", &other, Some(&token), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Vault `V` in group `pgvault` with backup instance `db1` in protection state `state`,
/// written as pgvault writes it (no PostgreSQL needed); returns the vault, to add points.
async fn vault_with_instance(api: &Api, state: &str) -> pgvault_core::engine::Vault {
    use pgvault_core::engine::Vault;
    use pgvault_core::store::{VaultStore, paths};
    let url = format!("file://{}", api._dir.path().join("vault").display());
    api.svc
        .create_vault(
            "V",
            &pgvault_model::resource::ResourceGroup::default(),
            Some(&url),
        )
        .await
        .unwrap();
    let vault = Vault::open(VaultStore::open(&url).unwrap()).await.unwrap();
    let instance = json!({"name": "db1", "properties": {
        "dataSourceInfo": {"datasourceType": "Microsoft.DBforPostgreSQL/flexibleServers/databases",
            "resourceID": "postgres://127.0.0.1:5432/db1", "resourceName": "db1"},
        "datasourceAuthCredentials": {"objectType": "SecretStoreBasedAuthCredentials",
            "secretStoreResource": {"secretStoreType": "Environment", "uri": "env:NOT_USED"}},
        "friendlyName": "db1", "policyInfo": {"policyId": "P"},
        "currentProtectionState": state}});
    vault
        .store
        .put_json(&paths::instance("db1"), &instance)
        .await
        .unwrap();
    vault
}

/// A recovery point's manifest as a backup writes it, for a point made without PostgreSQL.
fn manifest(id: &str, at: chrono::DateTime<chrono::Utc>) -> Value {
    json!({
        "formatVersion": 1, "recoveryPointId": id, "backupInstanceName": "db1",
        "recoveryPointTime": at, "policyName": "P", "policyRuleName": "BackupWeekly",
        "retentionTagName": "Default", "expiryTime": null, "jobId": "",
        "datasource": {"resourceId": "postgres://127.0.0.1:5432/db1", "server": "127.0.0.1", "port": 5432, "database": "db1"},
        "postgres": {"serverVersion": "17", "pgDumpVersion": "17", "databaseSize": 1000, "usernameUsed": "backup"},
        "chunker": {"algorithm": "fastcdc-2020", "minSize": 8192, "avgSize": 16384, "maxSize": 65536},
        "stream": {"length": 0, "chunksBlake3": "", "chunkCount": 0, "chunkLists": []},
        "archive": null,
        "stats": {"bytesRead": 1000, "bytesStored": 20, "newChunks": 1, "durationMs": 9}
    })
}

#[tokio::test]
async fn thousands_of_recovery_points_list_a_page_at_a_time() {
    use pgvault_core::store::paths;
    let api = api();
    let token = api.token("ci", Role::Reader);
    let vault = vault_with_instance(&api, "ProtectionConfigured").await;
    let start = chrono::Utc::now() - chrono::TimeDelta::days(100);
    let mut ids: Vec<String> = (0..450).map(|i| format!("{i:032x}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let at = start + chrono::TimeDelta::hours(i as i64);
        vault
            .store
            .put_json(&paths::recovery_point("db1", id), &manifest(id, at))
            .await
            .unwrap();
    }
    // One damaged manifest is listed as Partial, not dropped and not fatal.
    vault
        .store
        .put_json(
            &paths::recovery_point("db1", "zz-damaged"),
            &json!({"not": "a manifest"}),
        )
        .await
        .unwrap();
    ids.push("zz-damaged".into());

    let mut url = format!(
        "{}/backupVaults/V/backupInstances/db1/recoveryPoints?{V}",
        group_path("pgvault")
    );
    let (mut seen, mut pages) = (Vec::new(), 0);
    loop {
        let (status, _, page) = api.call("GET", &url, Some(&token), None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        for p in page["value"].as_array().unwrap() {
            assert!(p.is_object(), "{p}");
            seen.push(p["name"].as_str().unwrap().to_owned());
        }
        match page["nextLink"].as_str() {
            Some(next) => {
                url = next
                    .trim_start_matches("http://pgvault.test:8080")
                    .to_owned()
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids, "every point once, in the order of their ids");
}

#[tokio::test]
async fn a_backup_of_an_instance_not_protected_is_refused_at_once_with_409() {
    let api = api();
    let token = api.token("ops", Role::Operator);
    vault_with_instance(&api, "ProtectionStopped").await;
    let backup = format!(
        "{}/backupVaults/V/backupInstances/db1/backup?{V}",
        group_path("pgvault")
    );
    let body = json!({"backupRuleOptions": {"ruleName": "BackupWeekly", "triggerOption": {"retentionTagOverride": "Default"}}});
    let (status, headers, refused) = api.call("POST", &backup, Some(&token), Some(body)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(code(&refused), "UserErrorBackupInstanceNotProtected");
    assert!(
        !headers.contains_key("azure-asyncoperation"),
        "no operation was started"
    );
    assert!(
        api.svc.jobs(&Default::default()).unwrap().is_empty(),
        "no job was recorded"
    );
}

/// `/metrics` answers Prometheus's text format to any valid token (a Reader's is enough) and
/// nothing to anyone else: vault and database names are not public.
#[tokio::test]
async fn metrics_need_a_token_and_speak_prometheus() {
    let api = api();
    let token = api.token("prometheus", Role::Reader);
    api.svc
        .add_alert_destination(
            "oncall",
            None,
            pgvault_host::alerts::DeliveryTarget::Webhook {
                url: "env:PGVAULT_TEST_WEBHOOK".into(),
                bearer_token: None,
            },
        )
        .await
        .unwrap();
    let (status, _, body) = api.call("GET", "/metrics", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(code(&body), "AuthenticationFailed");
    let (status, _, body) = api.call("GET", "/metrics", Some("pgv_wrong"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(code(&body), "InvalidAuthenticationToken");

    let req = Request::builder()
        .uri("/metrics")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let response = api.app.clone().oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    // A home with no instance yet: the host's own families only.
    let text = String::from_utf8(text.to_vec()).unwrap();
    assert!(
        text.contains(
            "# TYPE pgvault_alert_destination_failing gauge\npgvault_alert_destination_failing{destination=\"oncall\"} 0\n"
        ),
        "{text}"
    );
}
