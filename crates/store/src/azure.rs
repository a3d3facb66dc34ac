//! Vaults in Azure Blob Storage through `object_store`: the client for a location, and
//! creating the container.
//!
//! A vault on Blob Storage is the same vault format under a prefix of a container, written
//! through `object_store`'s `MicrosoftAzure` exactly as a local vault is written through
//! `LocalFileSystem`; nothing above [`super::VaultStore`] knows the difference. Locations and
//! credentials are `pgvault_azure::storage`, re-exported here; with no key, SAS or emulator
//! setting, requests carry a Microsoft Entra token, bridged into `object_store` by
//! [`EntraTokens`].

use std::sync::Arc;
use std::time::Duration;

use object_store::azure::MicrosoftAzureBuilder;
use object_store::{BackoffConfig, ObjectStore, RetryConfig};

use pgvault_azure::blob_rest::BlobRest;
use pgvault_azure::identity::AzureCredential;
pub use pgvault_azure::storage::*;

/// Uploads and reads retry with exponential backoff on 429 (throttling), 5xx and connection
/// errors. `object_store`'s defaults, stated here because the vault depends on them: a long
/// backup must ride out Blob Storage's throttling rather than fail its whole job.
fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            base: 2.0,
        },
        max_retries: 10,
        retry_timeout: Duration::from_secs(3 * 60),
    }
}

/// The `object_store` client for `location`, configured from the environment
/// (`MicrosoftAzureBuilder::from_env`) plus the URL's account and container, wrapped in a
/// prefix store when the URL names a prefix. With no key, SAS or emulator setting, requests
/// carry a Microsoft Entra token from the process's credential chain ([`EntraTokens`]).
pub fn build_store(
    location: &AzureLocation,
    auth: &AzureAuth,
) -> Result<Arc<dyn ObjectStore>, String> {
    let mut builder = MicrosoftAzureBuilder::from_env()
        .with_account(location.account())
        .with_container_name(location.container())
        .with_retry(retry_config());
    // The URL's account is the one used, so the emulator flag alone decides the endpoint.
    builder = builder.with_use_emulator(matches!(auth, AzureAuth::Emulator { .. }));
    if let AzureAuth::Entra(credential) = auth {
        builder = builder.with_credentials(Arc::new(EntraTokens(credential.clone())));
    }
    let azure = builder.build().map_err(|e| redact(&e.to_string()))?;
    if location.prefix().is_empty() {
        Ok(Arc::new(azure))
    } else {
        Ok(Arc::new(object_store::prefix::PrefixStore::new(
            azure,
            location.prefix(),
        )))
    }
}

/// The bridge from pgvault's Azure credential chain to `object_store`: each request asks for
/// a Blob Storage token, which the chain serves from its cache until it nears expiry.
struct EntraTokens(Arc<AzureCredential>);

impl std::fmt::Debug for EntraTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EntraTokens")
    }
}

#[async_trait::async_trait]
impl object_store::CredentialProvider for EntraTokens {
    type Credential = object_store::azure::AzureCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<Self::Credential>> {
        let token =
            self.0
                .get_token(STORAGE_SCOPE)
                .await
                .map_err(|e| object_store::Error::Generic {
                    store: "MicrosoftAzure",
                    source: no_entra_token(&e).into(),
                })?;
        Ok(Arc::new(object_store::azure::AzureCredential::BearerToken(
            token.expose_secret().to_owned(),
        )))
    }
}

/// Creates the container if it does not exist (`backup-vault create`). A SAS that may not
/// create containers (403) is let through: it is usually scoped to an existing container,
/// and if the container is missing the vault's first write says so.
pub async fn ensure_container(rest: &BlobRest) -> Result<(), String> {
    let location = rest.location();
    match rest.create_container().await {
        Ok(_) => Ok(()),
        Err(e) if e.status == Some(403) && matches!(rest.auth(), AzureAuth::Sas(_)) => {
            tracing::debug!(container = %location.container(), "the SAS may not create containers; assuming it exists");
            Ok(())
        }
        Err(e) => Err(format!(
            "{e}; check the account name and its credentials (container `{}` in account `{}`)",
            location.container(),
            location.account()
        )),
    }
}
