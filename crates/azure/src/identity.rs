//! Azure credentials: how pgvault gets a Microsoft Entra token for Key Vault, in the order
//! Azure's own tools try (`DefaultAzureCredential`): environment (client secret, else client
//! certificate), workload identity, managed identity, then the developer's `az login`.
//!
//! This is written against the documented endpoints with `reqwest` rather than with the
//! `azure_identity` crate, for two reasons found when adding it: its HTTP stack pulls reqwest
//! 0.13 with `aws-lc-rs`, a second TLS crypto provider beside the workspace's `ring` (and a C
//! build), and it refuses any authority host that is not `https`, so no local double could
//! stand in for Microsoft Entra in the tests. The protocol it speaks is small: OAuth 2.0 client
//! credentials (`POST {authority}/{tenant}/oauth2/v2.0/token`, with a secret, a federated
//! assertion or a certificate's signed assertion), the managed identity endpoints, and
//! `az account get-access-token`.
//!
//! The certificate credential is `EnvironmentCredential`'s: `AZURE_CLIENT_CERTIFICATE_PATH`
//! names a PEM file holding the certificate and its unencrypted RSA private key (PKCS#8
//! `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`), read with the PEM parser rustls already brings.
//! pgvault signs an RFC 7523 client assertion with it (RS256, through `ring`; see
//! [`client_assertion`]). PFX/PKCS#12 files are refused with the `openssl` command that
//! converts them rather than read: no small, well-kept pure-Rust crate reads them (the
//! maintained ones need OpenSSL or bring a separate crypto stack for the legacy ciphers PFX
//! files use), so `AZURE_CLIENT_CERTIFICATE_PASSWORD`, which only a PFX needs, is only named
//! in that message.
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
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pgvault_model::secret::SecretValue;

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
    /// `AZURE_TENANT_ID` and `AZURE_CLIENT_ID` with `AZURE_CLIENT_SECRET`, else with
    /// `AZURE_CLIENT_CERTIFICATE_PATH` (a service principal).
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
    /// For a PFX file, which pgvault does not read; kept to say so.
    pub client_certificate_password: Option<SecretValue>,
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
            client_certificate_password: var("AZURE_CLIENT_CERTIFICATE_PASSWORD")
                .map(SecretValue::new),
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

pub(crate) use pgvault_model::secret::is_loopback;

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
         AZURE_CLIENT_SECRET (or AZURE_CLIENT_CERTIFICATE_PATH), run on an Azure managed \
         identity, or run `az login`"
    )]
    NoneAvailable(String),
}

/// What one credential made of a token request.
enum Attempt {
    Unavailable(String),
    Failed(String),
    Token(AccessToken),
}

impl Attempt {
    /// Says which form of a credential failed ("client certificate /etc/pgvault/sp.pem: ..").
    fn context(self, what: &str) -> Attempt {
        match self {
            Attempt::Failed(reason) => Attempt::Failed(format!("{what}: {reason}")),
            other => other,
        }
    }
}

/// RFC 7523's client assertion type, for federated tokens and certificate assertions alike.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long a certificate's client assertion is valid, as Azure's SDKs (MSAL) make them.
const ASSERTION_LIFETIME: u64 = 600;

/// The signing half of a client certificate credential: the RSA key and the certificate's
/// thumbprints, by which Microsoft Entra finds the registered public key. Holds no text of
/// the key, and its `Debug` shows none.
struct ClientCertificate {
    key: ring::signature::RsaKeyPair,
    /// base64url SHA-1 of the DER certificate (`x5t`), and SHA-256 (`x5t#S256`).
    x5t: String,
    x5t_s256: String,
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("x5t", &self.x5t)
            .finish_non_exhaustive()
    }
}

/// The `openssl` command that turns a PFX into the PEM pgvault reads.
const PFX_ADVICE: &str = "it looks like a PFX/PKCS#12 file, which pgvault does not read; \
    convert it to PEM with `openssl pkcs12 -in cert.pfx -out cert.pem -nodes` and point \
    AZURE_CLIENT_CERTIFICATE_PATH at cert.pem";

impl ClientCertificate {
    /// The first certificate and the first private key of a PEM file. Errors say what is
    /// missing or wrong and never quote the file.
    fn from_pem(pem: &[u8], path: &Path) -> Result<ClientCertificate, String> {
        use rustls::pki_types::pem::{PemObject, SectionKind};

        let is_pfx_name = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("pfx") || e.eq_ignore_ascii_case("p12"));
        let has_pem = pem.windows(11).any(|w| w == b"-----BEGIN ");
        if is_pfx_name || (!has_pem && pem.first() == Some(&0x30)) {
            return Err(PFX_ADVICE.to_owned());
        }
        if !has_pem {
            return Err("the file is not PEM (no -----BEGIN line)".to_owned());
        }
        let mut certificate = None;
        let mut key = None;
        for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
            // The parser's errors may quote a line of the file: say only that it failed.
            let (kind, der) = section.map_err(|_| "the file is not valid PEM".to_owned())?;
            match kind {
                SectionKind::Certificate if certificate.is_none() => certificate = Some(der),
                SectionKind::PrivateKey
                | SectionKind::RsaPrivateKey
                | SectionKind::EcPrivateKey
                    if key.is_none() =>
                {
                    key = Some((kind, der))
                }
                _ => {}
            }
        }
        let Some(certificate) = certificate else {
            return Err("the file holds no certificate (-----BEGIN CERTIFICATE-----)".to_owned());
        };
        let Some((kind, mut der)) = key else {
            if pem.windows(21).any(|w| w == b"ENCRYPTED PRIVATE KEY") {
                return Err(
                    "the private key is encrypted; pgvault needs it unencrypted: \
                    `openssl pkey -in key.pem -out plain.pem` decrypts it"
                        .to_owned(),
                );
            }
            return Err(
                "the file holds no private key (PRIVATE KEY or RSA PRIVATE KEY) beside the \
                 certificate"
                    .to_owned(),
            );
        };
        let parsed = match kind {
            SectionKind::PrivateKey => ring::signature::RsaKeyPair::from_pkcs8(&der),
            SectionKind::RsaPrivateKey => ring::signature::RsaKeyPair::from_der(&der),
            _ => {
                return Err(
                    "the private key is not an RSA key; Microsoft Entra certificate credentials \
                     need RSA"
                        .to_owned(),
                );
            }
        };
        // Best effort, as for secrets: the key's bytes do not outlive the parse.
        der.fill(0);
        let key = parsed.map_err(|rejected| {
            if rejected.to_string() == "WrongAlgorithm" {
                "the private key is not an RSA key; Microsoft Entra certificate credentials \
                 need RSA"
                    .to_owned()
            } else {
                format!("the private key cannot be used for RS256 ({rejected})")
            }
        })?;
        let thumbprint = |alg| base64_url(ring::digest::digest(alg, &certificate).as_ref());
        Ok(ClientCertificate {
            key,
            x5t: thumbprint(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY),
            x5t_s256: thumbprint(&ring::digest::SHA256),
        })
    }
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A certificate credential's client assertion (RFC 7523, as Microsoft Entra documents it):
/// header `{"alg":"RS256","typ":"JWT","x5t","x5t#S256"}`, claims `aud` = the token URL,
/// `iss` = `sub` = the client id, `jti` (fresh each time), `nbf` = `iat` = now, `exp` = now +
/// ten minutes; signed RS256. The assertion is a credential, so it comes back as a secret.
fn client_assertion(
    cert: &ClientCertificate,
    client_id: &str,
    token_url: &str,
    now: u64,
    jti: &str,
) -> Result<SecretValue, String> {
    let header = serde_json::json!({
        "alg": "RS256",
        "typ": "JWT",
        "x5t": cert.x5t,
        "x5t#S256": cert.x5t_s256,
    });
    let claims = serde_json::json!({
        "aud": token_url,
        "iss": client_id,
        "sub": client_id,
        "jti": jti,
        "nbf": now,
        "iat": now,
        "exp": now + ASSERTION_LIFETIME,
    });
    let signing_input = format!(
        "{}.{}",
        base64_url(header.to_string().as_bytes()),
        base64_url(claims.to_string().as_bytes())
    );
    let mut signature = vec![0; cert.key.public().modulus_len()];
    cert.key
        .sign(
            &ring::signature::RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            signing_input.as_bytes(),
            &mut signature,
        )
        .map_err(|_| "the assertion could not be signed".to_owned())?;
    Ok(SecretValue::new(format!(
        "{signing_input}.{}",
        base64_url(&signature)
    )))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
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
        // Azure's order: the secret wins when both are set.
        if let Some(secret) = &e.client_secret {
            return self
                .client_credentials(
                    tenant,
                    client,
                    scope,
                    &[("client_secret", secret.expose_secret())],
                )
                .await
                .context("client secret");
        }
        if let Some(path) = &e.client_certificate_path {
            return self
                .client_certificate(tenant, client, scope, path)
                .await
                .context(&format!("client certificate {}", path.display()));
        }
        Attempt::Unavailable(
            "neither AZURE_CLIENT_SECRET nor AZURE_CLIENT_CERTIFICATE_PATH is set".into(),
        )
    }

    /// The certificate credential: a client assertion signed with the certificate's key. The
    /// file is read at every token request (tokens are cached, so that is rarely), so a
    /// renewed certificate is picked up without a restart.
    async fn client_certificate(
        &self,
        tenant: &str,
        client: &str,
        scope: &str,
        path: &Path,
    ) -> Attempt {
        let pem = match pgvault_os::limits::read(
            path,
            "client certificate",
            pgvault_os::limits::CERTIFICATE_BYTES,
        ) {
            Ok(b) => b,
            Err(pgvault_os::limits::InputError::Io { source, .. }) => {
                return Attempt::Failed(format!("the file could not be read: {source}"));
            }
            Err(err) => return Attempt::Failed(err.to_string()),
        };
        let url = match self.token_url(tenant) {
            Ok(u) => u,
            Err(reason) => return Attempt::Failed(reason),
        };
        let assertion = ClientCertificate::from_pem(&pem, path).and_then(|cert| {
            client_assertion(
                &cert,
                client,
                &url,
                unix_now(),
                &uuid::Uuid::new_v4().to_string(),
            )
        });
        let assertion = match assertion {
            Ok(a) => a,
            Err(reason) => {
                if self.env.client_certificate_password.is_some() && reason.contains("PFX") {
                    return Attempt::Failed(format!(
                        "{reason} (AZURE_CLIENT_CERTIFICATE_PASSWORD is the PFX's password: \
                         give it when openssl asks)"
                    ));
                }
                return Attempt::Failed(reason);
            }
        };
        self.assertion_grant(tenant, client, scope, &assertion)
            .await
    }

    /// `{authority}/{tenant}/oauth2/v2.0/token`, the authority checked.
    fn token_url(&self, tenant: &str) -> Result<String, String> {
        Ok(format!(
            "{}/{tenant}/oauth2/v2.0/token",
            self.env.authority()?
        ))
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
        let assertion = match pgvault_os::limits::read_text(
            file,
            "federated token",
            pgvault_os::limits::TOKEN_BYTES,
        ) {
            Ok(a) => SecretValue::new(a.trim().to_owned()),
            Err(pgvault_os::limits::InputError::Io { source, .. }) => {
                return Attempt::Failed(format!(
                    "the federated token file {} could not be read: {source}",
                    file.display()
                ));
            }
            Err(err) => return Attempt::Failed(err.to_string()),
        };
        self.assertion_grant(tenant, client, scope, &assertion)
            .await
    }

    /// Client credentials proven by a signed JWT (a certificate's assertion or a federated
    /// token), the one grant both sign-ins make.
    async fn assertion_grant(
        &self,
        tenant: &str,
        client: &str,
        scope: &str,
        assertion: &SecretValue,
    ) -> Attempt {
        self.client_credentials(
            tenant,
            client,
            scope,
            &[
                ("client_assertion_type", JWT_BEARER),
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
        let url = match self.token_url(tenant) {
            Ok(u) => u,
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
    Duration::from_secs(at.saturating_sub(unix_now()))
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

/// The certificate credential against the Entra double of `pgvault-testkit`, which verifies
/// assertions as Entra does (see its module doc), with the test-only keys in
/// `crates/testkit/fixtures`.
#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use pgvault_testkit::keyvault_double::{self as double, KeyVaultDouble, fixture};

    const SCOPE: &str = "https://vault.azure.net/.default";

    fn load(name: &str) -> Result<ClientCertificate, String> {
        let path = fixture(name);
        ClientCertificate::from_pem(&std::fs::read(&path).unwrap(), &path)
    }

    fn cert_env(kv: &KeyVaultDouble, path: PathBuf) -> AzureEnv {
        AzureEnv {
            tenant_id: Some(double::TENANT_ID.into()),
            client_id: Some(double::CLIENT_ID.into()),
            client_certificate_path: Some(path),
            authority_host: Some(kv.authority_host()),
            pinned: Some(CredentialKind::Environment),
            ..AzureEnv::default()
        }
    }

    fn credential(env: AzureEnv) -> AzureCredential {
        AzureCredential::new(env, reqwest::Client::new())
    }

    fn decode(part: &str) -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    fn refused(attempt: Attempt) -> String {
        match attempt {
            Attempt::Failed(reason) => reason,
            Attempt::Unavailable(reason) => panic!("unavailable: {reason}"),
            Attempt::Token(_) => panic!("a token"),
        }
    }

    /// Parts of the fixtures' private keys, which no message may show.
    fn key_material() -> Vec<String> {
        [double::CLIENT_CERTIFICATE, double::UNREGISTERED_CERTIFICATE]
            .iter()
            .flat_map(|name| {
                let pem = std::fs::read_to_string(fixture(name)).unwrap();
                let key = &pem[pem.find("PRIVATE KEY-----").unwrap()..];
                key.lines()
                    .skip(1)
                    .take(3)
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .chain(["PRIVATE KEY-----".to_owned()])
            .collect()
    }

    fn assert_no_key_material(text: &str) {
        for m in key_material() {
            assert!(!text.contains(&m), "{text}");
        }
    }

    #[test]
    fn the_assertion_has_azures_header_and_claims_and_verifies() {
        let cert = load(double::CLIENT_CERTIFICATE).unwrap();
        let url = "http://127.0.0.1:1/tenant/oauth2/v2.0/token";
        let jwt = client_assertion(&cert, double::CLIENT_ID, url, 1_700_000_000, "jti-1").unwrap();
        let parts: Vec<&str> = jwt.expose_secret().split('.').collect();
        assert_eq!(parts.len(), 3);
        let header = decode(parts[0]);
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["typ"], "JWT");
        assert_eq!(header["x5t"], double::registered_thumbprint());
        let der = std::fs::read(fixture("client-cert.der")).unwrap();
        let sha256 = ring::digest::digest(&ring::digest::SHA256, &der);
        assert_eq!(header["x5t#S256"], base64_url(sha256.as_ref()));
        let claims = decode(parts[1]);
        assert_eq!(claims["aud"], url);
        assert_eq!(claims["iss"], double::CLIENT_ID);
        assert_eq!(claims["sub"], double::CLIENT_ID);
        assert_eq!(claims["jti"], "jti-1");
        assert_eq!(claims["nbf"], 1_700_000_000);
        assert_eq!(claims["iat"], 1_700_000_000);
        assert_eq!(claims["exp"], 1_700_000_600);
        // RS256 over "header.claims", verifiable with the certificate's public key.
        let public = std::fs::read(fixture("client-rsa-public.der")).unwrap();
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            public,
        )
        .verify(
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
        )
        .unwrap();
        assert!(format!("{cert:?}").ends_with(", .. }"), "{cert:?}");
    }

    #[test]
    fn pkcs8_and_pkcs1_keys_sign_the_same() {
        let pkcs8 = load(double::CLIENT_CERTIFICATE).unwrap();
        let pkcs1 = load(double::CLIENT_CERTIFICATE_PKCS1).unwrap();
        assert_eq!(pkcs8.x5t, pkcs1.x5t);
        // RSASSA-PKCS1-v1_5 is deterministic: one key, one signature.
        let sign = |c: &ClientCertificate| {
            client_assertion(c, double::CLIENT_ID, "http://127.0.0.1:1/t", 1, "j")
                .unwrap()
                .expose_secret()
                .to_owned()
        };
        assert_eq!(sign(&pkcs8), sign(&pkcs1));
    }

    #[test]
    fn unusable_files_are_refused_with_the_reason() {
        let pfx = load(double::CLIENT_CERTIFICATE_PFX).unwrap_err();
        assert!(
            pfx.contains("openssl pkcs12 -in cert.pfx -out cert.pem -nodes"),
            "{pfx}"
        );
        let ec = load(double::EC_CERTIFICATE).unwrap_err();
        assert!(ec.contains("not an RSA key"), "{ec}");

        let dir = tempfile::tempdir().unwrap();
        let full = std::fs::read_to_string(fixture(double::CLIENT_CERTIFICATE)).unwrap();
        let cert_only = &full[..full.find("-----BEGIN PRIVATE KEY").unwrap()];
        let key_only = &full[full.find("-----BEGIN PRIVATE KEY").unwrap()..];
        let cases = [
            (
                "cert-only.pem",
                cert_only.as_bytes().to_vec(),
                "no private key",
            ),
            (
                "key-only.pem",
                key_only.as_bytes().to_vec(),
                "no certificate",
            ),
            ("notes.txt", b"not a certificate".to_vec(), "not PEM"),
            // A PFX under another name is known by its DER start.
            (
                "renamed.pem",
                std::fs::read(fixture(double::CLIENT_CERTIFICATE_PFX)).unwrap(),
                "openssl pkcs12",
            ),
        ];
        for (name, bytes, expected) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let err =
                ClientCertificate::from_pem(&std::fs::read(&path).unwrap(), &path).unwrap_err();
            assert!(err.contains(expected), "{name}: {err}");
            assert_no_key_material(&err);
        }
    }

    #[tokio::test]
    async fn a_certificate_gets_a_token_through_the_cache() {
        let kv = KeyVaultDouble::start();
        for name in [double::CLIENT_CERTIFICATE, double::CLIENT_CERTIFICATE_PKCS1] {
            let c = credential(cert_env(&kv, fixture(name)));
            let first = c.get_token(SCOPE).await.unwrap();
            let second = c.get_token(SCOPE).await.unwrap();
            assert_eq!(first.expose_secret(), second.expose_secret(), "{name}");
        }
        // One token request per credential: the second read came from the cache.
        assert_eq!(kv.token_requests(), 2);
    }

    #[tokio::test]
    async fn the_secret_is_preferred_to_the_certificate() {
        let kv = KeyVaultDouble::start();
        // The certificate path names nothing: were it tried, the request would fail.
        let env = AzureEnv {
            client_secret: Some(SecretValue::new(double::CLIENT_SECRET)),
            ..cert_env(&kv, PathBuf::from("/nonexistent/pgvault-cert.pem"))
        };
        credential(env).get_token(SCOPE).await.unwrap();
        assert_eq!(kv.token_requests(), 1);
    }

    #[tokio::test]
    async fn certificate_failures_name_the_credential_and_the_reason() {
        let kv = KeyVaultDouble::start();
        let missing = PathBuf::from("/nonexistent/pgvault-cert.pem");
        let err = credential(cert_env(&kv, missing))
            .get_token(SCOPE)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("Azure credential environment failed"), "{err}");
        assert!(
            err.contains(
                "client certificate /nonexistent/pgvault-cert.pem: the file could not be read"
            ),
            "{err}"
        );
        assert_eq!(kv.token_requests(), 0);

        let err = credential(cert_env(&kv, fixture(double::UNREGISTERED_CERTIFICATE)))
            .get_token(SCOPE)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("client certificate"), "{err}");
        assert!(err.contains("AADSTS700027"), "{err}");
        assert_no_key_material(&err);

        let env = AzureEnv {
            client_certificate_password: Some(SecretValue::new("pfx-password-Hunter2")),
            ..cert_env(&kv, fixture(double::CLIENT_CERTIFICATE_PFX))
        };
        let err = credential(env)
            .get_token(SCOPE)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("openssl pkcs12"), "{err}");
        assert!(err.contains("AZURE_CLIENT_CERTIFICATE_PASSWORD"), "{err}");
        assert!(!err.contains("Hunter2"), "{err}");
    }

    /// The double checks what Entra checks: a forged thumbprint, an expired assertion and
    /// another audience are refused with Entra's codes.
    #[tokio::test]
    async fn the_double_refuses_assertions_entra_would() {
        let kv = KeyVaultDouble::start();
        let c = credential(cert_env(&kv, fixture(double::CLIENT_CERTIFICATE)));
        let url = c.token_url(double::TENANT_ID).unwrap();
        let post = |jwt: SecretValue| {
            let c = &c;
            async move {
                c.client_credentials(
                    double::TENANT_ID,
                    double::CLIENT_ID,
                    SCOPE,
                    &[
                        ("client_assertion_type", JWT_BEARER),
                        ("client_assertion", jwt.expose_secret()),
                    ],
                )
                .await
            }
        };
        let good = load(double::CLIENT_CERTIFICATE).unwrap();
        let ok = client_assertion(&good, double::CLIENT_ID, &url, unix_now(), "a").unwrap();
        assert!(matches!(post(ok).await, Attempt::Token(_)));

        // The unregistered key claiming the registered certificate's thumbprint.
        let mut forged = load(double::UNREGISTERED_CERTIFICATE).unwrap();
        forged.x5t = good.x5t.clone();
        let jwt = client_assertion(&forged, double::CLIENT_ID, &url, unix_now(), "b").unwrap();
        let err = refused(post(jwt).await);
        assert!(err.contains("401") && err.contains("AADSTS700027"), "{err}");
        assert!(
            err.contains("did not match the expected signature"),
            "{err}"
        );

        let an_hour_ago = unix_now() - 3600;
        let jwt = client_assertion(&good, double::CLIENT_ID, &url, an_hour_ago, "c").unwrap();
        assert!(refused(post(jwt).await).contains("AADSTS700024"));

        let other = url.replace(double::TENANT_ID, "another-tenant");
        let jwt = client_assertion(&good, double::CLIENT_ID, &other, unix_now(), "d").unwrap();
        assert!(refused(post(jwt).await).contains("AADSTS50013"));

        let jwt = client_assertion(&good, "another-client", &url, unix_now(), "e").unwrap();
        assert!(refused(post(jwt).await).contains("AADSTS700021"));

        let err = refused(post(SecretValue::new("not.a-jwt")).await);
        assert!(err.contains("400") && err.contains("AADSTS50027"), "{err}");
    }
}
