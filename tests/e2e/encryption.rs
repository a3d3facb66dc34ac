//! Client-side encryption, end to end: a vault created with `--encryption-key-uri` keeps
//! nothing of the database readable on its storage, restores identically with its key, is
//! refused (naming what was tried) without it, finds tampering, and takes more keys, rotation
//! and removal without rewriting data.

use crate::support::{World, files_under, plain_dump, restore_into, sample_database};

const PASSPHRASE: &str = "correct horse battery staple";

fn encrypted_world(vault: &str) -> (World, std::path::PathBuf) {
    let mut w = World::new();
    w.env
        .push(("PGVAULT_TEST_PASSPHRASE".into(), PASSPHRASE.into()));
    let dir = w.path(&format!("vault-{vault}"));
    let created = w.json(&[
        "backup-vault",
        "create",
        "--vault-name",
        vault,
        "--storage-url",
        &format!("file://{}", dir.display()),
        "--encryption-key-uri",
        "env:PGVAULT_TEST_PASSPHRASE",
    ]);
    assert_eq!(
        created["properties"]["securitySettings"]["encryptionSettings"]["state"], "Enabled",
        "{created:#}"
    );
    w.add_default_policy(vault);
    (w, dir)
}

/// Every byte of every file under the vault, for searching.
fn vault_bytes(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    files_under(dir)
        .into_iter()
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

#[test]
fn an_encrypted_vault_hides_the_database_and_restores_it_with_its_key() {
    let (w, dir) = encrypted_world("Sealed");
    let db = sample_database("sealed", 3000);
    let secret = w.admin_secret(&db);
    let instance = w.protect("Sealed", &db, &secret);
    let first = w.backup("Sealed", &instance);
    assert_eq!(first["properties"]["status"], "Completed", "{first:#}");

    // Nothing of the database is readable on the storage: no table name, no row, no part of
    // the table of contents. (The unencrypted control below shows the search finds them.)
    let files = vault_bytes(&dir);
    let needles: [&[u8]; 5] = [
        b"big_orders",
        b"customer 97",
        b"invoice_no",
        b"sales",
        b"CREATE TABLE",
    ];
    for (path, bytes) in &files {
        if path.ends_with(".json") && (path.contains("/instances/") || path.contains("/policies/"))
        {
            continue; // resources: names and references only, listed in the README
        }
        for n in needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == n),
                "`{}` found in {path}",
                String::from_utf8_lossy(n)
            );
        }
    }
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("vault.json")).unwrap()).unwrap();
    assert!(config.get("chunkIdKey").is_none(), "{config:#}");
    assert_eq!(config["formatVersion"], 2);
    assert_eq!(
        config["encryption"]["algorithm"],
        "AES-256-GCM-BLAKE3-SALT192"
    );
    let slot = &config["encryption"]["keys"][0];
    assert_eq!(slot["source"], "passphrase");
    assert_eq!(slot["reference"], "env:PGVAULT_TEST_PASSPHRASE");
    assert_eq!(slot["kdf"]["algorithm"], "argon2id");
    assert!(
        !config.to_string().contains(PASSPHRASE),
        "the passphrase is never stored"
    );

    // An unchanged second backup still adds almost nothing: dedup works under encryption.
    let second = w.backup("Sealed", &instance);
    let stored = |j: &serde_json::Value| {
        j["properties"]["extendedInfo"]["additionalDetails"]["BytesStored"]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .or_else(|| {
                j["properties"]["extendedInfo"]["additionalDetails"]["BytesStored"].as_u64()
            })
            .unwrap_or_else(|| panic!("no BytesStored in {j:#}"))
    };
    assert!(
        stored(&second) * 20 < stored(&first),
        "an unchanged backup stored {} of the first's {}",
        stored(&second),
        stored(&first)
    );

    // Restores identically with the key.
    let rps = w.recovery_points("Sealed", &instance);
    let rp = rps[0]["name"].as_str().unwrap().to_owned();
    let target = format!("{db}_back");
    let restored = restore_into(&w, "Sealed", &instance, &rp, &target);
    assert_eq!(
        restored["properties"]["status"], "Completed",
        "{restored:#}"
    );
    assert_eq!(plain_dump(&target), plain_dump(&db));

    // Without the key, or with the wrong one: refused, naming the vault and what was tried.
    let mut keyless = World {
        dir: tempfile::tempdir().unwrap(),
        env: w.env.clone(),
    };
    keyless.env.retain(|(k, _)| k != "PGVAULT_TEST_PASSPHRASE");
    let refused = keyless.fails(&[
        "recovery-point",
        "list",
        "-v",
        "Sealed",
        "--backup-instance-name",
        &instance,
    ]);
    assert!(
        refused.contains("UserErrorVaultKeyUnavailable")
            && refused.contains("Sealed")
            && refused.contains("env:PGVAULT_TEST_PASSPHRASE")
            && refused.contains("not set"),
        "{refused}"
    );
    keyless.env.push((
        "PGVAULT_TEST_PASSPHRASE".into(),
        "battery staple horse correct".into(),
    ));
    let refused = keyless.fails(&[
        "backup-instance",
        "adhoc-backup",
        "-v",
        "Sealed",
        "--name",
        &instance,
        "--rule-name",
        "Default",
    ]);
    assert!(
        refused.contains("UserErrorVaultKeyUnavailable") && refused.contains("another passphrase"),
        "{refused}"
    );
    assert!(
        !refused.contains("battery staple"),
        "the passphrase is never shown: {refused}"
    );

    // Every object is sealed: manifests, index files and lock objects (the instance lock's
    // generations stay) carry their sealed magic, and no pack trailer reads without the key.
    for (path, bytes) in &files {
        if path.contains("/recovery-points/") {
            assert!(
                bytes.starts_with(b"PGVMANE1"),
                "{path} is not a sealed manifest"
            );
        } else if path.contains("/locks/") || path.contains("/damage/") {
            assert!(
                bytes.starts_with(b"PGVJSNE1"),
                "{path} is not a sealed record"
            );
        } else if path.contains("/index/") {
            assert!(
                bytes.starts_with(b"PGVIDXE1"),
                "{path} is not a sealed index file"
            );
        } else if path.contains("/packs/") {
            assert!(
                pgvault_core::store::pack::read_pack_trailer(bytes, None).is_err(),
                "{path}'s trailer reads without the key"
            );
        }
    }
}

#[test]
fn a_tampered_object_fails_authentication_and_verify_names_its_recovery_point() {
    let (w, dir) = encrypted_world("Tamper");
    let db = sample_database("tamper", 2000);
    let secret = w.admin_secret(&db);
    let instance = w.protect("Tamper", &db, &secret);
    w.backup("Tamper", &instance);
    let rp = w.recovery_points("Tamper", &instance)[0]["name"]
        .as_str()
        .unwrap()
        .to_owned();

    // Flip one byte in the middle of the largest pack: a chunk's ciphertext.
    let mut packs: Vec<_> = files_under(&dir.join("packs"));
    packs.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    let pack = packs.last().unwrap();
    let mut bytes = std::fs::read(pack).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(pack, &bytes).unwrap();

    let out = w.run(&[
        "recovery-point",
        "verify",
        "-v",
        "Tamper",
        "--backup-instance-name",
        &instance,
        "--recovery-point-id",
        &rp,
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "verify passed a tampered pack: {text}"
    );
    assert!(
        text.contains(&rp),
        "verify names the recovery point: {text}"
    );
    assert!(
        text.contains("authentication"),
        "the finding says it failed authentication: {text}"
    );

    let out = w.run(&["backup-vault", "check", "-v", "Tamper", "--read-data"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "check passed a tampered pack: {text}"
    );
    assert!(text.contains(&rp), "check names the recovery point: {text}");

    // A tampered manifest is not read as anything.
    let manifest = files_under(&dir.join("recovery-points"))
        .into_iter()
        .find(|p| p.to_string_lossy().contains(&rp))
        .unwrap();
    let mut m = std::fs::read(&manifest).unwrap();
    let at = m.len() - 20;
    m[at] ^= 1;
    std::fs::write(&manifest, &m).unwrap();
    let listed = w.json(&[
        "recovery-point",
        "list",
        "-v",
        "Tamper",
        "--backup-instance-name",
        &instance,
    ]);
    let text = listed.to_string();
    assert!(
        !text.contains(&format!("\"name\":\"{rp}\"")) || text.contains("authentication"),
        "a tampered manifest is not listed as a sound point: {listed:#}"
    );
}

#[test]
fn keys_are_added_rotated_and_removed_without_rewriting_data() {
    let (mut w, dir) = encrypted_world("Keys");
    let db = sample_database("keys", 500);
    let secret = w.admin_secret(&db);
    let instance = w.protect("Keys", &db, &secret);
    w.backup("Keys", &instance);
    let packs_before: Vec<_> = files_under(&dir.join("packs"));

    // A key file of 32 random bytes, as `head -c 32 /dev/urandom` makes one.
    let key_file = w.path("vault.key");
    std::fs::write(
        &key_file,
        (0..32u8)
            .map(|i| i.wrapping_mul(97).wrapping_add(13))
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    let key_ref = format!("file:{}", key_file.display());
    let added = w.json(&[
        "backup-vault",
        "key",
        "add",
        "-v",
        "Keys",
        "--key-uri",
        &key_ref,
    ]);
    assert_eq!(added["source"], "keyFile", "{added:#}");
    let file_slot = added["id"].as_str().unwrap().to_owned();
    let listed = w.json(&["backup-vault", "key", "list", "-v", "Keys"]);
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed:#}");
    assert!(!listed.to_string().contains("wrappedKey"), "{listed:#}");

    // The key file alone opens the vault.
    w.env.retain(|(k, _)| k != "PGVAULT_TEST_PASSPHRASE");
    assert_eq!(w.recovery_points("Keys", &instance).len(), 1);

    // A weak passphrase is refused for a new slot.
    w.env.push(("PGVAULT_SHORT".into(), "short".into()));
    let refused = w.fails(&[
        "backup-vault",
        "key",
        "add",
        "-v",
        "Keys",
        "--key-uri",
        "env:PGVAULT_SHORT",
    ]);
    assert!(
        refused.contains("UserErrorInvalidEncryptionKey") && refused.contains("12"),
        "{refused}"
    );

    // Rotation: a new passphrase where the slot's reference points, rewrapped while the key
    // file opens the vault.
    w.env.push((
        "PGVAULT_TEST_PASSPHRASE".into(),
        "a brand new passphrase for 2027".into(),
    ));
    let rotated = w.json(&[
        "backup-vault",
        "key",
        "rotate",
        "-v",
        "Keys",
        "--key-id",
        "env:PGVAULT_TEST_PASSPHRASE",
    ]);
    assert_eq!(rotated["source"], "passphrase", "{rotated:#}");
    // Removing the key file's slot leaves the new passphrase as the only key.
    let refused = w.fails(&[
        "backup-vault",
        "key",
        "remove",
        "-v",
        "Keys",
        "--key-id",
        &file_slot,
    ]);
    assert!(
        refused.contains("UserErrorConfirmationRequired"),
        "{refused}"
    );
    w.json(&[
        "backup-vault",
        "key",
        "remove",
        "-v",
        "Keys",
        "--key-id",
        &file_slot,
        "--yes",
    ]);
    assert_eq!(
        w.recovery_points("Keys", &instance).len(),
        1,
        "the new passphrase opens it"
    );
    let only = w.json(&["backup-vault", "key", "list", "-v", "Keys"]);
    let only_id = only[0]["id"].as_str().unwrap().to_owned();
    let refused = w.fails(&[
        "backup-vault",
        "key",
        "remove",
        "-v",
        "Keys",
        "--key-id",
        &only_id,
        "--yes",
    ]);
    assert!(refused.contains("UserErrorLastVaultKey"), "{refused}");

    // No data was rewritten: the same packs, byte for byte.
    let packs_after: Vec<_> = files_under(&dir.join("packs"));
    assert_eq!(packs_before.len(), packs_after.len());
    for p in &packs_before {
        assert!(packs_after.contains(p), "{} was rewritten", p.display());
    }
    // And the old passphrase no longer opens it.
    let mut old = World {
        dir: tempfile::tempdir().unwrap(),
        env: w.env.clone(),
    };
    old.env.retain(|(k, _)| k != "PGVAULT_TEST_PASSPHRASE");
    old.env
        .push(("PGVAULT_TEST_PASSPHRASE".into(), PASSPHRASE.into()));
    let refused = old.fails(&[
        "recovery-point",
        "list",
        "-v",
        "Keys",
        "--backup-instance-name",
        &instance,
    ]);
    assert!(
        refused.contains("UserErrorVaultKeyUnavailable"),
        "{refused}"
    );
}

/// A vault whose data key an Azure Key Vault key wraps (`wrapKey`/`unwrapKey`), against the
/// Key Vault double (`pgvault_testkit::keyvault_double`, a double of the documented protocol):
/// the slot keeps the versioned key id that wrapped, survives a key rotation, is rewrapped
/// with the new version by `key rotate`, and a disabled version is a clear refusal.
#[test]
fn an_azure_key_vault_key_wraps_the_data_key_across_a_rotation() {
    use pgvault_testkit::keyvault_double::{CLIENT_ID, CLIENT_SECRET, KeyVaultDouble, TENANT_ID};
    let double = KeyVaultDouble::start();
    let first_version = double.create_key("pgvault-kek");
    let mut w = World::new();
    w.env.extend([
        ("AZURE_TENANT_ID".to_owned(), TENANT_ID.to_owned()),
        ("AZURE_CLIENT_ID".to_owned(), CLIENT_ID.to_owned()),
        ("AZURE_CLIENT_SECRET".to_owned(), CLIENT_SECRET.to_owned()),
        ("AZURE_AUTHORITY_HOST".to_owned(), double.authority_host()),
    ]);
    let key_uri = double.key_uri("pgvault-kek");
    let dir = w.path("vault-Cmk");
    let created = w.json(&[
        "backup-vault",
        "create",
        "-v",
        "Cmk",
        "--storage-url",
        &format!("file://{}", dir.display()),
        "--encryption-key-uri",
        &key_uri,
    ]);
    assert_eq!(
        created["properties"]["securitySettings"]["encryptionSettings"]["keyVaultProperties"]["keyUri"],
        key_uri.as_str(),
        "{created:#}"
    );
    let slots = w.json(&["backup-vault", "key", "list", "-v", "Cmk"]);
    assert_eq!(slots[0]["source"], "azureKeyVault", "{slots:#}");
    assert!(
        slots[0]["keyVaultKeyId"]
            .as_str()
            .unwrap()
            .ends_with(&first_version),
        "the slot keeps the version that wrapped: {slots:#}"
    );
    w.add_default_policy("Cmk");
    let db = sample_database("cmk", 300);
    let secret = w.admin_secret(&db);
    let instance = w.protect("Cmk", &db, &secret);
    let job = w.backup("Cmk", &instance);
    assert_eq!(job["properties"]["status"], "Completed", "{job:#}");

    // Key Vault rotates the key: the vault still opens with the version that wrapped it, and
    // `key rotate` rewraps with the new current version.
    let second_version = double.rotate_key("pgvault-kek");
    assert_eq!(w.recovery_points("Cmk", &instance).len(), 1);
    let rotated = w.json(&[
        "backup-vault",
        "key",
        "rotate",
        "-v",
        "Cmk",
        "--key-id",
        &key_uri,
    ]);
    assert!(
        rotated["keyVaultKeyId"]
            .as_str()
            .unwrap()
            .ends_with(&second_version),
        "{rotated:#}"
    );
    double.disable_key("pgvault-kek", &first_version);
    assert_eq!(
        w.recovery_points("Cmk", &instance).len(),
        1,
        "the new version opens it"
    );

    // The version the slot needs is disabled: refused, saying which key and why.
    double.disable_key("pgvault-kek", &second_version);
    let refused = w.fails(&[
        "recovery-point",
        "list",
        "-v",
        "Cmk",
        "--backup-instance-name",
        &instance,
    ]);
    assert!(
        refused.contains("UserErrorVaultKeyUnavailable")
            && refused.contains(&key_uri)
            && refused.contains("UserErrorKeyVaultKeyDisabled"),
        "{refused}"
    );
}

/// An encrypted vault on Blob Storage (Azurite) with an archive tier there too: the sweep's
/// copy to the archive tier is sealed with the same key (its manifest and packs read back
/// only through it), and `check --read-data` and `verify` authenticate every tier's copy.
#[test]
fn an_encrypted_vault_on_blob_storage_seals_its_archive_tier_too() {
    let azurite = pgvault_testkit::Azurite::start();
    let mut w = World::new();
    w.env.extend(azurite.env());
    w.env
        .push(("PGVAULT_TEST_PASSPHRASE".into(), PASSPHRASE.into()));
    let prefix = format!("enc-{}", std::process::id());
    let vault = "SealedBlob";
    w.json(&[
        "backup-vault",
        "create",
        "--vault-name",
        vault,
        "--storage-url",
        &format!("az://devstoreaccount1/vaults/{prefix}"),
        "--archive-storage-url",
        &format!("az://devstoreaccount1/archive/{prefix}"),
        "--archive-access-tier",
        "Cold",
        "--encryption-key-uri",
        "env:PGVAULT_TEST_PASSPHRASE",
    ]);
    let policy = crate::support::archive_policy(&w);
    w.json(&[
        "backup-policy",
        "create",
        "-v",
        vault,
        "-n",
        "OssPolicy",
        "--policy",
        &policy,
    ]);
    let db = sample_database("sealedblob", 2000);
    let instance = w.protect(vault, &db, &w.admin_secret(&db));
    let ticked = w.json(&["tick", "--at", "2041-01-06T02:00:00Z"]);
    assert_eq!(ticked[0]["properties"]["status"], "Completed", "{ticked:#}");
    let swept = w.json(&[
        "retention",
        "sweep",
        "-v",
        vault,
        "--at",
        "2041-02-07T00:00:00Z",
    ]);
    assert_eq!(
        swept[0]["job"]["properties"]["status"], "Completed",
        "{swept:#}"
    );
    let points = w.recovery_points(vault, &instance);
    let tiers = points[0]["properties"]["recoveryPointDataStoresDetails"].to_string();
    assert!(
        tiers.contains("ArchiveStore"),
        "moved to the archive tier: {points:?}"
    );

    let checked = w.json(&["backup-vault", "check", "-v", vault, "--read-data"]);
    assert!(
        !checked.to_string().contains("\"severity\":\"Error\""),
        "{checked:#}"
    );
    // Without the key the archive tier is as closed as the vault tier.
    let mut keyless = World {
        dir: tempfile::tempdir().unwrap(),
        env: w.env.clone(),
    };
    keyless.env.retain(|(k, _)| k != "PGVAULT_TEST_PASSPHRASE");
    let refused = keyless.fails(&["backup-vault", "check", "-v", vault]);
    assert!(
        refused.contains("UserErrorVaultKeyUnavailable"),
        "{refused}"
    );
}

/// A vault this host cannot open (here an encrypted vault whose key is not in its environment)
/// does not stop the other vaults' scheduled backups: the scheduler logs it and goes on.
#[test]
fn a_vault_without_its_key_does_not_stop_other_vaults_schedules() {
    let mut w = World::new();
    w.env
        .push(("PGVAULT_TEST_PASSPHRASE".into(), PASSPHRASE.into()));
    let policy = crate::support::archive_policy(&w);
    for (vault, key) in [("Keyed", true), ("Open", false)] {
        let url = format!("file://{}", w.path(&format!("vault-{vault}")).display());
        let mut create = vec!["backup-vault", "create", "-v", vault, "--storage-url", &url];
        if key {
            create.extend(["--encryption-key-uri", "env:PGVAULT_TEST_PASSPHRASE"]);
        }
        w.json(&create);
        w.json(&[
            "backup-policy",
            "create",
            "-v",
            vault,
            "-n",
            "OssPolicy",
            "--policy",
            &policy,
        ]);
    }
    let db = sample_database("keyless", 200);
    let secret = w.admin_secret(&db);
    w.protect("Keyed", &db, &secret);
    let open = w.protect("Open", &db, &secret);

    w.env.retain(|(k, _)| k != "PGVAULT_TEST_PASSPHRASE");
    let out = w.run(&["tick", "--at", "2041-01-06T02:00:00Z"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // tick says what failed (Keyed's sweep) in its exit status and on stderr...
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("Keyed") && stderr.contains("UserErrorVaultKeyUnavailable"),
        "{stderr}"
    );
    // ...and the vault that opens was backed up all the same.
    let ticked: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let jobs: Vec<&serde_json::Value> = ticked
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["properties"]["pgvaultOperation"] == "ScheduledBackup")
        .collect();
    assert_eq!(
        jobs.len(),
        1,
        "only the vault that opens backs up: {ticked:#}"
    );
    assert_eq!(jobs[0]["properties"]["status"], "Completed", "{ticked:#}");
    assert!(
        jobs[0]["properties"]["backupInstanceId"]
            .as_str()
            .is_some_and(|id| id.ends_with(&format!("/backupVaults/Open/backupInstances/{open}"))),
        "{ticked:#}"
    );
    // Someone is told: a Vault Unavailable alert, resolved once the vault opens again.
    let alerts = w.json(&["alert", "list", "--open"]);
    assert!(
        alerts.to_string().contains("VaultUnavailable") && alerts.to_string().contains("Keyed"),
        "{alerts:#}"
    );
    w.env
        .push(("PGVAULT_TEST_PASSPHRASE".into(), PASSPHRASE.into()));
    w.json(&["tick", "--at", "2041-01-06T03:00:00Z"]);
    let open_alerts = w.json(&["alert", "list", "--open"]);
    assert!(
        !open_alerts.to_string().contains("VaultUnavailable"),
        "{open_alerts:#}"
    );
}
