//! The vault's storage: a prefix in an object store, laid out as the vault format says.
//!
//! ```text
//! vault.json                               format version, id, chunk-id key, chunker settings
//! policies/<name>.json                     backup policies (Azure's JSON)
//! instances/<name>.json                    backup instances (Azure's JSON)
//! recovery-points/<instance>/<id>.json     manifests: a recovery point exists iff this exists
//! packs/<2 hex>/<64 hex>                   pack objects (see `pack`)
//! index/<uuid>                             which pack holds which chunk
//! damage/<uuid>.json                     packs verify, check or a restore found bad (see `damage`)
//! locks/<uuid>.json                        shared, exclusive and destructive locks (see `lock`)
//! locks/destructive.lease                  (Blob Storage) the destructive-operation lease (see `lease`)
//! archive.json                             (archive tier only) the vault it belongs to
//! ```
//!
//! **API Boundary:** this layout and the encodings in `chunk`, `pack` and `manifest` are
//! the vault format; vaults must stay readable for ten years, so changes are additive
//! and versioned (`vault.json`'s `formatVersion`, the blob header's format byte).
//!
//! The adapter boundary is `object_store`'s `ObjectStore` trait itself: the local
//! filesystem, Azure Blob Storage through the same code (`azure`), and the in-memory
//! store for engine tests. Writes are atomic per object (the local store writes a
//! temporary file and renames it; Blob Storage PUTs are atomic).

pub mod azure;
/// The Blob REST calls `object_store` has none for (crate pgvault-azure).
pub use pgvault_azure::blob_rest;
pub mod check;
pub mod chunk;
pub mod crypt;
pub mod damage;
pub mod disk;
pub mod gc;
pub mod immutability;
pub mod lease;
pub mod lock;
pub mod manifest;
pub mod observe;
pub mod pack;
pub mod reader;
pub mod reindex;
pub mod repair;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod verify;
pub mod writer;

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{Attribute, Attributes, ObjectStore, PutOptions, PutPayload};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use pack::PackId;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage URL `{url}` is not supported: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("`{path}` was not found in the vault")]
    NotFound { path: String },
    #[error("cannot use Azure Blob Storage at `{url}`: {reason}")]
    Azure { url: String, reason: String },
    #[error("vault storage failed on `{path}`: {}", azure::redact(&source.to_string()))]
    Io {
        path: String,
        source: object_store::Error,
    },
    #[error("`{path}` in the vault cannot be read: {reason}")]
    Sealed { path: String, reason: String },
    #[error("`{path}` in the vault is not valid JSON of the expected shape: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    #[error("cannot sync `{path}` to disk: {source}")]
    Sync {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "`{path}` is in the Archive access tier of Blob Storage: data in the Archive tier can be read only after rehydration (`pgvault recovery-point rehydrate`)"
    )]
    Archived { path: String },
    #[error("cannot create the vault folder `{path}`: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "`{path}` in the vault is {size} bytes, more than the {} pgvault ever writes there; it is not pgvault's: restore it from a copy or remove it",
        pgvault_os::limits::size(*limit)
    )]
    TooLarge { path: String, size: u64, limit: u64 },
    /// ENOSPC (or EDQUOT) while writing to a local vault: named as such, with the vault's
    /// folder, rather than as the IO error of whichever file was written last.
    #[error(
        "{} (writing `{path}`)",
        disk::disk_full_message(std::path::Path::new(folder))
    )]
    DiskFull { folder: String, path: String },
    #[error(
        "the vault folder `{path}` does not exist: mount the disk that holds it, or put the folder back; pgvault creates a vault's folder only when the vault is created, so a vault whose disk is not mounted is never replaced by an empty one"
    )]
    MissingFolder { path: String },
}

impl StoreError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }

    /// The object is in the Archive access tier (or still being rehydrated from it): it exists,
    /// but its bytes cannot be read until a rehydration brings it online.
    pub fn is_archived(&self) -> bool {
        matches!(self, StoreError::Archived { .. })
    }

    /// The disk holding the vault is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::DiskFull { .. })
    }

    /// A local vault's folder is gone (or its disk is not mounted).
    pub fn is_missing_folder(&self) -> bool {
        matches!(self, StoreError::MissingFolder { .. })
    }
}

/// The errors of a read: Blob Storage answers a read of an archived blob (or of one still
/// being rehydrated) with 409 `BlobArchived`, which `object_store` reports as
/// `AlreadyExists`; a read has no other way to conflict.
fn read_err<'a>(
    root: Option<&'a std::path::Path>,
    path: &'a Path,
) -> impl FnOnce(object_store::Error) -> StoreError + 'a {
    move |source| match source {
        object_store::Error::AlreadyExists { .. } => StoreError::Archived {
            path: path.to_string(),
        },
        source => io_err(root, path)(source),
    }
}

/// The Blob Storage access tier an archive tier's packs are written in
/// (`--archive-access-tier`). Both are cheaper to keep than Hot and dearer to read; Archive is
/// offline: its blobs must be rehydrated (hours) before a read, and deleting one within 180
/// days of archiving is charged as if kept 180 days (Cold: 90 days, and reads work at once).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArchiveAccessTier {
    Archive,
    Cold,
}

impl ArchiveAccessTier {
    /// Azure's name of the tier, as `x-ms-access-tier` carries it.
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveAccessTier::Archive => "Archive",
            ArchiveAccessTier::Cold => "Cold",
        }
    }

    /// Whether a blob in this tier must be rehydrated before it can be read.
    pub fn is_offline(self) -> bool {
        self == ArchiveAccessTier::Archive
    }
}

impl std::str::FromStr for ArchiveAccessTier {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "archive" => Ok(ArchiveAccessTier::Archive),
            "cold" => Ok(ArchiveAccessTier::Cold),
            _ => Err(format!(
                "archive access tier `{s}` is not Archive or Cold (Hot and Cool are not archive tiers)"
            )),
        }
    }
}

impl std::fmt::Display for ArchiveAccessTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The errors of a store call on `path`; `root` is a local vault's folder, named when its
/// disk is full (`object_store`'s local errors keep the `io::Error` as their source).
fn io_err<'a>(
    root: Option<&'a std::path::Path>,
    path: &'a Path,
) -> impl FnOnce(object_store::Error) -> StoreError + 'a {
    move |source| match source {
        object_store::Error::NotFound { .. } => StoreError::NotFound {
            path: path.to_string(),
        },
        source => match root {
            Some(root) if disk::is_disk_full(&source) => StoreError::DiskFull {
                folder: root.display().to_string(),
                path: path.to_string(),
            },
            _ => StoreError::Io {
                path: path.to_string(),
                source,
            },
        },
    }
}

/// The folder a local storage URL names: `Some` for `file:///abs/path` or `/abs/path`, `None`
/// for Blob Storage and `memory://`, an error for anything else.
pub fn local_folder(url: &str) -> Result<Option<std::path::PathBuf>, StoreError> {
    let bad = |reason: &str| StoreError::BadUrl {
        // A malformed URL may carry a SAS in its query; never repeat that.
        url: url.split('?').next().unwrap_or_default().to_string(),
        reason: reason.to_string(),
    };
    if url == "memory://"
        || azure::AzureLocation::parse(url)
            .map_err(|r| bad(&r))?
            .is_some()
    {
        return Ok(None);
    }
    if let Some(rest) = url.strip_prefix("file://") {
        if !rest.starts_with('/') {
            return Err(bad(
                "a file URL needs an absolute path, like file:///var/backups/pgvault",
            ));
        }
        Ok(Some(std::path::PathBuf::from(rest)))
    } else if url.starts_with('/') {
        Ok(Some(std::path::PathBuf::from(url)))
    } else if url.contains("://") {
        Err(bad(
            "use file:///path for a local folder, or az://<account>/<container>[/<prefix>] or https://<account>.blob.core.windows.net/<container>[/<prefix>] for Azure Blob Storage",
        ))
    } else {
        Err(bad("give an absolute folder path or a file:/// URL"))
    }
}

/// The first bytes of a sealed record (a lock object or damage record of an encrypted vault).
const SEALED_RECORD_MAGIC: &[u8; 8] = b"PGVJSNE1";

/// A record's bytes as stored: sealed when the vault is encrypted.
pub fn seal_record(sealer: Option<&crypt::Sealer>, json: Vec<u8>) -> Vec<u8> {
    crypt::seal_framed(sealer, SEALED_RECORD_MAGIC, crypt::Role::Record, json)
}

/// A stored record's JSON: opened when sealed; a clear one in an encrypted vault, or a sealed
/// one without the key, is refused with why.
pub fn open_record<'a>(
    sealer: Option<&crypt::Sealer>,
    stored: &'a [u8],
) -> Result<std::borrow::Cow<'a, [u8]>, crypt::FrameError> {
    crypt::open_framed(sealer, SEALED_RECORD_MAGIC, crypt::Role::Record, stored)
}

/// A vault's object store and the paths of the vault format.
#[derive(Clone)]
pub struct VaultStore {
    inner: Arc<dyn ObjectStore>,
    url: String,
    /// The folder of a local vault: `object_store` writes files without fsync, so
    /// [`VaultStore::make_durable`] syncs them here before a manifest may refer to them.
    local_root: Option<std::path::PathBuf>,
    /// The container and prefix of a vault on Blob Storage, with its credentials, for the
    /// REST calls `object_store` lacks (container creation, leases, access tiers).
    azure: Option<blob_rest::BlobRest>,
    /// The access tier data packs are written in (an archive tier on Blob Storage); `None`:
    /// the account's default (online) tier, as for every other object.
    pack_tier: Option<ArchiveAccessTier>,
    /// An encrypted vault's sealer, once the engine opened its key: every blob, pack trailer,
    /// index file and manifest is sealed on the way in and opened on the way out. `None`: an
    /// unencrypted vault (or an encrypted one not opened with a key, whose sealed objects then
    /// fail to read: never a fallback to plaintext).
    sealer: Option<crypt::Sealer>,
}

impl std::fmt::Debug for VaultStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultStore")
            .field("url", &self.url)
            .finish()
    }
}

impl VaultStore {
    /// Opens the store a storage URL names: `file:///abs/path` or an absolute path (which must
    /// exist: only [`VaultStore::create`] creates a vault's folder), `az://<account>/<container>[/<prefix>]` or
    /// `https://<account>.blob.core.windows.net/<container>[/<prefix>]` (credentials from the
    /// environment, see `azure`), or `memory://` for tests. Opening makes no request.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let bad = |reason: &str| StoreError::BadUrl {
            // A malformed URL may carry a SAS in its query; never repeat that.
            url: url.split('?').next().unwrap_or_default().to_string(),
            reason: reason.to_string(),
        };
        if let Some(location) = azure::AzureLocation::parse(url).map_err(|r| bad(&r))? {
            let azure_error = |reason| StoreError::Azure {
                url: url.to_string(),
                reason,
            };
            let auth = azure::AzureAuth::from_env().map_err(azure_error)?;
            let inner = azure::build_store(&location, &auth).map_err(azure_error)?;
            let mut store = Self::from_object_store(inner, url);
            store.azure = Some(
                blob_rest::BlobRest::new(location, auth).with_endpoint(azure::endpoint_from_env()),
            );
            return Ok(store);
        }
        if url == "memory://" {
            return Ok(Self::from_object_store(
                Arc::new(object_store::memory::InMemory::new()),
                url,
            ));
        }
        let Some(dir) = local_folder(url)? else {
            return Err(bad("not a local folder"));
        };
        // Never created here: a vault whose disk is not mounted must not be replaced by an
        // empty folder on the disk below the mount point.
        if !dir.is_dir() {
            return Err(StoreError::MissingFolder {
                path: dir.display().to_string(),
            });
        }
        let local = object_store::local::LocalFileSystem::new_with_prefix(&dir)
            .map_err(|e| bad(&e.to_string()))?
            .with_automatic_cleanup(true);
        let mut store = Self::from_object_store(Arc::new(local), url);
        store.local_root = Some(dir);
        Ok(store)
    }

    /// This store with its Blob REST calls (leases, tiers, immutability policies) sent through
    /// `rest`, whatever holds its objects: for tests that pair an in-memory store with a
    /// double of a Blob Storage feature the emulator lacks.
    #[cfg(any(test, feature = "testing"))]
    pub fn with_blob_rest(mut self, rest: blob_rest::BlobRest) -> Self {
        self.azure = Some(rest);
        self
    }

    pub fn from_object_store(inner: Arc<dyn ObjectStore>, url: &str) -> Self {
        VaultStore {
            inner,
            url: url.to_string(),
            local_root: None,
            azure: None,
            pack_tier: None,
            sealer: None,
        }
    }

    /// This store, sealing and opening its objects with `sealer` (an encrypted vault's).
    pub fn with_sealer(mut self, sealer: crypt::Sealer) -> Self {
        self.sealer = Some(sealer);
        self
    }

    /// The sealer of an encrypted vault opened with its key.
    pub fn sealer(&self) -> Option<&crypt::Sealer> {
        self.sealer.as_ref()
    }

    /// This store with data packs written in `tier` (see [`VaultStore::put_data_pack`]).
    /// Refused for a store not on Blob Storage: access tiers are Blob Storage's.
    pub fn with_pack_tier(mut self, tier: Option<ArchiveAccessTier>) -> Result<Self, StoreError> {
        if tier.is_some() && self.azure.is_none() {
            return Err(StoreError::BadUrl {
                url: self.url.split('?').next().unwrap_or_default().to_string(),
                reason: "an archive access tier (Archive or Cold) needs an archive tier on Azure Blob Storage (az:// or https://<account>.blob.core.windows.net/...)".into(),
            });
        }
        self.pack_tier = tier;
        Ok(self)
    }

    /// The access tier data packs are written in, if not the default one.
    pub fn pack_tier(&self) -> Option<ArchiveAccessTier> {
        self.pack_tier
    }

    /// Opens the store for a new vault (or archive tier): as [`VaultStore::open`], after
    /// creating a local folder (0700, and its missing parents) or, on Blob Storage, the
    /// container when it does not exist.
    pub async fn create(url: &str) -> Result<Self, StoreError> {
        if let Some(dir) = local_folder(url)? {
            disk::create_private_dir(&dir).map_err(|source| {
                if disk::io_is_disk_full(&source) {
                    StoreError::DiskFull {
                        folder: dir.display().to_string(),
                        path: String::new(),
                    }
                } else {
                    StoreError::CreateDir {
                        path: dir.display().to_string(),
                        source,
                    }
                }
            })?;
        }
        let store = Self::open(url)?;
        if let Some(rest) = &store.azure {
            azure::ensure_container(rest)
                .await
                .map_err(|reason| StoreError::Azure {
                    url: url.to_string(),
                    reason,
                })?;
        }
        Ok(store)
    }

    /// Makes written objects durable. A remote object store's PUT is durable when it
    /// returns; a local folder needs each file and the folders holding them synced, or a
    /// power cut could leave a manifest pointing at packs that never reached the disk.
    pub async fn make_durable(&self, objects: &[Path]) -> Result<(), StoreError> {
        let Some(root) = self.local_root.clone() else {
            return Ok(());
        };
        let files: Vec<std::path::PathBuf> =
            objects.iter().map(|p| root.join(p.as_ref())).collect();
        let folder = root.display().to_string();
        let sync = move |p: &std::path::Path| {
            std::fs::File::open(p)
                .and_then(|h| h.sync_all())
                .map_err(|source| {
                    if disk::io_is_disk_full(&source) {
                        StoreError::DiskFull {
                            folder: folder.clone(),
                            path: p.display().to_string(),
                        }
                    } else {
                        StoreError::Sync {
                            path: p.display().to_string(),
                            source,
                        }
                    }
                })
        };
        tokio::task::spawn_blocking(move || {
            let mut dirs = std::collections::BTreeSet::new();
            for f in &files {
                sync(f)?;
                let mut d = f.parent();
                while let Some(dir) = d.filter(|d| d.starts_with(&root)) {
                    dirs.insert(dir.to_path_buf());
                    d = dir.parent();
                }
            }
            dirs.iter().try_for_each(|d| sync(d))
        })
        .await
        .map_err(|e| StoreError::Sync {
            path: self.url.clone(),
            source: std::io::Error::other(e.to_string()),
        })?
    }

    /// The Blob REST client of a vault on Blob Storage; `None` for other stores.
    pub fn blob_rest(&self) -> Option<&blob_rest::BlobRest> {
        self.azure.as_ref()
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn put(&self, path: &Path, bytes: Bytes) -> Result<(), StoreError> {
        self.inner
            .put(path, PutPayload::from_bytes(bytes))
            .await
            .map_err(io_err(self.local_root.as_deref(), path))?;
        Ok(())
    }

    /// Writes a pack of data chunks: in the store's pack tier when it has one (Put Blob's
    /// `x-ms-access-tier`), so it never spends a day in Hot. Only data packs: what listing,
    /// planning and checking read (manifests, index files, chunk-list packs, markers, locks)
    /// stays in the online tier.
    pub async fn put_data_pack(&self, path: &Path, bytes: Bytes) -> Result<(), StoreError> {
        let Some(tier) = self.pack_tier else {
            return self.put(path, bytes).await;
        };
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::StorageClass, tier.as_str().into());
        let opts = PutOptions {
            attributes,
            ..Default::default()
        };
        self.inner
            .put_opts(path, PutPayload::from_bytes(bytes), opts)
            .await
            .map_err(io_err(self.local_root.as_deref(), path))?;
        Ok(())
    }

    pub async fn get(&self, path: &Path) -> Result<Bytes, StoreError> {
        let got = self
            .inner
            .get(path)
            .await
            .map_err(read_err(self.local_root.as_deref(), path))?;
        got.bytes()
            .await
            .map_err(read_err(self.local_root.as_deref(), path))
    }

    /// The size of the object at `path`, read from its properties (readable in any tier).
    pub async fn size(&self, path: &Path) -> Result<u64, StoreError> {
        Ok(self
            .inner
            .head(path)
            .await
            .map_err(io_err(self.local_root.as_deref(), path))?
            .size)
    }

    pub async fn get_range(
        &self,
        path: &Path,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes, StoreError> {
        self.inner
            .get_range(path, range)
            .await
            .map_err(read_err(self.local_root.as_deref(), path))
    }

    pub async fn exists(&self, path: &Path) -> Result<bool, StoreError> {
        match self.inner.head(path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(source) => Err(StoreError::Io {
                path: path.to_string(),
                source,
            }),
        }
    }

    pub async fn delete(&self, path: &Path) -> Result<(), StoreError> {
        self.inner
            .delete(path)
            .await
            .map_err(io_err(self.local_root.as_deref(), path))
    }

    /// Deletes `path`; one already gone is not an error (deletions are repeated after a crash
    /// or by a second process).
    pub async fn delete_if_present(&self, path: &Path) -> Result<(), StoreError> {
        match self.delete(path).await {
            Err(e) if !e.is_not_found() => Err(e),
            _ => Ok(()),
        }
    }

    /// Every object under `prefix`, with its size and write time.
    async fn list_meta(&self, prefix: &Path) -> Result<Vec<object_store::ObjectMeta>, StoreError> {
        self.inner
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(io_err(self.local_root.as_deref(), prefix))
    }

    /// Every object under `prefix`, as paths.
    pub async fn list(&self, prefix: &Path) -> Result<Vec<Path>, StoreError> {
        let mut out: Vec<Path> = self
            .list_meta(prefix)
            .await?
            .into_iter()
            .map(|m| m.location)
            .collect();
        out.sort();
        Ok(out)
    }

    /// Every object under `prefix` with its size.
    pub async fn list_with_sizes(&self, prefix: &Path) -> Result<Vec<(Path, u64)>, StoreError> {
        Ok(self
            .list_meta(prefix)
            .await?
            .into_iter()
            .map(|m| (m.location, m.size))
            .collect())
    }

    /// Every object under `prefix` with its size and when it was last written.
    pub async fn list_with_times(
        &self,
        prefix: &Path,
    ) -> Result<Vec<(Path, u64, chrono::DateTime<chrono::Utc>)>, StoreError> {
        Ok(self
            .list_meta(prefix)
            .await?
            .into_iter()
            .map(|m| (m.location, m.size, m.last_modified))
            .collect())
    }

    /// The object under `prefix` written last, if any.
    pub async fn newest(&self, prefix: &Path) -> Result<Option<Path>, StoreError> {
        let metas = self.list_meta(prefix).await?;
        Ok(metas
            .into_iter()
            .max_by_key(|m| m.last_modified)
            .map(|m| m.location))
    }

    pub async fn put_json<T: Serialize>(&self, path: &Path, value: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec_pretty(value).map_err(|source| StoreError::Json {
            path: path.to_string(),
            source,
        })?;
        self.put(path, bytes.into()).await
    }

    /// The bytes of a JSON object or record at `path`, refused unread when it is larger than
    /// any pgvault writes ([`pgvault_os::limits::VAULT_JSON_BYTES`]).
    async fn get_small(&self, path: &Path) -> Result<Bytes, StoreError> {
        let got = self
            .inner
            .get(path)
            .await
            .map_err(read_err(self.local_root.as_deref(), path))?;
        let limit = pgvault_os::limits::VAULT_JSON_BYTES;
        if got.meta.size > limit {
            return Err(StoreError::TooLarge {
                path: path.to_string(),
                size: got.meta.size,
                limit,
            });
        }
        got.bytes()
            .await
            .map_err(read_err(self.local_root.as_deref(), path))
    }

    /// A record only pgvault reads (a lock object, a damage record) as JSON: sealed in an
    /// encrypted vault (`PGVJSNE1` then the sealed JSON), for what it carries beyond a name
    /// (host names, pids, operations, damage found).
    pub async fn put_record<T: Serialize>(&self, path: &Path, value: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|source| StoreError::Json {
            path: path.to_string(),
            source,
        })?;
        self.put(path, seal_record(self.sealer(), bytes).into())
            .await
    }

    /// A record [`VaultStore::put_record`] wrote, bounded as [`VaultStore::get_json`] is;
    /// opened in an encrypted vault, where a clear one is refused.
    pub async fn get_record<T: DeserializeOwned>(&self, path: &Path) -> Result<T, StoreError> {
        let bytes = self.get_small(path).await?;
        let plain = open_record(self.sealer(), &bytes).map_err(|e| StoreError::Sealed {
            path: path.to_string(),
            reason: e.to_string(),
        })?;
        serde_json::from_slice(&plain).map_err(|source| StoreError::Json {
            path: path.to_string(),
            source,
        })
    }

    /// The JSON object at `path` (vault.json, a policy, an instance, a lock), refused unread
    /// when it is larger than any pgvault writes ([`pgvault_os::limits::VAULT_JSON_BYTES`]).
    pub async fn get_json<T: DeserializeOwned>(&self, path: &Path) -> Result<T, StoreError> {
        let bytes = self.get_small(path).await?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
            path: path.to_string(),
            source,
        })
    }

    /// Names (file stems) of the `.json` objects directly under `prefix`.
    pub async fn list_json_names(&self, prefix: &Path) -> Result<Vec<String>, StoreError> {
        Ok(self
            .list(prefix)
            .await?
            .iter()
            .filter_map(|p| {
                p.filename()
                    .and_then(|f| f.strip_suffix(".json"))
                    .map(str::to_string)
            })
            .collect())
    }
}

/// The paths of the vault format.
pub mod paths {
    use super::*;

    pub fn vault_config() -> Path {
        Path::from("vault.json")
    }
    pub fn policies() -> Path {
        Path::from("policies")
    }
    pub fn policy(name: &str) -> Path {
        Path::from(format!("policies/{name}.json"))
    }
    pub fn instances() -> Path {
        Path::from("instances")
    }
    pub fn instance(name: &str) -> Path {
        Path::from(format!("instances/{name}.json"))
    }
    /// Where the data packs live (`packs/<2 hex>/<id>`).
    pub fn packs_root() -> Path {
        Path::from("packs")
    }
    pub fn recovery_points_root() -> Path {
        Path::from("recovery-points")
    }
    pub fn archive_marker() -> Path {
        Path::from("archive.json")
    }
    pub fn recovery_points(instance: &str) -> Path {
        Path::from(format!("recovery-points/{instance}"))
    }
    pub fn recovery_point(instance: &str, id: &str) -> Path {
        Path::from(format!("recovery-points/{instance}/{id}.json"))
    }
    pub fn pack(id: &PackId) -> Path {
        let hex = id.to_hex();
        Path::from(format!("packs/{}/{}", &hex[..2], hex))
    }
    pub fn indexes() -> Path {
        Path::from("index")
    }
    pub fn index(name: &str) -> Path {
        Path::from(format!("index/{name}"))
    }
    /// Soft-deleted backup instances: `deleted-instances/<name>.json` holds the instance and
    /// its `deletionInfo`; its recovery points stay where they were until the purge.
    pub fn deleted_instances() -> Path {
        Path::from("deleted-instances")
    }
    pub fn deleted_instance(name: &str) -> Path {
        Path::from(format!("deleted-instances/{name}.json"))
    }
    /// Soft-deleted recovery points: the manifest's stored bytes, moved unchanged under
    /// `recovery-points/_deleted/` (no instance name starts with `_`), so garbage collection,
    /// `check` and `reindex`, which read every manifest under `recovery-points/`, keep their
    /// data; their `deletionInfo` is `deleted-recovery-points/<instance>/<id>.json`.
    pub fn deleted_point_manifest(instance: &str, id: &str) -> Path {
        Path::from(format!("recovery-points/_deleted/{instance}/{id}.json"))
    }
    pub fn deleted_point_records() -> Path {
        Path::from("deleted-recovery-points")
    }
    pub fn deleted_point_record(instance: &str, id: &str) -> Path {
        Path::from(format!("deleted-recovery-points/{instance}/{id}.json"))
    }
    pub fn damage_records() -> Path {
        Path::from("damage")
    }
    pub fn damage_record(name: &str) -> Path {
        Path::from(format!("damage/{name}.json"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_create_makes_a_local_vault_folder_and_it_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("a/vault");
        let url = format!("file://{}", folder.display());
        let err = VaultStore::open(&url).unwrap_err();
        assert!(err.is_missing_folder(), "{err}");
        assert!(err.to_string().contains("does not exist"), "{err}");
        assert!(!folder.exists(), "open created the folder");
        let store = VaultStore::create(&url).await.unwrap();
        store
            .put(&paths::vault_config(), Bytes::from_static(b"{}"))
            .await
            .unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&folder), 0o700);
        // An existing folder opens (and keeps working) as before.
        let again = VaultStore::open(&url).unwrap();
        assert!(again.exists(&paths::vault_config()).await.unwrap());
    }
}
