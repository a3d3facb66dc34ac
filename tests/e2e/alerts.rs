//! Alerts and metrics with real backups: a backup that fails (its secret holds a wrong
//! password) fires one alert to a webhook receiver the test runs on loopback, a second
//! failure only counts, the next successful backup resolves it with a notice; a user's
//! deletion of a recovery point fires a security alert; and `serve --listen`'s `/metrics`
//! reports the instance after the real backups, to a Reader token only.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::sdk::Server;
use crate::support::{World, backup_args, cluster, sample_database};

/// A webhook receiver on loopback: each POST's JSON body, answered 200.
fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream);
            let mut length = 0usize;
            let mut line = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some((n, v)) = l.split_once(':')
                    && n.eq_ignore_ascii_case("content-length")
                {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            g.lock()
                .unwrap()
                .push(serde_json::from_slice(&body).unwrap());
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (url, got)
}

/// `GET path` on `base` (`http://ADDR`) with an optional bearer token: status and body.
fn get(base: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of the sample `name{labels}` in a metrics text.
fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels))
        .and_then(|rest| rest.trim().parse().ok())
}

#[test]
fn a_failed_backup_fires_once_resolves_on_success_and_shows_in_metrics() {
    let w = World::new();
    let db = sample_database("alerts", 200);
    let vault_dir = w.vault_with_policy("V");
    let secret = w.admin_secret(&db);
    let instance = w.protect("V", &db, &secret);
    let (url, got) = receiver();
    w.json(&[
        "alert",
        "destination",
        "add",
        "--name",
        "oncall",
        "--webhook-url",
        &url,
    ]);

    // The secret's password goes wrong: two failed backups.
    let secret_path = secret.trim_start_matches("file://").to_owned();
    let good = std::fs::read_to_string(&secret_path).unwrap();
    let c = cluster();
    std::fs::write(
        &secret_path,
        good.replace(
            &format!("Password={};", c.admin_password()),
            "Password=not-the-password;",
        ),
    )
    .unwrap();
    for _ in 0..2 {
        let out = w.run(&backup_args("V", &instance));
        assert!(!out.status.success(), "the backup should fail");
    }
    let alerts = w.json(&["alert", "list"]);
    let alerts = alerts.as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0]["alertRule"], "Backup Failure");
    assert_eq!(alerts[0]["monitorCondition"], "Fired");
    assert_eq!(alerts[0]["count"], 2);
    assert_eq!(alerts[0]["deliveries"][0]["state"], "Delivered");
    // The failed command itself sent the notice, once.
    {
        let got = got.lock().unwrap();
        assert_eq!(got.len(), 1);
        let e = &got[0]["data"]["essentials"];
        assert_eq!(e["monitorCondition"], "Fired");
        assert!(
            e["alertTargetIDs"][0]
                .as_str()
                .unwrap()
                .ends_with(&format!("/backupVaults/V/backupInstances/{instance}"))
        );
        assert!(!got[0].to_string().contains(c.admin_password()));
    }

    // The password is right again: the next backup resolves the alert.
    std::fs::write(&secret_path, &good).unwrap();
    w.backup("V", &instance);
    let alerts = w.json(&["alert", "list"]);
    assert_eq!(alerts[0]["monitorCondition"], "Resolved");
    assert_eq!(alerts[0]["count"], 2);
    {
        let got = got.lock().unwrap();
        assert_eq!(got.len(), 2);
        let e = &got[1]["data"]["essentials"];
        assert_eq!(e["monitorCondition"], "Resolved");
        assert!(e["resolvedDateTime"].is_string());
        assert_eq!(
            got[0]["data"]["essentials"]["alertId"], e["alertId"],
            "the resolution names the alert it ends"
        );
    }

    // A user's deletion of a recovery point is a security alert, each its own.
    w.backup("V", &instance);
    let points = w.recovery_points("V", &instance);
    let oldest = points.last().unwrap()["name"].as_str().unwrap().to_owned();
    w.json(&[
        "recovery-point",
        "delete",
        "-v",
        "V",
        "--backup-instance-name",
        &instance,
        "--recovery-point-id",
        &oldest,
        "--yes",
    ]);
    let open = w.json(&["alert", "list", "--open"]);
    let open = open.as_array().unwrap();
    assert_eq!(open.len(), 1, "{open:#?}");
    assert_eq!(open[0]["alertRule"], "Delete Backup Data");
    assert_eq!(open[0]["severity"], "Sev0");
    assert!(open[0]["description"].as_str().unwrap().contains(&oldest));
    assert_eq!(got.lock().unwrap().len(), 3);

    // A test send, and a destination that cannot be reached: the test says so, and the
    // list shows since when it fails and why.
    w.run(&["alert", "destination", "test", "--name", "oncall"]);
    assert_eq!(got.lock().unwrap().len(), 4);
    assert_eq!(
        got.lock().unwrap()[3]["data"]["essentials"]["severity"],
        "Sev4"
    );
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    w.json(&[
        "alert",
        "destination",
        "add",
        "--name",
        "dead",
        "--webhook-url",
        &dead,
    ]);
    let refused = w.fails(&["alert", "destination", "test", "--name", "dead"]);
    assert!(refused.contains("AlertDeliveryFailed"), "{refused}");
    let list = w.json(&["alert", "destination", "list"]);
    let dead_row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "dead")
        .unwrap()
        .clone();
    assert!(dead_row["failingSince"].is_string(), "{dead_row}");
    assert!(
        dead_row["lastError"].as_str().unwrap().contains("POST"),
        "{dead_row}"
    );
    let ok_row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "oncall")
        .unwrap();
    assert!(ok_row["failingSince"].is_null() && ok_row["lastSuccessDateTime"].is_string());
    w.run(&["alert", "destination", "remove", "--name", "dead"]);

    // /metrics: a Reader token, never anonymous.
    let token = w.json(&[
        "api-token",
        "create",
        "--name",
        "prometheus",
        "--role",
        "Reader",
    ]);
    let token = token["token"].as_str().unwrap().to_owned();
    let (server, base) = Server::start_with(&w, &[]);
    let (status, _) = get(&base, "/metrics", None);
    assert_eq!(status, 401);
    let (status, text) = get(&base, "/metrics", Some(&token));
    assert_eq!(status, 200, "{text}");
    drop(server);
    let labels = format!("{{vault=\"V\",instance=\"{instance}\"}}");
    let read = sample(
        &text,
        &format!("pgvault_last_successful_backup_read_bytes{labels}"),
    )
    .unwrap_or_else(|| panic!("no read bytes in:\n{text}"));
    assert!(read > 0.0);
    assert!(
        sample(
            &text,
            &format!("pgvault_last_successful_backup_timestamp_seconds{labels}")
        )
        .unwrap()
            > 1.7e9
    );
    assert!(
        sample(
            &text,
            &format!("pgvault_last_successful_backup_duration_seconds{labels}")
        )
        .unwrap()
            >= 0.0
    );
    let age = sample(
        &text,
        &format!("pgvault_newest_recovery_point_age_seconds{labels}"),
    )
    .unwrap();
    assert!((0.0..3600.0).contains(&age), "age {age}");
    let jobs = |operation: &str, status: &str| {
        sample(
            &text,
            &format!(
                "pgvault_jobs{{vault=\"V\",instance=\"{instance}\",operation=\"{operation}\",status=\"{status}\"}}"
            ),
        )
    };
    assert_eq!(jobs("OnDemandBackup", "Failed"), Some(2.0));
    assert_eq!(jobs("OnDemandBackup", "Completed"), Some(2.0));
    assert_eq!(jobs("DeleteRecoveryPoint", "Completed"), Some(1.0));
    assert!(text.contains("pgvault_alerts_fired{kind=\"DeleteBackupData\"} 1"));
    assert!(text.contains("pgvault_alert_destination_failing{destination=\"oncall\"} 0"));
    assert!(text.contains("# TYPE pgvault_jobs gauge"));

    // A pack goes missing: `backup-vault check` finds the vault damaged and says so.
    let pack = crate::support::files_under(&vault_dir.join("packs"))
        .into_iter()
        .next()
        .unwrap();
    std::fs::remove_file(&pack).unwrap();
    let checked = w.run(&["backup-vault", "check", "--vault-name", "V"]);
    assert!(!checked.status.success());
    let open = w.json(&["alert", "list", "--open"]);
    let damage: Vec<&Value> = open
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "VaultDamage")
        .collect();
    assert_eq!(damage.len(), 1, "{open:#?}");
    assert_eq!(damage[0]["alertRule"], "Backup Data Damaged");
    assert_eq!(damage[0]["vaultName"], "V");
    assert_eq!(got.lock().unwrap().len(), 5);
}
