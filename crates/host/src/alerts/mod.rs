//! Alerts that wake someone: incidents, their notices, and where the notices go.
//!
//! What raises an alert, as Azure Backup's built-in alerts do: a failed backup, restore or
//! drill (raised by the job lifecycle itself, `job_run`, when such a job ends `Failed`, so no
//! operation can forget it), a backup overdue (the agenda, [`crate::agenda`], finds an
//! instance with no successful backup since its schedule's last occurrence plus a grace),
//! damage found by `verify` or `check`, a destructive operation on recovery points (a user's
//! deletion of a point or of an instance with its data), and security settings weakened
//! ([`raise`] is public for the vault settings that do so).
//!
//! **One alert per incident.** Failures of the same kind on the same instance are grouped
//! into the open incident with a count (five failed nightly backups are one incident of
//! count 5, notified once), as Azure Monitor deduplicates alerts of one rule on one
//! resource; the next success (a backup for failures and overdue backups, a restore, a
//! drill, a clean check) resolves the incident and sends a resolution notice. Security events
//! (deletions, weakened settings) are never grouped: each is its own incident, notified,
//! closed by nobody but the reader.
//!
//! **Delivery** (`send.rs`): each notice (`Fired`, `Resolved`) is queued for every
//! destination that covers the incident's vault, in the same transaction that records the
//! incident, so a notice is never lost between the two. Whoever delivers (the `serve` loop at
//! its wake-ups, `tick`, and every CLI command once it is done) claims due notices, sends them
//! (a webhook in Azure Monitor's common alert schema, `schema.rs`; an email over SMTP; a Rhai
//! hook run with the alert as a map), and records the attempt: delivered, or retried with
//! exponential backoff ([`backoff`]) until [`MAX_ATTEMPTS`], then `Failed`. A destination
//! that fails shows it (`failing_since`, `last_error`) in `alert destination list` and a log
//! line at each failed attempt.
//!
//! **Why destinations live in SQLite, not a config file:** a destination has state (its last
//! success, since when it fails) written by whichever process delivers, and its notices are
//! queued in the same transaction as the incident; one file with transactions keeps the
//! CLI, `serve` and `tick` consistent. A destination holds *references* to its secrets
//! (`env:`, `file:`, Key Vault): they are resolved at each send and never stored or logged.
//!
//! The tables are schema version 5 of the job history (see [`crate::history`]). Nothing here
//! reads the clock: every time is the caller's.

mod schema;
mod send;

pub use schema::common_alert_schema;
pub use send::{Delivered, DeliveryTarget, EmailConfig, SmtpSecurity, deliver_due, send_test};

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::{Connection, OptionalExtension as _, Row, TransactionBehavior, params};

use pgvault_core::engine::{Error, Result};
use pgvault_core::model::code::ErrorCode;
use pgvault_core::model::job::{Job, JobStatus, Operation};
use pgvault_core::model::secret::SecretRef;

use crate::history::{HistoryError, JobHistory, db_time, parse_db_time};
use crate::service::{Pgvault, history_err};

/// How many times a notice is tried before it is recorded `Failed`.
pub const MAX_ATTEMPTS: u32 = 10;
/// How long a process that took a notice to send holds it: another process (a CLI command
/// beside `serve`) leaves it alone meanwhile, and takes it after, had the first died.
pub const CLAIM_FOR: TimeDelta = TimeDelta::minutes(5);

/// The wait before attempt `attempts + 1`, after `attempts` failed: 30 s, doubling, at most
/// an hour (ten attempts span about three hours).
pub fn backoff(attempts: u32) -> TimeDelta {
    let doublings = attempts.saturating_sub(1).min(7);
    (TimeDelta::seconds(30) * 2i32.pow(doublings)).min(TimeDelta::hours(1))
}

/// What an incident is about. The names are stored; never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertKind {
    BackupFailure,
    RestoreFailure,
    DrillFailure,
    BackupOverdue,
    VaultDamage,
    DeleteBackupData,
    SecuritySettingWeakened,
    /// The host cannot open a vault (an encrypted one whose key it lacks, storage gone), so
    /// none of its scheduled backups can run.
    VaultUnavailable,
}

impl AlertKind {
    pub const ALL: [AlertKind; 8] = [
        AlertKind::BackupFailure,
        AlertKind::RestoreFailure,
        AlertKind::DrillFailure,
        AlertKind::BackupOverdue,
        AlertKind::VaultDamage,
        AlertKind::DeleteBackupData,
        AlertKind::SecuritySettingWeakened,
        AlertKind::VaultUnavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::BackupFailure => "BackupFailure",
            AlertKind::RestoreFailure => "RestoreFailure",
            AlertKind::DrillFailure => "DrillFailure",
            AlertKind::BackupOverdue => "BackupOverdue",
            AlertKind::VaultDamage => "VaultDamage",
            AlertKind::DeleteBackupData => "DeleteBackupData",
            AlertKind::SecuritySettingWeakened => "SecuritySettingWeakened",
            AlertKind::VaultUnavailable => "VaultUnavailable",
        }
    }

    /// The alert rule's name, as Azure Backup's built-in alerts name theirs.
    pub fn rule_name(self) -> &'static str {
        match self {
            AlertKind::BackupFailure => "Backup Failure",
            AlertKind::RestoreFailure => "Restore Failure",
            AlertKind::DrillFailure => "Restore Drill Failure",
            AlertKind::BackupOverdue => "Backup Overdue",
            AlertKind::VaultDamage => "Backup Data Damaged",
            AlertKind::DeleteBackupData => "Delete Backup Data",
            AlertKind::SecuritySettingWeakened => "Security Setting Weakened",
            AlertKind::VaultUnavailable => "Vault Unavailable",
        }
    }

    /// Azure Monitor's severity, `Sev0` (critical) to `Sev4`: security events are critical
    /// (as Azure Backup's security alerts are), lost protection is an error, a failed drill
    /// a warning.
    pub fn severity(self) -> &'static str {
        match self {
            AlertKind::DeleteBackupData | AlertKind::SecuritySettingWeakened => "Sev0",
            AlertKind::BackupFailure
            | AlertKind::RestoreFailure
            | AlertKind::BackupOverdue
            | AlertKind::VaultDamage
            | AlertKind::VaultUnavailable => "Sev1",
            AlertKind::DrillFailure => "Sev2",
        }
    }

    /// Whether occurrences are grouped into the open incident (failures), or each is an
    /// incident of its own (security events).
    pub fn grouped(self) -> bool {
        !matches!(
            self,
            AlertKind::DeleteBackupData | AlertKind::SecuritySettingWeakened
        )
    }

    /// Azure Monitor's signal type: what a user did is an activity log entry; the rest comes
    /// from the service's own health signals (logs).
    pub fn signal_type(self) -> &'static str {
        if self.grouped() {
            "Log"
        } else {
            "Activity Log"
        }
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AlertKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        AlertKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("`{s}` is not an alert kind"))
    }
}

/// Azure Monitor's `monitorCondition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Condition {
    Fired,
    Resolved,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Fired => "Fired",
            Condition::Resolved => "Resolved",
        }
    }
    fn parse(s: &str) -> Option<Condition> {
        match s {
            "Fired" => Some(Condition::Fired),
            "Resolved" => Some(Condition::Resolved),
            _ => None,
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One occurrence of something alert-worthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertEvent {
    pub kind: AlertKind,
    pub vault: Option<String>,
    pub instance: Option<String>,
    /// What happened, for a person: no secret (job messages never hold one).
    pub description: String,
    pub job_id: Option<String>,
    pub error_code: Option<String>,
    pub at: DateTime<Utc>,
}

impl AlertEvent {
    pub fn new(kind: AlertKind, description: impl Into<String>, at: DateTime<Utc>) -> Self {
        AlertEvent {
            kind,
            vault: None,
            instance: None,
            description: description.into(),
            job_id: None,
            error_code: None,
            at,
        }
    }

    pub fn on(mut self, vault: &str, instance: Option<&str>) -> Self {
        self.vault = Some(vault.to_owned());
        self.instance = instance.map(str::to_owned);
        self
    }
}

/// An incident as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    pub id: String,
    pub kind: AlertKind,
    pub severity: String,
    pub vault: Option<String>,
    pub instance: Option<String>,
    pub condition: Condition,
    /// Occurrences grouped into it.
    pub count: u32,
    pub fired: DateTime<Utc>,
    pub last: DateTime<Utc>,
    pub resolved: Option<DateTime<Utc>>,
    pub description: String,
    pub job_id: Option<String>,
    pub error_code: Option<String>,
}

/// A notice's delivery state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Pending,
    Delivered,
    /// Every attempt failed (or the destination was removed).
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "Pending",
            DeliveryState::Delivered => "Delivered",
            DeliveryState::Failed => "Failed",
        }
    }
}

/// One notice of an incident to one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub seq: i64,
    pub incident_id: String,
    pub destination: String,
    pub condition: Condition,
    pub state: DeliveryState,
    pub attempts: u32,
    pub created: DateTime<Utc>,
    pub next_attempt: Option<DateTime<Utc>>,
    pub last_attempt: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub delivered: Option<DateTime<Utc>>,
}

/// Where notices go: the target, and whether it covers one vault or the whole host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub name: String,
    /// `None`: every vault of the host.
    pub vault: Option<String>,
    pub target: DeliveryTarget,
    pub created: DateTime<Utc>,
    pub last_success: Option<DateTime<Utc>>,
    /// The first failed attempt since the last success; `None` while it works.
    pub failing_since: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// An incident with its notices, for `alert list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentWithDeliveries {
    pub incident: Incident,
    pub deliveries: Vec<Delivery>,
}

fn alert_err(e: HistoryError) -> Error {
    history_err(e)
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::UserErrorInvalidAlertDestination, message)
}

/// A destination name: 1 to 64 letters, digits, `-`, `_`, `.`.
fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "`{name}` is not a destination name; use 1 to 64 letters, digits, `-`, `_` or `.`"
        )))
    }
}

// ---- recording ----

/// Records `event`: into the open incident of its kind on its vault and instance (count + 1,
/// no new notice) when the kind is grouped and one is open, else as a new incident whose
/// `Fired` notice is queued for every destination that covers its vault. One transaction.
pub fn raise(
    history: &JobHistory,
    event: &AlertEvent,
) -> std::result::Result<Incident, HistoryError> {
    let mut conn = history.conn();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let open = if event.kind.grouped() {
        open_incidents(
            &tx,
            &[event.kind],
            event.vault.as_deref(),
            event.instance.as_deref(),
        )?
        .into_iter()
        .next()
    } else {
        None
    };
    let incident = match open {
        Some(mut incident) => {
            incident.count += 1;
            incident.last = incident.last.max(event.at);
            incident.description = event.description.clone();
            incident.job_id = event.job_id.clone();
            incident.error_code = event.error_code.clone();
            tx.execute(
                "UPDATE alert_incidents SET count = ?2, last_time = ?3, description = ?4, \
                 job_id = ?5, error_code = ?6 WHERE id = ?1",
                params![
                    incident.id,
                    incident.count,
                    db_time(incident.last),
                    incident.description,
                    incident.job_id,
                    incident.error_code
                ],
            )?;
            incident
        }
        None => {
            let incident = Incident {
                id: uuid::Uuid::new_v4().to_string(),
                kind: event.kind,
                severity: event.kind.severity().to_owned(),
                vault: event.vault.clone(),
                instance: event.instance.clone(),
                condition: Condition::Fired,
                count: 1,
                fired: event.at,
                last: event.at,
                resolved: None,
                description: event.description.clone(),
                job_id: event.job_id.clone(),
                error_code: event.error_code.clone(),
            };
            tx.execute(
                "INSERT INTO alert_incidents (id, kind, severity, vault_name, backup_instance_name, \
                 state, count, fired_time, last_time, resolved_time, description, job_id, error_code) \
                 VALUES (?1, ?2, ?3, ?4, ?5, 'Fired', 1, ?6, ?6, NULL, ?7, ?8, ?9)",
                params![
                    incident.id,
                    incident.kind.as_str(),
                    incident.severity,
                    incident.vault,
                    incident.instance,
                    db_time(incident.fired),
                    incident.description,
                    incident.job_id,
                    incident.error_code
                ],
            )?;
            queue_notices(&tx, &incident, Condition::Fired, event.at)?;
            // The failure itself is the command's own error (and the job's); the alert's text
            // goes to its destinations and `alert list`, not a second time to the log.
            tracing::info!(alert = %incident.id, kind = %incident.kind, vault = incident.vault.as_deref().unwrap_or(""), instance = incident.instance.as_deref().unwrap_or(""), "alert fired");
            incident
        }
    };
    tx.commit()?;
    Ok(incident)
}

/// Resolves the open incidents of `kinds` on `vault` (and `instance`, when given; every
/// instance's otherwise) at `at`, queueing a `Resolved` notice for each; returns them.
pub fn resolve(
    history: &JobHistory,
    kinds: &[AlertKind],
    vault: Option<&str>,
    instance: Option<&str>,
    at: DateTime<Utc>,
) -> std::result::Result<Vec<Incident>, HistoryError> {
    let mut conn = history.conn();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut resolved = Vec::new();
    for mut incident in open_incidents_any_instance(&tx, kinds, vault, instance)? {
        let at = at.max(incident.last);
        tx.execute(
            "UPDATE alert_incidents SET state = 'Resolved', resolved_time = ?2 WHERE id = ?1",
            params![incident.id, db_time(at)],
        )?;
        incident.condition = Condition::Resolved;
        incident.resolved = Some(at);
        queue_notices(&tx, &incident, Condition::Resolved, at)?;
        tracing::info!(alert = %incident.id, kind = %incident.kind, count = incident.count, "alert resolved");
        resolved.push(incident);
    }
    tx.commit()?;
    Ok(resolved)
}

/// What a finished job means for alerts: a failed backup, restore or drill raises its
/// incident; a completed one resolves the incidents it ends. Called by the job lifecycle
/// for every job it finishes; errors are logged, never the job's.
pub(crate) fn job_finished(history: &JobHistory, job: &Job) {
    let kinds: (AlertKind, &[AlertKind]) = match job.operation {
        Operation::OnDemandBackup | Operation::ScheduledBackup => (
            AlertKind::BackupFailure,
            &[AlertKind::BackupFailure, AlertKind::BackupOverdue],
        ),
        Operation::Restore => (AlertKind::RestoreFailure, &[AlertKind::RestoreFailure]),
        Operation::RestoreDrill => (AlertKind::DrillFailure, &[AlertKind::DrillFailure]),
        _ => return,
    };
    let Some(end) = job.state.end() else { return };
    let Some(vault) = job.vault() else { return };
    let instance = job.backup_instance_name.as_deref();
    let recorded = match (job.status(), job.state.error()) {
        (JobStatus::Failed, Some(error)) => {
            let what = match kinds.0 {
                AlertKind::BackupFailure => "backup",
                AlertKind::RestoreFailure => "restore",
                _ => "restore drill",
            };
            let mut event = AlertEvent::new(
                kinds.0,
                format!(
                    "The {what} of `{}` in vault `{vault}` failed (job {}): {}: {}",
                    instance.unwrap_or("?"),
                    job.id,
                    error.code,
                    error.message
                ),
                end,
            )
            .on(vault, instance);
            event.job_id = Some(job.id.to_string());
            event.error_code = Some(error.code.to_string());
            raise(history, &event).map(|_| ())
        }
        (JobStatus::Completed, _) if instance.is_some() => {
            resolve(history, kinds.1, Some(vault), instance, end).map(|_| ())
        }
        _ => Ok(()),
    };
    if let Err(e) = recorded {
        tracing::error!(job = %job.id, error = %e, "could not record the job's alert");
    }
}

/// Queues a `condition` notice of `incident` for every destination that covers its vault.
fn queue_notices(
    conn: &Connection,
    incident: &Incident,
    condition: Condition,
    at: DateTime<Utc>,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO alert_deliveries (incident_id, destination, condition, state, attempts, \
         created_time, next_attempt_time) \
         SELECT ?1, name, ?2, 'Pending', 0, ?3, ?3 FROM alert_destinations \
         WHERE vault_name IS NULL OR vault_name = ?4",
        params![incident.id, condition.as_str(), db_time(at), incident.vault],
    )?;
    Ok(())
}

const INCIDENT_COLUMNS: &str = "id, kind, severity, vault_name, backup_instance_name, state, \
     count, fired_time, last_time, resolved_time, description, job_id, error_code";

fn open_incidents(
    conn: &Connection,
    kinds: &[AlertKind],
    vault: Option<&str>,
    instance: Option<&str>,
) -> std::result::Result<Vec<Incident>, HistoryError> {
    let mut out = Vec::new();
    for kind in kinds {
        let mut stmt = conn.prepare(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM alert_incidents WHERE state = 'Fired' AND kind = ?1 \
             AND vault_name IS ?2 AND backup_instance_name IS ?3 ORDER BY seq"
        ))?;
        let rows = stmt.query_map(params![kind.as_str(), vault, instance], incident_row)?;
        for row in rows {
            out.push(row??);
        }
    }
    Ok(out)
}

/// Open incidents of `kinds` on `vault`, of `instance` when given, of any otherwise.
fn open_incidents_any_instance(
    conn: &Connection,
    kinds: &[AlertKind],
    vault: Option<&str>,
    instance: Option<&str>,
) -> std::result::Result<Vec<Incident>, HistoryError> {
    if instance.is_some() {
        return open_incidents(conn, kinds, vault, instance);
    }
    let mut out = Vec::new();
    for kind in kinds {
        let mut stmt = conn.prepare(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM alert_incidents WHERE state = 'Fired' AND kind = ?1 \
             AND vault_name IS ?2 ORDER BY seq"
        ))?;
        let rows = stmt.query_map(params![kind.as_str(), vault], incident_row)?;
        for row in rows {
            out.push(row??);
        }
    }
    Ok(out)
}

fn corrupt(id: &str, detail: impl Into<String>) -> HistoryError {
    HistoryError::Corrupt {
        id: format!("(alert {id})"),
        detail: detail.into(),
    }
}

fn time_col(
    id: &str,
    text: Option<String>,
) -> std::result::Result<Option<DateTime<Utc>>, HistoryError> {
    text.map(|t| parse_db_time(&t).map_err(|e| corrupt(id, format!("time `{t}`: {e}"))))
        .transpose()
}

type RowResult<T> = rusqlite::Result<std::result::Result<T, HistoryError>>;

fn incident_row(row: &Row<'_>) -> RowResult<Incident> {
    let id: String = row.get(0)?;
    let kind: String = row.get(1)?;
    let state: String = row.get(5)?;
    let count: i64 = row.get(6)?;
    let (fired, last, resolved): (String, String, Option<String>) =
        (row.get(7)?, row.get(8)?, row.get(9)?);
    let build = || -> std::result::Result<Incident, HistoryError> {
        Ok(Incident {
            kind: kind.parse().map_err(|e: String| corrupt(&id, e))?,
            severity: row.get(2)?,
            vault: row.get(3)?,
            instance: row.get(4)?,
            condition: Condition::parse(&state)
                .ok_or_else(|| corrupt(&id, format!("state `{state}`")))?,
            count: u32::try_from(count).map_err(|_| corrupt(&id, format!("count {count}")))?,
            fired: time_col(&id, Some(fired.clone()))?.unwrap_or_default(),
            last: time_col(&id, Some(last.clone()))?.unwrap_or_default(),
            resolved: time_col(&id, resolved.clone())?,
            description: row.get(10)?,
            job_id: row.get(11)?,
            error_code: row.get(12)?,
            id: id.clone(),
        })
    };
    Ok(build())
}

const DELIVERY_COLUMNS: &str = "seq, incident_id, destination, condition, state, attempts, \
     created_time, next_attempt_time, last_attempt_time, last_error, delivered_time";

fn delivery_row(row: &Row<'_>) -> RowResult<Delivery> {
    let seq: i64 = row.get(0)?;
    let id = format!("delivery {seq}");
    let condition: String = row.get(3)?;
    let state: String = row.get(4)?;
    let attempts: i64 = row.get(5)?;
    let build = || -> std::result::Result<Delivery, HistoryError> {
        Ok(Delivery {
            seq,
            incident_id: row.get(1)?,
            destination: row.get(2)?,
            condition: Condition::parse(&condition)
                .ok_or_else(|| corrupt(&id, format!("condition `{condition}`")))?,
            state: match state.as_str() {
                "Pending" => DeliveryState::Pending,
                "Delivered" => DeliveryState::Delivered,
                "Failed" => DeliveryState::Failed,
                other => return Err(corrupt(&id, format!("state `{other}`"))),
            },
            attempts: u32::try_from(attempts).unwrap_or(0),
            created: time_col(&id, Some(row.get(6)?))?.unwrap_or_default(),
            next_attempt: time_col(&id, row.get(7)?)?,
            last_attempt: time_col(&id, row.get(8)?)?,
            last_error: row.get(9)?,
            delivered: time_col(&id, row.get(10)?)?,
        })
    };
    Ok(build())
}

const DESTINATION_COLUMNS: &str =
    "name, vault_name, config, created_time, last_success_time, failing_since, last_error";

fn destination_row(row: &Row<'_>) -> RowResult<Destination> {
    let name: String = row.get(0)?;
    let config: String = row.get(2)?;
    let build = || -> std::result::Result<Destination, HistoryError> {
        let id = format!("destination {name}");
        Ok(Destination {
            vault: row.get(1)?,
            target: serde_json::from_str(&config)
                .map_err(|e| corrupt(&id, format!("config: {e}")))?,
            created: time_col(&id, Some(row.get(3)?))?.unwrap_or_default(),
            last_success: time_col(&id, row.get(4)?)?,
            failing_since: time_col(&id, row.get(5)?)?,
            last_error: row.get(6)?,
            name: name.clone(),
        })
    };
    Ok(build())
}

fn collect<T>(
    rows: impl Iterator<Item = RowResult<T>>,
) -> std::result::Result<Vec<T>, HistoryError> {
    let mut out = Vec::new();
    for row in rows {
        out.push(row??);
    }
    Ok(out)
}

// ---- the service's face ----

impl Pgvault {
    /// Records an alert-worthy event (see [`raise`]): for the operations that weaken the
    /// vault's protection (soft delete or immutability turned down) and any other caller.
    pub fn raise_alert(&self, event: &AlertEvent) -> Result<Incident> {
        raise(self.history(), event).map_err(alert_err)
    }

    /// A vault's protection was weakened (soft delete turned off or its retention shortened,
    /// immutability turned down): a "Security Setting Weakened" alert (`Sev0`, never grouped,
    /// resolved by hand), as Azure Backup raises for such changes. For the operations that
    /// change those settings to call once the change is made.
    pub fn security_setting_weakened(
        &self,
        vault: &str,
        setting: &str,
        from: &str,
        to: &str,
    ) -> Result<Incident> {
        let event = AlertEvent::new(
            AlertKind::SecuritySettingWeakened,
            format!("The {setting} of vault `{vault}` was changed from {from} to {to}"),
            self.now(),
        )
        .on(vault, None);
        self.raise_alert(&event)
    }

    /// Resolves the open incidents of `kinds` on `vault` / `instance` (see [`resolve`]).
    pub fn resolve_alerts(
        &self,
        kinds: &[AlertKind],
        vault: Option<&str>,
        instance: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<Vec<Incident>> {
        resolve(self.history(), kinds, vault, instance, at).map_err(alert_err)
    }

    /// The agenda found `instance`'s backup overdue: no successful backup since the
    /// occurrence `missed`, `grace` ago or more. Raises the overdue alert unless a failure
    /// alert already covers the instance or the open overdue alert was raised after `missed`
    /// (so each missed occurrence counts once, whatever the number of turns that see it).
    pub fn backup_overdue(
        &self,
        vault: &str,
        instance: &str,
        missed: DateTime<Utc>,
        grace: TimeDelta,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let open = {
            let conn = self.history().conn();
            open_incidents(
                &conn,
                &[AlertKind::BackupFailure, AlertKind::BackupOverdue],
                Some(vault),
                Some(instance),
            )
            .map_err(alert_err)?
        };
        let covered = open.iter().any(|i| {
            i.kind == AlertKind::BackupFailure
                || (i.kind == AlertKind::BackupOverdue && i.last >= missed)
        });
        if covered {
            return Ok(());
        }
        let event = AlertEvent::new(
            AlertKind::BackupOverdue,
            format!(
                "No successful backup of `{instance}` in vault `{vault}` since its scheduled \
                 backup at {} (UTC), {} minutes of grace ago; is the host running, and can it \
                 reach the database?",
                missed.format("%Y-%m-%d %H:%M:%S"),
                grace.num_minutes()
            ),
            now,
        )
        .on(vault, Some(instance));
        self.raise_alert(&event).map(|_| ())
    }

    /// `alert resolve ID`: closes an incident by hand (security events are closed by nobody
    /// else), queueing its resolution notice.
    pub fn resolve_alert(&self, id: &str) -> Result<Incident> {
        let incident = self
            .alert(id)?
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::UserErrorAlertNotFound,
                    format!("no alert `{id}`; `pgvault alert list` shows the alerts there are"),
                )
            })?
            .incident;
        if incident.condition == Condition::Resolved {
            return Ok(incident);
        }
        let mut conn = self.history().conn();
        let mut run = || -> std::result::Result<Incident, HistoryError> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let at = self.now().max(incident.last);
            tx.execute(
                "UPDATE alert_incidents SET state = 'Resolved', resolved_time = ?2 \
                 WHERE id = ?1 AND state = 'Fired'",
                params![incident.id, db_time(at)],
            )?;
            let mut resolved = incident.clone();
            resolved.condition = Condition::Resolved;
            resolved.resolved = Some(at);
            queue_notices(&tx, &resolved, Condition::Resolved, at)?;
            tx.commit()?;
            Ok(resolved)
        };
        run().map_err(alert_err)
    }

    /// `alert list`: incidents, newest first, with their notices; only open ones when
    /// `open_only`.
    pub fn alerts(&self, open_only: bool) -> Result<Vec<IncidentWithDeliveries>> {
        let conn = self.history().conn();
        let list = || -> std::result::Result<Vec<IncidentWithDeliveries>, HistoryError> {
            let filter = if open_only {
                "WHERE state = 'Fired'"
            } else {
                ""
            };
            let mut stmt = conn.prepare(&format!(
                "SELECT {INCIDENT_COLUMNS} FROM alert_incidents {filter} ORDER BY seq DESC"
            ))?;
            let incidents = collect(stmt.query_map([], incident_row)?)?;
            let mut stmt = conn.prepare(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM alert_deliveries WHERE incident_id = ?1 ORDER BY seq"
            ))?;
            let mut out = Vec::new();
            for incident in incidents {
                let deliveries = collect(stmt.query_map([&incident.id], delivery_row)?)?;
                out.push(IncidentWithDeliveries {
                    incident,
                    deliveries,
                });
            }
            Ok(out)
        };
        list().map_err(alert_err)
    }

    /// One incident with its notices.
    pub fn alert(&self, id: &str) -> Result<Option<IncidentWithDeliveries>> {
        let conn = self.history().conn();
        let get = || -> std::result::Result<Option<IncidentWithDeliveries>, HistoryError> {
            let incident = conn
                .query_row(
                    &format!("SELECT {INCIDENT_COLUMNS} FROM alert_incidents WHERE id = ?1"),
                    [id],
                    incident_row,
                )
                .optional()?
                .transpose()?;
            let Some(incident) = incident else {
                return Ok(None);
            };
            let mut stmt = conn.prepare(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM alert_deliveries WHERE incident_id = ?1 ORDER BY seq"
            ))?;
            let deliveries = collect(stmt.query_map([id], delivery_row)?)?;
            Ok(Some(IncidentWithDeliveries {
                incident,
                deliveries,
            }))
        };
        get().map_err(alert_err)
    }

    /// `alert destination add`: a new destination for every vault (`vault: None`) or one.
    /// The target is checked (a webhook's URL, an email's addresses, the script's file) but
    /// not contacted: `alert destination test` does that.
    pub async fn add_alert_destination(
        &self,
        name: &str,
        vault: Option<&str>,
        target: DeliveryTarget,
    ) -> Result<Destination> {
        check_name(name)?;
        target.check()?;
        if let Some(vault) = vault {
            // The vault must exist; its name is kept as the registry spells it.
            self.vault(vault).await?;
        }
        let config = serde_json::to_string(&target).expect("a destination always serializes");
        let now = self.now();
        let inserted = self.history().conn().execute(
            "INSERT INTO alert_destinations (name, kind, vault_name, config, created_time) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![name, target.kind(), vault, config, db_time(now)],
        );
        match inserted {
            Ok(_) => {}
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                return Err(Error::new(
                    ErrorCode::UserErrorAlertDestinationExists,
                    format!("an alert destination named `{name}` exists already"),
                ));
            }
            Err(e) => return Err(alert_err(e.into())),
        }
        Ok(Destination {
            name: name.to_owned(),
            vault: vault.map(str::to_owned),
            target,
            created: now,
            last_success: None,
            failing_since: None,
            last_error: None,
        })
    }

    /// `alert destination list`, by name.
    pub fn alert_destinations(&self) -> Result<Vec<Destination>> {
        let conn = self.history().conn();
        let list = || -> std::result::Result<Vec<Destination>, HistoryError> {
            let mut stmt = conn.prepare(&format!(
                "SELECT {DESTINATION_COLUMNS} FROM alert_destinations ORDER BY name"
            ))?;
            collect(stmt.query_map([], destination_row)?)
        };
        list().map_err(alert_err)
    }

    /// One destination by name (any case).
    pub fn alert_destination(&self, name: &str) -> Result<Destination> {
        let conn = self.history().conn();
        let get = || -> std::result::Result<Option<Destination>, HistoryError> {
            conn.query_row(
                &format!("SELECT {DESTINATION_COLUMNS} FROM alert_destinations WHERE name = ?1"),
                [name],
                destination_row,
            )
            .optional()?
            .transpose()
        };
        get().map_err(alert_err)?.ok_or_else(|| {
            Error::new(
                ErrorCode::UserErrorAlertDestinationNotFound,
                format!("no alert destination named `{name}`"),
            )
        })
    }

    /// `alert destination remove`: its pending notices are recorded `Failed` (nobody will
    /// send them).
    pub fn remove_alert_destination(&self, name: &str) -> Result<()> {
        let destination = self.alert_destination(name)?;
        let now = self.now();
        let mut conn = self.history().conn();
        let mut run = || -> std::result::Result<(), HistoryError> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "UPDATE alert_deliveries SET state = 'Failed', next_attempt_time = NULL, \
                 last_error = 'the destination was removed', last_attempt_time = ?2 \
                 WHERE destination = ?1 AND state = 'Pending'",
                params![destination.name, db_time(now)],
            )?;
            tx.execute(
                "DELETE FROM alert_destinations WHERE name = ?1",
                [&destination.name],
            )?;
            tx.commit()?;
            Ok(())
        };
        run().map_err(alert_err)
    }

    /// When the next pending notice is due, if any is (the `serve` loop's wake-up).
    pub fn next_alert_delivery(&self) -> Result<Option<DateTime<Utc>>> {
        let conn = self.history().conn();
        let next: Option<String> = conn
            .query_row(
                "SELECT MIN(max(next_attempt_time, coalesce(claimed_until, ''))) \
                 FROM alert_deliveries WHERE state = 'Pending'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| alert_err(e.into()))?;
        time_col("next delivery", next).map_err(alert_err)
    }
}

/// A secret reference given for a destination, parsed, with an error that names the option
/// (never the text, which may be the secret itself).
pub fn parse_secret_ref(option: &str, text: &str) -> Result<SecretRef> {
    text.parse::<SecretRef>().map_err(|e| {
        invalid(format!(
            "{option} takes a secret reference (env:NAME, file:PATH or a Key Vault secret URI), \
             never the secret itself: {e}"
        ))
    })
}
