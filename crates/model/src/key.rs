//! Key references: what opens an encrypted vault. A vault's random data key is wrapped by one or
//! more key-encryption keys, each named by a [`KeyRef`]: `env:NAME` or `file:PATH` (a
//! passphrase or key file, read as a secret reference is) or an Azure Key Vault key,
//! `https://<vault>.vault.azure.net/keys/<name>[/<version>]` ([`KeyVaultKeyRef`]), which wraps
//! and unwraps through Key Vault's `wrapKey` / `unwrapKey` operations (Azure's customer-managed
//! keys) so that its private half never leaves Key Vault. Parsing only: the client is
//! `pgvault_azure::keyvault`.
//!
//! The rules of [`crate::secret`] hold here too: a reference is not a secret and is shown and
//! stored freely (the registry and `vault.json` keep references, never keys); key bytes are
//! [`SecretBytes`], which never print; and an error never repeats the input it rejected, which
//! may be a passphrase pasted where its reference belongs.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::code::ErrorCode;
use crate::secret::{
    EnvVarName, SecretRef, SecretRefError, VaultObject, VaultObjectUri, strip_prefix_ignore_case,
};

/// A key-encryption key's reference, as `--encryption-key-uri` and `backup-vault key add` take
/// it. `Display` gives the canonical reference back, and serde uses that same string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum KeyRef {
    /// `env:NAME`: an environment variable of the pgvault process holding a passphrase.
    Env(EnvVarName),
    /// `file:PATH` or `file:///abs/path`: a file holding a passphrase or a key.
    File(PathBuf),
    /// An Azure Key Vault key, which wraps the data key without ever leaving Key Vault.
    KeyVault(KeyVaultKeyRef),
}

impl FromStr for KeyRef {
    type Err = KeyRefError;

    /// Parses `env:NAME`, `file:PATH`, `file:///abs/path` (exactly as secret references) or a
    /// Key Vault key URI. The scheme is matched case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let is_url = strip_prefix_ignore_case(s, "https://").is_some()
            || strip_prefix_ignore_case(s, "http://").is_some();
        if is_url {
            return Ok(KeyRef::KeyVault(s.parse()?));
        }
        let local = strip_prefix_ignore_case(s, "env:").is_some()
            || strip_prefix_ignore_case(s, "file:").is_some();
        if !local {
            return Err(KeyRefError::Unrecognised);
        }
        match s.parse::<SecretRef>() {
            Ok(SecretRef::Env(name)) => Ok(KeyRef::Env(name)),
            Ok(SecretRef::File(path)) => Ok(KeyRef::File(path)),
            Ok(SecretRef::KeyVault(_)) | Err(SecretRefError::Unrecognised) => {
                Err(KeyRefError::Unrecognised)
            }
            Err(SecretRefError::InvalidEnvName) => Err(KeyRefError::InvalidEnvName),
            Err(_) => Err(KeyRefError::InvalidFileRef),
        }
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyRef::Env(name) => write!(f, "env:{name}"),
            KeyRef::File(path) => write!(f, "file:{}", path.display()),
            KeyRef::KeyVault(key) => key.fmt(f),
        }
    }
}

impl TryFrom<String> for KeyRef {
    type Error = KeyRefError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<KeyRef> for String {
    fn from(r: KeyRef) -> String {
        r.to_string()
    }
}

/// An Azure Key Vault key, `https://<vault>.<cloud suffix>/keys/<name>[/<version>]` (the
/// portal's "Key Identifier"), or `http(s)://127.0.0.1:PORT/keys/<name>[/<version>]` for a
/// double on this machine. Clouds are told apart by the host's suffix, as for secret URIs.
///
/// Without a version, Key Vault wraps with the key's current version and answers with the
/// versioned key id (`kid`): that id, not the reference given, is what must be kept beside the
/// wrapped key, because after a rotation only the version that wrapped a key unwraps it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyVaultKeyRef {
    vault: String,
    dns_suffix: String,
    name: String,
    version: Option<String>,
}

impl KeyVaultKeyRef {
    /// The vault's name, the first label of its host (lowercase); `host:port` for a loopback
    /// double.
    pub fn vault_name(&self) -> &str {
        &self.vault
    }

    /// The cloud's Key Vault DNS suffix, starting `vault.`; the scheme for a loopback double.
    pub fn dns_suffix(&self) -> &str {
        &self.dns_suffix
    }

    /// Whether the URI names a loopback double (tests, local development), never a real vault.
    pub fn is_loopback(&self) -> bool {
        !self.dns_suffix.starts_with("vault.")
    }

    /// The key's name.
    pub fn key_name(&self) -> &str {
        &self.name
    }

    /// The pinned version, if any. A key id (`kid`) that Key Vault answered always has one.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// The vault's base URL (`https://<vault>.<suffix>`), for the Key Vault client.
    pub fn vault_url(&self) -> String {
        if self.is_loopback() {
            format!("{}://{}", self.dns_suffix, self.vault)
        } else {
            format!("https://{}.{}", self.vault, self.dns_suffix)
        }
    }

    /// The same key without its version: what wraps with the key's current version.
    pub fn versionless(&self) -> KeyVaultKeyRef {
        KeyVaultKeyRef {
            version: None,
            ..self.clone()
        }
    }

    /// Whether both name the same key of the same vault, whatever their versions. Key Vault's
    /// object names are case-insensitive, so the names are compared as such.
    pub fn same_key(&self, other: &KeyVaultKeyRef) -> bool {
        self.vault == other.vault
            && self.dns_suffix == other.dns_suffix
            && self.name.eq_ignore_ascii_case(&other.name)
    }
}

impl FromStr for KeyVaultKeyRef {
    type Err = KeyRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let VaultObjectUri {
            vault,
            dns_suffix,
            name,
            version,
        } = VaultObjectUri::parse(s.trim(), VaultObject::Key)
            .map_err(KeyRefError::InvalidKeyVaultKeyUri)?;
        Ok(KeyVaultKeyRef {
            vault,
            dns_suffix,
            name,
            version,
        })
    }
}

impl fmt::Display for KeyVaultKeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/keys/{}", self.vault_url(), self.name)?;
        if let Some(v) = &self.version {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl TryFrom<String> for KeyVaultKeyRef {
    type Error = KeyRefError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<KeyVaultKeyRef> for String {
    fn from(r: KeyVaultKeyRef) -> String {
        r.to_string()
    }
}

/// A key-wrapping algorithm of Key Vault's `wrapKey` / `unwrapKey`, in its JSON Web Algorithms
/// spelling. pgvault wraps with RSA-OAEP-256 only: Microsoft recommends it and no longer
/// recommends RSA-OAEP (SHA-1) or RSA1_5, which are kept for old data, not offered here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum KeyWrapAlgorithm {
    /// RSAES-OAEP with SHA-256 and MGF1 with SHA-256; works with RSA keys of 2048, 3072 and
    /// 4096 bits.
    RsaOaep256,
}

impl KeyWrapAlgorithm {
    /// The name Key Vault's `alg` takes and answers.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyWrapAlgorithm::RsaOaep256 => "RSA-OAEP-256",
        }
    }
}

impl fmt::Display for KeyWrapAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyWrapAlgorithm {
    type Err = KeyRefError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "RSA-OAEP-256" => Ok(KeyWrapAlgorithm::RsaOaep256),
            _ => Err(KeyRefError::UnsupportedAlgorithm),
        }
    }
}

impl TryFrom<String> for KeyWrapAlgorithm {
    type Error = KeyRefError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<KeyWrapAlgorithm> for String {
    fn from(a: KeyWrapAlgorithm) -> String {
        a.as_str().to_owned()
    }
}

/// Key bytes (a vault's data key once unwrapped): the byte counterpart of
/// [`crate::secret::SecretValue`]. `Debug` shows `<redacted>`, there is no `Display` and no
/// `Serialize`, and the bytes are reached only through [`SecretBytes::expose_secret`].
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(bytes)
    }

    /// The key bytes. Call sites pass them straight to the cipher and keep no copy.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Drop for SecretBytes {
    /// Best effort, as [`crate::secret::SecretValue`]'s: the bytes are overwritten before the
    /// allocator gets them back; copies made earlier are out of reach.
    fn drop(&mut self) {
        self.0.fill(0);
        std::hint::black_box(&self.0);
    }
}

/// A key reference that could not be parsed. The messages never repeat the rejected input: it
/// may be a passphrase pasted in the wrong place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRefError {
    #[error(
        "the key reference is not one pgvault knows (it is not shown, in case it is the key \
         itself); use env:NAME or file:PATH (a passphrase or key file), or an Azure Key Vault \
         key URI https://<vault>.vault.azure.net/keys/<name>[/<version>]"
    )]
    Unrecognised,
    #[error(
        "the env: key reference has an invalid variable name; use ASCII letters, digits and \
         underscores, not starting with a digit (env:PGVAULT_VAULT_PASSPHRASE)"
    )]
    InvalidEnvName,
    #[error(
        "the file: key reference is invalid; use file:PATH, or file:///absolute/path with no \
         host, query or fragment"
    )]
    InvalidFileRef,
    #[error(
        "the Azure Key Vault key URI is invalid: {0}; expected \
         https://<vault>.vault.azure.net/keys/<name>[/<version>]"
    )]
    InvalidKeyVaultKeyUri(&'static str),
    #[error("unsupported key-wrapping algorithm; pgvault wraps with RSA-OAEP-256")]
    UnsupportedAlgorithm,
}

impl KeyRefError {
    /// The Azure-style error code.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::UserErrorInvalidKeyReference
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERSION: &str = "0123456789abcdef0123456789ABCDEF";

    #[test]
    fn parses_key_references() {
        let cases: &[(&str, &str)] = &[
            ("env:PGVAULT_PASSPHRASE", "env:PGVAULT_PASSPHRASE"),
            ("  ENV:_k1 ", "env:_k1"),
            ("file:/etc/pgvault/vault.key", "file:/etc/pgvault/vault.key"),
            ("file:relative.key", "file:relative.key"),
            ("file:///etc/pgvault/a%20b.key", "file:/etc/pgvault/a b.key"),
            (
                "https://myvault.vault.azure.net/keys/pgvault-kek",
                "https://myvault.vault.azure.net/keys/pgvault-kek",
            ),
            (
                "https://MyVault.Vault.Azure.Net/keys/kek/",
                "https://myvault.vault.azure.net/keys/kek",
            ),
            (
                "https://kv-cn-1.vault.azure.cn/keys/Kek1",
                "https://kv-cn-1.vault.azure.cn/keys/Kek1",
            ),
            (
                "https://gov.vault.usgovcloudapi.net/keys/k",
                "https://gov.vault.usgovcloudapi.net/keys/k",
            ),
            (
                "HTTPS://myvault.vault.azure.net:443/keys/k",
                "https://myvault.vault.azure.net/keys/k",
            ),
            (
                "http://127.0.0.1:8200/keys/kek",
                "http://127.0.0.1:8200/keys/kek",
            ),
        ];
        for (input, shown) in cases {
            let r: KeyRef = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), *shown, "{input}");
            assert_eq!(r.to_string().parse::<KeyRef>().unwrap(), r, "{input}");
        }
    }

    #[test]
    fn key_vault_key_parts() {
        let uri = format!("https://myvault.vault.azure.net/keys/pgvault-kek/{VERSION}");
        let KeyRef::KeyVault(key) = uri.parse().unwrap() else {
            panic!("not a Key Vault key");
        };
        assert_eq!(key.vault_name(), "myvault");
        assert_eq!(key.dns_suffix(), "vault.azure.net");
        assert_eq!(key.key_name(), "pgvault-kek");
        assert_eq!(key.version(), Some(VERSION));
        assert_eq!(key.vault_url(), "https://myvault.vault.azure.net");
        assert!(!key.is_loopback());
        assert_eq!(key.to_string(), uri);
        let latest = key.versionless();
        assert_eq!(latest.version(), None);
        assert_eq!(
            latest.to_string(),
            "https://myvault.vault.azure.net/keys/pgvault-kek"
        );
        assert!(latest.same_key(&key));
        let other: KeyVaultKeyRef = "https://othervault.vault.azure.net/keys/pgvault-kek"
            .parse()
            .unwrap();
        assert!(!other.same_key(&key));
        let local: KeyVaultKeyRef = format!("http://127.0.0.1:9/keys/kek/{VERSION}")
            .parse()
            .unwrap();
        assert!(local.is_loopback());
        assert_eq!(local.vault_url(), "http://127.0.0.1:9");
    }

    #[test]
    fn rejects_bad_key_references() {
        use KeyRefError as E;
        type Check = fn(&KeyRefError) -> bool;
        fn reason(e: &KeyRefError, text: &str) -> bool {
            matches!(e, KeyRefError::InvalidKeyVaultKeyUri(m) if m.contains(text))
        }
        let cases: &[(&str, Check)] = &[
            ("", |e| *e == E::Unrecognised),
            ("/etc/pgvault/vault.key", |e| *e == E::Unrecognised),
            ("correct horse battery staple", |e| *e == E::Unrecognised),
            ("env:", |e| *e == E::InvalidEnvName),
            ("env:1KEY", |e| *e == E::InvalidEnvName),
            ("file:", |e| *e == E::InvalidFileRef),
            ("file://otherhost/etc/k", |e| *e == E::InvalidFileRef),
            ("http://myvault.vault.azure.net/keys/k", |e| {
                reason(e, "https")
            }),
            ("https://myvault.azure.net/keys/k", |e| reason(e, "host")),
            ("https://ab.vault.azure.net/keys/k", |e| {
                reason(e, "vault name")
            }),
            ("https://myvault.vault.azure.net/keys/bad_name", |e| {
                reason(e, "key name")
            }),
            ("https://myvault.vault.azure.net/keys/k/v1", |e| {
                reason(e, "key version")
            }),
            ("https://myvault.vault.azure.net/keys/", |e| {
                reason(e, "/keys/<name>")
            }),
            ("https://myvault.vault.azure.net/keys/k/a/b", |e| {
                reason(e, "/keys/<name>")
            }),
            (
                "https://myvault.vault.azure.net/keys/k?api-version=7.4",
                |e| reason(e, "query"),
            ),
            ("https://myvault.vault.azure.net:8443/keys/k", |e| {
                reason(e, "port")
            }),
            ("https://u:p@myvault.vault.azure.net/keys/k", |e| {
                reason(e, "credentials")
            }),
            ("http://10.0.0.1:8200/keys/k", |e| reason(e, "https")),
            // A secret's URI where a key's belongs is named as such.
            ("https://myvault.vault.azure.net/secrets/pg-conn", |e| {
                reason(e, "names a secret")
            }),
            ("http://127.0.0.1:8200/secrets/pg", |e| {
                reason(e, "names a secret")
            }),
        ];
        for (input, check) in cases {
            let err = input.parse::<KeyRef>().unwrap_err();
            assert!(check(&err), "{input:?} gave {err:?}");
            assert_eq!(err.code(), ErrorCode::UserErrorInvalidKeyReference);
        }
    }

    #[test]
    fn a_key_uri_is_not_a_secret_uri() {
        let err = "https://myvault.vault.azure.net/keys/kek"
            .parse::<SecretRef>()
            .unwrap_err();
        assert!(err.to_string().contains("names a key"), "{err}");
        assert!(err.to_string().contains("/secrets/"), "{err}");
    }

    #[test]
    fn errors_do_not_echo_a_pasted_key() {
        let pasted = [
            "Hunter2Hunter2",
            "env:Hunter2 Hunter2",
            "file://Hunter2Hunter2/k",
            "https://Hunter2Hunter2-.vault.azure.net/keys/k",
            "https://myvault.vault.azure.net/keys/Hunter2Hunter2_",
            "https://myvault.vault.azure.net/secrets/Hunter2Hunter2",
        ];
        for input in pasted {
            let err = input.parse::<KeyRef>().unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains("Hunter2"), "{input:?} echoed in {shown}");
        }
    }

    #[test]
    fn serde_uses_the_reference_string() {
        let r: KeyRef =
            serde_json::from_str(r#""https://myvault.vault.azure.net/keys/kek""#).unwrap();
        assert!(matches!(r, KeyRef::KeyVault(_)));
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#""https://myvault.vault.azure.net/keys/kek""#
        );
        assert!(serde_json::from_str::<KeyRef>(r#""passphrase""#).is_err());
        let kid: KeyVaultKeyRef = serde_json::from_str(&format!(
            r#""https://myvault.vault.azure.net/keys/kek/{VERSION}""#
        ))
        .unwrap();
        assert_eq!(kid.version(), Some(VERSION));
        let alg: KeyWrapAlgorithm = serde_json::from_str(r#""RSA-OAEP-256""#).unwrap();
        assert_eq!(alg, KeyWrapAlgorithm::RsaOaep256);
        assert_eq!(serde_json::to_string(&alg).unwrap(), r#""RSA-OAEP-256""#);
        assert!(serde_json::from_str::<KeyWrapAlgorithm>(r#""RSA1_5""#).is_err());
    }

    #[test]
    fn secret_bytes_are_redacted() {
        let b = SecretBytes::new(vec![0x41; 32]);
        assert_eq!(format!("{b:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(b.clone())), "Some(<redacted>)");
        assert_eq!(b.expose_secret(), &[0x41; 32][..]);
        assert_eq!(b.len(), 32);
    }
}
