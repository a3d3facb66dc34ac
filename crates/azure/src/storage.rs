//! Azure Blob Storage locations and credentials: storage URLs parsed into an [`AzureLocation`],
//! and how requests are authorized ([`AzureAuth`]), decided from the environment.
//!
//! Two URL forms name a location: `az://<account>/<container>[/<prefix>]` and
//! `https://<account>.blob.core.windows.net/<container>[/<prefix>]`. Note that pgvault's
//! `az://` names the *account* first, unlike fsspec's `az://<container>/<path>` that
//! `object_store::azure::MicrosoftAzureBuilder::with_url` understands, so the URL is parsed
//! here and handed to clients as account, container and prefix.
//!
//! Credentials come from the environment variables Azure's tools and `object_store` already
//! read (`AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_SAS_TOKEN`, `AZURE_STORAGE_USE_EMULATOR`
//! with `AZURITE_BLOB_STORAGE_URL`), never from the URL, so a storage URL is safe to print and
//! to keep in the vault registry. With none of them, requests carry a Microsoft Entra token
//! from the process's credential chain ([`crate::identity`], the same one Key Vault uses).
//!
//! **Architecture Invariant:** an account key or SAS never reaches an error, a log or the
//! registry: errors from the HTTP client print request URIs, which carry the SAS, so every
//! error that may carry one passes through [`redact`].

use std::sync::Arc;

use base64::Engine as _;

use crate::identity::AzureCredential;

/// Azurite's well-known development account and key (published in Azure's documentation;
/// not a secret). `object_store` uses the same pair when the emulator is asked for.
pub const EMULATOR_ACCOUNT: &str = "devstoreaccount1";
pub const EMULATOR_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const EMULATOR_DEFAULT_URL: &str = "http://127.0.0.1:10000";

/// A container (and optional prefix) in a storage account, parsed from a storage URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AzureLocation {
    account: String,
    container: String,
    /// Path segments joined by `/`, without leading or trailing slashes; empty for none.
    prefix: String,
}

impl AzureLocation {
    /// Parses `az://account/container[/prefix]` or
    /// `https://account.blob.core.windows.net/container[/prefix]`. `Ok(None)` for URLs of
    /// other kinds; `Err` with the reason for an Azure URL that is malformed. The reason never
    /// repeats a query string (which could be a SAS).
    pub fn parse(url: &str) -> Result<Option<AzureLocation>, String> {
        let (account, rest) = if let Some(rest) = url.strip_prefix("az://") {
            match rest.split_once('/') {
                Some((account, rest)) => (account, rest),
                None => (rest, ""),
            }
        } else if let Some(rest) = url.strip_prefix("https://") {
            let (host, rest) = rest.split_once('/').unwrap_or((rest, ""));
            match host.strip_suffix(".blob.core.windows.net") {
                Some(account) => (account, rest),
                None => return Ok(None),
            }
        } else {
            return Ok(None);
        };
        if rest.contains('?') || rest.contains('#') || account.contains('?') {
            return Err(
                "a storage URL takes no query string; give a SAS in AZURE_STORAGE_SAS_TOKEN".into(),
            );
        }
        check_account(account)?;
        let (container, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if container.is_empty() {
            return Err(format!(
                "name a container after the account, like az://{account}/<container>[/<prefix>]"
            ));
        }
        check_container(container)?;
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty()
            && prefix
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == ".." || s.contains('\\'))
        {
            return Err(format!(
                "the prefix `{prefix}` has an empty, `.` or `..` segment or a backslash"
            ));
        }
        Ok(Some(AzureLocation {
            account: account.to_owned(),
            container: container.to_owned(),
            prefix: prefix.to_owned(),
        }))
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    pub fn container(&self) -> &str {
        &self.container
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

/// Azure's rule for storage account names: 3 to 24 lowercase letters and digits.
fn check_account(account: &str) -> Result<(), String> {
    if (3..=24).contains(&account.len())
        && account
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        Ok(())
    } else {
        Err(format!(
            "`{account}` is not a storage account name (3 to 24 lowercase letters and digits)"
        ))
    }
}

/// Azure's rule for container names: 3 to 63 lowercase letters, digits and single hyphens,
/// starting and ending with a letter or digit.
fn check_container(container: &str) -> Result<(), String> {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = container.as_bytes();
    if (3..=63).contains(&bytes.len())
        && bytes.iter().all(|&b| alnum(b) || b == b'-')
        && alnum(bytes[0])
        && alnum(bytes[bytes.len() - 1])
        && !container.contains("--")
    {
        Ok(())
    } else {
        Err(format!(
            "`{container}` is not a container name (3 to 63 lowercase letters, digits and single hyphens, starting and ending with a letter or digit)"
        ))
    }
}

/// The token scope of Blob Storage for Microsoft Entra ID.
pub const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";

/// How requests to the account are authorized, decided from the environment.
#[derive(Clone)]
pub enum AzureAuth {
    /// Azurite at `endpoint` (`AZURITE_BLOB_STORAGE_URL`, path-style URLs), with the account
    /// key given or the emulator's well-known one.
    Emulator { endpoint: String, key: String },
    /// `AZURE_STORAGE_ACCOUNT_KEY`: Shared Key signing.
    AccountKey(String),
    /// `AZURE_STORAGE_SAS_TOKEN`: a shared access signature appended to each request.
    Sas(String),
    /// Neither: a Microsoft Entra token for [`STORAGE_SCOPE`] from the process's credential
    /// chain (the one Key Vault uses), sent as `Authorization: Bearer`. The identity needs a
    /// data role on the account, such as Storage Blob Data Contributor.
    Entra(Arc<AzureCredential>),
}

impl PartialEq for AzureAuth {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (
                AzureAuth::Emulator { endpoint, key },
                AzureAuth::Emulator {
                    endpoint: e2,
                    key: k2,
                },
            ) => endpoint == e2 && key == k2,
            (AzureAuth::AccountKey(a), AzureAuth::AccountKey(b)) => a == b,
            (AzureAuth::Sas(a), AzureAuth::Sas(b)) => a == b,
            (AzureAuth::Entra(a), AzureAuth::Entra(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl std::fmt::Debug for AzureAuth {
    // By hand, so a key or a SAS never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AzureAuth::Emulator { endpoint, .. } => write!(f, "Emulator({endpoint})"),
            AzureAuth::AccountKey(_) => f.write_str("AccountKey(..)"),
            AzureAuth::Sas(_) => f.write_str("Sas(..)"),
            AzureAuth::Entra(_) => f.write_str("Entra"),
        }
    }
}

/// `object_store`'s reading of a boolean setting.
fn truthy(value: &str) -> bool {
    ["1", "true", "on", "yes", "y"]
        .iter()
        .any(|t| value.trim().eq_ignore_ascii_case(t))
}

impl AzureAuth {
    /// Decides from the variables `lookup` returns (the process environment in
    /// [`build_store`]; a table in tests), in `object_store`'s order: emulator, then account
    /// key, then SAS.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        entra: impl FnOnce() -> Result<Arc<AzureCredential>, String>,
    ) -> Result<AzureAuth, String> {
        let var = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| lookup(n).filter(|v| !v.trim().is_empty()))
        };
        let key = var(&[
            "AZURE_STORAGE_ACCOUNT_KEY",
            "AZURE_STORAGE_ACCESS_KEY",
            "AZURE_STORAGE_MASTER_KEY",
        ]);
        let sas = var(&["AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_SAS_KEY"]);
        if var(&["AZURE_STORAGE_USE_EMULATOR"]).is_some_and(|v| truthy(&v)) {
            let endpoint = var(&["AZURITE_BLOB_STORAGE_URL"])
                .unwrap_or_else(|| EMULATOR_DEFAULT_URL.to_owned());
            return Ok(AzureAuth::Emulator {
                endpoint: endpoint.trim_end_matches('/').to_owned(),
                key: key.unwrap_or_else(|| EMULATOR_ACCOUNT_KEY.to_owned()),
            });
        }
        if let Some(key) = key {
            if base64::engine::general_purpose::STANDARD
                .decode(key.trim())
                .is_err()
            {
                return Err(
                    "AZURE_STORAGE_ACCOUNT_KEY is not base64; copy the key from the storage account's Access keys"
                        .into(),
                );
            }
            return Ok(AzureAuth::AccountKey(key.trim().to_owned()));
        }
        if let Some(sas) = sas {
            return Ok(AzureAuth::Sas(
                sas.trim().trim_start_matches('?').to_owned(),
            ));
        }
        entra().map(AzureAuth::Entra)
    }

    /// [`AzureAuth::from_lookup`] over the process environment, with the process's Azure
    /// credential (shared with Key Vault) as the fallback.
    pub fn from_env() -> Result<AzureAuth, String> {
        Self::from_lookup(
            |n| std::env::var(n).ok(),
            crate::keyvault::process_credential,
        )
    }

    /// The container's URL, without any SAS: path-style on the emulator, else under
    /// `endpoint` (`AZURE_STORAGE_ENDPOINT`, for sovereign clouds and private endpoints) or
    /// the public cloud's `https://<account>.blob.core.windows.net`.
    pub fn container_url(&self, location: &AzureLocation, endpoint: Option<&str>) -> String {
        match (self, endpoint) {
            (AzureAuth::Emulator { endpoint, .. }, _) => {
                format!("{endpoint}/{}/{}", location.account, location.container)
            }
            (_, Some(endpoint)) => {
                format!("{}/{}", endpoint.trim_end_matches('/'), location.container)
            }
            _ => format!(
                "https://{}.blob.core.windows.net/{}",
                location.account, location.container
            ),
        }
    }
}

/// `AZURE_STORAGE_ENDPOINT`, the account URL `object_store` uses instead of the public
/// cloud's when it is set (ignored on the emulator).
pub fn endpoint_from_env() -> Option<String> {
    std::env::var("AZURE_STORAGE_ENDPOINT")
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// What to say when the credential chain has no token for Blob Storage: its reason, and the
/// other two ways in.
pub fn no_entra_token(e: &crate::identity::CredentialError) -> String {
    format!(
        "{e}; or give the storage account's key in AZURE_STORAGE_ACCOUNT_KEY or a SAS in \
         AZURE_STORAGE_SAS_TOKEN"
    )
}

pub use pgvault_model::redact::redact;

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(account: &str, container: &str, prefix: &str) -> Option<AzureLocation> {
        Some(AzureLocation {
            account: account.into(),
            container: container.into(),
            prefix: prefix.into(),
        })
    }

    #[test]
    fn storage_urls_parse_or_say_what_is_wrong() {
        let ok: &[(&str, Option<AzureLocation>)] = &[
            ("az://acct1/vaults", loc("acct1", "vaults", "")),
            ("az://acct1/vaults/", loc("acct1", "vaults", "")),
            (
                "az://acct1/vaults/prod/db1/",
                loc("acct1", "vaults", "prod/db1"),
            ),
            (
                "https://acct1.blob.core.windows.net/vaults/prod",
                loc("acct1", "vaults", "prod"),
            ),
            ("file:///var/backups", None),
            ("/var/backups", None),
            ("https://example.com/vaults", None),
        ];
        for (url, want) in ok {
            assert_eq!(&AzureLocation::parse(url).unwrap(), want, "{url}");
        }
        let bad: &[(&str, &str)] = &[
            ("az://acct1", "name a container"),
            ("az://acct1/", "name a container"),
            ("az://Acct/vaults", "storage account name"),
            ("az://a/vaults", "storage account name"),
            ("az://acct1/Vaults", "container name"),
            ("az://acct1/va", "container name"),
            ("az://acct1/my--vaults", "container name"),
            ("az://acct1/vaults/a//b", "empty"),
            ("az://acct1/vaults/../x", "`..`"),
            (
                "https://acct1.blob.core.windows.net/vaults?sv=1&sig=SECRET",
                "no query string",
            ),
        ];
        for (url, want) in bad {
            let err = AzureLocation::parse(url).unwrap_err();
            assert!(err.contains(want), "{url}: {err}");
            assert!(!err.contains("SECRET"), "{err}");
        }
    }

    #[test]
    fn credentials_come_from_the_environment_in_object_stores_order_then_entra() {
        const KEY: &str = "a2V5"; // base64 of "key"
        let key = KEY;
        type Vars = &'static [(&'static str, &'static str)];
        let cases: &[(Vars, Result<AzureAuth, &str>)] = &[
            (&[], Err("entra: no credential")),
            (
                &[("AZURE_STORAGE_ACCOUNT_KEY", KEY)],
                Ok(AzureAuth::AccountKey(key.into())),
            ),
            (
                &[
                    ("AZURE_STORAGE_ACCESS_KEY", KEY),
                    ("AZURE_STORAGE_SAS_TOKEN", "sv=1&sig=x"),
                ],
                Ok(AzureAuth::AccountKey(key.into())),
            ),
            (
                &[("AZURE_STORAGE_SAS_TOKEN", "?sv=1&sig=x")],
                Ok(AzureAuth::Sas("sv=1&sig=x".into())),
            ),
            (
                &[("AZURE_STORAGE_ACCOUNT_KEY", "not base64!")],
                Err("not base64"),
            ),
            (
                &[("AZURE_STORAGE_USE_EMULATOR", "true")],
                Ok(AzureAuth::Emulator {
                    endpoint: EMULATOR_DEFAULT_URL.into(),
                    key: EMULATOR_ACCOUNT_KEY.into(),
                }),
            ),
            (
                &[
                    ("AZURE_STORAGE_USE_EMULATOR", "1"),
                    ("AZURITE_BLOB_STORAGE_URL", "http://127.0.0.1:4242/"),
                ],
                Ok(AzureAuth::Emulator {
                    endpoint: "http://127.0.0.1:4242".into(),
                    key: EMULATOR_ACCOUNT_KEY.into(),
                }),
            ),
            (
                &[("AZURE_STORAGE_USE_EMULATOR", "false")],
                Err("entra: no credential"),
            ),
        ];
        for (vars, want) in cases {
            let got = AzureAuth::from_lookup(
                |n| {
                    vars.iter()
                        .find(|(k, _)| *k == n)
                        .map(|(_, v)| v.to_string())
                },
                || Err("entra: no credential".to_owned()),
            );
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(&got, want, "{vars:?}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{vars:?}: {got}"),
                (got, want) => panic!("{vars:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn credentials_never_print() {
        let auth = AzureAuth::Sas("sv=1&sig=SECRET".into());
        assert!(!format!("{auth:?}").contains("SECRET"));
        let auth = AzureAuth::AccountKey("S3CRETKEY".into());
        assert!(!format!("{auth:?}").contains("S3CRETKEY"));
        assert_eq!(
            redact(
                "Error performing PUT https://a.blob.core.windows.net/c/x?sv=1&sig=abc%2Fd&se=2 in 3s"
            ),
            "Error performing PUT https://a.blob.core.windows.net/c/x?sv=1&sig=REDACTED&se=2 in 3s"
        );
        assert_eq!(redact("sig=abc"), "sig=REDACTED");
    }
}
