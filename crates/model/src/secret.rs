//! Secret references and secret values: where an instance's connection string lives, and the
//! string itself once read. Parsing only: reading a secret is `pgvault_core::secrets`.
//!
//! pgvault follows Azure Backup's key-vault authentication model: the vault never stores a
//! database credential. A backup instance stores a [`SecretRef`] (an Azure Key Vault secret URI,
//! `env:NAME` or `file:PATH`), and each job resolves it at use into a [`SecretValue`], so the
//! database admin can rotate the credential without touching pgvault.
//!
//! Two rules hold here, and the tests check both:
//! - A reference is not a secret: it is shown, logged and serialised freely. A value is a
//!   secret: [`SecretValue`] prints `<redacted>` and has no `Serialize`.
//! - An error never echoes text it could not parse. A user who passes the connection string
//!   itself where a reference belongs (`--secret-store-uri "Server=..;Password=.."`) must not see
//!   the password come back in the error, in the terminal's scrollback or in a job record. Errors
//!   name what was wrong and show only the parts of the input that already passed validation.

use crate::code::ErrorCode;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a secret is kept: Azure's `--secret-store-type`, plus the two stores pgvault adds for
/// running without Azure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SecretStoreType {
    /// An Azure Key Vault secret, named by its secret URI (Azure's only store type).
    AzureKeyVault,
    /// A file holding the connection string (pgvault).
    File,
    /// An environment variable holding the connection string (pgvault).
    Environment,
}

impl SecretStoreType {
    /// The canonical spelling, as Azure's CLI and PowerShell write it.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretStoreType::AzureKeyVault => "AzureKeyVault",
            SecretStoreType::File => "File",
            SecretStoreType::Environment => "Environment",
        }
    }
}

impl fmt::Display for SecretStoreType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SecretStoreType {
    type Err = SecretRefError;

    /// Case-insensitive, as Azure's CLI accepts `azurekeyvault` as well as `AzureKeyVault`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            SecretStoreType::AzureKeyVault,
            SecretStoreType::File,
            SecretStoreType::Environment,
        ]
        .into_iter()
        .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
        .ok_or(SecretRefError::UnknownStoreType)
    }
}

impl TryFrom<String> for SecretStoreType {
    type Error = SecretRefError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<SecretStoreType> for String {
    fn from(t: SecretStoreType) -> String {
        t.as_str().to_owned()
    }
}

/// A reference to a secret holding a connection string. Parsed once at the boundary (CLI,
/// script, vault file); a value of this type is always well formed.
///
/// `Display` gives the canonical reference back (`env:NAME`, `file:PATH`, or the Key Vault
/// URI), and serde uses that same string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SecretRef {
    /// `env:NAME`: the value of an environment variable of the pgvault process.
    Env(EnvVarName),
    /// `file:PATH` or `file:///abs/path`: the content of a file, less one trailing newline.
    File(PathBuf),
    /// `https://<vault>.vault.azure.net/secrets/<name>[/<version>]`.
    KeyVault(KeyVaultSecretUri),
}

/// The name of an environment variable, restricted to the portable shell charset so that it
/// can be set from any shell, service manager or CI system.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EnvVarName(String);

impl EnvVarName {
    /// Checks the portable charset: ASCII letters, digits and `_`, not starting with a digit.
    pub fn new(name: &str) -> Result<Self, SecretRefError> {
        let mut chars = name.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
            Ok(EnvVarName(name.to_owned()))
        } else {
            Err(SecretRefError::InvalidEnvName)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EnvVarName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An Azure Key Vault secret URI, split into its parts. The DNS suffix is kept from the URI
/// rather than assumed, so vaults in sovereign clouds (`vault.azure.cn`,
/// `vault.usgovcloudapi.net`, ...) work without a table of clouds here.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyVaultSecretUri {
    vault: String,
    dns_suffix: String,
    name: String,
    version: Option<String>,
}

impl KeyVaultSecretUri {
    /// The vault's name, the first label of its host (lowercase); `host:port` for a loopback
    /// double.
    pub fn vault_name(&self) -> &str {
        &self.vault
    }

    /// The cloud's Key Vault DNS suffix, starting `vault.` (`vault.azure.net` in public Azure);
    /// the scheme for a loopback double.
    pub fn dns_suffix(&self) -> &str {
        &self.dns_suffix
    }

    /// Whether the URI names a loopback host (`http(s)://127.0.0.1:PORT`), which is for tests
    /// and local doubles of Key Vault only, never a real vault. `vault` then holds `host:port`
    /// and `dns_suffix` the scheme: a real suffix starts `vault.`, a scheme never does, and no
    /// extra field keeps `SecretError` small.
    pub fn is_loopback(&self) -> bool {
        !self.dns_suffix.starts_with("vault.")
    }

    /// The secret's name.
    pub fn secret_name(&self) -> &str {
        &self.name
    }

    /// The pinned version, if any; without one the latest version is read at each use, which is
    /// what lets the database admin rotate the password without telling pgvault.
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

    fn parse(input: &str) -> Result<Self, SecretRefError> {
        let VaultObjectUri {
            vault,
            dns_suffix,
            name,
            version,
        } = VaultObjectUri::parse(input, VaultObject::Secret)
            .map_err(SecretRefError::InvalidKeyVaultUri)?;
        Ok(KeyVaultSecretUri {
            vault,
            dns_suffix,
            name,
            version,
        })
    }
}

/// The kinds of Key Vault object pgvault names by URI: a secret (a connection string) or a key
/// (one that wraps a vault's data key, [`crate::key`]). Both URIs have one shape,
/// `https://<vault>.<suffix>/<collection>/<name>[/<version>]`, checked by one parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VaultObject {
    Secret,
    Key,
}

impl VaultObject {
    fn collection(self) -> &'static str {
        match self {
            VaultObject::Secret => "secrets",
            VaultObject::Key => "keys",
        }
    }
}

/// A Key Vault object URI split into its parts: see [`KeyVaultSecretUri`] for what each holds
/// (a loopback double keeps `host:port` in `vault` and its scheme in `dns_suffix`).
pub(crate) struct VaultObjectUri {
    pub(crate) vault: String,
    pub(crate) dns_suffix: String,
    pub(crate) name: String,
    pub(crate) version: Option<String>,
}

impl VaultObjectUri {
    /// Parses and checks a secret or key URI. The error is the reason, never the input.
    pub(crate) fn parse(input: &str, kind: VaultObject) -> Result<Self, &'static str> {
        let url = url::Url::parse(input).map_err(|_| "it is not a valid URL")?;
        if is_loopback(&url) {
            return Self::parse_loopback(&url, kind);
        }
        if url.scheme() != "https" {
            return Err("Key Vault URIs use https");
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("it must not contain credentials");
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err("it must not have a query or fragment");
        }
        if url.port().is_some() {
            return Err("it must not name a port");
        }
        const BAD_HOST: &str =
            "its host must be <vault>.vault.<cloud suffix>, like myvault.vault.azure.net";
        let Some(url::Host::Domain(host)) = url.host() else {
            return Err(BAD_HOST);
        };
        // The url crate lowercases the host of https URLs, so comparisons below are exact.
        let (vault, dns_suffix) = host.split_once('.').ok_or(BAD_HOST)?;
        let cloud = dns_suffix.strip_prefix("vault.").ok_or(BAD_HOST)?;
        // A cloud suffix has at least two labels (azure.net, azure.cn, usgovcloudapi.net).
        if !cloud.contains('.') || cloud.split('.').any(|l| !is_dns_label(l)) {
            return Err(BAD_HOST);
        }
        validate_vault_name(vault)?;
        let (name, version) = object_path(&url, kind)?;
        Ok(VaultObjectUri {
            vault: vault.to_owned(),
            dns_suffix: dns_suffix.to_owned(),
            name,
            version,
        })
    }

    /// `http(s)://127.0.0.1:PORT/<collection>/<name>[/<version>]`: a Key Vault double on this
    /// machine (tests, local development). Plain http is allowed only here, as nothing leaves
    /// the machine.
    fn parse_loopback(url: &url::Url, kind: VaultObject) -> Result<Self, &'static str> {
        if !url.username().is_empty() || url.password().is_some() {
            return Err("it must not contain credentials");
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err("it must not have a query or fragment");
        }
        let host = url.host_str().unwrap_or_default().to_owned();
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        };
        let (name, version) = object_path(url, kind)?;
        Ok(VaultObjectUri {
            vault: authority,
            dns_suffix: url.scheme().to_owned(),
            name,
            version,
        })
    }
}

/// The `/<collection>/<name>[/<version>]` path of a secret or key URI, checked. A URI of the
/// other kind (a key's where a secret's belongs, or the reverse) is named as such: both are
/// copied from the same portal page.
fn object_path(
    url: &url::Url,
    kind: VaultObject,
) -> Result<(String, Option<String>), &'static str> {
    let segments: Vec<&str> = url.path_segments().map(|s| s.collect()).unwrap_or_default();
    // Tolerate one trailing slash (`.../secrets/name/`), as the Azure portal copies it.
    let segments = match segments.split_last() {
        Some((&"", rest)) => rest,
        _ => &segments[..],
    };
    let (name, version) = match segments {
        [c, name] if *c == kind.collection() => (*name, None),
        [c, name, version] if *c == kind.collection() => (*name, Some(*version)),
        ["keys", ..] if kind == VaultObject::Secret => {
            return Err(
                "its path names a key (/keys/), not a secret: the connection string is \
                 a Key Vault secret, whose URI has /secrets/<name>",
            );
        }
        ["secrets", ..] if kind == VaultObject::Key => {
            return Err(
                "it names a secret (/secrets/), not a key: a vault's encryption key is \
                 a Key Vault key (RSA), whose URI has /keys/<name>",
            );
        }
        _ => {
            return Err(match kind {
                VaultObject::Secret => {
                    "its path must be /secrets/<name> or /secrets/<name>/<version>"
                }
                VaultObject::Key => "its path must be /keys/<name> or /keys/<name>/<version>",
            });
        }
    };
    validate_object_name(name, kind)?;
    if let Some(v) = version {
        validate_object_version(v, kind)?;
    }
    Ok((name.to_owned(), version.map(str::to_owned)))
}

impl fmt::Display for KeyVaultSecretUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/secrets/{}", self.vault_url(), self.name)?;
        if let Some(v) = &self.version {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

fn is_dns_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// Azure's rule for vault names: 3 to 24 characters, letters, digits and hyphens, starting with a
/// letter, ending with a letter or digit, no two hyphens in a row.
fn validate_vault_name(vault: &str) -> Result<(), &'static str> {
    let ok = (3..=24).contains(&vault.len())
        && vault
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && vault.starts_with(|c: char| c.is_ascii_alphabetic())
        && !vault.ends_with('-')
        && !vault.contains("--");
    if ok {
        Ok(())
    } else {
        Err(
            "the vault name must be 3 to 24 letters, digits and single hyphens, \
             starting with a letter and ending with a letter or digit",
        )
    }
}

/// Azure's rule for secret and key names: 1 to 127 letters, digits and hyphens.
fn validate_object_name(name: &str, kind: VaultObject) -> Result<(), &'static str> {
    if (1..=127).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        Ok(())
    } else {
        Err(match kind {
            VaultObject::Secret => "the secret name must be 1 to 127 letters, digits and hyphens",
            VaultObject::Key => "the key name must be 1 to 127 letters, digits and hyphens",
        })
    }
}

/// Key Vault object versions are 32 hexadecimal characters.
fn validate_object_version(version: &str, kind: VaultObject) -> Result<(), &'static str> {
    if version.len() == 32 && version.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(match kind {
            VaultObject::Secret => "the secret version must be 32 hexadecimal characters",
            VaultObject::Key => "the key version must be 32 hexadecimal characters",
        })
    }
}

/// `file:///abs/path` to a path. Only a local (empty or `localhost`) host is meaningful.
fn parse_file_uri(input: &str) -> Result<PathBuf, SecretRefError> {
    let url = url::Url::parse(input).map_err(|_| SecretRefError::InvalidFileRef)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(SecretRefError::InvalidFileRef);
    }
    // `to_file_path` refuses remote hosts and percent-decodes the path.
    url.to_file_path()
        .map_err(|()| SecretRefError::InvalidFileRef)
}

pub(crate) fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

impl SecretRef {
    /// Which store this reference reads from.
    pub fn store_type(&self) -> SecretStoreType {
        match self {
            SecretRef::Env(_) => SecretStoreType::Environment,
            SecretRef::File(_) => SecretStoreType::File,
            SecretRef::KeyVault(_) => SecretStoreType::AzureKeyVault,
        }
    }

    /// Builds a reference from Azure's pair of arguments, `--secret-store-type` and
    /// `--secret-store-uri`, checking that they agree. Besides the prefixed forms `parse`
    /// accepts, `File` takes a bare absolute path and `Environment` a bare variable name.
    pub fn from_store(store_type: SecretStoreType, uri: &str) -> Result<SecretRef, SecretRefError> {
        let uri = uri.trim();
        let parsed = match store_type {
            // A bare absolute path is a File reference whatever the declared type, so that a
            // mismatch is reported as one rather than as an unknown reference.
            _ if uri.starts_with('/') => SecretRef::File(PathBuf::from(uri)),
            SecretStoreType::Environment if EnvVarName::new(uri).is_ok() => {
                SecretRef::Env(EnvVarName::new(uri)?)
            }
            _ => uri.parse()?,
        };
        if parsed.store_type() == store_type {
            Ok(parsed)
        } else {
            Err(SecretRefError::StoreTypeMismatch {
                declared: store_type,
                found: parsed.store_type(),
            })
        }
    }
}

impl FromStr for SecretRef {
    type Err = SecretRefError;

    /// Parses `env:NAME`, `file:PATH`, `file:///abs/path` or a Key Vault secret URI. The scheme
    /// is matched case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if strip_prefix_ignore_case(s, "file://").is_some() {
            return Ok(SecretRef::File(parse_file_uri(s)?));
        }
        if let Some(path) = strip_prefix_ignore_case(s, "file:") {
            if path.is_empty() {
                return Err(SecretRefError::InvalidFileRef);
            }
            return Ok(SecretRef::File(PathBuf::from(path)));
        }
        if let Some(name) = strip_prefix_ignore_case(s, "env:") {
            return Ok(SecretRef::Env(EnvVarName::new(name)?));
        }
        if strip_prefix_ignore_case(s, "https://").is_some()
            || strip_prefix_ignore_case(s, "http://").is_some()
        {
            return Ok(SecretRef::KeyVault(KeyVaultSecretUri::parse(s)?));
        }
        Err(SecretRefError::Unrecognised)
    }
}

impl TryFrom<String> for SecretRef {
    type Error = SecretRefError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<SecretRef> for String {
    fn from(r: SecretRef) -> String {
        r.to_string()
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(name) => write!(f, "env:{name}"),
            SecretRef::File(path) => write!(f, "file:{}", path.display()),
            SecretRef::KeyVault(uri) => uri.fmt(f),
        }
    }
}

/// Whether a URL points at this machine (`127.0.0.0/8`, `::1` or `localhost`): Key Vault and
/// Entra doubles in tests, the only hosts reached over plain http.
pub fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// A resolved secret: a connection string, or whatever a store returned. It cannot be printed,
/// logged or serialised by accident: `Debug` and `Display` show `<redacted>`, there is no
/// `Serialize`, and the text is reached only through [`SecretValue::expose_secret`], a name
/// that stands out in review.
#[derive(Clone)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(value: impl Into<String>) -> Self {
        SecretValue(value.into())
    }

    /// The secret text. Call sites should pass it straight to where it is used (a parser, a
    /// libpq environment variable) and keep no copy.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Drop for SecretValue {
    /// Best effort: overwrite the bytes before the allocator gets them back, so a later core
    /// dump or heap reuse is less likely to show the secret. Copies the program made earlier
    /// (a reallocation, a parser's buffer) are out of reach, which is why this is not a promise.
    fn drop(&mut self) {
        let mut bytes = std::mem::take(&mut self.0).into_bytes();
        bytes.fill(0);
        std::hint::black_box(&bytes);
    }
}

/// A secret reference that could not be parsed. The messages never repeat the rejected input:
/// it may be a secret pasted in the wrong place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretRefError {
    #[error(
        "the secret reference is not one pgvault knows (it is not shown, in case it is the \
         secret itself); use env:NAME, file:PATH, file:///absolute/path or an Azure Key Vault \
         secret URI https://<vault>.vault.azure.net/secrets/<name>"
    )]
    Unrecognised,
    #[error(
        "the env: secret reference has an invalid variable name; use ASCII letters, digits \
         and underscores, not starting with a digit (env:PGVAULT_DB_SECRET)"
    )]
    InvalidEnvName,
    #[error(
        "the file: secret reference is invalid; use file:PATH, or file:///absolute/path with \
         no host, query or fragment"
    )]
    InvalidFileRef,
    #[error(
        "the Azure Key Vault secret URI is invalid: {0}; expected \
         https://<vault>.vault.azure.net/secrets/<name>[/<version>]"
    )]
    InvalidKeyVaultUri(&'static str),
    #[error("unknown secret store type; use AzureKeyVault, File or Environment")]
    UnknownStoreType,
    #[error(
        "the secret store type is {declared} but the secret store URI is a {found} reference; \
         make --secret-store-type and --secret-store-uri agree"
    )]
    StoreTypeMismatch {
        declared: SecretStoreType,
        found: SecretStoreType,
    },
}

impl SecretRefError {
    /// The Azure-style error code.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::UserErrorInvalidSecretStore
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::IntoDeserializer;
    use serde::de::value::{Error as DeError, StrDeserializer};

    const VERSION: &str = "0123456789abcdef0123456789ABCDEF";

    #[test]
    fn parses_references() {
        let cases: &[(&str, &str)] = &[
            ("env:PGVAULT_SECRET", "env:PGVAULT_SECRET"),
            ("ENV:_x1", "env:_x1"),
            ("  env:A  ", "env:A"),
            ("file:/etc/pgvault/db.secret", "file:/etc/pgvault/db.secret"),
            ("file:relative/db.secret", "file:relative/db.secret"),
            (
                "file:///etc/pgvault/db.secret",
                "file:/etc/pgvault/db.secret",
            ),
            ("FILE:///etc/pgvault/a%20b", "file:/etc/pgvault/a b"),
            ("file://localhost/etc/x", "file:/etc/x"),
            (
                "https://myvault.vault.azure.net/secrets/pg-conn",
                "https://myvault.vault.azure.net/secrets/pg-conn",
            ),
            (
                "https://MyVault.Vault.Azure.Net/secrets/pg-conn/",
                "https://myvault.vault.azure.net/secrets/pg-conn",
            ),
            (
                "https://kv-prod-1.vault.azure.cn/secrets/Conn1",
                "https://kv-prod-1.vault.azure.cn/secrets/Conn1",
            ),
            (
                "https://gov.vault.usgovcloudapi.net/secrets/x",
                "https://gov.vault.usgovcloudapi.net/secrets/x",
            ),
            (
                "https://myvault.vault.azure.net:443/secrets/pg",
                "https://myvault.vault.azure.net/secrets/pg",
            ),
        ];
        for (input, shown) in cases {
            let r: SecretRef = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), *shown, "{input}");
            // Display gives a reference back that parses to the same thing.
            assert_eq!(r.to_string().parse::<SecretRef>().unwrap(), r, "{input}");
        }
    }

    #[test]
    fn key_vault_parts() {
        let uri = format!("https://myvault.vault.azure.net/secrets/pg-conn/{VERSION}");
        let SecretRef::KeyVault(kv) = uri.parse().unwrap() else {
            panic!("not a Key Vault reference");
        };
        assert_eq!(kv.vault_name(), "myvault");
        assert_eq!(kv.dns_suffix(), "vault.azure.net");
        assert_eq!(kv.secret_name(), "pg-conn");
        assert_eq!(kv.version(), Some(VERSION));
        assert_eq!(kv.vault_url(), "https://myvault.vault.azure.net");
        assert_eq!(kv.to_string(), uri);
    }

    #[test]
    fn rejects_bad_references() {
        use SecretRefError as E;
        type Check = fn(&SecretRefError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("", |e| *e == E::Unrecognised),
            ("/etc/pgvault/x", |e| *e == E::Unrecognised),
            ("vault:foo", |e| *e == E::Unrecognised),
            ("env:", |e| *e == E::InvalidEnvName),
            ("env:1ABC", |e| *e == E::InvalidEnvName),
            ("env:A-B", |e| *e == E::InvalidEnvName),
            ("env:A B", |e| *e == E::InvalidEnvName),
            ("file:", |e| *e == E::InvalidFileRef),
            ("file://otherhost/etc/x", |e| *e == E::InvalidFileRef),
            ("file:///etc/x?y=1", |e| *e == E::InvalidFileRef),
            (
                "http://myvault.vault.azure.net/secrets/x",
                |e| matches!(e, E::InvalidKeyVaultUri(m) if m.contains("https")),
            ),
            (
                "https://myvault.azure.net/secrets/x",
                |e| matches!(e, E::InvalidKeyVaultUri(m) if m.contains("host")),
            ),
            (
                "https://myvault.vault.net/secrets/x",
                |e| matches!(e, E::InvalidKeyVaultUri(m) if m.contains("host")),
            ),
            (
                "https://10.0.0.1/secrets/x",
                |e| matches!(e, E::InvalidKeyVaultUri(m) if m.contains("host")),
            ),
            (
                "https://ab.vault.azure.net/secrets/x",
                |e| matches!(e, E::InvalidKeyVaultUri(m) if m.contains("vault name")),
            ),
            (
                "https://1vault.vault.azure.net/secrets/x",
                |e| matches!(e, E::InvalidKeyVaultUri(m) if m.contains("vault name")),
            ),
            (
                "https://my--vault.vault.azure.net/secrets/x",
                |e| matches!(e, E::InvalidKeyVaultUri(m) if m.contains("vault name")),
            ),
            (
                "https://myvault-.vault.azure.net/secrets/x",
                |e| matches!(e, E::InvalidKeyVaultUri(m) if m.contains("vault name")),
            ),
            (
                "https://a123456789012345678901234.vault.azure.net/secrets/x",
                |e| matches!(e, E::InvalidKeyVaultUri(m) if m.contains("vault name")),
            ),
            (
                "https://myvault.vault.azure.net/secrets/bad_name",
                |e| matches!(e, E::InvalidKeyVaultUri(m) if m.contains("secret name")),
            ),
            (
                "https://myvault.vault.azure.net/secrets/",
                |e| matches!(e, E::InvalidKeyVaultUri(m) if m.contains("path")),
            ),
            (
                "https://myvault.vault.azure.net/keys/x",
                |e| matches!(e, E::InvalidKeyVaultUri(m) if m.contains("path")),
            ),
            (
                "https://myvault.vault.azure.net/secrets/x/v1",
                |e| matches!(e, E::InvalidKeyVaultUri(m) if m.contains("version")),
            ),
            (
                "https://myvault.vault.azure.net/secrets/x/a/b",
                |e| matches!(e, E::InvalidKeyVaultUri(m) if m.contains("path")),
            ),
            (
                "https://myvault.vault.azure.net/secrets/x?api-version=7.4",
                |e| matches!(e, E::InvalidKeyVaultUri(m) if m.contains("query")),
            ),
            (
                "https://u:p@myvault.vault.azure.net/secrets/x",
                |e| matches!(e, E::InvalidKeyVaultUri(m) if m.contains("credentials")),
            ),
            (
                "https://myvault.vault.azure.net:8443/secrets/x",
                |e| matches!(e, E::InvalidKeyVaultUri(m) if m.contains("port")),
            ),
        ];
        for (input, check) in cases {
            let err = input.parse::<SecretRef>().unwrap_err();
            assert!(check(&err), "{input:?} gave {err:?}");
            assert_eq!(err.code().as_str(), "UserErrorInvalidSecretStore");
        }
        let long_name = format!(
            "https://myvault.vault.azure.net/secrets/{}",
            "a".repeat(128)
        );
        assert!(long_name.parse::<SecretRef>().is_err());
    }

    #[test]
    fn errors_do_not_echo_a_pasted_secret() {
        // A connection string pasted where the reference belongs, in every position.
        let pasted = [
            "Server=db;User Id=u;Password=Hunter2Hunter2",
            "env:Password=Hunter2Hunter2",
            "file://Hunter2Hunter2/x",
            "https://Hunter2Hunter2-.vault.azure.net/secrets/x",
            "https://myvault.vault.azure.net/secrets/Hunter2Hunter2_",
        ];
        for input in pasted {
            let err = input.parse::<SecretRef>().unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains("Hunter2"), "{input:?} echoed in {shown}");
        }
        let err =
            SecretRef::from_store(SecretStoreType::File, "Password=Hunter2Hunter2").unwrap_err();
        assert!(!format!("{err} {err:?}").contains("Hunter2"));
    }

    #[test]
    fn store_types_parse_case_insensitively() {
        let cases = [
            ("AzureKeyVault", SecretStoreType::AzureKeyVault),
            ("azurekeyvault", SecretStoreType::AzureKeyVault),
            ("File", SecretStoreType::File),
            ("FILE", SecretStoreType::File),
            ("environment", SecretStoreType::Environment),
        ];
        for (input, expected) in cases {
            assert_eq!(input.parse::<SecretStoreType>().unwrap(), expected);
        }
        assert_eq!(
            "KeyVault".parse::<SecretStoreType>(),
            Err(SecretRefError::UnknownStoreType)
        );
        assert_eq!(SecretStoreType::AzureKeyVault.to_string(), "AzureKeyVault");
    }

    #[test]
    fn from_store_checks_the_type_matches() {
        use SecretStoreType::*;
        let ok: &[(SecretStoreType, &str, &str)] = &[
            (
                File,
                "file:///etc/pgvault/x.secret",
                "file:/etc/pgvault/x.secret",
            ),
            (File, "/etc/pgvault/x.secret", "file:/etc/pgvault/x.secret"),
            (File, "file:x.secret", "file:x.secret"),
            (Environment, "PG_SECRET", "env:PG_SECRET"),
            (Environment, "env:PG_SECRET", "env:PG_SECRET"),
            (
                AzureKeyVault,
                "https://myvault.vault.azure.net/secrets/pg",
                "https://myvault.vault.azure.net/secrets/pg",
            ),
        ];
        for (t, uri, shown) in ok {
            let r = SecretRef::from_store(*t, uri).unwrap_or_else(|e| panic!("{uri}: {e}"));
            assert_eq!(r.to_string(), *shown);
            assert_eq!(r.store_type(), *t);
        }
        let mismatched: &[(SecretStoreType, &str, SecretStoreType)] = &[
            (File, "env:PG_SECRET", Environment),
            (Environment, "file:/etc/x", File),
            (Environment, "/etc/x", File),
            (AzureKeyVault, "env:PG", Environment),
            (
                File,
                "https://myvault.vault.azure.net/secrets/pg",
                AzureKeyVault,
            ),
        ];
        for (declared, uri, found) in mismatched {
            let err = SecretRef::from_store(*declared, uri).unwrap_err();
            assert_eq!(
                err,
                SecretRefError::StoreTypeMismatch {
                    declared: *declared,
                    found: *found
                },
                "{uri}"
            );
            assert!(err.to_string().contains("--secret-store-type"));
        }
        // A bare relative path is not taken as a File reference: it is ambiguous.
        assert_eq!(
            SecretRef::from_store(File, "x.secret"),
            Err(SecretRefError::Unrecognised)
        );
    }

    #[test]
    fn serde_uses_the_reference_string() {
        let de: StrDeserializer<'_, DeError> = "env:PG_SECRET".into_deserializer();
        let r = SecretRef::deserialize(de).unwrap();
        assert_eq!(String::from(r), "env:PG_SECRET");
        let de: StrDeserializer<'_, DeError> = "Password=x".into_deserializer();
        assert!(SecretRef::deserialize(de).is_err());
        let de: StrDeserializer<'_, DeError> = "environment".into_deserializer();
        assert_eq!(
            SecretStoreType::deserialize(de).unwrap(),
            SecretStoreType::Environment
        );
    }

    #[test]
    fn secret_value_is_redacted() {
        let v = SecretValue::new("Password=Hunter2");
        assert_eq!(format!("{v}"), "<redacted>");
        assert_eq!(format!("{v:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(v.clone())), "Some(<redacted>)");
        assert_eq!(v.expose_secret(), "Password=Hunter2");
    }

    #[test]
    fn loopback_uris_are_for_doubles() {
        let r: SecretRef = "http://127.0.0.1:8200/secrets/pg".parse().unwrap();
        let SecretRef::KeyVault(kv) = &r else {
            panic!("not a Key Vault reference")
        };
        assert_eq!(kv.vault_url(), "http://127.0.0.1:8200");
        assert_eq!(kv.secret_name(), "pg");
        assert_eq!(r.to_string(), "http://127.0.0.1:8200/secrets/pg");
        assert_eq!(r.to_string().parse::<SecretRef>().unwrap(), r);
        // Plain http and ports stay refused for anything that is not this machine.
        assert!(
            "http://10.0.0.1:8200/secrets/pg"
                .parse::<SecretRef>()
                .is_err()
        );
        assert!(
            "http://127.0.0.1:8200/keys/pg"
                .parse::<SecretRef>()
                .is_err()
        );
    }
}
