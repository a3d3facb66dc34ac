//! An archive tier on Blob Storage (Azurite): the sweep writes the archive's data packs in the
//! Archive access tier and leaves its manifests, index and chunk-list packs online; an
//! archived point is refused for restore and its packs refuse a read by name; `recovery-point
//! rehydrate` brings them online at the asked priority, copies the point back, restores, and
//! returns the packs to Archive.

use std::collections::HashSet;

use pgvault_core::store::azure::{AzureAuth, AzureLocation, EMULATOR_ACCOUNT_KEY};
use pgvault_core::store::blob_rest::BlobRest;
use pgvault_core::store::manifest::Manifest;
use pgvault_core::store::pack::decode_index;
use pgvault_core::store::paths;
use pgvault_testkit::{Azurite, DEV_ACCOUNT, DEV_ACCOUNT_KEY};
use serde_json::Value;

use crate::support::{World, archive_policy, cluster, plain_dump, sample_database};

/// The archive tier's Blob REST client, as the test process reaches Azurite.
fn archive_of(azurite: &Azurite, url: &str) -> BlobRest {
    let location = AzureLocation::parse(url).unwrap().unwrap();
    let auth = AzureAuth::Emulator {
        endpoint: azurite.blob_url(),
        key: EMULATOR_ACCOUNT_KEY.into(),
    };
    BlobRest::new(location, auth)
}

/// The names of the objects in the archive store (relative to its prefix, as the vault names
/// them), listed by `object_store`'s own client rather than pgvault's.
async fn names(azurite: &Azurite, rest: &BlobRest) -> Vec<String> {
    use futures::TryStreamExt as _;
    use object_store::ObjectStore as _;
    let location = rest.location();
    let store = object_store::azure::MicrosoftAzureBuilder::new()
        .with_account(DEV_ACCOUNT)
        .with_access_key(DEV_ACCOUNT_KEY)
        .with_container_name(location.container())
        // Azurite serves path-style URLs: the account comes first in the path.
        .with_endpoint(format!("{}/{DEV_ACCOUNT}", azurite.blob_url()))
        .with_allow_http(true)
        .build()
        .unwrap();
    let prefix = object_store::path::Path::from(location.prefix());
    let listed: Vec<_> = store.list(Some(&prefix)).try_collect().await.unwrap();
    listed
        .into_iter()
        .map(|meta| {
            let parts: Vec<_> = meta.location.prefix_match(&prefix).unwrap().collect();
            parts
                .iter()
                .map(|p| p.as_ref())
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect()
}

/// The access tiers of the archive store's data packs (those holding no chunk-list block),
/// and every other object with its tier.
async fn tiers(
    azurite: &Azurite,
    rest: &BlobRest,
) -> (Vec<(String, Option<String>)>, Vec<(String, Option<String>)>) {
    let names = names(azurite, rest).await;
    let mut lists = HashSet::new();
    for name in names.iter().filter(|n| n.starts_with("recovery-points/")) {
        let manifest = Manifest::from_bytes(&rest.get_blob(name).await.unwrap()).unwrap();
        lists.extend(manifest.stream.chunk_lists);
    }
    let mut list_packs = HashSet::new();
    for name in names.iter().filter(|n| n.starts_with("index/")) {
        for (pack, entries) in decode_index(&rest.get_blob(name).await.unwrap(), None).unwrap() {
            if entries.iter().any(|e| lists.contains(&e.id)) {
                list_packs.insert(paths::pack(&pack).to_string());
            }
        }
    }
    let (mut data, mut other) = (Vec::new(), Vec::new());
    for name in names {
        let tier = rest.properties(&name).await.unwrap().access_tier;
        if name.starts_with("packs/") && !list_packs.contains(&name) {
            data.push((name, tier));
        } else {
            other.push((name, tier));
        }
    }
    (data, other)
}

#[test]
fn an_archive_tier_on_blob_storage_archives_packs_and_rehydrates_at_the_asked_priority() {
    let azurite = Azurite::start();
    let mut w = World::new();
    w.env.extend(azurite.env());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // An access tier is Blob Storage's: refused for a local archive tier.
    let local = w.path("local-archive");
    w.json(&[
        "backup-vault",
        "create",
        "--vault-name",
        "Local",
        "--storage-url",
        &format!("file://{}", w.path("local").display()),
    ]);
    let refused = w.fails(&[
        "backup-vault",
        "update",
        "--vault-name",
        "Local",
        "--archive-storage-url",
        &format!("file://{}", local.display()),
        "--archive-access-tier",
        "Cold",
    ]);
    assert!(
        refused.contains("UserErrorInvalidArchiveAccessTier") && refused.contains("Blob Storage"),
        "{refused}"
    );

    let db = sample_database("archtier", 5000);
    let prefix = format!("e2e-{}", std::process::id());
    let vault = "TierVault";
    let archive_url = format!("az://devstoreaccount1/archive/{prefix}");
    let policy = archive_policy(&w);
    w.json(&[
        "backup-vault",
        "create",
        "--vault-name",
        vault,
        "--storage-url",
        &format!("az://devstoreaccount1/vaults/{prefix}"),
    ]);
    w.json(&[
        "backup-policy",
        "create",
        "--vault-name",
        vault,
        "--backup-policy-name",
        "OssPolicy",
        "--policy",
        &policy,
    ]);
    let updated = w.json(&[
        "backup-vault",
        "update",
        "--vault-name",
        vault,
        "--archive-storage-url",
        &archive_url,
    ]);
    assert_eq!(
        updated["properties"]["pgvaultArchiveAccessTier"], "Archive",
        "{updated:#}"
    );
    let instance = w.protect(vault, &db, &w.admin_secret(&db));

    // The month's first backup, then the sweep that moves it to the archive tier.
    let ticked = w.json(&["tick", "--at", "2041-01-06T02:00:00Z"]);
    assert_eq!(
        ticked[0]["properties"]["pgvaultOperation"], "ScheduledBackup",
        "{ticked:#}"
    );
    let swept = w.json(&[
        "retention",
        "sweep",
        "--vault-name",
        vault,
        "--at",
        "2041-02-07T00:00:00Z",
    ]);
    assert_eq!(
        swept[0]["job"]["properties"]["status"], "Completed",
        "{swept:#}"
    );
    let id = w.recovery_points(vault, &instance)[0]["name"]
        .as_str()
        .unwrap()
        .to_owned();

    let rest = archive_of(&azurite, &archive_url);
    let archived = |want: &str| {
        let (data, other) = runtime.block_on(tiers(&azurite, &rest));
        assert!(!data.is_empty());
        assert!(
            data.iter().all(|(_, t)| t.as_deref() == Some(want)),
            "data packs {data:?}, want {want}"
        );
        // Manifests, index, chunk-list packs and the marker stay readable.
        assert!(
            other.iter().any(|(p, _)| p.starts_with("recovery-points/")),
            "{other:?}"
        );
        assert!(
            other.iter().any(|(p, _)| p.starts_with("index/")),
            "{other:?}"
        );
        assert!(
            other.iter().all(|(_, t)| t.as_deref() != Some("Archive")),
            "{other:?}"
        );
        other
    };
    archived("Archive");

    // A restore from ArchiveStore is refused until rehydration, and a pack read says why.
    let refused = w.fails(&[
        "backup-instance",
        "restore",
        "initialize-for-data-recovery-as-files",
        "--vault-name",
        vault,
        "--backup-instance-name",
        &instance,
        "--recovery-point-id",
        &id,
        "--source-datastore",
        "ArchiveStore",
        "--target-directory",
        w.path("files").to_str().unwrap(),
        "--target-file-name",
        "x",
    ]);
    assert!(
        refused.contains("UserErrorRecoveryPointNotRehydrated"),
        "{refused}"
    );
    let (data, _) = runtime.block_on(tiers(&azurite, &rest));
    let raw = runtime.block_on(rest.get_blob(&data[0].0)).unwrap_err();
    assert!(raw.is("BlobArchived"), "{raw:?}");
    // Verifying the point reads its packs through the vault's store, which names the tier.
    let verified = w.run(&[
        "recovery-point",
        "verify",
        "--vault-name",
        vault,
        "--backup-instance-name",
        &instance,
        "--recovery-point-id",
        &id,
    ]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(
        said.contains("can be read only after rehydration"),
        "{said}"
    );

    // `check --read-data` judges the archived packs by their properties, and says so.
    let check = w.run(&[
        "backup-vault",
        "check",
        "--vault-name",
        vault,
        "--read-data",
    ]);
    let checked = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{checked}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        checked.contains("can be read only after rehydration"),
        "{checked}"
    );

    // Rehydration at High priority; the job says how many packs came online.
    let job = w.json(&[
        "recovery-point",
        "rehydrate",
        "--vault-name",
        vault,
        "--backup-instance-name",
        &instance,
        "--recovery-point-id",
        &id,
        "--rehydration-duration",
        "P10D",
        "--rehydration-priority",
        "High",
    ]);
    assert_eq!(job["properties"]["status"], "Completed", "{job:#}");
    let text = job.to_string();
    assert!(text.contains("packs online; priority High"), "{job:#}");
    // The archive copy went back to Archive after the copy.
    archived("Archive");

    // The rehydrated copy restores, equal to the source.
    let c = cluster();
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
    let target = format!("{db}_rehydrated");
    let req = w.json(&[
        "backup-instance",
        "restore",
        "initialize-for-data-recovery",
        "--vault-name",
        vault,
        "--backup-instance-name",
        &instance,
        "--recovery-point-id",
        &id,
        "--source-datastore",
        "ArchiveStore",
        "--target-database-url",
        &format!("postgres://{}:{}/{target}", c.host(), c.port()),
        "--secret-store-uri",
        "env:PGVAULT_RESTORE_SECRET",
    ]);
    let req_file = w.write("restore.json", &req.to_string());
    let restored: Value = w.json(&[
        "backup-instance",
        "restore",
        "trigger",
        "--vault-name",
        vault,
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
}
