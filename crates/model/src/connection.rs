//! PostgreSQL datasources and connection strings, parsed: *what* is backed up and *how* to
//! log in, each parsed once at its boundary. Connecting is `pgvault_core::postgres::connection`.
//!
//!
//! Three types meet here, each parsed once at its boundary:
//! - [`Datasource`] is *what* is backed up: host, port and database, named without credentials
//!   (`postgres://host:5432/db` or an Azure ARM id). It is stored in the vault and shown in job
//!   history, so it refuses credentials outright.
//! - [`ConnectionString`] is the content of the secret, *how* to log in: user, password and TLS
//!   settings, in the ADO.NET form the Azure portal hands out or as a `postgres://` URI.
//!
//! **Architecture Invariant:** no error or `Debug` output of this module contains the
//! password or any fragment of the secret's text. Parse errors name the key (by its canonical
//! name) or the entry's position, never the text.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::code::ErrorCode;
use crate::secret::SecretValue;

/// PostgreSQL's port, used when a datasource names none.
pub const DEFAULT_PORT: u16 = 5432;

/// How long a connection attempt (TCP, TLS and login together) may take when the secret sets no
/// timeout. Npgsql's default; long enough for a cross-region login, short enough that a
/// scheduled job fails with a clear error instead of hanging.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The `application_name` pgvault's sessions show in `pg_stat_activity` when the secret names
/// none, so a DBA can tell a backup's session from the application's.
pub const DEFAULT_APPLICATION_NAME: &str = "pgvault";

/// The DNS suffix of Azure Database for PostgreSQL servers in public Azure. An ARM id does not
/// say which cloud it is in; a server in a sovereign cloud is named by its `postgres://` URI.
const AZURE_POSTGRES_DNS_SUFFIX: &str = "postgres.database.azure.com";

// ---------------------------------------------------------------------------------------------
// SSL modes
// ---------------------------------------------------------------------------------------------

/// libpq's `sslmode`, which Npgsql's `SSL Mode` mirrors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// libpq tries plain first; in-process connections treat it as `Prefer`, which
    /// tokio-postgres offers and which reaches the same servers.
    Allow,
    /// TLS if the server offers it, else plain. The default of libpq and Npgsql.
    #[default]
    Prefer,
    /// TLS; the certificate is not verified unless the secret names a root certificate.
    Require,
    /// TLS, with the certificate chain verified; the host name is not checked.
    VerifyCa,
    /// TLS, with the chain and the host name verified.
    VerifyFull,
}

impl SslMode {
    /// The spelling libpq takes in `PGSSLMODE`.
    pub fn as_libpq_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Accepts libpq's spellings (`verify-full`) and Npgsql's (`VerifyFull`), in any case.
    fn parse(value: &str) -> Option<SslMode> {
        let normal: String = value
            .chars()
            .filter(|c| !matches!(c, '-' | '_' | ' '))
            .flat_map(char::to_lowercase)
            .collect();
        Some(match normal.as_str() {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verifyca" => SslMode::VerifyCa,
            "verifyfull" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_libpq_str())
    }
}

// ---------------------------------------------------------------------------------------------
// Connection strings
// ---------------------------------------------------------------------------------------------

/// The parsed content of a secret: who logs in and how. Host, port and database may be present
/// (the Azure portal's connection string has them) but [`ConnectParams`] takes those from the
/// [`Datasource`].
#[derive(Clone)]
pub struct ConnectionString {
    host: Option<String>,
    port: Option<u16>,
    database: Option<String>,
    user: String,
    password: Option<SecretValue>,
    ssl_mode: Option<SslMode>,
    trust_server_certificate: bool,
    root_cert: Option<PathBuf>,
    connect_timeout: Option<Duration>,
    application_name: Option<String>,
    ignored: Vec<IgnoredKey>,
}

impl ConnectionString {
    /// Parses an ADO.NET/Npgsql connection string (`Server=..;Database=..;User Id=..;
    /// Password=..;Ssl Mode=Require;`) or a `postgres://`/`postgresql://` URI.
    pub fn parse(secret: &SecretValue) -> Result<ConnectionString, ConnectionStringError> {
        let text = secret.expose_secret().trim();
        let fields = if has_prefix_ignore_case(text, "postgres://")
            || has_prefix_ignore_case(text, "postgresql://")
        {
            parse_uri(text)?
        } else if text.contains('=') {
            parse_ado(text)?
        } else {
            return Err(ConnectionStringError::UnsupportedFormat);
        };
        fields.finish()
    }

    /// The server named in the secret, if any (informational: the datasource decides).
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The port named in the secret, if any (informational: the datasource decides).
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The database named in the secret, if any (informational: the datasource decides).
    pub fn database(&self) -> Option<&str> {
        self.database.as_deref()
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn password(&self) -> Option<&SecretValue> {
        self.password.as_ref()
    }

    /// The SSL mode the secret asks for; `None` means libpq's default, `prefer`.
    pub fn ssl_mode(&self) -> Option<SslMode> {
        self.ssl_mode
    }

    /// Npgsql's `Trust Server Certificate`. Since Npgsql 6 `SSL Mode=Require` does not verify
    /// the certificate anyway, so it changes nothing; it is kept so a connection string that
    /// sets it is not rejected, and refused only with `VerifyCA`/`VerifyFull`, which it
    /// contradicts.
    pub fn trust_server_certificate(&self) -> bool {
        self.trust_server_certificate
    }

    /// A PEM file of root certificates to verify the server against (`sslrootcert`).
    pub fn root_cert(&self) -> Option<&Path> {
        self.root_cert.as_deref()
    }

    /// The connect timeout the secret sets; `Some(ZERO)` means wait indefinitely, as in libpq.
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.connect_timeout
    }

    pub fn application_name(&self) -> Option<&str> {
        self.application_name.as_deref()
    }

    /// The entries pgvault does not use, for the connecting code to log (by name only when
    /// [`IgnoredKey::key`] is set).
    pub fn ignored_keys(&self) -> &[IgnoredKey] {
        &self.ignored
    }
}

/// Written by hand so the password can never show.
impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ssl_mode", &self.ssl_mode)
            .field("trust_server_certificate", &self.trust_server_certificate)
            .field("root_cert", &self.root_cert)
            .field("connect_timeout", &self.connect_timeout)
            .field("application_name", &self.application_name)
            .finish()
    }
}

/// A secret whose content is not a connection string pgvault can use. The messages name keys
/// by their canonical names and entries by position, and never quote the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionStringError {
    #[error(
        "the secret is not a connection string pgvault understands (its content is not shown); \
         store an ADO.NET connection string such as \
         Server=<host>;Database=<db>;Port=5432;User Id=<user>;Password=<password>;Ssl Mode=Require; \
         or a postgres://<user>:<password>@<host>:5432/<db> URI"
    )]
    UnsupportedFormat,
    #[error(
        "entry {entry} of the connection string has no key before `=` or no `=` at all; write \
         Key=Value pairs separated by `;`, and quote a value that contains `;` (Password=\"a;b\")"
    )]
    MalformedEntry { entry: usize },
    #[error(
        "the value of {key} in the connection string opens a quote it does not close; end it \
         with the same quote character, and double a quote that is part of the value"
    )]
    UnterminatedQuote { key: String },
    #[error(
        "the quoted value of {key} in the connection string is followed by more text before the \
         next `;`; put the whole value inside the quotes"
    )]
    TextAfterQuote { key: String },
    #[error("the value of {key} in the connection string is invalid: expected {expected}")]
    InvalidValue {
        key: &'static str,
        expected: &'static str,
    },
    #[error(
        "the connection string looks like libpq's space-separated form (key=value key=value); \
         separate ADO.NET entries with `;` (Server=..;User Id=..;Password=..), quote a value \
         that contains spaces, or use a postgres:// URI"
    )]
    SpaceSeparated,
    #[error(
        "the connection string names no user; add User Id=<name> (ADO.NET) or put the user in \
         the URI (postgres://<user>:<password>@host/db)"
    )]
    MissingUser,
    #[error("the postgres:// URI in the secret is invalid: {0}")]
    InvalidUri(&'static str),
    #[error(
        "the connection string sets Trust Server Certificate=true with SSL Mode={0}, which \
         asks to verify the certificate; drop Trust Server Certificate, or use SSL Mode=Require"
    )]
    TrustConflict(SslMode),
}

impl ConnectionStringError {
    /// The Azure-style error code.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::UserErrorSecretValueInUnsupportedFormat
    }
}

/// The settings a connection string can carry, whichever syntax it came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Host,
    Port,
    Database,
    User,
    Password,
    SslMode,
    TrustServerCertificate,
    RootCert,
    ConnectTimeout,
    ApplicationName,
}

impl Key {
    /// Npgsql's keywords and their synonyms, compared case-insensitively with spaces removed
    /// (so `User Id`, `userid` and `USER ID` are one key, as in Npgsql).
    fn from_ado(raw: &str) -> Option<Key> {
        let normal: String = raw
            .chars()
            .filter(|c| !c.is_whitespace())
            .flat_map(char::to_lowercase)
            .collect();
        Some(match normal.as_str() {
            "host" | "server" => Key::Host,
            "port" => Key::Port,
            "database" | "db" => Key::Database,
            "username" | "userid" | "user" | "uid" => Key::User,
            "password" | "pwd" | "psw" => Key::Password,
            "sslmode" => Key::SslMode,
            "trustservercertificate" => Key::TrustServerCertificate,
            "rootcertificate" | "sslrootcert" => Key::RootCert,
            "timeout" | "connecttimeout" => Key::ConnectTimeout,
            "applicationname" => Key::ApplicationName,
            _ => return None,
        })
    }

    /// libpq's URI query parameters.
    fn from_uri_param(name: &str) -> Option<Key> {
        Some(match name {
            "host" => Key::Host,
            "port" => Key::Port,
            "dbname" => Key::Database,
            "user" => Key::User,
            "password" => Key::Password,
            "sslmode" => Key::SslMode,
            "sslrootcert" => Key::RootCert,
            "connect_timeout" => Key::ConnectTimeout,
            "application_name" => Key::ApplicationName,
            _ => return None,
        })
    }

    /// The canonical name errors use, so they never repeat the user's text.
    fn name(self) -> &'static str {
        match self {
            Key::Host => "Host",
            Key::Port => "Port",
            Key::Database => "Database",
            Key::User => "Username",
            Key::Password => "Password",
            Key::SslMode => "SSL Mode",
            Key::TrustServerCertificate => "Trust Server Certificate",
            Key::RootCert => "Root Certificate",
            Key::ConnectTimeout => "Timeout",
            Key::ApplicationName => "Application Name",
        }
    }
}

/// A connection-string entry pgvault does not use, as it may be shown: by name only when it
/// looks like a keyword (letters, spaces, `_`), because an unquoted `;` in a password splits
/// it, and the part after the `;` then arrives as a "key" that must not be shown anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredKey {
    /// The key as written, when it looks like a keyword; `None` when it is not shown.
    pub key: Option<String>,
    /// Which syntax it came in: `ado.net` or `uri`.
    pub syntax: &'static str,
}

impl IgnoredKey {
    fn new(raw: &str, syntax: &'static str) -> IgnoredKey {
        let looks_like_keyword = !raw.is_empty()
            && raw.len() <= 40
            && raw
                .chars()
                .all(|c| c.is_ascii_alphabetic() || c == ' ' || c == '_');
        IgnoredKey {
            key: looks_like_keyword.then(|| raw.to_owned()),
            syntax,
        }
    }
}

/// Values as they are found; `finish` checks the whole.
#[derive(Default)]
struct Fields {
    host: Option<String>,
    port: Option<u16>,
    database: Option<String>,
    user: Option<String>,
    password: Option<SecretValue>,
    ssl_mode: Option<SslMode>,
    trust_server_certificate: bool,
    root_cert: Option<PathBuf>,
    connect_timeout: Option<Duration>,
    application_name: Option<String>,
    ignored: Vec<IgnoredKey>,
}

impl Fields {
    /// Sets one key. An empty value unsets it, as in `DbConnectionStringBuilder`; a repeated
    /// key overrides the earlier one, as in both Npgsql and libpq.
    fn set(&mut self, key: Key, value: String) -> Result<(), ConnectionStringError> {
        let invalid = |expected| ConnectionStringError::InvalidValue {
            key: key.name(),
            expected,
        };
        let trimmed = value.trim();
        if trimmed.is_empty() && key != Key::Password {
            return Ok(());
        }
        match key {
            Key::Host => self.host = Some(trimmed.to_owned()),
            Key::Port => {
                let port = trimmed
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or(invalid("a port number from 1 to 65535"))?;
                self.port = Some(port);
            }
            Key::Database => self.database = Some(trimmed.to_owned()),
            Key::User => self.user = Some(trimmed.to_owned()),
            // A password is taken exactly as written: leading or trailing spaces may be part
            // of it. Only an empty one means "no password".
            Key::Password => {
                self.password = (!value.is_empty()).then(|| SecretValue::new(value));
            }
            Key::SslMode => {
                self.ssl_mode = Some(SslMode::parse(trimmed).ok_or(invalid(
                    "Disable, Allow, Prefer, Require, VerifyCA or VerifyFull",
                ))?);
            }
            Key::TrustServerCertificate => {
                self.trust_server_certificate =
                    parse_bool(trimmed).ok_or(invalid("true or false"))?;
            }
            Key::RootCert => self.root_cert = Some(PathBuf::from(trimmed)),
            Key::ConnectTimeout => {
                let secs = trimmed
                    .parse::<u64>()
                    .ok()
                    .ok_or(invalid("a whole number of seconds (0 waits indefinitely)"))?;
                self.connect_timeout = Some(Duration::from_secs(secs));
            }
            Key::ApplicationName => self.application_name = Some(trimmed.to_owned()),
        }
        Ok(())
    }

    fn finish(self) -> Result<ConnectionString, ConnectionStringError> {
        let user = self.user.ok_or(ConnectionStringError::MissingUser)?;
        if self.trust_server_certificate
            && let Some(mode @ (SslMode::VerifyCa | SslMode::VerifyFull)) = self.ssl_mode
        {
            return Err(ConnectionStringError::TrustConflict(mode));
        }
        Ok(ConnectionString {
            host: self.host,
            port: self.port,
            database: self.database,
            user,
            password: self.password,
            ssl_mode: self.ssl_mode,
            trust_server_certificate: self.trust_server_certificate,
            root_cert: self.root_cert,
            connect_timeout: self.connect_timeout,
            application_name: self.application_name,
            ignored: self.ignored,
        })
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" => Some(true),
        "false" | "no" | "0" | "off" => Some(false),
        _ => None,
    }
}

/// Parses `Key=Value;Key="quoted;value";...` by the rules of .NET's `DbConnectionStringBuilder`:
/// whitespace around keys and unquoted values is dropped, a value may be quoted with `"` or
/// `'` and then contain `;`, `=` and the other quote, a doubled quote inside stands for one,
/// and empty entries (`;;`, a trailing `;`) are skipped.
fn parse_ado(text: &str) -> Result<Fields, ConnectionStringError> {
    let mut fields = Fields::default();
    let mut rest = text;
    let mut entry = 0;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ';' || c.is_whitespace());
        if rest.is_empty() {
            return Ok(fields);
        }
        entry += 1;
        let key_end = rest
            .find(['=', ';'])
            .filter(|i| rest.as_bytes()[*i] == b'=')
            .ok_or(ConnectionStringError::MalformedEntry { entry })?;
        let raw_key = rest[..key_end].trim();
        if raw_key.is_empty() {
            return Err(ConnectionStringError::MalformedEntry { entry });
        }
        let key = Key::from_ado(raw_key);
        // Errors about a value name the key only if it is one we know (by canonical name);
        // an unknown "key" may be a piece of a password.
        let key_label = || match key {
            Some(k) => k.name().to_owned(),
            None => format!("entry {entry}"),
        };
        rest = rest[key_end + 1..].trim_start();

        let value = match rest.chars().next() {
            Some(quote @ ('"' | '\'')) => {
                let (value, after) = read_quoted(&rest[1..], quote)
                    .ok_or_else(|| ConnectionStringError::UnterminatedQuote { key: key_label() })?;
                let after = after.trim_start();
                if !(after.is_empty() || after.starts_with(';')) {
                    return Err(ConnectionStringError::TextAfterQuote { key: key_label() });
                }
                rest = after;
                value
            }
            _ => {
                let end = rest.find(';').unwrap_or(rest.len());
                let value = rest[..end].trim_end().to_owned();
                // libpq's own form (`host=h user=u password=p`) would otherwise parse as one
                // Host whose value holds the rest, and a `user=u password=p` as a user name
                // holding the password, which errors and logs do show.
                if looks_space_separated(&value) {
                    return Err(ConnectionStringError::SpaceSeparated);
                }
                rest = &rest[end..];
                value
            }
        };
        match key {
            Some(key) => fields.set(key, value)?,
            None => fields.ignored.push(IgnoredKey::new(raw_key, "ado.net")),
        }
    }
}

/// Whether an unquoted value holds a further ` key=` of a setting we know, which means entries
/// were separated by spaces instead of `;`.
fn looks_space_separated(value: &str) -> bool {
    value.split_whitespace().skip(1).any(|word| {
        word.split_once('=')
            .is_some_and(|(k, _)| Key::from_ado(k).is_some() || Key::from_uri_param(k).is_some())
    })
}

/// Reads a quoted value up to its closing quote; returns the value and the text after the
/// quote. A doubled quote is one literal quote.
fn read_quoted(text: &str, quote: char) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == quote {
            if chars.peek().is_some_and(|(_, next)| *next == quote) {
                chars.next();
                value.push(quote);
            } else {
                return Some((value, &text[i + 1..]));
            }
        } else {
            value.push(c);
        }
    }
    None
}

/// Parses a libpq URI: `postgres[ql]://[user[:password]@][host][:port][/dbname][?param=value&...]`.
/// The query is split by hand rather than with `form_urlencoded`, which would turn `+` into a
/// space: libpq only percent-decodes, and a `+` in a password must stay a `+`.
fn parse_uri(text: &str) -> Result<Fields, ConnectionStringError> {
    use ConnectionStringError::InvalidUri;
    let url = url::Url::parse(text).map_err(|e| {
        InvalidUri(match e {
            url::ParseError::InvalidPort => "the port is not a number from 1 to 65535",
            url::ParseError::InvalidIpv6Address => "the IPv6 address is invalid",
            _ => {
                "it does not parse as a URI; percent-encode characters such as @ : / ? # % in \
                 the user and password"
            }
        })
    })?;
    if url.fragment().is_some() {
        return Err(InvalidUri(
            "it has a fragment (#...); percent-encode a # in the password as %23",
        ));
    }
    let mut fields = Fields::default();
    match url.host() {
        Some(url::Host::Domain(d)) if !d.is_empty() => {
            let host =
                percent_decode(d).ok_or(InvalidUri("the host is not valid percent-encoding"))?;
            fields.set(Key::Host, host)?;
        }
        Some(url::Host::Ipv4(ip)) => fields.set(Key::Host, ip.to_string())?,
        Some(url::Host::Ipv6(ip)) => fields.set(Key::Host, ip.to_string())?,
        _ => {}
    }
    if let Some(port) = url.port() {
        fields.set(Key::Port, port.to_string())?;
    }
    let path = url.path().strip_prefix('/').unwrap_or(url.path());
    if !path.is_empty() {
        let db = percent_decode(path).ok_or(InvalidUri(
            "the database name is not valid percent-encoding",
        ))?;
        fields.set(Key::Database, db)?;
    }
    if !url.username().is_empty() {
        let user = percent_decode(url.username())
            .ok_or(InvalidUri("the user name is not valid percent-encoding"))?;
        fields.set(Key::User, user)?;
    }
    if let Some(password) = url.password() {
        let password = percent_decode(password)
            .ok_or(InvalidUri("the password is not valid percent-encoding"))?;
        fields.set(Key::Password, password)?;
    }
    for pair in url
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let Some(key) = Key::from_uri_param(name) else {
            fields.ignored.push(IgnoredKey::new(name, "uri"));
            continue;
        };
        let value = percent_decode(value).ok_or(ConnectionStringError::InvalidValue {
            key: key.name(),
            expected: "valid percent-encoding",
        })?;
        fields.set(key, value)?;
    }
    Ok(fields)
}

/// Decodes `%XX` escapes; `None` for a broken escape or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Encodes everything but RFC 3986's unreserved characters, so a database name round-trips
/// through a datasource URI whatever it contains.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn has_prefix_ignore_case(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

// ---------------------------------------------------------------------------------------------
// Datasources
// ---------------------------------------------------------------------------------------------

/// What is backed up: one database on one server, named without credentials. Parsed from
/// `postgres://host[:port]/dbname` or from an Azure ARM id
/// `/subscriptions/../providers/Microsoft.DBforPostgreSQL/flexibleServers/<srv>/databases/<db>`
/// (or `servers/` for single server), which maps to `<srv>.postgres.database.azure.com:5432`.
///
/// `Display` gives the `postgres://` URI; serde keeps the form it came in (the ARM id, when
/// there was one, so a vault written from Azure names stays in Azure names).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Datasource {
    host: String,
    port: u16,
    database: String,
    azure_resource_id: Option<String>,
}

impl Datasource {
    /// A datasource from its parts, checked as the parser checks them.
    pub fn new(
        host: impl Into<String>,
        port: u16,
        database: impl Into<String>,
    ) -> Result<Datasource, DatasourceError> {
        let host = normalize_host(&host.into())?;
        let database = database.into();
        if database.is_empty() {
            return Err(DatasourceError::MissingDatabase);
        }
        if port == 0 {
            return Err(DatasourceError::InvalidUri(
                "the port must be a number from 1 to 65535",
            ));
        }
        Ok(Datasource {
            host,
            port,
            database,
            azure_resource_id: None,
        })
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

    /// The ARM id this datasource was parsed from, if it was.
    pub fn azure_resource_id(&self) -> Option<&str> {
        self.azure_resource_id.as_deref()
    }

    /// The server's short name: the first label of the host (`myserver` for
    /// `myserver.postgres.database.azure.com`), or the whole address for an IP address.
    pub fn server_name(&self) -> &str {
        if self.host.parse::<IpAddr>().is_ok() {
            &self.host
        } else {
            self.host.split('.').next().unwrap_or(&self.host)
        }
    }

    fn parse_uri(text: &str) -> Result<Datasource, DatasourceError> {
        use DatasourceError::InvalidUri;
        let url = url::Url::parse(text).map_err(|e| {
            InvalidUri(match e {
                url::ParseError::InvalidPort => "the port must be a number from 1 to 65535",
                url::ParseError::InvalidIpv6Address => "the IPv6 address is invalid",
                url::ParseError::EmptyHost => "it names no host",
                _ => "it does not parse as postgres://host[:port]/dbname",
            })
        })?;
        // Checked before anything else, and without repeating the input: it holds a password.
        if !url.username().is_empty() || url.password().is_some() {
            return Err(DatasourceError::CredentialsInUri);
        }
        if url.query().is_some() {
            return Err(InvalidUri(
                "it has query parameters; connection settings such as sslmode belong in the \
                 secret's connection string",
            ));
        }
        if url.fragment().is_some() {
            return Err(InvalidUri("it has a fragment (#...)"));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(InvalidUri("it names no host")),
        };
        let host = normalize_host(&host)?;
        if url.port() == Some(0) {
            return Err(InvalidUri("the port must be a number from 1 to 65535"));
        }
        let path = url.path().strip_prefix('/').unwrap_or(url.path());
        if path.is_empty() {
            return Err(DatasourceError::MissingDatabase);
        }
        if path.contains('/') {
            return Err(InvalidUri("its path must be a single database name"));
        }
        let database = percent_decode(path).ok_or(InvalidUri(
            "the database name is not valid percent-encoding",
        ))?;
        Ok(Datasource {
            host,
            port: url.port().unwrap_or(DEFAULT_PORT),
            database,
            azure_resource_id: None,
        })
    }

    fn parse_arm_id(text: &str) -> Result<Datasource, DatasourceError> {
        use DatasourceError::InvalidArmId as Invalid;
        let trimmed = text.trim_end_matches('/');
        let segments: Vec<&str> = trimmed.split('/').skip(1).collect();
        let word = |i: usize, expected: &str| {
            segments
                .get(i)
                .is_some_and(|s| s.eq_ignore_ascii_case(expected))
        };
        let named = |i: usize| segments.get(i).is_some_and(|s| !s.is_empty());
        if !(word(0, "subscriptions") && named(1) && word(2, "resourceGroups") && named(3)) {
            return Err(Invalid(
                "it must start /subscriptions/<id>/resourceGroups/<group>/providers/",
            ));
        }
        if !(word(4, "providers") && word(5, "Microsoft.DBforPostgreSQL")) {
            return Err(Invalid("it is not a Microsoft.DBforPostgreSQL resource"));
        }
        if !(word(6, "flexibleServers") || word(6, "servers")) || !named(7) {
            return Err(Invalid(
                "it must name a server: .../Microsoft.DBforPostgreSQL/flexibleServers/<server>",
            ));
        }
        if segments.len() == 8 {
            return Err(Invalid(
                "it names a server but no database; append /databases/<name>",
            ));
        }
        if !(word(8, "databases") && named(9)) || segments.len() != 10 {
            return Err(Invalid("it must end /databases/<name> after the server"));
        }
        let server = segments[7].to_ascii_lowercase();
        // Azure's server names: lowercase letters, digits and hyphens, at most 63 characters,
        // not starting or ending with a hyphen (a DNS label, since it becomes one).
        if server.len() > 63
            || !server
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            || server.starts_with('-')
            || server.ends_with('-')
        {
            return Err(Invalid(
                "the server name must be letters, digits and hyphens (at most 63), \
                 not starting or ending with a hyphen",
            ));
        }
        Ok(Datasource {
            host: format!("{server}.{AZURE_POSTGRES_DNS_SUFFIX}"),
            port: DEFAULT_PORT,
            database: segments[9].to_owned(),
            azure_resource_id: Some(trimmed.to_owned()),
        })
    }
}

/// Lowercases a host name (DNS is case-insensitive, and comparisons with the secret's Server
/// should not warn over case) and refuses what cannot be one.
fn normalize_host(host: &str) -> Result<String, DatasourceError> {
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(DatasourceError::InvalidUri("it names no host"));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    if host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        Ok(host.to_ascii_lowercase())
    } else {
        Err(DatasourceError::InvalidUri(
            "the host must be a DNS name or an IP address",
        ))
    }
}

impl FromStr for Datasource {
    type Err = DatasourceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.starts_with('/') {
            Datasource::parse_arm_id(s)
        } else if has_prefix_ignore_case(s, "postgres://")
            || has_prefix_ignore_case(s, "postgresql://")
        {
            Datasource::parse_uri(s)
        } else {
            Err(DatasourceError::Unrecognised)
        }
    }
}

impl fmt::Display for Datasource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("[{ip}]"),
            _ => self.host.clone(),
        };
        write!(
            f,
            "postgres://{host}:{}/{}",
            self.port,
            percent_encode(&self.database)
        )
    }
}

impl TryFrom<String> for Datasource {
    type Error = DatasourceError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Datasource> for String {
    fn from(d: Datasource) -> String {
        match d.azure_resource_id {
            Some(id) => id,
            None => d.to_string(),
        }
    }
}

/// A datasource that could not be parsed. Messages never repeat the input: a URI given by
/// mistake with a password in it must not bring the password into an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatasourceError {
    #[error(
        "the datasource is neither a postgres://host[:port]/dbname URI nor an Azure resource id \
         /subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.DBforPostgreSQL/\
         flexibleServers/<server>/databases/<db>"
    )]
    Unrecognised,
    #[error(
        "the datasource URI contains a user name or password (not shown); a datasource names \
         only host, port and database, and the credentials belong in the secret's connection \
         string, which pgvault reads at each use and never stores"
    )]
    CredentialsInUri,
    #[error("the datasource URI names no database; write postgres://host[:port]/dbname")]
    MissingDatabase,
    #[error("the datasource URI is invalid: {0}")]
    InvalidUri(&'static str),
    #[error("the datasource's Azure resource id is invalid: {0}")]
    InvalidArmId(&'static str),
}

impl DatasourceError {
    /// The Azure-style error code.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::UserErrorInvalidDatasource
    }
}

impl Datasource {
    /// The server without a database: `postgres://host:port`, the datasource *set* of
    /// Azure's instance JSON.
    pub fn server_url(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("postgres://{host}:{}", self.port)
    }

    /// Whether two datasources name the same database on the same server (host names
    /// compare case-insensitively, database names exactly, as PostgreSQL does).
    pub fn same_database(&self, other: &Datasource) -> bool {
        self.host.eq_ignore_ascii_case(&other.host)
            && self.port == other.port
            && self.database == other.database
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cs(text: &str) -> Result<ConnectionString, ConnectionStringError> {
        ConnectionString::parse(&SecretValue::new(text))
    }

    /// A parsed connection string in one line, fields in a fixed order, unset ones left out,
    /// so each table row below fits on a line.
    fn describe(c: &ConnectionString) -> String {
        let mut parts = Vec::new();
        let mut add = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                parts.push(format!("{k}={v}"));
            }
        };
        add("host", c.host().map(str::to_owned));
        add("port", c.port().map(|p| p.to_string()));
        add("db", c.database().map(str::to_owned));
        add("user", Some(c.user().to_owned()));
        add(
            "password",
            c.password().map(|p| p.expose_secret().to_owned()),
        );
        add("sslmode", c.ssl_mode().map(|m| m.to_string()));
        add("rootcert", c.root_cert().map(|p| p.display().to_string()));
        add(
            "timeout",
            c.connect_timeout().map(|t| t.as_secs().to_string()),
        );
        add("app", c.application_name().map(str::to_owned));
        parts.join(" ")
    }

    #[test]
    fn parses_connection_strings() {
        let cases: &[(&str, &str)] = &[
            // The Azure portal's form, verbatim apart from the values.
            (
                "Server=srv.postgres.database.azure.com;Database=postgres;Port=5432;User Id=u;\
                 Password=p;Ssl Mode=Require;",
                "host=srv.postgres.database.azure.com port=5432 db=postgres user=u password=p \
                 sslmode=require",
            ),
            // Synonyms and case.
            ("host=h;USERNAME=u", "host=h user=u"),
            ("SERVER=h;user=u", "host=h user=u"),
            ("UID=u;PWD=p", "user=u password=p"),
            ("userid=u;psw=p", "user=u password=p"),
            ("User ID=u;DB=d", "db=d user=u"),
            ("User=u;SslMode=verify-full", "user=u sslmode=verify-full"),
            ("User=u;SSL Mode=VerifyCA", "user=u sslmode=verify-ca"),
            ("User=u;sslmode=disable", "user=u sslmode=disable"),
            ("User=u;Ssl Mode=Allow", "user=u sslmode=allow"),
            ("User=u;Ssl Mode=prefer", "user=u sslmode=prefer"),
            (
                "User=u;Root Certificate=/etc/ssl/ca.pem",
                "user=u rootcert=/etc/ssl/ca.pem",
            ),
            ("User=u;SslRootCert=/ca.pem", "user=u rootcert=/ca.pem"),
            ("User=u;Timeout=30", "user=u timeout=30"),
            ("User=u;Connect Timeout=0", "user=u timeout=0"),
            ("User=u;Application Name=nightly", "user=u app=nightly"),
            (
                "User=u;Trust Server Certificate=true;Ssl Mode=Require",
                "user=u sslmode=require",
            ),
            // Whitespace around keys and values, empty entries, a repeated key.
            ("  User Id = u ; ; Port = 6432 ;;", "port=6432 user=u"),
            ("User=x;User=u", "user=u"),
            // Quoting: `;`, `=`, the other quote, doubled quotes, spaces kept inside.
            (r#"User=u;Password="a;b=c""#, "user=u password=a;b=c"),
            (r#"User=u;Password='it''s'"#, "user=u password=it's"),
            (
                r#"User=u;Password="say ""hi"" 'x'";"#,
                r#"user=u password=say "hi" 'x'"#,
            ),
            (r#"User=u;Password=" spaced ""#, "user=u password= spaced "),
            (r#"User="u";Database='my db'"#, "db=my db user=u"),
            // Spaces and `=` inside a value are fine unless they spell another known key.
            ("User=u;Password=a b=c", "user=u password=a b=c"),
            (r#"User=u;Password="a user=b""#, "user=u password=a user=b"),
            // An unquoted value may contain `=` and quotes that do not open it.
            ("User=u;Password=a=b\"c", "user=u password=a=b\"c"),
            // Unknown keys are ignored.
            (
                "User=u;Pooling=false;Maximum Pool Size=5;Include Error Detail=true",
                "user=u",
            ),
            // An empty value unsets, so an empty password is no password.
            ("User=u;Password=", "user=u"),
            // URIs.
            (
                "postgres://u:p@h:6432/d?sslmode=require",
                "host=h port=6432 db=d user=u password=p sslmode=require",
            ),
            ("postgresql://u@h", "host=h user=u"),
            ("POSTGRES://u@h/", "host=h user=u"),
            (
                "postgres://u:p%40ss%3Aw%2Fo%23rd%2B@h/my%20db",
                "host=h db=my db user=u password=p@ss:w/o#rd+",
            ),
            // `+` is not a space in a libpq URI.
            ("postgres://u@h?password=a+b", "host=h user=u password=a+b"),
            (
                "postgres://u@[::1]:5433/d?sslrootcert=%2Fca.pem&connect_timeout=7\
                 &application_name=job%201&unknown=1",
                "host=::1 port=5433 db=d user=u rootcert=/ca.pem timeout=7 app=job 1",
            ),
            ("postgres://h/d?user=u&dbname=e", "host=h db=e user=u"),
            (
                "postgres://us%65r:x@10.0.0.1/d",
                "host=10.0.0.1 db=d user=user password=x",
            ),
        ];
        for (input, expected) in cases {
            let parsed = cs(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(describe(&parsed), *expected, "{input}");
        }
    }

    #[test]
    fn trust_server_certificate() {
        assert!(
            cs("User=u;Trust Server Certificate=True")
                .unwrap()
                .trust_server_certificate()
        );
        assert!(
            !cs("User=u;TrustServerCertificate=no")
                .unwrap()
                .trust_server_certificate()
        );
        assert_eq!(
            cs("User=u;Trust Server Certificate=true;Ssl Mode=VerifyFull").unwrap_err(),
            ConnectionStringError::TrustConflict(SslMode::VerifyFull)
        );
    }

    #[test]
    fn rejects_bad_connection_strings() {
        use ConnectionStringError as E;
        let cases: Vec<(&str, E)> = vec![
            ("", E::UnsupportedFormat),
            ("just some text", E::UnsupportedFormat),
            ("mysql://u:p@h/d", E::UnsupportedFormat),
            ("Password=p;Server=h", E::MissingUser),
            ("postgres://h/d", E::MissingUser),
            ("User=u;junk;Password=p", E::MalformedEntry { entry: 2 }),
            ("host=h user=u password=p", E::SpaceSeparated),
            ("User Id=u password=p", E::SpaceSeparated),
            ("Server=h;User Id=u dbname=d", E::SpaceSeparated),
            ("User=u;=p", E::MalformedEntry { entry: 2 }),
            (
                r#"User=u;Password="abc"#,
                E::UnterminatedQuote {
                    key: "Password".into(),
                },
            ),
            (
                r#"User=u;Mystery="abc"#,
                E::UnterminatedQuote {
                    key: "entry 2".into(),
                },
            ),
            (
                r#"User=u;Password="abc"def;"#,
                E::TextAfterQuote {
                    key: "Password".into(),
                },
            ),
            (
                "User=u;Port=abc",
                E::InvalidValue {
                    key: "Port",
                    expected: "a port number from 1 to 65535",
                },
            ),
            (
                "User=u;Port=0",
                E::InvalidValue {
                    key: "Port",
                    expected: "a port number from 1 to 65535",
                },
            ),
            (
                "User=u;Port=70000",
                E::InvalidValue {
                    key: "Port",
                    expected: "a port number from 1 to 65535",
                },
            ),
            (
                "User=u;Ssl Mode=Sometimes",
                E::InvalidValue {
                    key: "SSL Mode",
                    expected: "Disable, Allow, Prefer, Require, VerifyCA or VerifyFull",
                },
            ),
            (
                "User=u;Timeout=-1",
                E::InvalidValue {
                    key: "Timeout",
                    expected: "a whole number of seconds (0 waits indefinitely)",
                },
            ),
            (
                "User=u;Trust Server Certificate=maybe",
                E::InvalidValue {
                    key: "Trust Server Certificate",
                    expected: "true or false",
                },
            ),
            (
                "postgres://u@h:99999/d",
                E::InvalidUri("the port is not a number from 1 to 65535"),
            ),
            (
                "postgres://u:p@h/d#frag",
                E::InvalidUri(
                    "it has a fragment (#...); percent-encode a # in the password as %23",
                ),
            ),
            (
                "postgres://u:p%zz@h/d",
                E::InvalidUri("the password is not valid percent-encoding"),
            ),
            (
                "postgres://u:%FF@h/d",
                E::InvalidUri("the password is not valid percent-encoding"),
            ),
            (
                "postgres://u@h/d?sslmode=bogus",
                E::InvalidValue {
                    key: "SSL Mode",
                    expected: "Disable, Allow, Prefer, Require, VerifyCA or VerifyFull",
                },
            ),
        ];
        for (input, expected) in cases {
            let err = cs(input).unwrap_err();
            assert_eq!(err, expected, "{input}");
            assert_eq!(
                err.code().as_str(),
                "UserErrorSecretValueInUnsupportedFormat"
            );
        }
    }

    /// The secret's text, or any piece of it, never appears in an error. Each case hides a
    /// marker in the password (or where a password would be) and breaks the string around it.
    #[test]
    fn errors_never_contain_the_secret() {
        const MARK: &str = "Zq7Hunter2";
        let cases = [
            MARK.to_owned(),
            format!("Server=h;User Id=u;Password={MARK};Port=x{MARK}"),
            format!("Server=h;User Id=u;Password=\"{MARK}"),
            format!("Server=h;User Id=u;Password=\"{MARK}\"{MARK};"),
            format!("Server=h;Password={MARK};{MARK}"),
            format!("Server=h;User Id=u;Password=ab;{MARK}=\"cd"),
            format!("Server=h;Password={MARK}"),
            format!("host=h user=u password={MARK}"),
            format!("Server=h;User Id=u password={MARK}"),
            format!("Server=h;User Id=u;Ssl Mode={MARK}"),
            format!("Server=h;User Id=u;Timeout={MARK}"),
            format!("Server=h;User Id=u;Trust Server Certificate={MARK}"),
            format!("postgres://u:{MARK}@h:99999/d"),
            format!("postgres://u:{MARK}#x@h/d"),
            format!("postgres://u:{MARK}%zz@h/d"),
            format!("postgres://h/d?password={MARK}"),
            format!("postgres://u@h/d?sslmode={MARK}"),
            format!("postgres://u@h/d?connect_timeout={MARK}"),
        ];
        for input in &cases {
            let err = cs(input).unwrap_err();
            let shown = format!("{err} | {err:?}");
            assert!(!shown.contains("Zq7"), "{input:?} leaked into: {shown}");
            assert!(!shown.contains("Hunter"), "{input:?} leaked into: {shown}");
        }
    }

    #[test]
    fn debug_redacts_the_password() {
        let c = cs("Server=h;User Id=alice;Password=Hunter2;Ssl Mode=Require").unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("Hunter2"), "{shown}");
        assert!(
            shown.contains("<redacted>") && shown.contains("alice"),
            "{shown}"
        );
    }

    #[test]
    fn parses_datasources() {
        let cases: &[(&str, &str, u16, &str, &str, &str)] = &[
            // input, host, port, database, server_name, Display
            (
                "postgres://db.example.com/app",
                "db.example.com",
                5432,
                "app",
                "db",
                "postgres://db.example.com:5432/app",
            ),
            (
                "postgresql://DB.Example.com:6432/app",
                "db.example.com",
                6432,
                "app",
                "db",
                "postgres://db.example.com:6432/app",
            ),
            (
                "postgres://127.0.0.1:5433/my%20db",
                "127.0.0.1",
                5433,
                "my db",
                "127.0.0.1",
                "postgres://127.0.0.1:5433/my%20db",
            ),
            (
                "postgres://[::1]/app",
                "::1",
                5432,
                "app",
                "::1",
                "postgres://[::1]:5432/app",
            ),
            (
                "/subscriptions/aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e/resourcegroups/ossrg/providers/Microsoft.DBforPostgreSQL/flexibleServers/archive-postgresql-ccy/databases/empdb11",
                "archive-postgresql-ccy.postgres.database.azure.com",
                5432,
                "empdb11",
                "archive-postgresql-ccy",
                "postgres://archive-postgresql-ccy.postgres.database.azure.com:5432/empdb11",
            ),
            (
                "/subscriptions/x/resourceGroups/rg/providers/microsoft.dbforpostgresql/servers/OldSrv/databases/db1/",
                "oldsrv.postgres.database.azure.com",
                5432,
                "db1",
                "oldsrv",
                "postgres://oldsrv.postgres.database.azure.com:5432/db1",
            ),
        ];
        for (input, host, port, db, server, shown) in cases {
            let d: Datasource = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(
                (d.host(), d.port(), d.database()),
                (*host, *port, *db),
                "{input}"
            );
            assert_eq!(d.server_name(), *server, "{input}");
            assert_eq!(d.to_string(), *shown, "{input}");
            // The URI form parses back to the same place.
            let back: Datasource = d.to_string().parse().unwrap();
            assert_eq!(
                (back.host(), back.port(), back.database()),
                (*host, *port, *db)
            );
            // Serde keeps the form it came in.
            let kept = String::from(d.clone());
            if input.starts_with('/') {
                assert_eq!(kept, input.trim_end_matches('/'));
                assert_eq!(d.azure_resource_id(), Some(kept.as_str()));
            } else {
                assert_eq!(kept, *shown);
            }
        }
    }

    #[test]
    fn rejects_bad_datasources() {
        use DatasourceError as E;
        let cases: Vec<(&str, E)> = vec![
            ("db.example.com/app", E::Unrecognised),
            ("mysql://h/d", E::Unrecognised),
            ("postgres://u:Hunter2@h/d", E::CredentialsInUri),
            ("postgres://u@h/d", E::CredentialsInUri),
            ("postgres://h", E::MissingDatabase),
            ("postgres://h/", E::MissingDatabase),
            (
                "postgres://h/a/b",
                E::InvalidUri("its path must be a single database name"),
            ),
            (
                "postgres://h/d?sslmode=require",
                E::InvalidUri(
                    "it has query parameters; connection settings such as sslmode belong in the secret's connection string",
                ),
            ),
            (
                "postgres://h:0/d",
                E::InvalidUri("the port must be a number from 1 to 65535"),
            ),
            (
                "postgres://h:99999/d",
                E::InvalidUri("the port must be a number from 1 to 65535"),
            ),
            ("postgres://:5432/d", E::InvalidUri("it names no host")),
            (
                "postgres://h%20x/d",
                E::InvalidUri("the host must be a DNS name or an IP address"),
            ),
            (
                "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Sql/servers/s/databases/d",
                E::InvalidArmId("it is not a Microsoft.DBforPostgreSQL resource"),
            ),
            (
                "/subscriptions/x/providers/Microsoft.DBforPostgreSQL/flexibleServers/s/databases/d",
                E::InvalidArmId(
                    "it must start /subscriptions/<id>/resourceGroups/<group>/providers/",
                ),
            ),
            (
                "/subscriptions/x/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/flexibleServers/s",
                E::InvalidArmId("it names a server but no database; append /databases/<name>"),
            ),
            (
                "/subscriptions/x/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/serverGroupsv2/s/databases/d",
                E::InvalidArmId(
                    "it must name a server: .../Microsoft.DBforPostgreSQL/flexibleServers/<server>",
                ),
            ),
            (
                "/subscriptions/x/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/flexibleServers/s/databases/d/extra",
                E::InvalidArmId("it must end /databases/<name> after the server"),
            ),
            (
                "/subscriptions/x/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/flexibleServers/s_1/databases/d",
                E::InvalidArmId(
                    "the server name must be letters, digits and hyphens (at most 63), not starting or ending with a hyphen",
                ),
            ),
        ];
        for (input, expected) in cases {
            let err = input.parse::<Datasource>().unwrap_err();
            assert_eq!(err, expected, "{input}");
            assert_eq!(err.code().as_str(), "UserErrorInvalidDatasource");
        }
        // Credentials are refused without being repeated, even when the URI is broken too.
        for input in [
            "postgres://u:Hunter2@h/d",
            "postgres://u:Hunter2@h:99999/d",
            "postgres://u:Hunter2@h/d?x=1",
        ] {
            let err = input.parse::<Datasource>().unwrap_err();
            assert!(!format!("{err} {err:?}").contains("Hunter2"), "{input}");
        }
    }

    #[test]
    fn datasource_new_checks_its_parts() {
        let d = Datasource::new("Localhost", 5432, "app").unwrap();
        assert_eq!(d.to_string(), "postgres://localhost:5432/app");
        assert_eq!(
            Datasource::new("h", 5432, ""),
            Err(DatasourceError::MissingDatabase)
        );
        assert!(Datasource::new("", 5432, "d").is_err());
        assert!(Datasource::new("h", 0, "d").is_err());
        assert!(Datasource::new("h/x", 5432, "d").is_err());
    }
}
