//! The Azure Key Vault client: secrets, `GET {vault}/secrets/{name}[/{version}]?api-version=7.4`
//! with a bearer token from [`super::identity`], read at every use so a rotated secret is
//! picked up by the next backup (the value is held in memory only, never written anywhere);
//! and keys' `wrapKey` / `unwrapKey` ([`KeyVaultClient::wrap_key`], in `keyvault/keys.rs`),
//! which wrap an encrypted vault's data key.
//!
//! Authentication follows Key Vault's challenge protocol, as Azure's SDKs do: the first request
//! to a vault goes without a token, and the 401's `WWW-Authenticate: Bearer
//! authorization=".."; resource=".."` names the resource to ask a token for. That is how a
//! sovereign cloud works without a table of clouds here (the vault host comes from the secret
//! URI, the resource from the vault). The resource must be the vault's own domain, so a
//! hostile endpoint cannot make pgvault fetch a token for another service. The scope learned
//! is remembered per vault for the life of the process.
//!
//! Throttling (429) and server errors (5xx) are retried with backoff, honouring `Retry-After`.
//! Errors carry the seeds' codes: `UserErrorInvalidSecret` (no such secret),
//! `UserErrorInvalidSecretStore` (vault unreachable, no credential),
//! `UserErrorMissingPermissionsOnSecretStore` (403) and
//! `UserErrorSecretValueInUnsupportedFormat`.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

mod keys;
pub use keys::{
    INVALID_KEY_REFERENCE, KEY_DISABLED, KEY_EXPIRED, KEY_NOT_FOUND, KEY_PERMISSIONS,
    KEY_UNSUPPORTED, KEY_VAULT_AUTHENTICATION, KEY_VAULT_UNAVAILABLE, UNWRAP_FAILED, WrappedKey,
    process_key_client,
};

use crate::identity::{AzureCredential, AzureEnv, CredentialKind, is_loopback};
use pgvault_model::code::ErrorCode;
use pgvault_model::secret::{KeyVaultSecretUri, SecretValue};

const API_VERSION: &str = "7.4";
/// Attempts for one request when Key Vault throttles or fails (the first one included).
const MAX_ATTEMPTS: u32 = 4;
/// The longest `Retry-After` honoured; a longer one is the service asking us to give up.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Why a Key Vault read failed, with its Azure code. The reason never contains the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVaultError {
    pub code: ErrorCode,
    pub reason: String,
}

impl KeyVaultError {
    fn new(code: ErrorCode, reason: impl Into<String>) -> Self {
        KeyVaultError {
            code,
            reason: reason.into(),
        }
    }
}

/// The codes a Key Vault read fails with.
pub const INVALID_SECRET: ErrorCode = ErrorCode::UserErrorInvalidSecret;
pub const INVALID_STORE: ErrorCode = ErrorCode::UserErrorInvalidSecretStore;
pub const MISSING_PERMISSIONS: ErrorCode = ErrorCode::UserErrorMissingPermissionsOnSecretStore;
pub const UNSUPPORTED_FORMAT: ErrorCode = ErrorCode::UserErrorSecretValueInUnsupportedFormat;

/// A Key Vault client with its credential. One per process (see [`configure`]).
pub struct KeyVaultClient {
    http: reqwest::Client,
    credential: Arc<AzureCredential>,
    /// The token scope each vault's challenge named, by vault base URL.
    scopes: tokio::sync::Mutex<HashMap<String, String>>,
}

static CHOICE: OnceLock<Option<CredentialKind>> = OnceLock::new();
static CLIENT: OnceLock<Arc<KeyVaultClient>> = OnceLock::new();

/// Pins the credential (`--azure-credential`) before the first Key Vault read. Calling it is
/// optional; without it `PGVAULT_AZURE_CREDENTIAL` is read, else the whole chain is tried.
/// Returns false if a choice was already made.
pub fn configure(kind: Option<CredentialKind>) -> bool {
    CHOICE.set(kind).is_ok()
}

/// The process's client, built at the first Key Vault reference: a process with no such
/// reference reads no Azure variable and opens no connection.
pub fn process_client() -> Result<Arc<KeyVaultClient>, KeyVaultError> {
    if let Some(c) = CLIENT.get() {
        return Ok(c.clone());
    }
    let credential = process_credential().map_err(|e| KeyVaultError::new(INVALID_STORE, e))?;
    let http = process_http().map_err(|e| KeyVaultError::new(INVALID_STORE, e))?;
    let client = Arc::new(KeyVaultClient::with_credential(credential, http));
    Ok(CLIENT.get_or_init(|| client).clone())
}

static CREDENTIAL: OnceLock<Arc<AzureCredential>> = OnceLock::new();
static HTTP: OnceLock<reqwest::Client> = OnceLock::new();

/// The process's Azure credential (the chain, or the one `--azure-credential` /
/// `PGVAULT_AZURE_CREDENTIAL` pins), shared by Key Vault and Blob Storage so that both use one
/// token cache. Built at first use.
pub fn process_credential() -> Result<Arc<AzureCredential>, String> {
    if let Some(c) = CREDENTIAL.get() {
        return Ok(c.clone());
    }
    let pinned = match CHOICE.get() {
        Some(choice) => *choice,
        None => match std::env::var("PGVAULT_AZURE_CREDENTIAL") {
            Ok(v) if !v.is_empty() => Some(
                v.parse()
                    .map_err(|e: String| format!("PGVAULT_AZURE_CREDENTIAL: {e}"))?,
            ),
            _ => None,
        },
    };
    let credential = Arc::new(AzureCredential::new(
        AzureEnv::from_process(pinned),
        process_http()?,
    ));
    Ok(CREDENTIAL.get_or_init(|| credential).clone())
}

/// The process's HTTP client for Entra and Key Vault (one connection pool, root
/// certificates loaded once).
fn process_http() -> Result<reqwest::Client, String> {
    if let Some(h) = HTTP.get() {
        return Ok(h.clone());
    }
    let http = http_client().map_err(|e| format!("no HTTP client: {e}"))?;
    Ok(HTTP.get_or_init(|| http).clone())
}

fn http_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .build()
}

impl KeyVaultClient {
    pub fn new(env: AzureEnv) -> Result<KeyVaultClient, KeyVaultError> {
        let http = http_client()
            .map_err(|e| KeyVaultError::new(INVALID_STORE, format!("no HTTP client: {e}")))?;
        let credential = Arc::new(AzureCredential::new(env, http.clone()));
        Ok(Self::with_credential(credential, http))
    }

    /// A client over a credential (and HTTP client) shared with others, as the process's.
    pub fn with_credential(
        credential: Arc<AzureCredential>,
        http: reqwest::Client,
    ) -> KeyVaultClient {
        KeyVaultClient {
            credential,
            http,
            scopes: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Reads the secret's current (or pinned) version.
    pub async fn get_secret(&self, uri: &KeyVaultSecretUri) -> Result<SecretValue, KeyVaultError> {
        let base = uri.vault_url();
        let mut url = format!("{base}/secrets/{}", uri.secret_name());
        if let Some(v) = uri.version() {
            url.push('/');
            url.push_str(v);
        }
        url.push_str("?api-version=");
        url.push_str(API_VERSION);

        let request = Request {
            method: reqwest::Method::GET,
            url: &url,
            body: None,
        };
        let token = self.token_for(&base, &request, &SECRET_FAILURES).await?;
        let response = self.send(&request, Some(&token), &SECRET_FAILURES).await?;
        read_secret(response).await
    }

    /// A token for the vault at `base`: the scope its challenge named, learned at the first
    /// request to it (sent without a token and without a body, as Azure's SDKs send it, so
    /// that nothing reaches a vault before it proved to be one), then the credential's token
    /// for that scope.
    async fn token_for(
        &self,
        base: &str,
        request: &Request<'_>,
        failures: &Failures,
    ) -> Result<SecretValue, KeyVaultError> {
        let known_scope = self.scopes.lock().await.get(base).cloned();
        let scope = match known_scope {
            Some(s) => s,
            None => {
                let bare = Request {
                    body: None,
                    ..request.clone()
                };
                let first = self.send(&bare, None, failures).await?;
                if first.status() != reqwest::StatusCode::UNAUTHORIZED {
                    return Err(KeyVaultError::new(
                        failures.unavailable.clone(),
                        format!(
                            "{base} answered {} without asking for a token; is it a Key Vault?",
                            first.status()
                        ),
                    ));
                }
                let scope = challenge_scope(&first, base, failures)?;
                self.scopes
                    .lock()
                    .await
                    .insert(base.to_owned(), scope.clone());
                scope
            }
        };
        self.credential
            .get_token(&scope)
            .await
            .map_err(|e| KeyVaultError::new(failures.authentication.clone(), e.to_string()))
    }

    /// One request, retried on 429 and 5xx.
    async fn send(
        &self,
        request: &Request<'_>,
        token: Option<&SecretValue>,
        failures: &Failures,
    ) -> Result<reqwest::Response, KeyVaultError> {
        let mut attempt = 1;
        loop {
            let mut req = self.http.request(request.method.clone(), request.url);
            if let Some(t) = token {
                req = req.bearer_auth(t.expose_secret());
            }
            req = match request.body {
                Some(body) => req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.to_vec()),
                // A POST without a body still says so, as HTTP/1.1 servers expect.
                None if request.method == reqwest::Method::POST => {
                    req.header(reqwest::header::CONTENT_LENGTH, 0)
                }
                None => req,
            };
            let response = req.send().await.map_err(|e| {
                // reqwest's error names the URL (a vault and an object name), never the body.
                KeyVaultError::new(
                    failures.unavailable.clone(),
                    format!("the vault could not be reached (does it exist?): {e}"),
                )
            })?;
            let status = response.status();
            let retryable =
                status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
            if !retryable || attempt >= MAX_ATTEMPTS {
                return Ok(response);
            }
            let delay = retry_after(&response)
                .unwrap_or(Duration::from_millis(500) * 2u32.pow(attempt - 1));
            if delay > MAX_RETRY_AFTER {
                return Ok(response);
            }
            tracing::debug!(%status, ?delay, attempt, "Key Vault asked to retry");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let v = response.headers().get("retry-after")?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// One Key Vault request, as sent (again) by [`KeyVaultClient::send`]. The body, when there is
/// one, may hold key material: it goes only to the vault, never into an error or a log.
#[derive(Clone)]
struct Request<'a> {
    method: reqwest::Method,
    url: &'a str,
    body: Option<&'a [u8]>,
}

/// The codes a request fails with when the vault cannot be used at all (unreachable, not a
/// vault, throttled past the attempts allowed) and when pgvault's identity cannot get in:
/// secrets have one code for both (the seeds'), keys one each.
#[derive(Clone)]
struct Failures {
    unavailable: ErrorCode,
    authentication: ErrorCode,
}

const SECRET_FAILURES: Failures = Failures {
    unavailable: INVALID_STORE,
    authentication: INVALID_STORE,
};

/// The scope a 401 challenge names (`resource="https://vault.azure.net"` or `scope=".."`),
/// checked against the vault's own host (`base`, as `https://<vault>.<suffix>`).
fn challenge_scope(
    response: &reqwest::Response,
    base: &str,
    failures: &Failures,
) -> Result<String, KeyVaultError> {
    let header = response
        .headers()
        .get("www-authenticate")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let param = |name: &str| {
        header
            .trim_start_matches("Bearer")
            .split([',', ' '])
            .filter_map(|p| p.trim().split_once('='))
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim_matches('"').to_owned())
    };
    let resource = param("resource")
        .or_else(|| param("scope").map(|s| s.trim_end_matches("/.default").to_owned()))
        .ok_or_else(|| {
            KeyVaultError::new(
                failures.unavailable.clone(),
                format!("{base} asked for a token without naming a resource; is it a Key Vault?"),
            )
        })?;
    let resource_url = url::Url::parse(&resource).ok();
    let vault_url = url::Url::parse(base).ok();
    let matches = match (&resource_url, &vault_url) {
        // A double on this machine may name any resource: no token leaves the machine.
        (_, Some(v)) if is_loopback(v) => true,
        (Some(r), Some(v)) => match (r.host_str(), v.host_str()) {
            (Some(rh), Some(vh)) => vh.ends_with(&format!(".{rh}")),
            _ => false,
        },
        _ => false,
    };
    if !matches {
        return Err(KeyVaultError::new(
            failures.authentication.clone(),
            format!(
                "{base} asked for a token for {resource}, which is not its own domain; refusing"
            ),
        ));
    }
    Ok(format!("{}/.default", resource.trim_end_matches('/')))
}

/// Maps Key Vault's answer to the value or to the seeds' codes.
async fn read_secret(response: reqwest::Response) -> Result<SecretValue, KeyVaultError> {
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or(serde_json::Value::Null);
    if status.is_success() {
        return match body.get("value").and_then(|v| v.as_str()) {
            Some("") => Err(KeyVaultError::new(
                UNSUPPORTED_FORMAT,
                "the secret's value is empty; store the connection string in it",
            )),
            Some(v) => Ok(SecretValue::new(v)),
            None => Err(KeyVaultError::new(
                UNSUPPORTED_FORMAT,
                "Key Vault returned no text value for the secret",
            )),
        };
    }
    // Key Vault's own error text names the secret or the identity, never a value.
    let code = body["error"]["code"].as_str().unwrap_or("");
    let message = body["error"]["message"].as_str().unwrap_or("");
    let detail = if message.is_empty() {
        format!("Key Vault answered {status}")
    } else {
        format!("Key Vault answered {status} {code}: {message}")
    };
    Err(match status.as_u16() {
        404 => KeyVaultError::new(
            INVALID_SECRET,
            format!("no such secret (or version) in the vault; {detail}"),
        ),
        403 => KeyVaultError::new(
            MISSING_PERMISSIONS,
            format!(
                "the identity may not read secrets here; grant it the Key Vault Secrets User \
                 role (or get permission on secrets); {detail}"
            ),
        ),
        401 => KeyVaultError::new(INVALID_STORE, format!("the token was refused; {detail}")),
        _ => KeyVaultError::new(INVALID_STORE, detail),
    })
}

/// Against the Key Vault and Entra double of `pgvault-testkit` (see its module doc for what it
/// answers): the challenge, the token cache, rotation, 403, 404, throttling and credential
/// errors, configured as a sovereign-cloud user configures pgvault.
#[cfg(test)]
mod tests {
    use super::*;
    use pgvault_model::secret::SecretRef;
    use pgvault_testkit::keyvault_double::{self as double, KeyVaultDouble};

    fn env(kv: &KeyVaultDouble, secret: &str) -> AzureEnv {
        AzureEnv {
            tenant_id: Some(double::TENANT_ID.into()),
            client_id: Some(double::CLIENT_ID.into()),
            client_secret: Some(SecretValue::new(secret)),
            authority_host: Some(kv.authority_host()),
            ..AzureEnv::default()
        }
    }

    fn uri(kv: &KeyVaultDouble, name: &str) -> KeyVaultSecretUri {
        match kv.secret_uri(name).parse::<SecretRef>().unwrap() {
            SecretRef::KeyVault(u) => u,
            other => panic!("{other}"),
        }
    }

    #[tokio::test]
    async fn reads_the_latest_version_and_caches_the_token() {
        let kv = KeyVaultDouble::start();
        kv.set_secret("pg", "Password=one");
        let client = KeyVaultClient::new(env(&kv, double::CLIENT_SECRET)).unwrap();
        let v = client.get_secret(&uri(&kv, "pg")).await.unwrap();
        assert_eq!(v.expose_secret(), "Password=one");
        let first_version = kv.latest_version("pg");
        kv.set_secret("pg", "Password=two");
        let v = client.get_secret(&uri(&kv, "pg")).await.unwrap();
        assert_eq!(v.expose_secret(), "Password=two");
        // One challenge, one token, two reads: the token and the scope were reused.
        assert_eq!(kv.token_requests(), 1);
        assert_eq!(kv.requests(), 4);
        // A pinned version still reads the old value.
        let pinned = format!("{}/{first_version}", kv.secret_uri("pg"));
        let SecretRef::KeyVault(pinned) = pinned.parse().unwrap() else {
            panic!()
        };
        let v = client.get_secret(&pinned).await.unwrap();
        assert_eq!(v.expose_secret(), "Password=one");
    }

    #[tokio::test]
    async fn maps_answers_to_the_seeds_codes() {
        let kv = KeyVaultDouble::start();
        kv.set_secret("locked", "Password=x");
        kv.forbid("locked");
        kv.set_secret("empty", "");
        let client = KeyVaultClient::new(env(&kv, double::CLIENT_SECRET)).unwrap();
        let cases = [
            ("missing", INVALID_SECRET, "no such secret"),
            ("locked", MISSING_PERMISSIONS, "Key Vault Secrets User"),
            ("empty", UNSUPPORTED_FORMAT, "empty"),
        ];
        for (name, code, text) in cases {
            let err = client.get_secret(&uri(&kv, name)).await.unwrap_err();
            assert_eq!(err.code, code, "{name}: {err:?}");
            assert!(err.reason.contains(text), "{name}: {}", err.reason);
            assert!(!err.reason.contains("Password=x"));
        }
    }

    #[tokio::test]
    async fn retries_throttling_as_told() {
        let kv = KeyVaultDouble::start();
        kv.set_secret("busy", "Password=b");
        kv.throttle("busy", 2);
        let client = KeyVaultClient::new(env(&kv, double::CLIENT_SECRET)).unwrap();
        let v = client.get_secret(&uri(&kv, "busy")).await.unwrap();
        assert_eq!(v.expose_secret(), "Password=b");
        // Challenge, token, two 429s, the read.
        assert_eq!(kv.requests(), 5);
        // Throttled past the attempts allowed: the store is unavailable, not the secret.
        kv.throttle("busy", MAX_ATTEMPTS);
        let err = client.get_secret(&uri(&kv, "busy")).await.unwrap_err();
        assert_eq!(err.code, INVALID_STORE, "{err:?}");
    }

    #[tokio::test]
    async fn a_refused_credential_is_named_without_its_secret() {
        let kv = KeyVaultDouble::start();
        kv.set_secret("pg", "Password=one");
        let client = KeyVaultClient::new(env(&kv, "wrong-secret-Hunter2")).unwrap();
        let err = client.get_secret(&uri(&kv, "pg")).await.unwrap_err();
        assert_eq!(err.code, INVALID_STORE);
        assert!(err.reason.contains("environment"), "{}", err.reason);
        assert!(err.reason.contains("AADSTS7000215"), "{}", err.reason);
        assert!(!err.reason.contains("Hunter2"), "{}", err.reason);
    }

    #[tokio::test]
    async fn a_pinned_credential_that_is_not_configured_says_so() {
        let kv = KeyVaultDouble::start();
        kv.set_secret("pg", "Password=one");
        let env = AzureEnv {
            pinned: Some(CredentialKind::WorkloadIdentity),
            ..env(&kv, double::CLIENT_SECRET)
        };
        let client = KeyVaultClient::new(env).unwrap();
        let err = client.get_secret(&uri(&kv, "pg")).await.unwrap_err();
        assert!(err.reason.contains("workload-identity"), "{}", err.reason);
        assert!(
            err.reason.contains("AZURE_FEDERATED_TOKEN_FILE"),
            "{}",
            err.reason
        );
        // The environment credential, configured but not pinned, was not used.
        assert_eq!(kv.token_requests(), 0);
    }

    #[tokio::test]
    async fn an_unreachable_vault_is_an_invalid_store() {
        // A port nothing listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let SecretRef::KeyVault(u) = format!("http://127.0.0.1:{port}/secrets/pg")
            .parse()
            .unwrap()
        else {
            panic!()
        };
        let client = KeyVaultClient::new(AzureEnv::default()).unwrap();
        let err = client.get_secret(&u).await.unwrap_err();
        assert_eq!(err.code, INVALID_STORE);
        assert!(
            err.reason.contains("could not be reached"),
            "{}",
            err.reason
        );
    }

    #[tokio::test]
    async fn challenge_for_another_domain_is_refused() {
        let kv = KeyVaultDouble::start();
        // Only a loopback vault may name any resource; a real vault host must match it.
        let SecretRef::KeyVault(real) =
            "https://myvault.vault.azure.cn/secrets/pg".parse().unwrap()
        else {
            panic!()
        };
        let response = reqwest::get(format!("{}?api-version=7.4", kv.secret_uri("pg")))
            .await
            .unwrap();
        let err = challenge_scope(&response, &real.vault_url(), &SECRET_FAILURES).unwrap_err();
        assert!(err.reason.contains("not its own domain"), "{}", err.reason);
        let response = reqwest::get(format!("{}?api-version=7.4", kv.secret_uri("pg")))
            .await
            .unwrap();
        let local = uri(&kv, "pg");
        assert_eq!(
            challenge_scope(&response, &local.vault_url(), &SECRET_FAILURES).unwrap(),
            "https://vault.azure.net/.default"
        );
    }
}
