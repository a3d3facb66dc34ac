//! Prometheus metrics: what `GET /metrics` on `pgvault serve --listen` answers, in the text
//! exposition format (version 0.0.4), so existing dashboards and alert rules (for example
//! `time() - pgvault_last_successful_backup_timestamp_seconds > 86400`) work unchanged.
//!
//! Per backup instance (labels `vault`, `instance`): the time, duration and bytes of its last
//! successful backup (from the job history), the age of its newest recovery point (from the
//! vault), and its jobs counted by operation and status (the history's, so the counts fall
//! when old jobs are pruned: a gauge, not a counter). Per host: the open alerts by kind and
//! whether each alert destination is failing.
//!
//! Hand-written: the format is a few lines of text, and a client library would bring a
//! registry this module does not need. A vault that cannot be read is left out with a log
//! line, so one bad vault does not blank the dashboard.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use pgvault_core::engine::Result;
use pgvault_core::model::job::{Job, JobFilter, JobStatus, Operation};

use crate::alerts::Condition;
use crate::service::Pgvault;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One sample: labels and value.
type Samples = Vec<(Vec<(&'static str, String)>, f64)>;

/// Job counts per (vault, instance), per (operation, status).
type JobCounts = BTreeMap<(String, String), BTreeMap<(String, String), u64>>;

/// The metric families, in the order they are printed.
#[derive(Default)]
struct Families(BTreeMap<&'static str, (&'static str, Samples)>);

impl Families {
    fn add(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: Vec<(&'static str, String)>,
        value: f64,
    ) {
        self.0
            .entry(name)
            .or_insert_with(|| (help, Vec::new()))
            .1
            .push((labels, value));
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for (name, (help, samples)) in &self.0 {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            for (labels, value) in samples {
                let labels = labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                    .collect::<Vec<_>>()
                    .join(",");
                if labels.is_empty() {
                    let _ = writeln!(out, "{name} {}", number(*value));
                } else {
                    let _ = writeln!(out, "{name}{{{labels}}} {}", number(*value));
                }
            }
        }
        out
    }
}

/// A label value as the format wants it: backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp() as f64 + f64::from(t.timestamp_subsec_millis()) / 1000.0
}

impl Pgvault {
    /// The metrics at `now`, in Prometheus's text format.
    pub async fn metrics(&self, now: DateTime<Utc>) -> Result<String> {
        let mut m = Families::default();
        let counts = self.job_counts()?;
        for vault_name in self.vault_names()? {
            let vault = match self.vault(&vault_name).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(vault = %vault_name, error = %e, "metrics: the vault cannot be opened; left out");
                    continue;
                }
            };
            let instances = match vault.list_instances().await {
                Ok(i) => i,
                Err(e) => {
                    tracing::warn!(vault = %vault_name, error = %e, "metrics: the vault's instances cannot be read; left out");
                    continue;
                }
            };
            for instance in instances {
                let labels = || {
                    vec![
                        ("vault", vault.name().to_owned()),
                        ("instance", instance.name.clone()),
                    ]
                };
                if let Some(job) = self.last_successful_backup(vault.name(), &instance.name)? {
                    if let Some(end) = job.state.end() {
                        m.add(
                            "pgvault_last_successful_backup_timestamp_seconds",
                            "When the instance's last successful backup ended (Unix time).",
                            labels(),
                            seconds(end),
                        );
                    }
                    if let Some(d) = job.duration() {
                        m.add(
                            "pgvault_last_successful_backup_duration_seconds",
                            "How long the instance's last successful backup took.",
                            labels(),
                            d.num_milliseconds() as f64 / 1000.0,
                        );
                    }
                    m.add(
                        "pgvault_last_successful_backup_read_bytes",
                        "Bytes the instance's last successful backup read from PostgreSQL.",
                        labels(),
                        job.bytes_read as f64,
                    );
                    m.add(
                        "pgvault_last_successful_backup_stored_bytes",
                        "Bytes the instance's last successful backup newly stored in the vault.",
                        labels(),
                        job.bytes_stored as f64,
                    );
                }
                match vault.latest_recovery_point(&instance.name).await {
                    Ok(Some(point)) => {
                        let at = point.recovery_point_time;
                        m.add(
                            "pgvault_newest_recovery_point_timestamp_seconds",
                            "The time of the instance's newest recovery point in the vault tier (Unix time).",
                            labels(),
                            seconds(at),
                        );
                        m.add(
                            "pgvault_newest_recovery_point_age_seconds",
                            "How old the instance's newest recovery point in the vault tier is.",
                            labels(),
                            (now - at).num_milliseconds().max(0) as f64 / 1000.0,
                        );
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(vault = %vault_name, instance = %instance.name, error = %e, "metrics: the newest recovery point cannot be read")
                    }
                }
                for ((operation, status), count) in counts
                    .get(&(vault.name().to_lowercase(), instance.name.to_lowercase()))
                    .into_iter()
                    .flatten()
                {
                    let mut l = labels();
                    l.push(("operation", operation.clone()));
                    l.push(("status", status.clone()));
                    m.add(
                        "pgvault_jobs",
                        "Jobs of the instance in the job history, by operation and status.",
                        l,
                        *count as f64,
                    );
                }
            }
        }
        let mut open: BTreeMap<&'static str, u64> = BTreeMap::new();
        for alert in self.alerts(true)? {
            if alert.incident.condition == Condition::Fired {
                *open.entry(alert.incident.kind.as_str()).or_default() += 1;
            }
        }
        for (kind, count) in open {
            m.add(
                "pgvault_alerts_fired",
                "Open (fired, not resolved) alerts, by kind.",
                vec![("kind", kind.to_owned())],
                count as f64,
            );
        }
        for destination in self.alert_destinations()? {
            m.add(
                "pgvault_alert_destination_failing",
                "1 while the alert destination's last attempt failed.",
                vec![("destination", destination.name.clone())],
                if destination.failing_since.is_some() {
                    1.0
                } else {
                    0.0
                },
            );
        }
        Ok(m.render())
    }

    /// Jobs counted by (vault, instance) (lower-cased, as names are unique ignoring case),
    /// then (operation, status): one query over the history, however long it is.
    fn job_counts(&self) -> Result<JobCounts> {
        let conn = self.history().conn();
        let count = || -> rusqlite::Result<JobCounts> {
            let mut stmt = conn.prepare(
                "SELECT lower(vault_name), lower(backup_instance_name), operation, status, COUNT(*) \
                 FROM jobs WHERE vault_name IS NOT NULL AND backup_instance_name IS NOT NULL \
                 GROUP BY 1, 2, 3, 4",
            )?;
            let mut out = JobCounts::new();
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })?;
            for row in rows {
                let (vault, instance, operation, status, n) = row?;
                out.entry((vault, instance))
                    .or_default()
                    .insert((operation, status), n.max(0) as u64);
            }
            Ok(out)
        };
        count().map_err(|e| crate::service::history_err(e.into()))
    }

    /// The instance's latest completed backup (on demand or scheduled).
    fn last_successful_backup(&self, vault: &str, instance: &str) -> Result<Option<Job>> {
        let mut best: Option<Job> = None;
        for operation in [Operation::OnDemandBackup, Operation::ScheduledBackup] {
            let mut filter = JobFilter::default()
                .vault(vault)
                .instance(instance)
                .operation(operation)
                .status(JobStatus::Completed);
            filter.limit = Some(1);
            if let Some(job) = self.jobs(&filter)?.into_iter().next()
                && best
                    .as_ref()
                    .is_none_or(|b| job.state.start() > b.state.start())
            {
                best = Some(job);
            }
        }
        Ok(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_families_typed() {
        let mut m = Families::default();
        m.add(
            "pgvault_jobs",
            "Jobs.",
            vec![("vault", "a\"b\\c\nd".to_owned())],
            3.0,
        );
        m.add("pgvault_x", "X.", vec![], 1.5);
        assert_eq!(
            m.render(),
            "# HELP pgvault_jobs Jobs.\n# TYPE pgvault_jobs gauge\npgvault_jobs{vault=\"a\\\"b\\\\c\\nd\"} 3\n\
             # HELP pgvault_x X.\n# TYPE pgvault_x gauge\npgvault_x 1.5\n"
        );
    }
}
