//! An encrypted vault's keys: making key slots from key references and opening the vault
//! with them. The sealing itself is the store's (`store::crypt`); this module does the IO a
//! slot needs (an environment variable, a key file, Azure Key Vault's `wrapKey` and
//! `unwrapKey`) and says, when nothing opens a vault, which references were tried and why
//! each failed, without ever showing what they hold.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use chrono::{DateTime, Utc};

use super::{Error, Result};
use crate::limits;
use crate::model::code::ErrorCode;
use crate::store::crypt::{self, DataKey, EncryptionSettings, KeySlot, KeySlotError, KeySource};

pub use crate::model::key::KeyRef as KeyReference;

/// Parses a key reference (`--encryption-key-uri`, `backup-vault key add --key-uri`).
pub fn parse_reference(reference: &str) -> Result<KeyReference> {
    reference.parse::<KeyReference>().map_err(|e| {
        Error::new(
            e.code(),
            format!("the encryption key reference is not one pgvault knows: {e}"),
        )
    })
}

/// What an `env:` or `file:` reference holds (a passphrase or a key), or why it cannot be
/// read, said without anything it holds.
fn material_of(reference: &KeyReference) -> std::result::Result<Vec<u8>, String> {
    match reference {
        KeyReference::Env(name) => {
            use std::os::unix::ffi::OsStrExt as _;
            match std::env::var_os(name.as_str()) {
                Some(v) if v.is_empty() => Err("the environment variable is empty".into()),
                Some(v) => Ok(v.as_bytes().to_vec()),
                None => Err("the environment variable is not set".into()),
            }
        }
        KeyReference::File(path) => limits::read(path, "key file", limits::SECRET_BYTES)
            .map_err(|e| match e.io_kind() {
                Some(std::io::ErrorKind::NotFound) => "the file does not exist".to_owned(),
                Some(std::io::ErrorKind::PermissionDenied) => "the file may not be read".to_owned(),
                _ => e.to_string(),
            })
            .and_then(|bytes| {
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    Err("the file is empty".to_owned())
                } else {
                    Ok(bytes)
                }
            }),
        KeyReference::KeyVault(_) => Err("a Key Vault key holds no material here".into()),
    }
}

/// Unlocked data keys, by vault id and slot: a passphrase costs an argon2id derivation and a
/// Key Vault key a round trip, once per process rather than once per operation. The key is
/// in this process's memory while it serves the vault, as it must be to read and write it.
static UNLOCKED: LazyLock<Mutex<HashMap<SlotKey, DataKey>>> = LazyLock::new(Default::default);

/// A slot as the cache knows it: vault id, slot id, wrapped key (a rewrapped slot is new).
type SlotKey = (String, String, String);

fn cache_key(vault_id: &str, slot: &KeySlot) -> SlotKey {
    (
        vault_id.to_owned(),
        slot.id.clone(),
        slot.wrapped_key.clone(),
    )
}

/// Opens an encrypted vault: tries each slot with the reference it records, in order, and
/// returns the data key of the first that opens. Refuses with every reference tried and why
/// it failed when none does; never falls back to anything.
pub async fn unlock(
    vault_name: &str,
    vault_id: &str,
    settings: &EncryptionSettings,
) -> Result<DataKey> {
    if settings.algorithm != crypt::ALGORITHM {
        return Err(Error::new(
            ErrorCode::VaultFormatTooNew,
            format!(
                "vault `{vault_name}` is encrypted with {}, which this pgvault does not know; upgrade pgvault",
                settings.algorithm
            ),
        ));
    }
    let mut tried = Vec::new();
    for slot in &settings.keys {
        if let Some(key) = UNLOCKED
            .lock()
            .ok()
            .and_then(|c| c.get(&cache_key(vault_id, slot)).cloned())
        {
            return Ok(key);
        }
        match open_slot(vault_id, slot).await {
            Ok(key) => {
                if let Ok(mut c) = UNLOCKED.lock() {
                    c.insert(cache_key(vault_id, slot), key.clone());
                }
                return Ok(key);
            }
            Err(why) => tried.push(format!("`{}` (slot {}): {why}", slot.reference, slot.id)),
        }
    }
    Err(Error::new(
        ErrorCode::UserErrorVaultKeyUnavailable,
        format!(
            "vault `{vault_name}` is encrypted and none of its keys opened it; tried {}",
            if tried.is_empty() {
                "nothing: vault.json lists no key".to_owned()
            } else {
                tried.join("; ")
            }
        ),
    ))
}

/// One slot opened with its own reference; the error says why not, without a secret.
async fn open_slot(vault_id: &str, slot: &KeySlot) -> std::result::Result<DataKey, String> {
    let reference = parse_reference(&slot.reference).map_err(|e| e.message)?;
    match (slot.source, &reference) {
        (KeySource::AzureKeyVault, KeyReference::KeyVault(_)) => {
            let kid = slot
                .key_vault_kid
                .as_deref()
                .ok_or("the slot does not record the Key Vault key version that wrapped it")?;
            let wrapped = slot.wrapped_bytes().map_err(|e| e.to_string())?;
            let plain = key_vault::unwrap(kid, &wrapped).await?;
            DataKey::from_unwrapped(plain.expose_secret())
                .ok_or_else(|| "Key Vault unwrapped something that is not a 256-bit key".to_owned())
        }
        (
            KeySource::Passphrase | KeySource::KeyFile,
            KeyReference::Env(_) | KeyReference::File(_),
        ) => {
            let material = material_of(&reference)?;
            // argon2id is CPU work: off the async workers.
            let (vault_id, slot, source) = (vault_id.to_owned(), slot.clone(), slot.source);
            tokio::task::spawn_blocking(move || {
                crypt::unwrap_with_material(&vault_id, &slot, &material)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| match e {
                KeySlotError::WrongKey => format!(
                    "it holds another {} than the one this slot was made with",
                    match source {
                        KeySource::Passphrase => "passphrase",
                        _ => "key",
                    }
                ),
                other => other.to_string(),
            })
        }
        _ => Err(format!(
            "the slot is a {} slot but its reference is not one",
            slot.source.as_str()
        )),
    }
}

/// A new slot wrapping `data_key` with the key `reference` names.
pub async fn new_slot(
    vault_id: &str,
    reference: &str,
    data_key: &DataKey,
    now: DateTime<Utc>,
) -> Result<KeySlot> {
    let parsed = parse_reference(reference)?;
    let refused = |why: String| {
        Error::new(
            ErrorCode::UserErrorInvalidEncryptionKey,
            format!("the encryption key `{reference}` cannot be used: {why}"),
        )
    };
    match &parsed {
        KeyReference::KeyVault(uri) => {
            let (kid, wrapped) = key_vault::wrap(uri, data_key.expose_for_wrapping())
                .await
                .map_err(|e| {
                    Error::new(
                        e.0,
                        format!("the encryption key `{reference}` cannot be used: {}", e.1),
                    )
                })?;
            Ok(crypt::key_vault_slot(reference, &kid, &wrapped, now))
        }
        KeyReference::Env(_) | KeyReference::File(_) => {
            let material = material_of(&parsed).map_err(refused)?;
            let (vault_id, reference, data_key) =
                (vault_id.to_owned(), reference.to_owned(), data_key.clone());
            tokio::task::spawn_blocking(move || {
                crypt::wrap_with_material(&vault_id, &reference, &material, &data_key, now)
            })
            .await
            .map_err(|e| refused(e.to_string()))?
            .map_err(|e| refused(e.to_string()))
        }
    }
}

/// The settings of a new encrypted vault: a fresh data key and one slot for `reference`.
pub async fn new_encryption(
    vault_id: &str,
    reference: &str,
    now: DateTime<Utc>,
) -> Result<(EncryptionSettings, DataKey)> {
    let data_key = DataKey::generate();
    let slot = new_slot(vault_id, reference, &data_key, now).await?;
    Ok((
        EncryptionSettings {
            algorithm: crypt::ALGORITHM.to_owned(),
            keys: vec![slot],
        },
        data_key,
    ))
}

/// Azure Key Vault's `wrapKey` and `unwrapKey` (RSA-OAEP-256), through the process's Key
/// Vault client: the key never leaves Key Vault, and a slot keeps the versioned `kid` that
/// wrapped, the only version that unwraps.
mod key_vault {
    use crate::model::code::ErrorCode;
    use crate::model::key::{KeyVaultKeyRef, KeyWrapAlgorithm, SecretBytes};
    use crate::secrets::keyvault;

    const ALG: KeyWrapAlgorithm = KeyWrapAlgorithm::RsaOaep256;

    pub async fn wrap(
        uri: &KeyVaultKeyRef,
        key: &[u8; 32],
    ) -> Result<(String, Vec<u8>), (ErrorCode, String)> {
        let client = keyvault::process_key_client().map_err(|e| (e.code, e.reason))?;
        let wrapped = client
            .wrap_key(uri, ALG, key)
            .await
            .map_err(|e| (e.code, e.reason))?;
        Ok((wrapped.kid.to_string(), wrapped.value))
    }

    pub async fn unwrap(kid: &str, wrapped: &[u8]) -> Result<SecretBytes, String> {
        let kid: KeyVaultKeyRef = kid.parse().map_err(|e| format!("{e}"))?;
        let client = keyvault::process_key_client().map_err(|e| e.reason)?;
        client
            .unwrap_key(&kid, ALG, wrapped)
            .await
            .map_err(|e| format!("{} ({})", e.reason, e.code.as_str()))
    }
}
