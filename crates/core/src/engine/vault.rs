//! A vault: its configuration (`vault.json`), its policies, instances and recovery points.

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Error, Result};
use crate::model::code::ErrorCode;
use crate::model::instance::BackupInstanceRequest;
use crate::model::policy::{BackupPolicy, DataStoreType};
use crate::model::resource::{self, ResourceGroup, SubscriptionId, VaultRef, envelope};
use crate::store::crypt::{DataKey, EncryptionSettings, KeySlot};
use crate::store::manifest::{ChunkerParams, Manifest};
use crate::store::writer::WriterConfig;
use crate::store::{ArchiveAccessTier, VaultStore, paths};

/// The format of an unencrypted vault's `vault.json`.
pub const VAULT_FORMAT: u32 = 1;
/// The format of an encrypted vault (`encryption` with its key slots, no `chunkIdKey`): a
/// pgvault that predates encryption refuses it rather than misread it.
pub const ENCRYPTED_VAULT_FORMAT: u32 = 2;

/// How many recovery-point manifests a listing reads at once.
const MANIFEST_READS_AT_ONCE: usize = 16;

/// `vault.json`: what a reader needs to understand the vault, written once at creation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VaultConfig {
    pub format_version: u32,
    pub vault_id: String,
    pub name: String,
    pub created_time: DateTime<Utc>,
    /// The BLAKE3 key chunk ids are hashed with. Not a secret while the vault is
    /// unencrypted (the chunks are readable anyway); it keeps chunk ids from being
    /// comparable across vaults. Empty (absent) in an encrypted vault, whose chunk-id key is
    /// derived from its data key.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub chunk_id_key: String,
    pub chunker: ChunkerParams,
    pub compression: CompressionConfig,
    pub pack_target_size: u64,
    pub storage_settings: Vec<StorageSetting>,
    /// Where the archive tier lives (`--archive-storage-url`): a second store in the same
    /// format, holding the recovery points the policy moves or copies there. Absent until
    /// configured; a policy with an archive tier then keeps its points in the vault tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_storage_url: Option<String>,
    /// The Blob Storage access tier the archive tier's data packs are written in
    /// (`--archive-access-tier`; Archive unless told otherwise for an archive on Blob
    /// Storage). Absent: the account's default tier, as for a local archive, or one configured
    /// before pgvault knew access tiers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_access_tier: Option<ArchiveAccessTier>,
    /// The Azure resource group the vault is in (`backup-vault create -g`), part of every id
    /// it prints. A vault written before vaults had one is in `pgvault`.
    #[serde(default = "default_resource_group")]
    pub resource_group: String,
    /// Azure's `location` of the vault resource, as the REST API's PUT gave it (`local` when
    /// none was given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Azure's resource tags, as the REST API's PUT or PATCH gave them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Client-side encryption (`backup-vault create --encryption-key-uri`): the algorithm and
    /// the key slots, each the data key wrapped by one key-encryption key, with the reference
    /// to that key (never the key or passphrase). Absent: an unencrypted vault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionSettings>,
    /// Azure's `securitySettings`: soft delete and immutability (see `engine::security`).
    /// Absent in a vault written before pgvault had them: soft delete Off, immutability
    /// Disabled, which is what such a vault did.
    #[serde(default)]
    pub security_settings: crate::model::security::SecuritySettings,
}

fn default_resource_group() -> String {
    resource::DEFAULT_RESOURCE_GROUP.to_owned()
}

/// `archive.json`, at the root of an archive-tier store: which vault it belongs to, so a
/// store configured by mistake for two vaults is refused rather than mixed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveMarker {
    pub format_version: u32,
    pub vault_id: String,
    pub vault_name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompressionConfig {
    pub algorithm: String,
    pub level: i32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageSetting {
    pub datastore_type: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// Chunk sizes: small, because a dump of a table with scattered row updates changes a
/// few bytes in many places. Measured with the benchmark (README), after 1% random row
/// updates: without delta compression a 16 KiB average stored 40% of the first backup
/// again, 32 KiB 62%, 64 KiB 83%; with changed chunks stored as deltas against their
/// predecessors, 16 KiB stores 7.5% and 32 KiB 7.2%, at the same speed. 32 KiB then wins:
/// half the chunk index and chunk lists of 16 KiB, and a slightly smaller first backup.
pub const DEFAULT_CHUNKER: (u32, u32, u32) = (16 * 1024, 32 * 1024, 128 * 1024);
/// zstd level 1: the benchmark's backups are CPU-bound on two cores (the server,
/// `pg_dump` and pgvault share them); with level 1 (and no second hash of every byte) a
/// backup went from 1.39x to 1.11x the `pg_dump -Z0` limit and stored no more (README).
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;
pub const DEFAULT_PACK_SIZE: u64 = 8 << 20;

impl VaultConfig {
    /// A new vault's settings; `chunk_avg` (bytes) overrides the average chunk size, with
    /// the minimum at half and the maximum at four times it.
    pub fn new(
        name: &str,
        group: &ResourceGroup,
        now: DateTime<Utc>,
        chunk_avg: Option<u32>,
    ) -> Self {
        let key: [u8; 32] = *blake3::hash(uuid::Uuid::new_v4().as_bytes()).as_bytes();
        let (min, avg, max) = match chunk_avg {
            Some(avg) => (avg / 2, avg, avg * 4),
            None => DEFAULT_CHUNKER,
        };
        VaultConfig {
            format_version: VAULT_FORMAT,
            vault_id: uuid::Uuid::new_v4().to_string(),
            name: name.to_string(),
            created_time: now,
            chunk_id_key: hex::encode(key),
            encryption: None,
            chunker: ChunkerParams {
                algorithm: "fastcdc-2020".into(),
                min_size: min,
                avg_size: avg,
                max_size: max,
            },
            compression: CompressionConfig {
                algorithm: "zstd".into(),
                level: DEFAULT_ZSTD_LEVEL,
            },
            pack_target_size: DEFAULT_PACK_SIZE,
            storage_settings: vec![StorageSetting {
                datastore_type: "VaultStore".into(),
                kind: "LocallyRedundant".into(),
            }],
            archive_storage_url: None,
            archive_access_tier: None,
            resource_group: group.as_str().to_owned(),
            location: None,
            tags: BTreeMap::new(),
            security_settings: Default::default(),
        }
    }

    /// The vault's resource group; a hand-edited `vault.json` with a name ARM refuses is
    /// refused by [`VaultConfig::check`] when the vault opens.
    pub fn resource_group(&self) -> Result<ResourceGroup> {
        ResourceGroup::parse(&self.resource_group).map_err(|e| {
            Error::new(
                ErrorCode::VaultCorrupt,
                format!(
                    "vault.json of vault `{}` is damaged: resourceGroup {e}; correct it to the vault's group",
                    self.name
                ),
            )
        })
    }

    /// Checks the numbers a backup and a restore will act on. `vault.json` is read from
    /// storage, so a damaged or hand-edited one must be refused here with the field it got
    /// wrong, not found later by an assertion in the chunker or an overflow in the packer.
    pub fn check(&self) -> Result<()> {
        use fastcdc::v2020::{
            AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN,
        };
        let corrupt = |what: String| {
            Error::new(
                ErrorCode::VaultCorrupt,
                format!(
                    "vault.json of vault `{}` is damaged: {what}; restore vault.json from a copy \
                     (its chunkIdKey must be the original, or no chunk can be found)",
                    self.name
                ),
            )
        };
        let c = &self.chunker;
        let sizes_ok = (MINIMUM_MIN..=MINIMUM_MAX).contains(&c.min_size)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&c.avg_size)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&c.max_size)
            && c.min_size < c.avg_size
            && c.avg_size < c.max_size;
        if !sizes_ok {
            return Err(corrupt(format!(
                "chunker sizes {}/{}/{} (min/avg/max) are not ones pgvault writes",
                c.min_size, c.avg_size, c.max_size
            )));
        }
        if !(64 << 10..=1 << 30).contains(&self.pack_target_size) {
            return Err(corrupt(format!(
                "packTargetSize {} is outside 64 KiB to 1 GiB",
                self.pack_target_size
            )));
        }
        if self.compression.algorithm != "zstd"
            || !zstd::compression_level_range().contains(&self.compression.level)
        {
            return Err(corrupt(format!(
                "compression {} level {} is not zstd at a level zstd knows",
                self.compression.algorithm, self.compression.level
            )));
        }
        match &self.encryption {
            None => {
                self.chunk_key().map_err(|e| corrupt(e.message))?;
            }
            Some(encryption) => {
                if !self.chunk_id_key.is_empty() {
                    return Err(corrupt(
                        "it is encrypted and also has a chunkIdKey in clear".into(),
                    ));
                }
                if self.format_version < ENCRYPTED_VAULT_FORMAT {
                    return Err(corrupt(format!(
                        "it is encrypted but says format {}",
                        self.format_version
                    )));
                }
                if encryption.keys.is_empty() {
                    return Err(corrupt("it is encrypted and lists no key slot".into()));
                }
            }
        }
        self.resource_group()?;
        Ok(())
    }

    pub fn chunk_key(&self) -> Result<[u8; 32]> {
        let mut key = [0u8; 32];
        hex::decode_to_slice(&self.chunk_id_key, &mut key).map_err(|_| {
            Error::new(
                ErrorCode::VaultCorrupt,
                "vault.json has a malformed chunkIdKey",
            )
        })?;
        Ok(key)
    }
}

/// Checks a vault, policy or instance name: letters, digits, `-`, `_` and `.`, starting
/// with a letter or digit, so names are safe as object paths and ARM id segments.
pub fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 150
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::new(
            ErrorCode::UserErrorInvalidName,
            format!(
                "{what} name `{name}` is not valid: use letters, digits, '-', '_' or '.', starting with a letter or digit"
            ),
        ))
    }
}

/// A recovery point and the tiers holding it. Each tier keeps its own copy of the manifest:
/// the same stream, with that tier's expiry.
#[derive(Clone, Debug, Default)]
pub struct StoredPoint {
    pub vault: Option<Manifest>,
    pub archive: Option<Manifest>,
}

impl StoredPoint {
    /// The manifest, from the vault tier when it is there.
    pub fn manifest(&self) -> &Manifest {
        self.vault
            .as_ref()
            .or(self.archive.as_ref())
            .expect("a stored point is in at least one tier")
    }

    pub fn tiers(&self) -> impl Iterator<Item = (DataStoreType, &Manifest)> {
        [
            (DataStoreType::VaultStore, self.vault.as_ref()),
            (DataStoreType::ArchiveStore, self.archive.as_ref()),
        ]
        .into_iter()
        .filter_map(|(tier, m)| m.map(|m| (tier, m)))
    }

    pub fn in_tier(&self, tier: DataStoreType) -> bool {
        match tier {
            DataStoreType::ArchiveStore => self.archive.is_some(),
            _ => self.vault.is_some(),
        }
    }
}

/// A recovery point whose manifest is in a tier but cannot be trusted (its checksum fails, it
/// is truncated, empty, or not a manifest). Only this point is damaged: listing shows it as
/// such, backups take their delta bases from the newest good point, and it can be deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamagedManifest {
    pub instance: String,
    pub recovery_point_id: String,
    pub tier: DataStoreType,
    pub problem: String,
}

/// The error code of a manifest that was read but cannot be trusted.
pub const RECOVERY_POINT_DAMAGED: ErrorCode = ErrorCode::RecoveryPointDamaged;

/// An open vault.
#[derive(Clone, Debug)]
pub struct Vault {
    pub store: VaultStore,
    pub config: VaultConfig,
    /// The archive tier's store, when one is configured.
    pub archive: Option<VaultStore>,
    /// The key chunk ids are hashed with (vault.json's, or derived from the data key).
    chunk_key: [u8; 32],
    /// An encrypted vault's data key, once a key slot opened it.
    data_key: Option<DataKey>,
    /// The subscription of the host that opened it (a vault does not record one: the same
    /// vault may be served by hosts of different subscriptions); part of every id it prints.
    subscription: SubscriptionId,
    /// The resource group from `config`, checked when the vault opened.
    group: ResourceGroup,
}

impl Vault {
    /// Creates the vault at `store`; refuses when the location already holds a vault.
    /// `chunk_avg` is fixed for the vault's life: chunks dedup only when cut the same way.
    pub async fn create(
        store: VaultStore,
        name: &str,
        group: &ResourceGroup,
        now: DateTime<Utc>,
        chunk_avg: Option<u32>,
    ) -> Result<Self> {
        Self::create_with(store, name, group, now, chunk_avg, None).await
    }

    /// [`Vault::create`], encrypted when `encryption_key` names a key (`env:`, `file:` or an
    /// Azure Key Vault key URI): a random data key is made and wrapped by it, and every object
    /// the vault writes is sealed.
    pub async fn create_with(
        store: VaultStore,
        name: &str,
        group: &ResourceGroup,
        now: DateTime<Utc>,
        chunk_avg: Option<u32>,
        encryption_key: Option<&str>,
    ) -> Result<Self> {
        check_name("vault", name)?;
        if let Some(avg) = chunk_avg
            && !(4096..=1 << 20).contains(&avg)
        {
            return Err(Error::new(
                ErrorCode::UserErrorInvalidChunkSize,
                format!("average chunk size {avg} bytes is out of range: choose 4 KiB to 1024 KiB"),
            ));
        }
        if store.exists(&paths::vault_config()).await? {
            return Err(Error::new(
                ErrorCode::UserErrorVaultAlreadyExists,
                format!(
                    "`{}` already holds a vault; choose another --storage-url or register it under its own name",
                    store.url()
                ),
            ));
        }
        let mut config = VaultConfig::new(name, group, now, chunk_avg);
        let mut chunk_key = config.chunk_key()?;
        let mut data_key = None;
        let mut store = store;
        if let Some(reference) = encryption_key {
            let (settings, key) =
                super::keys::new_encryption(&config.vault_id, reference, now).await?;
            config.format_version = ENCRYPTED_VAULT_FORMAT;
            config.chunk_id_key.clear();
            config.encryption = Some(settings);
            chunk_key = key.chunk_id_key();
            store = store.with_sealer(key.sealer());
            data_key = Some(key);
        }
        store.put_json(&paths::vault_config(), &config).await?;
        Ok(Vault {
            store,
            config,
            archive: None,
            chunk_key,
            data_key,
            subscription: SubscriptionId::default(),
            group: group.clone(),
        })
    }

    pub async fn open(store: VaultStore) -> Result<Self> {
        let config: VaultConfig = store.get_json(&paths::vault_config()).await.map_err(|e| {
            if e.is_not_found() {
                Error::from_storage(
                    ErrorCode::UserErrorVaultNotFound,
                    format!("no vault at `{}` (vault.json is missing)", store.url()),
                    e,
                )
            } else {
                e.into()
            }
        })?;
        if config.format_version > ENCRYPTED_VAULT_FORMAT {
            return Err(Error::new(
                ErrorCode::VaultFormatTooNew,
                format!(
                    "the vault's format version {} is newer than this pgvault understands; upgrade pgvault",
                    config.format_version
                ),
            ));
        }
        config.check()?;
        let mut archive = match &config.archive_storage_url {
            Some(url) => Some(VaultStore::open(url)?.with_pack_tier(config.archive_access_tier)?),
            None => None,
        };
        let group = config.resource_group()?;
        let (store, chunk_key, data_key) = match &config.encryption {
            None => (store, config.chunk_key()?, None),
            Some(settings) => {
                let key = super::keys::unlock(&config.name, &config.vault_id, settings).await?;
                let sealer = key.sealer();
                archive = archive.map(|a| a.with_sealer(sealer.clone()));
                (store.with_sealer(sealer), key.chunk_id_key(), Some(key))
            }
        };
        Ok(Vault {
            store,
            config,
            archive,
            chunk_key,
            data_key,
            subscription: SubscriptionId::default(),
            group,
        })
    }

    /// The key chunk ids are hashed with.
    pub fn chunk_key(&self) -> [u8; 32] {
        self.chunk_key
    }

    /// Whether the vault is encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.config.encryption.is_some()
    }

    /// An encrypted vault's key slots (none for an unencrypted vault).
    pub fn key_slots(&self) -> &[KeySlot] {
        self.config.encryption.as_ref().map_or(&[], |e| &e.keys)
    }

    /// Adds a key slot for `reference` (`backup-vault key add`): the data key wrapped by one
    /// more key, which can then open the vault alone. Nothing but `vault.json` is rewritten.
    pub async fn add_key(&mut self, reference: &str, now: DateTime<Utc>) -> Result<KeySlot> {
        let data_key = self.data_key()?.clone();
        if self.key_slots().iter().any(|s| s.reference == reference) {
            return Err(Error::new(
                ErrorCode::UserErrorInvalidEncryptionKey,
                format!(
                    "vault `{}` already has a key slot for `{reference}`; to wrap the data key                      again with that reference (a new passphrase or Key Vault key version), use                      `backup-vault key rotate`",
                    self.name()
                ),
            ));
        }
        let slot = super::keys::new_slot(&self.config.vault_id, reference, &data_key, now).await?;
        self.push_slots(|slots| slots.push(slot.clone())).await?;
        Ok(slot)
    }

    /// Wraps the data key again with the key a slot names (`backup-vault key rotate`): a new
    /// passphrase in the same variable or file, a new Key Vault key version. The old slot is
    /// replaced only once the new one is made; no data is rewritten.
    pub async fn rotate_key(&mut self, slot: &str, now: DateTime<Utc>) -> Result<KeySlot> {
        let data_key = self.data_key()?.clone();
        let old = self.find_slot(slot)?.clone();
        let new =
            super::keys::new_slot(&self.config.vault_id, &old.reference, &data_key, now).await?;
        self.push_slots(|slots| {
            if let Some(s) = slots.iter_mut().find(|s| s.id == old.id) {
                *s = new.clone();
            }
        })
        .await?;
        Ok(new)
    }

    /// Removes a key slot (`backup-vault key remove`); never the last one.
    pub async fn remove_key(&mut self, slot: &str) -> Result<KeySlot> {
        self.data_key()?;
        let old = self.find_slot(slot)?.clone();
        if self.key_slots().len() == 1 {
            return Err(Error::new(
                ErrorCode::UserErrorLastVaultKey,
                format!(
                    "`{}` is the last key of vault `{}`; without a key nobody could open it again",
                    old.reference,
                    self.name()
                ),
            ));
        }
        self.push_slots(|slots| slots.retain(|s| s.id != old.id))
            .await?;
        Ok(old)
    }

    fn data_key(&self) -> Result<&DataKey> {
        self.data_key.as_ref().ok_or_else(|| {
            Error::new(
                ErrorCode::UserErrorVaultNotEncrypted,
                format!(
                    "vault `{}` is not encrypted: it has no keys to manage. Encryption is chosen \
                     when a vault is created (`backup-vault create --encryption-key-uri`)",
                    self.name()
                ),
            )
        })
    }

    /// A slot by id or by reference.
    fn find_slot(&self, slot: &str) -> Result<&KeySlot> {
        self.key_slots()
            .iter()
            .find(|s| s.id == slot || s.reference == slot)
            .ok_or_else(|| {
                let known: Vec<String> = self
                    .key_slots()
                    .iter()
                    .map(|s| format!("{} ({})", s.id, s.reference))
                    .collect();
                Error::new(
                    ErrorCode::UserErrorVaultKeyNotFound,
                    format!(
                        "vault `{}` has no key slot `{slot}` (its slots: {})",
                        self.name(),
                        known.join(", ")
                    ),
                )
            })
    }

    async fn push_slots(&mut self, change: impl FnOnce(&mut Vec<KeySlot>)) -> Result<()> {
        let mut config = self.config.clone();
        if let Some(e) = config.encryption.as_mut() {
            change(&mut e.keys);
        }
        self.store.put_json(&paths::vault_config(), &config).await?;
        self.config = config;
        Ok(())
    }

    /// The vault as served in `subscription` (the host's): the ids it prints are under it.
    /// A vault not given one is in the all-zero subscription.
    pub fn in_subscription(mut self, subscription: SubscriptionId) -> Self {
        self.subscription = subscription;
        self
    }

    /// The vault's resource group.
    pub fn resource_group(&self) -> &ResourceGroup {
        &self.group
    }

    /// The vault's place in ARM, from which every id it prints is built.
    pub fn arm(&self) -> VaultRef {
        VaultRef::new(self.subscription.clone(), self.group.clone(), self.name())
    }

    /// The policy a `policyInfo.policyId` given as input names: a bare name or this vault's
    /// policy id. Another vault's id (or one in another group or subscription) is refused,
    /// not rebound to this vault.
    pub fn policy_name_of(&self, policy_id: &str) -> Result<String> {
        self.arm()
            .child_name(
                policy_id,
                resource::ResourceKind::Policy,
                "policyInfo.policyId",
            )
            .map_err(|e| Error::new(e.code(), e.to_string()))
    }

    /// Configures the archive tier at `url` (`--archive-storage-url`): marks the store as this
    /// vault's archive and records it in `vault.json`. Refuses a store that already holds a
    /// vault or another vault's archive, and changing an archive that holds recovery points.
    /// On Blob Storage its data packs are written in the Archive access tier (see
    /// [`Vault::set_archive_settings`] to choose Cold).
    pub async fn set_archive_storage(&mut self, url: &str) -> Result<()> {
        self.set_archive_settings(Some(url), None).await
    }

    /// `backup-vault create|update --archive-storage-url --archive-access-tier`: configures the
    /// archive tier at `url` (when given, see [`Vault::set_archive_storage`]) and the access
    /// tier its data packs are written in from now on. Without `tier`, a new archive tier on
    /// Blob Storage gets Archive. An access tier is refused for an archive not on Blob Storage.
    pub async fn set_archive_settings(
        &mut self,
        url: Option<&str>,
        tier: Option<ArchiveAccessTier>,
    ) -> Result<()> {
        if let Some(url) = url
            && self.config.archive_storage_url.as_deref() != Some(url)
        {
            let on_blob = matches!(crate::store::azure::AzureLocation::parse(url), Ok(Some(_)));
            if let Some(tier) = tier
                && !on_blob
            {
                return Err(Error::new(
                    ErrorCode::UserErrorInvalidArchiveAccessTier,
                    format!(
                        "--archive-access-tier {tier} needs an archive tier on Azure Blob Storage (az://<account>/<container> or https://<account>.blob.core.windows.net/<container>); `{}` is not one",
                        url.split('?').next().unwrap_or_default()
                    ),
                ));
            }
            self.attach_archive(url).await?;
            let tier = tier.or(on_blob.then_some(ArchiveAccessTier::Archive));
            return self.apply_archive_tier(tier).await;
        }
        match tier {
            Some(tier) => self.apply_archive_tier(Some(tier)).await,
            None if url.is_some() => Ok(()),
            None => Err(Error::new(
                ErrorCode::UserErrorInvalidArchiveSettings,
                "give --archive-storage-url, --archive-access-tier or both",
            )),
        }
    }

    /// Records the archive's access tier in `vault.json` and in the archive's store.
    async fn apply_archive_tier(&mut self, tier: Option<ArchiveAccessTier>) -> Result<()> {
        let Some(archive) = self.archive.take() else {
            return Err(Error::new(
                ErrorCode::UserErrorArchiveTierNotConfigured,
                format!(
                    "vault `{}` has no archive tier; give --archive-storage-url with --archive-access-tier",
                    self.name()
                ),
            ));
        };
        let url = archive.url().to_owned();
        let tiered = archive.clone().with_pack_tier(tier);
        let archive = match tiered {
            Ok(tiered) => tiered,
            Err(e) => {
                self.archive = Some(archive);
                return Err(Error::new(
                    ErrorCode::UserErrorInvalidArchiveAccessTier,
                    format!("cannot give the archive tier at `{url}` an access tier: {e}"),
                ));
            }
        };
        self.archive = Some(archive);
        if self.config.archive_access_tier != tier {
            self.config.archive_access_tier = tier;
            self.store
                .put_json(&paths::vault_config(), &self.config)
                .await?;
        }
        Ok(())
    }

    async fn attach_archive(&mut self, url: &str) -> Result<()> {
        if let Some(current) = &self.archive
            && !current
                .list(&paths::recovery_points_root())
                .await?
                .is_empty()
        {
            return Err(Error::new(
                ErrorCode::UserErrorArchiveTierInUse,
                format!(
                    "vault `{}` already keeps recovery points in its archive tier at `{}`; \
                     moving an archive tier is not supported",
                    self.name(),
                    current.url()
                ),
            ));
        }
        let mut archive = VaultStore::create(url).await?;
        if let Some(key) = &self.data_key {
            archive = archive.with_sealer(key.sealer());
        }
        if archive.exists(&paths::vault_config()).await? {
            return Err(Error::new(
                ErrorCode::UserErrorInvalidArchiveStorage,
                format!("`{url}` holds a vault; give the archive tier a location of its own"),
            ));
        }
        let marker_path = paths::archive_marker();
        if archive.exists(&marker_path).await? {
            let marker: ArchiveMarker = archive.get_json(&marker_path).await?;
            if marker.vault_id != self.config.vault_id {
                return Err(Error::new(
                    ErrorCode::UserErrorInvalidArchiveStorage,
                    format!(
                        "`{url}` is the archive tier of vault `{}`; give this vault's archive \
                         tier a location of its own",
                        marker.vault_name
                    ),
                ));
            }
        } else {
            archive
                .put_json(
                    &marker_path,
                    &ArchiveMarker {
                        format_version: VAULT_FORMAT,
                        vault_id: self.config.vault_id.clone(),
                        vault_name: self.name().to_owned(),
                    },
                )
                .await?;
        }
        self.config.archive_storage_url = Some(url.to_owned());
        if !self
            .config
            .storage_settings
            .iter()
            .any(|s| s.datastore_type == "ArchiveStore")
        {
            self.config.storage_settings.push(StorageSetting {
                datastore_type: "ArchiveStore".into(),
                kind: "LocallyRedundant".into(),
            });
        }
        self.store
            .put_json(&paths::vault_config(), &self.config)
            .await?;
        self.archive = Some(archive);
        Ok(())
    }

    /// The store of a tier: the vault itself or its archive.
    pub fn tier_store(&self, tier: DataStoreType) -> Option<&VaultStore> {
        match tier {
            DataStoreType::ArchiveStore => self.archive.as_ref(),
            _ => Some(&self.store),
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn writer_config(&self) -> Result<WriterConfig> {
        Ok(WriterConfig {
            chunk_key: self.chunk_key,
            chunker: self.config.chunker.clone(),
            zstd_level: self.config.compression.level,
            pack_target_size: self.config.pack_target_size as usize,
            compressor_threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            dense_prefix: true,
        })
    }

    /// The vault as Azure's `backupVaults` resource.
    pub fn to_azure_json(&self) -> Value {
        let mut v = envelope(
            self.arm().id(),
            self.name(),
            resource::VAULT_TYPE,
            json!({
                "provisioningState": "Succeeded",
                "storageSettings": self.config.storage_settings,
                "storageUrl": self.store.url(),
                "archiveStorageUrl": self.config.archive_storage_url,
                "pgvaultArchiveAccessTier": self.config.archive_access_tier,
                "vaultId": self.config.vault_id,
                "formatVersion": self.config.format_version,
                "createdTime": self.config.created_time,
                "securitySettings": self.config.security_settings,
            }),
        );
        v["location"] = json!(
            self.config
                .location
                .as_deref()
                .unwrap_or(crate::model::job::LOCAL_LOCATION)
        );
        v["tags"] = json!(self.config.tags);
        if let Some(encryption) = self.encryption_json() {
            v["properties"]["securitySettings"]["encryptionSettings"] = encryption;
        }
        v
    }

    /// Azure's `securitySettings.encryptionSettings` of an encrypted vault: `Enabled`, with the
    /// first Azure Key Vault key as `keyVaultProperties.keyUri` (Azure's customer-managed key);
    /// pgvault's slots count in `pgvaultKeySlots`. Absent for an unencrypted vault, as Azure
    /// leaves it out of a vault without a customer-managed key.
    fn encryption_json(&self) -> Option<Value> {
        match &self.config.encryption {
            None => None,
            Some(e) => {
                let mut out = json!({
                    "state": "Enabled",
                    "pgvaultAlgorithm": e.algorithm,
                    "pgvaultKeySlots": e.keys.len(),
                });
                if let Some(kv) = e
                    .keys
                    .iter()
                    .find(|k| k.source == crate::store::crypt::KeySource::AzureKeyVault)
                {
                    out["keyVaultProperties"] = json!({"keyUri": kv.reference});
                }
                Some(out)
            }
        }
    }

    /// Sets what Azure's REST API changes of a vault resource: its `location`, its `tags` and
    /// its `storageSettings` (each only when given), in `vault.json`.
    pub async fn set_resource_properties(
        &mut self,
        location: Option<String>,
        tags: Option<BTreeMap<String, String>>,
        storage_settings: Option<Vec<StorageSetting>>,
    ) -> Result<()> {
        let mut config = self.config.clone();
        if let Some(location) = location {
            config.location = Some(location);
        }
        if let Some(tags) = tags {
            config.tags = tags;
        }
        if let Some(settings) = storage_settings {
            config.storage_settings = settings;
        }
        if config != self.config {
            self.store.put_json(&paths::vault_config(), &config).await?;
            self.config = config;
        }
        Ok(())
    }

    // ---- policies ----

    /// Stores a new policy. As in Azure, an existing policy is never overwritten
    /// (`UserErrorBMSUpdatePolicyNotSupported`): create a new one and move instances to it.
    pub async fn create_policy(&self, name: &str, policy: &BackupPolicy) -> Result<Value> {
        check_name("policy", name)?;
        if let Err(errors) = policy.validate() {
            let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            return Err(Error::new(
                ErrorCode::UserErrorInvalidPolicy,
                format!("the policy is not valid:\n  {}", list.join("\n  ")),
            ));
        }
        let path = paths::policy(name);
        if self.store.exists(&path).await? {
            return Err(Error::new(
                ErrorCode::UserErrorBMSUpdatePolicyNotSupported,
                format!(
                    "policy `{name}` already exists in vault `{}`; updating a policy is not supported, create one under a new name",
                    self.name()
                ),
            ));
        }
        let mut normalized = policy.clone();
        normalized.name = None;
        let value = envelope(
            self.arm().policy_id(name),
            name,
            resource::POLICY_TYPE,
            serde_json::to_value(&normalized).expect("policy serializes"),
        );
        self.store.put_json(&path, &value).await?;
        Ok(value)
    }

    /// A stored policy as Azure's resource JSON. Its `id` is built from the vault's place in
    /// ARM, whatever id the file was written with (older versions wrote `/providers/...`).
    pub async fn policy_json(&self, name: &str) -> Result<Value> {
        let mut v: Value = self
            .store
            .get_json(&paths::policy(name))
            .await
            .map_err(|e| {
                if e.is_not_found() {
                    Error::from_storage(
                        ErrorCode::UserErrorPolicyNotFound,
                        format!("vault `{}` has no policy `{name}`", self.name()),
                        e,
                    )
                } else {
                    e.into()
                }
            })?;
        if let Some(obj) = v.as_object_mut() {
            let stored = obj.get("name").and_then(Value::as_str).unwrap_or(name);
            let id = self.arm().policy_id(stored);
            obj.insert("id".into(), Value::String(id));
        }
        Ok(v)
    }

    /// Deletes a policy no backup instance uses. As in Azure, a policy in use is kept
    /// (`UserErrorPolicyInUse`): move or delete its instances first. An instance whose file
    /// does not read stops the deletion too, as it may use the policy.
    pub async fn delete_policy(&self, name: &str) -> Result<()> {
        self.policy_json(name).await?;
        let (instances, unreadable) = self.read_instances().await?;
        if let Some(e) = unreadable.first() {
            return Err(Error::new(
                ErrorCode::UserErrorPolicyInUse,
                format!(
                    "policy `{name}` is kept: a backup instance of vault `{}` does not read, so pgvault cannot tell whether it uses the policy ({})",
                    self.name(),
                    e.message
                ),
            ));
        }
        let users: Vec<&str> = instances
            .iter()
            .filter(|i| resource::last_segment(&i.properties.policy_info.policy_id) == name)
            .map(|i| i.name.as_str())
            .collect();
        if !users.is_empty() {
            return Err(Error::new(
                ErrorCode::UserErrorPolicyInUse,
                format!(
                    "policy `{name}` is used by backup instance(s) {} of vault `{}`; delete them or protect them with another policy first",
                    users.join(", "),
                    self.name()
                ),
            ));
        }
        self.store.delete(&paths::policy(name)).await?;
        Ok(())
    }

    pub async fn policy(&self, name: &str) -> Result<BackupPolicy> {
        let v = self.policy_json(name).await?;
        serde_json::from_value(v["properties"].clone()).map_err(|e| {
            Error::caused_by(
                ErrorCode::VaultCorrupt,
                format!("policy `{name}` in the vault does not parse: {e}"),
                e,
            )
        })
    }

    /// Every policy that reads. One whose file is damaged is logged and left out (see
    /// [`Vault::read_policies`]).
    pub async fn list_policies(&self) -> Result<Vec<Value>> {
        let (policies, unreadable) = self.read_policies().await?;
        log_unreadable(self.name(), "policy", &unreadable);
        Ok(policies)
    }

    /// The names of the policies' files, read or not.
    pub async fn policy_names(&self) -> Result<Vec<String>> {
        Ok(self.store.list_json_names(&paths::policies()).await?)
    }

    /// The names of the backup instances' files, read or not.
    pub async fn instance_names(&self) -> Result<Vec<String>> {
        Ok(self.store.list_json_names(&paths::instances()).await?)
    }

    /// Every policy that reads, and an error for each file that does not (not JSON, or gone
    /// between the listing and the read). Storage that fails as a whole is still an error.
    pub async fn read_policies(&self) -> Result<(Vec<Value>, Vec<Error>)> {
        let names = self.store.list_json_names(&paths::policies()).await?;
        read_each(
            names,
            ErrorCode::UserErrorPolicyNotFound,
            |name| async move { self.policy_json(&name).await },
        )
        .await
    }

    // ---- instances ----

    pub async fn instance(&self, name: &str) -> Result<BackupInstanceRequest> {
        let v: Value = self.store.get_json(&paths::instance(name)).await.map_err(|e| {
            if e.is_not_found() {
                Error::from_storage(
                    ErrorCode::UserErrorBackupInstanceNotFound,
                    format!("vault `{}` has no backup instance `{name}` (see `pgvault backup-instance list`)", self.name()),
                    e,
                )
            } else {
                e.into()
            }
        })?;
        let mut instance: BackupInstanceRequest = serde_json::from_value(v).map_err(|e| {
            Error::caused_by(
                ErrorCode::VaultCorrupt,
                format!("backup instance `{name}` does not parse: {e}"),
                e,
            )
        })?;
        // An instance older pgvault stopped or suspended still says ProtectionConfigured.
        instance.properties.sync_protection_status();
        Ok(instance)
    }

    /// An instance as Azure's resource JSON: its `id` and `policyInfo.policyId` are built
    /// from the vault's place in ARM, whatever the stored file says (older versions wrote
    /// `/providers/...` ids; the policy is the stored id's last segment).
    pub fn instance_json(&self, instance: &BackupInstanceRequest) -> Value {
        let mut properties = instance.properties.clone();
        let policy = resource::last_segment(&properties.policy_info.policy_id).to_owned();
        if !policy.is_empty() {
            properties.policy_info.policy_id = self.arm().policy_id(&policy);
        }
        envelope(
            self.arm().instance_id(&instance.name),
            &instance.name,
            resource::INSTANCE_TYPE,
            serde_json::to_value(&properties).expect("instance serializes"),
        )
    }

    /// Every backup instance that reads. One whose file is damaged (hand-edited, truncated)
    /// is logged and left out, so it does not stop the scheduler, sweeps, drills or the
    /// protection of other databases; `backup-instance list` names it (see
    /// [`Vault::read_instances`]).
    pub async fn list_instances(&self) -> Result<Vec<BackupInstanceRequest>> {
        let (instances, unreadable) = self.read_instances().await?;
        log_unreadable(self.name(), "backup instance", &unreadable);
        Ok(instances)
    }

    /// Every backup instance that reads, and an error (`VaultCorrupt`, naming the file) for each
    /// one that does not. Storage that fails as a whole is still an error.
    pub async fn read_instances(&self) -> Result<(Vec<BackupInstanceRequest>, Vec<Error>)> {
        let names = self.store.list_json_names(&paths::instances()).await?;
        read_each(
            names,
            ErrorCode::UserErrorBackupInstanceNotFound,
            |name| async move { self.instance(&name).await },
        )
        .await
    }

    /// Sets an instance's protection state, as Azure's `suspendBackups`, `stopProtection` and
    /// `resumeProtection` do: `state` is `BackupSchedulesSuspended`, `ProtectionStopped` or
    /// `ProtectionConfigured`, and `protectionStatus` follows it. Backups (scheduled and on demand) run only in the last;
    /// recovery points are kept in all three. Setting the state it already has is a no-op.
    pub async fn set_protection_state(
        &self,
        name: &str,
        state: &str,
    ) -> Result<BackupInstanceRequest> {
        let mut instance = self.instance(name).await?;
        instance.properties.set_protection_state(state);
        self.save_instance(&instance).await?;
        Ok(instance)
    }

    pub(crate) async fn save_instance(&self, instance: &BackupInstanceRequest) -> Result<()> {
        Ok(self
            .store
            .put_json(
                &paths::instance(&instance.name),
                &self.instance_json(instance),
            )
            .await?)
    }

    // ---- recovery points ----

    /// The instance's most recently written recovery point, reading only its manifest (a
    /// backup uses it as the source of delta bases; any recent one serves, so the store's
    /// write time is a good enough order).
    pub async fn latest_recovery_point(&self, instance: &str) -> Result<Option<Manifest>> {
        self.latest_in(DataStoreType::VaultStore, instance).await
    }

    /// The instance's most recently written recovery point in one tier, if any.
    pub async fn latest_in(&self, tier: DataStoreType, instance: &str) -> Result<Option<Manifest>> {
        let Some(store) = self.tier_store(tier) else {
            return Ok(None);
        };
        let newest = store.newest(&paths::recovery_points(instance)).await?;
        let latest = match newest
            .as_ref()
            .and_then(|p| p.filename())
            .and_then(|f| f.strip_suffix(".json"))
        {
            Some(id) => self.manifest_in(tier, instance, id).await,
            None => Ok(None),
        };
        match latest {
            // The newest manifest is damaged: the newest good one serves instead.
            Err(e) if e.code == RECOVERY_POINT_DAMAGED => Ok(self
                .recovery_points_and_damage(instance)
                .await?
                .0
                .into_iter()
                .filter_map(|p| match tier {
                    DataStoreType::ArchiveStore => p.archive,
                    _ => p.vault,
                })
                .max_by_key(|m| m.recovery_point_time)),
            latest => latest,
        }
    }

    /// A recovery point in the vault tier, where backups write and restores read. One that
    /// lives only in the archive tier is named as such.
    pub async fn recovery_point(&self, instance: &str, id: &str) -> Result<Manifest> {
        match self
            .manifest_in(DataStoreType::VaultStore, instance, id)
            .await?
        {
            Some(m) => Ok(m),
            None if self
                .manifest_in(DataStoreType::ArchiveStore, instance, id)
                .await?
                .is_some() =>
            {
                Err(Error::new(
                    ErrorCode::UserErrorRecoveryPointInArchiveTier,
                    format!(
                        "recovery point `{id}` of `{instance}` lives only in the archive tier; \
                         rehydrate it to the vault tier before restoring it"
                    ),
                ))
            }
            None => Err(Error::new(
                ErrorCode::UserErrorRecoveryPointNotFound,
                format!(
                    "backup instance `{instance}` has no recovery point `{id}` (see `pgvault recovery-point list`)"
                ),
            )),
        }
    }

    /// The manifest a restore reads, for a restore request naming `source` (Azure's
    /// `sourceDataStoreType`). Restores always read the vault tier: a point that lives only in
    /// the archive tier restores from `ArchiveStore` once `recovery-point rehydrate` has copied
    /// it back, until the rehydration ends (judged at `now`).
    pub async fn restorable_manifest(
        &self,
        instance: &str,
        id: &str,
        source: DataStoreType,
        now: DateTime<Utc>,
    ) -> Result<Manifest> {
        let point = self.stored_point(instance, id).await?;
        let rehydrate_hint = format!(
            "`pgvault recovery-point rehydrate --vault-name {} --backup-instance-name {instance} --recovery-point-id {id} --rehydration-duration 10` copies it back for 10 days",
            self.name()
        );
        match (source, &point.vault, &point.archive) {
            (DataStoreType::ArchiveStore, _, None) => Err(Error::new(
                ErrorCode::UserErrorRecoveryPointNotInArchiveTier,
                format!(
                    "recovery point `{id}` is not in the archive tier; restore it with --source-datastore VaultStore"
                ),
            )),
            (_, Some(m), _) if m.rehydration_expiry_time.is_some_and(|until| until <= now) => {
                Err(Error::new(
                    ErrorCode::UserErrorRecoveryPointNotRehydrated,
                    format!(
                        "the rehydration of recovery point `{id}` ended at {}; {rehydrate_hint} again",
                        m.rehydration_expiry_time.expect("checked").to_rfc3339()
                    ),
                ))
            }
            (DataStoreType::VaultStore, Some(m), _) if m.rehydration_expiry_time.is_none() => {
                Ok(m.clone())
            }
            (DataStoreType::ArchiveStore, Some(m), Some(_)) => Ok(m.clone()),
            (_, Some(_), _) => Err(Error::new(
                ErrorCode::UserErrorRecoveryPointInArchiveTier,
                format!(
                    "recovery point `{id}` lives in the archive tier (what is in the vault tier is its rehydrated copy); restore it with --source-datastore ArchiveStore"
                ),
            )),
            (DataStoreType::ArchiveStore, None, Some(_)) => Err(Error::new(
                ErrorCode::UserErrorRecoveryPointNotRehydrated,
                format!(
                    "recovery point `{id}` lives only in the archive tier and must be rehydrated before a restore: {rehydrate_hint}"
                ),
            )),
            (_, None, _) => Err(Error::new(
                ErrorCode::UserErrorRecoveryPointInArchiveTier,
                format!(
                    "recovery point `{id}` of `{instance}` lives only in the archive tier; rehydrate it ({rehydrate_hint}), then restore it with --source-datastore ArchiveStore"
                ),
            )),
        }
    }

    /// A recovery point's manifest in one tier, `None` when that tier does not hold it.
    pub async fn manifest_in(
        &self,
        tier: DataStoreType,
        instance: &str,
        id: &str,
    ) -> Result<Option<Manifest>> {
        let Some(store) = self.tier_store(tier) else {
            return Ok(None);
        };
        let bytes = match store.get(&paths::recovery_point(instance, id)).await {
            Ok(bytes) => bytes,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        crate::store::manifest::open_manifest(store.sealer(), &bytes)
            .map_err(|e| e.to_string())
            .and_then(|m| {
                if m.backup_instance_name == instance && m.recovery_point_id == id {
                    Ok(m)
                } else {
                    Err(format!(
                        "the manifest describes recovery point `{}` of `{}`",
                        m.recovery_point_id, m.backup_instance_name
                    ))
                }
            })
            .map(Some)
            .map_err(|e| {
                Error::new(
                    RECOVERY_POINT_DAMAGED,
                    format!("recovery point `{id}` ({tier:?}) is damaged: {e}; `pgvault recovery-point delete` removes it"),
                )
            })
    }

    /// Every recovery point of an instance in either tier whose manifest can be read, newest
    /// first. Damaged manifests are left out ([`Self::damaged_recovery_points`] lists them).
    pub async fn recovery_points(&self, instance: &str) -> Result<Vec<StoredPoint>> {
        Ok(self.recovery_points_and_damage(instance).await?.0)
    }

    /// The recovery points of an instance whose manifest is in a tier but damaged.
    pub async fn damaged_recovery_points(&self, instance: &str) -> Result<Vec<DamagedManifest>> {
        Ok(self.recovery_points_and_damage(instance).await?.1)
    }

    /// The good points (newest first) and the damaged manifests of an instance. A manifest
    /// that cannot be read at all (a storage error) is an error: nothing can be said of it.
    /// The bytes the vault's data packs take in the vault tier and, when it has one, in the
    /// archive tier (what the storage holds, after deduplication and compression).
    pub async fn stored_bytes(&self) -> Result<(u64, Option<u64>)> {
        let packs = paths::packs_root();
        let sum = |list: Vec<(object_store::path::Path, u64)>| list.iter().map(|(_, n)| n).sum();
        let in_vault = sum(self.store.list_with_sizes(&packs).await?);
        let in_archive = match &self.archive {
            Some(archive) => Some(sum(archive.list_with_sizes(&packs).await?)),
            None => None,
        };
        Ok((in_vault, in_archive))
    }

    /// The ids of an instance's recovery points in the vault tier and in the archive tier,
    /// from the listings alone (no manifest is read): what counts need.
    pub async fn recovery_point_ids(&self, instance: &str) -> Result<(Vec<String>, Vec<String>)> {
        let mut out = (Vec::new(), Vec::new());
        for tier in [DataStoreType::VaultStore, DataStoreType::ArchiveStore] {
            let Some(store) = self.tier_store(tier) else {
                continue;
            };
            let ids = store
                .list_json_names(&paths::recovery_points(instance))
                .await?;
            match tier {
                DataStoreType::ArchiveStore => out.1 = ids,
                _ => out.0 = ids,
            }
        }
        Ok(out)
    }

    /// One page of an instance's recovery points in the order of their ids (`start`, at most
    /// `count`), reading only that page's manifests: a listing of thousands answered a page at
    /// a time. Each is its Azure JSON, a damaged one's as `Partial`; the bool says whether
    /// more follow.
    pub async fn recovery_points_page(
        &self,
        instance: &str,
        start: usize,
        count: usize,
    ) -> Result<(Vec<Value>, bool)> {
        let (in_vault, in_archive) = self.recovery_point_ids(instance).await?;
        let ids: std::collections::BTreeSet<String> =
            in_vault.into_iter().chain(in_archive).collect();
        let more = ids.len() > start.saturating_add(count);
        let page: Vec<String> = ids.into_iter().skip(start).take(count).collect();
        let read: Vec<Result<Value>> =
            futures::stream::iter(page.into_iter().map(|id| async move {
                let mut damaged = None;
                let mut point = StoredPoint::default();
                for tier in [DataStoreType::VaultStore, DataStoreType::ArchiveStore] {
                    match self.manifest_in(tier, instance, &id).await {
                        Ok(Some(m)) if tier == DataStoreType::ArchiveStore => {
                            point.archive = Some(m)
                        }
                        Ok(Some(m)) => point.vault = Some(m),
                        Ok(None) => {}
                        Err(e) if e.code == RECOVERY_POINT_DAMAGED => {
                            damaged.get_or_insert(DamagedManifest {
                                instance: instance.to_owned(),
                                recovery_point_id: id.clone(),
                                tier,
                                problem: e.message,
                            });
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(match (&point.vault, &point.archive, damaged) {
                    (None, None, Some(d)) => self.damaged_recovery_point_json(&d),
                    _ => self.recovery_point_json(&point),
                })
            }))
            .buffered(MANIFEST_READS_AT_ONCE)
            .collect()
            .await;
        Ok((read.into_iter().collect::<Result<Vec<Value>>>()?, more))
    }

    pub async fn recovery_points_and_damage(
        &self,
        instance: &str,
    ) -> Result<(Vec<StoredPoint>, Vec<DamagedManifest>)> {
        let mut damaged = Vec::new();
        let mut points: std::collections::BTreeMap<String, StoredPoint> = Default::default();
        let (in_vault, in_archive) = self.recovery_point_ids(instance).await?;
        for (tier, ids) in [
            (DataStoreType::VaultStore, in_vault),
            (DataStoreType::ArchiveStore, in_archive),
        ] {
            // Read a few manifests at once: on Blob Storage each is a round trip, and an
            // instance kept ten years has thousands.
            let read: Vec<(String, Result<Option<Manifest>>)> =
                futures::stream::iter(ids.into_iter().map(|id| async move {
                    let m = self.manifest_in(tier, instance, &id).await;
                    (id, m)
                }))
                .buffered(MANIFEST_READS_AT_ONCE)
                .collect()
                .await;
            for (id, m) in read {
                let m = match m {
                    Ok(Some(m)) => m,
                    Ok(None) => continue,
                    Err(e) if e.code == RECOVERY_POINT_DAMAGED => {
                        damaged.push(DamagedManifest {
                            instance: instance.to_owned(),
                            recovery_point_id: id,
                            tier,
                            problem: e.message,
                        });
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let point = points.entry(id).or_default();
                match tier {
                    DataStoreType::ArchiveStore => point.archive = Some(m),
                    _ => point.vault = Some(m),
                }
            }
        }
        let mut out: Vec<StoredPoint> = points.into_values().collect();
        out.sort_by_key(|p| std::cmp::Reverse(p.manifest().recovery_point_time));
        Ok((out, damaged))
    }

    /// A recovery point in whichever tiers hold it.
    pub async fn stored_point(&self, instance: &str, id: &str) -> Result<StoredPoint> {
        let point = StoredPoint {
            vault: self
                .manifest_in(DataStoreType::VaultStore, instance, id)
                .await?,
            archive: self
                .manifest_in(DataStoreType::ArchiveStore, instance, id)
                .await?,
        };
        if point.vault.is_none() && point.archive.is_none() {
            return Err(Error::new(
                ErrorCode::UserErrorRecoveryPointNotFound,
                format!(
                    "backup instance `{instance}` has no recovery point `{id}` (see `pgvault recovery-point list`)"
                ),
            ));
        }
        Ok(point)
    }

    /// Deletes a recovery point from one tier (its manifest: the data goes at the next garbage
    /// collection). Deleting what is not there is not an error: the sweep repeats itself.
    pub async fn delete_from(&self, tier: DataStoreType, instance: &str, id: &str) -> Result<()> {
        let Some(store) = self.tier_store(tier) else {
            return Ok(());
        };
        Ok(store
            .delete_if_present(&paths::recovery_point(instance, id))
            .await?)
    }

    /// Removes a backup instance's definition (its recovery points must be deleted first).
    pub async fn delete_instance(&self, name: &str) -> Result<()> {
        Ok(self.store.delete_if_present(&paths::instance(name)).await?)
    }

    /// [`Self::recovery_point_json`] with what the backup recorded of the database's contents
    /// (schemas, extensions, tables and row counts) as the pgvault-specific property
    /// `pgvaultContents`, for `recovery-point show`. Azure's fields are unchanged, and a list
    /// stays short by leaving it out.
    pub fn recovery_point_detail_json(&self, point: &StoredPoint) -> Value {
        let mut v = self.recovery_point_json(point);
        if let Some(contents) = &point.manifest().contents
            && let Ok(contents) = contents.read::<Value>()
        {
            v["properties"]["pgvaultContents"] = contents;
        }
        v
    }

    /// A recovery point as Azure's `recoveryPoints` resource (the az CLI's shape, with
    /// PostgreSQL facts in `metaData` as Azure records them), one datastore detail per tier
    /// that holds it, each with that tier's expiry.
    pub fn recovery_point_json(&self, point: &StoredPoint) -> Value {
        let m = point.manifest();
        let meta = json!({
            "objectType": "PostgresBackupMetadata",
            "version": "1.0",
            "postgresVersion": m.postgres.server_version,
            "dbName": m.datasource.database,
            "serverName": m.datasource.server,
            "usernameUsed": m.postgres.username_used,
            "backupToolVersion": m.postgres.pg_dump_version,
            "backupType": "Full",
            "backupDumpFormat": "CUSTOM",
            "bytesTransferred": m.stats.bytes_read,
            "dataSourceSize": m.postgres.database_size,
        });
        envelope(
            self.arm()
                .recovery_point_id(&m.backup_instance_name, &m.recovery_point_id),
            &m.recovery_point_id,
            resource::RECOVERY_POINT_TYPE,
            json!({
                "objectType": "AzureBackupDiscreteRecoveryPoint",
                "recoveryPointId": m.recovery_point_id,
                "recoveryPointTime": m.recovery_point_time,
                "recoveryPointType": "Full",
                "recoveryPointState": "Completed",
                "friendlyName": m.recovery_point_id,
                "policyName": m.policy_name,
                "retentionTagName": m.retention_tag_name,
                "expiryTime": m.expiry_time,
                "recoveryPointDataStoresDetails": point
                    .tiers()
                    .map(|(tier, tm)| json!({
                        "id": m.recovery_point_id,
                        "type": tier,
                        "creationTime": m.recovery_point_time,
                        "expiryTime": tm.expiry_time,
                        "metaData": meta.to_string(),
                        "state": "COMMITTED",
                        "visible": true,
                        "rehydrationExpiryTime": tm.rehydration_expiry_time,
                        "rehydrationStatus": tm.rehydration_expiry_time.map(|_| "COMPLETED"),
                    }))
                    .collect::<Vec<_>>(),
            }),
        )
    }
}

impl Vault {
    /// A damaged recovery point as Azure's `recoveryPoints` resource: what is known of it
    /// (its id and tier), `recoveryPointState` `Partial` (Azure's states are `Completed` and
    /// `Partial`), and why, as the pgvault-specific `pgvaultDamage`.
    pub fn damaged_recovery_point_json(&self, d: &DamagedManifest) -> Value {
        envelope(
            self.arm()
                .recovery_point_id(&d.instance, &d.recovery_point_id),
            &d.recovery_point_id,
            resource::RECOVERY_POINT_TYPE,
            json!({
                "objectType": "AzureBackupDiscreteRecoveryPoint",
                "recoveryPointId": d.recovery_point_id,
                "recoveryPointState": "Partial",
                "friendlyName": d.recovery_point_id,
                "recoveryPointDataStoresDetails": [{
                    "id": d.recovery_point_id,
                    "type": d.tier,
                    "visible": true,
                }],
                "pgvaultDamage": d.problem,
            }),
        )
    }
}

#[cfg(test)]
mod damaged_manifest_tests {
    use super::*;
    use crate::store::testing::{archive, backup};

    /// The third finding: one corrupt manifest (checksum, truncated, empty) made listing and
    /// the latest point fail. Now only that point is damaged.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_damaged_manifest_damages_only_its_own_point() {
        let store = VaultStore::open("memory://").unwrap();
        let vault = Vault::create(store, "V", &Default::default(), Utc::now(), None)
            .await
            .unwrap();
        let key = vault.chunk_key();
        let good = backup(&vault.store, key, "db", "good", archive(2_000, 0), None).await;
        for (id, bytes) in [
            ("checksum", {
                let m = backup(&vault.store, key, "db", "checksum", archive(2_000, 1), None).await;
                String::from_utf8(m.to_bytes())
                    .unwrap()
                    .replacen("BackupWeekly", "BackupDaily!", 1)
                    .into_bytes()
            }),
            ("truncated", good.to_bytes()[..50].to_vec()),
            ("empty", Vec::new()),
        ] {
            vault
                .store
                .put(&paths::recovery_point("db", id), bytes.into())
                .await
                .unwrap();
        }
        let (points, damaged) = vault.recovery_points_and_damage("db").await.unwrap();
        assert_eq!(points.len(), 1);
        assert_eq!(points[0].manifest().recovery_point_id, "good");
        let mut names: Vec<&str> = damaged
            .iter()
            .map(|d| d.recovery_point_id.as_str())
            .collect();
        names.sort();
        assert_eq!(names, ["checksum", "empty", "truncated"]);
        // The newest manifest written is damaged; the latest good point is the delta source.
        let latest = vault.latest_recovery_point("db").await.unwrap().unwrap();
        assert_eq!(latest.recovery_point_id, "good");
        let json = vault.damaged_recovery_point_json(&damaged[0]);
        assert_eq!(json["properties"]["recoveryPointState"], "Partial");
        assert!(
            json["properties"]["pgvaultDamage"]
                .as_str()
                .unwrap()
                .contains("damaged")
        );
        assert_eq!(
            vault.recovery_point_json(&points[0])["properties"]["recoveryPointState"],
            "Completed"
        );
    }
}

#[cfg(test)]
mod archive_tier_tests {
    use super::*;

    #[test]
    fn access_tiers_parse_at_the_boundary() {
        assert_eq!("archive".parse(), Ok(ArchiveAccessTier::Archive));
        assert_eq!("Cold".parse(), Ok(ArchiveAccessTier::Cold));
        let err = "Hot".parse::<ArchiveAccessTier>().unwrap_err();
        assert!(err.contains("not Archive or Cold"), "{err}");
    }

    /// `vault.json` is vault content too: chunker sizes FastCDC would assert on, a pack size
    /// that overflows, a zstd level out of range or a malformed key make the vault refuse to
    /// open with `VaultCorrupt`, never a panic in a backup.
    #[tokio::test]
    async fn a_vault_json_with_impossible_settings_is_refused_at_open() {
        let store = VaultStore::open("memory://").unwrap();
        let vault = Vault::create(store.clone(), "V", &Default::default(), Utc::now(), None)
            .await
            .unwrap();
        let good = vault.config.clone();
        type Damage = fn(&mut VaultConfig);
        let cases: Vec<(&str, Damage)> = vec![
            ("chunker", |c| c.chunker.avg_size = 10),
            ("chunker", |c| c.chunker.min_size = 0),
            ("chunker", |c| c.chunker.max_size = u32::MAX),
            ("chunker", |c| c.chunker.min_size = c.chunker.max_size),
            ("packTargetSize", |c| c.pack_target_size = u64::MAX),
            ("packTargetSize", |c| c.pack_target_size = 0),
            ("compression", |c| c.compression.level = 99),
            ("compression", |c| c.compression.algorithm = "lz4".into()),
            ("chunkIdKey", |c| c.chunk_id_key = "zz".into()),
            ("resourceGroup", |c| c.resource_group = "bad/group".into()),
            ("resourceGroup", |c| c.resource_group = String::new()),
        ];
        for (field, damage) in cases {
            let mut bad = good.clone();
            damage(&mut bad);
            store.put_json(&paths::vault_config(), &bad).await.unwrap();
            let err = Vault::open(store.clone()).await.unwrap_err();
            assert_eq!(err.code.as_str(), "VaultCorrupt", "{field}: {err:?}");
            assert!(err.message.contains(field), "{field}: {err:?}");
        }
        store.put_json(&paths::vault_config(), &good).await.unwrap();
        Vault::open(store).await.unwrap();
    }

    /// An access tier is Blob Storage's: refused for another archive before anything is
    /// recorded; without one a local archive keeps the default tier, and a later change needs
    /// an archive tier on Blob Storage.
    #[tokio::test]
    async fn an_access_tier_needs_an_archive_on_blob_storage() {
        let store = VaultStore::open("memory://").unwrap();
        let mut vault = Vault::create(store, "V", &Default::default(), Utc::now(), None)
            .await
            .unwrap();
        let err = vault
            .set_archive_settings(Some("memory://"), Some(ArchiveAccessTier::Cold))
            .await
            .unwrap_err();
        assert_eq!(err.code.as_str(), "UserErrorInvalidArchiveAccessTier");
        assert!(err.message.contains("Blob Storage"), "{err:?}");
        assert!(vault.config.archive_storage_url.is_none());

        let err = vault
            .set_archive_settings(None, Some(ArchiveAccessTier::Archive))
            .await
            .unwrap_err();
        assert_eq!(err.code.as_str(), "UserErrorArchiveTierNotConfigured");

        vault.set_archive_storage("memory://").await.unwrap();
        assert_eq!(vault.config.archive_access_tier, None);
        assert!(vault.to_azure_json()["properties"]["pgvaultArchiveAccessTier"].is_null());
        let err = vault
            .set_archive_settings(None, Some(ArchiveAccessTier::Cold))
            .await
            .unwrap_err();
        assert_eq!(err.code.as_str(), "UserErrorInvalidArchiveAccessTier");
        assert_eq!(vault.config.archive_access_tier, None);
        assert!(vault.archive.is_some(), "the archive tier is kept");
    }
}

/// Reads each named resource with `read`: what reads, and the damage errors of what does
/// not. A resource deleted between the listing and the read (`not_found`) is skipped; any
/// other error (the storage failing) ends the listing.
async fn read_each<T, F, Fut>(
    names: Vec<String>,
    not_found: ErrorCode,
    read: F,
) -> Result<(Vec<T>, Vec<Error>)>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut out = Vec::new();
    let mut unreadable = Vec::new();
    for name in names {
        match read(name).await {
            Ok(item) => out.push(item),
            Err(e) if e.code == not_found => {}
            Err(e) if is_damage(&e) => unreadable.push(e),
            Err(e) => return Err(e),
        }
    }
    Ok((out, unreadable))
}

/// Whether reading one resource file failed because of what the file holds (not JSON, not the
/// expected shape), rather than because the storage failed.
fn is_damage(e: &Error) -> bool {
    e.code == ErrorCode::VaultCorrupt
}

fn log_unreadable(vault: &str, what: &str, unreadable: &[Error]) {
    for e in unreadable {
        tracing::error!(vault = %vault, code = %e.code, "a {what} is left out because its file cannot be read: {}", e.message);
    }
}

#[cfg(test)]
mod arm_id_tests {
    use super::*;
    use crate::model::resource::DEFAULT_RESOURCE_GROUP;

    const SUB: &str = "04cf684a-d41f-4550-9f70-7708a3a2283b";

    fn sub() -> SubscriptionId {
        SubscriptionId::parse(SUB).unwrap()
    }

    /// A `vault.json` written before vaults had a resource group reads as in `pgvault`.
    #[tokio::test]
    async fn a_vault_without_a_group_is_in_pgvault() {
        let store = VaultStore::open("memory://").unwrap();
        let group = ResourceGroup::parse("Sales-RG").unwrap();
        let vault = Vault::create(store.clone(), "V", &group, Utc::now(), None)
            .await
            .unwrap();
        let mut old: Value = serde_json::to_value(&vault.config).unwrap();
        assert_eq!(old["resourceGroup"], "Sales-RG");
        old.as_object_mut().unwrap().remove("resourceGroup");
        store.put_json(&paths::vault_config(), &old).await.unwrap();
        let reopened = Vault::open(store).await.unwrap().in_subscription(sub());
        assert_eq!(reopened.resource_group().as_str(), DEFAULT_RESOURCE_GROUP);
        assert_eq!(
            reopened.to_azure_json()["id"],
            format!(
                "/subscriptions/{SUB}/resourceGroups/pgvault/providers/Microsoft.DataProtection/backupVaults/V"
            )
        );
    }

    /// Ids are built from the vault's place when printed: a stored policy or instance written
    /// with an old `/providers/...` id prints under the vault's subscription and group.
    #[tokio::test]
    async fn stored_ids_are_rebuilt_when_read() {
        let store = VaultStore::open("memory://").unwrap();
        let group = ResourceGroup::parse("rg1").unwrap();
        let vault = Vault::create(store.clone(), "V", &group, Utc::now(), None)
            .await
            .unwrap()
            .in_subscription(sub());
        let arm = vault.arm();
        let policy = crate::model::templates::default_policy_template(
            crate::model::policy::DatasourceType::AzureDatabaseForPostgreSQLFlexibleServer,
        );
        vault.create_policy("P", &policy).await.unwrap();
        let mut stored: Value = store.get_json(&paths::policy("P")).await.unwrap();
        assert_eq!(stored["id"], arm.policy_id("P"));
        stored["id"] = json!("/providers/Microsoft.DataProtection/backupVaults/V/backupPolicies/P");
        store.put_json(&paths::policy("P"), &stored).await.unwrap();
        assert_eq!(
            vault.policy_json("P").await.unwrap()["id"],
            arm.policy_id("P")
        );

        let instance: BackupInstanceRequest = serde_json::from_value(json!({
            "name": "db",
            "properties": {
                "dataSourceInfo": {"resourceID": "postgres://h:5432/db", "objectType": "Datasource",
                    "datasourceType": "Microsoft.DBforPostgreSQL/flexibleServers/databases",
                    "resourceName": "db"},
                "datasourceAuthCredentials": {
                    "objectType": "SecretStoreBasedAuthCredentials",
                    "secretStoreResource": {"secretStoreType": "Environment", "uri": "env:UNUSED"},
                },
                "policyInfo": {"policyId": "/providers/Microsoft.DataProtection/backupVaults/V/backupPolicies/P"},
                "objectType": "BackupInstance",
                "friendlyName": "h\\db",
            }
        }))
        .unwrap();
        let json = vault.instance_json(&instance);
        assert_eq!(json["id"], arm.instance_id("db"));
        assert_eq!(
            json["properties"]["policyInfo"]["policyId"],
            arm.policy_id("P")
        );
    }

    #[tokio::test]
    async fn a_policy_id_of_another_vault_is_refused() {
        let store = VaultStore::open("memory://").unwrap();
        let vault = Vault::create(store, "V", &Default::default(), Utc::now(), None)
            .await
            .unwrap();
        assert_eq!(vault.policy_name_of("P").unwrap(), "P");
        assert_eq!(
            vault.policy_name_of(&vault.arm().policy_id("P")).unwrap(),
            "P"
        );
        let other = VaultRef::new(Default::default(), Default::default(), "W");
        let err = vault.policy_name_of(&other.policy_id("P")).unwrap_err();
        assert_eq!(err.code, ErrorCode::UserErrorResourceInAnotherVault);
        assert!(err.message.contains("policyInfo.policyId"), "{err:?}");
    }
}
