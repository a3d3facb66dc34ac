//! Key Vault keys: `wrapKey` and `unwrapKey`, with which an Azure Key Vault key (an RSA key
//! whose private half never leaves Key Vault: Azure's customer-managed keys) wraps a vault's
//! random data key and opens it again.
//!
//! `POST {vault}/keys/{name}[/{version}]/wrapkey?api-version=7.4` with
//! `{"alg":"RSA-OAEP-256","value":<key, base64url>}` answers `{"kid","value"}`, and
//! `/unwrapkey` the reverse. Without a version in the path Key Vault wraps with the key's
//! current version; the answer's `kid` names the version used, and only that version unwraps
//! the value again, so the `kid` is what a key slot keeps. After a rotation
//! (`az keyvault key rotate`) old slots still open with their own version, and a rewrap moves
//! them to the new one.
//!
//! The requests go through the client of [`super`] (its challenge, token cache and retries).
//! Key Vault's refusals map to typed codes, each saying what to grant or change:
//! `KeyNotFound` (404) is [`KEY_NOT_FOUND`]; 403 `Forbidden` is [`KEY_DISABLED`] (inner error
//! `KeyDisabled`), [`KEY_EXPIRED`] (`KeyExpired`, `KeyNotYetValid`: wrapping only, an expired
//! key still unwraps) or otherwise [`KEY_PERMISSIONS`] (an access policy without `wrapKey` /
//! `unwrapKey`, or RBAC without the Key Vault Crypto Service Encryption User role);
//! `BadParameter` (400) is [`UNWRAP_FAILED`] on unwrap (another key's or version's value, or a
//! damaged one) and [`KEY_UNSUPPORTED`] on wrap (not an RSA key, or one that does not allow
//! the operation). Neither the key bytes nor the wrapped value ever reach an error or a log.

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};

use std::sync::Arc;

use super::{API_VERSION, Failures, KeyVaultClient, KeyVaultError, Request};
use pgvault_model::code::ErrorCode;
use pgvault_model::key::{KeyVaultKeyRef, KeyWrapAlgorithm, SecretBytes};

pub const KEY_NOT_FOUND: ErrorCode = ErrorCode::UserErrorKeyVaultKeyNotFound;
pub const KEY_PERMISSIONS: ErrorCode = ErrorCode::UserErrorMissingPermissionsOnKeyVaultKey;
pub const KEY_DISABLED: ErrorCode = ErrorCode::UserErrorKeyVaultKeyDisabled;
pub const KEY_EXPIRED: ErrorCode = ErrorCode::UserErrorKeyVaultKeyExpired;
pub const KEY_UNSUPPORTED: ErrorCode = ErrorCode::UserErrorKeyVaultKeyUnsupported;
pub const UNWRAP_FAILED: ErrorCode = ErrorCode::UserErrorKeyUnwrapFailed;
pub const KEY_VAULT_UNAVAILABLE: ErrorCode = ErrorCode::UserErrorKeyVaultUnavailable;
pub const KEY_VAULT_AUTHENTICATION: ErrorCode = ErrorCode::UserErrorKeyVaultAuthenticationFailed;
pub const INVALID_KEY_REFERENCE: ErrorCode = ErrorCode::UserErrorInvalidKeyReference;

const KEY_FAILURES: Failures = Failures {
    unavailable: KEY_VAULT_UNAVAILABLE,
    authentication: KEY_VAULT_AUTHENTICATION,
};

/// The process's client ([`super::process_client`]) for key operations: built at the first
/// Key Vault key a vault names, failing under the keys' code rather than the secrets' one.
pub fn process_key_client() -> Result<Arc<KeyVaultClient>, KeyVaultError> {
    super::process_client().map_err(|e| KeyVaultError {
        code: KEY_VAULT_AUTHENTICATION,
        ..e
    })
}

/// A data key wrapped by a Key Vault key: what a key slot keeps. Nothing here is secret: the
/// value opens only through Key Vault, for an identity allowed to unwrap with that key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// The key version that wrapped the value (Key Vault's `kid`, always with a version): the
    /// one [`KeyVaultClient::unwrap_key`] must be given back.
    pub kid: KeyVaultKeyRef,
    pub alg: KeyWrapAlgorithm,
    /// The wrapped bytes, as Key Vault answered them.
    pub value: Vec<u8>,
}

/// The two operations, as their paths and messages name them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Operation {
    Wrap,
    Unwrap,
}

impl Operation {
    fn path(self) -> &'static str {
        match self {
            Operation::Wrap => "wrapkey",
            Operation::Unwrap => "unwrapkey",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Operation::Wrap => "wrap",
            Operation::Unwrap => "unwrap",
        }
    }
}

impl KeyVaultClient {
    /// Wraps `key` (a vault's data key) with the Key Vault key `key`: its pinned version, else
    /// its current one. Keep the answer's [`WrappedKey::kid`], not `key_ref`: it names the
    /// version that wrapped, the only one that unwraps.
    pub async fn wrap_key(
        &self,
        key_ref: &KeyVaultKeyRef,
        alg: KeyWrapAlgorithm,
        key: &[u8],
    ) -> Result<WrappedKey, KeyVaultError> {
        let (kid, value) = self.operate(Operation::Wrap, key_ref, alg, key).await?;
        Ok(WrappedKey {
            kid,
            alg,
            value: value.expose_secret().to_vec(),
        })
    }

    /// Unwraps `wrapped` with the key version `kid` (the [`WrappedKey::kid`] that wrap
    /// answered) and returns the data key. A `kid` without a version is refused: after a
    /// rotation Key Vault's current version would not open a value an older one wrapped.
    pub async fn unwrap_key(
        &self,
        kid: &KeyVaultKeyRef,
        alg: KeyWrapAlgorithm,
        wrapped: &[u8],
    ) -> Result<SecretBytes, KeyVaultError> {
        if kid.version().is_none() {
            return Err(KeyVaultError::new(
                INVALID_KEY_REFERENCE,
                format!(
                    "{kid} names no key version; unwrapping needs the version that wrapped the \
                     key (the kid Key Vault answered to wrapKey)"
                ),
            ));
        }
        let (_, key) = self.operate(Operation::Unwrap, kid, alg, wrapped).await?;
        Ok(key)
    }

    /// One wrapKey or unwrapKey: the key version's answer (its `kid`) and the resulting bytes.
    async fn operate(
        &self,
        op: Operation,
        key_ref: &KeyVaultKeyRef,
        alg: KeyWrapAlgorithm,
        input: &[u8],
    ) -> Result<(KeyVaultKeyRef, SecretBytes), KeyVaultError> {
        let base = key_ref.vault_url();
        let mut url = format!("{base}/keys/{}", key_ref.key_name());
        if let Some(v) = key_ref.version() {
            url.push('/');
            url.push_str(v);
        }
        url.push('/');
        url.push_str(op.path());
        url.push_str("?api-version=");
        url.push_str(API_VERSION);
        let mut body = format!(
            r#"{{"alg":"{}","value":"{}"}}"#,
            alg.as_str(),
            URL_SAFE_NO_PAD.encode(input)
        )
        .into_bytes();
        let request = Request {
            method: reqwest::Method::POST,
            url: &url,
            body: Some(&body),
        };
        let sent = async {
            let token = self.token_for(&base, &request, &KEY_FAILURES).await?;
            self.send(&request, Some(&token), &KEY_FAILURES).await
        }
        .await;
        // Best effort, as SecretValue's drop: the copies reqwest made are out of reach.
        body.fill(0);
        read_result(op, key_ref, sent?).await
    }
}

/// Base64url as Key Vault writes it (no padding), read leniently (with or without).
const BASE64URL_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Maps Key Vault's answer to the key id and bytes, or to a typed refusal.
async fn read_result(
    op: Operation,
    key_ref: &KeyVaultKeyRef,
    response: reqwest::Response,
) -> Result<(KeyVaultKeyRef, SecretBytes), KeyVaultError> {
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or(serde_json::Value::Null);
    if status.is_success() {
        return read_success(op, key_ref, &body);
    }
    // Key Vault's own text names the key, the operation or the identity, never a value.
    // Key Vault's names for its errors (`KeyNotFound`, `BadParameter`), not pgvault's codes.
    let kv_error = body["error"]["code"].as_str().unwrap_or("");
    let inner = body["error"]["innererror"]["code"].as_str().unwrap_or("");
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or("")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let detail = if message.is_empty() {
        format!("Key Vault answered {status}")
    } else {
        format!("Key Vault answered {status} {kv_error}: {message}")
    };
    let verb = op.verb();
    Err(match status.as_u16() {
        404 => KeyVaultError::new(
            KEY_NOT_FOUND,
            format!("no key {key_ref} in the vault (or not that version); {detail}"),
        ),
        403 if inner == "KeyDisabled" => KeyVaultError::new(
            KEY_DISABLED,
            format!("the key {key_ref} is disabled, so it does not {verb}; {detail}"),
        ),
        403 if inner == "KeyExpired" || inner == "KeyNotYetValid" => KeyVaultError::new(
            KEY_EXPIRED,
            format!(
                "the key {key_ref} is outside its activation and expiry dates, so it does not \
                 {verb}; {detail}"
            ),
        ),
        403 => KeyVaultError::new(
            KEY_PERMISSIONS,
            format!(
                "the identity may not {verb} with the key {key_ref}; grant it the Key Vault \
                 Crypto Service Encryption User role on the key, or the wrapKey and \
                 unwrapKey key permissions in the vault's access policy; {detail}"
            ),
        ),
        400 if op == Operation::Unwrap && kv_error == "BadParameter" => KeyVaultError::new(
            UNWRAP_FAILED,
            format!(
                "the wrapped key does not open with {key_ref} (it was wrapped by another key \
                 or version, or it is damaged); {detail}"
            ),
        ),
        400 if kv_error == "BadParameter" => KeyVaultError::new(
            KEY_UNSUPPORTED,
            format!(
                "Key Vault refused to {verb} with {key_ref}: pgvault needs an RSA key (2048, \
                 3072 or 4096 bits) that allows wrapKey and unwrapKey; {detail}"
            ),
        ),
        401 => KeyVaultError::new(
            KEY_VAULT_AUTHENTICATION,
            format!("the token was refused; {detail}"),
        ),
        _ => KeyVaultError::new(KEY_VAULT_UNAVAILABLE, detail),
    })
}

/// A 200's `kid` and `value`, checked: the `kid` must name the key asked for (and its version,
/// if one was asked), with a version, since that is what unwraps later.
fn read_success(
    op: Operation,
    key_ref: &KeyVaultKeyRef,
    body: &serde_json::Value,
) -> Result<(KeyVaultKeyRef, SecretBytes), KeyVaultError> {
    let odd = |what: &str| {
        KeyVaultError::new(
            KEY_VAULT_UNAVAILABLE,
            format!(
                "Key Vault's answer to {} with {key_ref} {what}; is {} a Key Vault?",
                op.path(),
                key_ref.vault_url()
            ),
        )
    };
    let kid: KeyVaultKeyRef = body["kid"]
        .as_str()
        .and_then(|k| k.parse().ok())
        .ok_or_else(|| odd("has no key id (kid) pgvault can read"))?;
    let same_version = match key_ref.version() {
        Some(v) => kid.version().is_some_and(|k| k.eq_ignore_ascii_case(v)),
        None => kid.version().is_some(),
    };
    if !kid.same_key(key_ref) || !same_version {
        return Err(odd(&format!("names another key or no version ({kid})")));
    }
    let value = body["value"]
        .as_str()
        .and_then(|v| BASE64URL_LENIENT.decode(v).ok())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| odd("has no base64url value"))?;
    Ok((kid, SecretBytes::new(value)))
}

/// Against the Key Vault double of `pgvault-testkit`, which wraps with AES-256-GCM per key
/// version where Key Vault uses RSA-OAEP (its module doc says why a client cannot tell): the
/// round trip, the versioned `kid`, rotation, and each refusal with its code and without the
/// key's bytes.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::AzureEnv;
    use pgvault_model::secret::SecretValue;
    use pgvault_testkit::keyvault_double::{self as double, KeyVaultDouble};

    const ALG: KeyWrapAlgorithm = KeyWrapAlgorithm::RsaOaep256;
    /// A data key whose bytes are easy to look for in any text.
    const DATA_KEY: [u8; 32] = *b"data-key-0123456789abcdefghijklm";

    fn client(kv: &KeyVaultDouble, secret: &str) -> KeyVaultClient {
        KeyVaultClient::new(AzureEnv {
            tenant_id: Some(double::TENANT_ID.into()),
            client_id: Some(double::CLIENT_ID.into()),
            client_secret: Some(SecretValue::new(secret)),
            authority_host: Some(kv.authority_host()),
            ..AzureEnv::default()
        })
        .unwrap()
    }

    fn key_ref(uri: &str) -> KeyVaultKeyRef {
        uri.parse().unwrap()
    }

    /// The key never shows in an error, in any spelling a careless error could use.
    fn assert_no_key_bytes(err: &KeyVaultError) {
        let shown = format!("{} {err:?}", err.reason);
        let spellings = [
            String::from_utf8_lossy(&DATA_KEY).into_owned(),
            URL_SAFE_NO_PAD.encode(DATA_KEY),
            DATA_KEY.iter().map(|b| format!("{b:02x}")).collect(),
            format!("{:?}", DATA_KEY),
        ];
        for s in spellings {
            assert!(!shown.contains(&s), "the key shows in {shown}");
        }
    }

    #[tokio::test]
    async fn wraps_with_the_current_version_and_unwraps_with_the_kid() {
        let kv = KeyVaultDouble::start();
        let version = kv.create_key("kek");
        let client = client(&kv, double::CLIENT_SECRET);
        let wrapped = client
            .wrap_key(&key_ref(&kv.key_uri("kek")), ALG, &DATA_KEY)
            .await
            .unwrap();
        // A versionless reference wraps with the current version, which the kid names.
        assert_eq!(wrapped.kid.version(), Some(version.as_str()));
        assert_eq!(
            wrapped.kid.to_string(),
            format!("{}/{version}", kv.key_uri("kek"))
        );
        assert_eq!(wrapped.alg, ALG);
        assert!(!wrapped.value.windows(DATA_KEY.len()).any(|w| w == DATA_KEY));
        let key = client
            .unwrap_key(&wrapped.kid, ALG, &wrapped.value)
            .await
            .unwrap();
        assert_eq!(key.expose_secret(), DATA_KEY);
        // One challenge, one token for both operations; and no key went out before the token.
        assert_eq!(kv.token_requests(), 1);
        assert_eq!(kv.bodies_before_token(), 0);
        // Two wraps of one key differ, as RSA-OAEP's do.
        let again = client
            .wrap_key(&key_ref(&kv.key_uri("kek")), ALG, &DATA_KEY)
            .await
            .unwrap();
        assert_ne!(again.value, wrapped.value);
    }

    #[tokio::test]
    async fn after_rotation_each_version_opens_what_it_wrapped() {
        let kv = KeyVaultDouble::start();
        let v1 = kv.create_key("kek");
        let client = client(&kv, double::CLIENT_SECRET);
        let latest = key_ref(&kv.key_uri("kek"));
        let old = client.wrap_key(&latest, ALG, &DATA_KEY).await.unwrap();
        let v2 = kv.rotate_key("kek");
        assert_ne!(v1, v2);
        let new = client.wrap_key(&latest, ALG, &DATA_KEY).await.unwrap();
        assert_eq!(old.kid.version(), Some(v1.as_str()));
        assert_eq!(new.kid.version(), Some(v2.as_str()));
        assert_ne!(new.value, old.value);
        // The old kid still opens the old slot, the new one the new slot.
        let k = client.unwrap_key(&old.kid, ALG, &old.value).await.unwrap();
        assert_eq!(k.expose_secret(), DATA_KEY);
        let k = client.unwrap_key(&new.kid, ALG, &new.value).await.unwrap();
        assert_eq!(k.expose_secret(), DATA_KEY);
        // The current version does not open what the old one wrapped.
        let err = client
            .unwrap_key(&new.kid, ALG, &old.value)
            .await
            .unwrap_err();
        assert_eq!(err.code, UNWRAP_FAILED, "{err:?}");
        assert!(
            err.reason.contains("The parameter is incorrect"),
            "{}",
            err.reason
        );
        assert_no_key_bytes(&err);
        // A pinned version wraps with that version, even when it is no longer the current one.
        let pinned = key_ref(&format!("{}/{v1}", kv.key_uri("kek")));
        let w = client.wrap_key(&pinned, ALG, &DATA_KEY).await.unwrap();
        assert_eq!(w.kid, pinned);
    }

    #[tokio::test]
    async fn a_tampered_or_foreign_value_does_not_unwrap() {
        let kv = KeyVaultDouble::start();
        kv.create_key("kek");
        kv.create_key("other");
        let client = client(&kv, double::CLIENT_SECRET);
        let wrapped = client
            .wrap_key(&key_ref(&kv.key_uri("kek")), ALG, &DATA_KEY)
            .await
            .unwrap();
        let mut tampered = wrapped.value.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        let err = client
            .unwrap_key(&wrapped.kid, ALG, &tampered)
            .await
            .unwrap_err();
        assert_eq!(err.code, UNWRAP_FAILED, "{err:?}");
        assert!(
            err.reason.contains(&wrapped.kid.to_string()),
            "{}",
            err.reason
        );
        // Another key's version does not open it either.
        let other = key_ref(&format!(
            "{}/{}",
            kv.key_uri("other"),
            kv.latest_key_version("other")
        ));
        let err = client
            .unwrap_key(&other, ALG, &wrapped.value)
            .await
            .unwrap_err();
        assert_eq!(err.code, UNWRAP_FAILED, "{err:?}");
    }

    #[tokio::test]
    async fn refusals_carry_their_codes_and_never_the_key() {
        let kv = KeyVaultDouble::start();
        let client = client(&kv, double::CLIENT_SECRET);
        let latest = |name: &str| key_ref(&kv.key_uri(name));

        // No such key; no such version of a key that exists.
        let err = client
            .wrap_key(&latest("missing"), ALG, &DATA_KEY)
            .await
            .unwrap_err();
        assert_eq!(err.code, KEY_NOT_FOUND, "{err:?}");
        assert!(err.reason.contains("KeyNotFound"), "{}", err.reason);
        assert_no_key_bytes(&err);
        kv.create_key("kek");
        let unknown = key_ref(&format!("{}/{:032x}", kv.key_uri("kek"), 7));
        let err = client.wrap_key(&unknown, ALG, &DATA_KEY).await.unwrap_err();
        assert_eq!(err.code, KEY_NOT_FOUND, "{err:?}");

        // No permission (RBAC): the role to grant is named.
        kv.create_key("locked");
        kv.forbid_key("locked");
        let err = client
            .wrap_key(&latest("locked"), ALG, &DATA_KEY)
            .await
            .unwrap_err();
        assert_eq!(err.code, KEY_PERMISSIONS, "{err:?}");
        assert!(
            err.reason
                .contains("Key Vault Crypto Service Encryption User"),
            "{}",
            err.reason
        );
        assert!(err.reason.contains("keys/wrap/action"), "{}", err.reason);
        assert_no_key_bytes(&err);

        // A disabled version neither wraps nor unwraps.
        let wrapped = client
            .wrap_key(&latest("kek"), ALG, &DATA_KEY)
            .await
            .unwrap();
        kv.disable_key("kek", &kv.latest_key_version("kek"));
        let err = client
            .wrap_key(&latest("kek"), ALG, &DATA_KEY)
            .await
            .unwrap_err();
        assert_eq!(err.code, KEY_DISABLED, "{err:?}");
        assert_no_key_bytes(&err);
        let err = client
            .unwrap_key(&wrapped.kid, ALG, &wrapped.value)
            .await
            .unwrap_err();
        assert_eq!(err.code, KEY_DISABLED, "{err:?}");
        assert!(err.reason.contains("unwrap"), "{}", err.reason);
        assert_no_key_bytes(&err);

        // An expired version no longer wraps, and still opens what it wrapped.
        let v = kv.create_key("aging");
        let wrapped = client
            .wrap_key(&latest("aging"), ALG, &DATA_KEY)
            .await
            .unwrap();
        kv.expire_key("aging", &v);
        let err = client
            .wrap_key(&latest("aging"), ALG, &DATA_KEY)
            .await
            .unwrap_err();
        assert_eq!(err.code, KEY_EXPIRED, "{err:?}");
        assert_no_key_bytes(&err);
        let key = client
            .unwrap_key(&wrapped.kid, ALG, &wrapped.value)
            .await
            .unwrap();
        assert_eq!(key.expose_secret(), DATA_KEY);

        // More than an RSA block holds is refused as Key Vault refuses it.
        let err = client
            .wrap_key(&latest("aging"), ALG, &[7; 300])
            .await
            .unwrap_err();
        assert_eq!(err.code, KEY_EXPIRED, "expiry is checked first: {err:?}");
        let fresh = kv.create_key("fresh");
        let err = client
            .wrap_key(
                &key_ref(&format!("{}/{fresh}", kv.key_uri("fresh"))),
                ALG,
                &[7; 300],
            )
            .await
            .unwrap_err();
        assert_eq!(err.code, KEY_UNSUPPORTED, "{err:?}");
    }

    #[tokio::test]
    async fn unwrapping_needs_a_versioned_kid() {
        let kv = KeyVaultDouble::start();
        kv.create_key("kek");
        let client = client(&kv, double::CLIENT_SECRET);
        let err = client
            .unwrap_key(&key_ref(&kv.key_uri("kek")), ALG, &[1; 60])
            .await
            .unwrap_err();
        assert_eq!(err.code, INVALID_KEY_REFERENCE, "{err:?}");
        assert!(err.reason.contains("version"), "{}", err.reason);
        // Refused before anything was sent.
        assert_eq!(kv.requests(), 0);
    }

    #[tokio::test]
    async fn throttling_is_retried_then_reported_as_unavailable() {
        let kv = KeyVaultDouble::start();
        kv.create_key("busy");
        kv.throttle("busy", 2);
        let client = client(&kv, double::CLIENT_SECRET);
        let uri = key_ref(&kv.key_uri("busy"));
        let wrapped = client.wrap_key(&uri, ALG, &DATA_KEY).await.unwrap();
        // Challenge, token, two 429s, the wrap.
        assert_eq!(kv.requests(), 5);
        kv.throttle("busy", super::super::MAX_ATTEMPTS);
        let err = client
            .unwrap_key(&wrapped.kid, ALG, &wrapped.value)
            .await
            .unwrap_err();
        assert_eq!(err.code, KEY_VAULT_UNAVAILABLE, "{err:?}");
        assert!(err.code.is_retryable());
    }

    #[tokio::test]
    async fn a_refused_credential_or_an_unreachable_vault_says_so() {
        let kv = KeyVaultDouble::start();
        kv.create_key("kek");
        let refused = client(&kv, "wrong-secret-Hunter2");
        let err = refused
            .wrap_key(&key_ref(&kv.key_uri("kek")), ALG, &DATA_KEY)
            .await
            .unwrap_err();
        assert_eq!(err.code, KEY_VAULT_AUTHENTICATION, "{err:?}");
        assert!(err.reason.contains("AADSTS7000215"), "{}", err.reason);
        assert!(!err.reason.contains("Hunter2"), "{}", err.reason);
        assert_no_key_bytes(&err);
        assert_eq!(kv.bodies_before_token(), 0);

        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let gone = key_ref(&format!("http://127.0.0.1:{port}/keys/kek"));
        let err = client(&kv, double::CLIENT_SECRET)
            .wrap_key(&gone, ALG, &DATA_KEY)
            .await
            .unwrap_err();
        assert_eq!(err.code, KEY_VAULT_UNAVAILABLE, "{err:?}");
        assert!(
            err.reason.contains("could not be reached"),
            "{}",
            err.reason
        );
        assert_no_key_bytes(&err);
    }

    #[test]
    fn an_answer_for_another_key_or_without_a_version_is_refused() {
        let asked = key_ref("https://myvault.vault.azure.net/keys/kek");
        let version = "0123456789abcdef0123456789abcdef";
        let value = URL_SAFE_NO_PAD.encode([1u8; 60]);
        let answer = |kid: &str| serde_json::json!({ "kid": kid, "value": value });
        let ok = read_success(
            Operation::Wrap,
            &asked,
            &answer(&format!(
                "https://myvault.vault.azure.net/keys/KEK/{version}"
            )),
        )
        .unwrap();
        assert_eq!(ok.0.version(), Some(version));
        for kid in [
            format!("https://othervault.vault.azure.net/keys/kek/{version}"),
            format!("https://myvault.vault.azure.net/keys/other/{version}"),
            "https://myvault.vault.azure.net/keys/kek".to_owned(),
            "not a kid".to_owned(),
        ] {
            let err = read_success(Operation::Wrap, &asked, &answer(&kid)).unwrap_err();
            assert_eq!(err.code, KEY_VAULT_UNAVAILABLE, "{kid}: {err:?}");
        }
        // A pinned version must come back as that version.
        let pinned = key_ref(&format!(
            "https://myvault.vault.azure.net/keys/kek/{version}"
        ));
        let other = format!(
            "https://myvault.vault.azure.net/keys/kek/{}",
            "f".repeat(32)
        );
        assert!(read_success(Operation::Unwrap, &pinned, &answer(&other)).is_err());
        let empty = serde_json::json!({ "kid": pinned.to_string(), "value": "" });
        assert!(read_success(Operation::Unwrap, &pinned, &empty).is_err());
    }
}
