//! The walkthrough as a user with Azure runs it, from the README's "Using Azure": the
//! database's credentials in Key Vault (the Entra and Key Vault double, see
//! `pgvault_testkit::keyvault_double`), the vault in Blob Storage (Azurite), and the same
//! `scripts/walkthrough.rhai` the local e2e runs: vault, policy, protect, backup, jobs,
//! restore to a new database, restore as files into a container. Then, through the CLI: a
//! second backup that stores next to nothing, a retention sweep, and garbage collection.

use pgvault_testkit::Azurite;
use pgvault_testkit::keyvault_double::{CLIENT_ID, CLIENT_SECRET, KeyVaultDouble, TENANT_ID};

use crate::blob_restore::download_from;
use crate::support::{World, cluster, plain_dump, sample_database};

#[test]
fn the_walkthrough_runs_with_key_vault_credentials_and_a_blob_storage_vault() {
    let azurite = Azurite::start();
    let kv = KeyVaultDouble::start();
    let c = cluster();
    let db = sample_database("azure_walk", 5_000);
    let target = format!("{db}_restored");
    kv.set_secret(
        "pg-admin",
        &format!(
            "User Id={};Password={};Ssl Mode=Prefer;",
            c.admin_user(),
            c.admin_password()
        ),
    );

    let mut w = World::new();
    w.env.extend(azurite.env());
    w.env.extend([
        ("AZURE_TENANT_ID".into(), TENANT_ID.into()),
        ("AZURE_CLIENT_ID".into(), CLIENT_ID.into()),
        ("AZURE_CLIENT_SECRET".into(), CLIENT_SECRET.into()),
        ("AZURE_AUTHORITY_HOST".into(), kv.authority_host()),
        (
            "PGVAULT_DATASOURCE".into(),
            format!("postgres://{}:{}/{db}", c.host(), c.port()),
        ),
        ("PGVAULT_SECRET_URI".into(), kv.secret_uri("pg-admin")),
        (
            "PGVAULT_RESTORE_URL".into(),
            format!("postgres://{}:{}/{target}", c.host(), c.port()),
        ),
        (
            "PGVAULT_VAULT_URL".into(),
            "az://devstoreaccount1/walkthrough/vault".into(),
        ),
        (
            "PGVAULT_FILES_CONTAINER_URL".into(),
            "az://devstoreaccount1/walkthrough".into(),
        ),
    ]);
    let script = format!(
        "{}/../../scripts/walkthrough.rhai",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = w.run(&["run", &script]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(plain_dump(&target), plain_dump(&db));
    // Credentials came from Key Vault, for the backup and for the restore.
    assert!(kv.requests() >= 2, "{} Key Vault requests", kv.requests());

    // The dump restored as files is a custom-format archive in the container, beside the
    // vault's prefix, of the size the job recorded.
    // Named after the recovery point, so the script can run again.
    let instances = w.json(&["backup-instance", "list", "--vault-name", "TestBkpVault"]);
    let instance = instances[0]["name"].as_str().unwrap().to_owned();
    let point = w.recovery_points("TestBkpVault", &instance)[0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let dump = download_from(
        &azurite,
        "walkthrough",
        &format!("walkthrough-{point}.dump"),
    )
    .expect("walkthrough-<recovery point>.dump in the container");
    assert!(dump.starts_with(b"PGDMP"), "not a custom-format dump");
    let jobs = w.json(&["job", "list", "--vault-name", "TestBkpVault"]);
    let files_job = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| {
            j["properties"]["extendedInfo"]["additionalDetails"]["RestoreTargetBlob"].is_string()
        })
        .unwrap_or_else(|| panic!("no restore-as-files job: {jobs:#}"));
    assert_eq!(
        files_job["properties"]["extendedInfo"]["additionalDetails"]["BytesWritten"],
        dump.len().to_string(),
        "{files_job:#}"
    );

    // A second backup of the unchanged database stores next to nothing.
    let second = w.backup("TestBkpVault", &instance);
    assert_eq!(second["properties"]["status"], "Completed", "{second:#}");
    let stored = |job: &serde_json::Value| {
        job["properties"]["extendedInfo"]["additionalDetails"]["BytesStored"]
            .as_str()
            .and_then(|b| b.parse::<u64>().ok())
    };
    assert!(
        stored(&second).is_some_and(|b| b < 64 << 10),
        "a backup of an unchanged database stored {:?} bytes: {second:#}",
        stored(&second)
    );

    let sweep = w.json(&["retention", "sweep", "--vault-name", "TestBkpVault"]);
    assert!(sweep.is_array(), "{sweep:#}");
    let gc = w.json(&["backup-vault", "gc", "--vault-name", "TestBkpVault"]);
    assert!(gc.is_array(), "{gc:#}");
    w.json(&["backup-vault", "check", "--vault-name", "TestBkpVault"]);
}
