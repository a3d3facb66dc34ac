//! Test helpers: vaults holding real streams (custom-format archives, as `pg_dump` writes
//! them to a pipe) and real manifests, written through the backup path, and damage to them.
//!
//! Built for the store's own tests and, with the `testing` feature, for the engine's. The
//! store's tests watch their streams through [`TestArchive`], pg_dump's scanner behind the
//! store's [`StreamFormat`] trait, as the engine plugs it in; the store's library code knows
//! no format (the scanner crate is a dependency of this module only).

use std::sync::Arc;

use object_store::path::Path;

use super::chunk::ChunkId;
use super::manifest::{
    BackupStats, ChunkerParams, DatasourceInfo, MANIFEST_FORMAT, Manifest, PostgresInfo,
    StreamInfo, decode_chunk_list,
};
use super::observe::{ObserveError, Recorded, StreamFormat, StreamLayout, StreamObserver};
use super::pack::{PackId, read_pack_trailer};
use super::reader::{fetch_blob, load_index};
use super::writer::{Progress, WriterConfig, write_stream};
use super::{VaultStore, paths};
use pgvault_pgdump::{ArchiveScanner, ArchiveSummary};

/// pg_dump's custom archive format for the store's tests: the same scanner and layout the
/// engine's `postgres::archive::CustomArchive` gives the store.
#[derive(Clone, Copy, Debug, Default)]
pub struct TestArchive;

impl StreamFormat for TestArchive {
    fn name(&self) -> &'static str {
        "custom-format archive"
    }

    fn observer(&self) -> Box<dyn StreamObserver> {
        Box::new(Scan(ArchiveScanner::new()))
    }

    fn layout(&self, recorded: &Recorded) -> Option<StreamLayout> {
        let a: ArchiveSummary = recorded.read().ok()?;
        Some(StreamLayout {
            header: 0..a.toc_end,
            parts: a
                .entries
                .iter()
                .filter_map(|t| {
                    let d = t.data.as_ref()?;
                    Some((format!("{}.{}", t.namespace, t.tag), d.start..d.end))
                })
                .collect(),
            entries: a.entries.len(),
        })
    }
}

struct Scan(ArchiveScanner);

impl StreamObserver for Scan {
    fn observe(&mut self, bytes: &[u8]) {
        self.0.feed(bytes);
    }

    fn finish(self: Box<Self>) -> Result<Recorded, ObserveError> {
        Ok(Recorded::of(&self.0.finish()?)?)
    }
}

/// The table of contents a test manifest recorded.
pub fn toc(m: &Manifest) -> ArchiveSummary {
    m.archive
        .as_ref()
        .expect("a table of contents")
        .read()
        .unwrap()
}

pub const KEY: [u8; 32] = [7; 32];

/// Small chunks and packs, so a few thousand rows make many of both.
pub fn config(key: [u8; 32]) -> WriterConfig {
    WriterConfig {
        chunk_key: key,
        chunker: ChunkerParams {
            algorithm: "fastcdc-2020".into(),
            min_size: 4096,
            avg_size: 8192,
            max_size: 32768,
        },
        zstd_level: 1,
        dense_prefix: true,
        pack_target_size: 64 << 10,
        compressor_threads: 2,
    }
}

/// pg_dump's WriteInt (4-byte ints) and WriteStr.
struct Out(Vec<u8>);

impl Out {
    fn int(&mut self, v: i64) {
        self.0.push(u8::from(v < 0));
        self.0
            .extend_from_slice(&(v.unsigned_abs() as u32).to_le_bytes());
    }
    fn str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => {
                self.int(s.len() as i64);
                self.0.extend_from_slice(s.as_bytes());
            }
            None => self.int(-1),
        }
    }
}

/// A custom-format archive (1.16) of one table, `public.t`, whose data is `rows` rows;
/// every 50th row carries `generation`, so two generations differ in scattered places.
pub fn archive(rows: u32, generation: u32) -> Vec<u8> {
    let mut w = Out(b"PGDMP".to_vec());
    w.0.extend_from_slice(&[1, 16, 0, 4, 8, 1, 0]);
    for v in [5, 4, 3, 2, 0, 125, 0] {
        w.int(v);
    }
    w.str(Some("db"));
    w.str(Some("17.0"));
    w.str(Some("17.0"));
    // (dumpId, desc, has data, section, dependencies)
    let entries: [(i64, &str, bool, i64, &[&str]); 2] = [
        (10, "TABLE", false, 2, &[]),
        (20, "TABLE DATA", true, 3, &["10"]),
    ];
    w.int(entries.len() as i64);
    for (id, desc, data, section, deps) in entries {
        w.int(id);
        w.int(i64::from(data));
        w.str(Some("1259"));
        w.str(Some(&(16000 + id).to_string()));
        w.str(Some("t"));
        w.str(Some(desc));
        w.int(section);
        w.str(Some(if data {
            ""
        } else {
            "CREATE TABLE public.t (line text);"
        }));
        w.str(None);
        w.str(data.then_some("COPY public.t (line) FROM stdin;\n"));
        w.str(Some("public"));
        w.str(Some(""));
        w.str(Some(if data { "" } else { "heap" }));
        w.int(if data { 0 } else { i64::from(b'r') });
        w.str(Some("postgres"));
        w.str(Some("false"));
        for d in deps {
            w.str(Some(d));
        }
        w.str(None);
        w.0.push(if data { 1 } else { 3 });
        w.0.extend_from_slice(&[0; 8]);
    }
    w.0.push(1);
    w.int(20);
    for i in 0..rows {
        let g = if i % 50 == generation % 50 {
            generation
        } else {
            0
        };
        let row = format!("{i}\t{}\t{g}\n", blake3::hash(&i.to_le_bytes()).to_hex());
        w.str(Some(&row));
    }
    w.int(0);
    w.0
}

pub fn manifest(
    instance: &str,
    id: &str,
    stream: StreamInfo,
    archive: Option<Recorded>,
) -> Manifest {
    Manifest {
        format_version: MANIFEST_FORMAT,
        recovery_point_id: id.into(),
        backup_instance_name: instance.into(),
        recovery_point_time: chrono::DateTime::UNIX_EPOCH,
        policy_name: "P".into(),
        policy_rule_name: "BackupWeekly".into(),
        retention_tag_name: "Default".into(),
        expiry_time: None,
        rehydration_expiry_time: None,
        job_id: format!("job-{id}"),
        datasource: DatasourceInfo {
            resource_id: "postgres://h/db".into(),
            server: "h".into(),
            port: 5432,
            database: "db".into(),
        },
        postgres: PostgresInfo {
            server_version: "17".into(),
            pg_dump_version: "17".into(),
            database_size: 0,
            username_used: "u".into(),
        },
        chunker: config(KEY).chunker,
        stream,
        archive,
        contents: None,
        stats: BackupStats {
            bytes_read: 0,
            bytes_stored: 0,
            new_chunks: 0,
            duration_ms: 0,
        },
    }
}

/// Backs up `data` as recovery point `id` of `instance` (deltas against `previous`), the
/// manifest written last, as the backup engine does. Returns the manifest.
pub async fn backup(
    store: &VaultStore,
    key: [u8; 32],
    instance: &str,
    id: &str,
    data: Vec<u8>,
    previous: Option<&Manifest>,
) -> Manifest {
    let known = Arc::new(load_index(store).await.unwrap());
    let out = write_stream(
        store,
        known,
        &config(key),
        std::io::Cursor::new(data),
        Arc::new(Progress::default()),
        previous.map(|m| m.stream.clone()),
        TestArchive.observer(),
    )
    .await
    .unwrap();
    let m = manifest(instance, id, out.stream, out.archive.ok());
    store
        .put(&paths::recovery_point(instance, id), m.to_bytes().into())
        .await
        .unwrap();
    m
}

/// The packs in a store.
pub async fn packs(store: &VaultStore) -> Vec<PackId> {
    let mut out: Vec<PackId> = store
        .list(&Path::from("packs"))
        .await
        .unwrap()
        .iter()
        .filter_map(|p| p.filename().and_then(PackId::from_hex))
        .collect();
    out.sort_by_key(|p| p.0);
    out
}

/// Every chunk a recovery point needs, read through the index: its chunk-list blocks, its
/// data chunks and their delta bases.
pub async fn needed(store: &VaultStore, key: &[u8; 32], m: &Manifest) -> Vec<ChunkId> {
    let index = load_index(store).await.unwrap();
    let mut out = Vec::new();
    for list in &m.stream.chunk_lists {
        out.push(*list);
        let (_, bytes) = fetch_blob(store, &index, key, *list).await.unwrap();
        for r in decode_chunk_list(&bytes).unwrap() {
            out.push(r.id);
            out.extend(index.base_of(&r.id));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The chunks a pack holds, from its trailer.
pub async fn pack_chunks(store: &VaultStore, pack: &PackId) -> Vec<ChunkId> {
    let bytes = store.get(&paths::pack(pack)).await.unwrap();
    let mut out: Vec<ChunkId> = read_pack_trailer(&bytes, None)
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    out.sort();
    out
}

/// Flips one byte in the middle of chunk `chunk`'s blob inside `pack`.
pub async fn flip_byte_in_blob(store: &VaultStore, pack: &PackId, chunk: ChunkId) {
    let path = paths::pack(pack);
    let mut bytes = store.get(&path).await.unwrap().to_vec();
    let entry = read_pack_trailer(&bytes, None)
        .unwrap()
        .into_iter()
        .find(|e| e.id == chunk)
        .unwrap();
    bytes[(entry.offset + entry.length / 2) as usize] ^= 0x5a;
    store.put(&path, bytes.into()).await.unwrap();
}

/// One way stored bytes go bad, for the property tests over the readers: a flipped bit, a
/// cut, bytes appended, a 32-bit word overwritten (where lengths, offsets and counts live, so
/// they can claim gigabytes), or the whole object replaced by other bytes.
#[derive(Clone, Debug)]
pub enum Damage {
    Flip { at: usize, bit: u8 },
    Truncate { to: usize },
    Extend(Vec<u8>),
    Word { at: usize, value: u32 },
    Replace(Vec<u8>),
}

impl Damage {
    pub fn apply(&self, bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        let n = out.len();
        match self {
            Damage::Flip { at, bit } if n > 0 => out[at % n] ^= 1 << (bit % 8),
            Damage::Flip { .. } => {}
            Damage::Truncate { to } => out.truncate(to % (n + 1)),
            Damage::Extend(tail) => out.extend_from_slice(tail),
            Damage::Word { at, value } if n >= 4 => {
                let at = at % (n - 3);
                out[at..at + 4].copy_from_slice(&value.to_le_bytes());
            }
            Damage::Word { .. } => {}
            Damage::Replace(other) => out = other.clone(),
        }
        out
    }
}

/// Any [`Damage`]; overwritten words favour the values that break bounds.
pub fn damage() -> impl proptest::strategy::Strategy<Value = Damage> {
    use proptest::prelude::*;
    let word = prop_oneof![
        Just(u32::MAX),
        Just(u32::MAX - 7),
        Just(1u32 << 31),
        Just(0u32),
        any::<u32>(),
    ];
    prop_oneof![
        3 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Damage::Flip { at, bit }),
        2 => any::<usize>().prop_map(|to| Damage::Truncate { to }),
        1 => proptest::collection::vec(any::<u8>(), 1..64).prop_map(Damage::Extend),
        3 => (any::<usize>(), word).prop_map(|(at, value)| Damage::Word { at, value }),
        1 => proptest::collection::vec(any::<u8>(), 0..256).prop_map(Damage::Replace),
    ]
}

/// One to three damages applied in turn.
pub fn damages() -> impl proptest::strategy::Strategy<Value = Vec<Damage>> {
    proptest::collection::vec(damage(), 1..4)
}

pub fn apply_all(damages: &[Damage], bytes: &[u8]) -> Vec<u8> {
    damages.iter().fold(bytes.to_vec(), |b, d| d.apply(&b))
}

/// Every object of a store, to rebuild damaged copies of it from.
pub async fn snapshot(store: &VaultStore) -> Vec<(Path, bytes::Bytes)> {
    let mut out = Vec::new();
    for path in store.list(&Path::from("")).await.unwrap() {
        let bytes = store.get(&path).await.unwrap();
        out.push((path, bytes));
    }
    out
}

/// A new in-memory store holding `objects`.
pub async fn store_from(objects: &[(Path, bytes::Bytes)]) -> VaultStore {
    let store = VaultStore::open("memory://").unwrap();
    for (path, bytes) in objects {
        store.put(path, bytes.clone()).await.unwrap();
    }
    store
}

/// An observer of one stream in pg_dump's custom archive format ([`TestArchive`]).
pub fn archive_observer() -> Box<dyn StreamObserver> {
    TestArchive.observer()
}

// ---- a double of Blob Storage's version-level immutability ----

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A blob's state in the double.
#[derive(Clone, Debug, Default)]
pub struct HeldBlob {
    pub until: Option<DateTime<Utc>>,
    pub mode: Option<String>,
}

/// The requests the double saw: (method, path with query, the two immutability headers).
pub type Seen = Arc<Mutex<Vec<(String, String, Option<String>, Option<String>)>>>;

/// A labelled double of Blob Storage's version-level immutability, as documented: Get Blob
/// Properties answers `x-ms-immutability-policy-until-date` and `-mode`; Set Blob
/// Immutability Policy (`PUT ?comp=immutabilityPolicies`) takes them, and refuses shortening
/// a Locked policy or unlocking it (Azure's documented rule: a Locked policy can only be
/// extended; the 409's code here is the double's own label); Delete Blob before the
/// until-date fails with 409 `BlobImmutableDueToPolicy`. Every blob it is asked about
/// exists. The clock is `now`.
pub async fn immutability_double(
    now: DateTime<Utc>,
) -> (u16, Seen, Arc<Mutex<HashMap<String, HeldBlob>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let blobs: Arc<Mutex<HashMap<String, HeldBlob>>> = Arc::default();
    let (record, state) = (seen.clone(), blobs.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let (record, state) = (record.clone(), state.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&buf).into_owned();
                let mut lines = text.lines();
                let mut first = lines.next().unwrap_or_default().split(' ');
                let method = first.next().unwrap_or_default().to_owned();
                let target = first.next().unwrap_or_default().to_owned();
                let header = |name: &str| {
                    text.lines().find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                    })
                };
                let until = header("x-ms-immutability-policy-until-date");
                let mode = header("x-ms-immutability-policy-mode");
                record.lock().unwrap().push((
                    method.clone(),
                    target.clone(),
                    until.clone(),
                    mode.clone(),
                ));
                let path = target.split('?').next().unwrap_or_default().to_owned();
                let (status, extra) = {
                    let mut blobs = state.lock().unwrap();
                    let held = blobs.entry(path).or_default();
                    match method.as_str() {
                        "HEAD" => {
                            let mut extra = String::new();
                            if let (Some(u), Some(m)) = (held.until, &held.mode) {
                                extra = format!(
                                    "x-ms-immutability-policy-until-date: {}\r\nx-ms-immutability-policy-mode: {m}\r\n",
                                    crate::blob_rest::http_date(u)
                                );
                            }
                            ("200 OK", extra)
                        }
                        "PUT" if target.contains("comp=immutabilityPolicies") => {
                            let wanted = until
                                .as_deref()
                                .and_then(|u| DateTime::parse_from_rfc2822(u).ok())
                                .map(|t| t.with_timezone(&Utc));
                            let locked = held.mode.as_deref() == Some("Locked");
                            match (wanted, mode.as_deref()) {
                                (Some(w), Some(m @ ("Unlocked" | "Locked")))
                                    if !(locked
                                        && (m == "Unlocked"
                                            || held.until.is_some_and(|h| w < h))) =>
                                {
                                    held.until = Some(w);
                                    held.mode = Some(m.to_owned());
                                    ("200 OK", String::new())
                                }
                                (Some(_), Some(_)) => (
                                    "409 Conflict",
                                    "x-ms-error-code: ImmutabilityPolicyCannotBeShortened\r\n"
                                        .into(),
                                ),
                                _ => (
                                    "400 Bad Request",
                                    "x-ms-error-code: InvalidHeaderValue\r\n".into(),
                                ),
                            }
                        }
                        "DELETE" if held.until.is_some_and(|u| u > now) => (
                            "409 Conflict",
                            "x-ms-error-code: BlobImmutableDueToPolicy\r\n".into(),
                        ),
                        _ => ("202 Accepted", String::new()),
                    }
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\n{extra}content-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    (port, seen, blobs)
}
