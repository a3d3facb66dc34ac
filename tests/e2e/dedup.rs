//! Unchanged data is not stored twice.

use crate::support::{World, cluster, sample_database};

fn stored(job: &serde_json::Value) -> u64 {
    job["properties"]["result"]["bytesStored"].as_u64().unwrap()
}

#[test]
fn unchanged_and_scattered_updates_store_little() {
    let w = World::new();
    let db = sample_database("dedup", 60_000);
    w.vault_with_policy("V");
    let instance = w.protect("V", &db, &w.admin_secret(&db));

    let first = w.backup("V", &instance);
    let read = first["properties"]["result"]["bytesRead"].as_u64().unwrap();
    let first_stored = stored(&first);
    assert!(first_stored > 100_000, "first backup stored {first_stored}");

    // Nothing changed: the dump differs only in its header and table of contents.
    let second = w.backup("V", &instance);
    assert!(
        stored(&second) * 50 < first_stored,
        "an unchanged database stored {} bytes again (first: {first_stored})",
        stored(&second)
    );

    // 1% of rows updated, scattered across the table. The rows are ~150 bytes, so most
    // 16 KiB chunks hold an updated row; each is stored as a delta against the chunk it
    // replaced, and the updated rows' new versions (moved to the table's end) as new data.
    cluster().psql(
        &db,
        "UPDATE sales.orders SET amount = amount + 1 WHERE id % 100 = 0",
    );
    let third = w.backup("V", &instance);
    assert!(
        stored(&third) * 10 <= first_stored * 3,
        "1% scattered updates stored {} bytes, over 30% of the first backup ({first_stored}; stream {read})",
        stored(&third)
    );

    // Every recovery point still restores to its own content.
    let rps = w.recovery_points("V", &instance);
    assert_eq!(rps.len(), 3);
    let out = w.path("out");
    for (i, rp) in rps.iter().enumerate() {
        let req = w.json(&[
            "backup-instance",
            "restore",
            "initialize-for-data-recovery-as-files",
            "--recovery-point-id",
            rp["name"].as_str().unwrap(),
            "--target-directory",
            out.to_str().unwrap(),
            "--target-file-name",
            &format!("rp{i}"),
        ]);
        let f = w.write(&format!("req{i}.json"), &req.to_string());
        w.json(&[
            "backup-instance",
            "restore",
            "trigger",
            "--vault-name",
            "V",
            "--backup-instance-name",
            &instance,
            "--restore-request-object",
            f.to_str().unwrap(),
        ]);
        let list = cluster()
            .command("pg_restore")
            .arg("--list")
            .arg(out.join(format!("rp{i}.dump")))
            .output()
            .unwrap();
        assert!(list.status.success());
    }
}
