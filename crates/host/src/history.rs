//! The job history: every job pgvault runs, kept in a local SQLite file so that `pgvault job
//! list`, the Rhai `jobs(..)` function and the scheduler see the same record, across
//! processes and restarts.
//!
//! Several pgvault processes (the host's scheduler, a CLI invocation, a script run) may write
//! the same file at once, so the file is in WAL mode (readers never block the writer) with a
//! five-second busy timeout, and every read-modify-write runs in a `BEGIN IMMEDIATE`
//! transaction: a deferred transaction that reads and then writes can fail at once with
//! `SQLITE_BUSY` when another process committed in between, whatever the timeout.
//!
//! The lifecycle rules (a job leaves `InProgress` once; its sub-tasks and output change only
//! while it runs) are the model's, applied through [`Job::finish`], [`Job::start_task`] and
//! friends inside that transaction; the `WHERE status = 'InProgress'` on every update and the
//! tables' CHECK constraints hold the same line on disk for any other writer.
//!
//! Each row records the process that runs the job (pid and host name). A process that dies
//! mid-job leaves its row `InProgress`; [`JobHistory::mark_interrupted`], run when a host
//! starts, turns those rows into failures with code `JobInterrupted` so that history never
//! shows a job running forever.
//!
//! History is kept for [`DEFAULT_JOB_HISTORY_RETENTION`] unless configured otherwise;
//! [`JobHistory::prune`] deletes finished jobs older than that, never a running one.
//!
//! Nothing here reads the clock: start, end and "now" are parameters, as in the model.
//!
//! # API Boundary: the SQLite schema
//!
//! The file is read by other pgvault versions and by people with `sqlite3`, so its schema is
//! an interface. `PRAGMA user_version` holds the schema version; [`MIGRATIONS`] lists, in
//! order, the SQL that brings a file from version *n* to *n + 1*, and a file is brought from
//! whatever version it has to the latest in one transaction (so a failure leaves it as it
//! was). A change adds a migration and never edits a released one; a test keeps a frozen copy
//! of each released schema and opens a file written with it. A file with a version newer
//! than this build knows is refused rather than guessed at, naming the pgvault version that
//! wrote it (kept in `pgvault_meta` from version 2 on).
//!
//! Version 2 (this one), table `jobs`, one row per job:
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `seq` | INTEGER PRIMARY KEY | insertion order; breaks ties between equal start times |
//! | `id` | TEXT UNIQUE | [`JobId`], lowercase hyphenated UUID |
//! | `operation` | TEXT | [`Operation`] name: `ConfigureBackup`, `OnDemandBackup`, `ScheduledBackup`, `Restore`, `ScriptRun`, `RetentionSweep`, `DeleteRecoveryPoint`, `MoveToArchive`, `RestoreDrill` |
//! | `status` | TEXT | [`JobStatus`] name: `InProgress`, `Completed`, `Failed`, `Cancelled` |
//! | `start_time` | TEXT | UTC, `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (fixed width, so text order is time order) |
//! | `end_time` | TEXT NULL | same format; NULL exactly when `status` is `InProgress` |
//! | `error_code`, `error_message` | TEXT NULL | set exactly when `status` is `Failed` |
//! | `owner_pid` | INTEGER | process id of the pgvault process running the job |
//! | `owner_host` | TEXT | host name of that process |
//! | `vault_name` | TEXT NULL COLLATE NOCASE | vault the job ran against; NULL for none (a drop-in script) |
//! | `backup_instance_name` | TEXT NULL COLLATE NOCASE | backup instance, if any |
//! | `datasource_name`, `datasource_id` | TEXT NULL | the database and its identifier |
//! | `policy_name`, `policy_rule_name`, `retention_tag` | TEXT NULL | policy, rule and tag that applied |
//! | `is_user_triggered` | INTEGER 0/1 | 0 only for scheduled backups |
//! | `bytes_read` | INTEGER | bytes read from PostgreSQL (or from the vault, for a restore) |
//! | `bytes_stored` | INTEGER | bytes newly stored in the vault |
//! | `recovery_point_id` | TEXT NULL | recovery point made (backup) or read (restore) |
//! | `extended_details` | TEXT | JSON object of string to string, `{}` when empty |
//! | `due_time` | TEXT NULL | the schedule occurrence a scheduled job stands for (v2) |
//! | `late` | INTEGER 0/1 | 1 when it ran late because the host was down; only with a `due_time` (v2) |
//! | `script_path` | TEXT NULL | the script a `ScriptRun` job ran (v2) |
//! | `script_output` | TEXT NULL | what it printed, at most 64 KiB, with a note where it was cut (v2) |
//!
//! Table `job_tasks` (v2), one row per sub-task, primary key `(job_id, seq)`:
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `job_id` | TEXT | the job's `id` |
//! | `seq` | INTEGER ≥ 1 | 1, 2, 3... in the order the job's tasks started (Azure's `taskId`) |
//! | `name` | TEXT | free text; pgvault writes `Validate`, `Dump`, `Upload`, `Commit` for a backup |
//! | `status`, `start_time`, `end_time` | TEXT | as in `jobs`; `end_time` NULL exactly when `InProgress` |
//! | `detail` | TEXT NULL | what the step did or why it failed, at most 4 KiB |
//!
//! Table `pgvault_meta (key, value)` (v2): `schema_written_by`, the pgvault version that last
//! migrated the file.
//!
//! Indexes: `start_time`; `(vault_name, start_time)`; `(backup_instance_name, start_time)`;
//! `end_time` (pruning); `status` where `status = 'InProgress'`.
//!
//! Version 1 was `jobs` without the four v2 columns and with `vault_name` NOT NULL.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use thiserror::Error;

use pgvault_core::model::duration::IsoDuration;
use pgvault_core::model::job::*;
pub use pgvault_core::process::{local_host_name, process_alive};

/// How long a write waits for another process's write to finish before giving up. Job
/// history writes are a handful of rows, so five seconds means something is wrong.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the host keeps job history by default: a year, so that "what happened last
/// month" and year-on-year questions have answers, while a host that runs hourly backups of
/// a few databases for years keeps a file of tens of megabytes. The host prunes with
/// [`retention_cutoff`]`(now, &DEFAULT_JOB_HISTORY_RETENTION)`; `pgvault job prune
/// --older-than` overrides it for one run.
pub const DEFAULT_JOB_HISTORY_RETENTION: IsoDuration = IsoDuration::days(365);

/// Schema migrations, oldest first: entry *i* takes a file from version *i* to *i + 1*.
pub const MIGRATIONS: &[&str] = &[
    MIGRATION_1,
    MIGRATION_2,
    MIGRATION_3,
    MIGRATION_4,
    MIGRATION_5,
];

/// Version 3 adds the `Rehydrate` operation. No table changes: the version marks that rows
/// may name it, so an older pgvault, which could not read such a row, refuses the file
/// instead of failing on the row.
const MIGRATION_3: &str = "-- v3: Rehydrate jobs";

/// Version 4 adds the REST API's tokens and its audit of changes (see [`crate::access`]):
///
/// - `api_tokens`: `name` (unique among tokens not revoked), `role` (`Reader`, `Operator`,
///   `Contributor`), `token_hash` (hex SHA-256 of the token; the token itself is never
///   stored), `created_time`, `revoked_time` (NULL while valid).
/// - `api_audit`: one row per request that changes something: `time`, `token_name`, `role`,
///   `method`, `path`, `status` (the HTTP status answered), `job_id` (NULL when none).
const MIGRATION_4: &str = "
CREATE TABLE api_tokens (
    seq          INTEGER PRIMARY KEY,
    name         TEXT NOT NULL CHECK (name <> ''),
    role         TEXT NOT NULL CHECK (role IN ('Reader', 'Operator', 'Contributor')),
    token_hash   TEXT NOT NULL UNIQUE,
    created_time TEXT NOT NULL,
    revoked_time TEXT
);
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE revoked_time IS NULL;
CREATE TABLE api_audit (
    seq        INTEGER PRIMARY KEY,
    time       TEXT    NOT NULL,
    token_name TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    method     TEXT    NOT NULL,
    path       TEXT    NOT NULL,
    status     INTEGER NOT NULL,
    job_id     TEXT
);
CREATE INDEX api_audit_by_time ON api_audit (time);
";

/// Version 5 adds alerts (see [`crate::alerts`]):
///
/// - `alert_destinations`: where alerts go. `name` (unique ignoring case), `kind` (`Webhook`,
///   `Email`, `Script`), `vault_name` (NULL: every vault), `config` (JSON: URLs, addresses and
///   secret *references*, never a secret value), `created_time`, and the destination's health:
///   `last_success_time`, `failing_since` (the first failed attempt since the last success,
///   NULL while it works), `last_error`.
/// - `alert_incidents`: one row per incident. `id` (UUID), `kind` (`BackupFailure`,
///   `RestoreFailure`, `DrillFailure`, `BackupOverdue`, `VaultDamage`, `DeleteBackupData`,
///   `SecuritySettingWeakened`, `VaultUnavailable`), `severity` (`Sev0`..`Sev4`), `vault_name`,
///   `backup_instance_name`, `state` (`Fired`, `Resolved`), `count` (occurrences grouped into
///   it), `fired_time`, `last_time` (the latest occurrence), `resolved_time` (NULL while
///   fired), `description` (the latest occurrence's), `job_id` and `error_code` (the latest
///   occurrence's, when it was a job).
/// - `alert_deliveries`: one row per notice (`condition` `Fired` or `Resolved`) of an incident
///   to a destination: `state` (`Pending`, `Delivered`, `Failed` when the attempts ran out),
///   `attempts`, `created_time`, `next_attempt_time` (NULL unless pending), `claimed_until`
///   (a process sending it holds it until then, so two processes never send it twice),
///   `last_attempt_time`, `last_error`, `delivered_time`.
const MIGRATION_5: &str = "
CREATE TABLE alert_destinations (
    name              TEXT NOT NULL PRIMARY KEY COLLATE NOCASE CHECK (name <> ''),
    kind              TEXT NOT NULL CHECK (kind IN ('Webhook', 'Email', 'Script')),
    vault_name        TEXT COLLATE NOCASE,
    config            TEXT NOT NULL,
    created_time      TEXT NOT NULL,
    last_success_time TEXT,
    failing_since     TEXT,
    last_error        TEXT
);
CREATE TABLE alert_incidents (
    seq                  INTEGER PRIMARY KEY,
    id                   TEXT NOT NULL UNIQUE,
    kind                 TEXT NOT NULL,
    severity             TEXT NOT NULL,
    vault_name           TEXT COLLATE NOCASE,
    backup_instance_name TEXT COLLATE NOCASE,
    state                TEXT NOT NULL CHECK (state IN ('Fired', 'Resolved')),
    count                INTEGER NOT NULL CHECK (count >= 1),
    fired_time           TEXT NOT NULL,
    last_time            TEXT NOT NULL,
    resolved_time        TEXT,
    description          TEXT NOT NULL,
    job_id               TEXT,
    error_code           TEXT,
    CHECK ((state = 'Resolved') = (resolved_time IS NOT NULL))
);
CREATE INDEX alert_incidents_open ON alert_incidents (kind, vault_name, backup_instance_name) WHERE state = 'Fired';
CREATE TABLE alert_deliveries (
    seq               INTEGER PRIMARY KEY,
    incident_id       TEXT NOT NULL,
    destination       TEXT NOT NULL COLLATE NOCASE,
    condition         TEXT NOT NULL CHECK (condition IN ('Fired', 'Resolved')),
    state             TEXT NOT NULL CHECK (state IN ('Pending', 'Delivered', 'Failed')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    created_time      TEXT NOT NULL,
    next_attempt_time TEXT,
    claimed_until     TEXT,
    last_attempt_time TEXT,
    last_error        TEXT,
    delivered_time    TEXT,
    CHECK ((state = 'Pending') = (next_attempt_time IS NOT NULL))
);
CREATE INDEX alert_deliveries_due ON alert_deliveries (next_attempt_time) WHERE state = 'Pending';
CREATE INDEX alert_deliveries_of ON alert_deliveries (incident_id);
";

/// The key in `pgvault_meta` naming the pgvault version that last migrated the file.
const META_WRITTEN_BY: &str = "schema_written_by";

const MIGRATION_1: &str = "
CREATE TABLE jobs (
    seq                  INTEGER PRIMARY KEY,
    id                   TEXT    NOT NULL UNIQUE,
    operation            TEXT    NOT NULL,
    status               TEXT    NOT NULL
        CHECK (status IN ('InProgress', 'Completed', 'Failed', 'Cancelled')),
    start_time           TEXT    NOT NULL,
    end_time             TEXT,
    error_code           TEXT,
    error_message        TEXT,
    owner_pid            INTEGER NOT NULL,
    owner_host           TEXT    NOT NULL,
    vault_name           TEXT    NOT NULL COLLATE NOCASE,
    backup_instance_name TEXT    COLLATE NOCASE,
    datasource_name      TEXT,
    datasource_id        TEXT,
    policy_name          TEXT,
    policy_rule_name     TEXT,
    retention_tag        TEXT,
    is_user_triggered    INTEGER NOT NULL CHECK (is_user_triggered IN (0, 1)),
    bytes_read           INTEGER NOT NULL DEFAULT 0 CHECK (bytes_read >= 0),
    bytes_stored         INTEGER NOT NULL DEFAULT 0 CHECK (bytes_stored >= 0),
    recovery_point_id    TEXT,
    extended_details     TEXT    NOT NULL DEFAULT '{}',
    CHECK ((status = 'InProgress') = (end_time IS NULL)),
    CHECK ((status = 'Failed') = (error_code IS NOT NULL AND error_message IS NOT NULL))
);
CREATE INDEX jobs_by_start ON jobs (start_time);
CREATE INDEX jobs_by_vault_start ON jobs (vault_name, start_time);
CREATE INDEX jobs_in_progress ON jobs (status) WHERE status = 'InProgress';
";

/// Version 2: `vault_name` becomes nullable, which SQLite can only do by rebuilding the table
/// (its documented create, copy, drop, rename procedure; nothing references `jobs`, so no
/// foreign keys or triggers need care). The new columns have defaults, so a pgvault 0.1
/// process still running against the file keeps inserting rows that read back correctly.
const MIGRATION_2: &str = "
DROP TABLE IF EXISTS jobs_v2;
CREATE TABLE jobs_v2 (
    seq                  INTEGER PRIMARY KEY,
    id                   TEXT    NOT NULL UNIQUE,
    operation            TEXT    NOT NULL,
    status               TEXT    NOT NULL
        CHECK (status IN ('InProgress', 'Completed', 'Failed', 'Cancelled')),
    start_time           TEXT    NOT NULL,
    end_time             TEXT,
    error_code           TEXT,
    error_message        TEXT,
    owner_pid            INTEGER NOT NULL,
    owner_host           TEXT    NOT NULL,
    vault_name           TEXT    COLLATE NOCASE,
    backup_instance_name TEXT    COLLATE NOCASE,
    datasource_name      TEXT,
    datasource_id        TEXT,
    policy_name          TEXT,
    policy_rule_name     TEXT,
    retention_tag        TEXT,
    is_user_triggered    INTEGER NOT NULL CHECK (is_user_triggered IN (0, 1)),
    bytes_read           INTEGER NOT NULL DEFAULT 0 CHECK (bytes_read >= 0),
    bytes_stored         INTEGER NOT NULL DEFAULT 0 CHECK (bytes_stored >= 0),
    recovery_point_id    TEXT,
    extended_details     TEXT    NOT NULL DEFAULT '{}',
    due_time             TEXT,
    late                 INTEGER NOT NULL DEFAULT 0 CHECK (late IN (0, 1)),
    script_path          TEXT,
    script_output        TEXT,
    CHECK ((status = 'InProgress') = (end_time IS NULL)),
    CHECK ((status = 'Failed') = (error_code IS NOT NULL AND error_message IS NOT NULL)),
    CHECK (late = 0 OR due_time IS NOT NULL)
);
INSERT INTO jobs_v2 (seq, id, operation, status, start_time, end_time, error_code,
    error_message, owner_pid, owner_host, vault_name, backup_instance_name, datasource_name,
    datasource_id, policy_name, policy_rule_name, retention_tag, is_user_triggered,
    bytes_read, bytes_stored, recovery_point_id, extended_details)
SELECT seq, id, operation, status, start_time, end_time, error_code,
    error_message, owner_pid, owner_host, NULLIF(vault_name, ''), backup_instance_name,
    datasource_name, datasource_id, policy_name, policy_rule_name, retention_tag,
    is_user_triggered, bytes_read, bytes_stored, recovery_point_id, extended_details
FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_v2 RENAME TO jobs;
CREATE INDEX jobs_by_start ON jobs (start_time);
CREATE INDEX jobs_by_vault_start ON jobs (vault_name, start_time);
CREATE INDEX jobs_by_instance_start ON jobs (backup_instance_name, start_time);
CREATE INDEX jobs_by_end ON jobs (end_time);
CREATE INDEX jobs_in_progress ON jobs (status) WHERE status = 'InProgress';

CREATE TABLE IF NOT EXISTS job_tasks (
    job_id     TEXT    NOT NULL,
    seq        INTEGER NOT NULL CHECK (seq >= 1),
    name       TEXT    NOT NULL CHECK (name <> ''),
    status     TEXT    NOT NULL
        CHECK (status IN ('InProgress', 'Completed', 'Failed', 'Cancelled')),
    start_time TEXT    NOT NULL,
    end_time   TEXT,
    detail     TEXT,
    PRIMARY KEY (job_id, seq),
    CHECK ((status = 'InProgress') = (end_time IS NULL))
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS pgvault_meta (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
";

const COLUMNS: &str = "id, operation, status, start_time, end_time, error_code, error_message, \
     owner_pid, owner_host, vault_name, backup_instance_name, datasource_name, datasource_id, \
     policy_name, policy_rule_name, retention_tag, is_user_triggered, bytes_read, bytes_stored, \
     recovery_point_id, extended_details, due_time, late, script_path, script_output";

const TASK_COLUMNS: &str = "job_id, seq, name, status, start_time, end_time, detail";

/// What can go wrong with the job history.
#[derive(Debug, Error)]
pub enum HistoryError {
    #[error(
        "could not create the folder {path} for the job history; check that its parent exists and is writable"
    )]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("could not create the job history {path}; check that its folder is writable")]
    CreateFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The disk holding the history (the home) has no room: SQLITE_FULL, ENOSPC, or an IO
    /// error while the disk is full. `folder` is the history's folder, the home.
    #[error("{}", pgvault_core::store::disk::disk_full_message(folder))]
    DiskFull {
        folder: PathBuf,
        #[source]
        source: Box<HistoryError>,
    },
    #[error(
        "could not open the job history {path}; check that it is a pgvault job history file and that it is writable"
    )]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "the job history {path} could not be put in WAL mode (SQLite reports journal mode `{mode}`); \
         keep it on a local filesystem, not a network share"
    )]
    NoWal { path: PathBuf, mode: String },
    #[error(
        "the job history {path} has schema version {found}{}, newer than version {supported} that \
         this pgvault ({}) understands; {}",
        written_by.as_ref().map(|v| format!(", written by pgvault {v}")).unwrap_or_default(),
        env!("CARGO_PKG_VERSION"),
        match written_by {
            Some(v) => format!("upgrade pgvault to {v} or later to read it"),
            None => "upgrade pgvault to read it".to_owned(),
        }
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
        /// The pgvault version that wrote that schema, when the file says.
        written_by: Option<String>,
    },
    #[error("could not upgrade the job history {path} to schema version {version}")]
    Migrate {
        path: PathBuf,
        version: usize,
        #[source]
        source: rusqlite::Error,
    },
    #[error("no job {0} in the job history; `pgvault job list` shows the jobs there are")]
    NotFound(JobId),
    #[error("job {0} is already in the job history; start each job with a new id")]
    Duplicate(JobId),
    #[error("cannot finish job {id}")]
    Transition {
        id: JobId,
        #[source]
        source: TransitionError,
    },
    #[error("cannot change job {id}")]
    Update {
        id: JobId,
        #[source]
        source: JobUpdateError,
    },
    #[error("cannot record progress of job {id}: it already finished as {status}")]
    NotInProgress { id: JobId, status: JobStatus },
    #[error("the byte count {0} is too large to record; the job history stores at most {max}", max = i64::MAX)]
    ByteCountTooLarge(u64),
    #[error(
        "job {id} in the job history cannot be read ({detail}); the row was changed outside \
         pgvault, or by a newer version of it"
    )]
    Corrupt { id: String, detail: String },
    #[error("the job history database failed")]
    Sqlite(#[from] rusqlite::Error),
}

pub type Result<T, E = HistoryError> = std::result::Result<T, E>;

/// `e` as [`HistoryError::DiskFull`] when it comes from a full disk under the history at
/// `path`: SQLite's SQLITE_FULL, an `io::Error` saying so, or an SQLite IO error (which
/// carries no errno; growing the `-shm` file reports SQLITE_IOERR_SHMSIZE) while that disk
/// has no room left. Otherwise `e` unchanged.
fn disk_full(path: &Path, e: HistoryError) -> HistoryError {
    use pgvault_core::store::disk;
    let folder = path.parent().unwrap_or(path);
    let sqlite = match &e {
        HistoryError::Open { source, .. }
        | HistoryError::Migrate { source, .. }
        | HistoryError::Sqlite(source) => Some(source),
        _ => None,
    };
    let full = match sqlite {
        Some(rusqlite::Error::SqliteFailure(f, _)) => {
            f.code == rusqlite::ErrorCode::DiskFull
                || (matches!(
                    f.code,
                    rusqlite::ErrorCode::SystemIoFailure | rusqlite::ErrorCode::CannotOpen
                ) && disk::has_no_room(folder))
        }
        _ => match &e {
            HistoryError::CreateDir { source, .. } | HistoryError::CreateFile { source, .. } => {
                disk::io_is_disk_full(source)
            }
            _ => false,
        },
    };
    if full {
        HistoryError::DiskFull {
            folder: folder.to_path_buf(),
            source: Box::new(e),
        }
    } else {
        e
    }
}

/// The job history in one SQLite file. Cheap to share behind an `Arc`: the connection sits
/// behind a std `Mutex` (not an async one) because every call is a short synchronous query
/// that never holds the lock across an `.await`.
pub struct JobHistory {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl fmt::Debug for JobHistory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobHistory")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl JobHistory {
    /// Opens the history at `path`, creating the file and its folder if needed and bringing
    /// the schema up to date.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        Self::open_at(&path).map_err(|e| disk_full(&path, e))
    }

    /// [`JobHistory::open`], errors as they come. The folder is created 0700 and the file
    /// 0600 before SQLite opens it: SQLite would create it 0644 (less the umask) and gives
    /// its `-wal` and `-shm` files the main file's mode, so all three stay private.
    fn open_at(path: &Path) -> Result<Self> {
        let path = path.to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            pgvault_core::store::disk::create_private_dir(parent).map_err(|source| {
                HistoryError::CreateDir {
                    path: parent.to_path_buf(),
                    source,
                }
            })?;
        }
        {
            use std::os::unix::fs::OpenOptionsExt;
            fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode(pgvault_core::store::disk::FILE_MODE)
                .open(&path)
                .map_err(|source| HistoryError::CreateFile {
                    path: path.clone(),
                    source,
                })?;
        }
        let open_err = |source| HistoryError::Open {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open(&path).map_err(open_err)?;
        // The timeout goes first: switching to WAL and migrating both take locks that another
        // process opening the same file at the same moment may hold.
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        let mode = enable_wal(&conn).map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(HistoryError::NoWal { path, mode });
        }
        // In WAL mode NORMAL cannot corrupt the file; a power cut may lose the last few
        // commits, which is acceptable for a history that can be rebuilt from the vault.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        migrate(&mut conn, &path, MIGRATIONS)?;
        Ok(Self {
            path,
            conn: Mutex::new(conn),
        })
    }

    /// Runs a write, naming a full disk as such: SQLite says SQLITE_FULL, or (growing its
    /// shared-memory file) an IO error while the disk has no room left.
    fn on_disk<T>(&self, write: impl FnOnce() -> Result<T>) -> Result<T> {
        write().map_err(|e| disk_full(&self.path, e))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock was held cannot leave the connection half-written: every
        // write is one statement or a transaction that rolls back when dropped.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a job as started, `InProgress` since `new.start`.
    pub fn start(&self, new: &NewJob) -> Result<Job> {
        self.on_disk(|| {
            let job = Job::start(new);
            let details = serde_json::to_string(&job.extended_details)
                .expect("a map of strings always serializes");
            let inserted = self.conn().execute(
                &format!(
                    "INSERT INTO jobs ({COLUMNS}) VALUES \
                     (?1, ?2, ?3, ?4, NULL, NULL, NULL, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, \
                     0, 0, ?15, ?16, ?17, ?18, ?19, NULL)"
                ),
                params![
                    job.id.to_string(),
                    job.operation.as_str(),
                    job.status().as_str(),
                    db_time(job.state.start()),
                    job.owner.pid,
                    job.owner.host,
                    job.vault(),
                    job.backup_instance_name,
                    job.datasource_name,
                    job.datasource_id,
                    job.policy_name,
                    job.policy_rule_name,
                    job.retention_tag,
                    job.is_user_triggered,
                    job.recovery_point_id,
                    details,
                    job.scheduled.map(|s| db_time(s.due_time)),
                    job.scheduled.is_some_and(|s| s.late),
                    job.script_path,
                ],
            );
            match inserted {
                Ok(_) => Ok(job),
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
                {
                    Err(HistoryError::Duplicate(job.id))
                }
                Err(e) => Err(e.into()),
            }
        })
    }

    /// Ends a running job with its outcome and final byte counts; sub-tasks still running end
    /// with it (see [`Job::finish`]). Refused, with the rows left as they were, if the job
    /// already finished or `end` is before its start.
    pub fn finish(
        &self,
        id: JobId,
        outcome: &JobOutcome,
        end: DateTime<Utc>,
        bytes_read: u64,
        bytes_stored: u64,
    ) -> Result<Job> {
        self.on_disk(|| {
            let mut conn = self.conn();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut job = get_job(&tx, id)?.ok_or(HistoryError::NotFound(id))?;
            job.finish(outcome, end, bytes_read, bytes_stored)
                .map_err(|source| HistoryError::Transition { id, source })?;
            write_end(&tx, &job)?;
            tx.commit()?;
            Ok(job)
        })
    }

    /// Records how much a running job has read and stored so far.
    pub fn update_progress(&self, id: JobId, bytes_read: u64, bytes_stored: u64) -> Result<()> {
        self.on_disk(|| {
            let conn = self.conn();
            let changed = conn.execute(
                "UPDATE jobs SET bytes_read = ?2, bytes_stored = ?3 \
                 WHERE id = ?1 AND status = 'InProgress'",
                params![
                    id.to_string(),
                    db_bytes(bytes_read)?,
                    db_bytes(bytes_stored)?
                ],
            )?;
            if changed == 1 {
                return Ok(());
            }
            match get_job(&conn, id)? {
                None => Err(HistoryError::NotFound(id)),
                Some(job) => Err(HistoryError::NotInProgress {
                    id,
                    status: job.status(),
                }),
            }
        })
    }

    /// Starts sub-task `name` (such as [`TASK_DUMP`]) of running job `id` at `at`; returns
    /// its number, which [`JobHistory::finish_task`] takes.
    pub fn start_task(&self, id: JobId, name: &str, at: DateTime<Utc>) -> Result<TaskId> {
        self.update(id, |tx, job| {
            let task = job.start_task(name, at)?;
            let new = job.task(task).expect("just started");
            tx.execute(
                &format!(
                    "INSERT INTO job_tasks ({TASK_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, NULL, NULL)"
                ),
                params![
                    id.to_string(),
                    task.get(),
                    new.name,
                    new.status().as_str(),
                    db_time(new.state.start()),
                ],
            )?;
            Ok(task)
        })
    }

    /// Ends running sub-task `task` of running job `id` at `at`, with a detail saying what it
    /// did or why it failed (cut to [`TASK_DETAIL_LIMIT`] bytes).
    pub fn finish_task(
        &self,
        id: JobId,
        task: TaskId,
        outcome: TaskOutcome,
        detail: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<JobTask> {
        self.update(id, |tx, job| {
            let finished = job.finish_task(task, outcome, detail, at)?.clone();
            write_task_end(tx, id, &finished)?;
            Ok(finished)
        })
    }

    /// Records what running job `id`'s script printed (all of it so far: this replaces what
    /// was recorded), cut to [`SCRIPT_OUTPUT_LIMIT`] bytes around a note saying so.
    pub fn set_script_output(&self, id: JobId, output: &str) -> Result<()> {
        self.update(id, |tx, job| {
            job.set_script_output(output)?;
            tx.execute(
                "UPDATE jobs SET script_output = ?2 WHERE id = ?1 AND status = 'InProgress'",
                params![id.to_string(), job.script_output],
            )?;
            Ok(())
        })
    }

    /// Adds details (`extendedInfo.additionalDetails`) to running job `id`, replacing those
    /// of the same name: what a sweep did, known only as it ends.
    pub fn set_details(&self, id: JobId, details: &[(String, String)]) -> Result<()> {
        self.update(id, |tx, job| {
            if job.status() != JobStatus::InProgress {
                return Err(UpdateFailure::Refused(JobUpdateError::JobFinished {
                    status: job.status(),
                }));
            }
            job.extended_details.extend(details.iter().cloned());
            let text = serde_json::to_string(&job.extended_details)
                .expect("a map of strings always serializes");
            tx.execute(
                "UPDATE jobs SET extended_details = ?2 WHERE id = ?1",
                params![id.to_string(), text],
            )?;
            Ok(())
        })
    }

    /// Applies a model change to running job `id` and writes it, under the write lock.
    fn update<T>(
        &self,
        id: JobId,
        change: impl FnOnce(&Connection, &mut Job) -> Result<T, UpdateFailure>,
    ) -> Result<T> {
        self.on_disk(|| {
            let mut conn = self.conn();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut job = get_job(&tx, id)?.ok_or(HistoryError::NotFound(id))?;
            let out = change(&tx, &mut job).map_err(|failure| match failure {
                UpdateFailure::Refused(source) => HistoryError::Update { id, source },
                UpdateFailure::Sqlite(e) => HistoryError::Sqlite(e),
            })?;
            tx.commit()?;
            Ok(out)
        })
    }

    pub fn get(&self, id: JobId) -> Result<Option<Job>> {
        get_job(&self.conn(), id)
    }

    /// Jobs matching `filter`, newest start first (the most recently recorded first among
    /// equal start times), with their sub-tasks. Agrees with [`JobFilter::matches`].
    pub fn list(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        let (mut selection, mut args) = filter_sql(filter);
        selection.push_str(" ORDER BY start_time DESC, seq DESC");
        if let Some(limit) = filter.limit {
            args.push(SqlValue::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
            selection.push_str(&format!(" LIMIT ?{}", args.len()));
            if filter.offset > 0 {
                args.push(SqlValue::Integer(
                    i64::try_from(filter.offset).unwrap_or(i64::MAX),
                ));
                selection.push_str(&format!(" OFFSET ?{}", args.len()));
            }
        }

        let mut conn = self.conn();
        // One read transaction, so that the tasks are those of the jobs read.
        let tx = conn.transaction()?;
        let raws = tx
            .prepare(&format!("SELECT {COLUMNS} {selection}"))?
            .query_map(rusqlite::params_from_iter(&args), RawJob::from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut tasks: HashMap<String, Vec<RawTask>> = HashMap::new();
        {
            let mut stmt = tx.prepare(&format!(
                "SELECT {TASK_COLUMNS} FROM job_tasks WHERE job_id IN (SELECT id {selection}) \
                 ORDER BY job_id, seq"
            ))?;
            let rows = stmt.query_map(rusqlite::params_from_iter(&args), RawTask::from_row)?;
            for row in rows {
                let row = row?;
                tasks.entry(row.job_id.clone()).or_default().push(row);
            }
        }
        tx.finish()?;
        raws.into_iter()
            .map(|raw| {
                let own = tasks.remove(&raw.id).unwrap_or_default();
                raw.into_job(own)
            })
            .collect()
    }

    /// When the latest `ScriptRun` job of the script at `script_path` (as the job recorded
    /// it) started: what a recurring runbook's schedule is judged against. One row, found
    /// newest first along the start-time index, where [`JobHistory::list`] would read every
    /// script job with its captured output.
    pub fn latest_script_run(&self, script_path: &str) -> Result<Option<DateTime<Utc>>> {
        let row: Option<(String, String)> = self
            .conn()
            .query_row(
                "SELECT id, start_time FROM jobs WHERE operation = ?1 AND script_path = ?2 \
                 ORDER BY start_time DESC, seq DESC LIMIT 1",
                params![Operation::ScriptRun.as_str(), script_path],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        row.map(|(id, start)| {
            parse_db_time(&start).map_err(|e| HistoryError::Corrupt {
                id,
                detail: format!("start_time `{start}`: {e}"),
            })
        })
        .transpose()
    }

    /// The jobs dashboard over the jobs `filter` matches (its `limit` aside: the counts are
    /// over the whole window): per vault and instance, how many jobs are in each status and
    /// how many ran late. Agrees with [`summarize`] over [`JobHistory::list`]'s jobs.
    pub fn summary(&self, filter: &JobFilter) -> Result<Vec<JobSummaryRow>> {
        let (selection, args) = filter_sql(&JobFilter {
            limit: None,
            offset: 0,
            ..filter.clone()
        });
        // vault_name and backup_instance_name are COLLATE NOCASE, so they group and sort
        // ignoring ASCII case, as `summarize` does.
        let sql = format!(
            "SELECT vault_name, backup_instance_name, status, COUNT(*), SUM(late) {selection} \
             GROUP BY vault_name, backup_instance_name, status \
             ORDER BY vault_name, backup_instance_name"
        );
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql)?;
        let counted = stmt
            .query_map(rusqlite::params_from_iter(&args), |row| {
                Ok((
                    row.get::<_, Option<String>>(0)?,
                    row.get::<_, Option<String>>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, i64>(4)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let same = |a: &Option<String>, b: &Option<String>| match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            _ => false,
        };
        let mut rows: Vec<JobSummaryRow> = Vec::new();
        for (vault, instance, status, count, late) in counted {
            let corrupt = |detail: String| HistoryError::Corrupt {
                id: format!(
                    "(a job of {})",
                    instance.as_deref().unwrap_or("no instance")
                ),
                detail,
            };
            let status: JobStatus = status.parse().map_err(|e| corrupt(format!("{e}")))?;
            let row = match rows.last_mut() {
                Some(row)
                    if same(&row.vault_name, &vault)
                        && same(&row.backup_instance_name, &instance) =>
                {
                    row
                }
                _ => {
                    rows.push(JobSummaryRow {
                        vault_name: vault.clone(),
                        backup_instance_name: instance.clone(),
                        counts: StatusCounts::default(),
                        late: 0,
                    });
                    rows.last_mut().expect("just pushed")
                }
            };
            // COUNT and SUM over 0/1 are never negative.
            row.counts.add(status, u64::try_from(count).unwrap_or(0));
            row.late += u64::try_from(late).unwrap_or(0);
        }
        Ok(rows)
    }

    /// How many jobs [`JobHistory::prune`] would delete with this cutoff: the dry run.
    pub fn prunable(&self, older_than: DateTime<Utc>) -> Result<usize> {
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM jobs WHERE status <> 'InProgress' AND end_time < ?1",
            [db_time(older_than)],
            |row| row.get(0),
        )?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Deletes the jobs that finished before `older_than`, with their sub-tasks, and returns
    /// how many jobs it deleted. A job still `InProgress` is never deleted, however old: it is
    /// either running or waiting for [`JobHistory::mark_interrupted`] to say it was not.
    /// Sub-tasks whose job is gone (rows deleted by hand) go too.
    ///
    /// The file does not shrink: SQLite reuses the freed pages for the jobs that follow.
    pub fn prune(&self, older_than: DateTime<Utc>) -> Result<usize> {
        self.on_disk(|| {
            let mut conn = self.conn();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let cutoff = db_time(older_than);
            tx.execute(
                "DELETE FROM job_tasks WHERE job_id IN \
                 (SELECT id FROM jobs WHERE status <> 'InProgress' AND end_time < ?1)",
                [&cutoff],
            )?;
            let deleted = tx.execute(
                "DELETE FROM jobs WHERE status <> 'InProgress' AND end_time < ?1",
                [&cutoff],
            )?;
            tx.execute(
                "DELETE FROM job_tasks WHERE job_id NOT IN (SELECT id FROM jobs)",
                [],
            )?;
            // Alerts resolved before the cutoff go with the jobs of their time, with their
            // notices; an open alert stays, however old.
            tx.execute(
                "DELETE FROM alert_deliveries WHERE incident_id IN (SELECT id FROM \
                 alert_incidents WHERE state = 'Resolved' AND resolved_time < ?1)",
                [&cutoff],
            )?;
            tx.execute(
                "DELETE FROM alert_incidents WHERE state = 'Resolved' AND resolved_time < ?1",
                [&cutoff],
            )?;
            tx.commit()?;
            // Pruning is the history's periodic maintenance, so it is where SQLite is asked to
            // refresh the statistics its planner uses to pick an index for a filter.
            conn.execute_batch("PRAGMA optimize")?;
            Ok(deleted)
        })
    }

    /// Fails every job on `local_host` still marked `InProgress` whose process `pid_alive`
    /// says is gone, ending it (and its running sub-tasks) at `now`; returns the jobs it
    /// changed.
    ///
    /// Only rows owned by `local_host` are judged, because a process id means nothing on
    /// another machine: a job another host runs against a shared history must not be failed
    /// because the same pid happens to be free here.
    pub fn mark_interrupted(
        &self,
        now: DateTime<Utc>,
        local_host: &str,
        pid_alive: impl Fn(u32) -> bool,
    ) -> Result<Vec<Job>> {
        self.on_disk(|| {
            let mut conn = self.conn();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let running: Vec<JobId> = {
                let mut stmt = tx.prepare(
                    "SELECT id, owner_pid FROM jobs \
                     WHERE status = 'InProgress' AND owner_host = ?1 ORDER BY seq",
                )?;
                let rows = stmt
                    .query_map([local_host], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let mut dead = Vec::new();
                for (id, pid) in rows {
                    // A pid that is not a u32 cannot be a live process here; into_job reports
                    // the row as corrupt below.
                    if u32::try_from(pid).is_ok_and(&pid_alive) {
                        continue;
                    }
                    dead.push(id.parse().map_err(|e| HistoryError::Corrupt {
                        id: id.clone(),
                        detail: format!("{e}"),
                    })?);
                }
                dead
            };
            let mut marked = Vec::new();
            for id in running {
                let mut job = get_job(&tx, id)?.ok_or(HistoryError::NotFound(id))?;
                let error = JobError::new(
                    JOB_INTERRUPTED,
                    format!(
                        "the pgvault process running this job (pid {} on {}) stopped before the job \
                         finished, so its work is incomplete; run the operation again",
                        job.owner.pid, job.owner.host
                    ),
                );
                // A clock that stepped back since the job started must not make the row
                // unfixable; the end is then the start, and the duration zero.
                let end = now.max(job.state.start());
                let (read, stored) = (job.bytes_read, job.bytes_stored);
                job.finish(&JobOutcome::Failed(error), end, read, stored)
                    .map_err(|source| HistoryError::Transition { id: job.id, source })?;
                write_end(&tx, &job)?;
                marked.push(job);
            }
            tx.commit()?;
            Ok(marked)
        })
    }
}

/// Why a change inside [`JobHistory::update`] failed: the model refused it, or SQLite did.
enum UpdateFailure {
    Refused(JobUpdateError),
    Sqlite(rusqlite::Error),
}

impl From<JobUpdateError> for UpdateFailure {
    fn from(e: JobUpdateError) -> Self {
        UpdateFailure::Refused(e)
    }
}

impl From<rusqlite::Error> for UpdateFailure {
    fn from(e: rusqlite::Error) -> Self {
        UpdateFailure::Sqlite(e)
    }
}

/// `FROM jobs WHERE ...` for every condition of `filter` but its limit, with numbered
/// parameters, so that the same text can select jobs, their tasks, or their counts.
fn filter_sql(filter: &JobFilter) -> (String, Vec<SqlValue>) {
    let mut sql = String::from("FROM jobs WHERE 1 = 1");
    let mut args: Vec<SqlValue> = Vec::new();
    let mut condition = |clause: &str, value: SqlValue| {
        args.push(value);
        sql.push_str(&format!(" AND {clause} ?{}", args.len()));
    };
    // vault_name and backup_instance_name are COLLATE NOCASE, so `=` ignores ASCII case
    // exactly as JobFilter::matches does; a NULL vault equals nothing.
    if let Some(vault) = &filter.vault {
        condition("vault_name =", SqlValue::Text(vault.clone()));
    }
    if let Some(instance) = &filter.instance {
        condition("backup_instance_name =", SqlValue::Text(instance.clone()));
    }
    if let Some(status) = filter.status {
        condition("status =", SqlValue::Text(status.as_str().into()));
    }
    if let Some(t) = filter.started_after {
        condition("start_time >=", SqlValue::Text(db_time(t)));
    }
    if let Some(t) = filter.started_before {
        condition("start_time <", SqlValue::Text(db_time(t)));
    }
    if let Some(filter) = filter.operation {
        // One name or Azure's for several (`Backup`): `operation IN (?n, ...)`.
        let names: Vec<String> = filter
            .operations()
            .into_iter()
            .map(|op| {
                args.push(SqlValue::Text(op.as_str().into()));
                format!("?{}", args.len())
            })
            .collect();
        sql.push_str(&format!(" AND operation IN ({})", names.join(", ")));
    }
    (sql, args)
}

/// Puts the file in WAL mode (a persistent property of the file) and returns the mode SQLite
/// reports.
///
/// Switching a file to WAL takes an exclusive lock for which SQLite does not call the busy
/// handler, so a second process opening a brand-new file at the same moment gets
/// `SQLITE_BUSY` at once despite the busy timeout. Only that switch is retried, within the
/// same budget; once a file is in WAL mode the check below skips it and takes no lock.
fn enable_wal(conn: &Connection) -> rusqlite::Result<String> {
    let current: String = conn.pragma_query_value(None, "journal_mode", |row| row.get(0))?;
    if current.eq_ignore_ascii_case("wal") {
        return Ok(current);
    }
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// Brings the file's schema up to the latest version of `migrations` (always [`MIGRATIONS`]
/// but in tests), from whatever version it has (0 for a new file), in one transaction.
fn migrate(conn: &mut Connection, path: &Path, migrations: &[&str]) -> Result<()> {
    let latest = migrations.len() as i64;
    let version = |conn: &Connection| -> rusqlite::Result<i64> {
        conn.pragma_query_value(None, "user_version", |row| row.get(0))
    };
    let newer = |conn: &Connection, found: i64| HistoryError::NewerSchema {
        path: path.to_path_buf(),
        found,
        supported: latest,
        written_by: written_by(conn),
    };
    // The common case, an up-to-date file, needs no write lock; nor does refusing a newer one.
    match version(conn)? {
        found if found == latest => return Ok(()),
        found if found > latest => return Err(newer(conn, found)),
        _ => {}
    }
    // IMMEDIATE so that two processes opening an old file at once do not both migrate: the
    // second waits, then sees the version the first wrote. user_version is written inside the
    // same transaction, so a failed migration leaves the file at its old version.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found = version(&tx)?;
    if found > latest {
        return Err(newer(&tx, found));
    }
    if found == latest {
        return Ok(());
    }
    for (index, sql) in migrations.iter().enumerate().skip(found.max(0) as usize) {
        let to = index + 1;
        let failed = |source| HistoryError::Migrate {
            path: path.to_path_buf(),
            version: to,
            source,
        };
        tx.execute_batch(sql).map_err(failed)?;
        tx.pragma_update(None, "user_version", to as i64)
            .map_err(failed)?;
    }
    tx.execute(
        "INSERT INTO pgvault_meta (key, value) VALUES (?1, ?2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![META_WRITTEN_BY, env!("CARGO_PKG_VERSION")],
    )
    .map_err(|source| HistoryError::Migrate {
        path: path.to_path_buf(),
        version: migrations.len(),
        source,
    })?;
    tx.commit()?;
    Ok(())
}

/// The pgvault version a file says last migrated it, if it says (files from version 2 on).
fn written_by(conn: &Connection) -> Option<String> {
    conn.query_row(
        "SELECT value FROM pgvault_meta WHERE key = ?1",
        [META_WRITTEN_BY],
        |row| row.get(0),
    )
    .ok()
}

fn get_job(conn: &Connection, id: JobId) -> Result<Option<Job>> {
    let Some(raw) = conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"),
            [id.to_string()],
            RawJob::from_row,
        )
        .optional()?
    else {
        return Ok(None);
    };
    let tasks = conn
        .prepare(&format!(
            "SELECT {TASK_COLUMNS} FROM job_tasks WHERE job_id = ?1 ORDER BY seq"
        ))?
        .query_map([&raw.id], RawTask::from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    raw.into_job(tasks).map(Some)
}

/// Writes a finished job's end state and its sub-tasks' ends; the status guards make the
/// database refuse a second finish even from a writer that skipped the model's check.
fn write_end(conn: &Connection, job: &Job) -> Result<()> {
    let error = job.state.error();
    let changed = conn.execute(
        "UPDATE jobs SET status = ?2, end_time = ?3, error_code = ?4, error_message = ?5, \
         bytes_read = ?6, bytes_stored = ?7, recovery_point_id = ?8 \
         WHERE id = ?1 AND status = 'InProgress'",
        params![
            job.id.to_string(),
            job.status().as_str(),
            job.state.end().map(db_time),
            error.map(|e| e.code.as_str()),
            error.map(|e| e.message.as_str()),
            db_bytes(job.bytes_read)?,
            db_bytes(job.bytes_stored)?,
            job.recovery_point_id,
        ],
    )?;
    if changed != 1 {
        // Unreachable under the IMMEDIATE lock the callers hold after reading the row as
        // InProgress; reported rather than ignored in case that ever stops being true.
        return Err(HistoryError::NotInProgress {
            id: job.id,
            status: job.status(),
        });
    }
    for task in &job.tasks {
        // Tasks that had already ended match no row.
        write_task_end(conn, job.id, task)?;
    }
    Ok(())
}

/// Writes a sub-task's end, if the row still says it runs.
fn write_task_end(conn: &Connection, job: JobId, task: &JobTask) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE job_tasks SET status = ?3, end_time = ?4, detail = ?5 \
         WHERE job_id = ?1 AND seq = ?2 AND status = 'InProgress'",
        params![
            job.to_string(),
            task.id.get(),
            task.status().as_str(),
            task.state.end().map(db_time),
            task.detail,
        ],
    )?;
    Ok(())
}

/// Times are stored as fixed-width UTC text so that comparing text compares time.
pub(crate) fn db_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

fn db_bytes(n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| HistoryError::ByteCountTooLarge(n))
}

pub(crate) fn parse_db_time(text: &str) -> std::result::Result<DateTime<Utc>, chrono::ParseError> {
    DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc))
}

/// A row as SQLite types, before it is parsed into a [`Job`]. Reading and parsing are split so
/// that a bad value becomes a [`HistoryError::Corrupt`] naming the job, not a bare SQLite error.
struct RawJob {
    id: String,
    operation: String,
    state: RawState,
    error_code: Option<String>,
    error_message: Option<String>,
    owner_pid: i64,
    owner_host: String,
    vault_name: Option<String>,
    backup_instance_name: Option<String>,
    datasource_name: Option<String>,
    datasource_id: Option<String>,
    policy_name: Option<String>,
    policy_rule_name: Option<String>,
    retention_tag: Option<String>,
    is_user_triggered: bool,
    bytes_read: i64,
    bytes_stored: i64,
    recovery_point_id: Option<String>,
    extended_details: String,
    due_time: Option<String>,
    late: bool,
    script_path: Option<String>,
    script_output: Option<String>,
}

impl RawJob {
    /// Reads the columns in the order of [`COLUMNS`].
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            operation: row.get(1)?,
            state: RawState::read(row, 2)?,
            error_code: row.get(5)?,
            error_message: row.get(6)?,
            owner_pid: row.get(7)?,
            owner_host: row.get(8)?,
            vault_name: row.get(9)?,
            backup_instance_name: row.get(10)?,
            datasource_name: row.get(11)?,
            datasource_id: row.get(12)?,
            policy_name: row.get(13)?,
            policy_rule_name: row.get(14)?,
            retention_tag: row.get(15)?,
            is_user_triggered: row.get(16)?,
            bytes_read: row.get(17)?,
            bytes_stored: row.get(18)?,
            recovery_point_id: row.get(19)?,
            extended_details: row.get(20)?,
            due_time: row.get(21)?,
            late: row.get(22)?,
            script_path: row.get(23)?,
            script_output: row.get(24)?,
        })
    }

    fn into_job(self, tasks: Vec<RawTask>) -> Result<Job> {
        let corrupt = |detail: String| HistoryError::Corrupt {
            id: self.id.clone(),
            detail,
        };
        let time = |column: &str, text: &str| {
            parse_db_time(text).map_err(|e| corrupt(format!("{column} `{text}`: {e}")))
        };
        let bytes = |column: &str, n: i64| {
            u64::try_from(n).map_err(|_| corrupt(format!("{column} is negative ({n})")))
        };

        let id: JobId = self.id.parse().map_err(|e| corrupt(format!("{e}")))?;
        let operation: Operation = self
            .operation
            .parse()
            .map_err(|e| corrupt(format!("{e}")))?;
        let state = match self.state.parse().map_err(corrupt)? {
            TaskState::InProgress { start } => JobState::InProgress { start },
            TaskState::Completed { start, end } => JobState::Completed { start, end },
            TaskState::Cancelled { start, end } => JobState::Cancelled { start, end },
            TaskState::Failed { start, end } => match (&self.error_code, &self.error_message) {
                (Some(code), Some(message)) => JobState::Failed {
                    start,
                    end,
                    error: JobError::new(code.clone(), message.clone()),
                },
                _ => return Err(corrupt("a failed job has no error code or message".into())),
            },
        };
        let owner_pid = u32::try_from(self.owner_pid)
            .map_err(|_| corrupt(format!("owner_pid {} is not a process id", self.owner_pid)))?;
        let extended_details = serde_json::from_str(&self.extended_details).map_err(|e| {
            corrupt(format!(
                "extended_details is not a JSON map of strings: {e}"
            ))
        })?;
        let scheduled = match (&self.due_time, self.late) {
            (Some(due), late) => Some(ScheduledRun {
                due_time: time("due_time", due)?,
                late,
            }),
            (None, false) => None,
            (None, true) => return Err(corrupt("a late job has no due_time".into())),
        };
        let tasks = tasks
            .into_iter()
            .map(|task| task.into_task().map_err(corrupt))
            .collect::<Result<Vec<_>>>()?;

        Ok(Job {
            id,
            operation,
            state,
            owner: JobOwner::new(owner_pid, self.owner_host.clone()),
            vault_name: self.vault_name.clone().unwrap_or_default(),
            backup_instance_name: self.backup_instance_name.clone(),
            datasource_name: self.datasource_name.clone(),
            datasource_id: self.datasource_id.clone(),
            policy_name: self.policy_name.clone(),
            policy_rule_name: self.policy_rule_name.clone(),
            retention_tag: self.retention_tag.clone(),
            is_user_triggered: self.is_user_triggered,
            bytes_read: bytes("bytes_read", self.bytes_read)?,
            bytes_stored: bytes("bytes_stored", self.bytes_stored)?,
            recovery_point_id: self.recovery_point_id.clone(),
            scheduled,
            script_path: self.script_path.clone(),
            script_output: self.script_output.clone(),
            tasks,
            extended_details,
        })
    }
}

/// A `job_tasks` row as SQLite types, parsed by [`RawTask::into_task`].
struct RawTask {
    job_id: String,
    seq: i64,
    name: String,
    state: RawState,
    detail: Option<String>,
}

impl RawTask {
    /// Reads the columns in the order of [`TASK_COLUMNS`].
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            job_id: row.get(0)?,
            seq: row.get(1)?,
            name: row.get(2)?,
            state: RawState::read(row, 3)?,
            detail: row.get(6)?,
        })
    }

    /// The task, or what is wrong with the row (the caller names the job).
    fn into_task(self) -> std::result::Result<JobTask, String> {
        let id = u32::try_from(self.seq)
            .ok()
            .and_then(TaskId::new)
            .ok_or_else(|| format!("sub-task number {} is not a positive integer", self.seq))?;
        let state = self
            .state
            .parse()
            .map_err(|e| format!("sub-task {id}: {e}"))?;
        Ok(JobTask {
            id,
            name: self.name,
            state,
            detail: self.detail,
        })
    }
}

/// A job's or sub-task's status and times as the row holds them (three columns in a row:
/// status, start_time, end_time), read as a state by [`RawState::parse`]; a job adds its
/// error to a Failed one.
struct RawState {
    status: String,
    start_time: String,
    end_time: Option<String>,
}

impl RawState {
    /// The three columns from `at` on.
    fn read(row: &Row<'_>, at: usize) -> rusqlite::Result<Self> {
        Ok(RawState {
            status: row.get(at)?,
            start_time: row.get(at + 1)?,
            end_time: row.get(at + 2)?,
        })
    }

    /// The state, or what does not fit.
    fn parse(&self) -> std::result::Result<TaskState, String> {
        let time = |column: &str, text: &str| {
            parse_db_time(text).map_err(|e| format!("{column} `{text}`: {e}"))
        };
        let status: JobStatus = self.status.parse().map_err(|e| format!("{e}"))?;
        let start = time("start_time", &self.start_time)?;
        let end = self
            .end_time
            .as_deref()
            .map(|end| time("end_time", end))
            .transpose()?;
        Ok(match (status, end) {
            (JobStatus::InProgress, None) => TaskState::InProgress { start },
            (JobStatus::Completed, Some(end)) => TaskState::Completed { start, end },
            (JobStatus::Failed, Some(end)) => TaskState::Failed { start, end },
            (JobStatus::Cancelled, Some(end)) => TaskState::Cancelled { start, end },
            _ => return Err(format!("end_time does not fit status {status}")),
        })
    }
}

/// The owner to record for jobs this process runs.
pub fn current_owner() -> JobOwner {
    JobOwner::new(std::process::id(), local_host_name())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, TimeZone};
    use pgvault_core::model::code::ErrorCode;
    use std::collections::BTreeMap;
    use std::sync::{Arc, Barrier};

    fn t(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 6, 1, h, m, s).unwrap()
    }

    const HOST: &str = "db-host-1";

    fn new_job(op: Operation, vault: &str, start: DateTime<Utc>) -> NewJob {
        NewJob::new(op, vault, start, JobOwner::new(1000, HOST))
    }

    /// The history's folder is 0700 and the database with its `-wal` and `-shm` files 0600,
    /// whatever the test runner's umask: SQLite alone would create them 0644.
    #[test]
    fn the_history_and_its_wal_and_shm_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("home/jobs.sqlite");
        let history = JobHistory::open(&path).unwrap();
        history.start(&full_job()).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("home")), 0o700);
        for suffix in ["", "-wal", "-shm"] {
            let file = PathBuf::from(format!("{}{suffix}", path.display()));
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
    }

    #[test]
    fn a_full_disk_is_named_with_the_history_folder() {
        let full = HistoryError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        ));
        let named = disk_full(Path::new("/srv/pgvault/jobs.sqlite"), full);
        assert!(
            named
                .to_string()
                .starts_with("the disk holding `/srv/pgvault` is full"),
            "{named}"
        );
        let busy = HistoryError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        ));
        assert!(matches!(
            disk_full(Path::new("/srv/pgvault/jobs.sqlite"), busy),
            HistoryError::Sqlite(_)
        ));
    }

    /// A job with every optional field set, and a start time with sub-microsecond digits to
    /// check that no precision is lost on the way through SQLite.
    fn full_job() -> NewJob {
        let mut new = new_job(
            Operation::OnDemandBackup,
            "vault-a",
            t(1, 2, 3) + TimeDelta::nanoseconds(123_456_789),
        );
        new.backup_instance_name = Some("pg1\\sales".into());
        new.datasource_name = Some("sales".into());
        new.datasource_id = Some("postgres://pg1:5432/sales".into());
        new.policy_name = Some("daily".into());
        new.policy_rule_name = Some("Default".into());
        new.retention_tag = Some("Weekly".into());
        new.extended_details = BTreeMap::from([
            ("RestoreTarget".to_owned(), "pg2/sales_copy".to_owned()),
            (
                "Note".to_owned(),
                "quotes \" and ' and \\ survive".to_owned(),
            ),
        ]);
        new
    }

    fn history() -> (tempfile::TempDir, JobHistory) {
        let dir = tempfile::tempdir().unwrap();
        let history = JobHistory::open(dir.path().join("jobs.sqlite")).unwrap();
        (dir, history)
    }

    #[test]
    fn every_state_round_trips() {
        let (_dir, history) = history();
        let end = t(1, 4, 14) + TimeDelta::nanoseconds(987_654_321);
        let outcomes = [
            None,
            Some(JobOutcome::Completed {
                recovery_point_id: Some("rp-2025-06-01".into()),
            }),
            Some(JobOutcome::Completed {
                recovery_point_id: None,
            }),
            Some(JobOutcome::Failed(JobError::new(
                ErrorCode::UserErrorMissingDBPermissions,
                "GRANT SELECT ON ALL TABLES IN SCHEMA public TO backup;",
            ))),
            Some(JobOutcome::Cancelled),
        ];
        for (sparse, outcome) in [false, true]
            .into_iter()
            .flat_map(|s| outcomes.iter().map(move |o| (s, o)))
        {
            let new = if sparse {
                new_job(Operation::ScheduledBackup, "vault-b", t(0, 0, 0))
            } else {
                full_job()
            };
            let mut expected = Job::start(&new);
            let started = history.start(&new).unwrap();
            assert_eq!(started, expected);
            if let Some(outcome) = outcome {
                expected.finish(outcome, end, 5_000, 1_200).unwrap();
                let finished = history.finish(new.id, outcome, end, 5_000, 1_200).unwrap();
                assert_eq!(finished, expected);
            }
            assert_eq!(history.get(new.id).unwrap(), Some(expected), "{outcome:?}");
        }
        assert_eq!(history.get(JobId::new()).unwrap(), None);
    }

    #[test]
    fn progress_updates_only_running_jobs() {
        let (_dir, history) = history();
        let new = full_job();
        history.start(&new).unwrap();
        history.update_progress(new.id, 10, 4).unwrap();
        history.update_progress(new.id, 20, 9).unwrap();
        let job = history.get(new.id).unwrap().unwrap();
        assert_eq!((job.bytes_read, job.bytes_stored), (20, 9));

        assert!(matches!(
            history.update_progress(new.id, u64::MAX, 0),
            Err(HistoryError::ByteCountTooLarge(u64::MAX))
        ));
        history
            .finish(new.id, &JobOutcome::Cancelled, t(2, 0, 0), 30, 9)
            .unwrap();
        assert!(matches!(
            history.update_progress(new.id, 40, 9),
            Err(HistoryError::NotInProgress {
                status: JobStatus::Cancelled,
                ..
            })
        ));
        let missing = JobId::new();
        assert!(matches!(
            history.update_progress(missing, 1, 1),
            Err(HistoryError::NotFound(id)) if id == missing
        ));
    }

    #[test]
    fn illegal_transitions_are_refused_and_leave_the_row_alone() {
        let failed = JobOutcome::Failed(JobError::new("E", "m"));
        let done = JobOutcome::Completed {
            recovery_point_id: Some("rp".into()),
        };
        // (first finish, second finish, expected status after the refusal)
        let cases = [
            (&done, &failed, JobStatus::Completed),
            (&done, &done, JobStatus::Completed),
            (&failed, &done, JobStatus::Failed),
            (&JobOutcome::Cancelled, &failed, JobStatus::Cancelled),
            (&failed, &JobOutcome::Cancelled, JobStatus::Failed),
        ];
        let (_dir, history) = history();
        for (first, second, status) in cases {
            let new = full_job();
            history.start(&new).unwrap();
            let after_first = history.finish(new.id, first, t(3, 0, 0), 1, 1).unwrap();
            let refused = history.finish(new.id, second, t(4, 0, 0), 2, 2);
            assert!(
                matches!(
                    refused,
                    Err(HistoryError::Transition {
                        source: TransitionError::AlreadyFinished { status: s },
                        ..
                    }) if s == status
                ),
                "{first:?} then {second:?}: {refused:?}"
            );
            assert_eq!(history.get(new.id).unwrap(), Some(after_first));
        }

        let new = full_job();
        let running = history.start(&new).unwrap();
        let before_start = new.start - TimeDelta::seconds(1);
        assert!(matches!(
            history.finish(new.id, &done, before_start, 0, 0),
            Err(HistoryError::Transition {
                source: TransitionError::EndBeforeStart { .. },
                ..
            })
        ));
        assert_eq!(history.get(new.id).unwrap(), Some(running));

        assert!(matches!(
            history.finish(JobId::new(), &done, t(5, 0, 0), 0, 0),
            Err(HistoryError::NotFound(_))
        ));
        assert!(matches!(history.start(&new), Err(HistoryError::Duplicate(id)) if id == new.id));
    }

    #[test]
    fn filters() {
        let (_dir, history) = history();
        let mut jobs = Vec::new();
        let rows = [
            // (operation, vault, instance, start hour, outcome)
            (
                Operation::ScheduledBackup,
                "vault-a",
                Some("db1"),
                1,
                Some(JobStatus::Completed),
            ),
            (
                Operation::OnDemandBackup,
                "VAULT-A",
                Some("DB2"),
                2,
                Some(JobStatus::Failed),
            ),
            (Operation::Restore, "vault-b", Some("db1"), 3, None),
            (
                Operation::ConfigureBackup,
                "vault-b",
                None,
                4,
                Some(JobStatus::Cancelled),
            ),
            (Operation::ScriptRun, "vault-a", None, 5, None),
        ];
        for (op, vault, instance, hour, outcome) in rows {
            let mut new = new_job(op, vault, t(hour, 0, 0));
            new.backup_instance_name = instance.map(str::to_owned);
            history.start(&new).unwrap();
            let outcome = match outcome {
                None => None,
                Some(JobStatus::Completed) => Some(JobOutcome::Completed {
                    recovery_point_id: None,
                }),
                Some(JobStatus::Failed) => Some(JobOutcome::Failed(JobError::new("E", "m"))),
                Some(_) => Some(JobOutcome::Cancelled),
            };
            if let Some(outcome) = outcome {
                history
                    .finish(new.id, &outcome, t(hour, 30, 0), 0, 0)
                    .unwrap();
            }
            jobs.push(history.get(new.id).unwrap().unwrap());
        }

        // Expected results as indexes into `rows`, newest first.
        let cases: [(JobFilter, &[usize]); 19] = [
            (JobFilter::default(), &[4, 3, 2, 1, 0]),
            // Azure's names stand for every operation shown under them.
            (
                JobFilter::default().operation(OperationFilter::Azure(AzureOperation::Backup)),
                &[1, 0],
            ),
            (
                JobFilter::default()
                    .operation(OperationFilter::Azure(AzureOperation::Management))
                    .status(JobStatus::InProgress),
                &[4],
            ),
            (
                JobFilter::default().operation(OperationFilter::Azure(AzureOperation::Tiering)),
                &[],
            ),
            (JobFilter::default().vault("vault-a"), &[4, 1, 0]),
            (JobFilter::default().vault("Vault-B"), &[3, 2]),
            (JobFilter::default().vault("vault-c"), &[]),
            (JobFilter::default().instance("db1"), &[2, 0]),
            (JobFilter::default().instance("db2"), &[1]),
            (JobFilter::default().status(JobStatus::InProgress), &[4, 2]),
            (JobFilter::default().status(JobStatus::Failed), &[1]),
            (JobFilter::default().operation(Operation::Restore), &[2]),
            (JobFilter::default().started_after(t(3, 0, 0)), &[4, 3, 2]),
            (JobFilter::default().started_before(t(3, 0, 0)), &[1, 0]),
            (
                JobFilter::default()
                    .started_after(t(2, 0, 0))
                    .started_before(t(4, 0, 0)),
                &[2, 1],
            ),
            (JobFilter::default().vault("vault-a").limit(2), &[4, 1]),
            (JobFilter::default().limit(2).offset(1), &[3, 2]),
            (JobFilter::default().limit(10).offset(4), &[0]),
            (
                JobFilter::default()
                    .vault("vault-b")
                    .instance("db1")
                    .status(JobStatus::InProgress)
                    .operation(Operation::Restore),
                &[2],
            ),
        ];
        for (filter, want) in cases {
            let got: Vec<JobId> = history
                .list(&filter)
                .unwrap()
                .into_iter()
                .map(|j| j.id)
                .collect();
            let want: Vec<JobId> = want.iter().map(|&i| jobs[i].id).collect();
            assert_eq!(got, want, "{filter:?}");
            // The store's filtering and the model's must agree.
            let in_memory: Vec<JobId> = filter.apply(&jobs).into_iter().map(|j| j.id).collect();
            assert_eq!(in_memory, want, "in memory: {filter:?}");
        }
        assert_eq!(history.list(&JobFilter::default().limit(0)).unwrap(), []);
    }

    #[test]
    fn equal_start_times_list_most_recently_recorded_first() {
        let (_dir, history) = history();
        let ids: Vec<JobId> = (0..3)
            .map(|_| {
                let new = new_job(Operation::ScriptRun, "v", t(1, 0, 0));
                history.start(&new).unwrap().id
            })
            .collect();
        let listed: Vec<JobId> = history
            .list(&JobFilter::default())
            .unwrap()
            .into_iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(listed, ids.into_iter().rev().collect::<Vec<_>>());
    }

    #[test]
    fn interrupted_jobs_are_failed_and_live_ones_left_alone() {
        let (_dir, history) = history();
        let now = t(12, 0, 0);
        let start = |pid: u32, host: &str, at: DateTime<Utc>| {
            let new = NewJob::new(
                Operation::ScheduledBackup,
                "v",
                at,
                JobOwner::new(pid, host),
            );
            history.start(&new).unwrap();
            history.update_progress(new.id, 64, 16).unwrap();
            new.id
        };
        let dead = start(111, HOST, t(11, 0, 0));
        let alive = start(222, HOST, t(11, 0, 0));
        let elsewhere = start(111, "other-host", t(11, 0, 0));
        let from_the_future = start(333, HOST, t(13, 0, 0));
        let finished = start(111, HOST, t(10, 0, 0));
        history
            .finish(
                finished,
                &JobOutcome::Completed {
                    recovery_point_id: None,
                },
                t(10, 5, 0),
                64,
                16,
            )
            .unwrap();

        let marked = history
            .mark_interrupted(now, HOST, |pid| pid == 222)
            .unwrap();
        let marked_ids: Vec<JobId> = marked.iter().map(|j| j.id).collect();
        assert_eq!(marked_ids, [dead, from_the_future]);

        // (job, status after, end time after)
        let cases = [
            (dead, JobStatus::Failed, Some(now)),
            (alive, JobStatus::InProgress, None),
            (elsewhere, JobStatus::InProgress, None),
            // The clock is behind this job's start: it ends when it started, not before.
            (from_the_future, JobStatus::Failed, Some(t(13, 0, 0))),
            (finished, JobStatus::Completed, Some(t(10, 5, 0))),
        ];
        for (id, status, end) in cases {
            let job = history.get(id).unwrap().unwrap();
            assert_eq!(job.status(), status, "{id}");
            assert_eq!(job.state.end(), end, "{id}");
            assert_eq!(
                (job.bytes_read, job.bytes_stored),
                (64, 16),
                "progress kept"
            );
            if status == JobStatus::Failed {
                let error = job.state.error().unwrap();
                assert_eq!(error.code, JOB_INTERRUPTED);
                assert!(error.message.contains("stopped before the job finished"));
                assert!(error.message.contains(&format!("pid {}", job.owner.pid)));
            }
        }
        assert_eq!(marked[0], history.get(dead).unwrap().unwrap());

        // Running it again finds nothing more to do.
        assert_eq!(
            history
                .mark_interrupted(now, HOST, |_| false)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            history.get(alive).unwrap().unwrap().status(),
            JobStatus::Failed
        );
        assert!(
            history
                .mark_interrupted(now, HOST, |_| false)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn open_creates_folders_uses_wal_and_reopening_keeps_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("nested").join("jobs.sqlite");
        let new = full_job();
        {
            let history = JobHistory::open(&path).unwrap();
            assert_eq!(history.path(), path);
            history.start(&new).unwrap();
            history
                .finish(new.id, &JobOutcome::Cancelled, t(9, 0, 0), 7, 3)
                .unwrap();
        }
        let reopened = JobHistory::open(&path).unwrap();
        let job = reopened.get(new.id).unwrap().unwrap();
        assert_eq!(job.status(), JobStatus::Cancelled);
        assert_eq!(job.extended_details, new.extended_details);

        let raw = Connection::open(&path).unwrap();
        let mode: String = raw
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let version: i64 = raw
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
    }

    #[test]
    fn a_newer_schema_is_refused_naming_the_pgvault_that_wrote_it() {
        // (what the file says wrote it, expected words in the error)
        let cases = [
            (Some("9.9.9"), "written by pgvault 9.9.9"),
            (
                Some("9.9.9"),
                "upgrade pgvault to 9.9.9 or later to read it",
            ),
            (None, "upgrade pgvault to read it"),
        ];
        for (writer, words) in cases {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("jobs.sqlite");
            drop(JobHistory::open(&path).unwrap());
            let raw = Connection::open(&path).unwrap();
            match writer {
                Some(v) => raw
                    .execute(
                        "UPDATE pgvault_meta SET value = ?1 WHERE key = ?2",
                        [v, META_WRITTEN_BY],
                    )
                    .map(|n| assert_eq!(n, 1))
                    .unwrap(),
                None => raw.execute_batch("DROP TABLE pgvault_meta").unwrap(),
            }
            raw.pragma_update(None, "user_version", 99).unwrap();
            let err = JobHistory::open(&path).unwrap_err();
            assert!(
                matches!(
                    &err,
                    HistoryError::NewerSchema { found: 99, supported, written_by, .. }
                        if *supported == MIGRATIONS.len() as i64
                            && written_by.as_deref() == writer
                ),
                "{err:?}"
            );
            let message = err.to_string();
            assert!(message.contains(words), "{message}");
            assert!(
                message.contains(&format!("this pgvault ({})", env!("CARGO_PKG_VERSION"))),
                "{message}"
            );
        }
    }

    #[test]
    fn a_row_edited_outside_pgvault_is_reported_as_corrupt() {
        let (dir, history) = history();
        let new = full_job();
        history.start(&new).unwrap();
        Connection::open(dir.path().join("jobs.sqlite"))
            .unwrap()
            .execute("UPDATE jobs SET operation = 'Teleport'", [])
            .unwrap();
        let err = history.get(new.id).unwrap_err();
        assert!(
            matches!(&err, HistoryError::Corrupt { id, detail } if *id == new.id.to_string() && detail.contains("Teleport")),
            "{err:?}"
        );
    }

    #[test]
    fn the_schema_refuses_rows_that_break_the_state_rules() {
        let (dir, history) = history();
        let new = full_job();
        history.start(&new).unwrap();
        let raw = Connection::open(dir.path().join("jobs.sqlite")).unwrap();
        let statements = [
            "UPDATE jobs SET status = 'Completed'", // finished without an end
            "UPDATE jobs SET end_time = '2025-06-01T00:00:00Z'", // running with an end
            "UPDATE jobs SET status = 'Failed', end_time = '2025-06-01T09:00:00Z'", // no error
            "UPDATE jobs SET status = 'Started'",   // not a pgvault status
            "UPDATE jobs SET bytes_read = -1",
            "UPDATE jobs SET late = 1", // late for no due time
            "UPDATE jobs SET late = 2",
            // Sub-tasks: numbered from 1, named, and with an end exactly when finished.
            "INSERT INTO job_tasks VALUES ('j', 0, 'Dump', 'InProgress', '2025-06-01T00:00:00Z', NULL, NULL)",
            "INSERT INTO job_tasks VALUES ('j', 1, '', 'InProgress', '2025-06-01T00:00:00Z', NULL, NULL)",
            "INSERT INTO job_tasks VALUES ('j', 1, 'Dump', 'Completed', '2025-06-01T00:00:00Z', NULL, NULL)",
            "INSERT INTO job_tasks VALUES ('j', 1, 'Dump', 'InProgress', '2025-06-01T00:00:00Z', '2025-06-01T00:00:00Z', NULL)",
            "INSERT INTO job_tasks VALUES ('j', 1, 'Dump', 'Done', '2025-06-01T00:00:00Z', '2025-06-01T00:00:00Z', NULL)",
        ];
        for sql in statements {
            assert!(raw.execute(sql, []).is_err(), "{sql}");
        }
        assert_eq!(history.get(new.id).unwrap(), Some(Job::start(&new)));
        // The same insert with a valid row goes in, so the refusals above were the rules'.
        raw.execute(
            "INSERT INTO job_tasks VALUES ('j', 1, 'Dump', 'InProgress', '2025-06-01T00:00:00Z', NULL, NULL)",
            [],
        )
        .unwrap();
    }

    #[test]
    fn two_connections_write_concurrently() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.sqlite");
        const WRITERS: usize = 4;
        const JOBS: usize = 100;
        // Every writer opens the brand-new file at the same moment, as processes started
        // together would, so the WAL switch and the first migration race too.
        let barrier = Arc::new(Barrier::new(WRITERS));
        let handles: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (path, barrier) = (path.clone(), barrier.clone());
                std::thread::spawn(move || -> Result<()> {
                    barrier.wait();
                    let history = JobHistory::open(&path)?;
                    for i in 0..JOBS {
                        let start = t(0, 0, 0) + TimeDelta::seconds((w * JOBS + i) as i64);
                        let new = NewJob::new(
                            Operation::ScheduledBackup,
                            format!("vault-{w}"),
                            start,
                            JobOwner::new(w as u32, HOST),
                        );
                        history.start(&new)?;
                        history.update_progress(new.id, 1, 1)?;
                        history.list(&JobFilter::default().limit(5))?;
                        let outcome = JobOutcome::Completed {
                            recovery_point_id: None,
                        };
                        history.finish(new.id, &outcome, start + TimeDelta::seconds(1), 2, 1)?;
                        // Another process's startup sweep runs in the middle of it all.
                        history.mark_interrupted(start, "some-other-host", |_| false)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap().unwrap();
        }
        let history = JobHistory::open(&path).unwrap();
        let all = history.list(&JobFilter::default()).unwrap();
        assert_eq!(all.len(), WRITERS * JOBS);
        assert!(all.iter().all(|j| j.status() == JobStatus::Completed));
    }

    #[test]
    fn history_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<JobHistory>();
    }

    #[test]
    fn process_liveness() {
        assert!(process_alive(std::process::id()));
        if cfg!(target_os = "linux") {
            // Above Linux's maximum pid (2^22), so no process can have it.
            assert!(!process_alive(0x7fff_fff0));
            let mut child = std::process::Command::new("true").spawn().unwrap();
            let pid = child.id();
            child.wait().unwrap();
            assert!(!process_alive(pid), "a reaped child is gone");
        }
        let owner = current_owner();
        assert_eq!(owner.pid, std::process::id());
        assert!(!owner.host.is_empty());
        assert_eq!(owner.host, local_host_name(), "stable across calls");
    }

    // ---- schema versions ----

    /// The schema of version 1 exactly as pgvault 0.1.0 created it, frozen: MIGRATION_1 must
    /// never change, and files written with it must keep opening.
    const V1_SCHEMA: &str = include_str!("history/fixtures/v1_schema.sql");
    /// Rows as pgvault 0.1.0 wrote them, one job per status, and `user_version = 1`.
    const V1_ROWS: &str = include_str!("history/fixtures/v1_rows.sql");

    /// A job history file as pgvault 0.1.0 left it.
    fn v1_file(dir: &Path) -> PathBuf {
        let path = dir.join("jobs.sqlite");
        let raw = Connection::open(&path).unwrap();
        raw.pragma_update(None, "journal_mode", "WAL").unwrap();
        raw.execute_batch(V1_SCHEMA).unwrap();
        raw.execute_batch(V1_ROWS).unwrap();
        path
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    /// The jobs of `v1_rows.sql` as the model builds them, oldest first.
    fn v1_jobs() -> Vec<Job> {
        let id = |n: u32| -> JobId {
            format!("0b0e4a52-8f3e-4c4e-9d43-2a1f0c7c{n:04}")
                .parse()
                .unwrap()
        };
        let mut backup = NewJob::new(
            Operation::OnDemandBackup,
            "vault-a",
            at("2025-06-01T01:02:03.123456789Z"),
            JobOwner::new(4242, HOST),
        );
        backup.id = id(1);
        backup.backup_instance_name = Some("pg1\\sales".into());
        backup.datasource_name = Some("sales".into());
        backup.datasource_id = Some("postgres://pg1:5432/sales".into());
        backup.policy_name = Some("daily".into());
        backup.policy_rule_name = Some("Default".into());
        backup.retention_tag = Some("Weekly".into());
        backup.extended_details = BTreeMap::from([
            (FRIENDLY_NAME_DETAIL.to_owned(), "pg1\\sales".to_owned()),
            ("Note".to_owned(), "quotes \" and ' survive".to_owned()),
        ]);
        let mut backup = Job::start(&backup);
        backup
            .finish(
                &JobOutcome::Completed {
                    recovery_point_id: Some("rp-2025-06-01".into()),
                },
                at("2025-06-01T01:04:14.987654321Z"),
                5000,
                1200,
            )
            .unwrap();

        let mut failed = NewJob::new(
            Operation::ScheduledBackup,
            "Vault-A",
            at("2025-06-02T02:00:00Z"),
            JobOwner::new(4242, HOST),
        );
        failed.id = id(2);
        failed.backup_instance_name = Some("pg1\\sales".into());
        let mut failed = Job::start(&failed);
        failed
            .finish(
                &JobOutcome::Failed(JobError::new(
                    ErrorCode::UserErrorMissingDBPermissions,
                    "GRANT CONNECT ON DATABASE sales TO backup;",
                )),
                at("2025-06-02T02:00:05Z"),
                10,
                0,
            )
            .unwrap();

        let mut restore = NewJob::new(
            Operation::Restore,
            "vault-b",
            at("2025-06-03T03:00:00Z"),
            JobOwner::new(4243, HOST),
        );
        restore.id = id(3);
        restore.backup_instance_name = Some("pg1\\sales".into());
        restore.recovery_point_id = Some("rp-2025-06-01".into());
        restore.extended_details =
            BTreeMap::from([("RestoreTarget".to_owned(), "pg2/sales_copy".to_owned())]);
        let mut restore = Job::start(&restore);
        restore.bytes_read = 64;

        let mut configure = NewJob::new(
            Operation::ConfigureBackup,
            "vault-b",
            at("2025-06-04T04:00:00Z"),
            JobOwner::new(4244, "db-host-2"),
        );
        configure.id = id(4);
        let mut configure = Job::start(&configure);
        configure
            .finish(&JobOutcome::Cancelled, at("2025-06-04T04:00:00Z"), 0, 0)
            .unwrap();

        vec![backup, failed, restore, configure]
    }

    /// The schema as `sqlite_master` holds it: what a migrated file and a new one must agree on.
    fn schema_of(path: &Path) -> Vec<(String, String, Option<String>)> {
        let raw = Connection::open(path).unwrap();
        let mut stmt = raw
            .prepare("SELECT type, name, sql FROM sqlite_master ORDER BY type, name")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    fn user_version(path: &Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn released_migrations_are_frozen() {
        assert_eq!(
            MIGRATIONS[0], V1_SCHEMA,
            "MIGRATION_1 was released with pgvault 0.1.0 and must never change; add a migration"
        );
    }

    /// The instance's datasource type is a job detail: no column, so the schema and every
    /// older row stay as they are (see the v1 test), and a new row keeps it.
    #[test]
    fn a_job_keeps_its_instances_datasource_type() {
        let (_dir, history) = history();
        let flexible = "Microsoft.DBforPostgreSQL/flexibleServers/databases";
        let mut new = new_job(Operation::OnDemandBackup, "vault-a", t(1, 0, 0));
        new.extended_details.insert(
            pgvault_core::model::job::DATASOURCE_TYPE_DETAIL.into(),
            flexible.into(),
        );
        let started = history.start(&new).unwrap();
        let read = history.get(started.id).unwrap().unwrap();
        assert_eq!(
            read.azure_json(&Default::default(), &Default::default())["properties"]["dataSourceType"],
            flexible
        );
    }

    #[test]
    fn a_file_written_by_version_1_reads_back_after_the_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let path = v1_file(dir.path());
        assert_eq!(user_version(&path), 1);

        let history = JobHistory::open(&path).unwrap();
        assert_eq!(user_version(&path), MIGRATIONS.len() as i64);
        assert_eq!(
            written_by(&Connection::open(&path).unwrap()).as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );

        // Every v1 row reads back as the job pgvault 0.1.0 recorded, the new fields empty.
        let expected = v1_jobs();
        let newest_first: Vec<Job> = expected.iter().rev().cloned().collect();
        assert_eq!(history.list(&JobFilter::default()).unwrap(), newest_first);
        for job in &expected {
            let read = history.get(job.id).unwrap().unwrap();
            assert_eq!(&read, job);
            assert!(read.vault().is_some(), "{}", job.id);
            assert_eq!(read.scheduled, None);
            assert_eq!((&read.script_path, &read.script_output), (&None, &None));
            assert!(read.tasks.is_empty());
            // Their Azure JSON is what it was: no sub-tasks, no v2 details.
            let json = read.azure_json(&Default::default(), &Default::default());
            let extended = &json["properties"]["extendedInfo"];
            assert!(extended.get("subTasks").is_none(), "{json}");
            for key in ["ScheduledTime", "Late", "ScriptPath", "ScriptOutput"] {
                assert!(extended["additionalDetails"].get(key).is_none(), "{key}");
            }
            // Recorded before jobs kept their instance's datasource type: the type reported
            // then.
            assert_eq!(
                json["properties"]["dataSourceType"],
                pgvault_core::model::job::AZURE_DATASOURCE_TYPE,
                "{json}"
            );
        }

        // The migrated file filters like a new one (names still compare without case) and
        // takes v2 rows: a job on no vault, with a sub-task, next to the old ones.
        let cases: [(JobFilter, &[usize]); 4] = [
            (JobFilter::default().vault("VAULT-A"), &[1, 0]),
            (JobFilter::default().instance("PG1\\SALES"), &[2, 1, 0]),
            (JobFilter::default().status(JobStatus::InProgress), &[2]),
            (
                JobFilter::default().started_after(at("2025-06-02T00:00:00Z")),
                &[3, 2, 1],
            ),
        ];
        for (filter, want) in cases {
            let got: Vec<JobId> = history
                .list(&filter)
                .unwrap()
                .iter()
                .map(|j| j.id)
                .collect();
            let want: Vec<JobId> = want.iter().map(|&i| expected[i].id).collect();
            assert_eq!(got, want, "{filter:?}");
        }
        let script = NewJob::script_run("nightly.rhai", at("2025-06-05T00:00:00Z"), owner());
        history.start(&script).unwrap();
        history
            .start_task(script.id, TASK_VALIDATE, script.start)
            .unwrap();
        assert_eq!(history.list(&JobFilter::default()).unwrap().len(), 5);

        // And it is the schema a new file gets.
        let fresh = dir.path().join("fresh.sqlite");
        drop(JobHistory::open(&fresh).unwrap());
        assert_eq!(schema_of(&path), schema_of(&fresh));
    }

    #[test]
    fn files_of_every_older_version_migrate_to_the_latest() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("fresh.sqlite");
        drop(JobHistory::open(&fresh).unwrap());
        for from in 0..=MIGRATIONS.len() {
            let path = dir.path().join(format!("v{from}.sqlite"));
            let raw = Connection::open(&path).unwrap();
            for sql in &MIGRATIONS[..from] {
                raw.execute_batch(sql).unwrap();
            }
            if from == MIGRATIONS.len() {
                // A current file has its meta row, written by the migration that made it.
                raw.execute(
                    "INSERT INTO pgvault_meta VALUES (?1, ?2)",
                    [META_WRITTEN_BY, env!("CARGO_PKG_VERSION")],
                )
                .unwrap();
            }
            raw.pragma_update(None, "user_version", from as i64)
                .unwrap();
            drop(raw);
            let history = JobHistory::open(&path).unwrap_or_else(|e| panic!("from v{from}: {e}"));
            assert_eq!(user_version(&path), MIGRATIONS.len() as i64, "from v{from}");
            assert_eq!(schema_of(&path), schema_of(&fresh), "from v{from}");
            drop(history);
            // Opening again changes nothing.
            drop(JobHistory::open(&path).unwrap());
            assert_eq!(
                schema_of(&path),
                schema_of(&fresh),
                "from v{from}, reopened"
            );
        }
    }

    #[test]
    fn a_failed_migration_leaves_the_file_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = v1_file(dir.path());
        let before = schema_of(&path);
        let mut conn = Connection::open(&path).unwrap();
        // Version 2 succeeds and version 3 fails: both are rolled back together.
        let broken: &[&str] = &[MIGRATION_1, MIGRATION_2, "CREATE TABLE broken ("];
        let err = migrate(&mut conn, &path, broken).unwrap_err();
        assert!(
            matches!(err, HistoryError::Migrate { version: 3, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("schema version 3"), "{err}");
        drop(conn);
        assert_eq!(user_version(&path), 1);
        assert_eq!(schema_of(&path), before);
        // The file still opens, and upgrades, with the real migrations.
        let history = JobHistory::open(&path).unwrap();
        assert_eq!(history.list(&JobFilter::default()).unwrap().len(), 4);
    }

    #[test]
    fn processes_opening_a_version_1_file_together_migrate_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = v1_file(dir.path());
        const OPENERS: usize = 4;
        let barrier = Arc::new(Barrier::new(OPENERS));
        let handles: Vec<_> = (0..OPENERS)
            .map(|_| {
                let (path, barrier) = (path.clone(), barrier.clone());
                std::thread::spawn(move || -> Result<usize> {
                    barrier.wait();
                    Ok(JobHistory::open(&path)?.list(&JobFilter::default())?.len())
                })
            })
            .collect();
        for handle in handles {
            assert_eq!(handle.join().unwrap().unwrap(), 4);
        }
        assert_eq!(user_version(&path), MIGRATIONS.len() as i64);
    }

    // ---- v2 fields ----

    fn owner() -> JobOwner {
        JobOwner::new(1000, HOST)
    }

    #[test]
    fn sub_tasks_are_numbered_recorded_and_refused_when_out_of_order() {
        let (_dir, history) = history();
        let new = full_job();
        history.start(&new).unwrap();
        let s = |secs: i64| new.start + TimeDelta::seconds(secs);

        let validate = history.start_task(new.id, TASK_VALIDATE, s(1)).unwrap();
        let finished = history
            .finish_task(
                new.id,
                validate,
                TaskOutcome::Completed,
                Some("connected as backup"),
                s(2),
            )
            .unwrap();
        assert_eq!(finished.status(), JobStatus::Completed);
        let dump = history.start_task(new.id, TASK_DUMP, s(2)).unwrap();
        let upload = history.start_task(new.id, TASK_UPLOAD, s(2)).unwrap();
        assert_eq!(
            [validate, dump, upload].map(TaskId::get),
            [1, 2, 3],
            "numbered in start order"
        );

        enum Call {
            Start(&'static str, DateTime<Utc>),
            Finish(TaskId, DateTime<Utc>),
        }
        let cases = [
            (
                Call::Finish(validate, s(3)),
                JobUpdateError::TaskFinished {
                    task: validate,
                    status: JobStatus::Completed,
                },
            ),
            (
                Call::Finish(TaskId::new(99).unwrap(), s(3)),
                JobUpdateError::NoSuchTask {
                    task: TaskId::new(99).unwrap(),
                },
            ),
            (
                Call::Finish(dump, s(1)),
                JobUpdateError::TaskEndBeforeStart {
                    task: dump,
                    start: s(2),
                    end: s(1),
                },
            ),
            (
                Call::Start(TASK_COMMIT, s(-1)),
                JobUpdateError::TaskBeforeJob {
                    job_start: new.start,
                    start: s(-1),
                },
            ),
            (Call::Start("  ", s(3)), JobUpdateError::EmptyTaskName),
        ];
        let before = history.get(new.id).unwrap().unwrap();
        for (call, want) in cases {
            let err = match call {
                Call::Start(name, at) => history.start_task(new.id, name, at).map(|_| ()),
                Call::Finish(task, at) => history
                    .finish_task(new.id, task, TaskOutcome::Failed, Some("x"), at)
                    .map(|_| ()),
            }
            .unwrap_err();
            assert!(
                matches!(&err, HistoryError::Update { id, source } if *id == new.id && *source == want),
                "{err:?}, wanted {want:?}"
            );
            assert_eq!(history.get(new.id).unwrap().unwrap(), before, "{want:?}");
        }

        // A long detail is cut, keeping both ends.
        let long = format!("start{}end", "x".repeat(3 * TASK_DETAIL_LIMIT));
        let dumped = history
            .finish_task(new.id, dump, TaskOutcome::Failed, Some(&long), s(4))
            .unwrap();
        let detail = dumped.detail.clone().unwrap();
        assert!(detail.len() <= TASK_DETAIL_LIMIT, "{}", detail.len());
        assert!(detail.starts_with("start") && detail.ends_with("end"));
        assert!(detail.contains("bytes of output left out"));

        let job = history.get(new.id).unwrap().unwrap();
        let names: Vec<(&str, JobStatus)> = job
            .tasks
            .iter()
            .map(|t| (t.name.as_str(), t.status()))
            .collect();
        assert_eq!(
            names,
            [
                (TASK_VALIDATE, JobStatus::Completed),
                (TASK_DUMP, JobStatus::Failed),
                (TASK_UPLOAD, JobStatus::InProgress),
            ]
        );
        assert_eq!(job.task(dump), Some(&dumped));
        assert_eq!(
            job.task(validate).unwrap().detail.as_deref(),
            Some("connected as backup")
        );

        // Unknown and finished jobs take no tasks.
        assert!(matches!(
            history.start_task(JobId::new(), TASK_DUMP, s(5)),
            Err(HistoryError::NotFound(_))
        ));
        history
            .finish(new.id, &JobOutcome::Cancelled, s(6), 0, 0)
            .unwrap();
        for err in [
            history.start_task(new.id, TASK_COMMIT, s(7)).map(|_| ()),
            history
                .finish_task(new.id, upload, TaskOutcome::Completed, None, s(7))
                .map(|_| ()),
            history.set_script_output(new.id, "late output"),
        ] {
            assert!(
                matches!(
                    err,
                    Err(HistoryError::Update {
                        source: JobUpdateError::JobFinished {
                            status: JobStatus::Cancelled
                        },
                        ..
                    })
                ),
                "{err:?}"
            );
        }
    }

    #[test]
    fn a_job_has_at_most_max_tasks() {
        let (_dir, history) = history();
        let new = full_job();
        history.start(&new).unwrap();
        for _ in 0..MAX_TASKS_PER_JOB {
            history.start_task(new.id, TASK_UPLOAD, new.start).unwrap();
        }
        assert!(matches!(
            history.start_task(new.id, TASK_UPLOAD, new.start),
            Err(HistoryError::Update {
                source: JobUpdateError::TooManyTasks,
                ..
            })
        ));
        assert_eq!(
            history.get(new.id).unwrap().unwrap().tasks.len(),
            MAX_TASKS_PER_JOB
        );
    }

    #[test]
    fn tasks_still_running_end_with_their_job() {
        // (how the job ends, status of the task left running, its detail)
        let cases = [
            (
                JobOutcome::Completed {
                    recovery_point_id: None,
                },
                JobStatus::Completed,
                None,
            ),
            (
                JobOutcome::Failed(JobError::new("UserErrorDumpFailed", "pg_dump exited 1")),
                JobStatus::Failed,
                Some("still running when the job failed with UserErrorDumpFailed"),
            ),
            (
                JobOutcome::Cancelled,
                JobStatus::Cancelled,
                Some("still running when the job was cancelled"),
            ),
        ];
        let (_dir, history) = history();
        for (outcome, status, detail) in cases {
            let new = full_job();
            history.start(&new).unwrap();
            let done = history
                .start_task(new.id, TASK_VALIDATE, new.start)
                .unwrap();
            history
                .finish_task(new.id, done, TaskOutcome::Completed, Some("ok"), new.start)
                .unwrap();
            let open = history.start_task(new.id, TASK_DUMP, new.start).unwrap();
            let end = new.start + TimeDelta::minutes(1);
            let job = history.finish(new.id, &outcome, end, 0, 0).unwrap();
            assert_eq!(history.get(new.id).unwrap().unwrap(), job, "{outcome:?}");
            let first = job.task(done).unwrap();
            assert_eq!(
                (first.status(), first.detail.as_deref()),
                (JobStatus::Completed, Some("ok")),
                "a finished task keeps its end"
            );
            assert_eq!(first.state.end(), Some(new.start));
            let left = job.task(open).unwrap();
            assert_eq!(
                (left.status(), left.detail.as_deref(), left.state.end()),
                (status, detail, Some(end)),
                "{outcome:?}"
            );
        }

        // A job whose process died fails its running task too.
        let new = full_job();
        history.start(&new).unwrap();
        let open = history.start_task(new.id, TASK_UPLOAD, new.start).unwrap();
        let now = new.start + TimeDelta::hours(1);
        let marked = history.mark_interrupted(now, HOST, |_| false).unwrap();
        let job = marked.iter().find(|j| j.id == new.id).unwrap();
        let task = job.task(open).unwrap();
        assert_eq!(task.status(), JobStatus::Failed);
        assert_eq!(task.state.end(), Some(now));
        assert!(
            task.detail
                .as_deref()
                .unwrap()
                .contains(JOB_INTERRUPTED.as_str())
        );
        assert_eq!(history.get(new.id).unwrap().as_ref(), Some(job));
    }

    #[test]
    fn script_runs_have_no_vault_and_keep_their_output() {
        let (dir, history) = history();
        let new = NewJob::script_run("/srv/pgvault/scripts/nightly.rhai", t(2, 0, 0), owner());
        history.start(&new).unwrap();
        history.set_script_output(new.id, "first line\n").unwrap();
        let long = format!("HEAD\n{}\nTAIL", "line of output\n".repeat(10_000));
        history.set_script_output(new.id, &long).unwrap();
        history
            .finish(
                new.id,
                &JobOutcome::Completed {
                    recovery_point_id: None,
                },
                t(2, 0, 5),
                0,
                0,
            )
            .unwrap();

        let job = history.get(new.id).unwrap().unwrap();
        assert_eq!(job.vault(), None);
        assert_eq!(
            job.script_path.as_deref(),
            Some("/srv/pgvault/scripts/nightly.rhai")
        );
        let output = job.script_output.as_deref().unwrap();
        assert!(output.len() <= SCRIPT_OUTPUT_LIMIT, "{}", output.len());
        assert!(output.starts_with("HEAD\n") && output.ends_with("\nTAIL"));
        assert!(output.contains("bytes of output left out"));
        let raw: Option<String> = Connection::open(dir.path().join("jobs.sqlite"))
            .unwrap()
            .query_row(
                "SELECT vault_name FROM jobs WHERE id = ?1",
                [new.id.to_string()],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(raw, None, "stored as NULL, not an empty name");

        // A job on no vault matches filters without a vault only.
        let on_vault = new_job(Operation::ScriptRun, "vault-a", t(1, 0, 0));
        history.start(&on_vault).unwrap();
        let cases: [(JobFilter, &[JobId]); 3] = [
            (JobFilter::default(), &[new.id, on_vault.id]),
            (JobFilter::default().vault("vault-a"), &[on_vault.id]),
            (
                JobFilter::default().operation(Operation::ScriptRun),
                &[new.id, on_vault.id],
            ),
        ];
        for (filter, want) in cases {
            let listed = history.list(&filter).unwrap();
            let got: Vec<JobId> = listed.iter().map(|j| j.id).collect();
            assert_eq!(got, want, "{filter:?}");
            let in_memory: Vec<JobId> = filter.apply(&listed).iter().map(|j| j.id).collect();
            assert_eq!(in_memory, want, "in memory: {filter:?}");
        }
    }

    #[test]
    fn the_latest_run_of_a_script_is_found_by_its_path() {
        let (_dir, history) = history();
        let nightly = "/srv/pgvault/scripts/nightly.rhai";
        assert_eq!(history.latest_script_run(nightly).unwrap(), None);
        for (path, start) in [
            (nightly, t(1, 0, 0)),
            (nightly, t(3, 0, 0)),
            ("/srv/pgvault/scripts/other.rhai", t(4, 0, 0)),
        ] {
            history
                .start(&NewJob::script_run(path, start, owner()))
                .unwrap();
        }
        // A job of another operation at a later time does not count.
        history
            .start(&new_job(Operation::OnDemandBackup, "v", t(5, 0, 0)))
            .unwrap();
        assert_eq!(
            history.latest_script_run(nightly).unwrap(),
            Some(t(3, 0, 0))
        );
        assert_eq!(
            history
                .latest_script_run("/srv/pgvault/scripts/NIGHTLY.rhai")
                .unwrap(),
            None,
            "paths are compared exactly"
        );
    }

    #[test]
    fn scheduled_runs_keep_their_due_time_and_lateness() {
        let (_dir, history) = history();
        let cases = [
            None,
            Some(ScheduledRun {
                due_time: t(2, 0, 0),
                late: false,
            }),
            Some(ScheduledRun {
                due_time: t(2, 0, 0) - TimeDelta::days(3),
                late: true,
            }),
        ];
        for scheduled in cases {
            let mut new = new_job(Operation::ScheduledBackup, "vault-a", t(2, 0, 1));
            new.scheduled = scheduled;
            let started = history.start(&new).unwrap();
            assert_eq!(started.scheduled, scheduled);
            assert_eq!(history.get(new.id).unwrap(), Some(started));
        }
    }

    #[test]
    fn the_summary_counts_jobs_per_status_per_instance() {
        let (_dir, history) = history();
        // (vault, instance, start hour, outcome, late)
        type Spec<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            u32,
            Option<JobStatus>,
            bool,
        );
        let rows: [Spec; 9] = [
            (
                Some("vault-a"),
                Some("db1"),
                1,
                Some(JobStatus::Completed),
                false,
            ),
            (
                Some("vault-a"),
                Some("db1"),
                2,
                Some(JobStatus::Completed),
                true,
            ),
            (
                Some("vault-a"),
                Some("db1"),
                3,
                Some(JobStatus::Failed),
                true,
            ),
            (Some("vault-a"), Some("db2"), 4, None, false),
            (
                Some("vault-b"),
                Some("db1"),
                5,
                Some(JobStatus::Cancelled),
                false,
            ),
            (Some("vault-b"), None, 6, Some(JobStatus::Completed), false),
            (None, None, 7, Some(JobStatus::Failed), false),
            (
                Some("vault-a"),
                Some("db1"),
                8,
                Some(JobStatus::Completed),
                false,
            ),
            (
                Some("vault-a"),
                Some("db2"),
                9,
                Some(JobStatus::Failed),
                false,
            ),
        ];
        for (vault, instance, hour, outcome, late) in rows {
            let mut new = match vault {
                Some(v) => new_job(Operation::ScheduledBackup, v, t(hour, 0, 0)),
                None => NewJob::script_run("report.rhai", t(hour, 0, 0), owner()),
            };
            new.backup_instance_name = instance.map(str::to_owned);
            new.scheduled = Some(ScheduledRun {
                due_time: t(hour, 0, 0),
                late,
            });
            history.start(&new).unwrap();
            let outcome = match outcome {
                None => continue,
                Some(JobStatus::Failed) => JobOutcome::Failed(JobError::new("E", "m")),
                Some(JobStatus::Cancelled) => JobOutcome::Cancelled,
                Some(_) => JobOutcome::Completed {
                    recovery_point_id: None,
                },
            };
            history
                .finish(new.id, &outcome, t(hour, 30, 0), 0, 0)
                .unwrap();
        }

        type Row<'a> = (Option<&'a str>, Option<&'a str>, [u64; 4], u64);
        type Rendered = (Option<String>, Option<String>, [u64; 4], u64);
        let rendered = |rows: &[JobSummaryRow]| -> Vec<Rendered> {
            rows.iter()
                .map(|r| {
                    (
                        r.vault_name.clone(),
                        r.backup_instance_name.clone(),
                        JobStatus::ALL.map(|s| r.counts.get(s)),
                        r.late,
                    )
                })
                .collect()
        };
        // Counts are [InProgress, Completed, Failed, Cancelled]; no vault sorts first.
        let cases: [(JobFilter, &[Row]); 4] = [
            (
                JobFilter::default(),
                &[
                    (None, None, [0, 0, 1, 0], 0),
                    (Some("vault-a"), Some("db1"), [0, 3, 1, 0], 2),
                    (Some("vault-a"), Some("db2"), [1, 0, 1, 0], 0),
                    (Some("vault-b"), None, [0, 1, 0, 0], 0),
                    (Some("vault-b"), Some("db1"), [0, 0, 0, 1], 0),
                ],
            ),
            // The window is half-open and the limit does not cut the counts.
            (
                JobFilter::default()
                    .started_after(t(2, 0, 0))
                    .started_before(t(8, 0, 0))
                    .limit(1),
                &[
                    (None, None, [0, 0, 1, 0], 0),
                    (Some("vault-a"), Some("db1"), [0, 1, 1, 0], 2),
                    (Some("vault-a"), Some("db2"), [1, 0, 0, 0], 0),
                    (Some("vault-b"), None, [0, 1, 0, 0], 0),
                    (Some("vault-b"), Some("db1"), [0, 0, 0, 1], 0),
                ],
            ),
            (
                JobFilter::default()
                    .instance("DB1")
                    .status(JobStatus::Completed),
                &[(Some("vault-a"), Some("db1"), [0, 3, 0, 0], 1)],
            ),
            (JobFilter::default().vault("vault-c"), &[]),
        ];
        for (filter, want) in cases {
            let got = history.summary(&filter).unwrap();
            let want: Vec<_> = want
                .iter()
                .map(|(v, i, c, l)| (v.map(str::to_owned), i.map(str::to_owned), *c, *l))
                .collect();
            assert_eq!(rendered(&got), want, "{filter:?}");
            // The model's summary of the listed jobs says the same.
            let listed = history
                .list(&JobFilter {
                    limit: None,
                    ..filter.clone()
                })
                .unwrap();
            assert_eq!(summarize(&listed), got, "in memory: {filter:?}");
        }
    }

    #[test]
    fn pruning_deletes_finished_jobs_that_ended_before_the_cutoff() {
        let (dir, history) = history();
        let cutoff = t(12, 0, 0);
        // (start, end or None for running, outcome, kept)
        let done = JobOutcome::Completed {
            recovery_point_id: None,
        };
        let failed = JobOutcome::Failed(JobError::new("E", "m"));
        let rows = [
            (t(1, 0, 0), None, &done, true), // running since long ago: never pruned
            (t(1, 0, 0), Some(t(2, 0, 0)), &done, false),
            (t(1, 0, 0), Some(t(11, 59, 59)), &failed, false),
            (t(2, 0, 0), Some(t(3, 0, 0)), &JobOutcome::Cancelled, false),
            (t(11, 0, 0), Some(cutoff), &done, true), // ended at the cutoff: not before it
            (t(11, 0, 0), Some(t(13, 0, 0)), &failed, true), // started before, ended after
            (t(13, 0, 0), Some(t(14, 0, 0)), &done, true),
        ];
        let mut ids = Vec::new();
        for (start, end, outcome, _) in rows {
            let new = new_job(Operation::OnDemandBackup, "vault-a", start);
            history.start(&new).unwrap();
            history.start_task(new.id, TASK_DUMP, start).unwrap();
            if let Some(end) = end {
                history.finish(new.id, outcome, end, 0, 0).unwrap();
            }
            ids.push(new.id);
        }
        let raw = Connection::open(dir.path().join("jobs.sqlite")).unwrap();
        // A sub-task whose job row someone deleted by hand goes too.
        raw.execute(
            "INSERT INTO job_tasks VALUES ('gone', 1, 'Dump', 'InProgress', '2025-06-01T00:00:00Z', NULL, NULL)",
            [],
        )
        .unwrap();
        let task_count = || -> i64 {
            raw.query_row("SELECT COUNT(*) FROM job_tasks", [], |r| r.get(0))
                .unwrap()
        };

        let doomed = rows.iter().filter(|r| !r.3).count();
        assert_eq!(history.prunable(cutoff).unwrap(), doomed);
        assert_eq!(
            history.list(&JobFilter::default()).unwrap().len(),
            rows.len(),
            "a dry run deletes nothing"
        );
        assert_eq!(history.prune(cutoff).unwrap(), doomed);
        for (id, row) in ids.iter().zip(rows) {
            assert_eq!(history.get(*id).unwrap().is_some(), row.3, "{row:?}");
        }
        assert_eq!(task_count(), (rows.len() - doomed) as i64);
        assert_eq!(history.prune(cutoff).unwrap(), 0, "nothing left to prune");
        assert_eq!(history.prunable(cutoff).unwrap(), 0);
    }

    #[test]
    fn the_default_retention_prunes_jobs_older_than_a_year() {
        let now = at("2026-03-01T00:00:00Z");
        assert_eq!(
            retention_cutoff(now, &DEFAULT_JOB_HISTORY_RETENTION),
            at("2025-03-01T00:00:00Z")
        );
    }
}
