//! Alerts end to end inside the host, against receivers the tests start on loopback: a
//! webhook receiver (a few lines of HTTP/1.1) and an SMTP sink (SMTP's dialogue, a few
//! lines of tokio). The instances point at a database that does not exist, so every backup
//! fails at once with a job: what is under test is what the failures raise, group, send and
//! retry. Resolution by a real successful backup is proven end to end (tests/e2e/alerts.rs).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use pgvault_core::engine::Vault;
use pgvault_core::engine::home::Home;
use pgvault_core::model::job::{JobFilter, JobOutcome, JobStatus, NewJob, Operation};
use pgvault_core::model::policy::BackupPolicy;
use pgvault_core::store::VaultStore;
use pgvault_core::store::lock::{LockKind, VaultLock};
use pgvault_core::store::paths;
use pgvault_host::alerts::{
    AlertKind, Condition, DeliveryState, DeliveryTarget, EmailConfig, SmtpSecurity, backoff,
    deliver_due,
};
use pgvault_host::history::current_owner;
use pgvault_host::serve::{ServeOptions, TokioClock, serve};
use pgvault_host::service::Pgvault;

fn t(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn hourly_policy() -> BackupPolicy {
    let policy = json!({
        "datasourceTypes": ["Microsoft.DBforPostgreSQL/flexibleServers/databases"],
        "objectType": "BackupPolicy",
        "policyRules": [
            {
                "name": "BackupHourly", "objectType": "AzureBackupRule",
                "backupParameters": {"backupType": "Full", "objectType": "AzureBackupParams"},
                "dataStore": {"dataStoreType": "VaultStore", "objectType": "DataStoreInfoBase"},
                "trigger": {
                    "objectType": "ScheduleBasedTriggerContext",
                    "schedule": {"repeatingTimeIntervals": ["R/2030-01-01T00:00:00+00:00/PT1H"], "timeZone": "UTC"},
                    "taggingCriteria": [{"isDefault": true, "taggingPriority": 99, "tagInfo": {"tagName": "Default"}}]
                }
            },
            {"name": "Default", "objectType": "AzureRetentionRule", "isDefault": true,
             "lifecycles": [{
                "sourceDataStore": {"dataStoreType": "VaultStore", "objectType": "DataStoreInfoBase"},
                "deleteAfter": {"duration": "P7D", "objectType": "AbsoluteDeleteOption"}
             }]}
        ]
    });
    BackupPolicy::from_json(&policy.to_string()).unwrap()
}

/// A home with vault `V`, the hourly policy and instance `db1` protected at `protected`,
/// whose database is unreachable. Returns the service (with `lock_wait`) and the vault's URL.
async fn home(
    dir: &std::path::Path,
    protected: DateTime<Utc>,
    lock_wait: Duration,
) -> (Arc<Pgvault>, String) {
    let svc = Pgvault::open(Home::at(dir.join("home")))
        .unwrap()
        .with_lock_wait(lock_wait);
    let url = format!("file://{}", dir.join("vault").display());
    svc.create_vault("V", &Default::default(), Some(&url))
        .await
        .unwrap();
    svc.create_policy("V", "Hourly", &hourly_policy())
        .await
        .unwrap();
    let vault = Vault::open(VaultStore::open(&url).unwrap()).await.unwrap();
    let instance = json!({
        "name": "db1",
        "properties": {
            "dataSourceInfo": {
                "datasourceType": "Microsoft.DBforPostgreSQL/flexibleServers/databases",
                "resourceID": "postgres://127.0.0.1:1/db1",
                "resourceName": "db1",
            },
            "datasourceAuthCredentials": {
                "objectType": "SecretStoreBasedAuthCredentials",
                "secretStoreResource": {"secretStoreType": "Environment", "uri": "env:PGVAULT_TEST_NO_SUCH_SECRET"},
            },
            "friendlyName": "db1",
            "policyInfo": {"policyId": "/backupPolicies/Hourly"},
            "currentProtectionState": "ProtectionConfigured",
        }
    });
    vault
        .store
        .put_json(&paths::instance("db1"), &instance)
        .await
        .unwrap();
    let mut new = NewJob::new(Operation::ConfigureBackup, "V", protected, current_owner());
    new.backup_instance_name = Some("db1".to_string());
    let job = svc.history().start(&new).unwrap();
    svc.history()
        .finish(
            job.id,
            &JobOutcome::Completed {
                recovery_point_id: None,
            },
            protected,
            0,
            0,
        )
        .unwrap();
    (Arc::new(svc), url)
}

/// A request the webhook receiver got: its headers (lower-cased names) and its JSON body.
#[derive(Debug, Clone)]
struct Received {
    headers: Vec<(String, String)>,
    body: Value,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A webhook receiver on loopback answering each POST with the status `status` holds.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    status: Arc<Mutex<u16>>,
}

async fn receiver() -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let status = Arc::new(Mutex::new(200u16));
    let (g, s) = (got.clone(), status.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (g, s) = (g.clone(), s.clone());
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                let mut headers = Vec::new();
                let mut line = String::new();
                reader.read_line(&mut line).await.unwrap(); // request line
                loop {
                    line.clear();
                    reader.read_line(&mut line).await.unwrap();
                    let l = line.trim_end();
                    if l.is_empty() {
                        break;
                    }
                    let (n, v) = l.split_once(':').unwrap();
                    headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
                }
                let length: usize = headers
                    .iter()
                    .find(|(n, _)| n == "content-length")
                    .map(|(_, v)| v.parse().unwrap())
                    .unwrap_or(0);
                let mut body = vec![0; length];
                reader.read_exact(&mut body).await.unwrap();
                let code = *s.lock().unwrap();
                g.lock().unwrap().push(Received {
                    headers,
                    body: serde_json::from_slice(&body).unwrap(),
                });
                let answer =
                    format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                reader.get_mut().write_all(answer.as_bytes()).await.unwrap();
            });
        }
    });
    Receiver { url, got, status }
}

async fn fail_backups(svc: &Pgvault, n: usize) {
    for _ in 0..n {
        let (job, _) = svc
            .adhoc_backup("V", "db1", "BackupHourly", None)
            .await
            .unwrap();
        assert_eq!(job.status(), JobStatus::Failed);
    }
}

/// Five failed backups are one incident of count 5, notified once, to every destination
/// that covers the vault (and none that covers another), in the common alert schema, with
/// the bearer token read from its secret reference.
#[tokio::test]
async fn failures_of_one_instance_are_one_incident_notified_once() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, _) = home(
        dir.path(),
        t("2030-01-01T00:00:00Z"),
        Duration::from_secs(1),
    )
    .await;
    let hook = receiver().await;
    let other = receiver().await;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let bearer = format!("file:{}", token_file.display());
    svc.add_alert_destination(
        "oncall",
        None,
        DeliveryTarget::Webhook {
            url: hook.url.clone(),
            bearer_token: Some(bearer.parse().unwrap()),
        },
    )
    .await
    .unwrap();
    svc.create_vault(
        "Other",
        &Default::default(),
        Some(&format!("file://{}", dir.path().join("other").display())),
    )
    .await
    .unwrap();
    svc.add_alert_destination(
        "other-team",
        Some("Other"),
        DeliveryTarget::Webhook {
            url: other.url.clone(),
            bearer_token: None,
        },
    )
    .await
    .unwrap();

    fail_backups(&svc, 5).await;
    let alerts = svc.alerts(false).unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let incident = &alerts[0].incident;
    assert_eq!(incident.kind, AlertKind::BackupFailure);
    assert_eq!(incident.count, 5);
    assert_eq!(incident.condition, Condition::Fired);
    assert_eq!(incident.instance.as_deref(), Some("db1"));
    assert_eq!(
        alerts[0].deliveries.len(),
        1,
        "one notice, to `oncall` only"
    );

    let sent = deliver_due(&svc, svc.now()).await.unwrap();
    assert_eq!((sent.delivered, sent.failed, sent.next), (1, 0, None));
    // Delivered once: a second round sends nothing.
    let again = deliver_due(&svc, svc.now()).await.unwrap();
    assert_eq!((again.delivered, again.failed), (0, 0));

    let got = hook.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert!(other.got.lock().unwrap().is_empty());
    assert_eq!(got[0].header("authorization"), Some("Bearer s3cret-token"));
    assert_eq!(got[0].header("content-type"), Some("application/json"));
    let e = &got[0].body["data"]["essentials"];
    assert_eq!(got[0].body["schemaId"], "azureMonitorCommonAlertSchema");
    assert_eq!(e["alertRule"], "Backup Failure");
    assert_eq!(e["monitorCondition"], "Fired");
    assert_eq!(e["severity"], "Sev1");
    assert_eq!(
        e["alertTargetIDs"][0],
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/pgvault/providers/Microsoft.DataProtection/backupVaults/V/backupInstances/db1"
    );
    assert!(e["alertId"].as_str().unwrap().ends_with(&format!(
        "/providers/Microsoft.AlertsManagement/alerts/{}",
        incident.id
    )));
    assert_eq!(got[0].body["data"]["alertContext"]["occurrences"], 5);
    // The token is never stored: not in the destination's row, not in the history file.
    let db = std::fs::read(svc.history().path()).unwrap();
    assert!(!String::from_utf8_lossy(&db).contains("s3cret-token"));

    let d = &svc.alert(&incident.id).unwrap().unwrap().deliveries[0];
    assert_eq!(d.state, DeliveryState::Delivered);
    assert_eq!(d.attempts, 1);
    assert!(
        svc.alert_destination("oncall")
            .unwrap()
            .last_success
            .is_some()
    );
}

/// A destination that fails is retried with backoff (30 s, then 60 s...), shows as failing
/// since its first failure with its last error, and recovers at the first success; a notice
/// whose attempts run out is recorded `Failed`.
#[tokio::test]
async fn a_failing_destination_is_retried_with_backoff_and_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, _) = home(
        dir.path(),
        t("2030-01-01T00:00:00Z"),
        Duration::from_secs(1),
    )
    .await;
    let hook = receiver().await;
    *hook.status.lock().unwrap() = 503;
    svc.add_alert_destination(
        "flaky",
        None,
        DeliveryTarget::Webhook {
            url: hook.url.clone(),
            bearer_token: None,
        },
    )
    .await
    .unwrap();
    fail_backups(&svc, 1).await;
    let t0 = svc.now() + TimeDelta::seconds(1);

    let first = deliver_due(&svc, t0).await.unwrap();
    assert_eq!((first.delivered, first.failed), (0, 1));
    assert_eq!(first.next, Some(t0 + backoff(1)));
    assert_eq!(backoff(1), TimeDelta::seconds(30));
    let dest = svc.alert_destination("flaky").unwrap();
    assert_eq!(dest.failing_since, Some(t0));
    assert!(
        dest.last_error.as_deref().unwrap().contains("503"),
        "{dest:?}"
    );
    // Not due before its backoff.
    let early = deliver_due(&svc, t0 + TimeDelta::seconds(29))
        .await
        .unwrap();
    assert_eq!((early.delivered, early.failed), (0, 0));
    assert_eq!(hook.got.lock().unwrap().len(), 1);

    let t1 = t0 + backoff(1);
    let second = deliver_due(&svc, t1).await.unwrap();
    assert_eq!(second.failed, 1);
    assert_eq!(second.next, Some(t1 + TimeDelta::seconds(60)));
    assert_eq!(
        svc.alert_destination("flaky").unwrap().failing_since,
        Some(t0),
        "failing since the first failure"
    );

    *hook.status.lock().unwrap() = 200;
    let t2 = t1 + backoff(2);
    let third = deliver_due(&svc, t2).await.unwrap();
    assert_eq!((third.delivered, third.failed, third.next), (1, 0, None));
    let dest = svc.alert_destination("flaky").unwrap();
    assert_eq!((dest.failing_since, dest.last_error), (None, None));
    assert_eq!(dest.last_success, Some(t2));
    let alerts = svc.alerts(false).unwrap();
    assert_eq!(alerts[0].deliveries[0].attempts, 3);
    assert_eq!(hook.got.lock().unwrap().len(), 3);

    // A receiver that never answers 2xx: after the last attempt the notice is Failed.
    *hook.status.lock().unwrap() = 500;
    let id = alerts[0].incident.id.clone();
    svc.resolve_alert(&id).unwrap();
    let mut at = t2;
    for _ in 0..pgvault_host::alerts::MAX_ATTEMPTS {
        at += TimeDelta::hours(1);
        deliver_due(&svc, at).await.unwrap();
    }
    let resolved = &svc.alert(&id).unwrap().unwrap().deliveries[1];
    assert_eq!(resolved.condition, Condition::Resolved);
    assert_eq!(resolved.state, DeliveryState::Failed);
    assert_eq!(resolved.attempts, pgvault_host::alerts::MAX_ATTEMPTS);
    assert_eq!(resolved.next_attempt, None);
    assert!(
        deliver_due(&svc, at + TimeDelta::days(1))
            .await
            .unwrap()
            .next
            .is_none()
    );
}

/// The host loop on tokio's paused clock: with the vault held (so no backup can even start,
/// and none fails), the hourly backup of 01:00 is overdue at 01:30 with a grace of 30
/// minutes, not before; the next missed occurrence counts once more; and the webhook gets
/// one notice, sent by the loop itself.
#[tokio::test(start_paused = true)]
async fn a_backup_overdue_on_a_paused_clock_raises_one_alert_at_its_time() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, url) = home(
        dir.path(),
        t("2030-01-01T00:30:00Z"),
        Duration::from_secs(1),
    )
    .await;
    let hook = receiver().await;
    svc.add_alert_destination(
        "oncall",
        None,
        DeliveryTarget::Webhook {
            url: hook.url.clone(),
            bearer_token: None,
        },
    )
    .await
    .unwrap();
    let held = VaultLock::acquire(
        &VaultStore::open(&url).unwrap(),
        LockKind::Exclusive,
        "test",
    )
    .await
    .unwrap();

    let (events, rx) = mpsc::channel(4);
    let clock = Arc::new(TokioClock::starting_at(t("2030-01-01T00:40:00Z")));
    let opts = ServeOptions {
        overdue_grace: TimeDelta::minutes(30),
        ..ServeOptions::default()
    };
    let host = tokio::spawn(serve(svc.clone(), opts, clock, rx));
    let overdue = |svc: &Pgvault| {
        svc.alerts(false)
            .unwrap()
            .into_iter()
            .filter(|a| a.incident.kind == AlertKind::BackupOverdue)
            .collect::<Vec<_>>()
    };

    // 01:29: the 01:00 backup is missing, but within its grace.
    tokio::time::sleep(Duration::from_secs(49 * 60)).await;
    assert!(overdue(&svc).is_empty());
    // 01:31: overdue since 01:30, fired then.
    tokio::time::sleep(Duration::from_secs(2 * 60)).await;
    let found = overdue(&svc);
    assert_eq!(found.len(), 1, "{found:#?}");
    let incident = &found[0].incident;
    assert_eq!(incident.count, 1);
    assert!(
        incident.fired >= t("2030-01-01T01:30:00Z") && incident.fired < t("2030-01-01T01:30:01Z"),
        "fired at {}",
        incident.fired
    );
    // No backup job ran (none could start), so this is not a failure.
    assert!(
        svc.jobs(&JobFilter::default().operation(Operation::ScheduledBackup))
            .unwrap()
            .is_empty()
    );
    // 02:31: the 02:00 occurrence is missed too: the same incident, counted once more, and
    // still one notice, which the loop delivered.
    tokio::time::sleep(Duration::from_secs(60 * 60)).await;
    let found = overdue(&svc);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].incident.count, 2);
    assert_eq!(found[0].deliveries.len(), 1);
    assert_eq!(found[0].deliveries[0].state, DeliveryState::Delivered);
    let got = hook.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].body["data"]["essentials"]["alertRule"],
        "Backup Overdue"
    );

    events
        .send(pgvault_host::serve::Event::Shutdown)
        .await
        .unwrap();
    host.await.unwrap().unwrap();
    held.release().await.unwrap();
}

/// The Rhai hook runs in the sandbox as a `ScriptRun` job with the alert as a map; a hook
/// that throws is a failed delivery, retried.
#[tokio::test]
async fn a_rhai_hook_gets_the_alert_as_a_map() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, _) = home(
        dir.path(),
        t("2030-01-01T00:00:00Z"),
        Duration::from_secs(1),
    )
    .await;
    let hook = dir.path().join("on-alert.rhai");
    std::fs::write(
        &hook,
        r#"let a = alert();
let e = a.data.essentials;
if e.monitorCondition != "Fired" { throw "expected Fired"; }
print(`${e.alertRule} on ${a.data.alertContext.backupInstanceName}: ${e.severity}`);
"#,
    )
    .unwrap();
    svc.add_alert_destination("hook", None, DeliveryTarget::Script { path: hook.clone() })
        .await
        .unwrap();
    fail_backups(&svc, 1).await;
    let sent = deliver_due(&svc, svc.now()).await.unwrap();
    assert_eq!((sent.delivered, sent.failed), (1, 0));
    let runs = svc
        .jobs(&JobFilter::default().operation(Operation::ScriptRun))
        .unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status(), JobStatus::Completed);
    assert_eq!(
        runs[0].script_output.as_deref().map(str::trim),
        Some("Backup Failure on db1: Sev1")
    );
    // The hook stays where it is (it is not a drop-in filed away).
    assert!(hook.is_file());

    // The resolution notice makes this hook throw: a failed delivery, with the job's error.
    let id = svc.alerts(false).unwrap()[0].incident.id.clone();
    svc.resolve_alert(&id).unwrap();
    let sent = deliver_due(&svc, svc.now()).await.unwrap();
    assert_eq!((sent.delivered, sent.failed), (0, 1));
    let d = &svc.alert(&id).unwrap().unwrap().deliveries[1];
    assert_eq!(d.state, DeliveryState::Pending);
    assert!(
        d.last_error.as_deref().unwrap().contains("expected Fired"),
        "{d:?}"
    );
}

/// What the SMTP sink received: the envelope and the message.
#[derive(Debug, Default, Clone)]
struct Mail {
    from: String,
    to: Vec<String>,
    data: String,
}

/// An SMTP sink on loopback: SMTP's dialogue, enough for one message per connection.
async fn smtp_sink() -> (u16, Arc<Mutex<Vec<Mail>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let g = g.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 sink ESMTP\r\n").await.unwrap();
                let mut mail = Mail::default();
                while let Ok(Some(line)) = lines.next_line().await {
                    let upper = line.to_ascii_uppercase();
                    let answer: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                        b"250 sink\r\n"
                    } else if upper.starts_with("MAIL FROM:") {
                        mail.from = line[10..].trim().to_owned();
                        b"250 OK\r\n"
                    } else if upper.starts_with("RCPT TO:") {
                        mail.to.push(line[8..].trim().to_owned());
                        b"250 OK\r\n"
                    } else if upper == "DATA" {
                        write.write_all(b"354 go on\r\n").await.unwrap();
                        while let Ok(Some(l)) = lines.next_line().await {
                            if l == "." {
                                break;
                            }
                            mail.data.push_str(&l);
                            mail.data.push('\n');
                        }
                        g.lock().unwrap().push(std::mem::take(&mut mail));
                        b"250 queued\r\n"
                    } else if upper == "QUIT" {
                        write.write_all(b"221 bye\r\n").await.unwrap();
                        return;
                    } else {
                        b"250 OK\r\n"
                    };
                    write.write_all(answer).await.unwrap();
                }
            });
        }
    });
    (port, got)
}

/// An email destination sends over SMTP to each recipient, with the alert in the subject and
/// the common alert schema in the body.
#[tokio::test]
async fn an_email_destination_sends_through_smtp() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, _) = home(
        dir.path(),
        t("2030-01-01T00:00:00Z"),
        Duration::from_secs(1),
    )
    .await;
    let (port, got) = smtp_sink().await;
    svc.add_alert_destination(
        "dba",
        None,
        DeliveryTarget::Email(EmailConfig {
            server: "127.0.0.1".into(),
            port: Some(port),
            security: SmtpSecurity::None,
            username: None,
            password: None,
            from: "pgvault@example.com".into(),
            to: vec!["dba@example.com".into(), "oncall@example.com".into()],
        }),
    )
    .await
    .unwrap();
    fail_backups(&svc, 1).await;
    let sent = deliver_due(&svc, svc.now()).await.unwrap();
    assert_eq!(
        (sent.delivered, sent.failed),
        (1, 0),
        "{:?}",
        svc.alert_destination("dba")
    );
    let mails = got.lock().unwrap().clone();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].from, "<pgvault@example.com>");
    assert_eq!(
        mails[0].to,
        vec![
            "<dba@example.com>".to_owned(),
            "<oncall@example.com>".to_owned()
        ]
    );
    assert!(
        mails[0]
            .data
            .contains("Subject: Fired: Sev1 Backup Failure on db1 (vault V)"),
        "{}",
        mails[0].data
    );
    assert!(mails[0].data.contains("azureMonitorCommonAlertSchema"));
}

/// Destinations are checked when added: a URL carrying a token in the clear, plain http off
/// this machine, a password given as itself rather than a reference.
#[tokio::test]
async fn destinations_refuse_secrets_in_the_clear() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, _) = home(
        dir.path(),
        t("2030-01-01T00:00:00Z"),
        Duration::from_secs(1),
    )
    .await;
    let webhook = |url: &str| DeliveryTarget::Webhook {
        url: url.into(),
        bearer_token: None,
    };
    for (url, says) in [
        ("https://hooks.example/x?sig=abc", "secret reference"),
        ("https://user:pw@hooks.example/x", "secret reference"),
        ("http://hooks.example/x", "https"),
    ] {
        let e = svc
            .add_alert_destination("w", None, webhook(url))
            .await
            .unwrap_err();
        assert_eq!(
            e.code,
            pgvault_core::model::code::ErrorCode::UserErrorInvalidAlertDestination
        );
        assert!(e.message.contains(says), "{url}: {}", e.message);
        assert!(!e.message.contains("abc") && !e.message.contains("pw@"));
    }
    let e = pgvault_host::alerts::parse_secret_ref("--smtp-password", "hunter2").unwrap_err();
    assert!(!e.message.contains("hunter2"), "{}", e.message);
    // A reference is fine, and a second destination of the same name is refused.
    svc.add_alert_destination("w", None, webhook("env:PGVAULT_TEST_WEBHOOK_URL"))
        .await
        .unwrap();
    let e = svc
        .add_alert_destination("W", None, webhook("https://hooks.example/y"))
        .await
        .unwrap_err();
    assert_eq!(
        e.code,
        pgvault_core::model::code::ErrorCode::UserErrorAlertDestinationExists
    );
}

/// A backup whose process died (killed mid-backup) is failed by the next pgvault that opens
/// the home, and that failure raises the alert as any other does.
#[tokio::test]
async fn a_backup_left_running_by_a_dead_process_raises_its_alert() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, _) = home(
        dir.path(),
        t("2030-01-01T00:00:00Z"),
        Duration::from_secs(1),
    )
    .await;
    // A pid no process has: above the kernel's pid_max.
    let dead = pgvault_core::model::job::JobOwner::new(
        4_194_305,
        pgvault_host::history::local_host_name(),
    );
    let mut new = NewJob::new(
        Operation::ScheduledBackup,
        "V",
        t("2030-01-01T01:00:00Z"),
        dead,
    );
    new.backup_instance_name = Some("db1".into());
    svc.history().start(&new).unwrap();
    assert!(svc.alerts(false).unwrap().is_empty());
    drop(svc);

    let reopened = Pgvault::open(Home::at(dir.path().join("home"))).unwrap();
    let alerts = reopened.alerts(false).unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0].incident.kind, AlertKind::BackupFailure);
    assert_eq!(
        alerts[0].incident.error_code.as_deref(),
        Some("JobInterrupted")
    );
}

/// Security events are never grouped: each weakening is its own Sev0 alert, notified; a
/// damage alert is resolved by the next check that finds the vault sound.
#[tokio::test]
async fn security_events_stand_alone_and_a_sound_check_resolves_damage() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, _) = home(
        dir.path(),
        t("2030-01-01T00:00:00Z"),
        Duration::from_secs(1),
    )
    .await;
    let hook = receiver().await;
    svc.add_alert_destination(
        "oncall",
        Some("v"),
        DeliveryTarget::Webhook {
            url: hook.url.clone(),
            bearer_token: None,
        },
    )
    .await
    .unwrap();
    let first = svc
        .security_setting_weakened("V", "soft delete state", "On", "Off")
        .unwrap();
    let second = svc
        .security_setting_weakened("V", "immutability state", "Unlocked", "Disabled")
        .unwrap();
    assert_ne!(first.id, second.id);
    assert_eq!((first.count, second.count), (1, 1));
    assert_eq!(first.severity, "Sev0");
    let sent = deliver_due(&svc, svc.now()).await.unwrap();
    assert_eq!(
        sent.delivered, 2,
        "a destination of vault `v` covers `V`: names ignore case"
    );
    assert_eq!(
        hook.got.lock().unwrap()[0].body["data"]["essentials"]["signalType"],
        "Activity Log"
    );

    let damage = pgvault_host::alerts::AlertEvent::new(
        AlertKind::VaultDamage,
        "a pack is missing",
        svc.now(),
    )
    .on("V", None);
    let raised = svc.raise_alert(&damage).unwrap();
    let checked = svc
        .check_vault("V", pgvault_core::store::check::ReadData::Structure)
        .await
        .unwrap();
    assert_eq!(
        checked.status,
        pgvault_core::engine::verify::VerifyStatus::Ok
    );
    let after = svc.alert(&raised.id).unwrap().unwrap();
    assert_eq!(after.incident.condition, Condition::Resolved);
    assert_eq!(
        after.deliveries.last().unwrap().condition,
        Condition::Resolved
    );
    // The security alerts stay open: nothing but a person closes them.
    assert_eq!(svc.alerts(true).unwrap().len(), 2);
}
