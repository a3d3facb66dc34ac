//! A backup instance: its protection, its jobs of the past 7 days, Backup Now with the choice
//! of retention rule, suspend, stop and resume, and its recovery points with tier, tag,
//! expiry and size.

use std::sync::Arc;

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::TimeDelta;
use maud::html;
use serde::Deserialize;
use serde_json::Value;

use pgvault_host::access::Role;
use pgvault_host::{OnBehalf, on_behalf};
use pgvault_model::human;
use pgvault_model::instance::{BACKUPS_SUSPENDED, PROTECTION_CONFIGURED, PROTECTION_STOPPED};
use pgvault_model::job::{Job, JobFilter, JobId};

use super::session::Session;
use super::{InstancePath, SignedIn, frame, problem, seg, signed_in_post, status_badge};
use crate::Portal;

/// The retention rules of a policy (what Backup Now may tag a backup with), its backup rule
/// first.
fn rule_names(policy: &Value) -> (Option<String>, Vec<String>) {
    let rules = policy["properties"]["policyRules"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let backup = rules
        .iter()
        .find(|r| r["objectType"] == "AzureBackupRule")
        .and_then(|r| r["name"].as_str())
        .map(str::to_owned);
    let retention = rules
        .iter()
        .filter(|r| r["objectType"] == "AzureRetentionRule")
        .filter_map(|r| r["name"].as_str())
        .map(str::to_owned)
        .collect();
    (backup, retention)
}

/// Recovery points a page of the instance shows.
const POINTS_PER_PAGE: usize = 100;

#[derive(Debug, Deserialize, Default)]
pub struct PointsPage {
    #[serde(default)]
    points: usize,
}

pub async fn show(
    State(portal): State<Arc<Portal>>,
    SignedIn(session): SignedIn,
    Path(p): Path<InstancePath>,
    Query(page): Query<PointsPage>,
) -> Response {
    render_page(&portal, &session, &p, None, StatusCode::OK, page.points).await
}

async fn render(
    portal: &Portal,
    session: &Session,
    p: &InstancePath,
    refused: Option<(String, String)>,
    status: StatusCode,
) -> Response {
    render_page(portal, session, p, refused, status, 0).await
}

/// The page, with the recovery points of page `points_page` (a page at a time, so an
/// instance kept for years shows as fast as a new one; each page newest first).
async fn render_page(
    portal: &Portal,
    session: &Session,
    p: &InstancePath,
    refused: Option<(String, String)>,
    status: StatusCode,
    points_page: usize,
) -> Response {
    let svc = &portal.svc;
    let instance = match svc.instance_json(&p.vault, &p.instance).await {
        Ok(i) => i,
        Err(e) => return super::error_page(session, e),
    };
    let props = &instance["properties"];
    let policy_name = props["policyInfo"]["policyId"]
        .as_str()
        .map(pgvault_model::resource::last_segment)
        .unwrap_or_default();
    let policy = svc
        .policy_json(&p.vault, policy_name)
        .await
        .unwrap_or(Value::Null);
    let (_, retention_rules) = rule_names(&policy);
    let now = svc.now();
    let jobs = svc
        .jobs(&JobFilter {
            started_after: Some(now - TimeDelta::days(7)),
            limit: Some(100),
            ..JobFilter::default().vault(&p.vault).instance(&p.instance)
        })
        .unwrap_or_default();
    let (mut points, more_points) = svc
        .recovery_points_page(
            &p.vault,
            &p.instance,
            points_page * POINTS_PER_PAGE,
            POINTS_PER_PAGE,
        )
        .await
        .unwrap_or_default();
    points.sort_by(|a, b| {
        b["properties"]["recoveryPointTime"]
            .as_str()
            .cmp(&a["properties"]["recoveryPointTime"].as_str())
    });
    let (in_vault, in_archive) = svc
        .recovery_point_counts(&p.vault, &p.instance)
        .await
        .unwrap_or_default();
    let state = props["currentProtectionState"].as_str().unwrap_or_default();
    let may_operate = session.caller.role.allows(Role::Operator);
    let may_contribute = session.caller.role.allows(Role::Contributor);
    let action = format!("/vaults/{}/instances/{}", seg(&p.vault), seg(&p.instance));
    let content = html! {
        @if let Some((code, message)) = &refused { (problem(code, message)) }
        dl.facts {
            dt { "Vault" } dd { (p.vault) }
            dt { "Database" } dd { (props["dataSourceInfo"]["resourceName"].as_str().unwrap_or_default()) }
            dt { "Datasource" } dd { code { (props["dataSourceInfo"]["resourceID"].as_str().unwrap_or_default()) } }
            dt { "Protection" } dd { (status_badge(state)) }
            dt { "Policy" } dd { (policy_name) }
        }
        section.actions aria-label="Actions" {
            @if may_operate && state == PROTECTION_CONFIGURED {
                form method="post" action={(action) "/backup"} {
                    input type="hidden" name="csrf" value=(session.csrf);
                    label for="rule" { "Retention rule" }
                    select #rule name="rule" {
                        @for r in &retention_rules { option value=(r) { (r) } }
                    }
                    button type="submit" { "Backup now" }
                }
            }
            @if may_operate {
                form method="post" action={(action) "/protection"} {
                    input type="hidden" name="csrf" value=(session.csrf);
                    @if state == PROTECTION_CONFIGURED {
                        button type="submit" name="state" value=(BACKUPS_SUSPENDED) { "Suspend backups" }
                        @if may_contribute {
                            button.danger type="submit" name="state" value=(PROTECTION_STOPPED) { "Stop protection" }
                        }
                    } @else {
                        button type="submit" name="state" value=(PROTECTION_CONFIGURED) { "Resume protection" }
                    }
                }
            }
        }
        h2 { "Jobs of the past 7 days" }
        (super::jobs::table(&jobs.iter().collect::<Vec<&Job>>(), now))
        h2 { "Recovery points" }
        p.quiet { (in_vault) " in the vault tier, " (in_archive) " in the archive tier." }
        @if points.is_empty() { p.quiet { "No recovery points yet." } } @else {
            table {
                thead { tr {
                    th scope="col" { "Time" } th scope="col" { "Tier" } th scope="col" { "Tag" }
                    th scope="col" { "Expires" } th scope="col" { "Size" } th scope="col" { "Id" }
                    th scope="col" { span.visually-hidden { "Restore" } }
                } }
                tbody {
                    @for rp in &points {
                        @let pp = &rp["properties"];
                        tr {
                            td { (pp["recoveryPointTime"].as_str().map(human::time_text).unwrap_or_default()) }
                            td { @for d in pp["recoveryPointDataStoresDetails"].as_array().into_iter().flatten() {
                                span.badge.quiet { (d["type"].as_str().unwrap_or_default()) } " "
                            } }
                            td { (pp["retentionTagName"].as_str().unwrap_or_default()) }
                            td { (pp["expiryTime"].as_str().map(human::time_text).unwrap_or_else(|| "never".into())) }
                            td.num { (point_size(pp).map(human::size).unwrap_or_default()) }
                            td { code { (rp["name"].as_str().unwrap_or_default()) } }
                            td { @if may_operate {
                                a href={(action) "/restore?point=" (seg(rp["name"].as_str().unwrap_or_default()))} { "Restore" }
                            } }
                        }
                    }
                }
            }
        }
        @if points_page > 0 || more_points {
            nav.pager aria-label="Recovery point pages" {
                @if points_page > 0 { a href={(action) "?points=" (points_page - 1)} { "Previous points" } }
                @if more_points { a href={(action) "?points=" (points_page + 1)} { "More points" } }
            }
        }
    };
    (
        status,
        Html(
            frame(
                &format!("Backup instance {}", p.instance),
                Some(session),
                content,
            )
            .into_string(),
        ),
    )
        .into_response()
}

/// The size of a recovery point's dump, as its datastore metadata records it (Azure keeps
/// PostgreSQL's facts as a JSON string in `metaData`).
fn point_size(properties: &Value) -> Option<u64> {
    properties["recoveryPointDataStoresDetails"]
        .as_array()?
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d["metaData"].as_str()?).ok())
        .find_map(|meta| meta["bytesTransferred"].as_u64())
}

#[derive(Debug, Deserialize)]
pub struct BackupNow {
    csrf: String,
    rule: String,
}

pub async fn backup_now(
    State(portal): State<Arc<Portal>>,
    headers: HeaderMap,
    Path(p): Path<InstancePath>,
    Form(form): Form<BackupNow>,
) -> Response {
    let session = match signed_in_post(&portal, &headers, &form.csrf) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    if !session.caller.role.allows(Role::Operator) {
        return forbidden(&portal, &session, &p).await;
    }
    if let Err(e) = portal.svc.check_backup_allowed(&p.vault, &p.instance).await {
        return render(
            &portal,
            &session,
            &p,
            Some((e.code.as_str().into(), e.message)),
            StatusCode::CONFLICT,
        )
        .await;
    }
    // The backup runs on as its job; the operation's page follows it to the job's.
    let (svc, vault, instance, rule) = (
        portal.svc.clone(),
        p.vault.clone(),
        p.instance.clone(),
        form.rule,
    );
    let id = portal.ops.start(
        &portal.svc,
        &session.caller.name,
        crate::operations::Ends::WhenJobStarts,
        async move {
            let (job, _) = svc.adhoc_backup(&vault, &instance, &rule, None).await?;
            Ok(Some(crate::operations::job_info(&job.id.to_string())))
        },
    );
    Redirect::to(&format!("/operations/{id}")).into_response()
}

#[derive(Debug, Deserialize)]
pub struct Protection {
    csrf: String,
    state: String,
}

pub async fn protection(
    State(portal): State<Arc<Portal>>,
    headers: HeaderMap,
    Path(p): Path<InstancePath>,
    Form(form): Form<Protection>,
) -> Response {
    let session = match signed_in_post(&portal, &headers, &form.csrf) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let needed = match form.state.as_str() {
        PROTECTION_STOPPED => Role::Contributor,
        BACKUPS_SUSPENDED | PROTECTION_CONFIGURED => Role::Operator,
        other => {
            return render(
                &portal,
                &session,
                &p,
                Some((
                    "UserErrorInvalidInput".into(),
                    format!("`{other}` is not a protection state"),
                )),
                StatusCode::BAD_REQUEST,
            )
            .await;
        }
    };
    if !session.caller.role.allows(needed) {
        return forbidden(&portal, &session, &p).await;
    }
    let who = OnBehalf {
        initiator: format!("api-token:{}", session.caller.name),
        job_id: JobId::new(),
    };
    let result = on_behalf(
        who,
        portal
            .svc
            .set_protection_state(&p.vault, &p.instance, &form.state),
    )
    .await;
    match result {
        Ok(_) => Redirect::to(&format!(
            "/vaults/{}/instances/{}",
            seg(&p.vault),
            seg(&p.instance)
        ))
        .into_response(),
        Err(e) => {
            render(
                &portal,
                &session,
                &p,
                Some((e.code.as_str().into(), e.message)),
                StatusCode::BAD_REQUEST,
            )
            .await
        }
    }
}

async fn forbidden(portal: &Portal, session: &Session, p: &InstancePath) -> Response {
    let message = format!(
        "The token '{}' with role '{}' may not do this; it needs a stronger role.",
        session.caller.name, session.caller.role
    );
    render(
        portal,
        session,
        p,
        Some(("AuthorizationFailed".into(), message)),
        StatusCode::FORBIDDEN,
    )
    .await
}
