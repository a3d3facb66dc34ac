//! Database credentials from Azure Key Vault, against the Key Vault and Entra double in
//! `pgvault_testkit::keyvault_double` (Key Vault has no emulator; the double speaks the
//! documented secrets API and token endpoint, challenge included). The secret is read at
//! every backup, so a rotated password is picked up; with no Azure configuration nothing
//! Azure is contacted. The process signs in with a client secret, or with a client
//! certificate whose signed assertion the double verifies (test-only keys from
//! `crates/testkit/fixtures`).

use pgvault_testkit::keyvault_double::{
    CLIENT_CERTIFICATE, CLIENT_ID, CLIENT_SECRET, KeyVaultDouble, TENANT_ID,
    UNREGISTERED_CERTIFICATE, fixture,
};

use crate::support::{World, cluster, sample_database};

fn azure_env(w: &mut World, double: &KeyVaultDouble) {
    w.env.extend([
        ("AZURE_TENANT_ID".to_owned(), TENANT_ID.to_owned()),
        ("AZURE_CLIENT_ID".to_owned(), CLIENT_ID.to_owned()),
        ("AZURE_CLIENT_SECRET".to_owned(), CLIENT_SECRET.to_owned()),
        ("AZURE_AUTHORITY_HOST".to_owned(), double.authority_host()),
    ]);
}

#[test]
fn backups_read_their_credentials_from_key_vault_at_every_backup() {
    let c = cluster();
    let db = sample_database("keyvault", 300);
    let pid = std::process::id();
    let user = format!("kv_user_{pid}");
    c.psql(
        "postgres",
        &format!("CREATE ROLE {user} LOGIN SUPERUSER PASSWORD 'first-pw-{pid}'"),
    );
    let double = KeyVaultDouble::start();
    let secret = |pw: &str| format!("User Id={user};Password={pw};Ssl Mode=Prefer;");
    double.set_secret("pg-credentials", &secret(&format!("first-pw-{pid}")));

    let mut w = World::new();
    azure_env(&mut w, &double);
    w.vault_with_policy("KV");
    let uri = double.secret_uri("pg-credentials");
    let req = w.json(&[
        "backup-instance",
        "initialize",
        "--datasource-type",
        "AzureDatabaseForPostgreSQLFlexibleServer",
        "--datasource-id",
        &format!("postgres://{}:{}/{db}", c.host(), c.port()),
        "--policy-id",
        "OssPolicy",
        "--secret-store-type",
        "AzureKeyVault",
        "--secret-store-uri",
        &uri,
    ]);
    assert_eq!(
        req["properties"]["datasourceAuthCredentials"]["secretStoreResource"]["secretStoreType"],
        "AzureKeyVault"
    );
    let file = w.write("kv-instance.json", &req.to_string());
    let created = w.json(&[
        "backup-instance",
        "create",
        "--vault-name",
        "KV",
        "--backup-instance",
        file.to_str().unwrap(),
    ]);
    let instance = created["name"].as_str().unwrap().to_owned();
    let first = w.backup("KV", &instance);
    assert_eq!(first["properties"]["status"], "Completed", "{first:#}");
    assert!(double.token_requests() >= 1, "a token was fetched");

    // The password is rotated in the database and in Key Vault: the next backup reads the
    // new version.
    c.psql(
        "postgres",
        &format!("ALTER ROLE {user} PASSWORD 'second-pw-{pid}'"),
    );
    double.set_secret("pg-credentials", &secret(&format!("second-pw-{pid}")));
    let second = w.backup("KV", &instance);
    assert_eq!(second["properties"]["status"], "Completed", "{second:#}");

    // A secret the identity may not read fails with the seeds' code, and says nothing secret.
    double.forbid("pg-credentials");
    let out = w.run(&[
        "backup-instance",
        "adhoc-backup",
        "--vault-name",
        "KV",
        "--name",
        &instance,
        "--rule-name",
        "Default",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("UserErrorMissingPermissionsOnSecretStore"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("second-pw") && !stderr.contains(CLIENT_SECRET),
        "{stderr}"
    );
}

/// The local default touches nothing Azure, even with Azure credentials in the environment
/// (pointed at the double, which counts): only a Key Vault reference makes pgvault call out.
#[test]
fn local_secrets_contact_nothing_azure() {
    let double = KeyVaultDouble::start();
    let db = sample_database("noazure", 50);
    let mut w = World::new();
    azure_env(&mut w, &double);
    w.vault_with_policy("Local");
    let instance = w.protect("Local", &db, &w.admin_secret(&db));
    let job = w.backup("Local", &instance);
    assert_eq!(job["properties"]["status"], "Completed");
    assert_eq!(double.requests(), 0, "no request reached anything Azure");
}

/// `AZURE_CLIENT_CERTIFICATE_PATH` instead of a secret (an empty `AZURE_CLIENT_SECRET`
/// counts as unset, so the developer's own cannot win).
fn azure_certificate_env(w: &mut World, double: &KeyVaultDouble, certificate: &str) {
    w.env.extend([
        ("AZURE_TENANT_ID".to_owned(), TENANT_ID.to_owned()),
        ("AZURE_CLIENT_ID".to_owned(), CLIENT_ID.to_owned()),
        ("AZURE_CLIENT_SECRET".to_owned(), String::new()),
        (
            "AZURE_CLIENT_CERTIFICATE_PATH".to_owned(),
            fixture(certificate).display().to_string(),
        ),
        ("AZURE_AUTHORITY_HOST".to_owned(), double.authority_host()),
        (
            "PGVAULT_AZURE_CREDENTIAL".to_owned(),
            "environment".to_owned(),
        ),
    ]);
}

/// A service principal with a certificate: the backup reads its password from Key Vault
/// with a token got by a signed client assertion; the same run with a certificate Entra
/// does not know fails naming the certificate credential and Entra's code, and shows no key.
#[test]
fn a_client_certificate_signs_in_to_key_vault() {
    let c = cluster();
    let db = sample_database("kvcert", 100);
    let double = KeyVaultDouble::start();
    double.set_secret(
        "pg-admin",
        &format!(
            "User Id={};Password={};Ssl Mode=Prefer;",
            c.admin_user(),
            c.admin_password()
        ),
    );

    let mut w = World::new();
    azure_certificate_env(&mut w, &double, CLIENT_CERTIFICATE);
    w.vault_with_policy("KVC");
    let req = w.json(&[
        "backup-instance",
        "initialize",
        "--datasource-type",
        "AzureDatabaseForPostgreSQLFlexibleServer",
        "--datasource-id",
        &format!("postgres://{}:{}/{db}", c.host(), c.port()),
        "--policy-id",
        "OssPolicy",
        "--secret-store-type",
        "AzureKeyVault",
        "--secret-store-uri",
        &double.secret_uri("pg-admin"),
    ]);
    let file = w.write("kvc-instance.json", &req.to_string());
    let created = w.json(&[
        "backup-instance",
        "create",
        "--vault-name",
        "KVC",
        "--backup-instance",
        file.to_str().unwrap(),
    ]);
    let instance = created["name"].as_str().unwrap().to_owned();
    let job = w.backup("KVC", &instance);
    assert_eq!(job["properties"]["status"], "Completed", "{job:#}");
    assert!(double.token_requests() >= 1, "a token was fetched");

    // The same home and instance, signed in with a key pair the double never registered.
    let mut stranger = World {
        dir: w.dir,
        env: w.env.clone(),
    };
    stranger
        .env
        .retain(|(k, _)| k != "AZURE_CLIENT_CERTIFICATE_PATH");
    azure_certificate_env(&mut stranger, &double, UNREGISTERED_CERTIFICATE);
    let out = stranger.run(&[
        "backup-instance",
        "adhoc-backup",
        "--vault-name",
        "KVC",
        "--name",
        &instance,
        "--rule-name",
        "Default",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}");
    assert!(stderr.contains("client certificate"), "{stderr}");
    assert!(stderr.contains(UNREGISTERED_CERTIFICATE), "{stderr}");
    assert!(stderr.contains("AADSTS700027"), "{stderr}");
    let pem = std::fs::read_to_string(fixture(UNREGISTERED_CERTIFICATE)).unwrap();
    let key_lines = pem
        .lines()
        .skip_while(|l| !l.contains("PRIVATE KEY"))
        .skip(1)
        .filter(|l| !l.starts_with("-----"));
    for line in key_lines.chain(["PRIVATE KEY-----", "eyJ"]) {
        assert!(
            !stderr.contains(line) && !stdout.contains(line),
            "{line} in {stdout}{stderr}"
        );
    }
}
