//! Azure credentials: how pgvault gets a Microsoft Entra token for Key Vault, in the order
//! Azure's own tools try (`DefaultAzureCredential`): environment (client secret), workload
//! identity, managed identity, then the developer's `az login`.
//!
//! This is written against the documented endpoints with `reqwest` rather than with the
//! `azure_identity` crate, for two reasons found when adding it: its HTTP stack pulls reqwest
//! 0.13 with `aws-lc-rs`, a second TLS crypto provider beside the workspace's `ring` (and a C
//! build), and it refuses any authority host that is not `https`, so no local double could
//! stand in for Microsoft Entra in the tests. The protocol it speaks is small: OAuth 2.0 client
//! credentials (`POST {authority}/{tenant}/oauth2/v2.0/token`, with a secret or a federated
//! assertion), the managed identity endpoints, and `az account get-access-token`.
//!
//! A chain follows Azure's rule: a credential that is *not configured* hands over to the next;
//! one that is configured and fails stops the chain with its reason, so a wrong client secret
//! is reported as such instead of being hidden by a later "az not found". Errors name the
//! credential tried and why it failed, never a secret (the token endpoint's error text is
//! Microsoft Entra's, which names the application, not the secret).
//!
//! Tokens are cached per scope in the process and refreshed five minutes before they expire.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::SecretValue;

/// The public cloud's Microsoft Entra authority; `AZURE_AUTHORITY_HOST` replaces it for a
/// sovereign cloud (`https://login.chinacloudapi.cn`, `https://login.microsoftonline.us`).
pub const PUBLIC_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";

/// The instance metadata service that answers managed identity token requests on an Azure VM.
const IMDS_ENDPOINT: &str = "http://169.254.169.254/metadata/identity/oauth2/token";

/// How early a cached token is renewed, as Azure's SDKs do.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// One kind of Azure credential, as `--azure-credential` / `PGVAULT_AZURE_CREDENTIAL` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CredentialKind {
    /// `AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and `AZURE_CLIENT_SECRET` (a service principal).
    Environment,
    /// `AZURE_FEDERATED_TOKEN_FILE` with tenant and client ids (AKS workload identity).
    WorkloadIdentity,
    /// The managed identity of the Azure VM or App Service pgvault runs on.
    ManagedIdentity,
    /// The developer's `az login`.
    AzureCli,
}

impl CredentialKind {
    /// The order Azure's `DefaultAzureCredential` tries them in.
    pub const CHAIN: [CredentialKind; 4] = [
        CredentialKind::Environment,
        CredentialKind::WorkloadIdentity,
        CredentialKind::ManagedIdentity,
        CredentialKind::AzureCli,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Environment => "environment",
            CredentialKind::WorkloadIdentity => "workload-identity",
            CredentialKind::ManagedIdentity => "managed-identity",
            CredentialKind::AzureCli => "azure-cli",
        }
    }
}

impl fmt::Display for CredentialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CredentialKind {
    type Err = String;

    /// pgvault's names, and the Azure SDK's class names for the same credentials.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        Ok(match s.as_str() {
            "environment" | "environmentcredential" => CredentialKind::Environment,
            "workload-identity" | "workloadidentitycredential" => CredentialKind::WorkloadIdentity,
            "managed-identity" | "managedidentitycredential" => CredentialKind::ManagedIdentity,
            "azure-cli" | "azurecli" | "azureclicredential" => CredentialKind::AzureCli,
            _ => {
                return Err(
                    "unknown Azure credential; use environment, workload-identity, \
                     managed-identity or azure-cli"
                        .to_owned(),
                );
            }
        })
    }
}

/// The Azure settings of the process, read once from its environment with the variable names
/// Azure's tools use. Tests build one directly, as the crate cannot set variables safely.
#[derive(Debug, Clone, Default)]
pub struct AzureEnv {
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretValue>,
    pub client_certificate_path: Option<PathBuf>,
    pub federated_token_file: Option<PathBuf>,
    pub authority_host: Option<String>,
    /// App Service's managed identity endpoint and its header secret.
    pub identity_endpoint: Option<String>,
    pub identity_header: Option<SecretValue>,
    /// `--azure-credential` / `PGVAULT_AZURE_CREDENTIAL`: try this one only.
    pub pinned: Option<CredentialKind>,
}

impl AzureEnv {
    /// Reads `AZURE_*` (and `IDENTITY_*`) variables; empty ones count as unset.
    pub fn from_process(pinned: Option<CredentialKind>) -> AzureEnv {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        AzureEnv {
            tenant_id: var("AZURE_TENANT_ID"),
            client_id: var("AZURE_CLIENT_ID"),
            client_secret: var("AZURE_CLIENT_SECRET").map(SecretValue::new),
            client_certificate_path: var("AZURE_CLIENT_CERTIFICATE_PATH").map(PathBuf::from),
            federated_token_file: var("AZURE_FEDERATED_TOKEN_FILE").map(PathBuf::from),
            authority_host: var("AZURE_AUTHORITY_HOST"),
            identity_endpoint: var("IDENTITY_ENDPOINT"),
            identity_header: var("IDENTITY_HEADER").map(SecretValue::new),
            pinned,
        }
    }

    /// The authority host, checked: `https`, or plain `http` to a loopback address only, which
    /// exists so that a local double can stand in for Microsoft Entra in tests.
    fn authority(&self) -> Result<String, String> {
        let host = self
            .authority_host
            .as_deref()
            .unwrap_or(PUBLIC_AUTHORITY_HOST);
        let url = url::Url::parse(host)
            .map_err(|_| "AZURE_AUTHORITY_HOST is not a valid URL".to_owned())?;
        if url.scheme() == "https" || (url.scheme() == "http" && is_loopback(&url)) {
            Ok(host.trim_end_matches('/').to_owned())
        } else {
            Err("AZURE_AUTHORITY_HOST must use https".to_owned())
        }
    }
}

/// Whether a URL points at this machine (`127.0.0.0/8`, `::1` or `localhost`).
pub(crate) fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// An access token and when it stops being valid. The token is a secret.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub token: SecretValue,
    pub expires_at: Instant,
}

/// Why no token could be had. Messages name the credential and never contain a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("Azure credential {credential} failed: {reason}")]
    Failed {
        credential: CredentialKind,
        reason: String,
    },
    #[error(
        "no Azure credential is available ({0}); set AZURE_TENANT_ID, AZURE_CLIENT_ID and \
         AZURE_CLIENT_SECRET, run on an Azure managed identity, or run `az login`"
    )]
    NoneAvailable(String),
}

/// What one credential made of a token request.
enum Attempt {
    Unavailable(String),
    Failed(String),
    Token(AccessToken),
}

/// The credential chain (or the one pinned credential), with its token cache.
pub struct AzureCredential {
    env: AzureEnv,
    http: reqwest::Client,
    cache: tokio::sync::Mutex<HashMap<String, AccessToken>>,
}

impl AzureCredential {
    pub fn new(env: AzureEnv, http: reqwest::Client) -> AzureCredential {
        AzureCredential {
            env,
            http,
            cache: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// A token for `scope` (`https://vault.azure.net/.default`), from the cache while it has
    /// more than five minutes left. The lock is held across the request so that concurrent
    /// backups ask Microsoft Entra once, not once each.
    pub async fn get_token(&self, scope: &str) -> Result<SecretValue, CredentialError> {
        let mut cache = self.cache.lock().await;
        if let Some(t) = cache.get(scope)
            && t.expires_at > Instant::now() + REFRESH_MARGIN
        {
            return Ok(t.token.clone());
        }
        let token = self.fetch(scope).await?;
        let value = token.token.clone();
        cache.insert(scope.to_owned(), token);
        Ok(value)
    }

    async fn fetch(&self, scope: &str) -> Result<AccessToken, CredentialError> {
        let kinds: &[CredentialKind] = match &self.env.pinned {
            Some(k) => std::slice::from_ref(k),
            None => &CredentialKind::CHAIN,
        };
        let mut skipped = Vec::new();
        for &kind in kinds {
            match self.attempt(kind, scope).await {
                Attempt::Token(t) => {
                    tracing::debug!(credential = %kind, "got an Azure token");
                    return Ok(t);
                }
                Attempt::Failed(reason) => {
                    return Err(CredentialError::Failed {
                        credential: kind,
                        reason,
                    });
                }
                // A pinned credential that is not configured is a failure: the user asked
                // for it.
                Attempt::Unavailable(reason) if self.env.pinned.is_some() => {
                    return Err(CredentialError::Failed {
                        credential: kind,
                        reason,
                    });
                }
                Attempt::Unavailable(reason) => skipped.push(format!("{kind}: {reason}")),
            }
        }
        Err(CredentialError::NoneAvailable(skipped.join("; ")))
    }

    async fn attempt(&self, kind: CredentialKind, scope: &str) -> Attempt {
        match kind {
            CredentialKind::Environment => self.environment(scope).await,
            CredentialKind::WorkloadIdentity => self.workload_identity(scope).await,
            CredentialKind::ManagedIdentity => self.managed_identity(scope).await,
            CredentialKind::AzureCli => azure_cli(scope).await,
        }
    }

    async fn environment(&self, scope: &str) -> Attempt {
        let e = &self.env;
        let (Some(tenant), Some(client)) = (&e.tenant_id, &e.client_id) else {
            return Attempt::Unavailable("AZURE_TENANT_ID and AZURE_CLIENT_ID are not set".into());
        };
        if let Some(secret) = &e.client_secret {
            return self
                .client_credentials(
                    tenant,
                    client,
                    scope,
                    &[("client_secret", secret.expose_secret())],
                )
                .await;
        }
        if e.client_certificate_path.is_some() {
            return Attempt::Failed(
                "AZURE_CLIENT_CERTIFICATE_PATH is set, but certificate credentials are not \
                 supported yet; use AZURE_CLIENT_SECRET or another credential"
                    .into(),
            );
        }
        Attempt::Unavailable("AZURE_CLIENT_SECRET is not set".into())
    }

    async fn workload_identity(&self, scope: &str) -> Attempt {
        let e = &self.env;
        let (Some(tenant), Some(client), Some(file)) =
            (&e.tenant_id, &e.client_id, &e.federated_token_file)
        else {
            return Attempt::Unavailable(
                "AZURE_FEDERATED_TOKEN_FILE, AZURE_TENANT_ID and AZURE_CLIENT_ID are not all set"
                    .into(),
            );
        };
        // Read at every request: Kubernetes rotates the projected token file.
        let assertion = match tokio::fs::read_to_string(file).await {
            Ok(a) => SecretValue::new(a.trim().to_owned()),
            Err(err) => {
                return Attempt::Failed(format!(
                    "the federated token file {} could not be read: {err}",
                    file.display()
                ));
            }
        };
        self.client_credentials(
            tenant,
            client,
            scope,
            &[
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", assertion.expose_secret()),
            ],
        )
        .await
    }

    /// OAuth 2.0 client credentials against `{authority}/{tenant}/oauth2/v2.0/token`.
    async fn client_credentials(
        &self,
        tenant: &str,
        client: &str,
        scope: &str,
        proof: &[(&str, &str)],
    ) -> Attempt {
        let authority = match self.env.authority() {
            Ok(a) => a,
            Err(reason) => return Attempt::Failed(reason),
        };
        // Built in a block: the serializer is not `Send` and must not live across an await.
        let body = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "client_credentials")
                .append_pair("client_id", client)
                .append_pair("scope", scope);
            for (k, v) in proof {
                form.append_pair(k, v);
            }
            SecretValue::new(form.finish())
        };
        let url = format!("{authority}/{tenant}/oauth2/v2.0/token");
        let response = self
            .http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.expose_secret().to_owned())
            .send()
            .await;
        token_response(response, &url).await
    }

    /// App Service's `IDENTITY_ENDPOINT`, else the VM's instance metadata service. A VM
    /// without a managed identity (or no VM at all) is "not configured", not a failure.
    async fn managed_identity(&self, scope: &str) -> Attempt {
        let resource = scope.trim_end_matches("/.default");
        let e = &self.env;
        let request =
            if let (Some(endpoint), Some(header)) = (&e.identity_endpoint, &e.identity_header) {
                let mut req = self
                    .http
                    .get(endpoint)
                    .query(&[("api-version", "2019-08-01"), ("resource", resource)])
                    .header("X-IDENTITY-HEADER", header.expose_secret());
                if let Some(client) = &e.client_id {
                    req = req.query(&[("client_id", client)]);
                }
                req
            } else {
                let mut req = self
                    .http
                    .get(IMDS_ENDPOINT)
                    .query(&[("api-version", "2018-02-01"), ("resource", resource)])
                    .header("Metadata", "true")
                    // Azure's SDKs probe the metadata service briefly: off Azure nothing answers.
                    .timeout(Duration::from_secs(1));
                if let Some(client) = &e.client_id {
                    req = req.query(&[("client_id", client)]);
                }
                req
            };
        match request.send().await {
            Err(err) if err.is_connect() || err.is_timeout() => {
                Attempt::Unavailable("no managed identity endpoint answered".into())
            }
            response => token_response(response, "the managed identity endpoint").await,
        }
    }
}

/// Reads a token endpoint's answer: `access_token` with `expires_in` (seconds from now) or
/// `expires_on` (Unix seconds, as a number or a string), or an OAuth error.
async fn token_response(
    response: Result<reqwest::Response, reqwest::Error>,
    endpoint: &str,
) -> Attempt {
    let response = match response {
        Ok(r) => r,
        Err(err) => {
            return Attempt::Failed(format!("{endpoint} could not be reached: {err}"));
        }
    };
    let status = response.status();
    let body: serde_json::Value = match response.json().await {
        Ok(b) => b,
        Err(_) => {
            return Attempt::Failed(format!(
                "{endpoint} answered {status} with a body that is not JSON"
            ));
        }
    };
    if !status.is_success() {
        let error = body["error"].as_str().unwrap_or("unknown error");
        let description = body["error_description"]
            .as_str()
            .map(|d| format!(": {}", d.lines().next().unwrap_or("")))
            .unwrap_or_default();
        return Attempt::Failed(format!(
            "{endpoint} answered {status} ({error}){description}"
        ));
    }
    let Some(token) = body["access_token"].as_str() else {
        return Attempt::Failed(format!("{endpoint} answered without an access_token"));
    };
    let lifetime = seconds(&body["expires_in"])
        .map(Duration::from_secs)
        .or_else(|| seconds(&body["expires_on"]).map(until_unix))
        .unwrap_or(Duration::from_secs(300));
    Attempt::Token(AccessToken {
        token: SecretValue::new(token),
        expires_at: Instant::now() + lifetime,
    })
}

fn seconds(v: &serde_json::Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str()?.parse().ok())
}

fn until_unix(at: u64) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    Duration::from_secs(at.saturating_sub(now))
}

/// `az account get-access-token`: the developer's `az login`. Not installed, or not logged
/// in, is "not configured".
async fn azure_cli(scope: &str) -> Attempt {
    let resource = scope.trim_end_matches("/.default");
    let output = tokio::process::Command::new("az")
        .args([
            "account",
            "get-access-token",
            "--output",
            "json",
            "--resource",
            resource,
        ])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await;
    let output = match output {
        Ok(o) => o,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Attempt::Unavailable("the Azure CLI (az) is not on PATH".into());
        }
        Err(err) => return Attempt::Failed(format!("az could not be started: {err}")),
    };
    if !output.status.success() {
        // az's stderr says what is wrong ("Please run 'az login'") and holds no token.
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        if first.contains("az login") {
            return Attempt::Unavailable(format!("not logged in: {}", first.trim()));
        }
        return Attempt::Failed(format!("az failed: {}", first.trim()));
    }
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(&output.stdout) else {
        return Attempt::Failed("az printed something that is not JSON".into());
    };
    let Some(token) = body["accessToken"].as_str() else {
        return Attempt::Failed("az printed no accessToken".into());
    };
    let lifetime = seconds(&body["expires_on"])
        .map(until_unix)
        .unwrap_or(Duration::from_secs(300));
    Attempt::Token(AccessToken {
        token: SecretValue::new(token),
        expires_at: Instant::now() + lifetime,
    })
}
