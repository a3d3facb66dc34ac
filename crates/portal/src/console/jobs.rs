//! Jobs: the list with its filters (vault, instance, operation, status, time), and one job
//! with its sub-tasks, bytes, durations, error and tool output. A running job's page reloads
//! itself every few seconds, so its progress shows live without JavaScript.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};
use maud::{Markup, PreEscaped, html};
use serde::Deserialize;

use pgvault_model::human;
use pgvault_model::job::{Job, JobFilter, JobStatus, Operation};

use super::{SignedIn, frame, problem, seg, status_badge};
use crate::Portal;

/// Jobs a list page shows.
const PAGE: usize = 100;

/// A table of jobs, newest first.
pub(crate) fn table(jobs: &[&Job], now: DateTime<Utc>) -> Markup {
    html! {
        @if jobs.is_empty() {
            p.quiet { "No jobs." }
        } @else {
            table {
                thead { tr {
                    th scope="col" { "Operation" } th scope="col" { "Vault" } th scope="col" { "Instance" }
                    th scope="col" { "Status" } th scope="col" { "Started" } th scope="col" { "Duration" }
                    th scope="col" { "Read / stored" }
                } }
                tbody {
                    @for j in jobs {
                        tr {
                            td { a href={"/jobs/" (j.id)} { (j.operation.as_str()) } }
                            td { (j.vault_name) }
                            td { @if let Some(i) = &j.backup_instance_name {
                                a href={"/vaults/" (seg(&j.vault_name)) "/instances/" (seg(i))} { (i) }
                            } }
                            td { (status_badge(j.state.status().as_str())) }
                            td { time datetime=(j.state.start().to_rfc3339()) { (human::time(j.state.start())) } }
                            td.num { (human::duration(j.state.end().unwrap_or(now) - j.state.start())) }
                            td.num { (human::size(j.bytes_read)) " / " (human::size(j.bytes_stored)) }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct Filter {
    #[serde(default)]
    vault: String,
    #[serde(default)]
    instance: String,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    status: String,
    /// How far back: `P1D`, `P7D`, `P30D`; empty for all.
    #[serde(default)]
    since: String,
    #[serde(default)]
    page: usize,
}

pub async fn list(
    State(portal): State<Arc<Portal>>,
    SignedIn(session): SignedIn,
    Query(f): Query<Filter>,
) -> Response {
    let now = portal.svc.now();
    let mut filter = JobFilter::default().limit(PAGE + 1).offset(f.page * PAGE);
    let mut problems = Vec::new();
    if !f.vault.trim().is_empty() {
        filter = filter.vault(f.vault.trim());
    }
    if !f.instance.trim().is_empty() {
        filter = filter.instance(f.instance.trim());
    }
    if !f.operation.is_empty() {
        match Operation::ALL.iter().find(|o| o.as_str() == f.operation) {
            Some(o) => filter = filter.operation(*o),
            None => problems.push(format!("`{}` is not an operation", f.operation)),
        }
    }
    if !f.status.is_empty() {
        match JobStatus::ALL.iter().find(|s| s.as_str() == f.status) {
            Some(s) => filter = filter.status(*s),
            None => problems.push(format!("`{}` is not a status", f.status)),
        }
    }
    match f.since.as_str() {
        "" => {}
        "P1D" => filter.started_after = Some(now - TimeDelta::days(1)),
        "P7D" => filter.started_after = Some(now - TimeDelta::days(7)),
        "P30D" => filter.started_after = Some(now - TimeDelta::days(30)),
        other => problems.push(format!("`{other}` is not a time range")),
    }
    let jobs = match portal.svc.jobs(&filter) {
        Ok(j) => j,
        Err(e) => return super::error_page(&session, e),
    };
    let more = jobs.len() > PAGE;
    let shown: Vec<&Job> = jobs.iter().take(PAGE).collect();
    let link = |page: usize| {
        let q = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("vault", &f.vault)
            .append_pair("instance", &f.instance)
            .append_pair("operation", &f.operation)
            .append_pair("status", &f.status)
            .append_pair("since", &f.since)
            .append_pair("page", &page.to_string())
            .finish();
        format!("/jobs?{q}")
    };
    let content = html! {
        @for p in &problems { (problem("UserErrorInvalidInput", p)) }
        form.filters method="get" action="/jobs" {
            label { "Vault " input name="vault" value=(f.vault); }
            label { "Instance " input name="instance" value=(f.instance); }
            label { "Operation "
                select name="operation" {
                    option value="" { "Any" }
                    @for o in Operation::ALL { option value=(o.as_str()) selected[f.operation == o.as_str()] { (o.as_str()) } }
                }
            }
            label { "Status "
                select name="status" {
                    option value="" { "Any" }
                    @for s in JobStatus::ALL { option value=(s.as_str()) selected[f.status == s.as_str()] { (s.as_str()) } }
                }
            }
            label { "Started "
                select name="since" {
                    option value="" selected[f.since.is_empty()] { "Any time" }
                    option value="P1D" selected[f.since == "P1D"] { "Last 24 hours" }
                    option value="P7D" selected[f.since == "P7D"] { "Last 7 days" }
                    option value="P30D" selected[f.since == "P30D"] { "Last 30 days" }
                }
            }
            button type="submit" { "Filter" }
        }
        (table(&shown, now))
        nav.pager aria-label="Pages" {
            @if f.page > 0 { a href=(link(f.page - 1)) { "Newer" } }
            @if more { a href=(link(f.page + 1)) { "Older" } }
        }
    };
    Html(frame("Jobs", Some(&session), content).into_string()).into_response()
}

pub async fn show(
    State(portal): State<Arc<Portal>>,
    SignedIn(session): SignedIn,
    Path(id): Path<String>,
) -> Response {
    let job = match portal.svc.job(&id) {
        Ok(j) => j,
        Err(e) => return super::error_page(&session, e),
    };
    let now = portal.svc.now();
    let running = job.state.status() == JobStatus::InProgress;
    let content = html! {
        @if running {
            // Live progress without JavaScript: the page reloads while the job runs.
            (PreEscaped("<meta http-equiv=\"refresh\" content=\"3\">"))
        }
        dl.facts {
            dt { "Operation" } dd { (job.operation.as_str()) }
            dt { "Status" } dd { (status_badge(job.state.status().as_str())) }
            dt { "Vault" } dd { (job.vault_name) }
            @if let Some(i) = &job.backup_instance_name {
                dt { "Backup instance" } dd { a href={"/vaults/" (seg(&job.vault_name)) "/instances/" (seg(i))} { (i) } }
            }
            @if let Some(d) = &job.datasource_name { dt { "Database" } dd { (d) } }
            dt { "Started" } dd { (human::time(job.state.start())) }
            @if let Some(end) = job.state.end() { dt { "Ended" } dd { (human::time(end)) } }
            dt { "Duration" } dd { (human::duration(job.state.end().unwrap_or(now) - job.state.start())) }
            dt { "Read" } dd { (human::size(job.bytes_read)) }
            dt { "Stored" } dd { (human::size(job.bytes_stored)) }
            @if let Some(rp) = &job.recovery_point_id { dt { "Recovery point" } dd { code { (rp) } } }
            @if let Some(rule) = &job.policy_rule_name { dt { "Rule" } dd { (rule) } }
            @if let Some(tag) = &job.retention_tag { dt { "Retention tag" } dd { (tag) } }
            @for (k, v) in &job.extended_details { dt { (k) } dd { (v) } }
        }
        @if let Some(e) = job.state.error() {
            h2 { "Error" }
            (problem(e.code.as_str(), &e.message))
            p.quiet { (e.code.guidance()) }
        }
        h2 { "Sub-tasks" }
        @if job.tasks.is_empty() { p.quiet { "None recorded." } } @else {
            table {
                thead { tr { th scope="col" { "Step" } th scope="col" { "Status" } th scope="col" { "Duration" } th scope="col" { "Detail" } } }
                tbody {
                    @for t in &job.tasks {
                        tr {
                            td { (t.name) }
                            td { (status_badge(t.status().as_str())) }
                            td.num { (human::duration(t.state.end().unwrap_or(now) - t.state.start())) }
                            td { pre.detail { (t.detail.as_deref().unwrap_or("")) } }
                        }
                    }
                }
            }
        }
        @if let Some(out) = &job.script_output {
            h2 { "Output" }
            pre.output { (out) }
        }
    };
    Html(frame(&format!("Job {}", job.id), Some(&session), content).into_string()).into_response()
}

/// An operation the console started (a Backup Now): while it starts, a page that reloads
/// itself; once its job is recorded, that job's page; if it was refused, why.
pub async fn operation(
    State(portal): State<Arc<Portal>>,
    SignedIn(session): SignedIn,
    Path(id): Path<String>,
) -> Response {
    match portal.ops.status(&portal.svc, &id) {
        None => super::error_page(
            &session,
            pgvault_host::api::Error::new(
                pgvault_model::code::ErrorCode::ResourceNotFound,
                format!("no operation `{id}` is known"),
            ),
        ),
        Some((crate::operations::Status::Failed(e), _, _)) => (
            e.status,
            Html(
                frame(
                    "The operation was refused",
                    Some(&session),
                    problem(e.code.as_str(), &e.message),
                )
                .into_string(),
            ),
        )
            .into_response(),
        Some((crate::operations::Status::InProgress, _, _)) => Html(
            frame(
                "Starting…",
                Some(&session),
                html! {
                    (PreEscaped("<meta http-equiv=\"refresh\" content=\"1\">"))
                    p { "The operation is starting; this page follows it to its job." }
                },
            )
            .into_string(),
        )
        .into_response(),
        Some((crate::operations::Status::Succeeded(_), _, _)) => {
            axum::response::Redirect::to(&format!("/jobs/{id}")).into_response()
        }
    }
}
