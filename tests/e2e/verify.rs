//! `recovery-point verify`, `backup-vault check` and `backup-vault reindex` on real backups:
//! a pack one recovery point needs is deleted and a byte of a blob only another uses is
//! flipped; verify names exactly the damaged points and chunks, check reports them, and a
//! rebuilt index (after `index/` is lost) restores an intact point.
//!
//! What each point needs is computed from the vault with `pgvault_core`'s own readers, before
//! the damage, so the test knows the answer without asking the commands under test.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use pgvault_core::engine::VaultConfig;
use pgvault_core::store::chunk::ChunkId;
use pgvault_core::store::manifest::{Manifest, decode_chunk_list};
use pgvault_core::store::pack::read_pack_trailer;
use pgvault_core::store::reader::{fetch_blob, load_index};
use pgvault_core::store::{VaultStore, paths};

use crate::support::{World, cluster, files_under, sample_database};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn chunk_key(vault_dir: &Path) -> [u8; 32] {
    let config: VaultConfig =
        serde_json::from_slice(&std::fs::read(vault_dir.join("vault.json")).unwrap()).unwrap();
    config.chunk_key().unwrap()
}

/// The pack files under the vault.
fn pack_files(vault_dir: &Path) -> BTreeSet<String> {
    files_under(&vault_dir.join("packs"))
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn pack_path(vault_dir: &Path, pack: &str) -> std::path::PathBuf {
    vault_dir.join("packs").join(&pack[..2]).join(pack)
}

/// The chunks a pack holds (its trailer), as hex ids.
fn pack_chunks(vault_dir: &Path, pack: &str) -> BTreeSet<String> {
    let bytes = std::fs::read(pack_path(vault_dir, pack)).unwrap();
    read_pack_trailer(&bytes, None)
        .unwrap()
        .iter()
        .map(|e| e.id.to_hex())
        .collect()
}

/// What one recovery point needs: its manifest, chunk-list blocks, data chunks, delta bases.
struct Needs {
    chunk_lists: BTreeSet<String>,
    all: BTreeSet<String>,
    /// Data chunks stored whole (not as deltas).
    full: BTreeSet<String>,
}

fn needs(vault_dir: &Path, instance: &str, rp: &str) -> Needs {
    let key = chunk_key(vault_dir);
    runtime().block_on(async {
        let store = VaultStore::open(&format!("file://{}", vault_dir.display())).unwrap();
        let index = load_index(&store).await.unwrap();
        let bytes = store
            .get(&paths::recovery_point(instance, rp))
            .await
            .unwrap();
        let manifest = Manifest::from_bytes(&bytes).unwrap();
        let mut out = Needs {
            chunk_lists: BTreeSet::new(),
            all: BTreeSet::new(),
            full: BTreeSet::new(),
        };
        for list in &manifest.stream.chunk_lists {
            out.chunk_lists.insert(list.to_hex());
            out.all.insert(list.to_hex());
            let (_, block) = fetch_blob(&store, &index, &key, *list).await.unwrap();
            for r in decode_chunk_list(&block).unwrap() {
                out.all.insert(r.id.to_hex());
                match index.base_of(&r.id) {
                    Some(base) => {
                        out.all.insert(base.to_hex());
                    }
                    None => {
                        out.full.insert(r.id.to_hex());
                    }
                }
            }
        }
        out
    })
}

/// Flips a byte in the middle of a chunk's blob in a pack file.
fn flip_byte(vault_dir: &Path, pack: &str, chunk: &str) {
    let path = pack_path(vault_dir, pack);
    let mut bytes = std::fs::read(&path).unwrap();
    let id = ChunkId::from_hex(chunk).unwrap();
    let entry = read_pack_trailer(&bytes, None)
        .unwrap()
        .into_iter()
        .find(|e| e.id == id)
        .unwrap();
    bytes[(entry.offset + entry.length / 2) as usize] ^= 0x5a;
    std::fs::write(&path, bytes).unwrap();
}

/// `recovery-point verify --all`: exit status and the per-point results by name.
fn verify_all(w: &World) -> (bool, Vec<Value>) {
    let out = w.run(&["recovery-point", "verify", "--vault-name", "V", "--all"]);
    let results: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), results.as_array().unwrap().clone())
}

fn point<'a>(results: &'a [Value], rp: &str) -> &'a Value {
    results
        .iter()
        .find(|p| p["name"] == rp)
        .unwrap_or_else(|| panic!("no result for {rp}: {results:#?}"))
}

/// The chunk ids of one finding list of a point's vault-tier copy.
fn chunk_ids(p: &Value, list: &str) -> BTreeSet<String> {
    p["dataStores"][0][list]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["chunkId"].as_str().unwrap().to_owned())
        .collect()
}

fn check(w: &World, extra: &[&str]) -> (bool, Value) {
    let mut args = vec!["backup-vault", "check", "--vault-name", "V"];
    args.extend_from_slice(extra);
    let out = w.run(&args);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), v)
}

fn findings<'a>(check: &'a Value, kind: &str) -> Vec<&'a Value> {
    check["dataStores"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == kind)
        .collect()
}

#[test]
fn damage_is_named_exactly_and_a_rebuilt_index_restores_an_intact_point() {
    let w = World::new();
    let db = sample_database("verified", 3000);
    let other_db = cluster().create_database("verified_other");
    cluster().psql(
        &other_db,
        "CREATE TABLE t (id int PRIMARY KEY, body text);
         INSERT INTO t SELECT g, repeat(md5('other ' || g), 4) FROM generate_series(1, 3000) g;",
    );
    let vault_dir = w.vault_with_policy("V");
    // Small packs, so each backup writes several and damage can hit one point's data alone.
    crate::support::use_small_packs(&vault_dir);
    let instance = w.protect("V", &db, &w.admin_secret(&db));
    let other = w.protect("V", &other_db, &w.admin_secret(&other_db));

    w.backup("V", &other);
    let other_rp = w.recovery_points("V", &other)[0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let before_first = pack_files(&vault_dir);
    w.backup("V", &instance);
    let first_packs: Vec<String> = pack_files(&vault_dir)
        .difference(&before_first)
        .cloned()
        .collect();
    let rp1 = w.recovery_points("V", &instance)[0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    cluster().psql(
        &db,
        "UPDATE sales.orders SET amount = amount + 1 WHERE id % 100 = 0;
         INSERT INTO public.notes SELECT g, repeat(md5('new ' || g), 20) FROM generate_series(100000, 100400) g;",
    );
    let before_second = pack_files(&vault_dir);
    w.backup("V", &instance);
    let second_packs: Vec<String> = pack_files(&vault_dir)
        .difference(&before_second)
        .cloned()
        .collect();
    let rp2 = w.recovery_points("V", &instance)[0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(rp1, rp2);

    let (ok, results) = verify_all(&w);
    assert!(ok, "{results:#?}");
    assert_eq!(results.len(), 3);
    assert!(results.iter().all(|p| p["status"] == "OK"), "{results:#?}");
    assert!(
        results
            .iter()
            .all(|p| p["dataStores"][0]["archiveEntries"].as_u64().unwrap() > 5)
    );

    let (n1, n2, n_other) = (
        needs(&vault_dir, &instance, &rp1),
        needs(&vault_dir, &instance, &rp2),
        needs(&vault_dir, &other, &other_rp),
    );
    // A pack of the first backup with data the first point needs, none of its chunk lists,
    // nothing the other instance's point needs.
    let (deleted, deleted_chunks) = first_packs
        .iter()
        .map(|p| (p.clone(), pack_chunks(&vault_dir, p)))
        .find(|(_, chunks)| {
            chunks.iter().any(|c| n1.all.contains(c))
                && chunks.is_disjoint(&n1.chunk_lists)
                && chunks.is_disjoint(&n_other.all)
        })
        .expect("the first backup wrote a pack of data alone");
    // A whole data chunk that only the second point needs, in a pack the second backup wrote.
    let (flipped_pack, flipped) = second_packs
        .iter()
        .flat_map(|p| {
            pack_chunks(&vault_dir, p)
                .into_iter()
                .map(move |c| (p.clone(), c))
        })
        .find(|(_, c)| {
            n2.full.contains(c)
                && !n2.chunk_lists.contains(c)
                && !n1.all.contains(c)
                && !n_other.all.contains(c)
        })
        .expect("the second backup stored new data");

    std::fs::remove_file(pack_path(&vault_dir, &deleted)).unwrap();
    flip_byte(&vault_dir, &flipped_pack, &flipped);

    // ---- verify names the damaged points and exactly their chunks ----
    let (ok, results) = verify_all(&w);
    assert!(!ok, "verify must fail on a damaged vault");
    let expected1: BTreeSet<String> = n1.all.intersection(&deleted_chunks).cloned().collect();
    let expected2: BTreeSet<String> = n2.all.intersection(&deleted_chunks).cloned().collect();
    assert!(expected1.len() > 1, "{expected1:?}");
    let (p1, p2, po) = (
        point(&results, &rp1),
        point(&results, &rp2),
        point(&results, &other_rp),
    );
    assert_eq!(p1["status"], "Damaged");
    assert_eq!(chunk_ids(p1, "missingChunks"), expected1);
    assert!(chunk_ids(p1, "corruptChunks").is_empty(), "{p1:#}");
    for f in p1["dataStores"][0]["missingChunks"].as_array().unwrap() {
        assert_eq!(f["packId"], deleted.as_str());
        assert_eq!(f["reason"], "PackMissing");
    }
    assert_eq!(p2["status"], "Damaged");
    assert_eq!(chunk_ids(p2, "missingChunks"), expected2);
    assert_eq!(
        chunk_ids(p2, "corruptChunks"),
        BTreeSet::from([flipped.clone()])
    );
    assert_eq!(
        p2["dataStores"][0]["corruptChunks"][0]["packId"],
        flipped_pack.as_str()
    );
    assert_eq!(po["status"], "OK", "{po:#}");

    // One point alone, and the table.
    let one = w.run(&[
        "recovery-point",
        "verify",
        "--vault-name",
        "V",
        "--backup-instance-name",
        &other,
        "--recovery-point-id",
        &other_rp,
    ]);
    assert!(one.status.success());
    let table = w.run(&[
        "recovery-point",
        "verify",
        "--vault-name",
        "V",
        "--all",
        "-o",
        "table",
    ]);
    assert!(!table.status.success());
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("Damaged") && text.contains(&flipped),
        "{text}"
    );
    assert!(String::from_utf8_lossy(&table.stderr).contains("2 of 3 recovery points"));

    // ---- check reports the same damage ----
    let (ok, structure) = check(&w, &[]);
    assert!(!ok);
    assert_eq!(structure["status"], "Damaged");
    let missing_pack = findings(&structure, "PackMissing");
    assert_eq!(missing_pack.len(), 1);
    assert_eq!(missing_pack[0]["packId"], deleted.as_str());
    let missing: BTreeSet<String> = findings(&structure, "ChunkMissing")
        .iter()
        .map(|f| {
            let points: BTreeSet<&str> = f["recoveryPoints"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap())
                .collect();
            let id = f["chunkId"].as_str().unwrap().to_owned();
            let mut expected = BTreeSet::new();
            if expected1.contains(&id) {
                expected.insert(format!("{instance}/{rp1}"));
            }
            if expected2.contains(&id) {
                expected.insert(format!("{instance}/{rp2}"));
            }
            let expected: BTreeSet<&str> = expected.iter().map(String::as_str).collect();
            assert_eq!(points, expected, "{f:#}");
            id
        })
        .collect();
    assert_eq!(
        missing,
        expected1
            .union(&expected2)
            .cloned()
            .collect::<BTreeSet<_>>()
    );
    // Without reading data the flipped byte is not seen; with it, it is.
    assert!(findings(&structure, "ChunkCorrupt").is_empty());
    assert!(structure["jobHistory"].as_array().unwrap().is_empty());
    let (ok, read) = check(&w, &["--read-data"]);
    assert!(!ok);
    let corrupt = findings(&read, "ChunkCorrupt");
    assert_eq!(corrupt.len(), 1, "{read:#}");
    assert_eq!(corrupt[0]["chunkId"], flipped.as_str());
    assert_eq!(
        findings(&read, "PackCorrupt")[0]["packId"],
        flipped_pack.as_str()
    );
    let (ok, sample) = check(&w, &["--read-data-subset", "50%"]);
    assert!(!ok);
    assert_eq!(sample["readData"], "50%");
    assert!(sample["dataStores"][0]["packsRead"].as_u64().unwrap() > 0);

    // ---- the index is lost, then rebuilt from the packs ----
    for f in files_under(&vault_dir.join("index")) {
        std::fs::remove_file(f).unwrap();
    }
    let (ok, results) = verify_all(&w);
    assert!(!ok);
    assert_eq!(
        point(&results, &other_rp)["dataStores"][0]["missingChunks"][0]["reason"],
        "NotInIndex"
    );
    let rebuilt = w.json(&["backup-vault", "reindex", "--vault-name", "V"]);
    assert_eq!(rebuilt[0]["dataStoreType"], "VaultStore");
    assert_eq!(
        rebuilt[0]["packsIndexed"].as_u64().unwrap() as usize,
        pack_files(&vault_dir).len()
    );
    assert_eq!(files_under(&vault_dir.join("index")).len(), 1);

    let (_, results) = verify_all(&w);
    assert_eq!(point(&results, &other_rp)["status"], "OK");
    assert_eq!(point(&results, &rp1)["status"], "Damaged");
    assert_eq!(
        chunk_ids(point(&results, &rp2), "corruptChunks"),
        BTreeSet::from([flipped])
    );
    let (_, after) = check(&w, &[]);
    assert!(findings(&after, "PackMissing").is_empty());

    let out_dir = w.path("restored");
    let req = w.json(&[
        "backup-instance",
        "restore",
        "initialize-for-data-recovery-as-files",
        "--vault-name",
        "V",
        "--backup-instance-name",
        &other,
        "--recovery-point-id",
        &other_rp,
        "--target-directory",
        out_dir.to_str().unwrap(),
        "--target-file-name",
        "other",
    ]);
    let req_file = w.write("restore-other.json", &req.to_string());
    let done = w.json(&[
        "backup-instance",
        "restore",
        "trigger",
        "--vault-name",
        "V",
        "--backup-instance-name",
        &other,
        "--restore-request-object",
        req_file.to_str().unwrap(),
    ]);
    assert_eq!(done["properties"]["status"], "Completed", "{done:#}");
    let list = cluster()
        .command("pg_restore")
        .arg("--list")
        .arg(out_dir.join("other.dump"))
        .output()
        .unwrap();
    assert!(list.status.success());
    assert!(String::from_utf8_lossy(&list.stdout).contains("TABLE DATA public t"));
}

#[test]
fn an_unknown_recovery_point_is_an_error_not_a_result() {
    let w = World::new();
    w.vault_with_policy("V");
    let err = w.fails(&[
        "recovery-point",
        "verify",
        "--vault-name",
        "V",
        "--backup-instance-name",
        "nope",
        "--recovery-point-id",
        "x",
    ]);
    assert!(err.contains("UserErrorRecoveryPointNotFound"), "{err}");
    // An id needs its instance; a selection is required.
    assert!(
        w.fails(&[
            "recovery-point",
            "verify",
            "--vault-name",
            "V",
            "--recovery-point-id",
            "x"
        ])
        .contains("--backup-instance-name")
    );
    assert!(
        w.fails(&["recovery-point", "verify", "--vault-name", "V"])
            .contains("--all")
    );
    // An empty vault verifies to nothing, and checks clean.
    let none = w.json(&["recovery-point", "verify", "--vault-name", "V", "--all"]);
    assert_eq!(none, Value::Array(Vec::new()));
    let clean = w.json(&["backup-vault", "check", "--vault-name", "V", "--read-data"]);
    assert_eq!(clean["status"], "OK");
}
