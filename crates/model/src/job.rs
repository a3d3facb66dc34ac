//! Jobs: the record pgvault keeps of every operation it runs (configure protection, a backup,
//! a restore, a script), and the Azure Backup JSON shape that record is shown in.
//!
//! A job's lifecycle lives in [`JobState`], whose variants carry exactly the timestamps that
//! are valid in that state (after pueue's `TaskStatus`): a running job has a start and no end,
//! a failed one has an end and an error, and nothing else can be built. The only transition is
//! [`JobState::finish`], out of `InProgress`, once; the SQLite history applies the same rule
//! through it so that memory and disk cannot disagree about what is legal.
//!
//! A job may have sub-tasks ([`JobTask`]: validate, dump, upload, commit), shown as Azure's
//! `extendedInfo.subTasks`; they start and finish only while their job runs, and a job that
//! finishes ends the ones still running. A scheduled job records the occurrence it stands for
//! and whether it ran late ([`ScheduledRun`]); a `ScriptRun` job its script and, capped by
//! [`cap_text`], what the script printed. [`summarize`] is the jobs dashboard (counts per
//! status per instance) and [`retention_cutoff`] the instant before which history is pruned.
//!
//! This module is pure: no IO and no clock reads. Every timestamp is a parameter, which is what
//! lets the host replay history and the tests pin time.
//!
//! Names follow Azure Backup's job resource (`Microsoft.DataProtection/backupVaults/backupJobs`)
//! so that `pgvault job show` prints what `az dataprotection job show` prints: `operation` and
//! `operationCategory` are Azure's ([`AzureOperation`]: both backups are `Backup`, told apart
//! by `isUserTriggered`), pgvault's own finer operation (`OnDemandBackup`, `RetentionSweep`,
//! ...) is kept beside them in `pgvaultOperation`, `duration` is an ISO 8601 duration as the
//! SDKs read it, and a restore's `extendedInfo` names its recovery point and destination. One
//! deliberate difference: `status` carries pgvault's [`JobStatus`] (`InProgress`,
//! `Completed`, ...). Azure's REST API spells status as a free string (`Started`,
//! `Succeeded`), which [`JobStatus`] parses.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use thiserror::Error;
use uuid::Uuid;

use crate::code::ErrorCode;
use crate::duration::IsoDuration;
use crate::instance::BackupInstanceProperties;
use crate::resource;

/// The Azure resource type of a job, as it appears in `type`.
/// The location pgvault gives what it does not know the Azure region of: its vaults, and a
/// job's datasource.
pub const LOCAL_LOCATION: &str = "local";

pub const AZURE_JOB_TYPE: &str = "Microsoft.DataProtection/backupVaults/backupJobs";

/// The Azure datasource type a job reports when it recorded none (every job before the
/// instance's type was recorded, and jobs on no instance): single server's, the only type
/// pgvault reported then. A job on an instance reports the instance's type, recorded under
/// [`DATASOURCE_TYPE_DETAIL`].
pub const AZURE_DATASOURCE_TYPE: &str = "Microsoft.DBforPostgreSQL/servers/databases";

/// Flexible server's datasource type, as an instance created with
/// `--datasource-type AzureDatabaseForPostgreSQLFlexibleServer` carries it.
const FLEXIBLE_DATASOURCE_TYPE: &str = "Microsoft.DBforPostgreSQL/flexibleServers/databases";

/// The error code a job gets when the process running it disappeared before it finished.
pub const JOB_INTERRUPTED: ErrorCode = ErrorCode::JobInterrupted;

/// A value from outside (CLI argument, script, JSON) that is not a valid job field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JobParseError {
    #[error(
        "`{input}` is not a job id: expected a UUID such as 3c60cb49-63e8-4b21-b9bd-26277b3fdfae"
    )]
    JobId { input: String },
    #[error(
        "`{input}` is not a job operation: expected one of {}, or one of Azure's: {}",
        Operation::ALL.map(Operation::as_str).join(", "),
        AzureOperation::ALL.map(AzureOperation::as_str).join(", ")
    )]
    Operation { input: String },
    #[error(
        "`{input}` is not a job status: expected InProgress (or Started), Completed (or \
         Succeeded), Failed, or Cancelled"
    )]
    Status { input: String },
    #[error(
        "`{input}` is not a .NET TimeSpan: expected [-][d.]hh:mm:ss[.fffffff], such as 00:02:11.9724387"
    )]
    TimeSpan { input: String },
    #[error(
        "`{input}` is not an ISO 8601 duration of days and times: expected P[nD][T[nH][nM][n[.f]S]], such as PT2M11.972S"
    )]
    IsoDuration { input: String },
}

/// A transition the job lifecycle does not allow.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TransitionError {
    #[error(
        "the job already finished as {status}; a job leaves InProgress only once, so start a new job to run the operation again"
    )]
    AlreadyFinished { status: JobStatus },
    #[error(
        "the end time {end} is before the job's start time {start}; pass the time the job actually ended"
    )]
    EndBeforeStart {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
}

/// A job's identity: a UUID, printed in its hyphenated lowercase form as Azure does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(Uuid);

impl JobId {
    /// A fresh random id. Randomness is not IO and not the clock, so the model may make one.
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }

    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for JobId {
    type Err = JobParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim())
            .map(Self)
            .map_err(|_| JobParseError::JobId {
                input: s.to_owned(),
            })
    }
}

/// What a job does. These are pgvault's operation names, finer than Azure's: Azure's REST API
/// folds the two backups into `Backup` and has no retention sweep or script, which
/// [`Operation::azure`] maps to the nearest name Azure has.
///
/// The names are stored in the job history, so a variant is never renamed; a new one needs a
/// schema version (an older pgvault would fail to read the row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub enum Operation {
    ConfigureBackup,
    OnDemandBackup,
    ScheduledBackup,
    Restore,
    /// A Rhai script: `pgvault run`, a drop-in file, or a recurring runbook.
    ScriptRun,
    /// One pass of the retention sweep over a vault: archive moves, expiries, garbage.
    RetentionSweep,
    /// One recovery point deleted, by the sweep (expired) or by a user.
    DeleteRecoveryPoint,
    /// One recovery point moved to the archive tier.
    MoveToArchive,
    /// A restore made to prove a recovery point restores, then thrown away.
    RestoreDrill,
    /// A recovery point copied back from the archive tier to the vault tier for a while, so
    /// it can be restored (schema v3).
    Rehydrate,
    /// A backup instance deleted (Azure's "stop protection and delete data"): with soft delete
    /// on, moved to the soft-deleted instances with its recovery points kept; the job's id is
    /// its `deleteActivityID`.
    DeleteBackupInstance,
    /// A soft-deleted backup instance brought back (protection stopped, its points kept).
    UndeleteBackupInstance,
}

impl Operation {
    pub const ALL: [Operation; 12] = [
        Operation::ConfigureBackup,
        Operation::OnDemandBackup,
        Operation::ScheduledBackup,
        Operation::Restore,
        Operation::ScriptRun,
        Operation::RetentionSweep,
        Operation::DeleteRecoveryPoint,
        Operation::MoveToArchive,
        Operation::RestoreDrill,
        Operation::Rehydrate,
        Operation::DeleteBackupInstance,
        Operation::UndeleteBackupInstance,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::ConfigureBackup => "ConfigureBackup",
            Operation::OnDemandBackup => "OnDemandBackup",
            Operation::ScheduledBackup => "ScheduledBackup",
            Operation::Restore => "Restore",
            Operation::ScriptRun => "ScriptRun",
            Operation::RetentionSweep => "RetentionSweep",
            Operation::DeleteRecoveryPoint => "DeleteRecoveryPoint",
            Operation::MoveToArchive => "MoveToArchive",
            Operation::RestoreDrill => "RestoreDrill",
            Operation::Rehydrate => "Rehydrate",
            Operation::DeleteBackupInstance => "DeleteBackupInstance",
            Operation::UndeleteBackupInstance => "UndeleteBackupInstance",
        }
    }

    /// Azure's `operation` for this one: the nearest name Azure's jobs use. Both backups are
    /// `Backup` (`isUserTriggered` tells them apart), a drill is a `Restore` (into a scratch
    /// database), moves between the vault and archive tiers are `Tiering`, and what Azure
    /// does out of sight (retention, deletion of a recovery point) or has no job for (a
    /// script) is `Management`.
    pub fn azure(self) -> AzureOperation {
        match self {
            Operation::ConfigureBackup => AzureOperation::ConfigureBackup,
            Operation::OnDemandBackup | Operation::ScheduledBackup => AzureOperation::Backup,
            Operation::Restore | Operation::RestoreDrill => AzureOperation::Restore,
            Operation::MoveToArchive | Operation::Rehydrate => AzureOperation::Tiering,
            Operation::ScriptRun
            | Operation::RetentionSweep
            | Operation::DeleteRecoveryPoint
            | Operation::DeleteBackupInstance
            | Operation::UndeleteBackupInstance => AzureOperation::Management,
        }
    }

    /// Azure's `operationCategory`.
    pub fn category(self) -> OperationCategory {
        self.azure().category()
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Operation {
    type Err = JobParseError;

    /// Case-insensitive, because scripts and CLI flags are typed by people and Azure's own
    /// clients are loose about case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        Operation::ALL
            .into_iter()
            .find(|op| op.as_str().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| JobParseError::Operation {
                input: s.to_owned(),
            })
    }
}

impl TryFrom<String> for Operation {
    type Error = JobParseError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// Azure's `operation` of a job, as its job JSON shows it; [`Operation::azure`] maps each of
/// pgvault's operations to one. Shown, never stored: the job history keeps [`Operation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AzureOperation {
    ConfigureBackup,
    Backup,
    Restore,
    /// A recovery point moved between the vault and archive tiers, either way.
    Tiering,
    /// Work on the vault itself: retention, deletions, scripts.
    Management,
}

impl AzureOperation {
    pub const ALL: [AzureOperation; 5] = [
        AzureOperation::ConfigureBackup,
        AzureOperation::Backup,
        AzureOperation::Restore,
        AzureOperation::Tiering,
        AzureOperation::Management,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AzureOperation::ConfigureBackup => "ConfigureBackup",
            AzureOperation::Backup => "Backup",
            AzureOperation::Restore => "Restore",
            AzureOperation::Tiering => "Tiering",
            AzureOperation::Management => "Management",
        }
    }

    /// Azure's `operationCategory` (Backup, Restore, Tiering or Management, as the SDK's
    /// `AzureBackupJob` documents it); configuring protection is management.
    pub fn category(self) -> OperationCategory {
        match self {
            AzureOperation::Backup => OperationCategory::Backup,
            AzureOperation::Restore => OperationCategory::Restore,
            AzureOperation::Tiering => OperationCategory::Tiering,
            AzureOperation::ConfigureBackup | AzureOperation::Management => {
                OperationCategory::Management
            }
        }
    }

    /// pgvault's operations this one stands for.
    pub fn operations(self) -> impl Iterator<Item = Operation> {
        Operation::ALL
            .into_iter()
            .filter(move |op| op.azure() == self)
    }
}

impl fmt::Display for AzureOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Azure's `operationCategory`: the coarse kind of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OperationCategory {
    Backup,
    Restore,
    /// Between the vault and archive tiers.
    Tiering,
    Management,
}

impl OperationCategory {
    pub fn as_str(self) -> &'static str {
        match self {
            OperationCategory::Backup => "Backup",
            OperationCategory::Restore => "Restore",
            OperationCategory::Tiering => "Tiering",
            OperationCategory::Management => "Management",
        }
    }
}

/// The operation a job list asks for: one of pgvault's ([`Operation`]), or one of Azure's
/// names, which stands for every operation Azure shows under it (`Backup` is both backups).
/// A name both use (`Restore`, `ConfigureBackup`) means pgvault's, as it always has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperationFilter {
    Is(Operation),
    Azure(AzureOperation),
}

impl OperationFilter {
    pub fn matches(self, operation: Operation) -> bool {
        match self {
            OperationFilter::Is(op) => op == operation,
            OperationFilter::Azure(azure) => operation.azure() == azure,
        }
    }

    /// Every operation the filter lets through.
    pub fn operations(self) -> Vec<Operation> {
        match self {
            OperationFilter::Is(op) => vec![op],
            OperationFilter::Azure(azure) => azure.operations().collect(),
        }
    }
}

impl From<Operation> for OperationFilter {
    fn from(op: Operation) -> Self {
        OperationFilter::Is(op)
    }
}

impl FromStr for OperationFilter {
    type Err = JobParseError;

    /// Case-insensitive; pgvault's names first, then Azure's.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(op) = s.parse::<Operation>() {
            return Ok(OperationFilter::Is(op));
        }
        let wanted = s.trim();
        AzureOperation::ALL
            .into_iter()
            .find(|op| op.as_str().eq_ignore_ascii_case(wanted))
            .map(OperationFilter::Azure)
            .ok_or_else(|| JobParseError::Operation {
                input: s.to_owned(),
            })
    }
}

impl fmt::Display for OperationCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The status of a job without its timestamps: what filters and listings talk about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub enum JobStatus {
    InProgress,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 4] = [
        JobStatus::InProgress,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::InProgress => "InProgress",
            JobStatus::Completed => "Completed",
            JobStatus::Failed => "Failed",
            JobStatus::Cancelled => "Cancelled",
        }
    }

    pub fn is_finished(self) -> bool {
        self != JobStatus::InProgress
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = JobParseError;

    /// Accepts pgvault's names and the free strings Azure returns for the same states
    /// (`Started` from the REST API, `Succeeded`, `In Progress` from the portal, the American
    /// `Canceled`), case-insensitively, so JSON copied from Azure loads unchanged.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let folded: String = s
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '_' && *c != '-')
            .collect::<String>()
            .to_ascii_lowercase();
        match folded.as_str() {
            "inprogress" | "started" | "running" => Ok(JobStatus::InProgress),
            "completed" | "succeeded" => Ok(JobStatus::Completed),
            "failed" => Ok(JobStatus::Failed),
            "cancelled" | "canceled" => Ok(JobStatus::Cancelled),
            _ => Err(JobParseError::Status {
                input: s.to_owned(),
            }),
        }
    }
}

impl TryFrom<String> for JobStatus {
    type Error = JobParseError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// Why a job failed, in Azure's `errorDetails` shape. Codes follow Azure's
/// (`UserErrorMissingDBPermissions`, ...); the message says what to do. Secrets never go here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    /// Stored and printed by its name; a name this version does not know (an older row)
    /// reads back as [`ErrorCode::Other`], as it was written.
    pub code: ErrorCode,
    pub message: String,
}

impl JobError {
    /// `code` is an [`ErrorCode`], or a stored name read back.
    pub fn new(code: impl Into<ErrorCode>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// How a job ended: the argument of [`JobState::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// Finished as asked. A backup names the recovery point it made; only a completed job can,
    /// because a recovery point exists only once all its data is durable.
    Completed {
        recovery_point_id: Option<String>,
    },
    Failed(JobError),
    Cancelled,
}

impl JobOutcome {
    pub fn status(&self) -> JobStatus {
        match self {
            JobOutcome::Completed { .. } => JobStatus::Completed,
            JobOutcome::Failed(_) => JobStatus::Failed,
            JobOutcome::Cancelled => JobStatus::Cancelled,
        }
    }
}

/// Where a job is in its life, with exactly the timestamps valid there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status")]
pub enum JobState {
    InProgress {
        start: DateTime<Utc>,
    },
    Completed {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
    Failed {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        error: JobError,
    },
    Cancelled {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
}

impl JobState {
    /// The job's state without its error: the same status and timestamps, which a
    /// [`TaskState`] holds, so that both kinds answer `status`, `start` and `end` one way.
    pub fn without_error(&self) -> TaskState {
        match *self {
            JobState::InProgress { start } => TaskState::InProgress { start },
            JobState::Completed { start, end } => TaskState::Completed { start, end },
            JobState::Failed { start, end, .. } => TaskState::Failed { start, end },
            JobState::Cancelled { start, end } => TaskState::Cancelled { start, end },
        }
    }

    pub fn status(&self) -> JobStatus {
        self.without_error().status()
    }

    pub fn start(&self) -> DateTime<Utc> {
        self.without_error().start()
    }

    pub fn end(&self) -> Option<DateTime<Utc>> {
        self.without_error().end()
    }

    pub fn error(&self) -> Option<&JobError> {
        match self {
            JobState::Failed { error, .. } => Some(error),
            _ => None,
        }
    }

    /// How long a finished job took; `None` while it runs (use [`JobState::elapsed`] with the
    /// current time for that, since this module does not read the clock).
    pub fn duration(&self) -> Option<TimeDelta> {
        self.end().map(|end| end - self.start())
    }

    /// How long the job has run as of `now`: its duration once finished.
    pub fn elapsed(&self, now: DateTime<Utc>) -> TimeDelta {
        self.duration().unwrap_or_else(|| now - self.start())
    }

    /// The one transition: out of `InProgress`, at `end`, to the outcome's state.
    pub fn finish(
        &self,
        outcome: &JobOutcome,
        end: DateTime<Utc>,
    ) -> Result<Self, TransitionError> {
        let JobState::InProgress { start } = *self else {
            return Err(TransitionError::AlreadyFinished {
                status: self.status(),
            });
        };
        if end < start {
            return Err(TransitionError::EndBeforeStart { start, end });
        }
        Ok(match outcome {
            JobOutcome::Completed { .. } => JobState::Completed { start, end },
            JobOutcome::Failed(error) => JobState::Failed {
                start,
                end,
                error: error.clone(),
            },
            JobOutcome::Cancelled => JobState::Cancelled { start, end },
        })
    }
}

/// Which process runs a job, so that a host restarting after a crash can tell a job that is
/// still running elsewhere from one whose process is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOwner {
    pub pid: u32,
    pub host: String,
}

impl JobOwner {
    pub fn new(pid: u32, host: impl Into<String>) -> Self {
        Self {
            pid,
            host: host.into(),
        }
    }
}

/// When a job stands for an occurrence of a schedule (a scheduled backup, a recurring
/// runbook): the occurrence it was due at, and whether it ran late.
///
/// `late` is the scheduler's judgement, not `start > due`: every scheduled job starts a little
/// after its occurrence, and only one that waited because the host was down counts as late.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledRun {
    pub due_time: DateTime<Utc>,
    pub late: bool,
}

/// Sub-task names the service records for a backup, in the order they run. Names are free
/// text (Azure shows whatever the service wrote), so other operations may use their own.
pub const TASK_VALIDATE: &str = "Validate";
pub const TASK_DUMP: &str = "Dump";
pub const TASK_UPLOAD: &str = "Upload";
pub const TASK_COMMIT: &str = "Commit";

/// At most this many sub-tasks per job: a job has a handful, so more is a loop gone wrong,
/// and refusing it keeps a job's row set and its JSON small.
pub const MAX_TASKS_PER_JOB: usize = 256;

/// A sub-task's free-text detail is cut to this many bytes (see [`cap_text`]).
pub const TASK_DETAIL_LIMIT: usize = 4 * 1024;

/// A script's captured output is cut to this many bytes (see [`cap_text`]): enough for any
/// report a person reads, small enough that a year of hourly runbooks stays a small file.
pub const SCRIPT_OUTPUT_LIMIT: usize = 64 * 1024;

/// A sub-task's number within its job: 1, 2, 3... in the order the tasks started, which is
/// Azure's `taskId`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(u32);

impl TaskId {
    pub fn new(n: u32) -> Option<Self> {
        (n >= 1).then_some(Self(n))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a sub-task is, with exactly the timestamps valid there (as [`JobState`]; a failed
/// task's reason is its detail, the job carries the error code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status")]
pub enum TaskState {
    InProgress {
        start: DateTime<Utc>,
    },
    Completed {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
    Failed {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
    Cancelled {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
}

impl TaskState {
    pub fn status(&self) -> JobStatus {
        match self {
            TaskState::InProgress { .. } => JobStatus::InProgress,
            TaskState::Completed { .. } => JobStatus::Completed,
            TaskState::Failed { .. } => JobStatus::Failed,
            TaskState::Cancelled { .. } => JobStatus::Cancelled,
        }
    }

    pub fn start(&self) -> DateTime<Utc> {
        match self {
            TaskState::InProgress { start }
            | TaskState::Completed { start, .. }
            | TaskState::Failed { start, .. }
            | TaskState::Cancelled { start, .. } => *start,
        }
    }

    pub fn end(&self) -> Option<DateTime<Utc>> {
        match self {
            TaskState::InProgress { .. } => None,
            TaskState::Completed { end, .. }
            | TaskState::Failed { end, .. }
            | TaskState::Cancelled { end, .. } => Some(*end),
        }
    }

    /// The state `outcome` leads to from a running task, ending at `end`; the caller has
    /// checked that the task runs and that `end` is not before its start.
    fn ended(start: DateTime<Utc>, outcome: TaskOutcome, end: DateTime<Utc>) -> Self {
        match outcome {
            TaskOutcome::Completed => TaskState::Completed { start, end },
            TaskOutcome::Failed => TaskState::Failed { start, end },
            TaskOutcome::Cancelled => TaskState::Cancelled { start, end },
        }
    }
}

/// How a sub-task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskOutcome {
    Completed,
    Failed,
    Cancelled,
}

impl TaskOutcome {
    pub fn status(self) -> JobStatus {
        match self {
            TaskOutcome::Completed => JobStatus::Completed,
            TaskOutcome::Failed => JobStatus::Failed,
            TaskOutcome::Cancelled => JobStatus::Cancelled,
        }
    }
}

/// One step of a job (validate, dump, upload, commit), shown as an element of Azure's
/// `extendedInfo.subTasks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobTask {
    pub id: TaskId,
    pub name: String,
    pub state: TaskState,
    /// What the step did or why it failed, at most [`TASK_DETAIL_LIMIT`] bytes.
    pub detail: Option<String>,
}

impl JobTask {
    pub fn status(&self) -> JobStatus {
        self.state.status()
    }

    /// The task as an element of Azure's `extendedInfo.subTasks`: `taskId`, `taskName`,
    /// `taskStatus` (pgvault's status names, as the job's `status`) and the times and detail
    /// in `additionalDetails`.
    pub fn to_azure_json(&self) -> Value {
        let mut details = BTreeMap::new();
        details.insert("StartTime", azure_time(self.state.start()));
        if let Some(end) = self.state.end() {
            details.insert("EndTime", azure_time(end));
            details.insert("Duration", format_iso_duration(end - self.state.start()));
        }
        if let Some(detail) = &self.detail {
            details.insert("Detail", detail.clone());
        }
        json!({
            "additionalDetails": details,
            "taskId": self.id.get(),
            "taskName": self.name,
            "taskStatus": self.status().as_str(),
        })
    }
}

/// A change to a running job (a sub-task, its output) that the lifecycle does not allow.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JobUpdateError {
    #[error("the job already finished as {status}; its sub-tasks and output are final")]
    JobFinished { status: JobStatus },
    #[error("the job has no sub-task {task}; start_task returns the number to finish")]
    NoSuchTask { task: TaskId },
    #[error("sub-task {task} already finished as {status}; a task finishes once")]
    TaskFinished { task: TaskId, status: JobStatus },
    #[error(
        "sub-task {task} cannot end at {end}, before it started at {start}; pass the time it \
         actually ended"
    )]
    TaskEndBeforeStart {
        task: TaskId,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
    #[error(
        "a sub-task cannot start at {start}, before its job started at {job_start}; pass the \
         time it actually started"
    )]
    TaskBeforeJob {
        job_start: DateTime<Utc>,
        start: DateTime<Utc>,
    },
    #[error("the job already has {MAX_TASKS_PER_JOB} sub-tasks, the most a job may have")]
    TooManyTasks,
    #[error("a sub-task needs a name, such as {TASK_DUMP}")]
    EmptyTaskName,
}

/// `text` cut to at most `limit` bytes, on character boundaries, keeping its head and its
/// tail (where a script says what it is doing, and where it says how it ended) around a note
/// saying how much was left out. Text within the limit comes back unchanged. Limits below a
/// few hundred bytes leave room for the note alone.
pub fn cap_text(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    // The note's length depends on the number in it; the dropped count can only shrink as
    // the kept parts grow, so measuring with the total length is an upper bound.
    let note_for =
        |dropped: usize| format!("\n[... pgvault: {dropped} bytes of output left out ...]\n");
    let budget = limit.saturating_sub(note_for(text.len()).len());
    let head_end = floor_char_boundary(text, budget / 4);
    let tail_start = ceil_char_boundary(text, text.len() - (budget - budget / 4));
    let dropped = tail_start - head_end;
    format!(
        "{}{}{}",
        &text[..head_end],
        note_for(dropped),
        &text[tail_start..]
    )
}

/// Text capped as [`cap_text`] caps it, gathered piece by piece in bounded memory (about
/// twice `limit` plus a quarter): what a script prints, however much it prints. `text()` is
/// exactly `cap_text` of everything pushed.
#[derive(Debug, Clone)]
pub struct CappedText {
    limit: usize,
    /// The start of the text, up to a quarter of the limit (`cap_text` keeps less).
    head: String,
    /// The latest text, between one and two limits' worth once anything was dropped.
    tail: String,
    /// Bytes dropped between `head` and `tail`.
    dropped: usize,
}

impl CappedText {
    pub fn new(limit: usize) -> Self {
        CappedText {
            limit,
            head: String::new(),
            tail: String::new(),
            dropped: 0,
        }
    }

    pub fn push(&mut self, mut text: &str) {
        let head_max = self.limit / 4;
        if self.tail.is_empty() && self.head.len() < head_max {
            let fits = floor_char_boundary(text, (head_max - self.head.len()).min(text.len()));
            self.head.push_str(&text[..fits]);
            text = &text[fits..];
        }
        self.tail.push_str(text);
        if self.tail.len() > 2 * self.limit {
            let cut = ceil_char_boundary(&self.tail, self.tail.len() - self.limit);
            self.dropped += cut;
            self.tail.drain(..cut);
        }
    }

    pub fn push_line(&mut self, text: &str) {
        self.push(text);
        self.push("\n");
    }

    /// The bytes held (for the tests of its bound).
    pub fn held(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    /// [`cap_text`] of everything pushed.
    pub fn text(&self) -> String {
        if self.dropped == 0 {
            return cap_text(&format!("{}{}", self.head, self.tail), self.limit);
        }
        // As `cap_text` cuts the whole text: its head lies within `head` and its tail within
        // `tail`, which hold more than it keeps of either.
        let total = self.head.len() + self.dropped + self.tail.len();
        let note_for =
            |dropped: usize| format!("\n[... pgvault: {dropped} bytes of output left out ...]\n");
        let budget = self.limit.saturating_sub(note_for(total).len());
        let head_end = floor_char_boundary(&self.head, (budget / 4).min(self.head.len()));
        let keep_tail = (budget - budget / 4).min(self.tail.len());
        let tail_start = ceil_char_boundary(&self.tail, self.tail.len() - keep_tail);
        let dropped = total - head_end - (self.tail.len() - tail_start);
        format!(
            "{}{}{}",
            &self.head[..head_end],
            note_for(dropped),
            &self.tail[tail_start..]
        )
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// Everything known about a job when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub id: JobId,
    pub operation: Operation,
    pub start: DateTime<Utc>,
    pub owner: JobOwner,
    /// The vault the job acts on; `None` for a job that acts on none (a drop-in script).
    pub vault_name: Option<String>,
    pub backup_instance_name: Option<String>,
    pub datasource_name: Option<String>,
    pub datasource_id: Option<String>,
    pub policy_name: Option<String>,
    pub policy_rule_name: Option<String>,
    pub retention_tag: Option<String>,
    pub is_user_triggered: bool,
    /// The recovery point a restore reads from; a backup's is known only when it completes.
    pub recovery_point_id: Option<String>,
    /// The occurrence a scheduled job stands for.
    pub scheduled: Option<ScheduledRun>,
    /// The script a `ScriptRun` job runs, as the user named it.
    pub script_path: Option<String>,
    pub extended_details: BTreeMap<String, String>,
}

impl NewJob {
    /// Records the backup instance the job acts on as Azure's job JSON shows it: its
    /// database, datasource id and type, and friendly name (`server\\database`). The
    /// instance's name is set apart: a job may name an instance that cannot be read.
    pub fn describe_instance(&mut self, instance: &BackupInstanceProperties) {
        let source = &instance.data_source_info;
        self.datasource_name = Some(source.resource_name.clone());
        self.datasource_id = Some(source.resource_id.clone());
        self.extended_details
            .insert(FRIENDLY_NAME_DETAIL.into(), instance.friendly_name.clone());
        self.extended_details.insert(
            DATASOURCE_TYPE_DETAIL.into(),
            source.datasource_type.clone(),
        );
    }

    /// A job on a vault with a fresh id and nothing optional set. `is_user_triggered`
    /// defaults to what the operation implies: only a scheduled backup starts without someone
    /// asking for it.
    pub fn new(
        operation: Operation,
        vault_name: impl Into<String>,
        start: DateTime<Utc>,
        owner: JobOwner,
    ) -> Self {
        Self {
            vault_name: Some(vault_name.into()),
            ..Self::without_vault(operation, start, owner)
        }
    }

    /// A job that acts on no vault in particular, such as a script that may touch several.
    pub fn without_vault(operation: Operation, start: DateTime<Utc>, owner: JobOwner) -> Self {
        Self {
            id: JobId::new(),
            operation,
            start,
            owner,
            vault_name: None,
            backup_instance_name: None,
            datasource_name: None,
            datasource_id: None,
            policy_name: None,
            policy_rule_name: None,
            retention_tag: None,
            is_user_triggered: operation != Operation::ScheduledBackup,
            recovery_point_id: None,
            scheduled: None,
            script_path: None,
            extended_details: BTreeMap::new(),
        }
    }

    /// A `ScriptRun` job for the script at `script_path`, on no vault.
    pub fn script_run(
        script_path: impl Into<String>,
        start: DateTime<Utc>,
        owner: JobOwner,
    ) -> Self {
        Self {
            script_path: Some(script_path.into()),
            ..Self::without_vault(Operation::ScriptRun, start, owner)
        }
    }
}

/// One job: an operation, its state, what it acted on and what it moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub id: JobId,
    pub operation: Operation,
    pub state: JobState,
    pub owner: JobOwner,
    /// The vault the job acted on, or empty for a job on no vault; read it with
    /// [`Job::vault`]. It stays a `String` while callers move from
    /// `to_azure_json(..)` to [`Job::azure_json`], then becomes an
    /// `Option` (the job history already stores NULL).
    pub vault_name: String,
    pub backup_instance_name: Option<String>,
    pub datasource_name: Option<String>,
    pub datasource_id: Option<String>,
    pub policy_name: Option<String>,
    pub policy_rule_name: Option<String>,
    pub retention_tag: Option<String>,
    pub is_user_triggered: bool,
    /// Bytes read from PostgreSQL (the `pg_dump` stream), or from the vault for a restore.
    pub bytes_read: u64,
    /// Bytes newly written to the vault after deduplication and compression.
    pub bytes_stored: u64,
    pub recovery_point_id: Option<String>,
    /// The occurrence a scheduled job stands for, and whether it ran late.
    #[serde(default)]
    pub scheduled: Option<ScheduledRun>,
    /// The script a `ScriptRun` job ran.
    #[serde(default)]
    pub script_path: Option<String>,
    /// What the script printed, capped to [`SCRIPT_OUTPUT_LIMIT`] bytes.
    #[serde(default)]
    pub script_output: Option<String>,
    /// The job's steps, in the order they started.
    #[serde(default)]
    pub tasks: Vec<JobTask>,
    /// Small free-form facts shown in Azure's `additionalDetails` (the restore target, ...).
    pub extended_details: BTreeMap<String, String>,
}

impl Job {
    /// The job as it is the moment it starts: `InProgress`, nothing read or stored yet.
    pub fn start(new: &NewJob) -> Self {
        Self {
            id: new.id,
            operation: new.operation,
            state: JobState::InProgress { start: new.start },
            owner: new.owner.clone(),
            vault_name: new.vault_name.clone().unwrap_or_default(),
            backup_instance_name: new.backup_instance_name.clone(),
            datasource_name: new.datasource_name.clone(),
            datasource_id: new.datasource_id.clone(),
            policy_name: new.policy_name.clone(),
            policy_rule_name: new.policy_rule_name.clone(),
            retention_tag: new.retention_tag.clone(),
            is_user_triggered: new.is_user_triggered,
            bytes_read: 0,
            bytes_stored: 0,
            recovery_point_id: new.recovery_point_id.clone(),
            scheduled: new.scheduled,
            script_path: new.script_path.clone(),
            script_output: None,
            tasks: Vec::new(),
            extended_details: new.extended_details.clone(),
        }
    }

    /// The vault the job acted on, if any.
    pub fn vault(&self) -> Option<&str> {
        Some(self.vault_name.as_str()).filter(|v| !v.is_empty())
    }

    pub fn status(&self) -> JobStatus {
        self.state.status()
    }

    pub fn duration(&self) -> Option<TimeDelta> {
        self.state.duration()
    }

    pub fn task(&self, id: TaskId) -> Option<&JobTask> {
        self.tasks.iter().find(|t| t.id == id)
    }

    /// Ends the job with its final byte counts. Nothing changes if the transition is refused.
    ///
    /// Sub-tasks still running end with the job, so that no step of a finished job shows as
    /// running forever: completed with a completed job, otherwise failed or cancelled with it,
    /// their detail saying so.
    pub fn finish(
        &mut self,
        outcome: &JobOutcome,
        end: DateTime<Utc>,
        bytes_read: u64,
        bytes_stored: u64,
    ) -> Result<(), TransitionError> {
        self.state = self.state.finish(outcome, end)?;
        self.bytes_read = bytes_read;
        self.bytes_stored = bytes_stored;
        if let JobOutcome::Completed {
            recovery_point_id: Some(rp),
        } = outcome
        {
            self.recovery_point_id = Some(rp.clone());
        }
        let (task_outcome, note) = match outcome {
            JobOutcome::Completed { .. } => (TaskOutcome::Completed, None),
            JobOutcome::Failed(error) => (
                TaskOutcome::Failed,
                Some(format!(
                    "still running when the job failed with {}",
                    error.code
                )),
            ),
            JobOutcome::Cancelled => (
                TaskOutcome::Cancelled,
                Some("still running when the job was cancelled".to_owned()),
            ),
        };
        for task in &mut self.tasks {
            if let TaskState::InProgress { start } = task.state {
                // A task started after the job's end only if the clock stepped back; it then
                // ends when it started rather than before.
                task.state = TaskState::ended(start, task_outcome, end.max(start));
                if task.detail.is_none() {
                    task.detail = note.clone();
                }
            }
        }
        Ok(())
    }

    /// Starts a sub-task called `name` at `start` and returns its number.
    pub fn start_task(
        &mut self,
        name: &str,
        start: DateTime<Utc>,
    ) -> Result<TaskId, JobUpdateError> {
        self.check_running()?;
        let name = name.trim();
        if name.is_empty() {
            return Err(JobUpdateError::EmptyTaskName);
        }
        if self.tasks.len() >= MAX_TASKS_PER_JOB {
            return Err(JobUpdateError::TooManyTasks);
        }
        let job_start = self.state.start();
        if start < job_start {
            return Err(JobUpdateError::TaskBeforeJob { job_start, start });
        }
        let next = self.tasks.iter().map(|t| t.id.get()).max().unwrap_or(0) + 1;
        let id = TaskId(next);
        self.tasks.push(JobTask {
            id,
            name: name.to_owned(),
            state: TaskState::InProgress { start },
            detail: None,
        });
        Ok(id)
    }

    /// Ends the running sub-task `id` at `end`, with an optional detail (what it did, or why
    /// it failed) cut to [`TASK_DETAIL_LIMIT`]. Nothing changes if this is refused.
    pub fn finish_task(
        &mut self,
        id: TaskId,
        outcome: TaskOutcome,
        detail: Option<&str>,
        end: DateTime<Utc>,
    ) -> Result<&JobTask, JobUpdateError> {
        self.check_running()?;
        let task = self
            .tasks
            .iter_mut()
            .find(|t| t.id == id)
            .ok_or(JobUpdateError::NoSuchTask { task: id })?;
        let TaskState::InProgress { start } = task.state else {
            return Err(JobUpdateError::TaskFinished {
                task: id,
                status: task.status(),
            });
        };
        if end < start {
            return Err(JobUpdateError::TaskEndBeforeStart {
                task: id,
                start,
                end,
            });
        }
        task.state = TaskState::ended(start, outcome, end);
        if let Some(detail) = detail {
            task.detail = Some(cap_text(detail, TASK_DETAIL_LIMIT));
        }
        Ok(task)
    }

    /// Records what the job's script printed, replacing what was recorded before, cut to
    /// [`SCRIPT_OUTPUT_LIMIT`]. Only while the job runs: a finished job's record is final.
    pub fn set_script_output(&mut self, output: &str) -> Result<(), JobUpdateError> {
        self.check_running()?;
        self.script_output = Some(cap_text(output, SCRIPT_OUTPUT_LIMIT));
        Ok(())
    }

    fn check_running(&self) -> Result<(), JobUpdateError> {
        match self.status() {
            JobStatus::InProgress => Ok(()),
            status => Err(JobUpdateError::JobFinished { status }),
        }
    }

    /// [`Job::to_azure_json`] under the job's own vault, in the host's `subscription` and the
    /// vault's resource `group` ([`resource::VaultRef::id`]); a job on no vault is addressed
    /// under the provider in the subscription
    /// (`/subscriptions/<sub>/providers/Microsoft.DataProtection/backupJobs/<id>`).
    pub fn azure_json(
        &self,
        subscription: &resource::SubscriptionId,
        group: &resource::ResourceGroup,
    ) -> Value {
        match self.vault() {
            Some(vault) => self.to_azure_json(
                &resource::VaultRef::new(subscription.clone(), group.clone(), vault).id(),
            ),
            None => self.to_azure_json(&resource::no_vault_prefix(subscription)),
        }
    }

    /// What an operation that started this job answers (`adhoc-backup`, `restore trigger`,
    /// the Rhai API's equivalents): [`Job::azure_json`] with, at the top level, Azure's
    /// `OperationJobExtendedInfo` (`jobId`, the job's name, and its `objectType`), which is
    /// all Azure's adhoc backup and restore answer and what az prints, so a script written
    /// against az finds `jobId` where it looks.
    pub fn operation_json(
        &self,
        subscription: &resource::SubscriptionId,
        group: &resource::ResourceGroup,
    ) -> Value {
        let mut v = self.azure_json(subscription, group);
        v["jobId"] = json!(self.id.to_string());
        v["objectType"] = json!("OperationJobExtendedInfo");
        v
    }

    /// The job as Azure's REST API shows it (an element of `Jobs_List`'s `value`).
    ///
    /// `vault_id_prefix` is the vault's resource id, e.g.
    /// `/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.DataProtection/backupVaults/<name>`
    /// for a vault mirrored in Azure, or whatever stable path a local vault uses; the job, its
    /// backup instance and its policy are addressed beneath it as Azure addresses them.
    /// Properties pgvault cannot know (the datasource's region, or its subscription when the
    /// datasource id is not an Azure one) are `null` rather than missing, so a script written
    /// against Azure finds every key it expects.
    pub fn to_azure_json(&self, vault_id_prefix: &str) -> Value {
        let vault_id = vault_id_prefix.trim_end_matches('/');
        let job_id = self.id.to_string();
        let source_id = self.datasource_id.as_deref();

        let mut props = Map::new();
        // Azure's activity id correlates a job with the request that started it; the job id is
        // pgvault's nearest equivalent and is also what Azure repeats as `TaskId`.
        props.insert("activityID".into(), json!(job_id));
        // Azure names an instance `<server>-<db>-<guid>` and shows it as `<server>\\<db>`;
        // the service records that friendly name among the job's details when it knows it.
        props.insert(
            "backupInstanceFriendlyName".into(),
            json!(
                self.extended_details
                    .get(FRIENDLY_NAME_DETAIL)
                    .or(self.backup_instance_name.as_ref())
            ),
        );
        props.insert(
            "backupInstanceId".into(),
            json!(
                self.backup_instance_name
                    .as_ref()
                    .map(|bi| format!("{vault_id}/backupInstances/{bi}"))
            ),
        );
        props.insert("dataSourceId".into(), json!(self.datasource_id));
        // The SDK requires a string; pgvault knows no Azure region, and its vaults are in
        // `local` (as `backupVaults` shows them).
        props.insert("dataSourceLocation".into(), json!(LOCAL_LOCATION));
        props.insert("dataSourceName".into(), json!(self.datasource_name));
        props.insert(
            "dataSourceSetName".into(),
            json!(source_id.and_then(|id| {
                arm_segment(id, "servers").or_else(|| arm_segment(id, "flexibleServers"))
            })),
        );
        props.insert("dataSourceType".into(), json!(self.datasource_type()));
        props.insert(
            "duration".into(),
            // ISO 8601, as the REST spec types it (`format: duration`) and the SDKs parse it
            // (Python's with isodate, which refuses a .NET TimeSpan). Azure reports a running
            // job's duration as zero, not as time elapsed so far.
            json!(format_iso_duration(
                self.duration().unwrap_or(TimeDelta::zero())
            )),
        );
        if let Some(end) = self.state.end() {
            props.insert("endTime".into(), json!(azure_time(end)));
        }
        if let Some(error) = self.state.error() {
            props.insert(
                "errorDetails".into(),
                json!([{ "code": error.code, "message": error.message }]),
            );
        }
        let mut extended = json!({
            "additionalDetails": self.additional_details(),
            "dataTransferredInBytes": self.bytes_stored,
        });
        // Optional in Azure's schema; left out when empty so a job without steps (every job
        // recorded before sub-tasks existed) prints as it always did.
        if !self.tasks.is_empty() {
            extended["subTasks"] = self.tasks.iter().map(JobTask::to_azure_json).collect();
        }
        // A restore's recovery point and where it went, as Azure's restore jobs show them
        // (`RestoreJobRecoveryPointDetails`). The target is restored to the same point.
        if self.operation.azure() == AzureOperation::Restore {
            if let Some(rp) = &self.recovery_point_id {
                let point = json!({
                    "recoveryPointID": rp,
                    "recoveryPointTime": self.extended_details.get(RECOVERY_POINT_TIME_DETAIL),
                });
                extended["sourceRecoverPoint"] = point.clone();
                extended["targetRecoverPoint"] = point;
            }
            if let Some(destination) = RESTORE_DESTINATION_DETAILS
                .iter()
                .find_map(|key| self.extended_details.get(*key))
            {
                extended["recoveryDestination"] = json!(destination);
            }
        }
        props.insert("extendedInfo".into(), extended);
        props.insert("isUserTriggered".into(), json!(self.is_user_triggered));
        props.insert("operation".into(), json!(self.operation.azure().as_str()));
        props.insert(
            "operationCategory".into(),
            json!(self.operation.category().as_str()),
        );
        // pgvault's own, finer operation: not Azure's, so a client that knows only Azure's
        // fields ignores it, while scripts and tables can still tell a scheduled backup from
        // an on-demand one, or a drill from a restore.
        props.insert("pgvaultOperation".into(), json!(self.operation.as_str()));
        props.insert(
            "policyId".into(),
            json!(
                self.policy_name
                    .as_ref()
                    .map(|p| format!("{vault_id}/backupPolicies/{p}"))
            ),
        );
        props.insert("policyName".into(), json!(self.policy_name));
        props.insert("progressEnabled".into(), json!(false));
        props.insert(
            "sourceResourceGroup".into(),
            // An Azure datasource's own group; a `postgres://` one is the host's, in its
            // vault's group (the SDK requires a string).
            json!(
                source_id
                    .and_then(|id| arm_segment(id, "resourceGroups"))
                    .or_else(|| arm_segment(vault_id, "resourceGroups"))
            ),
        );
        props.insert(
            "sourceSubscriptionID".into(),
            json!(
                source_id
                    .and_then(|id| arm_segment(id, "subscriptions"))
                    .or_else(|| arm_segment(vault_id, "subscriptions"))
            ),
        );
        props.insert("startTime".into(), json!(azure_time(self.state.start())));
        props.insert("status".into(), json!(self.status().as_str()));
        props.insert(
            "subscriptionId".into(),
            json!(arm_segment(vault_id, "subscriptions")),
        );
        props.insert("supportedActions".into(), json!([]));
        props.insert("vaultName".into(), json!(self.vault()));

        json!({
            "id": format!("{vault_id}/backupJobs/{job_id}"),
            "name": job_id,
            "type": AZURE_JOB_TYPE,
            "properties": props,
        })
    }

    /// The ARM type of the job's datasource (`dataSourceType`): the instance's, as the job
    /// recorded it. A job recorded without it (older pgvault, or a job on no instance) has
    /// flexible server's type when its datasource is an Azure id under `flexibleServers`,
    /// and [`AZURE_DATASOURCE_TYPE`] otherwise, as before.
    pub fn datasource_type(&self) -> &str {
        if let Some(recorded) = self.extended_details.get(DATASOURCE_TYPE_DETAIL) {
            return recorded;
        }
        match &self.datasource_id {
            Some(id) if arm_segment(id, "flexibleServers").is_some() => FLEXIBLE_DATASOURCE_TYPE,
            _ => AZURE_DATASOURCE_TYPE,
        }
    }

    /// Azure's `extendedInfo.additionalDetails`: a flat string map. The typed fields are
    /// written last so a free-form detail can never masquerade as, say, `BytesStored`.
    fn additional_details(&self) -> BTreeMap<String, String> {
        let mut details = self.extended_details.clone();
        details.insert("TaskId".into(), self.id.to_string());
        if let Some(rule) = &self.policy_rule_name {
            details.insert("PolicyRuleName".into(), rule.clone());
        }
        if let Some(tag) = &self.retention_tag {
            details.insert("RetentionTag".into(), tag.clone());
        }
        details.insert("BytesRead".into(), self.bytes_read.to_string());
        details.insert("BytesStored".into(), self.bytes_stored.to_string());
        if let Some(rp) = &self.recovery_point_id {
            details.insert("RecoveryPointId".into(), rp.clone());
        }
        if let Some(run) = &self.scheduled {
            details.insert("ScheduledTime".into(), azure_time(run.due_time));
            details.insert("Late".into(), run.late.to_string());
        }
        if let Some(path) = &self.script_path {
            details.insert("ScriptPath".into(), path.clone());
        }
        if let Some(output) = &self.script_output {
            details.insert("ScriptOutput".into(), output.clone());
        }
        details
    }
}

/// The value after `/<key>/` in an Azure resource id (keys compare case-insensitively, as
/// Azure's do), or `None` when the id has no such segment.
fn arm_segment<'a>(resource_id: &'a str, key: &str) -> Option<&'a str> {
    let mut parts = resource_id.split('/');
    while let Some(part) = parts.next() {
        if part.eq_ignore_ascii_case(key) {
            return parts.next().filter(|v| !v.is_empty());
        }
    }
    None
}

/// The extended detail that carries the time of the recovery point a restore reads (RFC 3339),
/// shown as `extendedInfo.sourceRecoverPoint.recoveryPointTime`.
pub const RECOVERY_POINT_TIME_DETAIL: &str = "RecoveryPointTime";

/// The extended details that name a restore's destination (a database's datasource id, a
/// Blob container, a folder), shown as `extendedInfo.recoveryDestination`: the first present.
const RESTORE_DESTINATION_DETAILS: [&str; 3] = [
    "RestoreTarget",
    "RestoreTargetContainer",
    "RestoreTargetFolder",
];

/// The extended detail that carries a backup instance's friendly name (`server\\db`).
pub const FRIENDLY_NAME_DETAIL: &str = "BackupInstanceFriendlyName";

/// The extended detail that carries a backup instance's datasource type
/// (`Microsoft.DBforPostgreSQL/flexibleServers/databases`), shown as `dataSourceType`. A
/// detail rather than a column, so the job history's schema stays as it is and every row
/// older pgvault wrote reads as it did.
pub const DATASOURCE_TYPE_DETAIL: &str = "DataSourceType";

/// A timestamp as Azure writes one: UTC, seven fractional digits (.NET ticks), `Z`.
pub fn azure_time(t: DateTime<Utc>) -> String {
    // A leap second shows up as nanoseconds past 1e9; clamp rather than print eight digits.
    let ticks = (t.timestamp_subsec_nanos() / 100).min(9_999_999);
    format!("{}.{ticks:07}Z", t.format("%Y-%m-%dT%H:%M:%S"))
}

const TICKS_PER_SECOND: i64 = 10_000_000;
const TICKS_PER_DAY: i64 = 86_400 * TICKS_PER_SECOND;

/// A duration as a .NET TimeSpan in its invariant ("c") format, which is how Azure writes
/// job durations: `[-][d.]hh:mm:ss[.fffffff]`, with the day part and the fraction only when
/// non-zero. Precision is a tick (100 ns); anything finer is truncated.
pub fn format_timespan(d: TimeDelta) -> String {
    // Nanoseconds in an i128 so that TimeDelta's full range cannot overflow.
    let nanos = i128::from(d.num_seconds()) * 1_000_000_000 + i128::from(d.subsec_nanos());
    let sign = if nanos < 0 { "-" } else { "" };
    let ticks = nanos.unsigned_abs() / 100;
    let (per_day, per_second) = (TICKS_PER_DAY as u128, TICKS_PER_SECOND as u128);
    let days = ticks / per_day;
    let rest = ticks % per_day;
    let secs = rest / per_second;
    let frac = rest % per_second;
    let mut out = String::from(sign);
    if days > 0 {
        out.push_str(&format!("{days}."));
    }
    out.push_str(&format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    ));
    if frac > 0 {
        out.push_str(&format!(".{frac:07}"));
    }
    out
}

/// A duration in ISO 8601 as Azure's REST API types job durations (`format: duration`) and
/// .NET's `XmlConvert` writes them: `PT2M11.9724387S`, `P1DT2H`, `PT0S` for zero. Days are the
/// largest unit (a day is 24 hours here, never a calendar day), seconds keep up to seven
/// fractional digits (a tick) without trailing zeros, and a negative duration starts with `-`.
pub fn format_iso_duration(d: TimeDelta) -> String {
    let nanos = i128::from(d.num_seconds()) * 1_000_000_000 + i128::from(d.subsec_nanos());
    let ticks = nanos.unsigned_abs() / 100;
    let (per_day, per_second) = (TICKS_PER_DAY as u128, TICKS_PER_SECOND as u128);
    let days = ticks / per_day;
    let rest = ticks % per_day;
    let secs = rest / per_second;
    let frac = rest % per_second;
    let (hours, minutes, seconds) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::from(if nanos < 0 { "-P" } else { "P" });
    if days > 0 {
        out.push_str(&format!("{days}D"));
    }
    if hours > 0 || minutes > 0 || seconds > 0 || frac > 0 || days == 0 {
        out.push('T');
        if hours > 0 {
            out.push_str(&format!("{hours}H"));
        }
        if minutes > 0 {
            out.push_str(&format!("{minutes}M"));
        }
        if seconds > 0 || frac > 0 || (hours == 0 && minutes == 0) {
            out.push_str(&seconds.to_string());
            if frac > 0 {
                let digits = format!("{frac:07}");
                out.push('.');
                out.push_str(digits.trim_end_matches('0'));
            }
            out.push('S');
        }
    }
    out
}

/// Parses what [`format_iso_duration`] writes (and any `P[nD][T[nH][nM][n[.f]S]]`, weeks
/// too), for reading a job's `duration` back; years and months have no fixed length and are
/// refused.
pub fn parse_iso_duration(s: &str) -> Result<TimeDelta, JobParseError> {
    let err = || JobParseError::IsoDuration {
        input: s.to_owned(),
    };
    let trimmed = s.trim();
    let (negative, body) = match trimmed.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, trimmed),
    };
    let body = body
        .strip_prefix('P')
        .or_else(|| body.strip_prefix('p'))
        .ok_or_else(err)?;
    if body.is_empty() {
        return Err(err());
    }
    let (date, time) = match body.split_once(['T', 't']) {
        Some((d, t)) if !t.is_empty() => (d, Some(t)),
        Some(_) => return Err(err()),
        None => (body, None),
    };
    let mut total = TimeDelta::zero();
    let mut add = |number: &str, unit: char, in_time: bool| -> Result<(), JobParseError> {
        let (whole, frac) = number.split_once(['.', ',']).unwrap_or((number, ""));
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || !(frac.is_empty() || digits(frac) && frac.len() <= 7) {
            return Err(err());
        }
        let n: i64 = whole.parse().map_err(|_| err())?;
        let seconds_per = match (unit.to_ascii_uppercase(), in_time) {
            ('W', false) => 7 * 86_400,
            ('D', false) => 86_400,
            ('H', true) => 3_600,
            ('M', true) => 60,
            ('S', true) => 1,
            _ => return Err(err()),
        };
        if !frac.is_empty() && seconds_per != 1 {
            return Err(err());
        }
        let whole = n
            .checked_mul(seconds_per)
            .and_then(TimeDelta::try_seconds)
            .ok_or_else(err)?;
        let ticks: i64 = if frac.is_empty() {
            0
        } else {
            frac.parse::<i64>().map_err(|_| err())? * 10_i64.pow(7 - frac.len() as u32)
        };
        total = total
            .checked_add(&whole)
            .and_then(|t| t.checked_add(&TimeDelta::nanoseconds(ticks * 100)))
            .ok_or_else(err)?;
        Ok(())
    };
    for (part, in_time) in [(date, false), (time.unwrap_or(""), true)] {
        let mut number = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' || c == ',' {
                number.push(c);
            } else {
                add(&number, c, in_time)?;
                number.clear();
            }
        }
        if !number.is_empty() {
            return Err(err());
        }
    }
    Ok(if negative { -total } else { total })
}

/// Parses a .NET TimeSpan in the "c" format that [`format_timespan`] writes (one to seven
/// fractional digits), as Azure returns in job `duration`.
pub fn parse_timespan(s: &str) -> Result<TimeDelta, JobParseError> {
    let err = || JobParseError::TimeSpan {
        input: s.to_owned(),
    };
    let trimmed = s.trim();
    let (negative, body) = match trimmed.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, trimmed),
    };
    let number = |part: &str, max: Option<i64>| -> Result<i64, JobParseError> {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let n: i64 = part.parse().map_err(|_| err())?;
        match max {
            Some(max) if n > max => Err(err()),
            _ => Ok(n),
        }
    };

    let mut fields = body.split(':');
    let (Some(first), Some(minutes), Some(last), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(err());
    };
    let (days, hours) = match first.split_once('.') {
        Some((d, h)) => (number(d, Some(10_675_199))?, number(h, Some(23))?),
        None => (0, number(first, Some(23))?),
    };
    let minutes = number(minutes, Some(59))?;
    let (seconds, ticks) = match last.split_once('.') {
        Some((sec, frac)) => {
            if frac.len() > 7 {
                return Err(err());
            }
            let scale = 10_i64.pow(7 - frac.len() as u32);
            (number(sec, Some(59))?, number(frac, None)? * scale)
        }
        None => (number(last, Some(59))?, 0),
    };
    let total_seconds = ((days * 24 + hours) * 60 + minutes) * 60 + seconds;
    let delta = TimeDelta::try_seconds(total_seconds).ok_or_else(err)?
        + TimeDelta::nanoseconds(ticks * 100);
    Ok(if negative { -delta } else { delta })
}

/// Which jobs to list. Every field narrows; the default matches every job. Vault and instance
/// names compare case-insensitively, as Azure resource names do. The start-time window is
/// half-open (`started_after <= start < started_before`) so adjacent windows never overlap.
/// A job on no vault matches only a filter without a vault.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub vault: Option<String>,
    pub instance: Option<String>,
    pub status: Option<JobStatus>,
    pub operation: Option<OperationFilter>,
    pub started_after: Option<DateTime<Utc>>,
    pub started_before: Option<DateTime<Utc>>,
    /// At most this many jobs, newest first.
    pub limit: Option<usize>,
    /// Skip this many of the newest first (a list's later pages; only with `limit`).
    pub offset: usize,
}

impl JobFilter {
    pub fn vault(mut self, vault: impl Into<String>) -> Self {
        self.vault = Some(vault.into());
        self
    }

    pub fn instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    pub fn status(mut self, status: JobStatus) -> Self {
        self.status = Some(status);
        self
    }

    pub fn operation(mut self, operation: impl Into<OperationFilter>) -> Self {
        self.operation = Some(operation.into());
        self
    }

    pub fn started_after(mut self, t: DateTime<Utc>) -> Self {
        self.started_after = Some(t);
        self
    }

    pub fn started_before(mut self, t: DateTime<Utc>) -> Self {
        self.started_before = Some(t);
        self
    }

    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Skips the `offset` newest (with a limit: a later page).
    pub fn offset(mut self, offset: usize) -> Self {
        self.offset = offset;
        self
    }

    /// Whether `job` passes every condition except `limit`, which applies to a whole list.
    /// Stores that cannot filter natively use this; SQLite's must agree with it.
    pub fn matches(&self, job: &Job) -> bool {
        let same = |want: &Option<String>, have: Option<&str>| match want {
            None => true,
            Some(w) => have.is_some_and(|h| h.eq_ignore_ascii_case(w)),
        };
        let start = job.state.start();
        same(&self.vault, job.vault())
            && same(&self.instance, job.backup_instance_name.as_deref())
            && self.status.is_none_or(|s| s == job.status())
            && self.operation.is_none_or(|op| op.matches(job.operation))
            && self.started_after.is_none_or(|t| start >= t)
            && self.started_before.is_none_or(|t| start < t)
    }

    /// Applies the filter to jobs in memory: matching ones, newest first, at most `limit`.
    pub fn apply<'a>(&self, jobs: impl IntoIterator<Item = &'a Job>) -> Vec<&'a Job> {
        let mut out: Vec<&Job> = jobs.into_iter().filter(|j| self.matches(j)).collect();
        out.sort_by_key(|j| std::cmp::Reverse(j.state.start()));
        if let Some(limit) = self.limit {
            out = out.into_iter().skip(self.offset).take(limit).collect();
        }
        out
    }
}

/// How many jobs are in each status: a row of the jobs dashboard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusCounts {
    counts: [u64; 4],
}

impl StatusCounts {
    fn slot(status: JobStatus) -> usize {
        JobStatus::ALL
            .iter()
            .position(|s| *s == status)
            .expect("ALL lists every status")
    }

    pub fn get(&self, status: JobStatus) -> u64 {
        self.counts[Self::slot(status)]
    }

    pub fn add(&mut self, status: JobStatus, n: u64) {
        self.counts[Self::slot(status)] += n;
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// One row of the jobs dashboard: the jobs of one backup instance (or of no instance) in one
/// vault (or in none), counted per status, and how many of them ran late.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSummaryRow {
    pub vault_name: Option<String>,
    pub backup_instance_name: Option<String>,
    pub counts: StatusCounts,
    pub late: u64,
}

/// The jobs dashboard over `jobs`: a row per vault and instance, ordered by vault then
/// instance (case-insensitively, a missing name first), as the SQLite history computes it.
/// Names group case-insensitively and show as first met.
pub fn summarize<'a>(jobs: impl IntoIterator<Item = &'a Job>) -> Vec<JobSummaryRow> {
    let fold = |name: Option<&str>| name.map(str::to_ascii_lowercase);
    let mut rows: BTreeMap<(Option<String>, Option<String>), JobSummaryRow> = BTreeMap::new();
    for job in jobs {
        let instance = job.backup_instance_name.as_deref();
        let row = rows
            .entry((fold(job.vault()), fold(instance)))
            .or_insert_with(|| JobSummaryRow {
                vault_name: job.vault().map(str::to_owned),
                backup_instance_name: instance.map(str::to_owned),
                counts: StatusCounts::default(),
                late: 0,
            });
        row.counts.add(job.status(), 1);
        row.late += u64::from(job.scheduled.is_some_and(|s| s.late));
    }
    rows.into_values().collect()
}

/// The instant `keep` before `now`, subtracting calendar-wise as [`IsoDuration::add_to`]
/// adds (months first, clamping to the end of a shorter month, then days, then the time
/// part): jobs that ended before it are older than `keep`. Saturates at the earliest instant
/// chrono represents.
pub fn retention_cutoff(now: DateTime<Utc>, keep: &IsoDuration) -> DateTime<Utc> {
    let months = u64::from(keep.year_part()) * 12 + u64::from(keep.month_part());
    let days = u64::from(keep.week_part()) * 7 + u64::from(keep.day_part());
    let seconds = i64::from(keep.hour_part()) * 3600
        + i64::from(keep.minute_part()) * 60
        + i64::from(keep.second_part());
    u32::try_from(months)
        .ok()
        .and_then(|m| now.checked_sub_months(chrono::Months::new(m)))
        .and_then(|t| t.checked_sub_days(chrono::Days::new(days)))
        .and_then(|t| t.checked_sub_signed(TimeDelta::try_seconds(seconds)?))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{ResourceGroup, SubscriptionId};
    use chrono::TimeZone;

    fn t(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2021, 3, 17, h, m, s).unwrap()
    }

    fn owner() -> JobOwner {
        JobOwner::new(4242, "db-host-1")
    }

    #[test]
    fn job_id_round_trips_through_display_and_from_str() {
        let id = JobId::new();
        assert_eq!(id.to_string().parse::<JobId>(), Ok(id));
        let azure = "3c60cb49-63e8-4b21-b9bd-26277b3fdfae";
        assert_eq!(azure.parse::<JobId>().unwrap().to_string(), azure);
        assert!(matches!(
            "not-a-uuid".parse::<JobId>(),
            Err(JobParseError::JobId { .. })
        ));
    }

    #[test]
    fn operation_names_categories_and_parsing() {
        // (input, pgvault's operation, Azure's operation, Azure's category)
        let cases = [
            (
                "ConfigureBackup",
                Operation::ConfigureBackup,
                "ConfigureBackup",
                "Management",
            ),
            (
                "ondemandbackup",
                Operation::OnDemandBackup,
                "Backup",
                "Backup",
            ),
            (
                "SCHEDULEDBACKUP",
                Operation::ScheduledBackup,
                "Backup",
                "Backup",
            ),
            ("Restore", Operation::Restore, "Restore", "Restore"),
            (
                " scriptRun ",
                Operation::ScriptRun,
                "Management",
                "Management",
            ),
            (
                "retentionsweep",
                Operation::RetentionSweep,
                "Management",
                "Management",
            ),
            (
                "DeleteRecoveryPoint",
                Operation::DeleteRecoveryPoint,
                "Management",
                "Management",
            ),
            (
                "MOVETOARCHIVE",
                Operation::MoveToArchive,
                "Tiering",
                "Tiering",
            ),
            (
                "RestoreDrill",
                Operation::RestoreDrill,
                "Restore",
                "Restore",
            ),
            ("Rehydrate", Operation::Rehydrate, "Tiering", "Tiering"),
            (
                "DeleteBackupInstance",
                Operation::DeleteBackupInstance,
                "Management",
                "Management",
            ),
            (
                "undeletebackupinstance",
                Operation::UndeleteBackupInstance,
                "Management",
                "Management",
            ),
        ];
        assert_eq!(
            cases.len(),
            Operation::ALL.len(),
            "every operation has a row"
        );
        for (input, op, azure, category) in cases {
            assert_eq!(input.parse::<Operation>(), Ok(op), "{input}");
            assert_eq!(op.azure().as_str(), azure, "{op}");
            assert_eq!(op.category().as_str(), category, "{op}");
            assert_eq!(op.to_string().parse::<Operation>(), Ok(op));
            assert_eq!(serde_json::to_value(op).unwrap(), json!(op.as_str()));
            let back: Operation = serde_json::from_value(json!(input)).unwrap();
            assert_eq!(back, op);
        }
        // Azure's names are not pgvault's operations (the history never stores them)...
        let err = "Backup".parse::<Operation>().unwrap_err();
        assert!(matches!(err, JobParseError::Operation { .. }));
        // The error lists every name, so a new operation cannot be left out of it.
        for op in Operation::ALL {
            assert!(err.to_string().contains(op.as_str()), "{err}");
        }
        for op in AzureOperation::ALL {
            assert!(err.to_string().contains(op.as_str()), "{err}");
        }
    }

    #[test]
    fn operation_filters_take_pgvault_and_azure_names() {
        use OperationFilter::{Azure, Is};
        // (input, the filter, the operations it lets through)
        let cases: [(&str, OperationFilter, &[Operation]); 6] = [
            (
                "backup",
                Azure(AzureOperation::Backup),
                &[Operation::OnDemandBackup, Operation::ScheduledBackup],
            ),
            (
                "OnDemandBackup",
                Is(Operation::OnDemandBackup),
                &[Operation::OnDemandBackup],
            ),
            // A name both use keeps its old meaning: drills are not restores to `--operation Restore`.
            ("Restore", Is(Operation::Restore), &[Operation::Restore]),
            (
                "Tiering",
                Azure(AzureOperation::Tiering),
                &[Operation::MoveToArchive, Operation::Rehydrate],
            ),
            (
                "MANAGEMENT",
                Azure(AzureOperation::Management),
                &[
                    Operation::ScriptRun,
                    Operation::RetentionSweep,
                    Operation::DeleteRecoveryPoint,
                    Operation::DeleteBackupInstance,
                    Operation::UndeleteBackupInstance,
                ],
            ),
            (
                "ConfigureBackup",
                Is(Operation::ConfigureBackup),
                &[Operation::ConfigureBackup],
            ),
        ];
        for (input, filter, through) in cases {
            assert_eq!(input.parse::<OperationFilter>(), Ok(filter), "{input}");
            assert_eq!(filter.operations(), through, "{input}");
            for op in Operation::ALL {
                assert_eq!(filter.matches(op), through.contains(&op), "{input} {op}");
            }
        }
        assert!(matches!(
            "Archive".parse::<OperationFilter>(),
            Err(JobParseError::Operation { .. })
        ));
    }

    #[test]
    fn status_parsing_accepts_azure_free_strings() {
        let cases = [
            ("InProgress", Some(JobStatus::InProgress)),
            ("In Progress", Some(JobStatus::InProgress)),
            ("Started", Some(JobStatus::InProgress)),
            ("started", Some(JobStatus::InProgress)),
            ("Succeeded", Some(JobStatus::Completed)),
            ("COMPLETED", Some(JobStatus::Completed)),
            ("Failed", Some(JobStatus::Failed)),
            ("Cancelled", Some(JobStatus::Cancelled)),
            ("Canceled", Some(JobStatus::Cancelled)),
            ("CompletedWithWarnings", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<JobStatus>().ok(), want, "{input:?}");
        }
        let from_json: JobStatus = serde_json::from_value(json!("Succeeded")).unwrap();
        assert_eq!(from_json, JobStatus::Completed);
    }

    #[test]
    fn timespan_formatting() {
        let ns = TimeDelta::nanoseconds;
        let cases = [
            (TimeDelta::zero(), "00:00:00"),
            (TimeDelta::seconds(1), "00:00:01"),
            (ns(131_972_438_700), "00:02:11.9724387"),
            (ns(131_972_438_799), "00:02:11.9724387"), // below a tick is truncated
            (ns(100), "00:00:00.0000001"),
            (TimeDelta::seconds(86_399), "23:59:59"),
            (TimeDelta::seconds(86_400), "1.00:00:00"),
            (
                TimeDelta::seconds(3 * 86_400 + 3_723) + ns(500_000_000),
                "3.01:02:03.5000000",
            ),
            (TimeDelta::seconds(-1), "-00:00:01"),
            (-ns(1_500_000_000), "-00:00:01.5000000"),
        ];
        for (delta, want) in cases {
            assert_eq!(format_timespan(delta), want, "{delta:?}");
            // Every formatted value parses back (to tick precision).
            let back = parse_timespan(want).unwrap();
            assert_eq!(
                back.num_nanoseconds().unwrap() / 100,
                delta.num_nanoseconds().unwrap() / 100
            );
        }
    }

    #[test]
    fn timespan_parsing() {
        let cases = [
            ("00:00:00", Some(TimeDelta::zero())),
            (
                "00:02:11.9724387",
                Some(TimeDelta::nanoseconds(131_972_438_700)),
            ),
            ("00:00:01.5", Some(TimeDelta::milliseconds(1_500))),
            ("2.00:00:00", Some(TimeDelta::days(2))),
            ("-00:01:00", Some(TimeDelta::minutes(-1))),
            ("24:00:00", None),
            ("00:60:00", None),
            ("00:00:00.12345678", None),
            ("00:00", None),
            ("1:2:3:4", None),
            ("PT2M", None),
            ("00:+1:00", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_timespan(input).ok(), want, "{input:?}");
        }
    }

    #[test]
    fn iso_durations_are_written_as_xml_convert_writes_them_and_read_back() {
        let cases = [
            (TimeDelta::zero(), "PT0S"),
            (TimeDelta::seconds(1), "PT1S"),
            (
                TimeDelta::seconds(131) + TimeDelta::nanoseconds(972_438_700),
                "PT2M11.9724387S",
            ),
            (TimeDelta::milliseconds(972), "PT0.972S"),
            (TimeDelta::minutes(2), "PT2M"),
            (TimeDelta::hours(3) + TimeDelta::seconds(4), "PT3H4S"),
            (TimeDelta::days(1), "P1D"),
            (TimeDelta::days(2) + TimeDelta::minutes(5), "P2DT5M"),
            // Finer than a tick is truncated, as a TimeSpan would.
            (TimeDelta::nanoseconds(150), "PT0.0000001S"),
            (-TimeDelta::seconds(3), "-PT3S"),
        ];
        for (delta, want) in cases {
            assert_eq!(format_iso_duration(delta), want, "{delta:?}");
            let back = parse_iso_duration(want).unwrap();
            assert_eq!(format_iso_duration(back), want);
        }
        assert_eq!(
            parse_iso_duration("P1W").unwrap(),
            TimeDelta::days(7),
            "weeks are fixed"
        );
        assert_eq!(
            parse_iso_duration("pt1,5s").unwrap(),
            TimeDelta::milliseconds(1500)
        );
        for bad in [
            "",
            "P",
            "PT",
            "P1Y",
            "P1M",
            "PT1.5M",
            "1S",
            "PT1S2",
            "PTS",
            "PT1X",
            "00:00:01",
            "PT0.12345678S",
        ] {
            assert!(
                matches!(
                    parse_iso_duration(bad),
                    Err(JobParseError::IsoDuration { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn azure_time_has_seven_fractional_digits() {
        let cases = [
            (
                t(11, 11, 50) + TimeDelta::nanoseconds(559_525_900),
                "2021-03-17T11:11:50.5595259Z",
            ),
            (t(3, 0, 3), "2021-03-17T03:00:03.0000000Z"),
        ];
        for (time, want) in cases {
            assert_eq!(azure_time(time), want);
        }
    }

    #[test]
    fn state_accessors_for_every_state() {
        let err = JobError::new(ErrorCode::UserErrorMissingDBPermissions, "grant CONNECT");
        let cases = [
            (
                JobState::InProgress { start: t(1, 0, 0) },
                JobStatus::InProgress,
                None,
                None,
            ),
            (
                JobState::Completed {
                    start: t(1, 0, 0),
                    end: t(1, 2, 0),
                },
                JobStatus::Completed,
                Some(TimeDelta::minutes(2)),
                None,
            ),
            (
                JobState::Failed {
                    start: t(1, 0, 0),
                    end: t(1, 0, 5),
                    error: err.clone(),
                },
                JobStatus::Failed,
                Some(TimeDelta::seconds(5)),
                Some(&err),
            ),
            (
                JobState::Cancelled {
                    start: t(1, 0, 0),
                    end: t(2, 0, 0),
                },
                JobStatus::Cancelled,
                Some(TimeDelta::hours(1)),
                None,
            ),
        ];
        for (state, status, duration, error) in cases {
            assert_eq!(state.status(), status);
            assert_eq!(state.start(), t(1, 0, 0));
            assert_eq!(state.duration(), duration);
            assert_eq!(state.error(), error);
            assert_eq!(state.end().is_some(), status.is_finished());
            assert_eq!(
                state.elapsed(t(3, 0, 0)),
                duration.unwrap_or(TimeDelta::hours(2)),
            );
            let json = serde_json::to_value(&state).unwrap();
            assert_eq!(json["status"], json!(status.as_str()));
            assert_eq!(serde_json::from_value::<JobState>(json).unwrap(), state);
        }
    }

    #[test]
    fn transitions() {
        let running = JobState::InProgress { start: t(1, 0, 0) };
        let failed = JobOutcome::Failed(JobError::new("X", "y"));
        let done = JobOutcome::Completed {
            recovery_point_id: None,
        };
        type Case<'a> = (
            &'a JobState,
            &'a JobOutcome,
            DateTime<Utc>,
            Result<JobStatus, TransitionError>,
        );
        let cases: [Case; 6] = [
            (&running, &done, t(1, 0, 1), Ok(JobStatus::Completed)),
            (&running, &failed, t(1, 0, 0), Ok(JobStatus::Failed)),
            (
                &running,
                &JobOutcome::Cancelled,
                t(1, 5, 0),
                Ok(JobStatus::Cancelled),
            ),
            (
                &running,
                &done,
                t(0, 59, 59),
                Err(TransitionError::EndBeforeStart {
                    start: t(1, 0, 0),
                    end: t(0, 59, 59),
                }),
            ),
            (
                &JobState::Completed {
                    start: t(1, 0, 0),
                    end: t(1, 0, 1),
                },
                &failed,
                t(1, 0, 2),
                Err(TransitionError::AlreadyFinished {
                    status: JobStatus::Completed,
                }),
            ),
            (
                &JobState::Cancelled {
                    start: t(1, 0, 0),
                    end: t(1, 0, 1),
                },
                &JobOutcome::Cancelled,
                t(1, 0, 2),
                Err(TransitionError::AlreadyFinished {
                    status: JobStatus::Cancelled,
                }),
            ),
        ];
        for (from, outcome, end, want) in cases {
            let got = from.finish(outcome, end);
            assert_eq!(
                got.clone().map(|state| state.status()),
                want,
                "{from:?} {outcome:?}"
            );
            if let Ok(state) = got {
                assert_eq!(state.end(), Some(end));
                assert_eq!(state.start(), from.start());
            }
        }
    }

    #[test]
    fn job_finish_sets_bytes_and_recovery_point_only_when_allowed() {
        let mut new = NewJob::new(Operation::OnDemandBackup, "vault", t(1, 0, 0), owner());
        new.policy_rule_name = Some("Default".into());
        let mut job = Job::start(&new);
        assert!(job.is_user_triggered);
        job.finish(
            &JobOutcome::Completed {
                recovery_point_id: Some("rp-1".into()),
            },
            t(1, 1, 0),
            100,
            40,
        )
        .unwrap();
        assert_eq!((job.bytes_read, job.bytes_stored), (100, 40));
        assert_eq!(job.recovery_point_id.as_deref(), Some("rp-1"));

        let before = job.clone();
        let refused = job.finish(&JobOutcome::Cancelled, t(1, 2, 0), 1, 1);
        assert!(matches!(
            refused,
            Err(TransitionError::AlreadyFinished { .. })
        ));
        assert_eq!(job, before, "a refused transition leaves the job untouched");
    }

    #[test]
    fn scheduled_backups_are_not_user_triggered() {
        for op in Operation::ALL {
            let new = NewJob::new(op, "v", t(0, 0, 0), owner());
            assert_eq!(
                new.is_user_triggered,
                op != Operation::ScheduledBackup,
                "{op}"
            );
        }
    }

    const VAULT_ID: &str = "/subscriptions/62b829ee-7936-40c9-a1c9-47a93f9f3965/resourceGroups/BugBash1/providers/Microsoft.DataProtection/backupVaults/BugBashVaultForCCYv11";

    fn completed_backup() -> Job {
        let mut new = NewJob::new(
            Operation::OnDemandBackup,
            "BugBashVaultForCCYv11",
            t(11, 11, 50) + TimeDelta::nanoseconds(559_525_900),
            owner(),
        );
        new.backup_instance_name = Some("mabtestingccybasicv11\\bugbashdb3".into());
        new.datasource_name = Some("bugbashdb3".into());
        new.datasource_id = Some("/subscriptions/62b829ee-7936-40c9-a1c9-47a93f9f3965/resourceGroups/DppPostgresTestingCcy/providers/Microsoft.DBforPostgreSQL/servers/mabtestingccybasicv11/databases/bugbashdb3".into());
        new.policy_name = Some("jakavetPolicy1".into());
        new.policy_rule_name = Some("BackupWeekly".into());
        new.retention_tag = Some("Default".into());
        new.extended_details
            .insert("BytesStored".into(), "spoofed".into());
        new.extended_details
            .insert("Compression".into(), "zstd".into());
        let mut job = Job::start(&new);
        let end = job.state.start() + TimeDelta::nanoseconds(131_972_438_700);
        job.finish(
            &JobOutcome::Completed {
                recovery_point_id: Some("rp-7".into()),
            },
            end,
            1_000,
            250,
        )
        .unwrap();
        job
    }

    #[test]
    fn azure_json_of_a_completed_backup() {
        let job = completed_backup();
        let v = job.to_azure_json(&format!("{VAULT_ID}/"));
        let id = job.id.to_string();
        assert_eq!(v["id"], json!(format!("{VAULT_ID}/backupJobs/{id}")));
        assert_eq!(v["name"], json!(id));
        assert_eq!(v["type"], json!(AZURE_JOB_TYPE));
        let p = &v["properties"];
        assert_eq!(p["operation"], "Backup");
        assert_eq!(p["operationCategory"], "Backup");
        assert_eq!(p["pgvaultOperation"], "OnDemandBackup");
        assert_eq!(p["status"], "Completed");
        assert_eq!(p["startTime"], "2021-03-17T11:11:50.5595259Z");
        assert_eq!(p["endTime"], "2021-03-17T11:14:02.5319646Z");
        assert_eq!(p["duration"], "PT2M11.9724387S");
        assert_eq!(p["isUserTriggered"], true);
        assert_eq!(p["vaultName"], "BugBashVaultForCCYv11");
        assert_eq!(
            p["backupInstanceFriendlyName"],
            "mabtestingccybasicv11\\bugbashdb3"
        );
        assert_eq!(
            p["backupInstanceId"],
            json!(format!(
                "{VAULT_ID}/backupInstances/mabtestingccybasicv11\\bugbashdb3"
            ))
        );
        assert_eq!(
            p["policyId"],
            json!(format!("{VAULT_ID}/backupPolicies/jakavetPolicy1"))
        );
        assert_eq!(p["dataSourceSetName"], "mabtestingccybasicv11");
        assert_eq!(p["sourceResourceGroup"], "DppPostgresTestingCcy");
        assert_eq!(
            p["sourceSubscriptionID"],
            "62b829ee-7936-40c9-a1c9-47a93f9f3965"
        );
        assert_eq!(p["subscriptionId"], "62b829ee-7936-40c9-a1c9-47a93f9f3965");
        assert_eq!(p["dataSourceLocation"], "local");
        assert!(p.get("errorDetails").is_none());
        let details = &p["extendedInfo"]["additionalDetails"];
        assert_eq!(details["PolicyRuleName"], "BackupWeekly");
        assert_eq!(details["RetentionTag"], "Default");
        assert_eq!(details["BytesRead"], "1000");
        assert_eq!(
            details["BytesStored"], "250",
            "typed fields win over free-form details"
        );
        assert_eq!(details["RecoveryPointId"], "rp-7");
        assert_eq!(details["Compression"], "zstd");
        assert_eq!(details["TaskId"], json!(id));
        assert_eq!(p["extendedInfo"]["dataTransferredInBytes"], 250);
    }

    /// `dataSourceType` is the instance's: recorded with the job, else read from an Azure
    /// datasource id, else single server's as every older pgvault wrote.
    #[test]
    fn azure_json_gives_the_instances_datasource_type() {
        let flexible = "Microsoft.DBforPostgreSQL/flexibleServers/databases";
        let with = |id: Option<&str>, recorded: Option<&str>| {
            let mut new = NewJob::new(Operation::OnDemandBackup, "V", t(3, 0, 0), owner());
            new.backup_instance_name = Some("pg1-sales-1".into());
            new.datasource_id = id.map(str::to_owned);
            if let Some(kind) = recorded {
                new.extended_details
                    .insert(DATASOURCE_TYPE_DETAIL.into(), kind.to_owned());
            }
            Job::start(&new).azure_json(&Default::default(), &Default::default())["properties"]["dataSourceType"].clone()
        };
        let local = Some("postgres://pg1:5432/sales");
        assert_eq!(with(local, Some(flexible)), flexible);
        assert_eq!(
            with(local, Some(AZURE_DATASOURCE_TYPE)),
            AZURE_DATASOURCE_TYPE
        );
        // Rows recorded before the type was: what the id says, else what was reported then.
        assert_eq!(with(local, None), AZURE_DATASOURCE_TYPE);
        assert_eq!(with(None, None), AZURE_DATASOURCE_TYPE);
        assert_eq!(
            with(
                Some(
                    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg1/databases/sales"
                ),
                None
            ),
            flexible
        );
        assert_eq!(completed_backup().datasource_type(), AZURE_DATASOURCE_TYPE);
    }

    #[test]
    fn azure_json_of_running_and_failed_jobs() {
        let mut new = NewJob::new(
            Operation::ScheduledBackup,
            "local-vault",
            t(3, 0, 3),
            owner(),
        );
        new.datasource_id = Some("postgres://db.internal/sales".into());
        let running = Job::start(&new);
        let p = running.to_azure_json("vaults/local-vault")["properties"].clone();
        assert_eq!(p["status"], "InProgress");
        assert_eq!(p["duration"], "PT0S");
        assert_eq!(p["operation"], "Backup");
        assert_eq!(p["pgvaultOperation"], "ScheduledBackup");
        assert!(p.get("endTime").is_none());
        assert_eq!(p["isUserTriggered"], false);
        // A non-Azure datasource id yields nulls, not garbage, for the Azure-only fields.
        for key in [
            "dataSourceSetName",
            "sourceResourceGroup",
            "sourceSubscriptionID",
            "subscriptionId",
            "backupInstanceId",
            "policyId",
        ] {
            assert_eq!(p[key], Value::Null, "{key}");
        }
        let details = &p["extendedInfo"]["additionalDetails"];
        assert!(details.get("PolicyRuleName").is_none());
        assert!(details.get("RecoveryPointId").is_none());

        let mut failed = running.clone();
        let error = JobError::new(
            ErrorCode::UserErrorMissingDBPermissions,
            "GRANT CONNECT ON DATABASE sales TO backup;",
        );
        failed
            .finish(&JobOutcome::Failed(error), t(3, 0, 4), 10, 0)
            .unwrap();
        let p = failed.to_azure_json("vaults/local-vault")["properties"].clone();
        assert_eq!(p["status"], "Failed");
        assert_eq!(p["duration"], "PT1S");
        assert_eq!(
            p["errorDetails"],
            json!([{ "code": "UserErrorMissingDBPermissions", "message": "GRANT CONNECT ON DATABASE sales TO backup;" }])
        );
    }

    /// The key set of `properties` matches the corpus element that has an `endTime` (a
    /// finished backup), except for keys pgvault adds on purpose.
    #[test]
    fn azure_json_keys_match_the_corpus() {
        let corpus: Value = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/conformance/azure/ListJobs.json"
        )))
        .unwrap();
        let get_job: Value = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/conformance/azure/GetJob.json"
        )))
        .unwrap();
        let finished = corpus["responses"]["200"]["body"]["value"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["properties"].get("endTime").is_some())
            .unwrap();
        let keys = |v: &Value| -> std::collections::BTreeSet<String> {
            v.as_object().unwrap().keys().cloned().collect()
        };
        let ours_json = completed_backup().to_azure_json(VAULT_ID);
        assert_eq!(keys(finished), keys(&ours_json));
        let want = keys(&finished["properties"]);
        let ours = keys(&ours_json["properties"]);
        // `extendedInfo` is in Azure's schema and in GetJob.json; the list corpus omits it.
        // `pgvaultOperation` is pgvault's finer operation, beside Azure's `operation`.
        let extras: std::collections::BTreeSet<String> =
            ["extendedInfo".to_owned(), "pgvaultOperation".to_owned()].into();
        let missing: Vec<_> = want.difference(&ours).collect();
        let unexpected: Vec<_> = ours
            .difference(&want)
            .filter(|k| !extras.contains(*k))
            .collect();
        assert!(
            missing.is_empty(),
            "keys Azure has and pgvault lacks: {missing:?}"
        );
        assert!(
            unexpected.is_empty(),
            "keys pgvault adds without saying so: {unexpected:?}"
        );

        // Where pgvault does write `extendedInfo`, it carries every detail Azure's has.
        let azure_details = keys(
            &get_job["responses"]["200"]["body"]["properties"]["extendedInfo"]["additionalDetails"],
        );
        let our_details = keys(&ours_json["properties"]["extendedInfo"]["additionalDetails"]);
        let missing: Vec<_> = azure_details.difference(&our_details).collect();
        assert!(
            missing.is_empty(),
            "additionalDetails pgvault lacks: {missing:?}"
        );
    }

    #[test]
    fn filter_matches_and_orders() {
        let mk = |op: Operation, vault: &str, instance: Option<&str>, start: DateTime<Utc>| {
            let mut n = NewJob::new(op, vault, start, owner());
            n.backup_instance_name = instance.map(str::to_owned);
            Job::start(&n)
        };
        let jobs = [
            mk(Operation::ScheduledBackup, "v1", Some("db1"), t(1, 0, 0)),
            mk(Operation::OnDemandBackup, "V1", Some("DB2"), t(2, 0, 0)),
            mk(Operation::Restore, "v2", None, t(3, 0, 0)),
        ];
        let cases: [(JobFilter, &[usize]); 8] = [
            (JobFilter::default(), &[2, 1, 0]),
            (JobFilter::default().vault("v1"), &[1, 0]),
            (JobFilter::default().instance("db2"), &[1]),
            (JobFilter::default().operation(Operation::Restore), &[2]),
            (JobFilter::default().status(JobStatus::Completed), &[]),
            (JobFilter::default().started_after(t(2, 0, 0)), &[2, 1]),
            (JobFilter::default().started_before(t(2, 0, 0)), &[0]),
            (JobFilter::default().limit(1), &[2]),
        ];
        for (filter, want) in cases {
            let got: Vec<JobId> = filter.apply(&jobs).into_iter().map(|j| j.id).collect();
            let want: Vec<JobId> = want.iter().map(|&i| jobs[i].id).collect();
            assert_eq!(got, want, "{filter:?}");
        }
    }

    // ---- schedule, script, sub-tasks ----

    #[test]
    fn an_operation_answer_carries_azures_job_id() {
        let job = completed_restore();
        let v = job.operation_json(&SubscriptionId::default(), &ResourceGroup::default());
        // Azure's `OperationJobExtendedInfo`, as TriggerRestore.json answers it...
        assert_eq!(v["jobId"], json!(job.id.to_string()));
        assert_eq!(v["objectType"], "OperationJobExtendedInfo");
        // ...beside the job resource pgvault printed before, unchanged.
        let mut rest = v.clone();
        let rest = rest.as_object_mut().unwrap();
        rest.remove("jobId");
        rest.remove("objectType");
        assert_eq!(
            Value::Object(rest.clone()),
            job.azure_json(&SubscriptionId::default(), &ResourceGroup::default())
        );
    }

    /// A completed restore of `rp-7` (taken at 02:00) into a database, with a sub-task.
    fn completed_restore() -> Job {
        let mut new = NewJob::new(Operation::Restore, "vault", t(3, 0, 0), owner());
        new.backup_instance_name = Some("pg1-sales".into());
        new.recovery_point_id = Some("rp-7".into());
        new.extended_details.insert(
            RECOVERY_POINT_TIME_DETAIL.into(),
            "2021-03-17T02:00:00.0000000Z".into(),
        );
        new.extended_details.insert(
            "RestoreTarget".into(),
            "postgres://pg2:5432/sales_copy".into(),
        );
        let mut job = Job::start(&new);
        let task = job.start_task(TASK_VALIDATE, t(3, 0, 0)).unwrap();
        job.finish_task(task, TaskOutcome::Completed, None, t(3, 0, 1))
            .unwrap();
        job.finish(
            &JobOutcome::Completed {
                recovery_point_id: None,
            },
            t(3, 2, 11),
            4096,
            0,
        )
        .unwrap();
        job
    }

    #[test]
    fn azure_json_of_a_restore_names_its_recovery_point_and_destination() {
        let v =
            completed_restore().azure_json(&SubscriptionId::default(), &ResourceGroup::default());
        let p = &v["properties"];
        assert_eq!(p["operation"], "Restore");
        assert_eq!(p["operationCategory"], "Restore");
        assert_eq!(p["pgvaultOperation"], "Restore");
        assert_eq!(p["duration"], "PT2M11S");
        let point = json!({
            "recoveryPointID": "rp-7",
            "recoveryPointTime": "2021-03-17T02:00:00.0000000Z",
        });
        assert_eq!(p["extendedInfo"]["sourceRecoverPoint"], point);
        assert_eq!(p["extendedInfo"]["targetRecoverPoint"], point);
        assert_eq!(
            p["extendedInfo"]["recoveryDestination"],
            "postgres://pg2:5432/sales_copy"
        );

        // A restore as files names its folder; one recorded before the time was kept has a
        // null time, as the SDK's optional field allows.
        let mut new = NewJob::new(Operation::Restore, "vault", t(3, 0, 0), owner());
        new.recovery_point_id = Some("rp-8".into());
        new.extended_details
            .insert("RestoreTargetFolder".into(), "file:///srv/out".into());
        let p = Job::start(&new).azure_json(&SubscriptionId::default(), &ResourceGroup::default())
            ["properties"]
            .clone();
        assert_eq!(
            p["extendedInfo"]["sourceRecoverPoint"],
            json!({"recoveryPointID": "rp-8", "recoveryPointTime": null})
        );
        assert_eq!(p["extendedInfo"]["recoveryDestination"], "file:///srv/out");

        // A backup has none of the three.
        let p = completed_backup()
            .azure_json(&SubscriptionId::default(), &ResourceGroup::default())["properties"]
            .clone();
        for key in [
            "sourceRecoverPoint",
            "targetRecoverPoint",
            "recoveryDestination",
        ] {
            assert!(p["extendedInfo"].get(key).is_none(), "{key}");
        }
    }

    /// Every field of a job's JSON has the type the SDK's `AzureBackupJob` model gives it
    /// (azure-mgmt-dataprotection 2.2.0, `_models.py`): what the Python SDK deserializes.
    #[test]
    fn azure_json_is_typed_as_the_sdks_azure_backup_job() {
        #[derive(Clone, Copy, Debug)]
        enum Kind {
            Str,
            Bool,
            /// `format="rfc3339"`: a datetime.
            Time,
            /// ISO 8601 duration, as the spec's `format: duration`.
            Duration,
            StrList,
            StrMap,
            Number,
            Int,
            /// `UserFacingError` list, `RestoreJobRecoveryPointDetails`, `JobSubTask` list.
            Errors,
            Point,
            SubTasks,
        }
        use Kind::*;
        let fields: &[(&str, Kind)] = &[
            ("/activityID", Str),
            ("/backupInstanceFriendlyName", Str),
            ("/backupInstanceId", Str),
            ("/dataSourceId", Str),
            ("/dataSourceLocation", Str),
            ("/dataSourceName", Str),
            ("/dataSourceSetName", Str),
            ("/dataSourceType", Str),
            ("/duration", Duration),
            ("/endTime", Time),
            ("/errorDetails", Errors),
            ("/extendedInfo/additionalDetails", StrMap),
            ("/extendedInfo/dataTransferredInBytes", Number),
            ("/extendedInfo/recoveryDestination", Str),
            ("/extendedInfo/sourceRecoverPoint", Point),
            ("/extendedInfo/targetRecoverPoint", Point),
            ("/extendedInfo/subTasks", SubTasks),
            ("/isUserTriggered", Bool),
            ("/operation", Str),
            ("/operationCategory", Str),
            ("/policyId", Str),
            ("/policyName", Str),
            ("/progressEnabled", Bool),
            ("/sourceResourceGroup", Str),
            ("/sourceSubscriptionID", Str),
            ("/startTime", Time),
            ("/status", Str),
            ("/subscriptionId", Str),
            ("/supportedActions", StrList),
            ("/vaultName", Str),
        ];
        fn check(kind: Kind, v: &Value) -> bool {
            let time = |v: &Value| {
                v.as_str()
                    .is_some_and(|s| DateTime::parse_from_rfc3339(s).is_ok())
            };
            let strings = |v: &Value| {
                v.as_object()
                    .is_some_and(|m| m.values().all(Value::is_string))
            };
            match kind {
                Str => v.is_string(),
                Bool => v.is_boolean(),
                Time => time(v),
                Duration => v.as_str().is_some_and(|s| parse_iso_duration(s).is_ok()),
                StrList => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
                StrMap => strings(v),
                Number => v.is_number(),
                Int => v.is_i64() || v.is_u64(),
                Errors => v.as_array().is_some_and(|a| {
                    a.iter()
                        .all(|e| e["code"].is_string() && e["message"].is_string())
                }),
                Point => {
                    v["recoveryPointID"].is_string()
                        && (v["recoveryPointTime"].is_null() || time(&v["recoveryPointTime"]))
                }
                SubTasks => v.as_array().is_some_and(|a| {
                    a.iter().all(|t| {
                        check(Int, &t["taskId"])
                            && t["taskName"].is_string()
                            && t["taskStatus"].is_string()
                            && strings(&t["additionalDetails"])
                    })
                }),
            }
        }
        let mut failed = running_backup();
        failed
            .finish(
                &JobOutcome::Failed(JobError::new(ErrorCode::JobInterrupted, "gone")),
                t(2, 0, 5),
                0,
                0,
            )
            .unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for job in [
            completed_backup(),
            completed_restore(),
            running_backup(),
            failed,
        ] {
            let v = job.azure_json(&SubscriptionId::default(), &ResourceGroup::default());
            let p = &v["properties"];
            for (pointer, kind) in fields {
                // Optional fields may be absent or null; present, they have their type.
                match p.pointer(pointer) {
                    None | Some(Value::Null) => {}
                    Some(value) => {
                        assert!(check(*kind, value), "{pointer}: {value} is not {kind:?}");
                        seen.insert(*pointer);
                    }
                }
            }
        }
        // Each field was checked against a value at least once, but those pgvault cannot know.
        let unknown = [
            "/dataSourceLocation",
            "/dataSourceSetName",
            "/sourceResourceGroup",
            "/sourceSubscriptionID",
            "/subscriptionId",
            "/dataSourceId",
            "/dataSourceName",
            "/policyId",
            "/policyName",
        ];
        for (pointer, _) in fields {
            assert!(
                seen.contains(pointer) || unknown.contains(pointer),
                "{pointer} never checked"
            );
        }
    }

    fn running_backup() -> Job {
        let mut new = NewJob::new(Operation::ScheduledBackup, "vault", t(2, 0, 0), owner());
        new.scheduled = Some(ScheduledRun {
            due_time: t(1, 0, 0),
            late: true,
        });
        Job::start(&new)
    }

    #[test]
    fn sub_tasks_in_memory() {
        let mut job = running_backup();
        let s = |secs: i64| t(2, 0, 0) + TimeDelta::seconds(secs);
        let validate = job.start_task(TASK_VALIDATE, s(0)).unwrap();
        let dump = job.start_task(TASK_DUMP, s(1)).unwrap();
        job.finish_task(validate, TaskOutcome::Completed, None, s(1))
            .unwrap();
        // (what is asked, the refusal expected); each leaves the job as it was.
        type Call<'a> = Box<dyn Fn(&mut Job) -> Result<(), JobUpdateError> + 'a>;
        let cases: [(Call, JobUpdateError); 6] = [
            (
                Box::new(move |j| {
                    j.finish_task(validate, TaskOutcome::Failed, None, s(2))
                        .map(|_| ())
                }),
                JobUpdateError::TaskFinished {
                    task: validate,
                    status: JobStatus::Completed,
                },
            ),
            (
                Box::new(move |j| {
                    j.finish_task(dump, TaskOutcome::Completed, None, s(0))
                        .map(|_| ())
                }),
                JobUpdateError::TaskEndBeforeStart {
                    task: dump,
                    start: s(1),
                    end: s(0),
                },
            ),
            (
                Box::new(|j| {
                    j.finish_task(TaskId::new(7).unwrap(), TaskOutcome::Completed, None, s(2))
                        .map(|_| ())
                }),
                JobUpdateError::NoSuchTask {
                    task: TaskId::new(7).unwrap(),
                },
            ),
            (
                Box::new(move |j| j.start_task(TASK_COMMIT, s(-1)).map(|_| ())),
                JobUpdateError::TaskBeforeJob {
                    job_start: s(0),
                    start: s(-1),
                },
            ),
            (
                Box::new(move |j| j.start_task("", s(2)).map(|_| ())),
                JobUpdateError::EmptyTaskName,
            ),
            (
                Box::new(move |j| {
                    let mut done = j.clone();
                    done.finish(&JobOutcome::Cancelled, s(3), 0, 0).unwrap();
                    done.set_script_output("x")
                }),
                JobUpdateError::JobFinished {
                    status: JobStatus::Cancelled,
                },
            ),
        ];
        for (call, want) in cases {
            let before = job.clone();
            assert_eq!(call(&mut job), Err(want.clone()));
            assert_eq!(job, before, "{want:?}");
        }
        assert_eq!(TaskId::new(0), None, "tasks count from 1");
        assert_eq!(
            job.tasks.iter().map(|t| t.id.get()).collect::<Vec<_>>(),
            [1, 2]
        );
    }

    #[test]
    fn capped_text_is_cap_text_of_everything_pushed_in_bounded_memory() {
        let pieces: Vec<String> = (0..20_000).map(|i| format!("line {i} é€𝄞")).collect();
        for limit in [300, 4 * 1024, SCRIPT_OUTPUT_LIMIT] {
            for count in [0, 1, 10, 2_000, 20_000] {
                let mut capped = CappedText::new(limit);
                let mut whole = String::new();
                for piece in &pieces[..count] {
                    capped.push_line(piece);
                    whole.push_str(piece);
                    whole.push('\n');
                    assert!(capped.held() <= limit / 4 + 2 * limit + 32);
                }
                assert_eq!(capped.text(), cap_text(&whole, limit), "{limit} {count}");
            }
        }
    }

    #[test]
    fn cap_text_keeps_head_and_tail_within_the_limit() {
        let long_ascii = format!("BEGIN{}END", "-".repeat(10_000));
        // Multi-byte characters everywhere, so every cut has to find a boundary.
        let long_wide = "é€𝄞".repeat(2_000);
        // (text, limit, expected unchanged)
        let cases: [(&str, usize, bool); 6] = [
            ("", 10, true),
            ("short", 5, true),
            ("short", 4, false),
            (&long_ascii, 1_000, false),
            (&long_ascii, long_ascii.len(), true),
            (&long_wide, 777, false),
        ];
        for (text, limit, unchanged) in cases {
            let capped = cap_text(text, limit);
            if unchanged {
                assert_eq!(capped, text);
                continue;
            }
            let note = "bytes of output left out";
            assert!(capped.contains(note), "{limit}: {capped}");
            if limit >= 200 {
                assert!(capped.len() <= limit, "{} > {limit}", capped.len());
                let (head, tail) = capped.split_once("\n[...").unwrap();
                let tail = tail.split_once("...]\n").unwrap().1;
                assert!(text.starts_with(head) && text.ends_with(tail));
                assert!(
                    !head.is_empty() && tail.len() > head.len(),
                    "more tail than head"
                );
                let dropped = text.len() - head.len() - tail.len();
                assert!(capped.contains(&format!(" {dropped} bytes")), "{capped}");
            }
        }
    }

    #[test]
    fn azure_json_of_sub_tasks_follows_azures_shape() {
        let mut job = running_backup();
        let start = job.state.start();
        let validate = job.start_task(TASK_VALIDATE, start).unwrap();
        job.finish_task(
            validate,
            TaskOutcome::Completed,
            Some("connected"),
            start + TimeDelta::seconds(2),
        )
        .unwrap();
        job.start_task(TASK_DUMP, start + TimeDelta::seconds(2))
            .unwrap();
        let v = job.azure_json(&Default::default(), &Default::default());
        let tasks = v["properties"]["extendedInfo"]["subTasks"]
            .as_array()
            .unwrap();
        assert_eq!(
            tasks[0],
            json!({
                "additionalDetails": {
                    "StartTime": "2021-03-17T02:00:00.0000000Z",
                    "EndTime": "2021-03-17T02:00:02.0000000Z",
                    "Duration": "PT2S",
                    "Detail": "connected",
                },
                "taskId": 1,
                "taskName": "Validate",
                "taskStatus": "Completed",
            })
        );
        assert_eq!(tasks[1]["taskStatus"], "InProgress");
        assert_eq!(tasks[1]["taskId"], 2);
        assert!(tasks[1]["additionalDetails"].get("EndTime").is_none());

        // Every key of Azure's own sub-task is there, of the same JSON type, and ours are in
        // Azure's schema (SubTask: additionalDetails, taskId, taskName, taskProgress, taskStatus).
        let get_job: Value = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/conformance/azure/GetJob.json"
        )))
        .unwrap();
        let azure =
            &get_job["responses"]["200"]["body"]["properties"]["extendedInfo"]["subTasks"][0];
        let kind = |v: &Value| std::mem::discriminant(v);
        for (key, value) in azure.as_object().unwrap() {
            assert_eq!(kind(&tasks[0][key]), kind(value), "{key}");
        }
        let schema = [
            "additionalDetails",
            "taskId",
            "taskName",
            "taskProgress",
            "taskStatus",
        ];
        for key in tasks[0].as_object().unwrap().keys() {
            assert!(
                schema.contains(&key.as_str()),
                "{key} is not in Azure's SubTask"
            );
        }

        // A job without tasks has no `subTasks`, as before they existed.
        let plain = Job::start(&NewJob::new(Operation::Restore, "v", t(1, 0, 0), owner()));
        assert!(
            plain.azure_json(&Default::default(), &Default::default())["properties"]["extendedInfo"]
                .get("subTasks")
                .is_none()
        );
    }

    #[test]
    fn azure_json_of_schedule_and_script_fields() {
        let job = running_backup();
        let details = &job.azure_json(&Default::default(), &Default::default())["properties"]["extendedInfo"]
            ["additionalDetails"];
        assert_eq!(details["ScheduledTime"], "2021-03-17T01:00:00.0000000Z");
        assert_eq!(details["Late"], "true");

        let mut script = Job::start(&NewJob::script_run(
            "/srv/s/report.rhai",
            t(4, 0, 0),
            owner(),
        ));
        script.set_script_output("3 failed jobs\n").unwrap();
        let v = script.azure_json(&Default::default(), &Default::default());
        let id = script.id.to_string();
        assert_eq!(
            v["id"],
            json!(format!(
                "/subscriptions/00000000-0000-0000-0000-000000000000/providers/Microsoft.DataProtection/backupJobs/{id}"
            ))
        );
        let p = &v["properties"];
        assert_eq!(p["vaultName"], Value::Null);
        assert_eq!(p["operation"], "Management");
        assert_eq!(p["operationCategory"], "Management");
        assert_eq!(p["pgvaultOperation"], "ScriptRun");
        let details = &p["extendedInfo"]["additionalDetails"];
        assert_eq!(details["ScriptPath"], "/srv/s/report.rhai");
        assert_eq!(details["ScriptOutput"], "3 failed jobs\n");
        assert!(details.get("Late").is_none());

        // With a vault, azure_json is to_azure_json under the vault's id in its group.
        let backup = completed_backup();
        let sub = resource::SubscriptionId::parse("62b829ee-7936-40c9-a1c9-47a93f9f3965").unwrap();
        let group = resource::ResourceGroup::parse("BugBash1").unwrap();
        let v = backup.azure_json(&sub, &group);
        assert_eq!(v, backup.to_azure_json(VAULT_ID));
        assert_eq!(v["properties"]["subscriptionId"], sub.as_str());
    }

    #[test]
    fn summarize_groups_per_vault_and_instance_ignoring_case() {
        let mk = |vault: Option<&str>, instance: Option<&str>, late: bool, failed: bool| {
            let mut n = match vault {
                Some(v) => NewJob::new(Operation::ScheduledBackup, v, t(1, 0, 0), owner()),
                None => NewJob::script_run("s.rhai", t(1, 0, 0), owner()),
            };
            n.backup_instance_name = instance.map(str::to_owned);
            n.scheduled = Some(ScheduledRun {
                due_time: t(1, 0, 0),
                late,
            });
            let mut job = Job::start(&n);
            if failed {
                job.finish(
                    &JobOutcome::Failed(JobError::new("E", "m")),
                    t(2, 0, 0),
                    0,
                    0,
                )
                .unwrap();
            }
            job
        };
        let jobs = [
            mk(Some("vault-b"), Some("db"), false, false),
            mk(Some("Vault-A"), Some("DB"), true, true),
            mk(Some("vault-a"), Some("db"), false, false),
            mk(None, None, false, true),
            mk(Some("vault-a"), None, false, false),
        ];
        let rows: Vec<_> = summarize(&jobs)
            .into_iter()
            .map(|r| {
                (
                    r.vault_name,
                    r.backup_instance_name,
                    r.counts.get(JobStatus::InProgress),
                    r.counts.get(JobStatus::Failed),
                    r.counts.total(),
                    r.late,
                )
            })
            .collect();
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            rows,
            [
                (None, None, 0, 1, 1, 0),
                (s("vault-a"), None, 1, 0, 1, 0),
                (s("Vault-A"), s("DB"), 1, 1, 2, 1),
                (s("vault-b"), s("db"), 1, 0, 1, 0),
            ]
        );
    }

    #[test]
    fn retention_cutoff_subtracts_calendar_wise() {
        let at = |s: &str| -> DateTime<Utc> { s.parse().unwrap() };
        // (now, keep, cutoff)
        let cases = [
            ("2026-03-31T12:00:00Z", "P90D", "2025-12-31T12:00:00Z"),
            ("2026-03-31T12:00:00Z", "P1M", "2026-02-28T12:00:00Z"), // clamped to February's end
            ("2024-03-31T00:00:00Z", "P1M", "2024-02-29T00:00:00Z"),
            ("2024-02-29T00:00:00Z", "P1Y", "2023-02-28T00:00:00Z"),
            ("2026-01-10T00:00:00Z", "P1W", "2026-01-03T00:00:00Z"),
            ("2026-01-01T00:30:00Z", "PT1H", "2025-12-31T23:30:00Z"),
            (
                "2026-05-05T05:05:06Z",
                "P1Y2M3DT4H5M6S",
                "2025-03-02T01:00:00Z",
            ),
            ("2026-01-01T00:00:00Z", "P0D", "2026-01-01T00:00:00Z"),
        ];
        for (now, keep, want) in cases {
            let keep: IsoDuration = keep.parse().unwrap();
            assert_eq!(retention_cutoff(at(now), &keep), at(want), "{now} - {keep}");
        }
        assert_eq!(
            retention_cutoff(at("2026-01-01T00:00:00Z"), &IsoDuration::years(1_000_000)),
            DateTime::<Utc>::MIN_UTC,
            "saturates"
        );
    }

    #[test]
    fn a_job_on_no_vault_matches_only_filters_without_one() {
        let job = Job::start(&NewJob::script_run("s.rhai", t(1, 0, 0), owner()));
        assert_eq!(job.vault(), None);
        assert!(JobFilter::default().matches(&job));
        assert!(
            JobFilter::default()
                .operation(Operation::ScriptRun)
                .matches(&job)
        );
        assert!(!JobFilter::default().vault("").matches(&job));
        assert!(!JobFilter::default().vault("vault").matches(&job));
    }

    #[test]
    fn a_self_hosted_datasources_job_gives_the_sdk_every_string_it_requires() {
        let mut new = NewJob::new(Operation::OnDemandBackup, "V", t(1, 0, 0), owner());
        new.datasource_id = Some("postgres://db1:5432/sales".into());
        let subscription = SubscriptionId::parse("11111111-2222-3333-4444-555555555555").unwrap();
        let group = ResourceGroup::parse("ops").unwrap();
        let p = Job::start(&new).azure_json(&subscription, &group)["properties"].clone();
        assert_eq!(p["sourceSubscriptionID"], subscription.as_str());
        assert_eq!(p["sourceResourceGroup"], "ops");
        assert_eq!(p["subscriptionId"], subscription.as_str());
        assert_eq!(p["dataSourceLocation"], "local");
    }
}
