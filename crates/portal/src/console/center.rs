//! The backup center: every vault and instance at a glance, as the portal's dashboard shows
//! them: protection state, the last backup with its status and age (one overdue for its
//! schedule stands out), failures of the last 24 hours and 7 days, recovery points per tier,
//! and the jobs of the past 7 days.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};
use maud::{Markup, html};

use pgvault_model::human;
use pgvault_model::job::{Job, JobFilter, JobStatus, Operation};

use super::{SignedIn, frame, seg, status_badge};
use crate::Portal;

/// How many of the week's jobs the page lists (the jobs page has the rest).
const RECENT_JOBS: usize = 50;

/// One row of the instances table.
struct Row {
    vault: String,
    instance: String,
    database: String,
    state: String,
    policy: String,
    last_backup: Option<Job>,
    overdue: bool,
    failures_24h: u64,
    failures_7d: u64,
    vault_points: usize,
    archive_points: usize,
}

/// Whether an instance whose last completed backup was at `last` (or never) is overdue at
/// `now` under a schedule that backs up every `every`: more than one interval and an hour of
/// grace without a completed backup.
pub(crate) fn is_overdue(
    last: Option<DateTime<Utc>>,
    protected_since: DateTime<Utc>,
    every: Option<TimeDelta>,
    now: DateTime<Utc>,
) -> bool {
    let Some(every) = every else {
        return false;
    };
    let since = last.unwrap_or(protected_since);
    now - since > every + TimeDelta::hours(1)
}

/// The backup interval of a policy's schedule (`R/2025-01-01T22:00:00+00:00/P1W` gives one
/// week): the shortest period of its repeating intervals.
fn schedule_interval(policy: &serde_json::Value) -> Option<TimeDelta> {
    let rules = policy["properties"]["policyRules"].as_array()?;
    rules
        .iter()
        .filter_map(|r| r["trigger"]["schedule"]["repeatingTimeIntervals"].as_array())
        .flatten()
        .filter_map(|i| i.as_str()?.rsplit('/').next())
        .filter_map(|p| p.parse::<pgvault_model::duration::IsoDuration>().ok())
        .map(|d| {
            let start = DateTime::<Utc>::UNIX_EPOCH;
            d.add_to(start) - start
        })
        .min()
}

pub async fn show(State(portal): State<Arc<Portal>>, SignedIn(session): SignedIn) -> Response {
    let svc = &portal.svc;
    let now = svc.now();
    // Counts from the history's own aggregation, and only the newest jobs as rows: a host
    // with a hundred thousand jobs renders this page as fast as one with ten.
    let counts = |since: TimeDelta, status: Option<JobStatus>| {
        svc.job_summary(&JobFilter {
            started_after: Some(now - since),
            status,
            ..JobFilter::default()
        })
    };
    let (failed_day, failed_week, week_rows) = match (
        counts(TimeDelta::hours(24), Some(JobStatus::Failed)),
        counts(TimeDelta::days(7), Some(JobStatus::Failed)),
        counts(TimeDelta::days(7), None),
    ) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return super::error_page(&session, e);
        }
    };
    let week_total: u64 = week_rows.iter().map(|r| r.counts.total()).sum();
    let running: u64 = week_rows
        .iter()
        .map(|r| r.counts.get(JobStatus::InProgress))
        .sum();
    let recent = svc
        .jobs(&JobFilter {
            started_after: Some(now - TimeDelta::days(7)),
            limit: Some(RECENT_JOBS),
            ..JobFilter::default()
        })
        .unwrap_or_default();
    let failures_of =
        |rows: &[pgvault_model::job::JobSummaryRow], vault: &str, instance: &str| -> u64 {
            rows.iter()
                .filter(|r| {
                    r.vault_name
                        .as_deref()
                        .is_some_and(|v| v.eq_ignore_ascii_case(vault))
                        && r.backup_instance_name
                            .as_deref()
                            .is_some_and(|i| i.eq_ignore_ascii_case(instance))
                })
                .map(|r| r.counts.get(JobStatus::Failed))
                .sum()
        };
    let vaults = match svc.vaults_json(None).await {
        Ok(v) => v,
        Err(e) => return super::error_page(&session, e),
    };
    let mut vault_rows = Vec::new();
    for vault in &vaults {
        let name = vault["name"].as_str().unwrap_or_default().to_owned();
        let group = crate::api::group_of(vault).unwrap_or_default().to_owned();
        let stored = svc.vault_stored_bytes(&name).await.ok();
        vault_rows.push((name, group, stored, security_summary(vault)));
    }
    let mut rows = Vec::new();
    for vault in &vaults {
        let vault_name = vault["name"].as_str().unwrap_or_default().to_owned();
        let Ok((instances, _)) = svc.instances_json(&vault_name).await else {
            continue;
        };
        let (policies, _) = svc.policies_json(&vault_name).await.unwrap_or_default();
        for inst in instances {
            let name = inst["name"].as_str().unwrap_or_default().to_owned();
            let props = &inst["properties"];
            let policy_name = props["policyInfo"]["policyId"]
                .as_str()
                .map(pgvault_model::resource::last_segment)
                .unwrap_or_default()
                .to_owned();
            let every = policies
                .iter()
                .find(|p| p["name"].as_str() == Some(policy_name.as_str()))
                .and_then(schedule_interval);
            let backups = svc
                .jobs(
                    &JobFilter::default()
                        .vault(&vault_name)
                        .instance(&name)
                        .limit(20),
                )
                .unwrap_or_default();
            let last_backup = backups
                .iter()
                .find(|j| {
                    matches!(
                        j.operation,
                        Operation::OnDemandBackup | Operation::ScheduledBackup
                    )
                })
                .cloned();
            let last_completed = backups
                .iter()
                .filter(|j| {
                    matches!(
                        j.operation,
                        Operation::OnDemandBackup | Operation::ScheduledBackup
                    )
                })
                .find(|j| j.state.status() == JobStatus::Completed)
                .map(|j| j.state.start());
            let configured = backups
                .iter()
                .rev()
                .find(|j| j.operation == Operation::ConfigureBackup)
                .map(|j| j.state.start())
                .unwrap_or(now);
            let state = props["currentProtectionState"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            let (vault_points, archive_points) = svc
                .recovery_point_counts(&vault_name, &name)
                .await
                .unwrap_or_default();
            rows.push(Row {
                database: props["dataSourceInfo"]["resourceName"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                policy: policy_name,
                overdue: state == "ProtectionConfigured"
                    && is_overdue(last_completed, configured, every, now),
                failures_24h: failures_of(&failed_day, &vault_name, &name),
                failures_7d: failures_of(&failed_week, &vault_name, &name),
                vault_points,
                archive_points,
                vault: vault_name.clone(),
                instance: name,
                state,
                last_backup,
            });
        }
    }
    let failed_24h: u64 = failed_day
        .iter()
        .map(|r| r.counts.get(JobStatus::Failed))
        .sum();
    let failed_7d: u64 = failed_week
        .iter()
        .map(|r| r.counts.get(JobStatus::Failed))
        .sum();
    let content = html! {
        section.cards aria-label="Summary" {
            div.card { span.big { (vaults.len()) } " vaults" }
            div.card { span.big { (rows.len()) } " backup instances" }
            div.card.(if running > 0 { "busy" } else { "" }) { span.big { (running) } " jobs running" }
            div.card.(if failed_24h > 0 { "bad" } else { "" }) { span.big { (failed_24h) } " failed in 24 hours" }
            div.card.(if failed_7d > 0 { "bad" } else { "" }) { span.big { (failed_7d) } " failed in 7 days" }
        }
        h2 { "Vaults" }
        table {
            thead { tr {
                th scope="col" { "Vault" } th scope="col" { "Resource group" }
                th scope="col" { "Stored in the vault tier" } th scope="col" { "Stored in the archive tier" }
                th scope="col" { "Security" }
            } }
            tbody {
                @for (name, group, stored, security) in &vault_rows {
                    tr {
                        td { (name) }
                        td { (group) }
                        td.num { (stored.map(|s| human::size(s.0)).unwrap_or_else(|| "unreadable".into())) }
                        td.num { (stored.and_then(|s| s.1).map(human::size).unwrap_or_else(|| "no archive tier".into())) }
                        td { (security) }
                    }
                }
            }
        }
        h2 { "Backup instances" }
        @if rows.is_empty() {
            p { "No database is protected yet. Protect one with " code { "pgvault backup-instance create" } " or the REST API." }
        } @else {
            table {
                thead { tr {
                    th scope="col" { "Instance" } th scope="col" { "Vault" } th scope="col" { "Database" }
                    th scope="col" { "Protection" } th scope="col" { "Last backup" }
                    th scope="col" { "Failures 24 h / 7 d" } th scope="col" { "Recovery points (vault / archive)" }
                    th scope="col" { "Policy" }
                } }
                tbody {
                    @for r in &rows {
                        tr.(if r.overdue { "overdue" } else { "" }) {
                            td { a href={"/vaults/" (seg(&r.vault)) "/instances/" (seg(&r.instance))} { (r.instance) } }
                            td { (r.vault) }
                            td { (r.database) }
                            td { (status_badge(&r.state)) }
                            td { (last_backup(r.last_backup.as_ref(), r.overdue, now)) }
                            td.num { (r.failures_24h) " / " (r.failures_7d) }
                            td.num { (r.vault_points) " / " (r.archive_points) }
                            td { (r.policy) }
                        }
                    }
                }
            }
        }
        h2 { "Jobs of the past 7 days" }
        (super::jobs::table(&recent.iter().collect::<Vec<_>>(), now))
        @if week_total > recent.len() as u64 { p { a href="/jobs?since=P7D" { "All " (week_total) " jobs of the week" } } }
    };
    Html(page_markup(&session, content).into_string()).into_response()
}

fn page_markup(session: &super::session::Session, content: Markup) -> Markup {
    frame("Backup center", Some(session), content)
}

fn last_backup(job: Option<&Job>, overdue: bool, now: DateTime<Utc>) -> Markup {
    html! {
        @match job {
            Some(j) => {
                (status_badge(j.state.status().as_str()))
                " " a href={"/jobs/" (j.id)} { (human::duration(now - j.state.start())) " ago" }
            }
            None => span.quiet { "never" },
        }
        @if overdue { " " span.badge.bad title="No completed backup within the schedule's interval" { "Overdue" } }
    }
}

/// A vault's protections in a line: client-side encryption, soft delete with its days,
/// immutability; from its `securitySettings` as the API shows them.
fn security_summary(vault: &serde_json::Value) -> String {
    let settings = &vault["properties"]["securitySettings"];
    let encryption = if settings["encryptionSettings"]["state"] == "Enabled" {
        "encrypted"
    } else {
        "not encrypted"
    };
    let soft = &settings["softDeleteSettings"];
    let soft_delete = match soft["state"].as_str() {
        Some(state @ ("On" | "AlwaysOn")) => format!(
            "soft delete {state} ({} days)",
            soft["retentionDurationInDays"].as_f64().unwrap_or_default()
        ),
        _ => "soft delete Off".to_owned(),
    };
    let immutability = match settings["immutabilitySettings"]["state"].as_str() {
        Some(state @ ("Unlocked" | "Locked")) => format!("immutable ({state})"),
        _ => "not immutable".to_owned(),
    };
    format!("{encryption}; {soft_delete}; {immutability}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vaults_security_is_summed_up_in_a_line() {
        let vault = serde_json::json!({"properties": {"securitySettings": {
            "encryptionSettings": {"state": "Enabled"},
            "softDeleteSettings": {"state": "AlwaysOn", "retentionDurationInDays": 30.0},
            "immutabilitySettings": {"state": "Locked"}}}});
        assert_eq!(
            security_summary(&vault),
            "encrypted; soft delete AlwaysOn (30 days); immutable (Locked)"
        );
        assert_eq!(
            security_summary(&serde_json::json!({})),
            "not encrypted; soft delete Off; not immutable"
        );
    }

    #[test]
    fn a_backup_is_overdue_after_one_interval_and_an_hour() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let day = Some(TimeDelta::days(1));
        let since = t("2026-01-01T00:00:00Z");
        assert!(!is_overdue(
            Some(since),
            since,
            day,
            t("2026-01-02T00:59:00Z")
        ));
        assert!(is_overdue(
            Some(since),
            since,
            day,
            t("2026-01-02T01:01:00Z")
        ));
        assert!(
            is_overdue(None, since, day, t("2026-01-03T00:00:00Z")),
            "never backed up"
        );
        assert!(
            !is_overdue(None, since, None, t("2030-01-01T00:00:00Z")),
            "no schedule"
        );
    }

    #[test]
    fn the_interval_is_the_schedules_shortest_period() {
        let policy = serde_json::json!({"properties": {"policyRules": [
            {"trigger": {"schedule": {"repeatingTimeIntervals": ["R/2025-01-01T22:00:00+00:00/P1W", "R/2025-01-01T22:00:00+00:00/P1D"]}}},
            {"lifecycles": []}
        ]}});
        assert_eq!(schedule_interval(&policy), Some(TimeDelta::days(1)));
        assert_eq!(schedule_interval(&serde_json::json!({})), None);
    }
}
