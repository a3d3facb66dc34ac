//! Vaults in Azure Blob Storage, against Azurite (the emulator, started by the testkit): the
//! walkthrough as on a local vault — backup, dedup, restore, retention sweep, GC — and a
//! local vault unaffected by Azure settings.

use pgvault_testkit::Azurite;
use pgvault_testkit::keyvault_double::{CLIENT_ID, CLIENT_SECRET, KeyVaultDouble, TENANT_ID};
use serde_json::Value;

use crate::support::{World, cluster, plain_dump, sample_database};

fn stored(job: &Value) -> u64 {
    job["properties"]["result"]["bytesStored"].as_u64().unwrap()
}

/// A world whose pgvault processes use `azurite` for `az://` URLs.
fn world_on(azurite: &Azurite) -> World {
    let mut w = World::new();
    w.env.extend(azurite.env());
    w
}

fn create_vault(w: &World, vault: &str, url: &str) {
    let template = w.json(&[
        "backup-policy",
        "get-default-policy-template",
        "--datasource-type",
        "AzureDatabaseForPostgreSQLFlexibleServer",
    ]);
    let policy = w.write("policy.json", &template.to_string());
    w.json(&[
        "backup-vault",
        "create",
        "--vault-name",
        vault,
        "--storage-url",
        url,
    ]);
    w.json(&[
        "backup-policy",
        "create",
        "--vault-name",
        vault,
        "--backup-policy-name",
        "OssPolicy",
        "--policy",
        policy.to_str().unwrap(),
    ]);
}

#[test]
fn a_vault_on_blob_storage_backs_up_dedups_restores_sweeps_and_collects() {
    let azurite = Azurite::start();
    let w = world_on(&azurite);
    let db = sample_database("blob", 20_000);
    // The container does not exist yet: `backup-vault create` makes it.
    let prefix = format!("e2e-{}", std::process::id());
    create_vault(
        &w,
        "BlobVault",
        &format!("az://devstoreaccount1/vaults/{prefix}"),
    );
    let instance = w.protect("BlobVault", &db, &w.admin_secret(&db));

    let first = w.backup("BlobVault", &instance);
    assert_eq!(first["properties"]["status"], "Completed", "{first:#}");
    let second = w.backup("BlobVault", &instance);
    assert!(
        stored(&second) * 20 < stored(&first),
        "an unchanged database stored {} bytes again (first: {})",
        stored(&second),
        stored(&first)
    );

    let rps = w.recovery_points("BlobVault", &instance);
    assert_eq!(rps.len(), 2);
    let c = cluster();
    let target = format!("{db}_restored");
    let mut w = w;
    w.env.push((
        "PGVAULT_RESTORE_SECRET".into(),
        format!(
            "Server={};Port={};Database=postgres;User Id={};Password={};",
            c.host(),
            c.port(),
            c.admin_user(),
            c.admin_password()
        ),
    ));
    let req = w.json(&[
        "backup-instance",
        "restore",
        "initialize-for-data-recovery",
        "--vault-name",
        "BlobVault",
        "--backup-instance-name",
        &instance,
        "--recovery-point-id",
        rps[0]["name"].as_str().unwrap(),
        "--target-database-url",
        &format!("postgres://{}:{}/{target}", c.host(), c.port()),
        "--secret-store-uri",
        "env:PGVAULT_RESTORE_SECRET",
    ]);
    let req_file = w.write("restore.json", &req.to_string());
    let restored = w.json(&[
        "backup-instance",
        "restore",
        "trigger",
        "--vault-name",
        "BlobVault",
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

    let sweep = w.json(&["retention", "sweep", "--vault-name", "BlobVault"]);
    assert!(sweep.is_array(), "{sweep:#}");
    let gc = w.json(&["backup-vault", "gc", "--vault-name", "BlobVault"]);
    assert!(gc.is_array(), "{gc:#}");
    // Collection kept what the recovery points need: the vault checks clean (exit 0).
    w.json(&["backup-vault", "check", "--vault-name", "BlobVault"]);
}

/// With no account key or SAS, a Blob vault is reached with a Microsoft Entra token from the
/// Azure credential chain, the one Key Vault uses. Azurite, started over HTTPS with OAuth on,
/// stands in for a real account (`AZURE_STORAGE_ENDPOINT`, as for a sovereign cloud) and
/// checks each token's audience, issuer and lifetime; the Entra double issues them.
#[test]
fn a_vault_on_blob_storage_is_reached_with_an_entra_token() {
    let azurite = Azurite::start_https();
    let entra = KeyVaultDouble::start();
    let mut w = World::new();
    w.env.extend([
        ("AZURE_STORAGE_ENDPOINT".into(), azurite.account_endpoint()),
        (
            "SSL_CERT_FILE".into(),
            Azurite::ca_file().display().to_string(),
        ),
        ("AZURE_TENANT_ID".into(), TENANT_ID.into()),
        ("AZURE_CLIENT_ID".into(), CLIENT_ID.into()),
        ("AZURE_CLIENT_SECRET".into(), CLIENT_SECRET.into()),
        ("AZURE_AUTHORITY_HOST".into(), entra.authority_host()),
    ]);
    let db = sample_database("blob_entra", 2_000);
    create_vault(&w, "EntraVault", "az://devstoreaccount1/entra-vaults/p");
    let instance = w.protect("EntraVault", &db, &w.admin_secret(&db));
    let job = w.backup("EntraVault", &instance);
    assert_eq!(job["properties"]["status"], "Completed", "{job:#}");
    // Every chunk reads back through the same token.
    let rps = w.recovery_points("EntraVault", &instance);
    w.json(&[
        "recovery-point",
        "verify",
        "--vault-name",
        "EntraVault",
        "--backup-instance-name",
        &instance,
        "--recovery-point-id",
        rps[0]["name"].as_str().unwrap(),
    ]);
    assert!(entra.token_requests() >= 1);

    // A refused credential is named, and its secret is not shown.
    let mut wrong = w.command(&["backup-vault", "show", "--vault-name", "EntraVault"]);
    wrong.env("AZURE_CLIENT_SECRET", "wrong-Hunter2");
    let out = wrong.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("Azure credential environment failed"), "{err}");
    assert!(!err.contains("Hunter2"), "{err}");
}

#[test]
fn azure_settings_do_not_touch_a_local_vault_and_missing_credentials_are_named() {
    let mut w = World::new();
    // Azure settings that would break any Blob Storage request.
    w.env.extend([
        (
            "AZURE_STORAGE_ACCOUNT_KEY".into(),
            "S3CRET-not-base64".into(),
        ),
        (
            "AZURE_STORAGE_SAS_TOKEN".into(),
            "sv=1&sig=S3CRETSIG".into(),
        ),
    ]);
    let db = sample_database("blob_local", 500);
    w.vault_with_policy("LocalVault");
    let instance = w.protect("LocalVault", &db, &w.admin_secret(&db));
    let job = w.backup("LocalVault", &instance);
    assert_eq!(job["properties"]["status"], "Completed", "{job:#}");

    let err = w.fails(&[
        "backup-vault",
        "create",
        "--vault-name",
        "Broken",
        "--storage-url",
        "az://someaccount/vaults",
    ]);
    assert!(
        err.contains("AZURE_STORAGE_ACCOUNT_KEY is not base64"),
        "{err}"
    );
    assert!(!err.contains("S3CRET"), "{err}");

    // No key, SAS or emulator: the Azure credential chain is asked for a token. Pinned to
    // the environment credential, unconfigured here, so the test does not depend on what
    // else (a managed identity, an `az login`) this machine has.
    let mut cmd = w.command(&[
        "backup-vault",
        "create",
        "--vault-name",
        "Broken",
        "--storage-url",
        "https://someaccount.blob.core.windows.net/vaults/p",
    ]);
    for var in [
        "AZURE_STORAGE_ACCOUNT_KEY",
        "AZURE_STORAGE_ACCESS_KEY",
        "AZURE_STORAGE_MASTER_KEY",
        "AZURE_STORAGE_SAS_TOKEN",
        "AZURE_STORAGE_SAS_KEY",
        "AZURE_STORAGE_USE_EMULATOR",
        "AZURE_CLIENT_SECRET",
        "AZURE_CLIENT_CERTIFICATE_PATH",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("PGVAULT_AZURE_CREDENTIAL", "environment");
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Azure credential environment failed")
            && err.contains("AZURE_STORAGE_ACCOUNT_KEY")
            && err.contains("someaccount"),
        "{err}"
    );
}
