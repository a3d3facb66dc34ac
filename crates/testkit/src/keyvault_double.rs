//! A test double of Azure Key Vault's secrets API and of Microsoft Entra's token endpoint, on
//! a loopback port. Key Vault and Entra have no emulator, so this is the one place pgvault's
//! Azure client meets "a server"; it is small, hand-written HTTP/1.1 (one request per
//! connection), and answers only with the documented shapes:
//!
//! - `POST /{tenant}/oauth2/v2.0/token` (client credentials, scope
//!   `https://vault.azure.net/.default` or `https://storage.azure.com/.default`):
//!   `{"token_type":"Bearer","expires_in":3599,"access_token":..}`, the token a JWT with
//!   Entra's claims (audience, issuer, lifetime) and a dummy signature, for the configured
//!   client id with either
//!   - its client secret, else 401 `{"error":"invalid_client","error_description":
//!     "AADSTS7000215: .."}`; or
//!   - a certificate's client assertion (`client_assertion_type=urn:ietf:params:oauth:
//!     client-assertion-type:jwt-bearer`), which is really verified against the one
//!     registered certificate (`fixtures/client-cert.pem`): the JWT must parse (else 400
//!     `invalid_request` AADSTS50027), its header must say `alg` RS256 (else AADSTS5002738)
//!     and carry the certificate's base64url SHA-1 thumbprint as `x5t` (else AADSTS700027,
//!     key not found), its RS256 signature must verify with the certificate's public key
//!     (else AADSTS700027, invalid signature), `aud` must be this token URL (else
//!     AADSTS50013), `iss` and `sub` the client id (else AADSTS700021), and `nbf`..`exp`
//!     must hold now, with `jti` present (else AADSTS700024). Those refusals are 401
//!     `invalid_client`, as Entra answers them.
//! - `GET /secrets/{name}[/{version}]?api-version=7.4`: without a bearer token, 401 with
//!   `WWW-Authenticate: Bearer authorization="{authority}/{tenant}",
//!   resource="https://vault.azure.net"` (the challenge); with a wrong token, 401; a forbidden
//!   name, 403 `{"error":{"code":"Forbidden",..}}`; an unknown one, 404 `SecretNotFound`; a
//!   name set to throttle, 429 with `Retry-After: 0` that many times; else 200 `{"value",
//!   "id","attributes"}` of the latest (or asked) version. [`KeyVaultDouble::set_secret`] adds
//!   a version, which is how a test rotates a secret.
//! - `POST /keys/{name}[/{version}]/wrapkey` and `/unwrapkey` `?api-version=7.4`, body
//!   `{"alg","value"}` (`value` base64url without padding), with the same challenge and token
//!   checks as secrets: 200 `{"kid":"{base}/keys/{name}/{version}","value"}`, `kid` always the
//!   version that did the work (the latest one when the path names none). The refusals are
//!   Key Vault's: an unknown key or version, 404 `KeyNotFound`; a key the test forbids, 403
//!   `Forbidden` with inner error `ForbiddenByRbac` (the RBAC answer for an identity without the
//!   Key Vault Crypto Service Encryption User role); a disabled version, 403 `Forbidden` inner
//!   `KeyDisabled` for both operations; an expired version, 403 `Forbidden` inner `KeyExpired`
//!   for `wrapkey` only (Key Vault documents that an expired key still unwraps); an `alg` other
//!   than RSA's three, a `value` that is not base64url, or more than an RSA-2048 OAEP-256 block
//!   holds (190 bytes), 400 `BadParameter`; and a value that does not unwrap under that version
//!   and algorithm (another version's, tampered), 400 `BadParameter` "The parameter is
//!   incorrect.", as RSA decryption fails in Key Vault.
//!
//!   **A double of the documented protocol, not of the cryptography:** each key version here is
//!   a random AES-256-GCM key (ring), not an RSA key pair, and a wrapped value is nonce,
//!   ciphertext and tag (60 bytes for a 32-byte key) rather than an RSA-OAEP block. A client
//!   cannot tell: it never sees the key, only `wrapkey` and `unwrapkey`, and the properties it
//!   relies on hold (a value unwraps only under the version and `alg` that wrapped it, two wraps
//!   of one key differ). [`KeyVaultDouble::create_key`] and [`KeyVaultDouble::rotate_key`] add
//!   versions, [`KeyVaultDouble::disable_key`] and [`KeyVaultDouble::expire_key`] change one
//!   version's attributes, as `az keyvault key create|rotate|set-attributes` do.
//!
//! It is pointed at the way a sovereign-cloud user points pgvault: `AZURE_AUTHORITY_HOST` for
//! the token endpoint, and the vault's address in the secret URI. It counts every request, so
//! a test can show that nothing Azure was contacted. The certificates and keys it and the
//! tests use are test-only fixtures (`fixtures/README.md` says how they were made).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub const TENANT_ID: &str = "00000000-0000-0000-0000-0000000000aa";
pub const CLIENT_ID: &str = "00000000-0000-0000-0000-0000000000bb";
pub const CLIENT_SECRET: &str = "double-client-secret-Zq8";

/// The registered certificate and its PKCS#8 private key, as `AZURE_CLIENT_CERTIFICATE_PATH`.
pub const CLIENT_CERTIFICATE: &str = "client-cert.pem";
/// The same certificate with its key as PKCS#1 (`RSA PRIVATE KEY`).
pub const CLIENT_CERTIFICATE_PKCS1: &str = "client-cert-pkcs1.pem";
/// The same certificate and key as PKCS#12, password `test-only`.
pub const CLIENT_CERTIFICATE_PFX: &str = "client-cert.pfx";
/// A certificate and key the double does not know.
pub const UNREGISTERED_CERTIFICATE: &str = "unregistered-cert.pem";
/// A P-256 (not RSA) certificate and key.
pub const EC_CERTIFICATE: &str = "ec-cert.pem";

/// The registered certificate, DER, and its RSA public key (PKCS#1 `RSAPublicKey`, DER).
const REGISTERED_CERT_DER: &[u8] = include_bytes!("../fixtures/client-cert.der");
const REGISTERED_PUBLIC_KEY: &[u8] = include_bytes!("../fixtures/client-rsa-public.der");

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Where one of the test-only fixtures is (`fixture(CLIENT_CERTIFICATE)`).
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// The base64url SHA-1 thumbprint of the registered certificate: the `x5t` Entra looks up.
pub fn registered_thumbprint() -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        REGISTERED_CERT_DER,
    ))
}

/// One version of a key: its id, the AES-256-GCM key standing in for its RSA key pair, and the
/// attributes that gate its operations.
struct KeyVersion {
    id: String,
    secret: [u8; 32],
    enabled: bool,
    expired: bool,
}

#[derive(Default)]
struct State {
    /// Versions of each secret, oldest first: (version id, value).
    secrets: HashMap<String, Vec<(String, String)>>,
    forbidden: HashSet<String>,
    /// Versions of each key, oldest first.
    keys: HashMap<String, Vec<KeyVersion>>,
    forbidden_keys: HashSet<String>,
    throttle: HashMap<String, u32>,
    tokens: Vec<String>,
    /// Key operations that came with a body but without a token.
    bodies_before_token: usize,
    requests: usize,
    token_requests: usize,
}

/// A running double. The server thread lives until the test process exits.
pub struct KeyVaultDouble {
    base: String,
    state: Arc<Mutex<State>>,
}

impl KeyVaultDouble {
    pub fn start() -> KeyVaultDouble {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let (s, b) = (state.clone(), base.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                // A broken connection is the client's business; the double goes on.
                let _ = serve(stream, &s, &b);
            }
        });
        KeyVaultDouble { base, state }
    }

    /// What `AZURE_AUTHORITY_HOST` should be set to.
    pub fn authority_host(&self) -> String {
        self.base.clone()
    }

    /// The secret URI a user would give as `--secret-store-uri`.
    pub fn secret_uri(&self, name: &str) -> String {
        format!("{}/secrets/{name}", self.base)
    }

    /// Adds a version of `name` (creating it), as `az keyvault secret set` does.
    pub fn set_secret(&self, name: &str, value: &str) {
        let mut st = self.state.lock().unwrap();
        let versions = st.secrets.entry(name.to_owned()).or_default();
        let version = format!("{:032x}", versions.len() + 1);
        versions.push((version, value.to_owned()));
    }

    /// The version id of the latest value of `name`.
    pub fn latest_version(&self, name: &str) -> String {
        let st = self.state.lock().unwrap();
        st.secrets[name].last().unwrap().0.clone()
    }

    /// Answers 403 for `name`, as a vault whose access policy lacks `get` does.
    pub fn forbid(&self, name: &str) {
        self.state.lock().unwrap().forbidden.insert(name.to_owned());
    }

    /// The key URI a user would give as `--encryption-key-uri` (versionless).
    pub fn key_uri(&self, name: &str) -> String {
        format!("{}/keys/{name}", self.base)
    }

    /// Creates `name` (or adds a version to it, as `az keyvault key create` does for an
    /// existing name) and returns the new version's id.
    pub fn create_key(&self, name: &str) -> String {
        let mut secret = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
            .expect("the system's random source");
        let mut st = self.state.lock().unwrap();
        let versions = st.keys.entry(name.to_owned()).or_default();
        // Version ids are 32 hex digits, as Key Vault's; these count up so tests read well.
        let id = format!("{:032x}", 0xbeef_0000_u64 + versions.len() as u64 + 1);
        versions.push(KeyVersion {
            id: id.clone(),
            secret,
            enabled: true,
            expired: false,
        });
        id
    }

    /// Adds a new current version to an existing key, as `az keyvault key rotate`; older
    /// versions stay and still unwrap what they wrapped.
    pub fn rotate_key(&self, name: &str) -> String {
        assert!(
            self.state.lock().unwrap().keys.contains_key(name),
            "rotate_key: no key {name}; create it first"
        );
        self.create_key(name)
    }

    /// The id of the current (latest) version of key `name`.
    pub fn latest_key_version(&self, name: &str) -> String {
        let st = self.state.lock().unwrap();
        st.keys[name].last().unwrap().id.clone()
    }

    /// Disables one version of a key (`az keyvault key set-attributes --enabled false`): it
    /// neither wraps nor unwraps.
    pub fn disable_key(&self, name: &str, version: &str) {
        self.key_version(name, version, |v| v.enabled = false);
    }

    /// Puts one version's expiry in the past: it no longer wraps, and still unwraps.
    pub fn expire_key(&self, name: &str, version: &str) {
        self.key_version(name, version, |v| v.expired = true);
    }

    fn key_version(&self, name: &str, version: &str, change: impl FnOnce(&mut KeyVersion)) {
        let mut st = self.state.lock().unwrap();
        let v = st
            .keys
            .get_mut(name)
            .and_then(|vs| vs.iter_mut().find(|v| v.id == version))
            .unwrap_or_else(|| panic!("no version {version} of key {name}"));
        change(v);
    }

    /// Answers 403 (RBAC) to key operations on `name`, as Key Vault does for an identity
    /// without the Key Vault Crypto Service Encryption User role on it.
    pub fn forbid_key(&self, name: &str) {
        self.state
            .lock()
            .unwrap()
            .forbidden_keys
            .insert(name.to_owned());
    }

    /// Answers 429 with `Retry-After: 0` the next `times` reads of `name`, or key operations
    /// on key `name`.
    pub fn throttle(&self, name: &str, times: u32) {
        self.state
            .lock()
            .unwrap()
            .throttle
            .insert(name.to_owned(), times);
    }

    /// Every request received, of any kind.
    pub fn requests(&self) -> usize {
        self.state.lock().unwrap().requests
    }

    /// Key operations received with a body (a key to wrap or unwrap) but no bearer token: a
    /// careful client sends none, as its first request only learns the challenge.
    pub fn bodies_before_token(&self) -> usize {
        self.state.lock().unwrap().bodies_before_token
    }

    /// Token requests received.
    pub fn token_requests(&self) -> usize {
        self.state.lock().unwrap().token_requests
    }
}

struct Answer {
    status: &'static str,
    headers: Vec<(String, String)>,
    body: String,
}

fn answer(status: &'static str, body: String) -> Answer {
    Answer {
        status,
        headers: Vec::new(),
        body,
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>, base: &str) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("").to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let body = String::from_utf8_lossy(&body).into_owned();

    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let a = {
        let mut st = state.lock().unwrap();
        st.requests += 1;
        if method == "POST" && path == format!("/{TENANT_ID}/oauth2/v2.0/token") {
            token(&mut st, base, &body)
        } else if method == "GET" && path.starts_with("/secrets/") {
            secret(&mut st, base, path, query, headers.get("authorization"))
        } else if method == "POST" && path.starts_with("/keys/") {
            key_operation(
                &mut st,
                base,
                path,
                query,
                headers.get("authorization"),
                &body,
            )
        } else {
            answer("404 Not Found", String::new())
        }
    };
    let mut out = stream;
    let mut head = format!(
        "HTTP/1.1 {}\r\ncontent-type: application/json; charset=utf-8\r\n\
         content-length: {}\r\nconnection: close\r\n",
        a.status,
        a.body.len()
    );
    for (k, v) in &a.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    out.write_all(a.body.as_bytes())?;
    out.flush()
}

/// A field of an `application/x-www-form-urlencoded` body, decoded.
fn form_field(body: &str, name: &str) -> Option<String> {
    body.split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| percent_decode(v))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An Entra error answer: `{"error","error_description":"AADSTS{code}: ..","error_codes"}`.
fn entra_error(status: &'static str, error: &str, code: u32, message: &str) -> Answer {
    answer(
        status,
        format!(
            r#"{{"error":"{error}","error_description":{},"error_codes":[{code}]}}"#,
            json_string(&format!("AADSTS{code}: {message}\r\nTrace ID: 0"))
        ),
    )
}

fn token(st: &mut State, base: &str, body: &str) -> Answer {
    st.token_requests += 1;
    let request_ok = form_field(body, "grant_type").as_deref() == Some("client_credentials")
        && form_field(body, "client_id").as_deref() == Some(CLIENT_ID)
        && form_field(body, "scope")
            .as_deref()
            .is_some_and(|s| RESOURCES.iter().any(|r| s == format!("{r}/.default")));
    let assertion = form_field(body, "client_assertion")
        .filter(|_| form_field(body, "client_assertion_type").as_deref() == Some(JWT_BEARER));
    let proof = match (request_ok, assertion) {
        (true, Some(assertion)) => {
            check_assertion(&assertion, &format!("{base}/{TENANT_ID}/oauth2/v2.0/token"))
        }
        (true, None) if form_field(body, "client_secret").as_deref() == Some(CLIENT_SECRET) => {
            Ok(())
        }
        _ => Err(entra_error(
            "401 Unauthorized",
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is \
             the client secret value, not the client secret ID.",
        )),
    };
    if let Err(refused) = proof {
        return refused;
    }
    let resource = form_field(body, "scope")
        .and_then(|s| s.strip_suffix("/.default").map(str::to_owned))
        .unwrap_or_default();
    let token = access_token(&resource, st.tokens.len() + 1);
    if resource == KEY_VAULT_RESOURCE {
        st.tokens.push(token.clone());
    }
    answer(
        "200 OK",
        format!(
            r#"{{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"{token}"}}"#
        ),
    )
}

/// The resources the double issues tokens for: Key Vault, whose API it also serves, and Blob
/// Storage, whose tokens Azurite (started with `--oauth basic`) accepts.
const KEY_VAULT_RESOURCE: &str = "https://vault.azure.net";
const RESOURCES: [&str; 2] = [KEY_VAULT_RESOURCE, "https://storage.azure.com"];

/// An access token shaped as Entra's are, a JWT whose claims name the audience, the issuer
/// (`https://sts.windows.net/{tenant}/`), the application and the lifetime. Its signature is
/// not a real one: Key Vault here checks the token by value, and Azurite checks only claims.
fn access_token(resource: &str, serial: usize) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let header = URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"RS256"}"#);
    let claims = URL_SAFE_NO_PAD.encode(format!(
        r#"{{"aud":"{resource}","iss":"https://sts.windows.net/{TENANT_ID}/","iat":{now},"nbf":{now},"exp":{},"appid":"{CLIENT_ID}","tid":"{TENANT_ID}","uti":"double-{serial}","ver":"1.0"}}"#,
        now + 3599
    ));
    let signature = URL_SAFE_NO_PAD.encode(format!("double-signature-{serial}"));
    format!("{header}.{claims}.{signature}")
}

/// Entra's checks of a certificate credential's client assertion (RFC 7523), in its order:
/// the JWT's shape, the key it names, the signature, then the claims.
fn check_assertion(jwt: &str, token_url: &str) -> Result<(), Answer> {
    let refused = |code, message: &str| {
        Err(entra_error(
            "401 Unauthorized",
            "invalid_client",
            code,
            message,
        ))
    };
    let malformed = || {
        Err(entra_error(
            "400 Bad Request",
            "invalid_request",
            50027,
            "JWT token is invalid or malformed.",
        ))
    };
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header_b64, claims_b64, signature_b64] = parts[..] else {
        return malformed();
    };
    let decode_json = |part: &str| -> Option<serde_json::Value> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
    };
    let (Some(header), Some(claims), Ok(signature)) = (
        decode_json(header_b64),
        decode_json(claims_b64),
        URL_SAFE_NO_PAD.decode(signature_b64),
    ) else {
        return malformed();
    };
    let alg = header["alg"].as_str().unwrap_or("");
    if alg != "RS256" {
        return refused(
            5002738,
            &format!("Invalid JWT token. '{alg}' is not a supported signature algorithm."),
        );
    }
    let x5t = header["x5t"].as_str().unwrap_or("");
    if x5t != registered_thumbprint() {
        // Entra names the thumbprint in hex, as the portal shows it.
        let hex: String = URL_SAFE_NO_PAD
            .decode(x5t)
            .unwrap_or_default()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        return refused(
            700027,
            &format!(
                "Client assertion failed signature validation. [Reason - The key was not \
                 found., Thumbprint of key used by client: '{hex}', Please visit the Azure \
                 Portal to see configured keys for app Id '{CLIENT_ID}'.]"
            ),
        );
    }
    let signed = &jwt.as_bytes()[..header_b64.len() + 1 + claims_b64.len()];
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        REGISTERED_PUBLIC_KEY,
    );
    if key.verify(signed, &signature).is_err() {
        return refused(
            700027,
            "Client assertion contains an invalid signature. [Reason - The provided \
             signature value did not match the expected signature value.]",
        );
    }
    if claims["aud"].as_str() != Some(token_url) {
        return refused(
            50013,
            &format!(
                "Assertion failed signature validation. [Reason - The audience in the \
                 assertion was '{}' and the expected audience is '{token_url}'.]",
                claims["aud"].as_str().unwrap_or("")
            ),
        );
    }
    if claims["iss"].as_str() != Some(CLIENT_ID) || claims["sub"].as_str() != Some(CLIENT_ID) {
        return refused(
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter.",
        );
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (Some(nbf), Some(exp)) = (claims["nbf"].as_u64(), claims["exp"].as_u64()) else {
        return malformed();
    };
    // Entra allows five minutes of clock skew.
    if nbf > now + 300 || exp <= now || claims["jti"].as_str().is_none_or(str::is_empty) {
        return refused(
            700024,
            "Client assertion is not within its valid time range.",
        );
    }
    Ok(())
}

fn kv_error(status: &'static str, code: &str, message: &str) -> Answer {
    answer(
        status,
        format!(
            r#"{{"error":{{"code":"{code}","message":{}}}}}"#,
            json_string(message)
        ),
    )
}

/// Key Vault's error with an inner error code, as its 403s carry (`ForbiddenByRbac`,
/// `KeyDisabled`, ...).
fn kv_error_inner(status: &'static str, code: &str, message: &str, inner: &str) -> Answer {
    answer(
        status,
        format!(
            r#"{{"error":{{"code":"{code}","message":{},"innererror":{{"code":"{inner}"}}}}}}"#,
            json_string(message)
        ),
    )
}

/// The checks every Key Vault call passes first: the api-version, then the bearer token (none:
/// the challenge; one the double did not issue: 401). `None` lets the call go on.
fn authorize(
    st: &State,
    base: &str,
    query: &str,
    authorization: Option<&String>,
) -> Option<Answer> {
    if query != "api-version=7.4" {
        return Some(kv_error(
            "400 Bad Request",
            "BadParameter",
            "The api-version is missing or not supported.",
        ));
    }
    let token = authorization.and_then(|a| a.strip_prefix("Bearer "));
    match token {
        None => {
            let mut a = kv_error(
                "401 Unauthorized",
                "Unauthorized",
                "AKV10000: Request is missing a Bearer or PoP token.",
            );
            a.headers.push((
                "www-authenticate".into(),
                format!(
                    r#"Bearer authorization="{base}/{TENANT_ID}", resource="https://vault.azure.net""#
                ),
            ));
            Some(a)
        }
        Some(t) if !st.tokens.iter().any(|k| k == t) => Some(kv_error(
            "401 Unauthorized",
            "Unauthorized",
            "AKV10032: Invalid issuer.",
        )),
        Some(_) => None,
    }
}

fn secret(
    st: &mut State,
    base: &str,
    path: &str,
    query: &str,
    authorization: Option<&String>,
) -> Answer {
    if let Some(refused) = authorize(st, base, query, authorization) {
        return refused;
    }
    let mut segments = path.trim_start_matches("/secrets/").split('/');
    let name = segments.next().unwrap_or("").to_owned();
    let version = segments.next().filter(|v| !v.is_empty());
    if st.forbidden.contains(&name) {
        return kv_error(
            "403 Forbidden",
            "Forbidden",
            "The user, group or application does not have secrets get permission on key vault.",
        );
    }
    if let Some(n) = st.throttle.get_mut(&name).filter(|n| **n > 0) {
        *n -= 1;
        let mut a = kv_error(
            "429 Too Many Requests",
            "Throttled",
            "Request was not processed because too many requests were received.",
        );
        a.headers.push(("retry-after".into(), "0".into()));
        return a;
    }
    let found = st.secrets.get(&name).and_then(|versions| match version {
        Some(v) => versions.iter().find(|(id, _)| id == v),
        None => versions.last(),
    });
    match found {
        Some((id, value)) => answer(
            "200 OK",
            format!(
                r#"{{"value":{},"id":"{base}/secrets/{name}/{id}","attributes":{{"enabled":true}}}}"#,
                json_string(value)
            ),
        ),
        None => kv_error(
            "404 Not Found",
            "SecretNotFound",
            &format!("A secret with (name/id) {name} was not found in this key vault."),
        ),
    }
}

/// The two operations on keys the double serves.
#[derive(Clone, Copy, PartialEq)]
enum KeyOp {
    Wrap,
    Unwrap,
}

impl KeyOp {
    /// The name Key Vault's messages use.
    fn name(self) -> &'static str {
        match self {
            KeyOp::Wrap => "wrapKey",
            KeyOp::Unwrap => "unwrapKey",
        }
    }
}

/// The most an RSA-2048 key wraps with OAEP-256: 256 - 2 * 32 - 2 bytes.
const RSA_2048_OAEP_256_MAX: usize = 190;
const NONCE_LEN: usize = 12;

fn key_operation(
    st: &mut State,
    base: &str,
    path: &str,
    query: &str,
    authorization: Option<&String>,
    body: &str,
) -> Answer {
    let segments: Vec<&str> = path.trim_start_matches("/keys/").split('/').collect();
    let (name, version, op) = match segments[..] {
        [name, op] => (name, None, op),
        [name, version, op] => (name, Some(version), op),
        _ => return answer("404 Not Found", String::new()),
    };
    let op = match op {
        "wrapkey" => KeyOp::Wrap,
        "unwrapkey" => KeyOp::Unwrap,
        _ => return answer("404 Not Found", String::new()),
    };
    // The challenge comes before the body is read: a client should send the body (a key to
    // wrap) only with a token, which the double counts.
    if let Some(refused) = authorize(st, base, query, authorization) {
        if authorization.is_none() && !body.is_empty() {
            st.bodies_before_token += 1;
        }
        return refused;
    }
    if st.forbidden_keys.contains(name) {
        let action = match op {
            KeyOp::Wrap => "wrap",
            KeyOp::Unwrap => "unwrap",
        };
        return kv_error_inner(
            "403 Forbidden",
            "Forbidden",
            &format!(
                "Caller is not authorized to perform action on resource.\r\nIf role \
                 assignments, deny assignments or role definitions were changed recently, \
                 please observe propagation time.\r\nCaller: appid={CLIENT_ID};iss=https://\
                 sts.windows.net/{TENANT_ID}/\r\nAction: 'Microsoft.KeyVault/vaults/keys/\
                 {action}/action'\r\nResource: '{name}'\r\nAssignment: (not found)\r\n\
                 DenyAssignmentId: null\r\nDecisionReason: null \r\nVault: double;\
                 location=local\r\n"
            ),
            "ForbiddenByRbac",
        );
    }
    if let Some(n) = st.throttle.get_mut(name).filter(|n| **n > 0) {
        *n -= 1;
        let mut a = kv_error(
            "429 Too Many Requests",
            "Throttled",
            "Request was not processed because too many requests were received.",
        );
        a.headers.push(("retry-after".into(), "0".into()));
        return a;
    }
    let request: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let alg = request
        .as_ref()
        .and_then(|r| r["alg"].as_str())
        .unwrap_or("")
        .to_owned();
    let value = request
        .as_ref()
        .and_then(|r| r["value"].as_str())
        .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok());
    let Some(value) = value else {
        return kv_error(
            "400 Bad Request",
            "BadParameter",
            "Content of 'value' is not base64url.\r\nProperty 'value' is required.\r\n",
        );
    };
    if !["RSA-OAEP-256", "RSA-OAEP", "RSA1_5"].contains(&alg.as_str()) {
        return kv_error(
            "400 Bad Request",
            "BadParameter",
            "Property 'alg' is required and must be one of: RSA-OAEP, RSA-OAEP-256, RSA1_5.",
        );
    }
    let not_found = || {
        let id = match version {
            Some(v) => format!("{name}/{v}"),
            None => name.to_owned(),
        };
        kv_error(
            "404 Not Found",
            "KeyNotFound",
            &format!(
                "A key with (name/id) {id} was not found in this key vault. If you recently \
                 deleted this key you may be able to recover it using the correct recovery \
                 command. For help resolving this issue, please see \
                 https://go.microsoft.com/fwlink/?linkid=2125182"
            ),
        )
    };
    let found = st.keys.get(name).and_then(|versions| match version {
        Some(v) => versions.iter().find(|k| k.id == v),
        None => versions.last(),
    });
    let Some(key) = found else {
        return not_found();
    };
    if !key.enabled {
        return kv_error_inner(
            "403 Forbidden",
            "Forbidden",
            &format!("Operation {} is not allowed on a disabled key.", op.name()),
            "KeyDisabled",
        );
    }
    if key.expired && op == KeyOp::Wrap {
        return kv_error_inner(
            "403 Forbidden",
            "Forbidden",
            &format!("Operation {} is not allowed on a expired key.", op.name()),
            "KeyExpired",
        );
    }
    let incorrect = || {
        kv_error(
            "400 Bad Request",
            "BadParameter",
            "The parameter is incorrect.\r\n",
        )
    };
    let cipher = ring::aead::LessSafeKey::new(
        ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &key.secret)
            .expect("a 32-byte AES-256 key"),
    );
    // The algorithm is bound to the wrapped value, as unwrapping an RSA-OAEP-256 block with
    // RSA-OAEP fails.
    let aad = ring::aead::Aad::from(alg.clone());
    let result = match op {
        KeyOp::Wrap => {
            if value.len() > RSA_2048_OAEP_256_MAX {
                return incorrect();
            }
            let mut nonce = [0u8; NONCE_LEN];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
                .expect("the system's random source");
            let mut sealed = value;
            cipher
                .seal_in_place_append_tag(
                    ring::aead::Nonce::assume_unique_for_key(nonce),
                    aad,
                    &mut sealed,
                )
                .expect("sealing a short value");
            let mut out = nonce.to_vec();
            out.extend_from_slice(&sealed);
            out
        }
        KeyOp::Unwrap => {
            if value.len() < NONCE_LEN + ring::aead::AES_256_GCM.tag_len() {
                return incorrect();
            }
            let (nonce, sealed) = value.split_at(NONCE_LEN);
            let nonce =
                ring::aead::Nonce::try_assume_unique_for_key(nonce).expect("a 12-byte nonce");
            let mut sealed = sealed.to_vec();
            match cipher.open_in_place(nonce, aad, &mut sealed) {
                Ok(plain) => plain.to_vec(),
                Err(_) => return incorrect(),
            }
        }
    };
    answer(
        "200 OK",
        format!(
            r#"{{"kid":"{base}/keys/{name}/{}","value":"{}"}}"#,
            key.id,
            URL_SAFE_NO_PAD.encode(result)
        ),
    )
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The double's answers that pgvault's client never provokes (it sends only well-formed
/// requests), over raw HTTP/1.1: they are the documented ones, so a client change that sends
/// something else meets Key Vault's refusal here too.
#[cfg(test)]
mod tests {
    use super::*;

    /// One request; the status line's code and the body.
    fn call(
        kv: &KeyVaultDouble,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (u16, String) {
        let addr = kv.base.trim_start_matches("http://");
        let mut stream = TcpStream::connect(addr).unwrap();
        let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nhost: {addr}\r\n{auth}content-type: application/json\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let status = answer[9..12].parse().unwrap();
        let body = answer.split_once("\r\n\r\n").unwrap().1.to_owned();
        (status, body)
    }

    fn token(kv: &KeyVaultDouble) -> String {
        let form = format!(
            "grant_type=client_credentials&client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}\
             &scope=https%3A%2F%2Fvault.azure.net%2F.default"
        );
        let (status, body) = call(
            kv,
            "POST",
            &format!("/{TENANT_ID}/oauth2/v2.0/token"),
            None,
            &form,
        );
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["access_token"].as_str().unwrap().to_owned()
    }

    /// Key Vault's name for the error (`BadParameter`, ...), not a pgvault code.
    fn kv_error_name(body: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        v["error"]["code"].as_str().unwrap_or("").to_owned()
    }

    const WRAP: &str = "/keys/kek/wrapkey?api-version=7.4";

    #[test]
    fn key_operations_answer_as_key_vault_does() {
        let kv = KeyVaultDouble::start();
        let v1 = kv.create_key("kek");
        let key = URL_SAFE_NO_PAD.encode([9u8; 32]);
        let wrap_body = format!(r#"{{"alg":"RSA-OAEP-256","value":"{key}"}}"#);

        // Without a token: the challenge, whatever the body.
        let (status, body) = call(&kv, "POST", WRAP, None, "");
        assert_eq!(
            (status, kv_error_name(&body).as_str()),
            (401, "Unauthorized")
        );
        let token = token(&kv);
        let t = Some(token.as_str());

        // The api-version is required.
        let (status, body) = call(&kv, "POST", "/keys/kek/wrapkey", t, &wrap_body);
        assert_eq!(
            (status, kv_error_name(&body).as_str()),
            (400, "BadParameter")
        );
        // An algorithm RSA keys do not have, a value that is not base64url.
        let (status, body) = call(
            &kv,
            "POST",
            WRAP,
            t,
            &wrap_body.replace("RSA-OAEP-256", "A256KW"),
        );
        assert_eq!(
            (status, kv_error_name(&body).as_str()),
            (400, "BadParameter"),
            "{body}"
        );
        let (status, body) = call(
            &kv,
            "POST",
            WRAP,
            t,
            r#"{"alg":"RSA-OAEP-256","value":"a b+/"}"#,
        );
        assert_eq!(
            (status, kv_error_name(&body).as_str()),
            (400, "BadParameter"),
            "{body}"
        );

        // A wrap answers the version's kid; a versionless unwrap uses the current version, so
        // after a rotation it no longer opens what the old version wrapped.
        let (status, body) = call(&kv, "POST", WRAP, t, &wrap_body);
        assert_eq!(status, 200, "{body}");
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["kid"], format!("{}/keys/kek/{v1}", kv.base));
        let wrapped = answer["value"].as_str().unwrap().to_owned();
        let unwrap_body = format!(r#"{{"alg":"RSA-OAEP-256","value":"{wrapped}"}}"#);
        let unwrap = "/keys/kek/unwrapkey?api-version=7.4";
        let (status, body) = call(&kv, "POST", unwrap, t, &unwrap_body);
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(&key), "{body}");
        kv.rotate_key("kek");
        let (status, body) = call(&kv, "POST", unwrap, t, &unwrap_body);
        assert_eq!(
            (status, kv_error_name(&body).as_str()),
            (400, "BadParameter"),
            "{body}"
        );
        assert!(body.contains("The parameter is incorrect."), "{body}");
        // The same value under another algorithm does not unwrap either.
        let pinned = format!("/keys/kek/{v1}/unwrapkey?api-version=7.4");
        let (status, _) = call(&kv, "POST", &pinned, t, &unwrap_body);
        assert_eq!(status, 200);
        let (status, body) = call(
            &kv,
            "POST",
            &pinned,
            t,
            &unwrap_body.replace("RSA-OAEP-256", "RSA-OAEP"),
        );
        assert_eq!(
            (status, kv_error_name(&body).as_str()),
            (400, "BadParameter"),
            "{body}"
        );

        // The refusals carry Key Vault's inner error codes.
        kv.disable_key("kek", &v1);
        let (status, body) = call(&kv, "POST", &pinned, t, &unwrap_body);
        assert_eq!(status, 403);
        assert!(
            body.contains(r#""innererror":{"code":"KeyDisabled"}"#),
            "{body}"
        );
        kv.forbid_key("kek");
        let (status, body) = call(&kv, "POST", WRAP, t, &wrap_body);
        assert_eq!(status, 403);
        assert!(body.contains("ForbiddenByRbac"), "{body}");
        let (status, body) = call(
            &kv,
            "POST",
            "/keys/nope/wrapkey?api-version=7.4",
            t,
            &wrap_body,
        );
        assert_eq!(
            (status, kv_error_name(&body).as_str()),
            (404, "KeyNotFound"),
            "{body}"
        );
        // Nothing above sent a body without a token.
        assert_eq!(kv.bodies_before_token(), 0);
        let _ = call(&kv, "POST", WRAP, None, &wrap_body);
        assert_eq!(kv.bodies_before_token(), 1);
    }
}
