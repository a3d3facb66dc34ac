//! Vaults in Azure Blob Storage, against Azurite (the emulator, started by the testkit): the
//! walkthrough as on a local vault — backup, dedup, restore, retention sweep, GC — and a
//! local vault unaffected by Azure settings.

use pgvault_testkit::Azurite;
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
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no credentials for storage account `someaccount`"),
        "{err}"
    );
}
