//! `pgvault alert`: the alerts (incidents with their count, state and notices) and where
//! they go (webhooks in Azure Monitor's common alert schema, email over SMTP, Rhai hooks).
//! Secrets of destinations are given as references (`env:`, `file:`, Key Vault) and read at
//! each send.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use pgvault_host::alerts::{
    DeliveryTarget, Destination, EmailConfig, IncidentWithDeliveries, SmtpSecurity, deliver_due,
    parse_secret_ref, send_test,
};

use super::{coded, open_service};
use crate::output::{Format, line, print, table};

#[derive(Subcommand, Debug)]
pub enum AlertCommand {
    /// List alerts (incidents), newest first, with their notices' delivery.
    List {
        /// Only alerts still fired (not resolved).
        #[arg(long)]
        open: bool,
    },
    /// Show one alert with each notice's attempts and last error.
    Show {
        #[arg(long)]
        id: String,
    },
    /// Resolve an alert by hand (security alerts are resolved by nobody else); its
    /// destinations get the resolution notice.
    Resolve {
        #[arg(long)]
        id: String,
    },
    /// Send the notices that are due now (what `serve` does by itself; for hosts run by
    /// `tick` from cron, which also does it).
    Deliver,
    /// Where alerts go.
    #[command(subcommand)]
    Destination(DestinationCommand),
}

#[derive(Subcommand, Debug)]
pub enum DestinationCommand {
    /// Add a destination: a webhook, an email (SMTP) or a Rhai hook, for every vault or one.
    #[command(
        after_help = "Examples:\n  pgvault alert destination add --name oncall --webhook-url env:PGVAULT_TEAMS_WEBHOOK\n  pgvault alert destination add --name pager --webhook-url https://events.example/hook --bearer-token file:/etc/pgvault/pager-token\n  pgvault alert destination add --name dba --smtp-server smtp.example.com --smtp-security starttls \\\n      --smtp-username pgvault --smtp-password env:SMTP_PASSWORD --from pgvault@example.com --to dba@example.com\n  pgvault alert destination add --name hook --script /etc/pgvault/on-alert.rhai --vault-name prod\n\nA webhook gets a JSON POST in Azure Monitor's common alert schema. A URL holding a token\n(Teams, Slack) must be given as a secret reference. A hook runs in the drop-in sandbox;\n`alert()` returns the alert as a map."
    )]
    Add(Box<AddArgs>),
    /// List the destinations, with their health (last success, failing since, last error).
    List,
    /// Remove a destination; its pending notices are recorded as failed.
    Remove {
        #[arg(long)]
        name: String,
    },
    /// Send a test alert to a destination now and say how it went.
    Test {
        #[arg(long)]
        name: String,
    },
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// The destination's name.
    #[arg(long)]
    name: String,
    /// Only alerts of this vault (every vault's by default).
    #[arg(long)]
    vault_name: Option<String>,
    /// A webhook: an https URL, or a secret reference (env:NAME, file:PATH, Key Vault secret
    /// URI) holding it.
    #[arg(long, group = "target")]
    webhook_url: Option<String>,
    /// The webhook's bearer token, as a secret reference.
    #[arg(long, requires = "webhook_url")]
    bearer_token: Option<String>,
    /// An email destination's SMTP server (host name).
    #[arg(long, group = "target", requires_all = ["from", "to"])]
    smtp_server: Option<String>,
    /// The SMTP port (465 for tls, 587 for starttls, 25 for none by default).
    #[arg(long, requires = "smtp_server")]
    smtp_port: Option<u16>,
    /// tls, starttls or none (none only for a relay on this machine).
    #[arg(long, requires = "smtp_server", default_value = "starttls")]
    smtp_security: String,
    #[arg(long, requires = "smtp_server")]
    smtp_username: Option<String>,
    /// The SMTP password, as a secret reference.
    #[arg(long, requires = "smtp_username")]
    smtp_password: Option<String>,
    /// The sender's address.
    #[arg(long, requires = "smtp_server")]
    from: Option<String>,
    /// A recipient (repeat for more).
    #[arg(long, requires = "smtp_server")]
    to: Vec<String>,
    /// A Rhai hook: a script run with `alert()` returning the alert as a map.
    #[arg(long, group = "target")]
    script: Option<PathBuf>,
}

impl AddArgs {
    fn target(self: Box<Self>) -> anyhow::Result<DeliveryTarget> {
        if let Some(url) = self.webhook_url {
            let bearer_token = self
                .bearer_token
                .map(|t| parse_secret_ref("--bearer-token", &t))
                .transpose()
                .map_err(coded)?;
            return Ok(DeliveryTarget::Webhook { url, bearer_token });
        }
        if let Some(server) = self.smtp_server {
            let security: SmtpSecurity = self.smtp_security.parse().map_err(coded)?;
            let password = self
                .smtp_password
                .map(|p| parse_secret_ref("--smtp-password", &p))
                .transpose()
                .map_err(coded)?;
            return Ok(DeliveryTarget::Email(EmailConfig {
                server,
                port: self.smtp_port,
                security,
                username: self.smtp_username,
                password,
                from: self.from.unwrap_or_default(),
                to: self.to,
            }));
        }
        if let Some(path) = self.script {
            let path = std::path::absolute(&path).unwrap_or(path);
            return Ok(DeliveryTarget::Script { path });
        }
        Err(anyhow::anyhow!(
            "UserErrorInvalidAlertDestination: give one of --webhook-url, --smtp-server or --script"
        ))
    }
}

pub async fn run(cmd: AlertCommand, format: Format) -> anyhow::Result<ExitCode> {
    let svc = Arc::new(open_service()?);
    match cmd {
        AlertCommand::List { open } => {
            let alerts = svc.alerts(open).map_err(coded)?;
            match format {
                Format::Json => print(
                    &Value::Array(alerts.iter().map(alert_json).collect()),
                    format,
                )?,
                Format::Table => line(&alerts_table(&alerts))?,
            }
        }
        AlertCommand::Show { id } => {
            let alert = svc.alert(&id).map_err(coded)?.ok_or_else(|| {
                anyhow::anyhow!("UserErrorAlertNotFound: no alert `{id}`; `pgvault alert list` shows the alerts there are")
            })?;
            print(&alert_json(&alert), Format::Json)?;
        }
        AlertCommand::Resolve { id } => {
            let incident = svc.resolve_alert(&id).map_err(coded)?;
            eprintln!("Alert {} is resolved.", incident.id);
        }
        AlertCommand::Deliver => {
            let done = deliver_due(&svc, svc.now()).await.map_err(coded)?;
            eprintln!(
                "{} notice(s) delivered, {} attempt(s) failed{}.",
                done.delivered,
                done.failed,
                done.next
                    .map(|t| format!("; the next is due at {t}"))
                    .unwrap_or_default()
            );
        }
        AlertCommand::Destination(cmd) => match cmd {
            DestinationCommand::Add(args) => {
                let (name, vault) = (args.name.clone(), args.vault_name.clone());
                let target = args.target()?;
                let added = svc
                    .add_alert_destination(&name, vault.as_deref(), target)
                    .await
                    .map_err(coded)?;
                print(&destination_json(&added), format)?;
            }
            DestinationCommand::List => {
                let list = svc.alert_destinations().map_err(coded)?;
                match format {
                    Format::Json => print(
                        &Value::Array(list.iter().map(destination_json).collect()),
                        format,
                    )?,
                    Format::Table => line(&destinations_table(&list))?,
                }
            }
            DestinationCommand::Remove { name } => {
                svc.remove_alert_destination(&name).map_err(coded)?;
                eprintln!("Alert destination `{name}` removed.");
            }
            DestinationCommand::Test { name } => {
                send_test(&svc, &name).await.map_err(coded)?;
                eprintln!("A test alert was delivered to `{name}`.");
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}

fn time(t: Option<chrono::DateTime<chrono::Utc>>) -> Value {
    t.map(|t| Value::String(t.to_rfc3339()))
        .unwrap_or(Value::Null)
}

fn alert_json(a: &IncidentWithDeliveries) -> Value {
    let i = &a.incident;
    json!({
        "id": i.id,
        "alertRule": i.kind.rule_name(),
        "kind": i.kind.as_str(),
        "severity": i.severity,
        "monitorCondition": i.condition.as_str(),
        "count": i.count,
        "vaultName": i.vault,
        "backupInstanceName": i.instance,
        "firedDateTime": i.fired.to_rfc3339(),
        "lastOccurrenceDateTime": i.last.to_rfc3339(),
        "resolvedDateTime": time(i.resolved),
        "description": i.description,
        "jobId": i.job_id,
        "errorCode": i.error_code,
        "deliveries": a.deliveries.iter().map(|d| json!({
            "destination": d.destination,
            "monitorCondition": d.condition.as_str(),
            "state": d.state.as_str(),
            "attempts": d.attempts,
            "createdDateTime": d.created.to_rfc3339(),
            "nextAttemptDateTime": time(d.next_attempt),
            "lastAttemptDateTime": time(d.last_attempt),
            "lastError": d.last_error,
            "deliveredDateTime": time(d.delivered),
        })).collect::<Vec<_>>(),
    })
}

fn destination_json(d: &Destination) -> Value {
    json!({
        "name": d.name,
        "kind": match &d.target {
            DeliveryTarget::Webhook { .. } => "Webhook",
            DeliveryTarget::Email(_) => "Email",
            DeliveryTarget::Script { .. } => "Script",
        },
        "vaultName": d.vault,
        "target": d.target.describe(),
        "createdDateTime": d.created.to_rfc3339(),
        "lastSuccessDateTime": time(d.last_success),
        "failingSince": time(d.failing_since),
        "lastError": d.last_error,
    })
}

fn short_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn alerts_table(alerts: &[IncidentWithDeliveries]) -> String {
    if alerts.is_empty() {
        return "(none)".into();
    }
    let rows: Vec<Vec<String>> = alerts
        .iter()
        .map(|a| {
            let i = &a.incident;
            let delivered = a
                .deliveries
                .iter()
                .map(|d| format!("{} {} {}", d.destination, d.condition, d.state.as_str()))
                .collect::<Vec<_>>()
                .join("; ");
            vec![
                i.id.clone(),
                i.kind.rule_name().to_owned(),
                i.severity.clone(),
                i.condition.to_string(),
                i.count.to_string(),
                i.vault.clone().unwrap_or_default(),
                i.instance.clone().unwrap_or_default(),
                short_time(i.fired),
                i.resolved.map(short_time).unwrap_or_default(),
                delivered,
            ]
        })
        .collect();
    table(
        &[
            "Alert", "Rule", "Severity", "State", "Count", "Vault", "Instance", "Fired",
            "Resolved", "Notices",
        ],
        &rows,
    )
}

fn destinations_table(list: &[Destination]) -> String {
    if list.is_empty() {
        return "(none)".into();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|d| {
            vec![
                d.name.clone(),
                d.vault.clone().unwrap_or_else(|| "(all)".into()),
                d.target.describe(),
                d.last_success.map(short_time).unwrap_or_default(),
                d.failing_since
                    .map(|t| format!("since {}", short_time(t)))
                    .unwrap_or_else(|| "ok".into()),
                d.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &[
            "Name",
            "Vault",
            "Target",
            "Last success",
            "Health",
            "Last error",
        ],
        &rows,
    )
}

/// After a command: sends the alert notices due now, once (a CLI-run backup that failed is
/// notified without waiting for `serve`); failed attempts are left for `serve`'s retries.
/// Bounded, so a destination that hangs does not hold the command's exit for long.
pub async fn deliver_after_command() {
    // A command that needed no home (a policy template) does not make one here.
    match pgvault_host::api::Home::from_env() {
        Ok(home) if home.jobs_db().exists() => {}
        _ => return,
    }
    let Ok(svc) = open_service() else { return };
    let svc = Arc::new(svc);
    let now = svc.now();
    match svc.next_alert_delivery() {
        Ok(Some(t)) if t <= now => {}
        _ => return,
    }
    match tokio::time::timeout(std::time::Duration::from_secs(15), deliver_due(&svc, now)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(code = %e.code, "alert notices: {}", e.message),
        Err(_) => tracing::warn!(
            "alert notices were still being sent after 15 s; the rest are sent later"
        ),
    }
}
