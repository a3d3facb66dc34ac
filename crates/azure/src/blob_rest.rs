//! The Blob Storage REST calls `object_store` has no method for: creating a container, blob
//! leases (the vault lock), access tiers (the archive tier) and blob properties.
//!
//! Everything else about a Blob vault (put, get, list, delete, multipart uploads) goes
//! through `object_store`; this is the small remainder, spoken directly in Azure's
//! documented protocol and authorized the same three ways as the vault's `object_store`
//! client (see [`AzureAuth`]): Shared Key signing, a SAS appended to the query, or a
//! Microsoft Entra bearer token.
//!
//! Blob names are relative to the location's prefix, exactly as the vault's object paths are,
//! so `locks/lease` here is the object `object_store` calls `locks/lease`.
//!
//! **Architecture Invariant:** no error from this module carries a key, a SAS or a token:
//! every message goes through [`crate::storage::redact`] and none includes request headers.

use std::collections::BTreeMap;

use base64::Engine as _;
use bytes::Bytes;
use reqwest::{Method, StatusCode};

use crate::storage::{AzureAuth, AzureLocation, redact};

/// The Blob REST API version spoken (one that both Azure and Azurite accept, and that knows
/// the Cold access tier).
pub const API_VERSION: &str = "2021-12-02";

/// A storage account container reached through the Blob REST API.
#[derive(Clone)]
pub struct BlobRest {
    http: reqwest::Client,
    auth: AzureAuth,
    location: AzureLocation,
    /// The account URL when it is not the public cloud's (`AZURE_STORAGE_ENDPOINT`).
    endpoint: Option<String>,
}

/// What went wrong with a request: the HTTP status (`None` when Blob Storage was not
/// reached), Azure's error code (`LeaseAlreadyPresent`, `BlobArchived`...) and a message that
/// is safe to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BlobError {
    pub status: Option<u16>,
    pub code: String,
    pub message: String,
}

impl BlobError {
    pub fn is(&self, code: &str) -> bool {
        self.code == code
    }
}

/// The properties of a blob that pgvault reads: its access tier, whether a rehydration is
/// pending, and its lease.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlobProperties {
    /// `Hot`, `Cool`, `Cold` or `Archive`; `None` when the account reports none (Azurite's
    /// default for blobs written without one).
    pub access_tier: Option<String>,
    /// `rehydrate-pending-to-hot` and the like while a rehydration runs.
    pub archive_status: Option<String>,
    /// `High` or `Standard` while a rehydration runs.
    pub rehydrate_priority: Option<String>,
    /// `available`, `leased`, `expired`, `breaking` or `broken`.
    pub lease_state: Option<String>,
    pub content_length: u64,
    /// The end of the blob's time-based retention (version-level immutability), if it has one.
    pub immutability_policy_until: Option<chrono::DateTime<chrono::Utc>>,
    /// `Unlocked` or `Locked` while it has one.
    pub immutability_policy_mode: Option<String>,
}

/// The mode of a blob's time-based retention policy: `Unlocked` (its owner may still shorten
/// or remove it) or `Locked` (it can only be extended). An immutable vault's mode follows the
/// vault's immutability state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImmutabilityPolicyMode {
    Unlocked,
    Locked,
}

impl ImmutabilityPolicyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ImmutabilityPolicyMode::Unlocked => "Unlocked",
            ImmutabilityPolicyMode::Locked => "Locked",
        }
    }
}

/// An HTTP date (RFC 1123), as the Blob REST API's date headers are written.
pub fn http_date(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

impl BlobRest {
    /// A client for `location` in the public cloud (or on the emulator `auth` names),
    /// authorized as `auth`.
    pub fn new(location: AzureLocation, auth: AzureAuth) -> BlobRest {
        BlobRest {
            http: reqwest::Client::new(),
            auth,
            location,
            endpoint: None,
        }
    }

    /// The same at another account URL (a sovereign cloud, a private endpoint).
    pub fn with_endpoint(mut self, endpoint: Option<String>) -> BlobRest {
        self.endpoint = endpoint;
        self
    }

    /// A client for `location` configured from the environment, as the vault's store is.
    pub fn from_env(location: &AzureLocation) -> Result<BlobRest, String> {
        let auth = AzureAuth::from_env()?;
        Ok(
            BlobRest::new(location.clone(), auth)
                .with_endpoint(crate::storage::endpoint_from_env()),
        )
    }

    pub fn auth(&self) -> &AzureAuth {
        &self.auth
    }

    pub fn location(&self) -> &AzureLocation {
        &self.location
    }

    /// The URL of the container (`blob` = `None`) or of a blob under the location's prefix,
    /// with each path segment percent-encoded.
    fn url(&self, blob: Option<&str>) -> Result<url::Url, BlobError> {
        let mut url = url::Url::parse(
            &self
                .auth
                .container_url(&self.location, self.endpoint.as_deref()),
        )
        .map_err(|e| local_error(format!("the container URL is not valid: {e}")))?;
        if let Some(blob) = blob {
            let mut segments = url
                .path_segments_mut()
                .map_err(|_| local_error("the container URL cannot take a blob name".into()))?;
            for segment in self.location.prefix().split('/').filter(|s| !s.is_empty()) {
                segments.push(segment);
            }
            for segment in blob.split('/') {
                segments.push(segment);
            }
        }
        Ok(url)
    }

    /// Sends one request and returns the response when its status is a success; otherwise a
    /// [`BlobError`] with Azure's error code (from the `x-ms-error-code` header or the XML
    /// body). `what` says what was being done, for the message.
    pub async fn send(
        &self,
        what: &str,
        method: Method,
        blob: Option<&str>,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<reqwest::Response, BlobError> {
        let mut url = self.url(blob)?;
        for (k, v) in query {
            url.query_pairs_mut().append_pair(k, v);
        }
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let mut all: Vec<(String, String)> = vec![
            ("x-ms-date".into(), date),
            ("x-ms-version".into(), API_VERSION.into()),
        ];
        all.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut authorization = None;
        match &self.auth {
            AzureAuth::AccountKey(key) | AzureAuth::Emulator { key, .. } => {
                let signature = sign_shared_key(
                    key,
                    self.location.account(),
                    &method,
                    &url,
                    &all,
                    body.len(),
                )
                .map_err(local_error)?;
                authorization = Some(format!("SharedKey {}:{signature}", self.location.account()));
            }
            AzureAuth::Sas(sas) => {
                let query = match url.query() {
                    Some(q) if !q.is_empty() => format!("{q}&{sas}"),
                    _ => sas.clone(),
                };
                url.set_query(Some(&query));
            }
            AzureAuth::Entra(credential) => {
                let token = credential
                    .get_token(crate::storage::STORAGE_SCOPE)
                    .await
                    .map_err(|e| local_error(crate::storage::no_entra_token(&e)))?;
                authorization = Some(format!("Bearer {}", token.expose_secret()));
            }
        }
        let shown = redact(&format!(
            "{}{}",
            url.origin().ascii_serialization(),
            url.path()
        ));
        let mut request = self.http.request(method, url);
        for (k, v) in &all {
            request = request.header(k.as_str(), v.as_str());
        }
        if let Some(authorization) = authorization {
            request = request.header("Authorization", authorization);
        }
        let request = request
            .header("Content-Length", body.len().to_string())
            .body(body);
        let response = request.send().await.map_err(|e| BlobError {
            status: None,
            code: String::new(),
            message: redact(&format!(
                "could not reach Blob Storage at {shown} to {what}: {e}"
            )),
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let header_code = response
            .headers()
            .get("x-ms-error-code")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.text().await.unwrap_or_default();
        let code = header_code.unwrap_or_else(|| {
            body.split_once("<Code>")
                .and_then(|(_, rest)| rest.split_once("</Code>"))
                .map_or_else(String::new, |(code, _)| code.to_owned())
        });
        Err(BlobError {
            status: Some(status.as_u16()),
            message: redact(&format!(
                "could not {what} at {shown}: HTTP {status}{}{}",
                if code.is_empty() { "" } else { " " },
                code
            )),
            code,
        })
    }

    /// Creates the container; `Ok(false)` when it already exists.
    pub async fn create_container(&self) -> Result<bool, BlobError> {
        match self
            .send(
                "create the container",
                Method::PUT,
                None,
                &[("restype", "container")],
                &[],
                Bytes::new(),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.status == Some(StatusCode::CONFLICT.as_u16()) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Writes a small block blob in one request, with extra headers (e.g. `x-ms-lease-id`).
    pub async fn put_blob(
        &self,
        blob: &str,
        body: Bytes,
        headers: &[(&str, &str)],
    ) -> Result<(), BlobError> {
        let mut all = vec![("x-ms-blob-type", "BlockBlob")];
        all.extend_from_slice(headers);
        self.send(
            &format!("write {blob}"),
            Method::PUT,
            Some(blob),
            &[],
            &all,
            body,
        )
        .await
        .map(drop)
    }

    /// Reads a blob whole.
    pub async fn get_blob(&self, blob: &str) -> Result<Bytes, BlobError> {
        let response = self
            .send(
                &format!("read {blob}"),
                Method::GET,
                Some(blob),
                &[],
                &[],
                Bytes::new(),
            )
            .await?;
        response.bytes().await.map_err(|e| BlobError {
            status: None,
            code: String::new(),
            message: redact(&format!("could not read {blob}: {e}")),
        })
    }

    /// The blob's tier, rehydration and lease state (`HEAD`).
    pub async fn properties(&self, blob: &str) -> Result<BlobProperties, BlobError> {
        let response = self
            .send(
                &format!("read the properties of {blob}"),
                Method::HEAD,
                Some(blob),
                &[],
                &[],
                Bytes::new(),
            )
            .await?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Ok(BlobProperties {
            access_tier: header("x-ms-access-tier"),
            archive_status: header("x-ms-archive-status"),
            rehydrate_priority: header("x-ms-rehydrate-priority"),
            lease_state: header("x-ms-lease-state"),
            content_length: header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            immutability_policy_until: header("x-ms-immutability-policy-until-date")
                .and_then(|v| chrono::DateTime::parse_from_rfc2822(&v).ok())
                .map(|t| t.with_timezone(&chrono::Utc)),
            immutability_policy_mode: header("x-ms-immutability-policy-mode"),
        })
    }

    /// Delete Blob. Refused by Blob Storage (409 `BlobImmutableDueToPolicy`) for a blob under
    /// a time-based retention policy that has not ended.
    pub async fn delete_blob(&self, blob: &str) -> Result<(), BlobError> {
        self.send(
            &format!("delete {blob}"),
            Method::DELETE,
            Some(blob),
            &[],
            &[],
            Bytes::new(),
        )
        .await
        .map(drop)
    }

    /// Set Blob Immutability Policy (`PUT ?comp=immutabilityPolicies`): the blob's current
    /// version cannot be deleted or overwritten until `until`, even with the account key.
    /// Needs a container (or account) with version-level immutability support. A Locked
    /// policy can only be extended; Azure refuses shortening it.
    pub async fn set_immutability_policy(
        &self,
        blob: &str,
        until: chrono::DateTime<chrono::Utc>,
        mode: ImmutabilityPolicyMode,
    ) -> Result<(), BlobError> {
        let until = http_date(until);
        self.send(
            &format!("set the immutability policy of {blob}"),
            Method::PUT,
            Some(blob),
            &[("comp", "immutabilityPolicies")],
            &[
                ("x-ms-immutability-policy-until-date", until.as_str()),
                ("x-ms-immutability-policy-mode", mode.as_str()),
            ],
            Bytes::new(),
        )
        .await
        .map(drop)
    }

    /// Set Blob Tier: moves a blob to `tier` (`Hot`, `Cool`, `Cold`, `Archive`). Moving an
    /// archived blob online is a rehydration, run at `rehydrate_priority` (`Standard` or
    /// `High`); Azure answers 202 and the blob stays archived until it completes.
    pub async fn set_tier(
        &self,
        blob: &str,
        tier: &str,
        rehydrate_priority: Option<&str>,
    ) -> Result<(), BlobError> {
        let mut headers = vec![("x-ms-access-tier", tier)];
        if let Some(priority) = rehydrate_priority {
            headers.push(("x-ms-rehydrate-priority", priority));
        }
        self.send(
            &format!("set the access tier of {blob} to {tier}"),
            Method::PUT,
            Some(blob),
            &[("comp", "tier")],
            &headers,
            Bytes::new(),
        )
        .await
        .map(drop)
    }

    /// Lease Blob `acquire`: a lease of `seconds` (15 to 60, or -1 for infinite) with the
    /// proposed id. Fails with `LeaseAlreadyPresent` (409) while another holder has it.
    pub async fn acquire_lease(
        &self,
        blob: &str,
        seconds: i32,
        lease_id: &str,
    ) -> Result<(), BlobError> {
        let seconds = seconds.to_string();
        self.lease(
            blob,
            "acquire",
            &[
                ("x-ms-lease-duration", &seconds),
                ("x-ms-proposed-lease-id", lease_id),
            ],
        )
        .await
    }

    /// Lease Blob `renew`: restarts the lease's clock. Fails when the lease was lost.
    pub async fn renew_lease(&self, blob: &str, lease_id: &str) -> Result<(), BlobError> {
        self.lease(blob, "renew", &[("x-ms-lease-id", lease_id)])
            .await
    }

    /// Lease Blob `release`: frees the lease at once for the next taker.
    pub async fn release_lease(&self, blob: &str, lease_id: &str) -> Result<(), BlobError> {
        self.lease(blob, "release", &[("x-ms-lease-id", lease_id)])
            .await
    }

    /// Lease Blob `break` with a zero break period: ends whoever's lease at once. For an
    /// operator who knows the holder is gone.
    pub async fn break_lease(&self, blob: &str) -> Result<(), BlobError> {
        self.lease(blob, "break", &[("x-ms-lease-break-period", "0")])
            .await
    }

    async fn lease(
        &self,
        blob: &str,
        action: &str,
        headers: &[(&str, &str)],
    ) -> Result<(), BlobError> {
        let mut all = vec![("x-ms-lease-action", action)];
        all.extend_from_slice(headers);
        self.send(
            &format!("{action} the lease on {blob}"),
            Method::PUT,
            Some(blob),
            &[("comp", "lease")],
            &all,
            Bytes::new(),
        )
        .await
        .map(drop)
    }
}

fn local_error(message: String) -> BlobError {
    BlobError {
        status: None,
        code: String::new(),
        message: redact(&message),
    }
}

/// The Shared Key signature of a request: Azure's string-to-sign (the verb, the twelve
/// standard headers of which pgvault sends only Content-Length, the canonicalized `x-ms-`
/// headers, the canonicalized resource with its query parameters), HMAC-SHA256 with the
/// decoded account key, base64.
/// <https://learn.microsoft.com/rest/api/storageservices/authorize-with-shared-key>
pub(crate) fn sign_shared_key(
    key: &str,
    account: &str,
    method: &Method,
    url: &url::Url,
    headers: &[(String, String)],
    content_length: usize,
) -> Result<String, String> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(key.trim())
        .map_err(|_| "the storage account key is not base64".to_owned())?;
    let length = if content_length == 0 {
        String::new()
    } else {
        content_length.to_string()
    };
    let mut x_ms: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        .filter(|(k, _)| k.starts_with("x-ms-"))
        .collect();
    x_ms.sort();
    let mut string_to_sign = format!("{method}\n\n\n{length}\n\n\n\n\n\n\n\n\n");
    for (k, v) in &x_ms {
        string_to_sign.push_str(&format!("{k}:{v}\n"));
    }
    string_to_sign.push_str(&format!("/{account}{}", url.path()));
    let mut params: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in url.query_pairs() {
        params
            .entry(k.to_ascii_lowercase())
            .or_default()
            .push(v.into_owned());
    }
    for (k, mut values) in params {
        values.sort();
        string_to_sign.push_str(&format!("\n{k}:{}", values.join(",")));
    }
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let tag = ring::hmac::sign(&key, string_to_sign.as_bytes());
    Ok(base64::engine::general_purpose::STANDARD.encode(tag.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::EMULATOR_ACCOUNT_KEY;

    /// A container creation signed at a fixed date gives the signature computed
    /// independently with `openssl dgst -sha256 -mac HMAC` over Azure's string-to-sign
    /// (`PUT`, twelve empty lines, the two `x-ms-` headers, `/account/path`,
    /// `restype:container`).
    #[test]
    fn shared_key_signature_matches_an_independent_computation() {
        let url =
            url::Url::parse("http://127.0.0.1:10000/devstoreaccount1/vaults?restype=container")
                .unwrap();
        let headers = vec![
            ("x-ms-version".to_owned(), "2021-08-06".to_owned()),
            (
                "x-ms-date".to_owned(),
                "Mon, 01 Jan 2024 00:00:00 GMT".to_owned(),
            ),
        ];
        let sig = sign_shared_key(
            EMULATOR_ACCOUNT_KEY,
            "devstoreaccount1",
            &Method::PUT,
            &url,
            &headers,
            0,
        )
        .unwrap();
        assert_eq!(sig, "i1y5WSZVEHNeXb0Mo446vbFeRN+93PPuRdZhsQjEwUE=");
    }

    #[test]
    fn blob_urls_keep_the_prefix_and_encode_segments() {
        let location = AzureLocation::parse("az://acct1/vaults/prod/db 1")
            .unwrap()
            .unwrap();
        let rest = BlobRest::new(location, AzureAuth::AccountKey("a2V5".into()));
        assert_eq!(
            rest.url(Some("locks/lease")).unwrap().as_str(),
            "https://acct1.blob.core.windows.net/vaults/prod/db%201/locks/lease"
        );
        assert_eq!(
            rest.url(None).unwrap().as_str(),
            "https://acct1.blob.core.windows.net/vaults"
        );
    }

    /// The calls against Azurite, signed with Shared Key: container, leases, tiers.
    #[tokio::test]
    async fn leases_and_tiers_work_against_azurite() {
        let azurite = pgvault_testkit::Azurite::start();
        let location = AzureLocation::parse("az://devstoreaccount1/rest-test/some/prefix")
            .unwrap()
            .unwrap();
        let rest = BlobRest::new(
            location,
            AzureAuth::Emulator {
                endpoint: azurite.blob_url(),
                key: EMULATOR_ACCOUNT_KEY.into(),
            },
        );
        assert!(rest.create_container().await.unwrap());
        assert!(
            !rest.create_container().await.unwrap(),
            "exists: false, not an error"
        );

        rest.put_blob("locks/lease", Bytes::from_static(b"x"), &[])
            .await
            .unwrap();
        let ours = "11111111-1111-1111-1111-111111111111";
        let theirs = "22222222-2222-2222-2222-222222222222";
        rest.acquire_lease("locks/lease", 15, ours).await.unwrap();
        let refused = rest
            .acquire_lease("locks/lease", 15, theirs)
            .await
            .unwrap_err();
        assert!(refused.is("LeaseAlreadyPresent"), "{refused:?}");
        assert_eq!(
            rest.properties("locks/lease")
                .await
                .unwrap()
                .lease_state
                .as_deref(),
            Some("leased")
        );
        // Writing a leased blob needs the lease id.
        assert!(
            rest.put_blob("locks/lease", Bytes::from_static(b"y"), &[])
                .await
                .is_err()
        );
        rest.put_blob(
            "locks/lease",
            Bytes::from_static(b"y"),
            &[("x-ms-lease-id", ours)],
        )
        .await
        .unwrap();
        rest.renew_lease("locks/lease", ours).await.unwrap();
        rest.release_lease("locks/lease", ours).await.unwrap();
        rest.acquire_lease("locks/lease", 15, theirs).await.unwrap();
        rest.break_lease("locks/lease").await.unwrap();
        rest.acquire_lease("locks/lease", 15, ours).await.unwrap();

        rest.put_blob("data/ab/pack", Bytes::from_static(b"pack"), &[])
            .await
            .unwrap();
        rest.set_tier("data/ab/pack", "Archive", None)
            .await
            .unwrap();
        let props = rest.properties("data/ab/pack").await.unwrap();
        assert_eq!(props.access_tier.as_deref(), Some("Archive"));
        assert_eq!(props.content_length, 4);
        let archived = rest.get_blob("data/ab/pack").await.unwrap_err();
        assert!(archived.is("BlobArchived"), "{archived:?}");
        rest.set_tier("data/ab/pack", "Hot", Some("High"))
            .await
            .unwrap();
        assert_eq!(
            rest.get_blob("data/ab/pack").await.unwrap(),
            Bytes::from_static(b"pack")
        );
        let missing = rest.properties("data/none").await.unwrap_err();
        assert_eq!(missing.status, Some(404));
    }
}
