//! What a sandboxed script may do, and the secrets no script's output may show.
//!
//! A drop-in script (and `pgvault run --sandbox`) runs with [`Grants`]: what the host's flags
//! allow (`--allow-destructive-scripts`, `--script-restore-dir`, `--script-restore-server`,
//! `--script-env`), narrowed by the script's own header (`// restore-dir: ...`, see
//! [`parse_narrowing`]). A header can only take permissions away: a line naming something the
//! host does not allow makes the header wrong, and the script does not run.
//!
//! The bindings ask the grants before acting ([`Grants::check_restore_dir`],
//! [`Grants::check_restore_server`], [`Grants::check_env`], and
//! `ScriptContext::check_destructive` for every call that removes a recovery point, shortens
//! its life or stops backups). Every registered function is classified in `script/mod.rs`'s
//! documentation of [`crate::script::ScriptContext::check_destructive`].
//!
//! [`Redactor`] replaces secret values with `<redacted>` in what a script prints and in its
//! error, for every script (the operator's too): the values of environment variables whose
//! names say they hold a secret, and the secrets behind the `env:` and `file:` references a
//! script hands to pgvault. A secret is then absent from the job history, the `done/` and
//! `failed/` logs and the host's log, even when a script reads it through an allowed variable.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

use pgvault_core::engine::protect::instance_target;
use pgvault_core::model::code::ErrorCode;
use pgvault_core::postgres::connection::Datasource;
use pgvault_core::secrets::SecretRef;

use crate::service::Pgvault;

/// The error code of a call a sandboxed script is not allowed to make.
pub const SANDBOX_REFUSED: ErrorCode = ErrorCode::UserErrorScriptNotAllowed;

/// What replaces a secret value in a script's output and errors.
pub const REDACTED: &str = "<redacted>";

/// What a sandboxed script may do beyond reading the vaults and the job history, backing up
/// and verifying. Empty (the default) is the strictest sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Calls that remove recovery points, shorten their life or stop backups
    /// (`--allow-destructive-scripts`).
    pub destructive: bool,
    /// Folders (absolute) and Blob container URLs a restore as files may write into, with
    /// everything under them (`--script-restore-dir`).
    pub restore_dirs: Vec<RestoreDir>,
    /// Servers a restore may create a database on (`--script-restore-server`).
    pub restore_servers: Vec<ServerGrant>,
    /// Environment variables `env(..)` may read: exact names, or a prefix ending in `*`
    /// (`--script-env`).
    pub env: Vec<String>,
}

/// A folder or a Blob container (with an optional prefix) restores as files may write into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreDir {
    Folder(PathBuf),
    /// `https://<account>.blob.core.windows.net/<container>[/<prefix>]` or `az://...`,
    /// without a trailing `/`.
    Container(String),
}

impl FromStr for RestoreDir {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.contains("://") {
            let url = text.trim_end_matches('/');
            if url.contains(['?', '#']) || url.split('/').any(|s| s == "." || s == "..") {
                return Err(format!(
                    "`{text}` is not a Blob container URL to allow: give \
                     https://<account>.blob.core.windows.net/<container>[/<prefix>] without a \
                     query string or `..`"
                ));
            }
            return Ok(RestoreDir::Container(url.to_owned()));
        }
        let path = Path::new(text);
        if !path.is_absolute() {
            return Err(format!(
                "`{text}` is not an absolute folder; give the restore folder as a full path"
            ));
        }
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(format!("`{text}` has a `..`; give the folder itself"));
        }
        Ok(RestoreDir::Folder(path.components().collect()))
    }
}

impl fmt::Display for RestoreDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreDir::Folder(p) => write!(f, "{}", p.display()),
            RestoreDir::Container(u) => f.write_str(u),
        }
    }
}

impl RestoreDir {
    /// Whether `other` lies in this one (or is it).
    fn covers(&self, other: &RestoreDir) -> bool {
        match (self, other) {
            (RestoreDir::Folder(a), RestoreDir::Folder(b)) => resolved(b).starts_with(resolved(a)),
            (RestoreDir::Container(a), RestoreDir::Container(b)) => {
                b == a
                    || b.strip_prefix(a.as_str())
                        .is_some_and(|r| r.starts_with('/'))
            }
            _ => false,
        }
    }
}

/// `path` with symbolic links resolved as far as it exists (a link inside an allowed folder
/// must not lead out of it); the part that does not exist yet is appended as written, and
/// has no `..` ([`RestoreDir::from_str`] refuses those).
fn resolved(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return rest
                .iter()
                .rev()
                .fold(real, |p, c: &std::ffi::OsString| p.join(c));
        }
        match (
            existing.file_name().map(|n| n.to_owned()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// A server a restore may target: a host (as a datasource normalizes it), and a port unless
/// any port is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerGrant {
    host: String,
    port: Option<u16>,
}

impl FromStr for ServerGrant {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "`{text}` is not a server to allow ({why}): give HOST or HOST:PORT, such as db2.example:5432"
            )
        };
        let text = text.trim();
        let (host, port) = if let Some(v6) = text.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("no `]`"))?;
            match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if after.is_empty() => (host, None),
                None => return Err(bad("text after `]`")),
            }
        } else if text.matches(':').count() == 1 {
            let (host, port) = text.split_once(':').expect("one colon");
            (host, Some(port))
        } else {
            (text, None)
        };
        let port = port
            .map(|p| {
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| bad("the port is not 1 to 65535"))
            })
            .transpose()?;
        let datasource = Datasource::new(host, port.unwrap_or(5432), "postgres")
            .map_err(|e| bad(&e.to_string()))?;
        Ok(ServerGrant {
            host: datasource.host().to_owned(),
            port,
        })
    }
}

impl fmt::Display for ServerGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            Some(port) => write!(f, "{host}:{port}"),
            None => f.write_str(&host),
        }
    }
}

impl ServerGrant {
    fn allows(&self, host: &str, port: u16) -> bool {
        self.host == host && self.port.is_none_or(|p| p == port)
    }

    fn covers(&self, other: &ServerGrant) -> bool {
        self.host == other.host && (self.port.is_none() || self.port == other.port)
    }
}

/// Whether an `--script-env` entry allows `name`.
fn env_entry_allows(entry: &str, name: &str) -> bool {
    match entry.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => entry == name,
    }
}

fn refused(message: String) -> pgvault_core::engine::Error {
    pgvault_core::engine::Error::new(SANDBOX_REFUSED, message)
}

/// A secret reference and a server (`host` lowercased, `port`) the operator has used together:
/// some backup instance, in some vault, logs in to that server with that secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretPairing {
    pub secret: SecretRef,
    pub host: String,
    pub port: u16,
}

/// Every secret/server pairing of the host's backup instances. An instance whose datasource
/// or reference does not parse pairs nothing.
pub async fn secret_pairings(
    pgvault: &Pgvault,
) -> pgvault_core::engine::Result<Vec<SecretPairing>> {
    let mut out = Vec::new();
    for name in pgvault.vault_names()? {
        let vault = pgvault.vault(&name).await?;
        for instance in vault.list_instances().await? {
            if let Ok((ds, secret)) = instance_target(&instance.properties) {
                out.push(SecretPairing {
                    secret,
                    host: ds.host().to_ascii_lowercase(),
                    port: ds.port(),
                });
            }
        }
    }
    Ok(out)
}

/// Refuses to send `secret` to `target` unless the operator already did (see
/// [`SecretPairing`]). A sandboxed script that could pair any secret it names with any server
/// could hand the credentials of every database to a server of its choosing, which then asks
/// for the password in clear; so a drop-in protects or lists databases only on a server
/// through a secret that an instance already uses with it. The operator introduces a new
/// pairing by protecting one database by hand (`pgvault backup-instance create`, or `pgvault
/// run` without `--sandbox`).
pub fn check_secret_destination(
    known: &[SecretPairing],
    secret: &SecretRef,
    target: &Datasource,
) -> pgvault_core::engine::Result<()> {
    let host = target.host().to_ascii_lowercase();
    if known
        .iter()
        .any(|k| &k.secret == secret && k.host == host && k.port == target.port())
    {
        return Ok(());
    }
    Err(refused(format!(
        "a script may use a secret only with a server a backup instance already uses it with, \
         and no instance logs in to {}:{} with the secret `{secret}`; protect one database of \
         that server with that secret by hand first (pgvault backup-instance create), then the \
         script may protect the others",
        target.host(),
        target.port()
    )))
}

impl Grants {
    /// Refuses a restore as files into `target` (a folder or a container URL) that no
    /// `--script-restore-dir` covers, and a file name that is not a plain name.
    pub fn check_restore_dir(
        &self,
        target: &str,
        file_name: &str,
    ) -> Result<(), pgvault_core::engine::Error> {
        if file_name.contains(['/', '\\']) || file_name.starts_with('.') {
            return Err(refused(format!(
                "`{file_name}` is not a plain file name; a script restores as files only into \
                 the folder it names, so give a name without `/` that does not start with `.`"
            )));
        }
        let allowed = self
            .restore_dirs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>();
        let hint = if allowed.is_empty() {
            "the host allows none: start it with --script-restore-dir DIR".to_owned()
        } else {
            format!("the host allows {}", allowed.join(", "))
        };
        let wanted: RestoreDir = target.parse().map_err(|e: String| {
            refused(format!(
                "{e}; a script may restore as files only into an allowed folder ({hint})"
            ))
        })?;
        if self.restore_dirs.iter().any(|d| d.covers(&wanted)) {
            return Ok(());
        }
        Err(refused(format!(
            "a script may restore as files only into an allowed folder, and `{target}` is not \
             in one ({hint})"
        )))
    }

    /// Refuses a restore onto a server no `--script-restore-server` names.
    pub fn check_restore_server(
        &self,
        target: &Datasource,
    ) -> Result<(), pgvault_core::engine::Error> {
        if self
            .restore_servers
            .iter()
            .any(|s| s.allows(target.host(), target.port()))
        {
            return Ok(());
        }
        let allowed = self
            .restore_servers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>();
        let hint = if allowed.is_empty() {
            "the host allows none: start it with --script-restore-server HOST[:PORT]".to_owned()
        } else {
            format!("the host allows {}", allowed.join(", "))
        };
        Err(refused(format!(
            "a script may restore only onto an allowed server, and {}:{} is not one ({hint})",
            target.host(),
            target.port()
        )))
    }

    /// Refuses reading an environment variable the host does not list in `--script-env`.
    pub fn check_env(&self, name: &str) -> Result<(), pgvault_core::engine::Error> {
        if self.env.iter().any(|e| env_entry_allows(e, name)) {
            return Ok(());
        }
        Err(refused(format!(
            "a script may read only the environment variables the host allows, and `{name}` is \
             not one (the host's environment holds database secrets); start the host with \
             --script-env {name} to allow it, or write the value in the script"
        )))
    }

    /// These grants narrowed by a script's header: each line must name something these
    /// grants allow. Problems are (line, message), as the schedule header's.
    pub fn narrow(&self, header: &Narrowing) -> Result<Grants, Vec<(usize, String)>> {
        let mut problems = Vec::new();
        let mut out = self.clone();
        if let Some((line, destructive)) = header.destructive {
            if destructive && !self.destructive {
                problems.push((
                    line,
                    "`// destructive: yes` asks for what the host does not allow; start it \
                     with --allow-destructive-scripts, or remove the line"
                        .to_owned(),
                ));
            }
            out.destructive = destructive && self.destructive;
        }
        if !header.restore_dirs.is_empty() {
            out.restore_dirs = Vec::new();
            for (line, dir) in &header.restore_dirs {
                if self.restore_dirs.iter().any(|d| d.covers(dir)) {
                    out.restore_dirs.push(dir.clone());
                } else {
                    problems.push((
                        *line,
                        format!(
                            "`{dir}` is not in a folder the host allows (--script-restore-dir)"
                        ),
                    ));
                }
            }
        }
        if !header.restore_servers.is_empty() {
            out.restore_servers = Vec::new();
            for (line, server) in &header.restore_servers {
                if self.restore_servers.iter().any(|s| s.covers(server)) {
                    out.restore_servers.push(server.clone());
                } else {
                    problems.push((
                        *line,
                        format!(
                            "`{server}` is not a server the host allows (--script-restore-server)"
                        ),
                    ));
                }
            }
        }
        if !header.env.is_empty() {
            out.env = Vec::new();
            for (line, name) in &header.env {
                let covered = self.env.iter().any(|e| match name.strip_suffix('*') {
                    Some(prefix) => e.strip_suffix('*').is_some_and(|p| prefix.starts_with(p)),
                    None => env_entry_allows(e, name),
                });
                if covered {
                    out.env.push(name.clone());
                } else {
                    problems.push((
                        *line,
                        format!(
                            "`{name}` is not an environment variable the host allows (--script-env)"
                        ),
                    ));
                }
            }
        }
        problems.sort();
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(problems)
        }
    }
}

/// What a script's header asks to narrow, with the line of each request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Narrowing {
    pub destructive: Option<(usize, bool)>,
    pub restore_dirs: Vec<(usize, RestoreDir)>,
    pub restore_servers: Vec<(usize, ServerGrant)>,
    pub env: Vec<(usize, String)>,
}

/// The narrowing lines among a script's leading comment lines (numbered from 1): `//
/// restore-dir: /srv/restores/nightly`, `// restore-server: db2.example:5432`, `// env:
/// PGVAULT_NIGHTLY_RULE` (each may repeat; several names may share a line, separated by
/// spaces or commas) and `// destructive: no`. Other comments are ignored.
pub fn parse_narrowing<S: AsRef<str>>(lines: &[S]) -> Result<Narrowing, Vec<(usize, String)>> {
    let mut out = Narrowing::default();
    let mut problems = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let number = index + 1;
        let Some(comment) = line.as_ref().trim().strip_prefix("//") else {
            continue;
        };
        let Some((key, value)) = comment.split_once(':') else {
            continue;
        };
        let items = || {
            value
                .split([',', ' '])
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "restore-dir" => {
                for item in items() {
                    match item.parse() {
                        Ok(dir) => out.restore_dirs.push((number, dir)),
                        Err(e) => problems.push((number, e)),
                    }
                }
            }
            "restore-server" => {
                for item in items() {
                    match item.parse() {
                        Ok(server) => out.restore_servers.push((number, server)),
                        Err(e) => problems.push((number, e)),
                    }
                }
            }
            "env" => out.env.extend(items().map(|n| (number, n.to_owned()))),
            "destructive" => match value.trim().to_ascii_lowercase().as_str() {
                "no" | "false" => out.destructive = Some((number, false)),
                "yes" | "true" => out.destructive = Some((number, true)),
                other => problems.push((
                    number,
                    format!("`// destructive: {other}` must say yes or no"),
                )),
            },
            _ => {}
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Secret values to keep out of a script's output and errors, shared by a run's bindings
/// (which learn the secrets behind the references a script hands them) and its output.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Arc<Mutex<Vec<String>>>,
}

/// Shorter values are not redacted: they would blank out ordinary words (`true`, a port).
const MIN_SECRET_LEN: usize = 8;

/// Words in an environment variable's name that say it holds a secret.
const SECRET_NAME_WORDS: &[&str] = &[
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "PWD",
    "TOKEN",
    "KEY",
    "CREDENTIAL",
    "CONNECTION",
    "SAS",
];

impl Redactor {
    /// A redactor that knows the secrets of this process's environment: the values of the
    /// variables whose names say they hold one (`PGPASSWORD`, `*_SECRET`, `AZURE_STORAGE_KEY`,
    /// `*_CONNECTION`, ...).
    pub fn from_environment() -> Self {
        let redactor = Redactor::default();
        for (name, value) in std::env::vars_os() {
            let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else {
                continue;
            };
            let upper = name.to_ascii_uppercase();
            if upper == "OLDPWD" || upper == "PWD" {
                continue;
            }
            if SECRET_NAME_WORDS.iter().any(|w| upper.contains(w)) {
                redactor.learn(value);
            }
        }
        redactor
    }

    /// Remembers `value` as a secret, and the password inside it if it is a connection string.
    pub fn learn(&self, value: &str) {
        let mut values = vec![value.trim().to_owned()];
        values.extend(passwords_in(value));
        let mut secrets = self.secrets.lock().unwrap_or_else(PoisonError::into_inner);
        for v in values {
            if v.len() >= MIN_SECRET_LEN && !secrets.contains(&v) {
                secrets.push(v);
            }
        }
        // Longest first, so a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// Remembers `value` as a secret if it holds a password (a connection string a script
    /// read from the environment, whatever the variable's name).
    pub fn learn_if_credential(&self, value: &str) {
        if !passwords_in(value).is_empty() {
            self.learn(value);
        }
    }

    /// Remembers the secret a reference a script passed names (`env:NAME`, `file:///path`), so
    /// that printing it prints [`REDACTED`]. Key Vault secrets are never read into the process
    /// for this.
    pub fn learn_reference(&self, uri: &str) {
        let uri = uri.trim();
        if let Some(name) = uri.strip_prefix("env:") {
            if let Ok(value) = std::env::var(name) {
                self.learn(&value);
            }
        } else if let Some(path) = uri.strip_prefix("file://") {
            use std::io::Read;
            let mut text = String::new();
            if let Ok(file) = std::fs::File::open(path)
                && file.take(64 * 1024).read_to_string(&mut text).is_ok()
            {
                self.learn(&text);
            }
        }
    }

    /// `text` with every known secret replaced by [`REDACTED`].
    pub fn redact(&self, text: &str) -> String {
        let secrets = self.secrets.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = text.to_owned();
        for secret in secrets.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        out
    }
}

/// The password of an ADO.NET connection string (`Password=...;`) or a URI's user info.
fn passwords_in(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in value.split(';') {
        if let Some((key, v)) = part.split_once('=')
            && matches!(key.trim().to_ascii_lowercase().as_str(), "password" | "pwd")
        {
            out.push(v.trim().to_owned());
        }
    }
    if let Some((_, rest)) = value.split_once("://")
        && let Some((userinfo, _)) = rest.split_once('@')
        && let Some((_, password)) = userinfo.split_once(':')
    {
        out.push(password.to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_grants_parse_and_allow() {
        let any: ServerGrant = "DB2.example".parse().unwrap();
        let one: ServerGrant = "db2.example:5433".parse().unwrap();
        let v6: ServerGrant = "[::1]:5432".parse().unwrap();
        assert!(any.allows("db2.example", 1) && any.allows("db2.example", 5432));
        assert!(one.allows("db2.example", 5433) && !one.allows("db2.example", 5432));
        assert!(!one.allows("db3.example", 5433));
        assert!(v6.allows("::1", 5432));
        assert_eq!(v6.to_string(), "[::1]:5432");
        assert!(any.covers(&one) && !one.covers(&any));
        for bad in ["db:0", "db:x", "", "a b", "[::1"] {
            assert!(bad.parse::<ServerGrant>().is_err(), "{bad}");
        }
    }

    #[test]
    fn restore_folders_cover_what_is_under_them_only() {
        let dir = tempfile::tempdir().unwrap();
        let allowed = dir.path().join("restores");
        std::fs::create_dir_all(&allowed).unwrap();
        let outside = dir.path().join("elsewhere");
        std::fs::create_dir_all(&outside).unwrap();
        // A link inside the allowed folder that leads out of it.
        std::os::unix::fs::symlink(&outside, allowed.join("link")).unwrap();
        let grants = Grants {
            restore_dirs: vec![
                allowed.to_str().unwrap().parse().unwrap(),
                "https://acct.blob.core.windows.net/restores"
                    .parse()
                    .unwrap(),
            ],
            ..Grants::default()
        };
        let ok = |t: &str| grants.check_restore_dir(t, "x").is_ok();
        assert!(ok(allowed.to_str().unwrap()));
        assert!(ok(allowed.join("new/deeper").to_str().unwrap()));
        assert!(!ok(outside.to_str().unwrap()));
        assert!(!ok(allowed.join("link").to_str().unwrap()), "a link out");
        assert!(!ok(allowed.join("../elsewhere").to_str().unwrap()));
        assert!(
            !ok(&format!("{}-2", allowed.display())),
            "a sibling with the same start"
        );
        assert!(!ok("relative/dir"));
        assert!(ok("https://acct.blob.core.windows.net/restores/nightly"));
        assert!(!ok("https://acct.blob.core.windows.net/restores2"));
        assert!(!ok("https://acct.blob.core.windows.net/restores/../other"));
        assert!(
            grants
                .check_restore_dir(allowed.to_str().unwrap(), "../x")
                .is_err()
        );
        assert!(Grants::default().check_restore_dir("/tmp", "x").is_err());
    }

    #[test]
    fn a_header_only_narrows() {
        let host = Grants {
            destructive: false,
            restore_dirs: vec!["/srv/restores".parse().unwrap()],
            restore_servers: vec!["db2.example".parse().unwrap()],
            env: vec!["PGVAULT_NIGHTLY_*".into(), "PGVAULT_REPORT_VAULT".into()],
        };
        let lines = [
            "// Nightly.",
            "// restore-dir: /srv/restores/nightly",
            "// restore-server: db2.example:5432",
            "// env: PGVAULT_NIGHTLY_RULE, PGVAULT_REPORT_VAULT",
            "// destructive: no",
        ];
        let narrowed = host.narrow(&parse_narrowing(&lines).unwrap()).unwrap();
        assert_eq!(
            narrowed,
            Grants {
                destructive: false,
                restore_dirs: vec!["/srv/restores/nightly".parse().unwrap()],
                restore_servers: vec!["db2.example:5432".parse().unwrap()],
                env: vec!["PGVAULT_NIGHTLY_RULE".into(), "PGVAULT_REPORT_VAULT".into()],
            }
        );
        // Without narrowing lines, the host's grants as they are.
        assert_eq!(
            host.narrow(&parse_narrowing(&["// hi"]).unwrap()).unwrap(),
            host
        );
        let wider = [
            "// restore-dir: /srv",
            "// restore-server: db3.example",
            "// env: PATH",
            "// destructive: yes",
        ];
        let problems = host.narrow(&parse_narrowing(&wider).unwrap()).unwrap_err();
        let lines: Vec<usize> = problems.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, [1, 2, 3, 4], "{problems:?}");
        let problems =
            parse_narrowing(&["// restore-dir: relative", "// destructive: maybe"]).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn env_allowlist() {
        let grants = Grants {
            env: vec!["PGVAULT_NIGHTLY_*".into(), "REPORT".into()],
            ..Grants::default()
        };
        assert!(grants.check_env("PGVAULT_NIGHTLY_RULE").is_ok());
        assert!(grants.check_env("REPORT").is_ok());
        assert!(grants.check_env("REPORTS").is_err());
        let e = grants.check_env("PGVAULT_RESTORE_SECRET").unwrap_err();
        assert_eq!(e.code, SANDBOX_REFUSED);
        assert!(
            e.message.contains("--script-env PGVAULT_RESTORE_SECRET"),
            "{e:?}"
        );
    }

    #[test]
    fn redaction_replaces_secrets_and_their_passwords() {
        let r = Redactor::default();
        r.learn("User Id=restore_user;Password=s3cr3t-pass;");
        r.learn("postgres://u:uri-pass-9@db/x");
        r.learn("ab");
        r.learn_if_credential("just-a-setting");
        r.learn_if_credential("Server=db;Pwd=pwd-in-db1;");
        let text = "a User Id=restore_user;Password=s3cr3t-pass; b s3cr3t-pass c uri-pass-9 ab";
        assert_eq!(r.redact(text), "a <redacted> b <redacted> c <redacted> ab");
    }
}
