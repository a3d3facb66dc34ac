//! Configure backup, the portal's flow: pick a vault and a server (its address and an admin
//! secret reference), see its databases (PostgreSQL's own and Azure's `azure_maintenance` and
//! `azure_sys` left out, those the vault protects marked), select several, give each its
//! secret reference, check their readiness (the exact error code, the objects that lack a
//! privilege and the grant script to download), pick a policy (or create one from the
//! default template), and submit: one ConfigureBackup job per database.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use pgvault_host::access::Role;
use pgvault_host::api::{InitializeArgs, ServerArgs, initialize_instance, server_databases};
use pgvault_host::{OnBehalf, on_behalf};
use pgvault_model::job::JobId;
use pgvault_model::secret::SecretRef;

use super::session::Session;
use super::{SignedIn, frame, problem, signed_in_post};
use crate::Portal;

const FLEXIBLE: &str = "AzureDatabaseForPostgreSQLFlexibleServer";
const TEMPLATE_POLICY: &str = "DefaultPolicy";

#[derive(Debug, Deserialize, Default, Clone)]
pub struct Server {
    #[serde(default)]
    vault: String,
    #[serde(default)]
    server: String,
    #[serde(default)]
    secret: String,
}

/// What a database's row shows after a readiness check or a submission.
enum Outcome {
    Ready,
    Refused { code: String, message: String },
    Protected { job: Option<String> },
}

pub async fn show(
    State(portal): State<Arc<Portal>>,
    SignedIn(session): SignedIn,
    Query(q): Query<Server>,
) -> Response {
    render(
        &portal,
        &session,
        &q,
        &BTreeMap::new(),
        &BTreeMap::new(),
        "",
        StatusCode::OK,
    )
    .await
}

/// The secret reference's store type and URI, as `initialize` takes them.
fn secret_parts(reference: &str) -> Result<(String, String), (String, String)> {
    reference
        .trim()
        .parse::<SecretRef>()
        .map(|r| {
            (
                r.store_type().as_str().to_owned(),
                reference.trim().to_owned(),
            )
        })
        .map_err(|e| ("UserErrorInvalidSecretStore".to_owned(), e.to_string()))
}

/// The server's maintenance database (`postgres://host:port/postgres`), which the listing
/// connects to; a server given with a database is taken as it is.
fn maintenance_database(server: &str) -> String {
    let server = server.trim().trim_end_matches('/');
    let has_database = server
        .split_once("://")
        .is_some_and(|(_, rest)| rest.contains('/'));
    if has_database {
        server.to_owned()
    } else {
        format!("{server}/postgres")
    }
}

/// The server's protectable databases, or why they cannot be listed.
async fn databases(q: &Server) -> Result<Vec<String>, (String, String)> {
    let (store_type, uri) = secret_parts(&q.secret)?;
    server_databases(&ServerArgs {
        datasource_type: FLEXIBLE.into(),
        datasource_id: maintenance_database(&q.server),
        secret_store_type: store_type,
        secret_store_uri: uri,
    })
    .await
    .map_err(|e| (e.code.as_str().to_owned(), e.message))
}

/// `postgres://host:port` of what the form names (without a database).
fn server_part(server: &str) -> String {
    let server = server.trim().trim_end_matches('/');
    match server.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", rest.split('/').next().unwrap_or(rest)),
        None => server.to_owned(),
    }
}

/// The databases `vault` protects already on `server` (by datasource id).
async fn protected(portal: &Portal, vault: &str, server: &str) -> BTreeMap<String, String> {
    let Ok((instances, _)) = portal.svc.instances_json(vault).await else {
        return BTreeMap::new();
    };
    let server = server_part(server).to_ascii_lowercase();
    instances
        .iter()
        .filter_map(|i| {
            let id = i["properties"]["dataSourceInfo"]["resourceID"].as_str()?;
            let (srv, db) = id.rsplit_once('/')?;
            (srv.to_ascii_lowercase() == server).then(|| {
                (
                    db.to_owned(),
                    i["name"].as_str().unwrap_or_default().to_owned(),
                )
            })
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn render(
    portal: &Portal,
    session: &Session,
    q: &Server,
    secrets: &BTreeMap<String, String>,
    outcomes: &BTreeMap<String, Outcome>,
    chosen_policy: &str,
    status: StatusCode,
) -> Response {
    let vaults: Vec<String> = portal
        .svc
        .vaults_json(None)
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v["name"].as_str().map(str::to_owned))
        .collect();
    let listing = if q.server.trim().is_empty() || q.vault.is_empty() {
        None
    } else {
        Some(databases(q).await)
    };
    let policies: Vec<String> = match portal.svc.policies_json(&q.vault).await {
        Ok((p, _)) => p
            .iter()
            .filter_map(|p| p["name"].as_str().map(str::to_owned))
            .collect(),
        Err(_) => Vec::new(),
    };
    let already = protected(portal, &q.vault, &q.server).await;
    let content = html! {
        form.filters method="get" action="/configure" {
            label { "Vault "
                select name="vault" required {
                    @for v in &vaults { option value=(v) selected[*v == q.vault] { (v) } }
                }
            }
            label { "Server " input name="server" value=(q.server) placeholder="postgres://db1.example:5432" required size="32"; }
            label { "Admin secret reference " input name="secret" value=(q.secret) placeholder="file:///etc/pgvault/db1.secret" required size="36"; }
            button type="submit" { "List databases" }
        }
        @if vaults.is_empty() { p { "Create a vault first (" code { "pgvault backup-vault create" } ")." } }
        @match &listing {
            None => {}
            Some(Err((code, message))) => { (problem(code, message)) }
            Some(Ok(dbs)) => {
                form method="post" action="/configure" {
                    input type="hidden" name="csrf" value=(session.csrf);
                    input type="hidden" name="vault" value=(q.vault);
                    input type="hidden" name="server" value=(q.server);
                    input type="hidden" name="secret" value=(q.secret);
                    table {
                        thead { tr {
                            th scope="col" { "Back up" } th scope="col" { "Database" }
                            th scope="col" { "Secret reference" } th scope="col" { "Readiness" }
                        } }
                        tbody {
                            @for db in dbs {
                                tr {
                                    td {
                                        @if let Some(instance) = already.get(db) {
                                            span.badge.ok title=(instance) { "Protected" }
                                        } @else {
                                            input type="checkbox" name="db" value=(db) id={"db-" (db)}
                                                checked[secrets.contains_key(db)] aria-label={"Back up " (db)};
                                        }
                                    }
                                    td { label for={"db-" (db)} { (db) } }
                                    td { input name={"secret:" (db)} aria-label={"Secret reference for " (db)}
                                        value=(secrets.get(db).cloned().unwrap_or_else(|| q.secret.clone())) size="36"; }
                                    td { (outcome(db, outcomes.get(db))) }
                                }
                            }
                        }
                    }
                    p {
                        label for="policy" { "Backup policy " }
                        select #policy name="policy" {
                            @for p in &policies { option value=(p) selected[*p == chosen_policy] { (p) } }
                            option value="" selected[policies.is_empty()] { "New: " (TEMPLATE_POLICY) " (the default template: weekly, kept 3 months)" }
                        }
                        " "
                        a href={"/policies/new?vault=" (super::seg(&q.vault))} { "Design a policy" }
                    }
                    div.actions {
                        button type="submit" name="action" value="check" { "Check readiness" }
                        button type="submit" name="action" value="protect" { "Configure backup" }
                    }
                }
            }
        }
    };
    (
        status,
        Html(frame("Configure backup", Some(session), content).into_string()),
    )
        .into_response()
}

fn outcome(db: &str, outcome: Option<&Outcome>) -> Markup {
    html! {
        @match outcome {
            None => span.quiet { "not checked" },
            Some(Outcome::Ready) => span.badge.ok { "Ready" },
            Some(Outcome::Protected { job }) => {
                span.badge.ok { "Protected" }
                @if let Some(j) = job { " " a href={"/jobs/" (j)} { "job" } }
            }
            Some(Outcome::Refused { code, message }) => {
                @let (what, script) = message.split_once("\n\n").unwrap_or((message.as_str(), ""));
                div.problem role="alert" { strong { (code) } " " (what) }
                @if !script.is_empty() {
                    details {
                        summary { "Grant script" }
                        pre.output { (script) }
                    }
                    a download={"grant-" (db) ".sql"}
                        href={"data:application/sql;charset=utf-8," (percent_encoding::utf8_percent_encode(script, percent_encoding::NON_ALPHANUMERIC))} {
                        "Download the grant script for " (db)
                    }
                }
            }
        }
    }
}

/// The selected databases and each one's secret reference, from the submitted form.
fn selection(form: &[(String, String)]) -> BTreeMap<String, String> {
    let value = |key: &str| form.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    form.iter()
        .filter(|(k, _)| k == "db")
        .map(|(_, db)| {
            let secret = value(&format!("secret:{db}")).unwrap_or_default();
            (db.clone(), secret)
        })
        .collect()
}

pub async fn submit(
    State(portal): State<Arc<Portal>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let get = |key: &str| {
        form.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let session = match signed_in_post(&portal, &headers, &get("csrf")) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let q = Server {
        vault: get("vault"),
        server: get("server"),
        secret: get("secret"),
    };
    let chosen = selection(&form);
    let protect = get("action") == "protect";
    let needed = if protect {
        Role::Contributor
    } else {
        Role::Operator
    };
    if !session.caller.role.allows(needed) {
        let mut outcomes = BTreeMap::new();
        for db in chosen.keys() {
            outcomes.insert(
                db.clone(),
                Outcome::Refused {
                    code: "AuthorizationFailed".into(),
                    message: format!(
                        "The token '{}' ({}) may not do this; it needs the {needed} role.",
                        session.caller.name, session.caller.role
                    ),
                },
            );
        }
        return render(
            &portal,
            &session,
            &q,
            &chosen,
            &outcomes,
            "",
            StatusCode::FORBIDDEN,
        )
        .await;
    }
    // The policy: the one chosen, or the default template created now.
    let mut policy = get("policy");
    let mut outcomes = BTreeMap::new();
    if policy.is_empty() {
        match ensure_template_policy(&portal, &q.vault).await {
            Ok(name) => policy = name,
            Err((code, message)) => {
                for db in chosen.keys() {
                    outcomes.insert(
                        db.clone(),
                        Outcome::Refused {
                            code: code.clone(),
                            message: message.clone(),
                        },
                    );
                }
                return render(
                    &portal,
                    &session,
                    &q,
                    &chosen,
                    &outcomes,
                    "",
                    StatusCode::BAD_REQUEST,
                )
                .await;
            }
        }
    }
    let server = server_part(&q.server);
    for (db, secret) in &chosen {
        let request = secret_parts(secret).and_then(|(store_type, uri)| {
            initialize_instance(&InitializeArgs {
                datasource_type: FLEXIBLE.into(),
                datasource_id: format!("{server}/{db}"),
                policy_id: policy.clone(),
                secret_store_type: store_type,
                secret_store_uri: uri,
                location: None,
            })
            .map_err(|e| (e.code.as_str().to_owned(), e.message))
        });
        let request = match request {
            Ok(r) => r,
            Err((code, message)) => {
                outcomes.insert(db.clone(), Outcome::Refused { code, message });
                continue;
            }
        };
        let result = if protect {
            let job_id = JobId::new();
            let who = OnBehalf {
                initiator: format!("api-token:{}", session.caller.name),
                job_id,
            };
            on_behalf(who, portal.svc.protect(&q.vault, request))
                .await
                .map(|_| Outcome::Protected {
                    job: Some(job_id.to_string()),
                })
        } else {
            portal
                .svc
                .validate_for_backup(&q.vault, &request)
                .await
                .map(|()| Outcome::Ready)
        };
        outcomes.insert(
            db.clone(),
            result.unwrap_or_else(|e| Outcome::Refused {
                code: e.code.as_str().to_owned(),
                message: e.message,
            }),
        );
    }
    let status = if outcomes
        .values()
        .any(|o| matches!(o, Outcome::Refused { .. }))
    {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    render(&portal, &session, &q, &chosen, &outcomes, &policy, status).await
}

/// The vault's policy made from the PostgreSQL default template, created if missing.
async fn ensure_template_policy(portal: &Portal, vault: &str) -> Result<String, (String, String)> {
    if portal.svc.policy_json(vault, TEMPLATE_POLICY).await.is_ok() {
        return Ok(TEMPLATE_POLICY.to_owned());
    }
    let template = pgvault_model::templates::default_policy_template(
        pgvault_model::policy::DatasourceType::AzureDatabaseForPostgreSQLFlexibleServer,
    );
    portal
        .svc
        .create_policy(vault, TEMPLATE_POLICY, &template)
        .await
        .map(|_: Value| TEMPLATE_POLICY.to_owned())
        .map_err(|e| (e.code.as_str().to_owned(), e.message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_is_listed_through_its_maintenance_database() {
        assert_eq!(
            maintenance_database("postgres://db1:5432"),
            "postgres://db1:5432/postgres"
        );
        assert_eq!(
            maintenance_database(" postgres://db1:5432/ "),
            "postgres://db1:5432/postgres"
        );
        assert_eq!(
            maintenance_database("postgres://db1:5432/admin"),
            "postgres://db1:5432/admin"
        );
        assert_eq!(
            server_part("postgres://db1:5432/admin"),
            "postgres://db1:5432"
        );
        assert_eq!(server_part("postgres://db1:5432"), "postgres://db1:5432");
    }
}
