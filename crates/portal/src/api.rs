//! The REST API: one handler that authenticates, parses the ARM path, checks the
//! `api-version` and the caller's role, then answers for the resource the path names, through
//! the host's operations and queries (never the store or the engine).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use pgvault_host::access::{AuditEntry, Caller, Role};
use pgvault_model::code::ErrorCode;
use pgvault_model::instance::{
    BACKUPS_SUSPENDED, BackupInstanceProperties, BackupInstanceRequest, PROTECTION_CONFIGURED,
    PROTECTION_STOPPED,
};
use pgvault_model::job::JobFilter;
use pgvault_model::policy::BackupPolicy;
use pgvault_model::request::{
    AdhocBackupRequest, ValidateForBackupRequest, ValidateRestoreRequest, from_request_value,
};
use pgvault_model::resource::ResourceGroup;
use pgvault_model::restore::RestoreRequest;
use pgvault_model::security::{SecurityChange, SecuritySettings};

use crate::Portal;
use crate::arm::{ApiError, PAGE_SIZE, check_api_version, page, page_of, skip_token};
use crate::operations::{Ends, Status, job_info, status_body};
use crate::route::{InstanceAction, Route, VaultRef, parse};

type ApiResult = Result<Response, ApiError>;

/// The work of a long-running operation, what it answers when done.
type Work =
    std::pin::Pin<Box<dyn Future<Output = pgvault_host::api::Result<Option<Value>>> + Send>>;

/// The job a response started, for the audit table.
#[derive(Debug, Clone)]
struct StartedJob(String);

/// What every handler needs of the request.
struct Request<'a> {
    portal: &'a Portal,
    caller: &'a Caller,
    /// `https://host:port`, as the client reached this server.
    base: String,
    path: String,
    api_version: String,
    query: Vec<(String, String)>,
    body: Bytes,
}

/// The REST API's entry point (every path under `/subscriptions/`).
pub async fn handle(
    State(portal): State<Arc<Portal>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let caller = match authenticate(&portal, &headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let response = match request(&portal, &caller, &method, &uri, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    if method != Method::GET && method != Method::HEAD {
        let entry = AuditEntry {
            time: portal.svc.now(),
            token_name: caller.name.clone(),
            role: caller.role,
            method: method.to_string(),
            path: crate::route::printable(uri.path()),
            status: response.status().as_u16(),
            job_id: response
                .extensions()
                .get::<StartedJob>()
                .map(|j| j.0.clone()),
        };
        if let Err(e) = portal.svc.audit(&entry) {
            tracing::error!(error = %e, "could not write the API audit table");
        }
    }
    response
}

/// `GET /metrics`: Prometheus's text format (see `pgvault_host::metrics`), for any valid
/// API token (a Reader's is enough: Prometheus sends it as `authorization.credentials` of
/// its scrape config); never anonymous, as the names of databases and vaults are not public.
pub async fn metrics(State(portal): State<Arc<Portal>>, headers: HeaderMap) -> Response {
    if let Err(e) = authenticate(&portal, &headers) {
        return e.into_response();
    }
    match portal.svc.metrics(portal.svc.now()).await {
        Ok(text) => (
            [(header::CONTENT_TYPE, pgvault_host::metrics::CONTENT_TYPE)],
            text,
        )
            .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The caller a request's bearer token names.
pub fn authenticate(portal: &Portal, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::new(
            ErrorCode::AuthenticationFailed,
            "Authentication failed. The 'Authorization' header is missing.",
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::AuthenticationFailed,
                "Authentication failed. The 'Authorization' header is not of the form 'Bearer <token>'.",
            )
        })?;
    match portal.svc.authenticate(token)? {
        Some(caller) => Ok(caller),
        None => Err(ApiError::new(
            ErrorCode::InvalidAuthenticationToken,
            "The access token is invalid: it is unknown to this host or was revoked.",
        )),
    }
}

async fn request(
    portal: &Portal,
    caller: &Caller,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> ApiResult {
    let route = parse(uri.path(), &portal.subscription)?;
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let api_version = check_api_version(&query)?;
    let needed = needed_role(method, &route)?;
    if !caller.role.allows(needed) {
        return Err(ApiError::new(
            ErrorCode::AuthorizationFailed,
            format!(
                "The client '{}' with role '{}' does not have authorization to perform action '{} {}' over scope '{}'; it needs the {} role.",
                caller.name,
                caller.role,
                method,
                action_name(&route),
                crate::route::printable(uri.path()),
                needed
            ),
        ));
    }
    let scheme = if portal.tls { "https" } else { "http" };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-' | '[' | ']'))
        })
        .unwrap_or(&portal.listen);
    let req = Request {
        portal,
        caller,
        base: format!("{scheme}://{host}"),
        path: uri.path().trim_end_matches('/').to_owned(),
        api_version,
        query,
        body,
    };
    req.answer(method, route).await
}

/// The role an action needs, as Azure's Backup Reader, Operator and Contributor roles allow.
fn needed_role(method: &Method, route: &Route) -> Result<Role, ApiError> {
    use InstanceAction::*;
    let allowed = |ok: bool, role: Role| {
        if ok {
            Ok(role)
        } else {
            Err(ApiError::new(
                ErrorCode::MethodNotAllowed,
                format!("The method '{method}' is not allowed on this resource"),
            ))
        }
    };
    let (get, put, patch, delete, post) = (
        method == Method::GET,
        method == Method::PUT,
        method == Method::PATCH,
        method == Method::DELETE,
        method == Method::POST,
    );
    match route {
        Route::Vaults { .. }
        | Route::Policies(_)
        | Route::Instances(_)
        | Route::RecoveryPoints(..)
        | Route::RecoveryPoint(..)
        | Route::Jobs(_)
        | Route::Job(..)
        | Route::OperationStatus(_)
        | Route::OperationResult(_) => allowed(get, Role::Reader),
        Route::Vault(_) => allowed(
            get || put || patch || delete,
            if get { Role::Reader } else { Role::Contributor },
        ),
        Route::Policy(..) | Route::Instance(..) => allowed(
            get || put || delete,
            if get { Role::Reader } else { Role::Contributor },
        ),
        Route::ValidateForBackup(_) => allowed(post, Role::Operator),
        Route::InstanceAction(_, _, action) => allowed(
            post,
            match action {
                Backup | Restore | ValidateRestore | SuspendBackups | ResumeBackups
                | ResumeProtection | Rehydrate => Role::Operator,
                StopProtection => Role::Contributor,
            },
        ),
    }
}

/// Azure's name of the action, for an authorization error.
fn action_name(route: &Route) -> String {
    let base = "Microsoft.DataProtection/backupVaults";
    match route {
        Route::Vaults { .. } | Route::Vault(_) => base.to_owned(),
        Route::ValidateForBackup(_) => format!("{base}/validateForBackup/action"),
        Route::Policies(_) | Route::Policy(..) => format!("{base}/backupPolicies"),
        Route::Instances(_) | Route::Instance(..) => format!("{base}/backupInstances"),
        Route::InstanceAction(_, _, a) => format!("{base}/backupInstances/{a:?}/action"),
        Route::RecoveryPoints(..) | Route::RecoveryPoint(..) => {
            format!("{base}/backupInstances/recoveryPoints")
        }
        Route::Jobs(_) | Route::Job(..) => format!("{base}/backupJobs"),
        Route::OperationStatus(_) | Route::OperationResult(_) => format!("{base}/operations"),
    }
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn bad_body(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidRequestContent,
        format!("The request content is not a valid {what}: {e}"),
    )
}

/// The resource group in a resource's `id`, if it names one.
pub(crate) fn group_of(resource: &Value) -> Option<&str> {
    let id = resource["id"].as_str()?;
    let mut parts = id.split('/');
    parts
        .by_ref()
        .find(|p| p.eq_ignore_ascii_case("resourceGroups"))?;
    parts.next()
}

impl Request<'_> {
    fn svc(&self) -> &pgvault_host::service::Pgvault {
        &self.portal.svc
    }

    /// The body as JSON; an empty body is `{}` (the SDK sends none for some actions).
    fn json(&self) -> Result<Value, ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(json!({}));
        }
        serde_json::from_slice(&self.body).map_err(|e| bad_body("JSON document", e))
    }

    fn this_url(&self) -> String {
        format!("{}{}", self.base, self.path)
    }

    fn page_start(&self) -> Result<usize, ApiError> {
        skip_token(&self.query)
    }

    /// The vault `v` names, as JSON, once it is known to be in `v`'s resource group.
    async fn vault(&self, v: &VaultRef) -> Result<Value, ApiError> {
        let not_found = || {
            ApiError::new(
                ErrorCode::ResourceNotFound,
                format!(
                    "The Resource 'Microsoft.DataProtection/backupVaults/{}' under resource group '{}' was not found.",
                    crate::route::printable(&v.vault),
                    crate::route::printable(&v.group)
                ),
            )
        };
        let vault = match self.svc().vault_json(&v.vault).await {
            Ok(vault) => vault,
            Err(e) if e.code == ErrorCode::UserErrorVaultNotFound => return Err(not_found()),
            Err(e) => return Err(e.into()),
        };
        match group_of(&vault) {
            Some(g) if !g.eq_ignore_ascii_case(&v.group) => Err(not_found()),
            _ => Ok(vault),
        }
    }

    /// The vault's resource id (what job JSON is addressed under).
    async fn vault_id(&self, v: &VaultRef) -> Result<String, ApiError> {
        Ok(self.vault(v).await?["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    async fn answer(&self, method: &Method, route: Route) -> ApiResult {
        match route {
            Route::Vaults { group } => self.list_vaults(group.as_deref()).await,
            Route::Vault(v) => match *method {
                Method::GET => Ok(json_response(StatusCode::OK, self.vault(&v).await?)),
                Method::PUT => self.put_vault(&v).await,
                Method::PATCH => self.patch_vault(&v).await,
                _ => self.delete_vault(&v).await,
            },
            Route::ValidateForBackup(v) => self.validate_for_backup(&v).await,
            Route::Policies(v) => {
                self.vault(&v).await?;
                let (policies, _) = self.svc().policies_json(&v.vault).await?;
                self.list(policies)
            }
            Route::Policy(v, name) => {
                self.vault(&v).await?;
                match *method {
                    Method::GET => Ok(json_response(
                        StatusCode::OK,
                        self.svc().policy_json(&v.vault, &name).await?,
                    )),
                    Method::PUT => self.put_policy(&v, &name).await,
                    _ => match self.svc().delete_policy(&v.vault, &name).await {
                        Ok(()) => Ok(StatusCode::OK.into_response()),
                        Err(e) if e.code == ErrorCode::UserErrorPolicyNotFound => {
                            Ok(StatusCode::NO_CONTENT.into_response())
                        }
                        Err(e) => Err(e.into()),
                    },
                }
            }
            Route::Instances(v) => {
                self.vault(&v).await?;
                let (instances, _) = self.svc().instances_json(&v.vault).await?;
                self.list(instances)
            }
            Route::Instance(v, name) => {
                self.vault(&v).await?;
                match *method {
                    Method::GET => Ok(json_response(
                        StatusCode::OK,
                        self.svc().instance_json(&v.vault, &name).await?,
                    )),
                    Method::PUT => self.put_instance(&v, &name).await,
                    _ => self.delete_instance(&v, &name).await,
                }
            }
            Route::InstanceAction(v, name, action) => {
                self.vault(&v).await?;
                self.svc().instance_json(&v.vault, &name).await?;
                self.instance_action(&v, &name, action).await
            }
            Route::RecoveryPoints(v, name) => {
                self.vault(&v).await?;
                let start = self.page_start()?;
                let (mut points, more) = self
                    .svc()
                    .recovery_points_page(&v.vault, &name, start, PAGE_SIZE)
                    .await?;
                if more {
                    // `page` gives a nextLink when it holds more than a page.
                    points.push(Value::Null);
                }
                Ok(json_response(
                    StatusCode::OK,
                    page(points, start, &self.this_url(), &self.api_version),
                ))
            }
            Route::RecoveryPoint(v, name, id) => {
                self.vault(&v).await?;
                Ok(json_response(
                    StatusCode::OK,
                    self.svc().recovery_point_json(&v.vault, &name, &id).await?,
                ))
            }
            Route::Jobs(v) => self.list_jobs(&v).await,
            Route::Job(v, id) => {
                let vault_id = self.vault_id(&v).await?;
                let job = self.svc().job(&id)?;
                if !job.vault_name.eq_ignore_ascii_case(&v.vault) {
                    return Err(ApiError::new(
                        ErrorCode::UserErrorJobNotFound,
                        format!(
                            "vault `{}` has no job `{}`",
                            v.vault,
                            crate::route::printable(&id)
                        ),
                    ));
                }
                Ok(json_response(StatusCode::OK, job.to_azure_json(&vault_id)))
            }
            Route::OperationStatus(id) => self.operation_status(&id),
            Route::OperationResult(id) => self.operation_result(&id),
        }
    }

    fn list(&self, mut items: Vec<Value>) -> ApiResult {
        items.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        let start = self.page_start()?;
        Ok(json_response(
            StatusCode::OK,
            page_of(items, start, &self.this_url(), &self.api_version),
        ))
    }

    async fn list_vaults(&self, group: Option<&str>) -> ApiResult {
        let vaults: Vec<Value> = self
            .svc()
            .vaults_json(None)
            .await?
            .into_iter()
            .filter(|v| match (group, group_of(v)) {
                (Some(want), Some(have)) => want.eq_ignore_ascii_case(have),
                _ => true,
            })
            .collect();
        self.list(vaults)
    }

    async fn list_jobs(&self, v: &VaultRef) -> ApiResult {
        let vault_id = self.vault_id(v).await?;
        let start = self.page_start()?;
        let jobs = self.svc().jobs(
            &JobFilter::default()
                .vault(&v.vault)
                .limit(PAGE_SIZE + 1)
                .offset(start),
        )?;
        let items = jobs.iter().map(|j| j.to_azure_json(&vault_id)).collect();
        Ok(json_response(
            StatusCode::OK,
            page(items, start, &self.this_url(), &self.api_version),
        ))
    }

    // ---- vaults ----

    /// PUT creates the vault (201) or replaces what ARM lets a PUT replace of an existing one
    /// (200): its tags, location and storage settings.
    async fn put_vault(&self, v: &VaultRef) -> ApiResult {
        let body = VaultBody::parse(self.json()?)?;
        let status = match self.vault(v).await {
            Ok(existing) => {
                check_encryption_unchanged(&existing, &body.encryption)?;
                StatusCode::OK
            }
            Err(e) if e.code != ErrorCode::ResourceNotFound => return Err(e),
            Err(_) => {
                let group = ResourceGroup::parse(&v.group)
                    .map_err(|e| ApiError::new(e.code(), e.to_string()))?;
                // Settings a new vault cannot take are refused before it is created.
                SecuritySettings::default()
                    .apply(&v.vault, &body.security)
                    .map_err(|e| ApiError::new(e.code, e.message))?;
                let key = body.encryption.clone().flatten();
                self.svc()
                    .create_vault_with(&v.vault, &group, None, None, key.as_deref())
                    .await?;
                StatusCode::CREATED
            }
        };
        // Security first: a refused change (AlwaysOn or Locked undone) then changes nothing.
        if !body.security.is_empty() {
            self.svc()
                .set_security_settings(&v.vault, &body.security)
                .await?;
        }
        let vault = self
            .svc()
            .set_vault_resource(
                &v.vault,
                body.location,
                Some(body.tags.unwrap_or_default()),
                body.storage_settings,
            )
            .await?;
        Ok(json_response(status, vault))
    }

    /// PATCH changes what it names: tags (all of them, as ARM's PATCH replaces the tag set)
    /// and storage settings.
    async fn patch_vault(&self, v: &VaultRef) -> ApiResult {
        let body = VaultBody::parse(self.json()?)?;
        let existing = self.vault(v).await?;
        check_encryption_unchanged(&existing, &body.encryption)?;
        if !body.security.is_empty() {
            self.svc()
                .set_security_settings(&v.vault, &body.security)
                .await?;
        }
        let vault = self
            .svc()
            .set_vault_resource(&v.vault, None, body.tags, body.storage_settings)
            .await?;
        Ok(json_response(StatusCode::OK, vault))
    }

    async fn delete_vault(&self, v: &VaultRef) -> ApiResult {
        match self.vault(v).await {
            Ok(_) => {}
            Err(e) if e.code == ErrorCode::ResourceNotFound => {
                return Ok(StatusCode::NO_CONTENT.into_response());
            }
            Err(e) => return Err(e),
        }
        self.svc().delete_vault(&v.vault).await?;
        Ok(StatusCode::OK.into_response())
    }

    // ---- policies ----

    async fn put_policy(&self, v: &VaultRef, name: &str) -> ApiResult {
        let body = self.json()?;
        let properties = match body.get("properties") {
            Some(p) => p.clone(),
            None => {
                return Err(bad_body(
                    "backup policy resource",
                    "it has no `properties` (send {\"properties\": <policy>})",
                ));
            }
        };
        let policy = BackupPolicy::parse_value(properties).and_then(|p| p.validate().map(|()| p));
        let policy = policy.map_err(|errors| {
            let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            ApiError::new(
                ErrorCode::UserErrorInvalidPolicy,
                format!("the policy is not valid: {}", list.join("; ")),
            )
        })?;
        let created = self.svc().create_policy(&v.vault, name, &policy).await?;
        // Azure answers a policy's creation with 200 (its SDK refuses anything else).
        Ok(json_response(StatusCode::OK, created))
    }

    // ---- instances ----

    fn instance_request(
        &self,
        name: &str,
        properties: Value,
    ) -> Result<BackupInstanceRequest, ApiError> {
        let properties: BackupInstanceProperties =
            from_request_value(properties).map_err(|e| bad_body("backup instance", e))?;
        Ok(BackupInstanceRequest {
            name: name.to_owned(),
            properties,
        })
    }

    async fn put_instance(&self, v: &VaultRef, name: &str) -> ApiResult {
        let body = self.json()?;
        let Some(properties) = body.get("properties").cloned() else {
            return Err(bad_body(
                "backup instance resource",
                "it has no `properties` (send {\"properties\": <backup instance>})",
            ));
        };
        let request = self.instance_request(name, properties)?;
        self.svc().check_new_instance(&v.vault, &request).await?;
        let mut pending = json!({
            "id": format!("{}/backupInstances/{name}", self.vault_id(v).await?),
            "name": name,
            "type": pgvault_model::resource::INSTANCE_TYPE,
            "properties": serde_json::to_value(&request.properties).unwrap_or_default(),
        });
        pending["properties"]["provisioningState"] = json!("Provisioning");
        pending["properties"]["currentProtectionState"] = json!("ConfiguringProtection");
        pending["properties"]["protectionStatus"] = json!({"status": "ConfiguringProtection"});
        let svc = self.portal.svc.clone();
        let vault = v.vault.clone();
        let id = self.portal.ops.start(
            &self.portal.svc,
            &self.caller.name,
            Ends::WhenDone,
            async move { svc.protect(&vault, request).await.map(Some) },
        );
        Ok(self.accepted(v, &id, StatusCode::CREATED, Some(pending), false))
    }

    async fn delete_instance(&self, v: &VaultRef, name: &str) -> ApiResult {
        match self.svc().instance_json(&v.vault, name).await {
            Ok(_) => {}
            Err(e) if e.code == ErrorCode::UserErrorBackupInstanceNotFound => {
                return Ok(StatusCode::NO_CONTENT.into_response());
            }
            Err(e) => return Err(e.into()),
        }
        let (svc, vault, name) = (self.portal.svc.clone(), v.vault.clone(), name.to_owned());
        let id = self.portal.ops.start(
            &self.portal.svc,
            &self.caller.name,
            Ends::WhenDone,
            async move {
                svc.delete_backup_instance(&vault, &name)
                    .await
                    .map(|_| None)
            },
        );
        Ok(self.accepted(v, &id, StatusCode::ACCEPTED, None, true))
    }

    async fn validate_for_backup(&self, v: &VaultRef) -> ApiResult {
        self.vault(v).await?;
        let body = self.json()?;
        let ValidateForBackupRequest {
            backup_instance: properties,
        } = from_request_value(body).map_err(|e| bad_body("validate-for-backup request", e))?;
        // The instance is not created, so its name only has to be one no instance has.
        let name = format!(
            "validate-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let request = BackupInstanceRequest { name, properties };
        self.svc().check_new_instance(&v.vault, &request).await?;
        let (svc, vault) = (self.portal.svc.clone(), v.vault.clone());
        let id = self.portal.ops.start(
            &self.portal.svc,
            &self.caller.name,
            Ends::WhenDone,
            async move {
                svc.validate_for_backup(&vault, &request).await?;
                Ok(Some(json!({"objectType": "OperationJobExtendedInfo"})))
            },
        );
        Ok(self.accepted(v, &id, StatusCode::ACCEPTED, None, true))
    }

    async fn instance_action(&self, v: &VaultRef, name: &str, action: InstanceAction) -> ApiResult {
        let svc = self.portal.svc.clone();
        let (vault, instance) = (v.vault.clone(), name.to_owned());
        let body = self.json()?;
        let (ends, work): (Ends, Work) = match action {
            InstanceAction::Backup => {
                let trigger: AdhocBackupRequest =
                    from_request_value(body).map_err(|e| bad_body("backup request", e))?;
                let options = trigger.backup_rule_options;
                // Refused now, as Azure refuses it (409), rather than as a failed operation.
                self.svc().check_backup_allowed(&vault, &instance).await?;
                (
                    Ends::WhenJobStarts,
                    Box::pin(async move {
                        let tag = options.trigger_option.retention_tag_override;
                        let (job, _) = svc
                            .adhoc_backup(&vault, &instance, &options.rule_name, tag.as_deref())
                            .await?;
                        Ok(Some(job_info(&job.id.to_string())))
                    }),
                )
            }
            InstanceAction::Restore => {
                let request =
                    RestoreRequest::from_value(body).map_err(|e| bad_body("restore request", e))?;
                (
                    Ends::WhenJobStarts,
                    Box::pin(async move {
                        let (job, _) = svc.restore(&vault, &instance, &request).await?;
                        Ok(Some(job_info(&job.id.to_string())))
                    }),
                )
            }
            InstanceAction::ValidateRestore => {
                let ValidateRestoreRequest {
                    restore_request_object: request,
                } = from_request_value(body)
                    .map_err(|e| bad_body("validate-restore request", e))?;
                (
                    Ends::WhenDone,
                    Box::pin(async move {
                        svc.validate_restore(&vault, &instance, &request).await?;
                        Ok(Some(json!({"objectType": "OperationJobExtendedInfo"})))
                    }),
                )
            }
            InstanceAction::SuspendBackups
            | InstanceAction::ResumeBackups
            | InstanceAction::StopProtection
            | InstanceAction::ResumeProtection => {
                let state = match action {
                    InstanceAction::SuspendBackups => BACKUPS_SUSPENDED,
                    InstanceAction::StopProtection => PROTECTION_STOPPED,
                    _ => PROTECTION_CONFIGURED,
                };
                (
                    Ends::WhenDone,
                    Box::pin(async move {
                        svc.set_protection_state(&vault, &instance, state).await?;
                        Ok(None)
                    }),
                )
            }
            InstanceAction::Rehydrate => {
                let request: Rehydrate =
                    serde_json::from_value(body).map_err(|e| bad_body("rehydration request", e))?;
                let days =
                    pgvault_model::duration::parse_days(&request.rehydration_retention_duration)
                        .map_err(|e| {
                            ApiError::new(ErrorCode::UserErrorInvalidRehydrationDuration, e)
                        })?;
                (
                    Ends::WhenJobStarts,
                    Box::pin(async move {
                        let job = svc
                            .rehydrate(
                                &vault,
                                &instance,
                                &request.recovery_point_id,
                                days,
                                &request.rehydration_priority,
                            )
                            .await?;
                        Ok(Some(job_info(&job.id.to_string())))
                    }),
                )
            }
        };
        let id = self
            .portal
            .ops
            .start(&self.portal.svc, &self.caller.name, ends, work);
        Ok(self.accepted(v, &id, StatusCode::ACCEPTED, None, true))
    }

    /// The answer that starts a long-running operation: `status` (201 or 202) with
    /// `Azure-AsyncOperation`, `Location` (for a POST or DELETE) and `Retry-After`.
    fn accepted(
        &self,
        v: &VaultRef,
        id: &str,
        status: StatusCode,
        body: Option<Value>,
        with_location: bool,
    ) -> Response {
        let vault_url = format!(
            "{}/subscriptions/{}/resourceGroups/{}/providers/Microsoft.DataProtection/backupVaults/{}",
            self.base,
            self.portal.subscription,
            percent(&v.group),
            percent(&v.vault)
        );
        let status_url = format!(
            "{vault_url}/operationStatus/{id}?api-version={}",
            self.api_version
        );
        let result_url = format!(
            "{vault_url}/operationResults/{id}?api-version={}",
            self.api_version
        );
        let mut response = match body {
            Some(b) => json_response(status, b),
            None => status.into_response(),
        };
        let headers = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&status_url) {
            headers.insert("Azure-AsyncOperation", v);
        }
        if with_location && let Ok(v) = HeaderValue::from_str(&result_url) {
            headers.insert(header::LOCATION, v);
        }
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        response.extensions_mut().insert(StartedJob(id.to_owned()));
        response
    }

    fn operation_status(&self, id: &str) -> ApiResult {
        let Some((status, start, end)) = self.portal.ops.status(self.svc(), id) else {
            return Err(ApiError::new(
                ErrorCode::ResourceNotFound,
                format!(
                    "The operation '{}' was not found",
                    crate::route::printable(id)
                ),
            ));
        };
        let has_job = self.job_exists(id);
        let body = status_body(&self.path, id, &status, start, end, has_job);
        let mut response = json_response(StatusCode::OK, body);
        if status == Status::InProgress {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        Ok(response)
    }

    fn operation_result(&self, id: &str) -> ApiResult {
        let Some((status, _, _)) = self.portal.ops.status(self.svc(), id) else {
            return Err(ApiError::new(
                ErrorCode::ResourceNotFound,
                format!(
                    "The operation '{}' was not found",
                    crate::route::printable(id)
                ),
            ));
        };
        match status {
            Status::InProgress => {
                let mut response = StatusCode::ACCEPTED.into_response();
                let headers = response.headers_mut();
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                let here = format!("{}?api-version={}", self.this_url(), self.api_version);
                if let Ok(v) = HeaderValue::from_str(&here) {
                    headers.insert(header::LOCATION, v);
                }
                Ok(response)
            }
            Status::Succeeded(Some(value)) => Ok(json_response(StatusCode::OK, value)),
            Status::Succeeded(None) if self.job_exists(id) => {
                Ok(json_response(StatusCode::OK, job_info(id)))
            }
            Status::Succeeded(None) => Ok(StatusCode::NO_CONTENT.into_response()),
            Status::Failed(e) => Err(e),
        }
    }

    fn job_exists(&self, id: &str) -> bool {
        self.svc().job(id).is_ok()
    }
}

/// What a path segment keeps as it is: RFC 3986's unreserved characters.
pub(crate) const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A path segment as it goes into a URL.
fn percent(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, SEGMENT).to_string()
}

/// What a vault's PUT or PATCH body may set.
#[derive(Debug, Default)]
struct VaultBody {
    location: Option<String>,
    tags: Option<BTreeMap<String, String>>,
    storage_settings: Option<Value>,
    /// `properties.securitySettings`: soft delete and immutability.
    security: SecurityChange,
    /// `properties.securitySettings.encryptionSettings`: `Some(Some(key))` for `state: Enabled`
    /// with `keyVaultProperties.keyUri` (the key pgvault wraps the vault's data key with),
    /// `Some(None)` for `Disabled`, `None` when not given.
    encryption: Option<Option<String>>,
}

impl VaultBody {
    fn parse(body: Value) -> Result<VaultBody, ApiError> {
        let Value::Object(body) = body else {
            return Err(bad_body("backup vault", "the body must be a JSON object"));
        };
        let location = match body.get("location") {
            None | Some(Value::Null) => None,
            Some(Value::String(l)) if !l.trim().is_empty() => Some(l.trim().to_owned()),
            Some(other) => {
                return Err(bad_body(
                    "backup vault",
                    format!("`location` must be a region name, not {other}"),
                ));
            }
        };
        let tags = match body.get("tags") {
            None | Some(Value::Null) => None,
            Some(t) => Some(check_tags(t)?),
        };
        let storage_settings = body
            .get("properties")
            .and_then(|p| p.get("storageSettings"))
            .filter(|s| !s.is_null())
            .cloned();
        let security = match body
            .get("properties")
            .and_then(|p| p.get("securitySettings"))
            .filter(|s| !s.is_null())
        {
            Some(s) => {
                SecurityChange::from_azure(s).map_err(|e| ApiError::new(e.code, e.message))?
            }
            None => SecurityChange::default(),
        };
        let encryption = match body
            .get("properties")
            .and_then(|p| p.get("securitySettings"))
            .and_then(|s| s.get("encryptionSettings"))
            .filter(|e| !e.is_null())
        {
            None => None,
            Some(e) => {
                let state = e.get("state").and_then(Value::as_str).unwrap_or("Enabled");
                let key = e
                    .get("keyVaultProperties")
                    .and_then(|k| k.get("keyUri"))
                    .and_then(Value::as_str);
                match (state, key) {
                    ("Disabled", _) => Some(None),
                    ("Enabled", Some(key)) => Some(Some(key.to_owned())),
                    ("Enabled", None) => {
                        return Err(bad_body(
                            "backup vault",
                            "`properties.securitySettings.encryptionSettings` with state Enabled \
                             needs `keyVaultProperties.keyUri`, the key that wraps the vault's key",
                        ));
                    }
                    (other, _) => {
                        return Err(bad_body(
                            "backup vault",
                            format!(
                                "`properties.securitySettings.encryptionSettings.state` must be Enabled or Disabled, not {other}"
                            ),
                        ));
                    }
                }
            }
        };
        Ok(VaultBody {
            location,
            tags,
            storage_settings,
            security,
            encryption,
        })
    }
}

/// Encryption is chosen when a vault is created: a PUT or PATCH may repeat it (the state the
/// vault has; its keys are managed with `backup-vault key`) but not turn it on or off.
fn check_encryption_unchanged(
    existing: &Value,
    asked: &Option<Option<String>>,
) -> Result<(), ApiError> {
    let Some(asked) = asked else {
        return Ok(());
    };
    let enabled =
        existing["properties"]["securitySettings"]["encryptionSettings"]["state"] == "Enabled";
    if enabled == asked.is_some() {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::UserErrorVaultNotEncrypted,
        format!(
            "the vault's encryption is chosen when it is created and cannot be turned {} (its state is {}); \
             create a new vault to change it, and manage an encrypted vault's keys with `pgvault backup-vault key`",
            if enabled { "off" } else { "on" },
            if enabled { "Enabled" } else { "Disabled" }
        ),
    ))
}

/// ARM's rules for resource tags: at most 50, names of at most 512 characters without
/// `<>%&\?/`, string values of at most 256.
fn check_tags(tags: &Value) -> Result<BTreeMap<String, String>, ApiError> {
    let invalid = |why: String| {
        ApiError::new(
            ErrorCode::InvalidRequestContent,
            format!("The tags are not valid: {why}"),
        )
    };
    let Value::Object(map) = tags else {
        return Err(invalid(
            "`tags` must be an object of names to string values".into(),
        ));
    };
    if map.len() > 50 {
        return Err(invalid(format!(
            "{} tags; a resource has at most 50",
            map.len()
        )));
    }
    let mut out = BTreeMap::new();
    for (name, value) in map {
        if name.is_empty()
            || name.chars().count() > 512
            || name.contains(['<', '>', '%', '&', '\\', '?', '/'])
        {
            return Err(invalid(format!(
                "tag name `{}` must be 1 to 512 characters without < > % & \\ ? /",
                crate::route::printable(name)
            )));
        }
        let Value::String(value) = value else {
            return Err(invalid(format!(
                "tag `{}` has a value that is not a string",
                crate::route::printable(name)
            )));
        };
        if value.chars().count() > 256 {
            return Err(invalid(format!(
                "tag `{}` has a value longer than 256 characters",
                crate::route::printable(name)
            )));
        }
        out.insert(name.clone(), value.clone());
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rehydrate {
    #[serde(alias = "recovery_point_id")]
    recovery_point_id: String,
    #[serde(default = "standard", alias = "rehydration_priority")]
    rehydration_priority: String,
    #[serde(alias = "rehydration_retention_duration")]
    rehydration_retention_duration: String,
}

fn standard() -> String {
    "Standard".into()
}
