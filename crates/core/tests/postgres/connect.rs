//! Connecting to a server without TLS: the happy paths from a secret file to a session, the
//! Azure-style codes of each failure, and the libpq environment handed to child processes.
//! Two tests need no PostgreSQL at all, only a port that refuses or a server that never
//! answers.

use std::time::{Duration, Instant};

use pgvault_core::postgres::connection::{ConnectParams, ConnectionString, Datasource};
use pgvault_core::secrets::ResolveSecret as _;
use pgvault_core::secrets::SecretRef;
use pgvault_testkit::TestCluster;

use crate::{
    LOGIN_PASSWORD, ado_password, create_login_role, free_port, params, run_ok, server_address,
    session_uses_tls,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_server() {
    let cluster = TestCluster::shared();
    let database = cluster.create_database("connect_plain");
    assert_eq!(
        cluster.psql(&database, "SHOW ssl"),
        "off",
        "this test needs a server without TLS; PGVAULT_TEST_DATABASE_URL names one with ssl=on"
    );
    let user = create_login_role(cluster, &database);
    let server = server_address(cluster);
    let datasource_url = format!("postgres://{server}/{database}");

    // The whole path a job takes: a secret file, its reference, the connection string in it
    // (naming another server and database, which the datasource overrides), a session.
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("db.secret");
    std::fs::write(
        &secret_file,
        format!(
            "Server=elsewhere.example.com;Database=other;Port=5432;User Id={user};\
             Password={};Ssl Mode=Disable;\n",
            ado_password()
        ),
    )
    .unwrap();
    let reference: SecretRef = format!("file://{}", secret_file.display()).parse().unwrap();
    let secret = ConnectionString::parse(&reference.resolve().await.unwrap()).unwrap();
    let datasource: Datasource = datasource_url.parse().unwrap();
    let login = ConnectParams::new(&datasource, &secret);
    let client = login.connect().await.unwrap();
    let row = client
        .query_one(
            "SELECT current_database(), current_user, current_setting('application_name')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, String>(2)
        ),
        (database.clone(), user.clone(), "pgvault".into())
    );
    let app_database = format!("{database}_app");
    client
        .batch_execute(&format!("CREATE DATABASE \"{app_database}\""))
        .await
        .unwrap();

    // with_database reaches the new database on the same server with the same login.
    let app = login.with_database(&app_database);
    let client = app.connect().await.unwrap();
    let db: String = client
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(db, app_database);

    // Every mode that works without TLS on the server, in both syntaxes.
    let uri_password = percent_encode(LOGIN_PASSWORD);
    let working = [
        format!(
            "User Id={user};Password={};Ssl Mode=Disable",
            ado_password()
        ),
        format!("User Id={user};Password={};Ssl Mode=Prefer", ado_password()),
        format!("User Id={user};Password={}", ado_password()),
        format!("User Id={user};Password={};Ssl Mode=Allow", ado_password()),
        format!("postgres://{user}:{uri_password}@ignored/x?sslmode=disable"),
        format!("postgresql://{user}:{uri_password}@ignored?sslmode=prefer&application_name=t"),
    ];
    for secret in &working {
        let client = params(&datasource_url, secret)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{secret}: {e}"));
        assert!(!session_uses_tls(&client).await, "{secret}");
    }

    // Failures, each with its code; no message may hold a password, right or wrong.
    let missing_db = format!("postgres://{server}/no_such_db");
    let failing: &[(&str, String, &str, &str)] = &[
        (
            &datasource_url,
            format!("User Id={user};Password=WrongHunter2;Ssl Mode=Disable"),
            "UserErrorDBUserAuthFailed",
            "password authentication failed",
        ),
        (
            &datasource_url,
            "User Id=nobody;Password=WrongHunter2;Ssl Mode=Prefer".into(),
            "UserErrorDBUserAuthFailed",
            "nobody",
        ),
        (
            &datasource_url,
            format!("User Id={user};Ssl Mode=Disable"),
            "UserErrorDBUserAuthFailed",
            "has none",
        ),
        (
            &missing_db,
            format!("User Id={user};Password={}", ado_password()),
            "UserErrorDBNotFound",
            "no_such_db",
        ),
        (
            &datasource_url,
            format!(
                "User Id={user};Password={};Ssl Mode=Require",
                ado_password()
            ),
            "UserErrorDBServerUnreachable",
            "does not support TLS",
        ),
    ];
    for (datasource, secret, code, says) in failing {
        let err = params(datasource, secret).connect().await.unwrap_err();
        let msg = err.to_string();
        assert_eq!(err.code().as_str(), *code, "{secret}: {msg}");
        assert!(msg.contains(says), "{secret}: {msg}");
        assert!(msg.contains(&server), "{msg}");
        assert!(!msg.contains("Hunter2"), "{msg}");
        assert!(!msg.contains("s3cret"), "{msg}");
        assert!(!format!("{err:?}").contains("s3cret"), "{err:?}");
    }

    // The libpq environment alone gets psql in: nothing on its command line but the query.
    let query = "SELECT current_database() || ' ' || current_user || ' ' || \
                 current_setting('application_name')";
    let out = run_ok(
        std::process::Command::new(cluster.bindir().join("psql"))
            .env_clear()
            .envs(app.pg_env())
            .args(["-X", "-A", "-t", "-c", query]),
        "psql",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{app_database} {user} pgvault")
    );
}

#[tokio::test]
async fn closed_port_is_unreachable() {
    let port = free_port();
    let p = params(
        &format!("postgres://127.0.0.1:{port}/postgres"),
        "User Id=postgres;Password=Hunter2",
    );
    let err = p.connect().await.unwrap_err();
    assert_eq!(err.code().as_str(), "UserErrorDBServerUnreachable", "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert!(msg.contains("`postgres`"), "{msg}");
    assert!(msg.contains("firewalls"), "{msg}");
    assert!(!msg.contains("Hunter2"), "{msg}");
}

/// A server that accepts the TCP connection and then says nothing: only the overall timeout
/// (TLS and login included) can end the attempt.
#[tokio::test]
async fn silent_server_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            sockets.push(socket);
        }
    });
    let p = params(
        &format!("postgres://127.0.0.1:{port}/postgres"),
        "User Id=postgres;Password=Hunter2;Timeout=1",
    );
    let started = Instant::now();
    let err = p.connect().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(err.code().as_str(), "UserErrorDBServerUnreachable", "{err}");
    assert!(err.to_string().contains("within 1 s"), "{err}");
    held.abort();
}

/// libpq URIs percent-decode the user and password; encode everything but unreserved bytes.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
