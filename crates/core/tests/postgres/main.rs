//! pgvault-core against real PostgreSQL, in one test binary with a module per area: `archive`
//! scans real `pg_dump` output and hands pieces of it to the real `pg_restore`, `connect` goes
//! from a secret to a session on a server without TLS, `contents` reads what a backup records
//! of a database in the snapshot it shares with `pg_dump`, `drill` checks that a restore
//! drill leaves no scratch database behind when it fails or is cancelled, `server` lists the databases a server
//! offers for backup, and `tls` checks every sslmode against a server with a certificate from
//! a private CA.
//!
//! The servers come from `pgvault-testkit`. `archive`, `connect` and `server` share the
//! binary's one cluster ([`TestCluster::shared`]), each test in a database of its own, so they
//! run in parallel; `tls` needs `ssl=on` from the first start and so starts a cluster of its own with
//! [`pgvault_testkit::ClusterOptions`]. A test logs in as a role made for it
//! ([`create_login_role`]) rather than as the kit's superuser, so the login is unprivileged as
//! in production and its password can hold the characters that connection strings must quote.

mod archive;
mod connect;
mod contents;
mod drill;
mod server;
mod tls;

use pgvault_core::postgres::connection::{ConnectParams, ConnectionString, Datasource};
use pgvault_core::secrets::SecretValue;
use pgvault_testkit::TestCluster;

/// The password of every role from [`create_login_role`]. It holds `;`, `=`, `"` and a space,
/// so connecting with it checks the ADO.NET quoting end to end; no error message may ever
/// contain `s3cret`.
const LOGIN_PASSWORD: &str = "s3cret pass;word=\"x\"";

/// Creates a role `name` that can log in with [`LOGIN_PASSWORD`] and create databases, and
/// returns its name.
///
/// Roles belong to the whole server, not to a database, so tests on the shared cluster name
/// theirs after the database `create_database` made for them, which is unique.
fn create_login_role(cluster: &TestCluster, name: &str) -> String {
    // Set explicitly: the stored hash must suit the scram-sha-256 the kit's pg_hba.conf asks
    // for, whatever the server's default.
    cluster.psql(
        "postgres",
        &format!(
            "SET password_encryption = 'scram-sha-256';\n\
             CREATE ROLE \"{name}\" LOGIN CREATEDB PASSWORD '{}';",
            LOGIN_PASSWORD.replace('\'', "''")
        ),
    );
    name.to_owned()
}

/// Parameters for `datasource` with the login in `secret`, as a job builds them.
fn params(datasource: &str, secret: &str) -> ConnectParams {
    let datasource: Datasource = datasource.parse().unwrap();
    let secret = ConnectionString::parse(&SecretValue::new(secret)).unwrap();
    ConnectParams::new(&datasource, &secret)
}

/// [`LOGIN_PASSWORD`] quoted for an ADO.NET connection string.
fn ado_password() -> String {
    format!("\"{}\"", LOGIN_PASSWORD.replace('"', "\"\""))
}

/// `host:port` of `cluster` as a URL and pgvault's error messages write it (an IPv6 address in
/// brackets).
fn server_address(cluster: &TestCluster) -> String {
    match cluster.host().parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(ip)) => format!("[{ip}]:{}", cluster.port()),
        _ => format!("{}:{}", cluster.host(), cluster.port()),
    }
}

/// Whether the session behind `client` uses TLS, as the server sees it.
async fn session_uses_tls(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// A port on 127.0.0.1 that nothing listened on a moment ago.
/// Runs `cmd` to completion and asserts it succeeded, naming `what` and its stderr if not.
fn run_ok(cmd: &mut std::process::Command, what: &str) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
