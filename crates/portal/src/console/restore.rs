//! The restore wizard: a recovery point of an instance, restored to a new database on any
//! server, or as files into a folder; all of it or some tables and schemas; with the owners
//! kept or given to the restoring user. The restore runs as a job; the page follows it.

use std::sync::Arc;

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use pgvault_host::access::Role;
use pgvault_host::api::{initialize_for_data_recovery, initialize_for_data_recovery_as_files};
use pgvault_model::restore::RestoreOptions;

use super::session::Session;
use super::{InstancePath, SignedIn, frame, problem, seg, signed_in_post};
use crate::Portal;
use crate::operations::{Ends, job_info};

#[derive(Debug, Deserialize, Default, Clone)]
pub struct Choice {
    #[serde(default)]
    point: String,
}

#[derive(Debug, Deserialize, Default, Clone)]
pub struct RestoreForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    point: String,
    /// `database` or `files`.
    #[serde(default)]
    target: String,
    #[serde(default)]
    server: String,
    #[serde(default)]
    database: String,
    #[serde(default)]
    secret: String,
    #[serde(default)]
    directory: String,
    #[serde(default)]
    tables: String,
    #[serde(default)]
    schemas: String,
    #[serde(default)]
    keep_owners: Option<String>,
}

pub async fn show(
    State(portal): State<Arc<Portal>>,
    SignedIn(session): SignedIn,
    Path(p): Path<InstancePath>,
    Query(c): Query<Choice>,
) -> Response {
    let form = RestoreForm {
        point: c.point,
        target: "database".into(),
        ..RestoreForm::default()
    };
    render(&portal, &session, &p, &form, None, StatusCode::OK).await
}

async fn render(
    portal: &Portal,
    session: &Session,
    p: &InstancePath,
    f: &RestoreForm,
    refused: Option<(String, String)>,
    status: StatusCode,
) -> Response {
    // The point chosen on the instance's page (reading one manifest, not thousands).
    let points = match portal
        .svc
        .recovery_point_json(&p.vault, &p.instance, &f.point)
        .await
    {
        Ok(point) => vec![point],
        Err(e) => return super::error_page(session, e),
    };
    let action = format!(
        "/vaults/{}/instances/{}/restore",
        seg(&p.vault),
        seg(&p.instance)
    );
    let content = html! {
        @if let Some((code, message)) = &refused { (problem(code, message)) }
        form.card.wide method="post" action=(action) {
            input type="hidden" name="csrf" value=(session.csrf);
            label for="point" { "Recovery point" }
            select #point name="point" required {
                @for rp in &points {
                    @let id = rp["name"].as_str().unwrap_or_default();
                    option value=(id) selected[id == f.point] {
                        (rp["properties"]["recoveryPointTime"].as_str().unwrap_or_default())
                        " · " (rp["properties"]["retentionTagName"].as_str().unwrap_or_default())
                        " · " (id)
                    }
                }
            }
            fieldset {
                legend { "Restore to" }
                label { input type="radio" name="target" value="database" checked[f.target != "files"]; " a new database" }
                label { input type="radio" name="target" value="files" checked[f.target == "files"]; " files in a folder" }
            }
            fieldset {
                legend { "A new database" }
                label for="server" { "Server" }
                input #server name="server" value=(f.server) placeholder="postgres://db2.example:5432";
                label for="database" { "New database name" }
                input #database name="database" value=(f.database);
                label for="secret" { "Secret reference of a login that may create databases" }
                input #secret name="secret" value=(f.secret) placeholder="file:///etc/pgvault/db2.secret";
            }
            fieldset {
                legend { "Files" }
                label for="directory" { "Folder" }
                input #directory name="directory" value=(f.directory) placeholder="/srv/restores";
            }
            fieldset {
                legend { "What" }
                label for="tables" { "Only these tables (comma-separated, schema.table)" }
                input #tables name="tables" value=(f.tables);
                label for="schemas" { "Only these schemas (comma-separated)" }
                input #schemas name="schemas" value=(f.schemas);
                label { input type="checkbox" name="keep_owners" value="on" checked[f.keep_owners.is_some()]; " Keep the objects' owners where the roles exist" }
            }
            button type="submit" { "Restore" }
        }
    };
    (
        status,
        Html(frame(&format!("Restore {}", p.instance), Some(session), content).into_string()),
    )
        .into_response()
}

fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

pub async fn submit(
    State(portal): State<Arc<Portal>>,
    headers: HeaderMap,
    Path(p): Path<InstancePath>,
    Form(f): Form<RestoreForm>,
) -> Response {
    let session = match signed_in_post(&portal, &headers, &f.csrf) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    if !session.caller.role.allows(Role::Operator) {
        let message = format!(
            "The token '{}' ({}) may not restore; it needs the Operator role.",
            session.caller.name, session.caller.role
        );
        return render(
            &portal,
            &session,
            &p,
            &f,
            Some(("AuthorizationFailed".into(), message)),
            StatusCode::FORBIDDEN,
        )
        .await;
    }
    let request = if f.target == "files" {
        initialize_for_data_recovery_as_files(&f.point, f.directory.trim(), &p.instance, None)
    } else {
        let url = format!(
            "{}/{}",
            f.server.trim().trim_end_matches('/'),
            f.database.trim()
        );
        initialize_for_data_recovery(&f.point, &url, None, f.secret.trim(), None)
    };
    let mut request = match request {
        Ok(r) => r,
        Err(e) => {
            return render(
                &portal,
                &session,
                &p,
                &f,
                Some((e.code.as_str().into(), e.message)),
                StatusCode::BAD_REQUEST,
            )
            .await;
        }
    };
    request.pgvault_restore_options = RestoreOptions {
        tables: list(&f.tables),
        schemas: list(&f.schemas),
        keep_owners: f.keep_owners.is_some(),
        ..RestoreOptions::default()
    };
    // The checks that need no writing first, so a mistake shows on this page.
    if let Err(e) = portal
        .svc
        .validate_restore(&p.vault, &p.instance, &request)
        .await
    {
        return render(
            &portal,
            &session,
            &p,
            &f,
            Some((e.code.as_str().into(), e.message)),
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    let (svc, vault, instance) = (portal.svc.clone(), p.vault.clone(), p.instance.clone());
    let id = portal.ops.start(
        &portal.svc,
        &session.caller.name,
        Ends::WhenJobStarts,
        async move {
            let (job, _) = svc.restore(&vault, &instance, &request).await?;
            Ok(Some(job_info(&job.id.to_string())))
        },
    );
    Redirect::to(&format!("/operations/{id}")).into_response()
}
