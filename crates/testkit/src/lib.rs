//! Test support for pgvault: a real, throwaway PostgreSQL server for tests.
//!
//! pgvault's tests run against real PostgreSQL, real `pg_dump` and real files; there is no mock
//! database. This crate gives every test binary one server, [`TestCluster::shared`], started on
//! first use from the PostgreSQL binaries installed on the machine, plus
//! [`TestCluster::create_database`] so each test works in its own database and tests can run in
//! parallel without seeing each other's tables. A test that needs a server to itself (to stop
//! it, to change its configuration) calls [`TestCluster::start`] instead, or
//! [`TestCluster::start_with`] with [`ClusterOptions`] when the server must be configured
//! differently from the start: extra `postgresql.conf` settings and extra files in the data
//! directory, such as `ssl = on` with a certificate and key made by the test.
//!
//! # Where the server comes from
//!
//! - If `PGVAULT_TEST_DATABASE_URL` is set to a superuser `postgres://USER:PASSWORD@HOST:PORT/DB`
//!   URL, [`TestCluster::shared`] uses that server and starts nothing. The client tools
//!   (`psql`, `pg_dump`, ...) are still taken from the local installation, so they should be at
//!   least as new as that server.
//! - Otherwise the server binaries are looked for in `pg_config --bindir`, then in the newest
//!   `/usr/lib/postgresql/*/bin` (Debian and Ubuntu install several versions side by side and
//!   put only wrappers on `PATH`), then on `PATH` (following symlinks, so the directory found
//!   also holds `psql` and `pg_dump` of the same version).
//!
//! # How the throwaway cluster is set up, and why
//!
//! - `initdb` into a fresh directory under [`std::env::temp_dir`], with the superuser
//!   `pgvault_admin` and a random password given through `--pwfile` (never on a command line),
//!   `scram-sha-256` for TCP connections and `trust` only on the Unix socket, which lives in that
//!   private directory. Tests therefore connect the way pgvault does in production: over TCP,
//!   with a password.
//! - The server listens on 127.0.0.1 only, on a port found by binding port 0. Another process
//!   can take that port between our probe and the server's bind, so a start that fails to bind
//!   is retried on a new port.
//! - `fsync`, `synchronous_commit` and `full_page_writes` are off and `shared_buffers` is small:
//!   the data is worthless after the run, and the tests must be quick on a two-core machine.
//! - PostgreSQL refuses to run as root, and CI containers often run as root. In that case the
//!   server runs as the `postgres` OS user if there is one, else as a `pgvault-test` system user
//!   created with `useradd`; the cluster directory is handed to that user and the server
//!   programs run through `runuser -u USER --` (or `su` where `runuser` is missing). Whether we
//!   are root is asked of `id -u`, since this crate uses nothing beyond std and no `unsafe`.
//!
//! # Clean-up without polling
//!
//! The shared cluster lives in a `static`, and Rust never drops statics, so a `Drop` impl
//! cannot stop it. Instead each cluster has a *reaper*: a small `sh` child started before
//! `initdb`, blocked in `read` on a pipe whose write end only this process holds (std opens it
//! close-on-exec, so no other child inherits it). However this process ends (normal exit,
//! panic, abort, even `SIGKILL`), the kernel closes the pipe, `read` returns, and the reaper runs
//! `pg_ctl stop -m immediate` and removes the directory. It ignores `SIGINT` and `SIGHUP` so a
//! Ctrl-C at the terminal, which reaches the whole process group, does not kill it before it has
//! cleaned up. Nothing waits on a timer. A cluster from [`TestCluster::start`] is also stopped
//! by `Drop`, which closes the pipe itself and waits for the reaper, so the port and the
//! directory are gone when `drop` returns.
//!
//! [`Azurite`] is the same for Azure Blob Storage: the emulator on a free port, removed the
//! same way (see `azurite.rs`).
//!
//! The crate depends on nothing beyond std so that it builds instantly.

mod azurite;
pub mod keyvault_double;
pub use azurite::{AZURITE_BIN_ENV, Azurite, DEV_ACCOUNT, DEV_ACCOUNT_KEY};

use std::collections::hash_map::RandomState;
use std::fmt;
use std::fs;
use std::hash::BuildHasher;
use std::io::{self, Write};
use std::net::TcpListener;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The environment variable naming an existing server to use instead of starting one.
pub const DATABASE_URL_ENV: &str = "PGVAULT_TEST_DATABASE_URL";

/// The superuser created in throwaway clusters.
const ADMIN_USER: &str = "pgvault_admin";

/// The OS user created to run the server when the tests run as root and there is no `postgres`
/// user.
const FALLBACK_OS_USER: &str = "pgvault-test";

/// How many ports to try before concluding that the failure to start is not a port collision.
const START_ATTEMPTS: u32 = 8;

/// Counts databases and cluster directories made by this process, so names never repeat.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A PostgreSQL server for tests: either a throwaway cluster this process started, or the
/// server named by `PGVAULT_TEST_DATABASE_URL`.
pub struct TestCluster {
    host: String,
    port: u16,
    user: String,
    password: String,
    /// The URL's query string (`?sslmode=...`), kept as given, so `admin_url_for` preserves it.
    query: String,
    bindir: PathBuf,
    /// Present when this process started the server; dropping it stops the server.
    server: Option<Server>,
}

/// A server this process started: its directory and the reaper that removes it.
struct Server {
    dir: PathBuf,
    data_dir: PathBuf,
    /// The write end of the reaper's stdin. Closing it (by dropping, or by the process ending)
    /// tells the reaper to stop the server and delete `dir`.
    reaper_stdin: Option<ChildStdin>,
    reaper: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.reaper_stdin.take());
        // Waiting makes clean-up synchronous: when `drop` returns the server is stopped and the
        // directory is gone. An error here means the reaper was already reaped; nothing to do.
        let _ = self.reaper.wait();
    }
}

impl fmt::Debug for TestCluster {
    // Written by hand so the password never reaches test output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCluster")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("bindir", &self.bindir)
            .field("data_dir", &self.data_dir())
            .finish_non_exhaustive()
    }
}

impl TestCluster {
    /// The cluster shared by every test in this test binary, started on first use.
    ///
    /// Uses the server named by `PGVAULT_TEST_DATABASE_URL` if that is set. If the cluster
    /// cannot be started, every call panics with the same message rather than trying again.
    pub fn shared() -> &'static TestCluster {
        static SHARED: OnceLock<Result<TestCluster, String>> = OnceLock::new();
        let shared = SHARED.get_or_init(|| match std::env::var(DATABASE_URL_ENV) {
            Ok(url) if !url.trim().is_empty() => Self::from_url(url.trim()),
            _ => Self::try_start(&ClusterOptions::default()),
        });
        match shared {
            Ok(cluster) => cluster,
            Err(message) => panic!("{message}"),
        }
    }

    /// Starts a throwaway cluster owned by the caller, stopped and deleted on drop.
    ///
    /// For tests that need a server of their own; it always starts a new server, whatever
    /// `PGVAULT_TEST_DATABASE_URL` says. Panics with the reason if the server cannot start.
    pub fn start() -> TestCluster {
        Self::start_with(&ClusterOptions::default())
    }

    /// Like [`start`](Self::start), for a server configured with `options` (extra settings and
    /// files in its data directory) from its first start. Panics with the reason, and the
    /// server log, if the server cannot start with them.
    pub fn start_with(options: &ClusterOptions) -> TestCluster {
        Self::try_start(options).unwrap_or_else(|message| panic!("{message}"))
    }

    /// Like [`start_with`](Self::start_with), returning why the server could not start
    /// (binaries not found, initdb or the server failing) instead of panicking: for `pgvault
    /// demo`, which must end with a clear message on a machine without PostgreSQL.
    pub fn try_start_with(options: &ClusterOptions) -> Result<TestCluster, String> {
        if let Some(dir) = &options.bindir
            && !dir.join("initdb").is_file()
        {
            return Err(format!(
                "PostgreSQL server binaries not found: there is no `initdb` in {}. Install the \
                 PostgreSQL server packages (Debian/Ubuntu: `apt-get install postgresql`) or \
                 point PGVAULT_PG_BINDIR at the folder that holds them.",
                dir.display()
            ));
        }
        Self::try_start(options)
    }

    /// A superuser URL to the server's `postgres` database:
    /// `postgres://USER:PASSWORD@127.0.0.1:PORT/postgres`.
    pub fn admin_url(&self) -> String {
        self.admin_url_for("postgres")
    }

    /// A superuser URL to `database` on the server.
    pub fn admin_url_for(&self, database: &str) -> String {
        format!(
            "postgres://{}:{}@{}:{}/{}{}",
            percent_encode(&self.user),
            percent_encode(&self.password),
            url_host(&self.host),
            self.port,
            percent_encode(database),
            self.query
        )
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn admin_user(&self) -> &str {
        &self.user
    }

    pub fn admin_password(&self) -> &str {
        &self.password
    }

    /// The directory holding `psql`, `pg_dump`, `pg_restore`, `pgbench` and, for a throwaway
    /// cluster, the server programs it was started with.
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// The cluster's data directory, if this process started the server.
    pub fn data_dir(&self) -> Option<&Path> {
        self.server.as_ref().map(|server| server.data_dir.as_path())
    }

    /// A command for a client program in [`bindir`](Self::bindir) (`"pg_dump"`, `"pgbench"`,
    /// ...) with `PGHOST`, `PGPORT`, `PGUSER` and `PGPASSWORD` set for this server.
    ///
    /// Every other `PG*` variable of the test's environment is removed, so a developer's
    /// `PGSSLMODE` or `PGSERVICE` cannot change what the test talks to. The database is left to
    /// the caller (`-d NAME` or `PGDATABASE`).
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bindir.join(program));
        clear_pg_env(&mut command);
        command
            .env("PGHOST", &self.host)
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", &self.user)
            .env("PGPASSWORD", &self.password)
            .env("PGCONNECT_TIMEOUT", "10");
        command
    }

    /// Runs `sql` through `psql` as the superuser against `database` and returns its output in
    /// `-At` format (unaligned, tuples only), without the final newline.
    ///
    /// The SQL is fed on stdin, so it may hold several statements, including ones that cannot
    /// run in a transaction block such as `CREATE DATABASE`. Panics with psql's stderr if any
    /// statement fails.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        self.try_psql(database, sql).unwrap_or_else(|stderr| {
            panic!("psql failed in database {database:?}:\n{stderr}\nSQL:\n{sql}")
        })
    }

    /// Creates a fresh database named from `prefix`, a counter and the process id
    /// (`prefix_3_41712`), and returns its name.
    ///
    /// The prefix is lowercased and reduced to letters, digits and `_`, so the name never needs
    /// quoting. If a database of that name is left over from an earlier run against the same
    /// external server, the next counter value is tried.
    pub fn create_database(&self, prefix: &str) -> String {
        let mut prefix: String = prefix
            .chars()
            .map(|c| match c.to_ascii_lowercase() {
                c @ ('a'..='z' | '0'..='9' | '_') => c,
                _ => '_',
            })
            .take(40)
            .collect();
        if !prefix.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') {
            prefix.insert(0, 'd');
        }
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let name = format!("{prefix}_{n}_{}", std::process::id());
            match self.try_psql("postgres", &format!("CREATE DATABASE \"{name}\";")) {
                Ok(_) => return name,
                Err(stderr) if stderr.contains("already exists") => continue,
                Err(stderr) => panic!("could not create database {name}:\n{stderr}"),
            }
        }
    }

    /// Runs `sql` through `psql` logged in as `user` (not the superuser), as [`Self::psql`]
    /// does; returns psql's stderr when a statement fails. For what a database's owner or an
    /// unprivileged role can and cannot do.
    pub fn try_psql_as(
        &self,
        database: &str,
        user: &str,
        password: &str,
        sql: &str,
    ) -> Result<String, String> {
        let mut command = self.command("psql");
        command.env("PGUSER", user).env("PGPASSWORD", password);
        run_psql(command, &self.bindir, database, sql)
    }

    /// [`Self::try_psql_as`], panicking with psql's stderr when a statement fails.
    pub fn psql_as(&self, database: &str, user: &str, password: &str, sql: &str) -> String {
        self.try_psql_as(database, user, password, sql)
            .unwrap_or_else(|stderr| {
                panic!("psql as {user} failed in database {database:?}:\n{stderr}\nSQL:\n{sql}")
            })
    }

    fn try_psql(&self, database: &str, sql: &str) -> Result<String, String> {
        run_psql(self.command("psql"), &self.bindir, database, sql)
    }

    /// Builds a cluster handle for an existing server from its URL; starts nothing.
    fn from_url(url: &str) -> Result<TestCluster, String> {
        let parsed = ParsedUrl::parse(url).map_err(|e| {
            format!("{DATABASE_URL_ENV} is not a usable postgres:// URL ({e}); expected postgres://USER:PASSWORD@HOST:PORT/DATABASE")
        })?;
        let bindir = find_bindir("psql")?;
        Ok(TestCluster {
            host: parsed.host,
            port: parsed.port,
            user: parsed.user,
            password: parsed.password,
            query: parsed.query,
            bindir,
            server: None,
        })
    }

    fn try_start(options: &ClusterOptions) -> Result<TestCluster, String> {
        let bindir = match &options.bindir {
            Some(dir) => dir.clone(),
            None => find_bindir("initdb")?,
        };
        let run_as = server_os_user()?;
        let dir = create_private_dir()?;
        let data_dir = dir.join("data");

        // The reaper comes first so that a failure in any later step still removes `dir`.
        let server = spawn_reaper(&bindir, run_as.as_deref(), dir, data_dir)?;
        if let Some(user) = &run_as {
            chown_to(&server.dir, user)?;
        }

        let password = random_password();
        initdb(&bindir, run_as.as_deref(), &server, &password)?;
        apply_options(run_as.as_deref(), &server, options)?;
        let port = start_server(&bindir, run_as.as_deref(), &server)?;

        Ok(TestCluster {
            host: "127.0.0.1".to_owned(),
            port,
            user: ADMIN_USER.to_owned(),
            password,
            query: String::new(),
            bindir,
            server: Some(server),
        })
    }
}

/// What a cluster from [`TestCluster::start_with`] has beyond the kit's defaults: extra
/// `postgresql.conf` settings and extra files in its data directory.
///
/// Settings are appended after the kit's own, so a later one wins, as PostgreSQL reads the
/// file; leave `listen_addresses`, `port` and `unix_socket_directories` to the kit, which
/// relies on them. Files are written after `initdb` and before the first start, owned by the
/// server's OS user and readable by it only (mode 0600, which PostgreSQL demands of a private
/// key). A relative path in a setting, such as `ssl_cert_file = 'server.crt'`, is taken
/// relative to the data directory, so the two go together:
///
/// ```no_run
/// # let (cert_pem, key_pem) = (b"...".to_vec(), b"...".to_vec());
/// use pgvault_testkit::{ClusterOptions, TestCluster};
///
/// let cluster = TestCluster::start_with(
///     &ClusterOptions::new()
///         .setting("ssl", "on")
///         .setting("ssl_cert_file", "server.crt")
///         .setting("ssl_key_file", "server.key")
///         .file("server.crt", cert_pem)
///         .file("server.key", key_pem),
/// );
/// ```
#[derive(Clone, Default)]
pub struct ClusterOptions {
    settings: Vec<(String, String)>,
    files: Vec<(String, Vec<u8>)>,
    bindir: Option<PathBuf>,
}

impl ClusterOptions {
    pub fn new() -> ClusterOptions {
        ClusterOptions::default()
    }

    /// Adds `name = 'value'` to `postgresql.conf`. The value is always written as a quoted
    /// string, which PostgreSQL accepts for settings of every type (`'on'`, `'64MB'`), with
    /// quotes and backslashes escaped.
    ///
    /// Panics if `name` is not a setting name (letters, digits, `_`, and `.` for an
    /// extension's settings), since anything else would corrupt the file.
    pub fn setting(mut self, name: &str, value: &str) -> ClusterOptions {
        let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        assert!(valid, "{name:?} is not a PostgreSQL setting name");
        self.settings.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Starts the server from the binaries in `dir` (another installed major version, say)
    /// instead of the ones found by default.
    pub fn bindir(mut self, dir: impl Into<PathBuf>) -> ClusterOptions {
        self.bindir = Some(dir.into());
        self
    }

    /// Adds a file named `name` with `contents` to the data directory.
    ///
    /// Panics if `name` is not a plain file name (no `/`, not `.` or `..`): files go in the
    /// data directory itself. Starting fails if the name is one initdb already created, such
    /// as `postgresql.conf`; settings go through [`setting`](Self::setting).
    pub fn file(mut self, name: &str, contents: impl Into<Vec<u8>>) -> ClusterOptions {
        assert!(
            !name.is_empty() && !name.contains('/') && name != "." && name != "..",
            "{name:?} is not a plain file name"
        );
        self.files.push((name.to_owned(), contents.into()));
        self
    }

    /// The settings as lines for `postgresql.conf`.
    fn conf_lines(&self) -> String {
        self.settings
            .iter()
            .map(|(name, value)| {
                // The backslash first, so the escapes added after it are not doubled.
                let value = value
                    .replace('\\', "\\\\")
                    .replace('\'', "''")
                    .replace('\n', "\\n")
                    .replace('\r', "\\r");
                format!("{name} = '{value}'\n")
            })
            .collect()
    }
}

impl fmt::Debug for ClusterOptions {
    // Written by hand: file contents (test keys, say) are shown by size only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files: Vec<String> = self
            .files
            .iter()
            .map(|(name, contents)| format!("{name} ({} bytes)", contents.len()))
            .collect();
        f.debug_struct("ClusterOptions")
            .field("settings", &self.settings)
            .field("files", &files)
            .finish()
    }
}

/// Finds the directory of the PostgreSQL binaries, requiring that it holds `program`.
fn find_bindir(program: &str) -> Result<PathBuf, String> {
    let has = |dir: &Path| dir.join(program).is_file();

    if let Ok(output) = Command::new("pg_config").arg("--bindir").output()
        && output.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if has(&dir) {
            return Ok(dir);
        }
    }

    // Debian and Ubuntu: /usr/lib/postgresql/VERSION/bin, possibly several versions.
    if let Ok(entries) = fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<(Vec<u64>, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let version = name
                    .split('.')
                    .map(|part| part.parse().ok())
                    .collect::<Option<Vec<u64>>>()?;
                Some((version, entry.path().join("bin")))
            })
            .filter(|(_, dir)| has(dir))
            .collect();
        versions.sort();
        if let Some((_, dir)) = versions.pop() {
            return Ok(dir);
        }
    }

    // PATH, following symlinks: a symlinked initdb in /usr/local/bin says where the real
    // installation, with psql and pg_dump beside it, lives.
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(program);
            if candidate.is_file()
                && let Ok(real) = fs::canonicalize(&candidate)
                && let Some(parent) = real.parent()
            {
                return Ok(parent.to_path_buf());
            }
        }
    }

    Err(format!(
        "PostgreSQL binaries not found: no `{program}` in `pg_config --bindir`, \
         /usr/lib/postgresql/*/bin or PATH. Install the PostgreSQL server packages \
         (Debian/Ubuntu: `apt-get install postgresql`), or run tools/demo.sh or tools/test.sh, \
         which install them, or set {DATABASE_URL_ENV} to a superuser URL of a running server."
    ))
}

/// The OS user to run the server as: `None` to run as ourselves, or an unprivileged user when
/// we are root, since PostgreSQL refuses to run as root.
fn server_os_user() -> Result<Option<String>, String> {
    let uid = run_for_stdout(Command::new("id").arg("-u"))
        .map_err(|e| format!("could not tell whether we run as root (`id -u`): {e}"))?;
    if uid.trim() != "0" {
        return Ok(None);
    }
    let exists = |user: &str| {
        Command::new("id")
            .arg("-u")
            .arg(user)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if exists("postgres") {
        return Ok(Some("postgres".to_owned()));
    }
    if !exists(FALLBACK_OS_USER) {
        let result = run_for_stdout(Command::new("useradd").args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            FALLBACK_OS_USER,
        ]));
        // Another test binary may have created the user at the same moment; only fail if the
        // user still does not exist.
        if let Err(e) = result
            && !exists(FALLBACK_OS_USER)
        {
            return Err(format!(
                "running as root, PostgreSQL needs an unprivileged user, and creating \
                 {FALLBACK_OS_USER} with useradd failed: {e}"
            ));
        }
    }
    Ok(Some(FALLBACK_OS_USER.to_owned()))
}

/// Creates `pgvault-test-PID-N` under the temp dir, readable by its owner only.
fn create_private_dir() -> Result<PathBuf, String> {
    let base = std::env::temp_dir();
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("pgvault-test-{}-{n}", std::process::id()));
        match fs::create_dir(&dir) {
            Ok(()) => {
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                    .map_err(|e| format!("could not restrict {}: {e}", dir.display()))?;
                return Ok(dir);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("could not create {}: {e}", dir.display())),
        }
    }
}

/// Starts the reaper for `dir` (see the crate docs) and returns the server handle holding it.
fn spawn_reaper(
    bindir: &Path,
    run_as: Option<&str>,
    dir: PathBuf,
    data_dir: PathBuf,
) -> Result<Server, String> {
    // Paths travel as positional arguments, never spliced into the script, so they need no
    // quoting. Everything after the first two arguments is the pg_ctl command line.
    const SCRIPT: &str = r#"trap '' INT HUP
dir=$1; data=$2; shift 2
read -r _
"$@" -D "$data" -m immediate -w stop >/dev/null 2>&1
rm -rf "$dir""#;
    let pg_ctl = server_command(&bindir.join("pg_ctl"), run_as);
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(SCRIPT)
        .arg("pgvault-testkit-reaper")
        .arg(&dir)
        .arg(&data_dir)
        .arg(pg_ctl.get_program())
        .args(pg_ctl.get_args())
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    clear_pg_env(&mut command);
    let mut reaper = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let _ = fs::remove_dir_all(&dir);
            return Err(format!("could not start the clean-up process (sh): {e}"));
        }
    };
    let reaper_stdin = reaper.stdin.take();
    Ok(Server {
        dir,
        data_dir,
        reaper_stdin,
        reaper,
    })
}

/// Runs `initdb` for the server's data directory, preferring the C.UTF-8 locale.
fn initdb(
    bindir: &Path,
    run_as: Option<&str>,
    server: &Server,
    password: &str,
) -> Result<(), String> {
    let pwfile = server.dir.join("pwfile");
    fs::write(&pwfile, password)
        .map_err(|e| format!("could not write {}: {e}", pwfile.display()))?;
    if let Some(user) = run_as {
        chown_to(&pwfile, user)?;
    }

    let mut errors = Vec::new();
    // C.UTF-8 gives UTF-8 character semantics with byte-order collation; minimal systems
    // without it still have C.
    for locale in ["C.UTF-8", "C"] {
        let mut command = server_command(&bindir.join("initdb"), run_as);
        command
            .arg("-D")
            .arg(&server.data_dir)
            .args(["-U", ADMIN_USER, "-E", "UTF8", "--no-sync"])
            .arg(format!("--locale={locale}"))
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["--auth-host=scram-sha-256", "--auth-local=trust"]);
        match run_for_stdout(&mut command) {
            Ok(_) => {
                errors.clear();
                break;
            }
            Err(e) => {
                errors.push(format!("initdb --locale={locale}: {e}"));
                // initdb removes a data directory it created when it fails; be sure anyway.
                let _ = fs::remove_dir_all(&server.data_dir);
            }
        }
    }
    let _ = fs::remove_file(&pwfile);
    if !errors.is_empty() {
        return Err(format!(
            "could not create a test cluster in {}:\n{}",
            server.dir.display(),
            errors.join("\n")
        ));
    }

    let settings = format!(
        "\n# Added by pgvault-testkit: a throwaway cluster for tests.\n\
         listen_addresses = '127.0.0.1'\n\
         unix_socket_directories = '{}'\n\
         fsync = off\n\
         synchronous_commit = off\n\
         full_page_writes = off\n\
         shared_buffers = 32MB\n\
         max_connections = 100\n",
        server.dir.display()
    );
    append_conf(server, &settings)
}

/// Appends `text` to the data directory's `postgresql.conf`.
fn append_conf(server: &Server, text: &str) -> Result<(), String> {
    let conf = server.data_dir.join("postgresql.conf");
    fs::OpenOptions::new()
        .append(true)
        .open(&conf)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|e| format!("could not configure {}: {e}", conf.display()))
}

/// Writes the files and appends the settings of `options` to a fresh data directory.
fn apply_options(
    run_as: Option<&str>,
    server: &Server,
    options: &ClusterOptions,
) -> Result<(), String> {
    for (name, contents) in &options.files {
        let path = server.data_dir.join(name);
        // create_new: a name initdb already used (postgresql.conf, PG_VERSION) is a mistake
        // in the test, not something to overwrite.
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut file| file.write_all(contents))
            .map_err(|e| format!("could not write {}: {e}", path.display()))?;
        if let Some(user) = run_as {
            chown_to(&path, user)?;
        }
    }
    if options.settings.is_empty() {
        return Ok(());
    }
    let settings = format!(
        "\n# Added by the test through pgvault-testkit's ClusterOptions.\n{}",
        options.conf_lines()
    );
    append_conf(server, &settings)
}

/// Starts the server with `pg_ctl -w` on a free port, retrying on a new port when another
/// process took the one we picked. Returns the port.
fn start_server(bindir: &Path, run_as: Option<&str>, server: &Server) -> Result<u16, String> {
    let log = server.dir.join("server.log");
    let mut last_error = String::new();
    for _ in 0..START_ATTEMPTS {
        let port = free_port()?;
        let _ = fs::remove_file(&log);
        let mut command = server_command(&bindir.join("pg_ctl"), run_as);
        command
            .arg("-D")
            .arg(&server.data_dir)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "120", "-o"])
            .arg(format!("-p {port}"))
            .arg("start");
        match run_for_stdout(&mut command) {
            Ok(_) => return Ok(port),
            Err(e) => {
                let server_log = fs::read_to_string(&log).unwrap_or_default();
                last_error = format!("{e}\nserver log:\n{server_log}");
                let port_taken = server_log.contains("could not bind")
                    || server_log.contains("could not create any TCP/IP sockets");
                if !port_taken {
                    break;
                }
            }
        }
    }
    Err(format!(
        "could not start the test cluster in {}: {last_error}",
        server.dir.display()
    ))
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16, String> {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| format!("could not find a free port on 127.0.0.1: {e}"))
}

/// A command running `program` as `run_as` (through runuser, or su where runuser is missing),
/// or as ourselves.
fn server_command(program: &Path, run_as: Option<&str>) -> Command {
    let mut command = match run_as {
        None => Command::new(program),
        Some(user) if Path::new("/usr/sbin/runuser").exists() || on_path("runuser") => {
            let mut command = Command::new("runuser");
            command.args(["-u", user, "--"]).arg(program);
            command
        }
        Some(user) => {
            // su hands the words after the user to the shell as $0, $1, ...
            let mut command = Command::new("su");
            command
                .args(["-s", "/bin/sh", "-c", r#"exec "$0" "$@""#, user])
                .arg(program);
            command
        }
    };
    clear_pg_env(&mut command);
    command
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Gives `path` to the OS user `user` (and that user's group).
fn chown_to(path: &Path, user: &str) -> Result<(), String> {
    let id = |flag: &str| -> Result<u32, String> {
        run_for_stdout(Command::new("id").arg(flag).arg(user))?
            .trim()
            .parse()
            .map_err(|e| format!("unexpected output of `id {flag} {user}`: {e}"))
    };
    let (uid, gid) = (id("-u")?, id("-g")?);
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| format!("could not give {} to {user}: {e}", path.display()))
}

/// Removes every `PG*` variable (PGDATA, PGPORT, PGSSLMODE, ...) from a child's environment, so
/// the developer's settings cannot redirect the test cluster or its clients.
fn clear_pg_env(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PG") {
            command.env_remove(name);
        }
    }
}

/// Runs a command to completion, returning its stdout, or an error with its stderr and stdout.
fn run_for_stdout(command: &mut Command) -> Result<String, String> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output: Output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not run {program}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{program} exited with {}:\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        ))
    }
}

/// A 32-character hex password.
///
/// std's `RandomState` keys its SipHash from the operating system's random source, so hashing
/// the time and a counter with two fresh states gives values nobody outside this process can
/// predict: plenty for a throwaway cluster that listens on loopback only.
fn random_password() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    (0..2)
        .map(|i| RandomState::new().hash_one((nanos, n, i, std::process::id())))
        .map(|word| format!("{word:016x}"))
        .collect()
}

/// The parts of a `postgres://` URL the test kit needs.
#[derive(Debug, PartialEq)]
struct ParsedUrl {
    user: String,
    password: String,
    host: String,
    port: u16,
    query: String,
}

impl ParsedUrl {
    fn parse(url: &str) -> Result<ParsedUrl, String> {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or("it does not start with postgres://")?;
        let (rest, query) = match rest.find('?') {
            Some(i) => (&rest[..i], rest[i..].to_owned()),
            None => (rest, String::new()),
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let (userinfo, hostport) = authority
            .rsplit_once('@')
            .ok_or("it names no user and password")?;
        let (user, password) = userinfo
            .split_once(':')
            .ok_or("it has no password; the test kit connects over TCP with a password")?;
        let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').ok_or("unclosed [ in host")?;
            (host, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err("it names no host".to_owned());
        }
        let port = match port {
            Some(port) => port.parse().map_err(|_| format!("bad port {port:?}"))?,
            None => 5432,
        };
        Ok(ParsedUrl {
            user: percent_decode(user)?,
            password: percent_decode(password)?,
            host: percent_decode(host)?,
            port,
            query,
        })
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

fn percent_decode(text: &str) -> Result<String, String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        if first == b'%' {
            let hex = tail
                .get(..2)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| format!("bad percent escape in {text:?}"))?;
            bytes.push(hex);
            rest = &tail[2..];
        } else {
            bytes.push(first);
            rest = tail;
        }
    }
    String::from_utf8(bytes).map_err(|_| format!("{text:?} does not decode to UTF-8"))
}

/// A host as written in a URL: IPv6 addresses go in brackets.
fn url_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// Runs `sql` through `command` (psql with its connection environment set) against `database`.
fn run_psql(
    mut command: Command,
    bindir: &Path,
    database: &str,
    sql: &str,
) -> Result<String, String> {
    let mut child = command
        .args(["-X", "-q", "-A", "-t", "-w", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(database)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not run {}: {e}", bindir.join("psql").display()))?;
    // Writing from another thread keeps a large script from deadlocking against a large
    // result: psql may fill its stdout pipe before it has read all of its stdin.
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let sql = sql.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(sql.as_bytes()));
    let output = child
        .wait_with_output()
        .map_err(|e| format!("could not wait for psql: {e}"))?;
    // A write error just means psql stopped reading (ON_ERROR_STOP); its stderr says why.
    let _ = writer.join();
    if output.status.success() {
        let mut stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if stdout.ends_with('\n') {
            stdout.pop();
        }
        Ok(stdout)
    } else {
        Err(format!(
            "psql exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_escapes_ports_and_queries() {
        let cases = [
            (
                "postgres://admin:s%40cret@db.example:6543/postgres?sslmode=require",
                ("admin", "s@cret", "db.example", 6543, "?sslmode=require"),
            ),
            (
                "postgresql://u:p@localhost/x",
                ("u", "p", "localhost", 5432, ""),
            ),
            ("postgres://u:p@[::1]:5433", ("u", "p", "::1", 5433, "")),
        ];
        for (url, (user, password, host, port, query)) in cases {
            let parsed = ParsedUrl::parse(url).unwrap();
            assert_eq!(
                parsed,
                ParsedUrl {
                    user: user.into(),
                    password: password.into(),
                    host: host.into(),
                    port,
                    query: query.into(),
                },
                "{url}"
            );
        }
    }

    #[test]
    fn urls_without_what_the_kit_needs_are_rejected() {
        for url in [
            "mysql://u:p@h/db",
            "postgres://h:5432/db",
            "postgres://u@h/db",
            "postgres://u:p@:5432/db",
            "postgres://u:p@h:notaport/db",
        ] {
            assert!(ParsedUrl::parse(url).is_err(), "{url}");
        }
    }

    #[test]
    fn percent_encoding_round_trips() {
        let text = "pä ss/w:o@rd%";
        assert_eq!(percent_decode(&percent_encode(text)).unwrap(), text);
        assert_eq!(percent_encode("a-b_c.d~e"), "a-b_c.d~e");
    }

    #[test]
    fn option_values_are_quoted_for_postgresql_conf() {
        let options = ClusterOptions::new()
            .setting("ssl", "on")
            .setting("pgvault.note", "it's C:\\dir\nnext");
        assert_eq!(
            options.conf_lines(),
            "ssl = 'on'\npgvault.note = 'it''s C:\\\\dir\\nnext'\n"
        );
    }

    #[test]
    fn options_refuse_names_that_would_escape_their_place() {
        for name in ["", ".", "..", "../postgresql.conf", "sub/file"] {
            let result = std::panic::catch_unwind(|| ClusterOptions::new().file(name, "x"));
            assert!(result.is_err(), "file {name:?} was accepted");
        }
        for name in ["", "ssl = on\nfsync", "1abc", "a b"] {
            let result = std::panic::catch_unwind(|| ClusterOptions::new().setting(name, "x"));
            assert!(result.is_err(), "setting {name:?} was accepted");
        }
    }

    #[test]
    fn a_cluster_started_with_options_has_its_settings_and_files() {
        let cluster = TestCluster::start_with(
            &ClusterOptions::new()
                .setting("work_mem", "7MB")
                .setting("pgvault.note", "it's here")
                .file("note.txt", "written before the first start\n"),
        );
        assert_eq!(
            cluster.psql(
                "postgres",
                "SHOW work_mem; SHOW pgvault.note; SELECT pg_read_file('note.txt')"
            ),
            "7MB\nit's here\nwritten before the first start\n"
        );
        let note = cluster.data_dir().unwrap().join("note.txt");
        let mode = fs::metadata(&note).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", note.display());
        assert!(!format!("{:?}", ClusterOptions::new().file("k", "SECRET")).contains("SECRET"));
    }

    #[test]
    fn passwords_are_long_and_differ() {
        let (a, b) = (random_password(), random_password());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
