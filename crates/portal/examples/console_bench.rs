//! How fast the console and the REST API answer with a large history: one vault whose
//! instance has 10,000 recovery points, and 100,000 jobs in the history. Each page is asked for
//! through the router (as a browser's request would be, minus the network), several times,
//! and the median and slowest times are printed.
//!
//!     cargo run --release -p pgvault-portal --example console_bench [-- --points 10000 --jobs 100000]
//!
//! The recovery points are manifests written straight into the vault (the same bytes a backup
//! writes, for one small stream): what a page costs is reading them, not making them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::{TimeDelta, Utc};
use serde_json::json;
use tower::ServiceExt as _;

use pgvault_core::engine::Vault;
use pgvault_core::model::job::{JobOutcome, NewJob, Operation};
use pgvault_core::store::{VaultStore, paths};
use pgvault_host::access::Role;
use pgvault_host::api::Home;
use pgvault_host::history::current_owner;
use pgvault_host::service::Pgvault;
use pgvault_model::resource::ResourceGroup;
use pgvault_portal::{Portal, router};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let points = arg("--points", 10_000);
    let jobs = arg("--jobs", 100_000);
    let dir = tempfile::tempdir().unwrap();
    let svc = Arc::new(Pgvault::open(Home::at(dir.path().join("home"))).unwrap());
    let url = format!("file://{}", dir.path().join("vault").display());
    svc.create_vault("V", &ResourceGroup::default(), Some(&url))
        .await
        .unwrap();
    let template = pgvault_model::templates::default_policy_template(
        pgvault_model::policy::DatasourceType::AzureDatabaseForPostgreSQLFlexibleServer,
    );
    svc.create_policy("V", "P", &template).await.unwrap();
    let vault = Vault::open(VaultStore::open(&url).unwrap()).await.unwrap();
    let instance = json!({
        "name": "db1",
        "properties": {
            "dataSourceInfo": {"datasourceType": "Microsoft.DBforPostgreSQL/flexibleServers/databases",
                "resourceID": "postgres://127.0.0.1:5432/db1", "resourceName": "db1"},
            "datasourceAuthCredentials": {"objectType": "SecretStoreBasedAuthCredentials",
                "secretStoreResource": {"secretStoreType": "Environment", "uri": "env:NOT_USED"}},
            "friendlyName": "db1", "policyInfo": {"policyId": "P"},
            "currentProtectionState": "ProtectionConfigured",
        }
    });
    vault
        .store
        .put_json(&paths::instance("db1"), &instance)
        .await
        .unwrap();

    let began = Instant::now();
    let start = Utc::now() - TimeDelta::days(3650);
    for i in 0..points {
        let id = format!("{:032x}", i as u128 * 0x9e37_79b9_7f4a_7c15);
        let time = start + TimeDelta::hours(8 * i as i64);
        let manifest = json!({
            "formatVersion": 1, "recoveryPointId": id, "backupInstanceName": "db1",
            "recoveryPointTime": time, "policyName": "P", "policyRuleName": "BackupWeekly",
            "retentionTagName": "Default", "expiryTime": null, "jobId": "",
            "datasource": {"resourceId": "postgres://127.0.0.1:5432/db1", "server": "127.0.0.1", "port": 5432, "database": "db1"},
            "postgres": {"serverVersion": "17", "pgDumpVersion": "17", "databaseSize": 1_000_000, "usernameUsed": "backup"},
            "chunker": {"algorithm": "fastcdc-2020", "minSize": 8192, "avgSize": 16384, "maxSize": 65536},
            "stream": {"length": 0, "chunksBlake3": "", "chunkCount": 0, "chunkLists": []},
            "archive": null,
            "stats": {"bytesRead": 1_000_000, "bytesStored": 20_000, "newChunks": 2, "durationMs": 900}
        });
        vault
            .store
            .put_json(&paths::recovery_point("db1", &id), &manifest)
            .await
            .unwrap();
    }
    eprintln!(
        "{points} recovery points written in {:.1?}",
        began.elapsed()
    );

    let began = Instant::now();
    let now = Utc::now();
    for i in 0..jobs {
        let at = now - TimeDelta::seconds((jobs - i) as i64 * 60);
        let operation = if i % 10 == 0 {
            Operation::Restore
        } else {
            Operation::ScheduledBackup
        };
        let mut new = NewJob::new(operation, "V", at, current_owner());
        new.backup_instance_name = Some("db1".into());
        new.datasource_name = Some("db1".into());
        let job = svc.history().start(&new).unwrap();
        let outcome = JobOutcome::Completed {
            recovery_point_id: None,
        };
        svc.history()
            .finish(
                job.id,
                &outcome,
                at + TimeDelta::seconds(30),
                1_000_000,
                20_000,
            )
            .unwrap();
    }
    eprintln!("{jobs} jobs recorded in {:.1?}", began.elapsed());

    let token = svc.create_api_token("bench", Role::Reader).unwrap();
    let app = router(Arc::new(Portal::new(
        svc.clone(),
        false,
        "127.0.0.1:8080".parse().unwrap(),
    )));
    let signed_in = app
        .clone()
        .oneshot(
            Request::post("/sign-in")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(format!("token={token}")))
                .unwrap(),
        )
        .await
        .unwrap();
    let cookie = signed_in.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let newest = svc
        .jobs(&pgvault_model::job::JobFilter::default().limit(1))
        .unwrap()[0]
        .id;
    let api = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/pgvault/providers/Microsoft.DataProtection/backupVaults/V";
    let pages = [
        ("console: backup center", "/".to_owned(), false),
        ("console: jobs", "/jobs".to_owned(), false),
        (
            "console: jobs, last 7 days, page 10",
            "/jobs?since=P7D&page=10".to_owned(),
            false,
        ),
        ("console: a job", format!("/jobs/{newest}"), false),
        (
            "console: backup instance",
            "/vaults/V/instances/db1".to_owned(),
            false,
        ),
        ("console: policies", "/policies".to_owned(), false),
        (
            "console: a policy with its ten-year timeline",
            "/vaults/V/policies/P".to_owned(),
            false,
        ),
        (
            "console: the policy editor",
            "/policies/new?vault=V&from=P".to_owned(),
            false,
        ),
        ("console: configure backup", "/configure".to_owned(), false),
        (
            "API: list jobs (first page)",
            format!("{api}/backupJobs?api-version=2026-06-01"),
            true,
        ),
        (
            "API: list jobs (page 100)",
            format!("{api}/backupJobs?api-version=2026-06-01&$skipToken=20000"),
            true,
        ),
        (
            "API: list recovery points (first page)",
            format!("{api}/backupInstances/db1/recoveryPoints?api-version=2026-06-01"),
            true,
        ),
        (
            "API: a vault",
            format!("{api}?api-version=2026-06-01"),
            true,
        ),
    ];
    println!("| page | median | slowest |\n|---|---|---|");
    for (name, path, bearer) in pages {
        let mut times = Vec::new();
        for _ in 0..7 {
            let mut req = Request::get(&path).header(header::HOST, "127.0.0.1:8080");
            req = if bearer {
                req.header(header::AUTHORIZATION, format!("Bearer {token}"))
            } else {
                req.header(header::COOKIE, &cookie)
            };
            let began = Instant::now();
            let response = app
                .clone()
                .oneshot(req.body(Body::empty()).unwrap())
                .await
                .unwrap();
            let status = response.status();
            let _ = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            times.push(began.elapsed());
            assert_eq!(status, StatusCode::OK, "{name}: {path}");
        }
        times.sort();
        let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
        println!(
            "| {name} | {} | {} |",
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1])
        );
    }
}
