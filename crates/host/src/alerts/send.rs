//! Sending notices: the three kinds of destination, and the delivery of what is due.
//!
//! - A webhook gets a JSON POST of the common alert schema (`schema.rs`), with
//!   `Authorization: Bearer` when it has a token. Its URL is either plain (https, or http on
//!   loopback) or a secret reference holding it, for the receivers whose URL *is* the secret
//!   (Teams and Slack incoming webhooks); a plain URL that carries a query or credentials is
//!   refused for that reason. Redirects are not followed. Success is a 2xx answer.
//! - An email goes over SMTP (`lettre`, rustls on ring): implicit TLS, STARTTLS, or (for a
//!   relay on this machine) none; a password is a secret reference.
//! - A script hook is a Rhai file run in the drop-in sandbox with no grants, as a `ScriptRun`
//!   job, where `alert()` returns the common alert schema as a map; it succeeded when its job
//!   completed.
//!
//! Secrets are resolved at each send and dropped after it; errors never carry them (a
//! webhook error is shown without its URL).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::params;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use pgvault_core::engine::{Error, Result};
use pgvault_core::model::code::ErrorCode;
use pgvault_core::model::resource::{ResourceGroup, VaultRef};
use pgvault_core::model::secret::SecretRef;
use pgvault_core::secrets::ResolveSecret as _;

use super::{
    AlertKind, CLAIM_FOR, Condition, DELIVERY_COLUMNS, Destination, INCIDENT_COLUMNS, Incident,
    MAX_ATTEMPTS, backoff, collect, delivery_row, incident_row, invalid,
};
use crate::history::db_time;
use crate::service::Pgvault;

/// How long one send may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a destination sends. Stored as JSON in `alert_destinations.config`; only
/// references to secrets, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum DeliveryTarget {
    Webhook {
        /// A plain URL, or a secret reference (`env:`, `file:`, Key Vault) holding it.
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bearer_token: Option<SecretRef>,
    },
    Email(EmailConfig),
    Script {
        path: PathBuf,
    },
}

/// An SMTP destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailConfig {
    pub server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub security: SmtpSecurity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretRef>,
    pub from: String,
    pub to: Vec<String>,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SmtpSecurity {
    /// TLS from the first byte (port 465).
    Tls,
    /// STARTTLS, required (port 587).
    StartTls,
    /// Plain SMTP (port 25): only for a relay on this machine.
    None,
}

impl std::str::FromStr for SmtpSecurity {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "tls" => Ok(SmtpSecurity::Tls),
            "starttls" => Ok(SmtpSecurity::StartTls),
            "none" => Ok(SmtpSecurity::None),
            _ => Err(invalid(format!(
                "`{s}` is not an SMTP security; use tls, starttls or none"
            ))),
        }
    }
}

/// What a webhook URL is once parsed.
enum WebhookUrl {
    Plain(url::Url),
    Secret(SecretRef),
}

fn parse_webhook_url(text: &str) -> Result<WebhookUrl> {
    let lower = text.to_ascii_lowercase();
    let key_vault = url::Url::parse(text).ok().is_some_and(|u| {
        u.host_str().is_some_and(|h| h.contains(".vault.")) && u.path().starts_with("/secrets/")
    });
    if lower.starts_with("env:") || lower.starts_with("file:") || key_vault {
        return super::parse_secret_ref("--webhook-url", text).map(WebhookUrl::Secret);
    }
    let url = url::Url::parse(text).map_err(|e| {
        invalid(format!(
            "--webhook-url takes an https URL or a secret reference holding one: it is not a URL ({e})"
        ))
    })?;
    check_plain_url(&url)?;
    Ok(WebhookUrl::Plain(url))
}

/// A URL kept in the clear must carry no secret, and leave the machine only over https.
fn check_plain_url(url: &url::Url) -> Result<()> {
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() {
        return Err(invalid(
            "the webhook URL carries credentials or a query (often a token): keep it in a secret \
             reference instead (--webhook-url env:NAME, file:PATH or a Key Vault secret URI), so it is \
             not stored in the clear",
        ));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if pgvault_core::model::secret::is_loopback(url) => Ok(()),
        _ => Err(invalid(
            "a webhook URL must be https (plain http only to this machine)",
        )),
    }
}

impl DeliveryTarget {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            DeliveryTarget::Webhook { .. } => "Webhook",
            DeliveryTarget::Email(_) => "Email",
            DeliveryTarget::Script { .. } => "Script",
        }
    }

    /// Checks what can be checked without contacting anything.
    pub(crate) fn check(&self) -> Result<()> {
        match self {
            DeliveryTarget::Webhook { url, .. } => parse_webhook_url(url).map(|_| ()),
            DeliveryTarget::Email(email) => {
                if email.server.is_empty() || email.server.contains([':', '/', ' ']) {
                    return Err(invalid(format!(
                        "`{}` is not an SMTP server host name; give the port with --smtp-port",
                        email.server
                    )));
                }
                if email.to.is_empty() {
                    return Err(invalid(
                        "an email destination needs at least one --to address",
                    ));
                }
                for address in email.to.iter().chain([&email.from]) {
                    address.parse::<lettre::Address>().map_err(|e| {
                        invalid(format!("`{address}` is not an email address: {e}"))
                    })?;
                }
                if email.password.is_some() && email.username.is_none() {
                    return Err(invalid("--smtp-password needs --smtp-username"));
                }
                Ok(())
            }
            DeliveryTarget::Script { path } => {
                if !path.is_absolute() {
                    return Err(invalid("the hook's script path must be absolute"));
                }
                if !path.is_file() {
                    return Err(invalid(format!(
                        "the hook's script {} is not a file",
                        path.display()
                    )));
                }
                Ok(())
            }
        }
    }

    /// A short description for lists: never a secret (a URL held in a secret shows as its
    /// reference).
    pub fn describe(&self) -> String {
        match self {
            DeliveryTarget::Webhook { url, bearer_token } => match bearer_token {
                Some(token) => format!("POST {url} (bearer {token})"),
                None => format!("POST {url}"),
            },
            DeliveryTarget::Email(e) => format!(
                "{} via {}:{} ({:?})",
                e.to.join(", "),
                e.server,
                e.port.unwrap_or_else(|| default_port(e.security)),
                e.security
            ),
            DeliveryTarget::Script { path } => format!("Rhai hook {}", path.display()),
        }
    }
}

fn default_port(security: SmtpSecurity) -> u16 {
    match security {
        SmtpSecurity::Tls => 465,
        SmtpSecurity::StartTls => 587,
        SmtpSecurity::None => 25,
    }
}

/// What one round of delivery did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub delivered: usize,
    /// Attempts that failed (retried later or, at the last attempt, recorded `Failed`).
    pub failed: usize,
    /// When the next pending notice is due.
    pub next: Option<DateTime<Utc>>,
}

/// Sends every notice due at `now` that no other process holds, records each attempt, and
/// says when the next one is due. Errors only when the history cannot be read or written;
/// a destination's failure is recorded, logged, and retried.
pub async fn deliver_due(svc: &Arc<Pgvault>, now: DateTime<Utc>) -> Result<Delivered> {
    let mut out = Delivered::default();
    for (delivery_seq, incident, destination, condition) in claim_due(svc, now)? {
        let sent = send(svc, &destination, &incident, condition, now).await;
        record_attempt(svc, delivery_seq, &destination, sent.as_ref().err(), now)?;
        match sent {
            Ok(()) => out.delivered += 1,
            Err(e) => {
                out.failed += 1;
                tracing::warn!(destination = %destination.name, alert = %incident.id, condition = %condition, "alert delivery failed: {e}");
            }
        }
    }
    out.next = svc.next_alert_delivery()?;
    Ok(out)
}

/// `alert destination test`: sends a test incident's `Fired` notice to `name` now, records
/// the destination's health as any attempt does, and says how it went.
pub async fn send_test(svc: &Arc<Pgvault>, name: &str) -> Result<()> {
    let destination = svc.alert_destination(name)?;
    let now = svc.now();
    let incident = Incident {
        id: uuid::Uuid::new_v4().to_string(),
        kind: AlertKind::BackupFailure,
        severity: "Sev4".into(),
        vault: destination.vault.clone(),
        instance: None,
        condition: Condition::Fired,
        count: 1,
        fired: now,
        last: now,
        resolved: None,
        description: format!(
            "A test alert from pgvault to the destination `{}`; nothing is wrong",
            destination.name
        ),
        job_id: None,
        error_code: None,
    };
    let sent = send(svc, &destination, &incident, Condition::Fired, now).await;
    record_health(svc, &destination.name, sent.as_ref().err(), now)?;
    sent.map_err(|e| {
        Error::new(
            ErrorCode::AlertDeliveryFailed,
            format!("the test alert to `{}` failed: {e}", destination.name),
        )
    })
}

type Claimed = (i64, Incident, Destination, Condition);

/// The notices due at `now`, claimed for [`CLAIM_FOR`] so no other process sends them too.
fn claim_due(svc: &Pgvault, now: DateTime<Utc>) -> Result<Vec<Claimed>> {
    let mut conn = svc.history().conn();
    let mut run = || -> std::result::Result<Vec<Claimed>, crate::history::HistoryError> {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let due = {
            let mut stmt = tx.prepare(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM alert_deliveries WHERE state = 'Pending' \
                 AND next_attempt_time <= ?1 AND (claimed_until IS NULL OR claimed_until <= ?1) \
                 ORDER BY seq"
            ))?;
            collect(stmt.query_map([db_time(now)], delivery_row)?)?
        };
        let mut out = Vec::new();
        for delivery in due {
            let incident = tx
                .query_row(
                    &format!("SELECT {INCIDENT_COLUMNS} FROM alert_incidents WHERE id = ?1"),
                    [&delivery.incident_id],
                    incident_row,
                )
                .optional_row()?;
            let destination = tx
                .query_row(
                    &format!(
                        "SELECT {} FROM alert_destinations WHERE name = ?1",
                        super::DESTINATION_COLUMNS
                    ),
                    [&delivery.destination],
                    super::destination_row,
                )
                .optional_row()?;
            let (Some(incident), Some(destination)) = (incident, destination) else {
                tx.execute(
                    "UPDATE alert_deliveries SET state = 'Failed', next_attempt_time = NULL, \
                     last_error = 'its incident or destination is gone' WHERE seq = ?1",
                    [delivery.seq],
                )?;
                continue;
            };
            tx.execute(
                "UPDATE alert_deliveries SET claimed_until = ?2 WHERE seq = ?1",
                params![delivery.seq, db_time(now + CLAIM_FOR)],
            )?;
            out.push((delivery.seq, incident, destination, delivery.condition));
        }
        tx.commit()?;
        Ok(out)
    };
    run().map_err(super::alert_err)
}

/// `query_row(..).optional()` for rows read through a fallible builder.
trait OptionalRow<T> {
    fn optional_row(self) -> std::result::Result<Option<T>, crate::history::HistoryError>;
}

impl<T> OptionalRow<T> for super::RowResult<T> {
    fn optional_row(self) -> std::result::Result<Option<T>, crate::history::HistoryError> {
        match self {
            Ok(inner) => Ok(Some(inner?)),
            Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// Records one attempt of notice `seq`: delivered, or failed and retried after
/// [`backoff`] (or `Failed` at the last attempt); and the destination's health.
fn record_attempt(
    svc: &Pgvault,
    seq: i64,
    destination: &Destination,
    error: Option<&String>,
    now: DateTime<Utc>,
) -> Result<()> {
    {
        let conn = svc.history().conn();
        let attempts: i64 = conn
            .query_row(
                "SELECT attempts FROM alert_deliveries WHERE seq = ?1",
                [seq],
                |r| r.get(0),
            )
            .map_err(|e| super::alert_err(e.into()))?;
        let attempts = u32::try_from(attempts).unwrap_or(0) + 1;
        let updated = match error {
            None => conn.execute(
                "UPDATE alert_deliveries SET state = 'Delivered', attempts = ?2, \
                 next_attempt_time = NULL, claimed_until = NULL, last_attempt_time = ?3, \
                 delivered_time = ?3, last_error = NULL WHERE seq = ?1",
                params![seq, attempts, db_time(now)],
            ),
            Some(e) if attempts >= MAX_ATTEMPTS => conn.execute(
                "UPDATE alert_deliveries SET state = 'Failed', attempts = ?2, \
                 next_attempt_time = NULL, claimed_until = NULL, last_attempt_time = ?3, \
                 last_error = ?4 WHERE seq = ?1",
                params![seq, attempts, db_time(now), e],
            ),
            Some(e) => conn.execute(
                "UPDATE alert_deliveries SET attempts = ?2, next_attempt_time = ?4, \
                 claimed_until = NULL, last_attempt_time = ?3, last_error = ?5 WHERE seq = ?1",
                params![
                    seq,
                    attempts,
                    db_time(now),
                    db_time(now + backoff(attempts)),
                    e
                ],
            ),
        };
        updated.map_err(|e| super::alert_err(e.into()))?;
    }
    record_health(svc, &destination.name, error, now)
}

/// A destination's health after an attempt: a success clears its failure; a failure sets
/// `failing_since` (if not already failing) and `last_error`.
fn record_health(
    svc: &Pgvault,
    name: &str,
    error: Option<&String>,
    now: DateTime<Utc>,
) -> Result<()> {
    let conn = svc.history().conn();
    let updated = match error {
        None => conn.execute(
            "UPDATE alert_destinations SET last_success_time = ?2, failing_since = NULL, \
             last_error = NULL WHERE name = ?1",
            params![name, db_time(now)],
        ),
        Some(e) => conn.execute(
            "UPDATE alert_destinations SET failing_since = coalesce(failing_since, ?2), \
             last_error = ?3 WHERE name = ?1",
            params![name, db_time(now), e],
        ),
    };
    updated.map_err(|e| super::alert_err(e.into()))?;
    Ok(())
}

/// The ARM ids an incident is about: its instance's, else its vault's.
async fn targets(svc: &Pgvault, incident: &Incident) -> Vec<String> {
    let Some(vault) = &incident.vault else {
        return Vec::new();
    };
    // A deleted vault's group is unknown: the default group names it still.
    let group = svc
        .vault_group(vault)
        .await
        .unwrap_or_else(|_| ResourceGroup::default());
    let vault_ref = VaultRef::new(svc.subscription_id().clone(), group, vault);
    vec![match &incident.instance {
        Some(instance) => vault_ref.instance_id(instance),
        None => vault_ref.id(),
    }]
}

/// One send of one notice. The error is for the record and the log: it names what failed
/// and never holds a secret.
async fn send(
    svc: &Arc<Pgvault>,
    destination: &Destination,
    incident: &Incident,
    condition: Condition,
    now: DateTime<Utc>,
) -> std::result::Result<(), String> {
    let targets = targets(svc, incident).await;
    let payload = super::common_alert_schema(
        incident,
        condition,
        svc.subscription_id().as_str(),
        &targets,
    );
    match &destination.target {
        DeliveryTarget::Webhook { url, bearer_token } => {
            post_webhook(url, bearer_token.as_ref(), &payload).await
        }
        DeliveryTarget::Email(email) => send_email(email, incident, condition, &payload).await,
        DeliveryTarget::Script { path } => {
            match crate::script_run::run_alert_hook(svc.clone(), path, &payload, now).await {
                Ok(job) => match job.state.error() {
                    None => Ok(()),
                    Some(e) => Err(format!(
                        "the hook {} failed (job {}): {}: {}",
                        path.display(),
                        job.id,
                        e.code,
                        e.message
                    )),
                },
                Err(e) => Err(format!(
                    "the hook {} could not run: {}",
                    path.display(),
                    e.message
                )),
            }
        }
    }
}

async fn post_webhook(
    url: &str,
    bearer: Option<&SecretRef>,
    payload: &Value,
) -> std::result::Result<(), String> {
    let (url, shown) = match parse_webhook_url(url).map_err(|e| e.message)? {
        WebhookUrl::Plain(url) => {
            let shown = url.to_string();
            (url, shown)
        }
        WebhookUrl::Secret(reference) => {
            let value = reference.resolve().await.map_err(|e| e.to_string())?;
            let url = url::Url::parse(value.expose_secret())
                .map_err(|_| format!("the secret {reference} does not hold a URL"))?;
            if !matches!(url.scheme(), "https" | "http") {
                return Err(format!(
                    "the secret {reference} does not hold an http(s) URL"
                ));
            }
            (url, format!("the URL in {reference}"))
        }
    };
    let client = reqwest::Client::builder()
        .timeout(SEND_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", e.without_url()))?;
    let mut request = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(payload.to_string());
    if let Some(reference) = bearer {
        let token = reference.resolve().await.map_err(|e| e.to_string())?;
        request = request.bearer_auth(token.expose_secret());
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("POST to {shown} failed: {}", e.without_url()))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("POST to {shown} answered {status}"))
    }
}

async fn send_email(
    email: &EmailConfig,
    incident: &Incident,
    condition: Condition,
    payload: &Value,
) -> std::result::Result<(), String> {
    use lettre::message::{Mailbox, header::ContentType};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};

    let parse = |a: &str| a.parse::<Mailbox>().map_err(|e| format!("`{a}`: {e}"));
    let scope = match (&incident.instance, &incident.vault) {
        (Some(i), Some(v)) => format!("{i} (vault {v})"),
        (None, Some(v)) => format!("vault {v}"),
        _ => "this host".to_owned(),
    };
    let subject = format!(
        "{condition}: {} {} on {scope}",
        incident.severity,
        incident.kind.rule_name()
    );
    let body = format!(
        "{subject}\n\n{}\n\nOccurrences: {}\nFired: {}\n{}\nAlert id: {}\n\n{}\n",
        incident.description,
        incident.count,
        incident.fired,
        match incident
            .resolved
            .filter(|_| condition == Condition::Resolved)
        {
            Some(t) => format!("Resolved: {t}"),
            None => String::new(),
        },
        incident.id,
        serde_json::to_string_pretty(payload).unwrap_or_default()
    );
    let mut message = Message::builder()
        .from(parse(&email.from)?)
        .subject(subject);
    for to in &email.to {
        message = message.to(parse(to)?);
    }
    let message = message
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| format!("cannot build the email: {e}"))?;

    let server = email.server.as_str();
    let mut transport = match email.security {
        SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(server),
        SmtpSecurity::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(server),
        SmtpSecurity::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
            server,
        )),
    }
    .map_err(|e| format!("SMTP server {server}: {e}"))?
    .port(email.port.unwrap_or_else(|| default_port(email.security)))
    .timeout(Some(SEND_TIMEOUT));
    if let (Some(user), Some(reference)) = (&email.username, &email.password) {
        let password = reference.resolve().await.map_err(|e| e.to_string())?;
        transport = transport.credentials(Credentials::new(
            user.clone(),
            password.expose_secret().to_owned(),
        ));
    }
    transport
        .build()
        .send(message)
        .await
        .map(|_| ())
        .map_err(|e| format!("sending the email through {server} failed: {e}"))
}
