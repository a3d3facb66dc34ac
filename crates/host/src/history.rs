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
//! The lifecycle rule (a job leaves `InProgress` once) is the model's, applied through
//! [`Job::finish`] inside that transaction; the `WHERE status = 'InProgress'` on the update and
//! the table's CHECK constraints hold the same line on disk for any other writer.
//!
//! Each row records the process that runs the job (pid and host name). A process that dies
//! mid-job leaves its row `InProgress`; [`JobHistory::mark_interrupted`], run when a host
//! starts, turns those rows into failures with code `JobInterrupted` so that history never
//! shows a job running forever.
//!
//! Nothing here reads the clock: start, end and "now" are parameters, as in the model.
//!
//! # API Boundary: the SQLite schema
//!
//! The file is read by other pgvault versions and by people with `sqlite3`, so its schema is
//! an interface. `PRAGMA user_version` holds the schema version; [`MIGRATIONS`] lists, in
//! order, the SQL that brings a file from version *n* to *n + 1*. A change adds a migration
//! and never edits a released one. A file with a version newer than this build knows is
//! refused rather than guessed at.
//!
//! Version 1, one table `jobs`, one row per job:
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `seq` | INTEGER PRIMARY KEY | insertion order; breaks ties between equal start times |
//! | `id` | TEXT UNIQUE | [`JobId`], lowercase hyphenated UUID |
//! | `operation` | TEXT | [`Operation`] name: `ConfigureBackup`, `OnDemandBackup`, `ScheduledBackup`, `Restore`, `ScriptRun` |
//! | `status` | TEXT | [`JobStatus`] name: `InProgress`, `Completed`, `Failed`, `Cancelled` |
//! | `start_time` | TEXT | UTC, `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (fixed width, so text order is time order) |
//! | `end_time` | TEXT NULL | same format; NULL exactly when `status` is `InProgress` |
//! | `error_code`, `error_message` | TEXT NULL | set exactly when `status` is `Failed` |
//! | `owner_pid` | INTEGER | process id of the pgvault process running the job |
//! | `owner_host` | TEXT | host name of that process |
//! | `vault_name` | TEXT COLLATE NOCASE | vault the job ran against |
//! | `backup_instance_name` | TEXT NULL COLLATE NOCASE | backup instance, if any |
//! | `datasource_name`, `datasource_id` | TEXT NULL | the database and its identifier |
//! | `policy_name`, `policy_rule_name`, `retention_tag` | TEXT NULL | policy, rule and tag that applied |
//! | `is_user_triggered` | INTEGER 0/1 | 0 only for scheduled backups |
//! | `bytes_read` | INTEGER | bytes read from PostgreSQL (or from the vault, for a restore) |
//! | `bytes_stored` | INTEGER | bytes newly stored in the vault |
//! | `recovery_point_id` | TEXT NULL | recovery point made (backup) or read (restore) |
//! | `extended_details` | TEXT | JSON object of string to string, `{}` when empty |
//!
//! Indexes: `start_time`; `(vault_name, start_time)`; `status` where `status = 'InProgress'`.

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

use pgvault_core::model::job::*;

/// How long a write waits for another process's write to finish before giving up. Job
/// history writes are a handful of rows, so five seconds means something is wrong.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema migrations, oldest first: entry *i* takes a file from version *i* to *i + 1*.
pub const MIGRATIONS: &[&str] = &[MIGRATION_1];

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

const COLUMNS: &str = "id, operation, status, start_time, end_time, error_code, error_message, \
     owner_pid, owner_host, vault_name, backup_instance_name, datasource_name, datasource_id, \
     policy_name, policy_rule_name, retention_tag, is_user_triggered, bytes_read, bytes_stored, \
     recovery_point_id, extended_details";

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
        "the job history {path} has schema version {found}, newer than version {supported} that this \
         pgvault understands; upgrade pgvault to read it"
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
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
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(|source| HistoryError::CreateDir {
                path: parent.to_path_buf(),
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
        migrate(&mut conn, &path)?;
        Ok(Self {
            path,
            conn: Mutex::new(conn),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock was held cannot leave the connection half-written: every
        // write is one statement or a transaction that rolls back when dropped.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a job as started, `InProgress` since `new.start`.
    pub fn start(&self, new: &NewJob) -> Result<Job> {
        let job = Job::start(new);
        let details = serde_json::to_string(&job.extended_details)
            .expect("a map of strings always serializes");
        let inserted = self.conn().execute(
            &format!(
                "INSERT INTO jobs ({COLUMNS}) VALUES \
                 (?1, ?2, ?3, ?4, NULL, NULL, NULL, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, 0, 0, ?15, ?16)"
            ),
            params![
                job.id.to_string(),
                job.operation.as_str(),
                job.status().as_str(),
                db_time(job.state.start()),
                job.owner.pid,
                job.owner.host,
                job.vault_name,
                job.backup_instance_name,
                job.datasource_name,
                job.datasource_id,
                job.policy_name,
                job.policy_rule_name,
                job.retention_tag,
                job.is_user_triggered,
                job.recovery_point_id,
                details,
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
    }

    /// Ends a running job with its outcome and final byte counts. Refused, with the row left
    /// as it was, if the job already finished or `end` is before its start.
    pub fn finish(
        &self,
        id: JobId,
        outcome: &JobOutcome,
        end: DateTime<Utc>,
        bytes_read: u64,
        bytes_stored: u64,
    ) -> Result<Job> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut job = get_job(&tx, id)?.ok_or(HistoryError::NotFound(id))?;
        job.finish(outcome, end, bytes_read, bytes_stored)
            .map_err(|source| HistoryError::Transition { id, source })?;
        write_end(&tx, &job)?;
        tx.commit()?;
        Ok(job)
    }

    /// Records how much a running job has read and stored so far.
    pub fn update_progress(&self, id: JobId, bytes_read: u64, bytes_stored: u64) -> Result<()> {
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
    }

    pub fn get(&self, id: JobId) -> Result<Option<Job>> {
        get_job(&self.conn(), id)
    }

    /// Jobs matching `filter`, newest start first (the most recently recorded first among
    /// equal start times). Agrees with [`JobFilter::matches`].
    pub fn list(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        let mut sql = format!("SELECT {COLUMNS} FROM jobs WHERE 1 = 1");
        let mut args: Vec<SqlValue> = Vec::new();
        let mut condition = |clause: &str, value: SqlValue| {
            args.push(value);
            sql.push_str(&format!(" AND {clause} ?{}", args.len()));
        };
        // vault_name and backup_instance_name are COLLATE NOCASE, so `=` ignores ASCII case
        // exactly as JobFilter::matches does.
        if let Some(vault) = &filter.vault {
            condition("vault_name =", SqlValue::Text(vault.clone()));
        }
        if let Some(instance) = &filter.instance {
            condition("backup_instance_name =", SqlValue::Text(instance.clone()));
        }
        if let Some(status) = filter.status {
            condition("status =", SqlValue::Text(status.as_str().into()));
        }
        if let Some(op) = filter.operation {
            condition("operation =", SqlValue::Text(op.as_str().into()));
        }
        if let Some(t) = filter.started_after {
            condition("start_time >=", SqlValue::Text(db_time(t)));
        }
        if let Some(t) = filter.started_before {
            condition("start_time <", SqlValue::Text(db_time(t)));
        }
        sql.push_str(" ORDER BY start_time DESC, seq DESC");
        if let Some(limit) = filter.limit {
            args.push(SqlValue::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
            sql.push_str(&format!(" LIMIT ?{}", args.len()));
        }

        let conn = self.conn();
        let mut stmt = conn.prepare(&sql)?;
        let raws = stmt
            .query_map(rusqlite::params_from_iter(args), RawJob::from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raws.into_iter().map(RawJob::into_job).collect()
    }

    /// Fails every job on `local_host` still marked `InProgress` whose process `pid_alive`
    /// says is gone, ending it at `now`; returns the jobs it changed.
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
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let running = {
            let mut stmt = tx.prepare(&format!(
                "SELECT {COLUMNS} FROM jobs WHERE status = 'InProgress' AND owner_host = ?1 ORDER BY seq"
            ))?;
            stmt.query_map([local_host], RawJob::from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?
        };
        let mut marked = Vec::new();
        for raw in running {
            let mut job = raw.into_job()?;
            if pid_alive(job.owner.pid) {
                continue;
            }
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
    }
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

/// Brings the file's schema up to the latest version.
fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let latest = MIGRATIONS.len() as i64;
    let version = |conn: &Connection| -> rusqlite::Result<i64> {
        conn.pragma_query_value(None, "user_version", |row| row.get(0))
    };
    // The common case, an up-to-date file, needs no write lock.
    if version(conn)? == latest {
        return Ok(());
    }
    // IMMEDIATE so that two processes opening a new file at once do not both migrate: the
    // second waits, then sees the version the first wrote. user_version is written inside the
    // same transaction, so a failed migration leaves the file at its old version.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found = version(&tx)?;
    if found > latest {
        return Err(HistoryError::NewerSchema {
            path: path.to_path_buf(),
            found,
            supported: latest,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
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
    tx.commit()?;
    Ok(())
}

fn get_job(conn: &Connection, id: JobId) -> Result<Option<Job>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"),
        [id.to_string()],
        RawJob::from_row,
    )
    .optional()?
    .map(RawJob::into_job)
    .transpose()
}

/// Writes a finished job's end state; the status guard makes the database refuse a second
/// finish even from a writer that skipped the model's check.
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
    if changed == 1 {
        Ok(())
    } else {
        // Unreachable under the IMMEDIATE lock the callers hold after reading the row as
        // InProgress; reported rather than ignored in case that ever stops being true.
        Err(HistoryError::NotInProgress {
            id: job.id,
            status: job.status(),
        })
    }
}

/// Times are stored as fixed-width UTC text so that comparing text compares time.
fn db_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

fn db_bytes(n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| HistoryError::ByteCountTooLarge(n))
}

/// A row as SQLite types, before it is parsed into a [`Job`]. Reading and parsing are split so
/// that a bad value becomes a [`HistoryError::Corrupt`] naming the job, not a bare SQLite error.
struct RawJob {
    id: String,
    operation: String,
    status: String,
    start_time: String,
    end_time: Option<String>,
    error_code: Option<String>,
    error_message: Option<String>,
    owner_pid: i64,
    owner_host: String,
    vault_name: String,
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
}

impl RawJob {
    /// Reads the columns in the order of [`COLUMNS`].
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            operation: row.get(1)?,
            status: row.get(2)?,
            start_time: row.get(3)?,
            end_time: row.get(4)?,
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
        })
    }

    fn into_job(self) -> Result<Job> {
        let corrupt = |detail: String| HistoryError::Corrupt {
            id: self.id.clone(),
            detail,
        };
        let time = |column: &str, text: &str| {
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| corrupt(format!("{column} `{text}`: {e}")))
        };
        let bytes = |column: &str, n: i64| {
            u64::try_from(n).map_err(|_| corrupt(format!("{column} is negative ({n})")))
        };

        let id: JobId = self.id.parse().map_err(|e| corrupt(format!("{e}")))?;
        let operation: Operation = self
            .operation
            .parse()
            .map_err(|e| corrupt(format!("{e}")))?;
        let status: JobStatus = self.status.parse().map_err(|e| corrupt(format!("{e}")))?;
        let start = time("start_time", &self.start_time)?;
        let end = match (&self.end_time, status) {
            (None, JobStatus::InProgress) => None,
            (Some(end), s) if s.is_finished() => Some(time("end_time", end)?),
            _ => return Err(corrupt(format!("end_time does not fit status {status}"))),
        };
        let state = match (status, end) {
            (JobStatus::InProgress, _) => JobState::InProgress { start },
            (JobStatus::Completed, Some(end)) => JobState::Completed { start, end },
            (JobStatus::Cancelled, Some(end)) => JobState::Cancelled { start, end },
            (JobStatus::Failed, Some(end)) => match (&self.error_code, &self.error_message) {
                (Some(code), Some(message)) => JobState::Failed {
                    start,
                    end,
                    error: JobError::new(code.clone(), message.clone()),
                },
                _ => return Err(corrupt("a failed job has no error code or message".into())),
            },
            (_, None) => unreachable!("finished statuses were given an end above"),
        };
        let owner_pid = u32::try_from(self.owner_pid)
            .map_err(|_| corrupt(format!("owner_pid {} is not a process id", self.owner_pid)))?;
        let extended_details = serde_json::from_str(&self.extended_details).map_err(|e| {
            corrupt(format!(
                "extended_details is not a JSON map of strings: {e}"
            ))
        })?;

        Ok(Job {
            id,
            operation,
            state,
            owner: JobOwner::new(owner_pid, self.owner_host.clone()),
            vault_name: self.vault_name.clone(),
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
            extended_details,
        })
    }
}

/// This machine's host name, as recorded in `owner_host`. It only has to be stable across
/// restarts of the same machine, so a fixed fallback is acceptable where none can be read.
pub fn local_host_name() -> String {
    let from_kernel = fs::read_to_string("/proc/sys/kernel/hostname").ok();
    from_kernel
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The owner to record for jobs this process runs.
pub fn current_owner() -> JobOwner {
    JobOwner::new(std::process::id(), local_host_name())
}

/// Whether process `pid` is still running on this machine, for [`JobHistory::mark_interrupted`].
///
/// On Linux this reads `/proc`, treating a zombie (exited, not yet reaped) as gone. Elsewhere
/// there is no way to ask without `unsafe` or a new dependency, so it answers `true`: leaving
/// a dead job `InProgress` is a smaller harm than failing a live one.
pub fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            // The state letter follows the command name, which is in parentheses and may
            // itself contain spaces and parentheses, hence the last ')'.
            Ok(stat) => !matches!(
                stat.rfind(')')
                    .and_then(|i| stat[i + 1..].split_whitespace().next()),
                Some("Z" | "X")
            ),
            Err(e) => e.kind() != io::ErrorKind::NotFound,
        }
    } else {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, TimeZone};
    use std::collections::BTreeMap;
    use std::sync::{Arc, Barrier};

    fn t(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 6, 1, h, m, s).unwrap()
    }

    const HOST: &str = "db-host-1";

    fn new_job(op: Operation, vault: &str, start: DateTime<Utc>) -> NewJob {
        NewJob::new(op, vault, start, JobOwner::new(1000, HOST))
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
                "UserErrorMissingDBPermissions",
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
        let cases: [(JobFilter, &[usize]); 14] = [
            (JobFilter::default(), &[4, 3, 2, 1, 0]),
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
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.sqlite");
        drop(JobHistory::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let err = JobHistory::open(&path).unwrap_err();
        assert!(
            matches!(
                err,
                HistoryError::NewerSchema {
                    found: 99,
                    supported: 1,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("upgrade pgvault"));
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
        ];
        for sql in statements {
            assert!(raw.execute(sql, []).is_err(), "{sql}");
        }
        assert_eq!(history.get(new.id).unwrap(), Some(Job::start(&new)));
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
}
