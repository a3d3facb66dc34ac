//! Azure Resource Manager's conventions: the error body, `api-version`, paging.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use pgvault_host::api::Error;
use pgvault_model::code::ErrorCode;

/// The api-versions of `Microsoft.DataProtection` this server answers: Azure's stable
/// versions, so that every SDK, az and Terraform release that speaks a stable version works.
/// The bodies are the same across them for what pgvault serves.
pub const API_VERSIONS: &[&str] = &[
    "2021-01-01",
    "2021-07-01",
    "2022-01-01",
    "2022-03-01",
    "2022-04-01",
    "2022-05-01",
    "2022-12-01",
    "2023-01-01",
    "2023-05-01",
    "2023-11-01",
    "2024-03-01",
    "2024-04-01",
    "2025-01-01",
    "2025-07-01",
    "2025-09-01",
    "2026-03-01",
    "2026-06-01",
];

/// An answer in ARM's error shape, `{"error": {"code", "message", "target", "details",
/// "additionalInfo"}}`, with the HTTP status Azure uses for the code.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub target: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        let status =
            StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError {
            status,
            code,
            message: message.into(),
            target: None,
        }
    }

    pub fn target(mut self, target: impl Into<String>) -> ApiError {
        self.target = Some(target.into());
        self
    }

    /// The `error` object, also used inside an operation status.
    pub fn body(&self) -> Value {
        let mut error = json!({
            "code": self.code.as_str(),
            "message": self.message,
            "details": [],
            "additionalInfo": [],
        });
        if let Some(t) = &self.target {
            error["target"] = json!(t);
        }
        if self.code.is_known() {
            error["additionalInfo"] = json!([{
                "type": "RecommendedAction",
                "info": {"recommendedAction": self.code.guidance()},
            }]);
        }
        error
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(ErrorCode::ResourceNotFound, format!("{what} was not found"))
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        ApiError::new(e.code.clone(), e.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(json!({"error": self.body()}))).into_response();
        response
            .headers_mut()
            .insert("x-ms-failure-cause", HeaderValue::from_static("gateway"));
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"pgvault\""),
            );
        }
        response
    }
}

/// Checks the request's `api-version` (ARM refuses a request without one, or with one the
/// resource provider does not serve).
pub fn check_api_version(query: &[(String, String)]) -> Result<String, ApiError> {
    let Some((_, version)) = query
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("api-version"))
    else {
        return Err(ApiError::new(
            ErrorCode::MissingApiVersionParameter,
            format!(
                "The api-version query parameter (?api-version=) is required for all requests. Supported versions: {}",
                API_VERSIONS.join(", ")
            ),
        ));
    };
    if API_VERSIONS.contains(&version.as_str()) {
        Ok(version.clone())
    } else {
        Err(ApiError::new(
            ErrorCode::InvalidApiVersionParameter,
            format!(
                "The resource type 'backupVaults' could not be found for api version '{}'. The supported api-versions are '{}'.",
                crate::route::printable(version),
                API_VERSIONS.join(", ")
            ),
        ))
    }
}

/// How many items a list page holds before it gives a `nextLink`.
pub const PAGE_SIZE: usize = 200;

/// Where a list page starts: the `$skipToken` of the previous page's `nextLink` (an offset).
pub fn skip_token(query: &[(String, String)]) -> Result<usize, ApiError> {
    match query
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("$skipToken"))
    {
        None => Ok(0),
        Some((_, v)) => v.parse().map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidRequestContent,
                "the $skipToken is not one this server gave; start the list again without it",
            )
        }),
    }
}

/// A list answer: `value` and, when more follow, `nextLink` (this URL with the next page's
/// `$skipToken`). `items` holds at most one item more than a page, which says more follow.
pub fn page(mut items: Vec<Value>, start: usize, this_url: &str, api_version: &str) -> Value {
    let more = items.len() > PAGE_SIZE;
    items.truncate(PAGE_SIZE);
    let mut body = json!({ "value": items });
    if more {
        body["nextLink"] = json!(format!(
            "{this_url}?api-version={api_version}&$skipToken={}",
            start + PAGE_SIZE
        ));
    }
    body
}

/// One page of an in-memory list.
pub fn page_of(items: Vec<Value>, start: usize, this_url: &str, api_version: &str) -> Value {
    let rest: Vec<Value> = items.into_iter().skip(start).take(PAGE_SIZE + 1).collect();
    page(rest, start, this_url, api_version)
}
