//! Connecting to PostgreSQL: everything between a resolved secret and a live
//! `tokio_postgres::Client` or a `pg_dump` child's environment.
//!
//! The two parsed inputs, [`Datasource`] (*what* is backed up) and [`ConnectionString`] (the
//! secret's content, *how* to log in), are pure and live in `pgvault_model::connection`;
//! [`ConnectParams`] joins the two. The datasource decides where to connect; the secret
//! decides who connects and how. One secret can then serve every database on a server, as in
//! Azure Backup.
//!
//!
//! **Architecture Invariant:** no error, log line or `Debug` output of this module contains the
//! password or any fragment of the secret's text. Parse errors name the key (by its canonical
//! name) or the entry's position, never the text; connection errors name host, port, database
//! and user. The credential reaches `pg_dump`/`pg_restore` through their environment
//! ([`ConnectParams::pg_env`]), never their command line, where `ps` would show it.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use tokio_postgres::error::SqlState;

use crate::model::code::ErrorCode;
use crate::secrets::SecretValue;

pub use pgvault_model::connection::*;

// ---------------------------------------------------------------------------------------------
// Connecting
// ---------------------------------------------------------------------------------------------

/// What a secret is for: one database (a backup instance's), or a server (a restore's
/// target, a drill's scratch database, which do not exist yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretScope {
    Database,
    Server,
}

/// Databases every server has, which a server-wide secret names: naming one is no sign that
/// the secret was written for another database.
const MAINTENANCE_DATABASES: &[&str] = &["postgres", "template1", "azure_maintenance"];

/// What a secret's `Server`, `Port` or `Database` names that the datasource does not
/// (`another server`, `another database`), if that is worth a warning for `scope`: the
/// server always; for a database secret also a database other than the datasource's and
/// the maintenance ones.
pub fn secret_mismatch(
    datasource: &Datasource,
    secret: &ConnectionString,
    scope: SecretScope,
) -> Option<&'static str> {
    let other_server = secret
        .host()
        .is_some_and(|h| !h.eq_ignore_ascii_case(datasource.host()))
        || secret.port().is_some_and(|p| p != datasource.port());
    let other_database = scope == SecretScope::Database
        && secret
            .database()
            .is_some_and(|d| d != datasource.database() && !MAINTENANCE_DATABASES.contains(&d));
    match (other_server, other_database) {
        (true, true) => Some("another server and database"),
        (true, false) => Some("another server"),
        (false, true) => Some("another database"),
        (false, false) => None,
    }
}

/// Everything needed to connect to one database: where from the [`Datasource`], who and how
/// from the [`ConnectionString`].
///
/// The secret's `Server`, `Port` and `Database`, if present, are ignored: the datasource is
/// what the backup instance protects, and one secret may serve every database on a server.
/// When they differ from the datasource a warning is logged ([`secret_mismatch`]), since a
/// secret pointing elsewhere is more often a copy-paste mistake than intent.
///
/// `Debug` is derived: the password is a [`SecretValue`], whose `Debug` shows `<redacted>`.
#[derive(Clone, Debug)]
pub struct ConnectParams {
    host: String,
    port: u16,
    database: String,
    user: String,
    password: Option<SecretValue>,
    ssl_mode: SslMode,
    root_cert: Option<PathBuf>,
    connect_timeout: Option<Duration>,
    application_name: String,
}

/// Logs, at debug level, the connection string's entries pgvault does not use: by name only
/// when the name looks like a keyword (see [`IgnoredKey`]), else without it.
fn log_ignored_keys(secret: &ConnectionString) {
    for ignored in secret.ignored_keys() {
        match &ignored.key {
            Some(key) => tracing::debug!(
                key = key.as_str(),
                syntax = ignored.syntax,
                "ignoring a connection string key pgvault does not use"
            ),
            None => tracing::debug!(
                syntax = ignored.syntax,
                "ignoring a connection string entry that is not a keyword (not shown)"
            ),
        }
    }
}

impl ConnectParams {
    /// Connects to `datasource`, a database the secret is for (a backup's, a listing's):
    /// warns when the secret names another server, or another database than the datasource's
    /// or the server's maintenance database.
    pub fn new(datasource: &Datasource, secret: &ConnectionString) -> ConnectParams {
        Self::checked(datasource, secret, SecretScope::Database)
    }

    /// Connects to `datasource` on a server the secret is for, whatever database it names:
    /// a restore's or drill's target, which does not exist yet, so the secret names the
    /// maintenance database or another one. Warns only when the secret names another server.
    pub fn for_server(datasource: &Datasource, secret: &ConnectionString) -> ConnectParams {
        Self::checked(datasource, secret, SecretScope::Server)
    }

    fn checked(
        datasource: &Datasource,
        secret: &ConnectionString,
        scope: SecretScope,
    ) -> ConnectParams {
        log_ignored_keys(secret);
        if let Some(what) = secret_mismatch(datasource, secret, scope) {
            // Host, port and database are not credentials, so naming them is safe and is what
            // makes the warning useful.
            tracing::warn!(
                datasource = %datasource,
                secret_host = secret.host().unwrap_or("-"),
                secret_port = secret.port().map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                secret_database = secret.database().unwrap_or("-"),
                "the secret's connection string names {what} than the datasource; connecting to \
                 the datasource, with the secret's user and password"
            );
        }
        Self::from_parts(datasource, secret)
    }

    fn from_parts(datasource: &Datasource, secret: &ConnectionString) -> ConnectParams {
        ConnectParams {
            host: datasource.host().to_owned(),
            port: datasource.port(),
            database: datasource.database().to_owned(),
            user: secret.user().to_owned(),
            password: secret.password().cloned(),
            ssl_mode: secret.ssl_mode().unwrap_or_default(),
            root_cert: secret.root_cert().map(Path::to_path_buf),
            connect_timeout: match secret.connect_timeout() {
                None => Some(DEFAULT_CONNECT_TIMEOUT),
                Some(Duration::ZERO) => None,
                Some(t) => Some(t),
            },
            application_name: secret
                .application_name()
                .unwrap_or(DEFAULT_APPLICATION_NAME)
                .to_owned(),
        }
    }

    /// The same server and login, another database: used to connect to `postgres` to run
    /// `CREATE DATABASE` before a restore.
    pub fn with_database(&self, database: impl Into<String>) -> ConnectParams {
        ConnectParams {
            database: database.into(),
            ..self.clone()
        }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    pub fn root_cert(&self) -> Option<&Path> {
        self.root_cert.as_deref()
    }

    /// `None` waits indefinitely (the secret set a timeout of 0).
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.connect_timeout
    }

    pub fn application_name(&self) -> &str {
        &self.application_name
    }

    /// Host, port, database and user, for messages; never the password.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            host: self.host.clone(),
            port: self.port,
            database: self.database.clone(),
            user: self.user.clone(),
        }
    }

    /// The libpq environment for a `pg_dump` or `pg_restore` child, so that no credential is
    /// ever on a command line. The caller should also remove any other inherited `PG*`
    /// variables (`PGSERVICE`, `PGPASSFILE`, `PGOPTIONS`, ...) so they cannot override these.
    ///
    /// `verify-ca`/`verify-full` without a root certificate differ between the two paths:
    /// in-process connections trust the webpki roots, while libpq reads
    /// `~/.postgresql/root.crt` (libpq 16 and later also accept `sslrootcert=system`). Naming a
    /// root certificate in the secret makes both agree.
    pub fn pg_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("PGHOST".to_owned(), self.host.clone()),
            ("PGPORT".to_owned(), self.port.to_string()),
            ("PGDATABASE".to_owned(), self.database.clone()),
            ("PGUSER".to_owned(), self.user.clone()),
        ];
        if let Some(password) = &self.password {
            env.push(("PGPASSWORD".to_owned(), password.expose_secret().to_owned()));
        }
        env.push((
            "PGSSLMODE".to_owned(),
            self.ssl_mode.as_libpq_str().to_owned(),
        ));
        if let Some(root) = &self.root_cert {
            env.push((
                "PGSSLROOTCERT".to_owned(),
                root.to_string_lossy().into_owned(),
            ));
        }
        // libpq counts whole seconds, and 0 means no limit; round up so 500 ms is not 0.
        let timeout = self
            .connect_timeout
            .map(|t| t.as_secs() + u64::from(t.subsec_nanos() > 0))
            .unwrap_or(0);
        env.push(("PGCONNECT_TIMEOUT".to_owned(), timeout.to_string()));
        env.push(("PGAPPNAME".to_owned(), self.application_name.clone()));
        env
    }

    /// Connects and spawns the connection task on the current tokio runtime; the task ends
    /// when the returned client is dropped.
    ///
    /// TLS follows libpq's `sslmode`: `disable` never uses TLS; `allow` and `prefer` use it
    /// when the server offers it; `require` insists on it but, like libpq without a root
    /// certificate, does not verify the certificate (the handshake's signatures are still
    /// checked, so the session is bound to the certificate presented); `verify-ca` verifies the
    /// chain against the secret's root certificate or the webpki roots; `verify-full` also
    /// checks the host name. As in libpq, naming a root certificate makes every TLS mode
    /// verify the chain.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, ConnectError> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .dbname(&self.database)
            .user(&self.user)
            .application_name(&self.application_name);
        if let Some(password) = &self.password {
            config.password(password.expose_secret());
        }
        if let Some(timeout) = self.connect_timeout {
            config.connect_timeout(timeout);
        }
        config.ssl_mode(match self.ssl_mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Allow | SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        });
        let tls = self.tls_config()?;
        let endpoint = self.endpoint();

        let attempt = async {
            match tls {
                None => {
                    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
                    spawn_connection(connection, endpoint.to_string());
                    Ok(client)
                }
                Some(tls) => {
                    let connector = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
                    let (client, connection) = config.connect(connector).await?;
                    spawn_connection(connection, endpoint.to_string());
                    Ok(client)
                }
            }
        };
        // tokio-postgres's own timeout covers each TCP connect; this one covers TLS and login
        // too, which a stalled server or a black-holing firewall can hold open forever.
        let result =
            match self.connect_timeout {
                Some(limit) => tokio::time::timeout(limit, attempt).await.map_err(|_| {
                    ConnectError::TimedOut {
                        endpoint: self.endpoint(),
                        after: limit,
                    }
                })?,
                None => attempt.await,
            };
        result.map_err(|e| classify(self, &e))
    }

    /// The rustls configuration for this sslmode, or `None` when TLS is off.
    fn tls_config(&self) -> Result<Option<rustls::ClientConfig>, ConnectError> {
        enum Verify {
            Nothing,
            Chain,
            ChainAndName,
        }
        let verify = match self.ssl_mode {
            SslMode::Disable => return Ok(None),
            SslMode::VerifyFull => Verify::ChainAndName,
            SslMode::VerifyCa => Verify::Chain,
            // libpq: "If a root certificate file exists, the behavior of sslmode=require will
            // be the same as that of verify-ca". Here the file must be named, not just exist.
            _ if self.root_cert.is_some() => Verify::Chain,
            _ => Verify::Nothing,
        };
        // A provider of our own rather than the process default: the host may link other
        // crates that install a different one, and this code should not depend on who wins.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls_setup = |detail: String| ConnectError::Tls {
            endpoint: self.endpoint(),
            detail,
        };
        let verifier: Arc<dyn ServerCertVerifier> = match verify {
            Verify::Nothing => Arc::new(AcceptAnyCertificate {
                provider: provider.clone(),
            }),
            Verify::Chain | Verify::ChainAndName => {
                let roots = Arc::new(self.root_store()?);
                let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    roots,
                    provider.clone(),
                )
                .build()
                .map_err(|e| tls_setup(e.to_string()))?;
                match verify {
                    Verify::ChainAndName => webpki,
                    _ => Arc::new(ChainOnly { inner: webpki }),
                }
            }
        };
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_setup(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Some(config))
    }

    /// The secret's root certificates (a PEM file, as libpq takes), or the webpki roots.
    fn root_store(&self) -> Result<rustls::RootCertStore, ConnectError> {
        let Some(path) = &self.root_cert else {
            return Ok(rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            });
        };
        let bad = |reason: String| ConnectError::RootCertificate {
            path: path.clone(),
            reason,
        };
        // Bounded like every file a user names (the path comes from the secret).
        let pem = crate::limits::read(path, "root certificate", crate::limits::CERTIFICATE_BYTES)
            .map_err(|e| match e {
            crate::limits::InputError::Io { source, .. } => bad(source.to_string()),
            other => bad(other.to_string()),
        })?;
        let mut store = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| bad(format!("it is not valid PEM: {e}")))?;
            store
                .add(cert)
                .map_err(|e| bad(format!("a certificate in it is invalid: {e}")))?;
        }
        if store.is_empty() {
            return Err(bad("it holds no PEM certificate".to_owned()));
        }
        Ok(store)
    }
}

fn spawn_connection<F>(connection: F, endpoint: String)
where
    F: Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        // An error here means the session died under the client (server restart, network);
        // the client's next call fails with its own error, so this is only context.
        if let Err(e) = connection.await {
            tracing::debug!(%endpoint, error = %e, "PostgreSQL connection ended with an error");
        }
    });
}

/// `require`'s verifier: accepts any certificate, as libpq does without a root certificate,
/// but still checks that the server signed the handshake with the certificate's key, so the
/// session (and SCRAM channel binding) is tied to the certificate shown.
#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `verify-ca`'s verifier: the full webpki check, less the host name. rustls verifies the
/// chain before the name, so a name error means the chain was already found good.
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Where a connection went: host, port, database and user, never the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("[{ip}]"),
            _ => self.host.clone(),
        };
        write!(
            f,
            "{host}:{} (database `{}`, user `{}`)",
            self.port, self.database, self.user
        )
    }
}

/// A failed connection, with the Azure-style code a job records and a message saying what to
/// check. `detail` is the server's or the network stack's own reason; neither ever contains
/// the password (the server never echoes it, and tokio-postgres does not put it in errors).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "could not log in to PostgreSQL at {endpoint}: {detail}. Check the user and password in \
         the secret (and, if the server says so, that pg_hba.conf allows this user from this \
         host)"
    )]
    AuthFailed { endpoint: Endpoint, detail: String },
    #[error(
        "database `{database}` does not exist on PostgreSQL at {endpoint}: {detail}. Create the \
         database, or fix the datasource",
        database = endpoint.database
    )]
    DatabaseNotFound { endpoint: Endpoint, detail: String },
    #[error(
        "PostgreSQL at {endpoint} refused the connection: {detail}. Grant the user CONNECT on \
         the database: {grant}",
        grant = grant_connect_sql(endpoint)
    )]
    MissingConnectPermission { endpoint: Endpoint, detail: String },
    /// Any other error the server sent; `detail` ends with its SQLSTATE.
    #[error(
        "PostgreSQL at {endpoint} is not accepting this connection: {detail}. Check the \
         server's state and connection limits, then retry"
    )]
    ServerRefused { endpoint: Endpoint, detail: String },
    #[error(
        "could not reach PostgreSQL at {endpoint}: {detail}. Check the host and port, that the \
         server is running, and that firewalls and pg_hba.conf allow connections from this \
         machine"
    )]
    Unreachable { endpoint: Endpoint, detail: String },
    #[error(
        "could not reach PostgreSQL at {endpoint} within {} s. Check the host and port, that \
         the server is running, and that firewalls allow connections from this machine (or \
         raise Timeout in the secret)",
        after.as_secs_f64()
    )]
    TimedOut { endpoint: Endpoint, after: Duration },
    #[error(
        "TLS with PostgreSQL at {endpoint} failed: {detail}. Check the secret's SSL Mode and \
         Root Certificate against the server's TLS setup and certificate"
    )]
    Tls { endpoint: Endpoint, detail: String },
    #[error(
        "the root certificate file {} named by the secret cannot be used: {reason}. Point \
         Root Certificate (sslrootcert) at a readable PEM file of CA certificates",
        path.display()
    )]
    RootCertificate { path: PathBuf, reason: String },
}

impl ConnectError {
    /// The Azure-style error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            ConnectError::AuthFailed { .. } => ErrorCode::UserErrorDBUserAuthFailed,
            ConnectError::DatabaseNotFound { .. } => ErrorCode::UserErrorDBNotFound,
            ConnectError::MissingConnectPermission { .. } => {
                ErrorCode::UserErrorMissingDBPermissions
            }
            ConnectError::ServerRefused { .. }
            | ConnectError::Unreachable { .. }
            | ConnectError::TimedOut { .. }
            | ConnectError::Tls { .. } => ErrorCode::UserErrorDBServerUnreachable,
            ConnectError::RootCertificate { .. } => ErrorCode::UserErrorInvalidSecret,
        }
    }
}

use super::quote_ident;

fn grant_connect_sql(endpoint: &Endpoint) -> String {
    format!(
        "GRANT CONNECT ON DATABASE {} TO {};",
        quote_ident(&endpoint.database),
        quote_ident(&endpoint.user)
    )
}

/// Maps a tokio-postgres error to a [`ConnectError`]. Server errors are told apart by SQLSTATE.
/// Client-side failures are told apart by the error's own text, because tokio-postgres keeps
/// its error kind private and its `Display` is exactly the kind's fixed description; the
/// reasons below it (an `io::Error`, a rustls error) come from the `source` chain.
fn classify(params: &ConnectParams, err: &tokio_postgres::Error) -> ConnectError {
    let endpoint = params.endpoint();
    if let Some(db) = err.as_db_error() {
        let detail = db.message().to_owned();
        let code = db.code();
        return if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            ConnectError::AuthFailed { endpoint, detail }
        } else if *code == SqlState::INVALID_CATALOG_NAME {
            ConnectError::DatabaseNotFound { endpoint, detail }
        } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
            ConnectError::MissingConnectPermission { endpoint, detail }
        } else {
            ConnectError::ServerRefused {
                endpoint,
                detail: format!("{detail} (SQLSTATE {})", code.code()),
            }
        };
    }
    let kind = err.to_string();
    let reasons = source_chain(err);
    let detail = if reasons.is_empty() {
        kind.clone()
    } else {
        format!("{kind}: {reasons}")
    };
    match kind.as_str() {
        // tokio-postgres reports a password the server asks for and the secret lacks as a
        // configuration error; for the user it is a login problem.
        "invalid configuration" if reasons == "password missing" => ConnectError::AuthFailed {
            endpoint,
            detail: "the server asks for a password and the secret's connection string has none"
                .to_owned(),
        },
        // A SCRAM exchange the client could not complete (or channel binding refused).
        "authentication error" => ConnectError::AuthFailed { endpoint, detail },
        "error performing TLS handshake" => ConnectError::Tls { endpoint, detail },
        _ => ConnectError::Unreachable { endpoint, detail },
    }
}

/// The `source` chain below an error, joined with `: `, skipping a reason that repeats the one
/// above it (an `io::Error` wrapping a rustls error displays as that error).
fn source_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = err.source();
    while let Some(e) = next {
        let text = e.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

impl ConnectParams {
    /// The password, only so that a child process's stderr can be scrubbed of it.
    pub fn password(&self) -> Option<&str> {
        self.password.as_ref().map(|p| p.expose_secret())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cs(text: &str) -> Result<ConnectionString, ConnectionStringError> {
        ConnectionString::parse(&SecretValue::new(text))
    }

    #[test]
    fn debug_redacts_the_password() {
        let c = cs("Server=h;User Id=alice;Password=Hunter2;Ssl Mode=Require").unwrap();
        let params = ConnectParams::new(&"postgres://h/d".parse().unwrap(), &c);
        let shown = format!("{params:?} {:#?}", params.with_database("postgres"));
        assert!(!shown.contains("Hunter2"), "{shown}");
        assert!(
            shown.contains("<redacted>") && shown.contains("alice"),
            "{shown}"
        );
        let endpoint = params.endpoint().to_string();
        assert_eq!(endpoint, "h:5432 (database `d`, user `alice`)");
    }

    #[test]
    fn a_secret_naming_elsewhere_is_worth_a_warning_only_where_it_may_be_a_mistake() {
        let ds: Datasource = "postgres://db.example:5432/empdb".parse().unwrap();
        let check = |secret: &str, scope| secret_mismatch(&ds, &cs(secret).unwrap(), scope);
        use SecretScope::{Database, Server};
        // A restore's secret names the maintenance database, or the source's: the target
        // does not exist yet. Only another server is worth a warning.
        for db in ["postgres", "empdb", "anything"] {
            let secret = format!("Server=db.example;Port=5432;Database={db};User Id=u");
            assert_eq!(check(&secret, Server), None, "{db}");
        }
        assert_eq!(
            check("Server=other.example;Database=postgres;User Id=u", Server),
            Some("another server")
        );
        assert_eq!(
            check("Server=DB.example;Port=6432;User Id=u", Server),
            Some("another server")
        );
        // A backup's secret: its database, none, or a server-wide one naming `postgres` is
        // fine; another database looks like a secret copied from another instance.
        assert_eq!(check("User Id=u", Database), None);
        assert_eq!(check("Database=empdb;User Id=u", Database), None);
        assert_eq!(check("Database=postgres;User Id=u", Database), None);
        assert_eq!(
            check("Database=hrdb;User Id=u", Database),
            Some("another database")
        );
        assert_eq!(
            check("Server=other.example;Database=hrdb;User Id=u", Database),
            Some("another server and database")
        );
    }

    #[test]
    fn params_take_place_from_the_datasource_and_login_from_the_secret() {
        let ds: Datasource = "postgres://real.example.com:6432/app".parse().unwrap();
        let secret = cs("Server=other.example.com;Port=5432;Database=postgres;User Id=bk;Password=pw;Ssl Mode=VerifyFull;Root Certificate=/ca.pem;Timeout=5;Application Name=nightly").unwrap();
        let p = ConnectParams::new(&ds, &secret);
        assert_eq!(
            (p.host(), p.port(), p.database()),
            ("real.example.com", 6432, "app")
        );
        assert_eq!(p.user(), "bk");
        assert_eq!(p.ssl_mode(), SslMode::VerifyFull);
        assert_eq!(p.connect_timeout(), Some(Duration::from_secs(5)));
        let env = p.pg_env();
        let expected: Vec<(String, String)> = [
            ("PGHOST", "real.example.com"),
            ("PGPORT", "6432"),
            ("PGDATABASE", "app"),
            ("PGUSER", "bk"),
            ("PGPASSWORD", "pw"),
            ("PGSSLMODE", "verify-full"),
            ("PGSSLROOTCERT", "/ca.pem"),
            ("PGCONNECT_TIMEOUT", "5"),
            ("PGAPPNAME", "nightly"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(env, expected);

        let other = p.with_database("postgres");
        assert_eq!(other.database(), "postgres");
        assert_eq!((other.host(), other.user()), ("real.example.com", "bk"));
        assert!(
            other
                .pg_env()
                .contains(&("PGDATABASE".to_owned(), "postgres".to_owned()))
        );
    }

    #[test]
    fn params_defaults() {
        let ds: Datasource = "postgres://h/d".parse().unwrap();
        let cases: &[(&str, SslMode, Option<u64>, &str, bool)] = &[
            // secret, sslmode, timeout, PGCONNECT_TIMEOUT, has PGPASSWORD
            (
                "User Id=u;Password=p",
                SslMode::Prefer,
                Some(15),
                "15",
                true,
            ),
            ("User Id=u;Timeout=0", SslMode::Prefer, None, "0", false),
            (
                "postgres://u@h/d?sslmode=allow",
                SslMode::Allow,
                Some(15),
                "15",
                false,
            ),
        ];
        for (secret, mode, timeout, env_timeout, has_password) in cases {
            let p = ConnectParams::new(&ds, &cs(secret).unwrap());
            assert_eq!(p.ssl_mode(), *mode, "{secret}");
            assert_eq!(
                p.connect_timeout().map(|t| t.as_secs()),
                *timeout,
                "{secret}"
            );
            assert_eq!(p.application_name(), DEFAULT_APPLICATION_NAME);
            let env = p.pg_env();
            let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
            assert_eq!(get("PGCONNECT_TIMEOUT"), Some(*env_timeout), "{secret}");
            assert_eq!(get("PGPASSWORD").is_some(), *has_password, "{secret}");
            assert_eq!(get("PGSSLMODE"), Some(mode.as_libpq_str()));
            assert_eq!(get("PGSSLROOTCERT"), None);
            assert_eq!(get("PGAPPNAME"), Some("pgvault"));
        }
    }

    #[test]
    fn tls_configs_follow_sslmode() {
        let ds: Datasource = "postgres://h/d".parse().unwrap();
        let params = |mode: &str| {
            ConnectParams::new(&ds, &cs(&format!("User Id=u;Ssl Mode={mode}")).unwrap())
        };
        assert!(params("Disable").tls_config().unwrap().is_none());
        for mode in ["Allow", "Prefer", "Require", "VerifyCA", "VerifyFull"] {
            assert!(params(mode).tls_config().unwrap().is_some(), "{mode}");
        }
        // A root certificate that cannot be read is the secret's fault, and says which file.
        let p = ConnectParams::new(
            &ds,
            &cs("User Id=u;Ssl Mode=VerifyFull;Root Certificate=/nonexistent/ca.pem").unwrap(),
        );
        let err = p.tls_config().unwrap_err();
        assert_eq!(err.code().as_str(), "UserErrorInvalidSecret");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "not a certificate").unwrap();
        let p = ConnectParams::new(
            &ds,
            &cs(&format!(
                "User Id=u;Ssl Mode=VerifyCA;Root Certificate={}",
                not_pem.display()
            ))
            .unwrap(),
        );
        let err = p.tls_config().unwrap_err();
        assert!(
            matches!(err, ConnectError::RootCertificate { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
    }

    #[test]
    fn connect_error_codes() {
        let endpoint = Endpoint {
            host: "h".into(),
            port: 5432,
            database: "d\"b".into(),
            user: "u".into(),
        };
        let cases: Vec<(ConnectError, &str, &str)> = vec![
            (
                ConnectError::AuthFailed {
                    endpoint: endpoint.clone(),
                    detail: "x".into(),
                },
                "UserErrorDBUserAuthFailed",
                "user and password",
            ),
            (
                ConnectError::DatabaseNotFound {
                    endpoint: endpoint.clone(),
                    detail: "x".into(),
                },
                "UserErrorDBNotFound",
                "Create the database",
            ),
            (
                ConnectError::MissingConnectPermission {
                    endpoint: endpoint.clone(),
                    detail: "x".into(),
                },
                "UserErrorMissingDBPermissions",
                r#"GRANT CONNECT ON DATABASE "d""b" TO "u";"#,
            ),
            (
                ConnectError::Unreachable {
                    endpoint: endpoint.clone(),
                    detail: "x".into(),
                },
                "UserErrorDBServerUnreachable",
                "firewalls and pg_hba.conf",
            ),
            (
                ConnectError::TimedOut {
                    endpoint: endpoint.clone(),
                    after: Duration::from_secs(15),
                },
                "UserErrorDBServerUnreachable",
                "within 15 s",
            ),
            (
                ConnectError::Tls {
                    endpoint: endpoint.clone(),
                    detail: "x".into(),
                },
                "UserErrorDBServerUnreachable",
                "SSL Mode",
            ),
            (
                ConnectError::ServerRefused {
                    endpoint: endpoint.clone(),
                    detail: "too many clients (SQLSTATE 53300)".into(),
                },
                "UserErrorDBServerUnreachable",
                "53300",
            ),
        ];
        for (err, code, hint) in cases {
            assert_eq!(err.code().as_str(), code);
            let msg = err.to_string();
            assert!(msg.contains(hint), "{msg}");
            if !matches!(err, ConnectError::RootCertificate { .. }) {
                assert!(msg.contains("h:5432") && msg.contains("`u`"), "{msg}");
            }
        }
    }

    /// Runs `f` with a subscriber that records every event's fields as text, so tests can
    /// check what reaches a log. (tracing-subscriber is not a dependency of this crate.)
    fn capture_logs(f: impl FnOnce()) -> String {
        use std::sync::Mutex;
        use tracing::field::{Field, Visit};
        use tracing::span;

        struct Capture(Arc<Mutex<String>>);
        struct Fields<'a>(&'a mut String);
        impl Visit for Fields<'_> {
            fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
                self.0.push_str(&format!("{}={:?} ", field.name(), value));
            }
        }
        impl tracing::Subscriber for Capture {
            fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
                true
            }
            fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
                span::Id::from_u64(1)
            }
            fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
            fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
            fn event(&self, event: &tracing::Event<'_>) {
                let mut line = format!("{} ", event.metadata().level());
                event.record(&mut Fields(&mut line));
                let mut all = self.0.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
            }
            fn enter(&self, _: &span::Id) {}
            fn exit(&self, _: &span::Id) {}
        }

        let text = Arc::new(Mutex::new(String::new()));
        tracing::subscriber::with_default(Capture(text.clone()), f);
        text.lock().unwrap().clone()
    }

    #[test]
    fn ignored_keys_are_logged_by_name_only() {
        let logs = capture_logs(|| {
            // `Pooling` is a real Npgsql keyword; `x9#Hunter2` is what an unquoted `;` in a
            // password leaves behind as a "key".
            let ds: Datasource = "postgres://h/d".parse().unwrap();
            ConnectParams::new(
                &ds,
                &cs("User Id=u;Pooling=true;Password=ab;x9#Hunter2=cd").unwrap(),
            );
            ConnectParams::new(
                &ds,
                &cs("postgres://u@h/d?target_session_attrs=any&x9%Hunter2=1").unwrap(),
            );
        });
        assert!(logs.contains("key=\"Pooling\""), "{logs}");
        assert!(logs.contains("key=\"target_session_attrs\""), "{logs}");
        assert!(logs.contains("not a keyword"), "{logs}");
        assert!(!logs.contains("Hunter2") && !logs.contains("cd"), "{logs}");
    }

    #[test]
    fn warns_when_the_secret_names_another_place() {
        let ds: Datasource = "postgres://real.example.com/app".parse().unwrap();
        let cases = [
            (
                "Server=other.example.com;Database=app;User Id=u;Password=Hunter2",
                true,
            ),
            (
                "Server=real.example.com;Database=other;User Id=u;Password=Hunter2",
                true,
            ),
            (
                "Server=REAL.example.com;Port=6432;User Id=u;Password=Hunter2",
                true,
            ),
            (
                "Server=REAL.example.com;Database=app;Port=5432;User Id=u;Password=Hunter2",
                false,
            ),
            ("User Id=u;Password=Hunter2", false),
        ];
        for (secret, warns) in cases {
            let parsed = cs(secret).unwrap();
            let logs = capture_logs(|| {
                ConnectParams::new(&ds, &parsed);
            });
            assert_eq!(logs.contains("WARN"), warns, "{secret}: {logs}");
            assert!(!logs.contains("Hunter2"), "{logs}");
            if warns {
                assert!(
                    logs.contains("postgres://real.example.com:5432/app"),
                    "{logs}"
                );
            }
        }
    }
}
