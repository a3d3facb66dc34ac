//! The script runner: every script run as a recorded, contained `ScriptRun` job, whoever
//! asked for it (a file dropped in the scripts folder, a recurring runbook, `pgvault run`).
//!
//! - [`run_script_file`] runs one [`ReadyScript`] as a `ScriptRun` job and never fails because
//!   the script did: an error, a limit, a timeout or a panic in a binding all end as a `Failed`
//!   job (codes [`SCRIPT_ERROR`], [`SCRIPT_LIMIT_EXCEEDED`], [`SCRIPT_TIMED_OUT`],
//!   [`SCRIPT_PANICKED`]); it returns `Err` only when the job history cannot record the run.
//!   Its job goes through the host's one lifecycle (`job_run`), so a run whose future is
//!   dropped ends `Cancelled`, and the script is stopped with it.
//! - [`RunOptions`] says how: drop-ins (and `pgvault run --sandbox`) get
//!   [`SandboxLimits::default`], no `import` of files, no `eval`, and only what the host's
//!   [`Grants`] allow, narrowed by the script's header: destructive calls (deletions, sweeps
//!   at another time, suspending or stopping protection) with `--allow-destructive-scripts`,
//!   restores into `--script-restore-dir` folders and onto `--script-restore-server` servers,
//!   `env(..)` of `--script-env` variables, and never a new vault (see
//!   [`crate::script::sandbox`]); [`RunOptions::operator`] is `pgvault run`'s (every call
//!   allowed, no limits but generous sizes, the output echoed to stdout, the file left where
//!   it is). Every run's output and error have secret values replaced by `<redacted>`.
//!   A run-once drop-in is then filed away by [`crate::dropin`].
//!
//! **Wall time on the real clock, through the REPL's interrupt.** A script's deadline is
//! kept by a thread of its own that raises the run's [`Interrupt`], the mechanism the REPL's
//! Ctrl-C uses: a Rhai loop stops at its next operation, and an operation the script waits
//! for (a backup) is dropped. A thread rather than a tokio timer, because a host test that
//! pauses tokio's clock would otherwise see every script time out at once.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rhai::{Engine, EvalAltResult, ParseErrorType};

use pgvault_core::engine::Result;
use pgvault_core::model::code::ErrorCode;
use pgvault_core::model::job::{
    CappedText, Job, JobError, JobOutcome, NewJob, SCRIPT_OUTPUT_LIMIT, ScheduledRun,
};

use crate::dropin::{ReadyScript, ScriptKind, file_away, job_path};
use crate::history::current_owner;
use crate::job_run::{Held, JobRun};
use crate::script::sandbox::{Grants, Redactor, parse_narrowing};
use crate::script::{Interrupt, ScriptContext, describe_error, new_engine};
use crate::service::Pgvault;

/// A script error: it threw, called a function wrongly, failed to parse, or could not be read.
pub const SCRIPT_ERROR: ErrorCode = ErrorCode::ScriptError;
/// The script ran longer than its wall time.
pub const SCRIPT_TIMED_OUT: ErrorCode = ErrorCode::ScriptTimedOut;
/// The script went over one of its [`SandboxLimits`] (operations, call depth, sizes).
pub const SCRIPT_LIMIT_EXCEEDED: ErrorCode = ErrorCode::ScriptLimitExceeded;
/// pgvault itself panicked while running the script (a bug in a binding).
pub const SCRIPT_PANICKED: ErrorCode = ErrorCode::ScriptPanicked;

/// A script file larger than this is not run: a runbook is a page or two, so this is a file
/// dropped in the wrong folder, and reading it would cost the host its memory.
pub const MAX_SCRIPT_BYTES: u64 = 4 * 1024 * 1024;

/// What a script may use. Rhai checks each limit as the script runs and stops it with an
/// error a `try` block cannot catch; 0 means no limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxLimits {
    /// Rhai operations (an expression, a statement, a loop iteration): 50 million is a few
    /// seconds of pure Rhai, far more than a runbook between its calls into pgvault.
    pub max_operations: u64,
    /// Nested function calls (recursion); each level costs the script's thread stack.
    pub max_call_levels: usize,
    /// Nesting of expressions at parse time; functions get half of it.
    pub max_expr_depth: usize,
    /// Bytes in one string.
    pub max_string_size: usize,
    /// Elements in one array.
    pub max_array_size: usize,
    /// Entries in one object map.
    pub max_map_size: usize,
    /// How long the script may run, its pgvault operations included; `None` for no limit.
    pub wall_time: Option<Duration>,
}

impl Default for SandboxLimits {
    /// The drop-in defaults, for unattended runbooks: generous for any real runbook (a
    /// backup of a large database fits in the hour), fatal to a runaway loop.
    fn default() -> Self {
        SandboxLimits {
            max_operations: 50_000_000,
            max_call_levels: 64,
            max_expr_depth: 128,
            max_string_size: 1024 * 1024,
            max_array_size: 100_000,
            max_map_size: 100_000,
            wall_time: Some(Duration::from_secs(60 * 60)),
        }
    }
}

impl SandboxLimits {
    /// The operator's own scripts (`pgvault run`): no limit on operations or time, and sizes
    /// generous for any real script but bounded, so that no script (a string doubled in a
    /// loop) can exhaust the process's memory and abort it with its job still InProgress.
    pub fn operator() -> Self {
        SandboxLimits {
            max_operations: 0,
            max_string_size: 64 * 1024 * 1024,
            max_array_size: 4_000_000,
            max_map_size: 1_000_000,
            wall_time: None,
            ..SandboxLimits::default()
        }
    }

    fn apply(&self, engine: &mut Engine) {
        engine
            .set_max_operations(self.max_operations)
            .set_max_call_levels(self.max_call_levels)
            .set_max_expr_depths(self.max_expr_depth, self.max_expr_depth / 2)
            .set_max_string_size(self.max_string_size)
            .set_max_array_size(self.max_array_size)
            .set_max_map_size(self.max_map_size);
    }
}

/// How [`run_script_file`] runs a script.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub limits: SandboxLimits,
    /// The sandbox: what the script may do (the host's flags, narrowed by the script's
    /// header), no `import` of other files and no `eval` (a sandboxed script is the file that
    /// was dropped, nothing it names). `None` for the operator's own scripts, which may do
    /// anything. See [`crate::script::sandbox`].
    pub sandbox: Option<Grants>,
    /// Move a run-once script to `done/` or `failed/` with a log beside it.
    pub move_when_done: bool,
    /// Also write what the script prints to stdout, as `pgvault run` does.
    pub echo: bool,
    /// Raised by the host to stop the script (shutting down, Ctrl-C): the script and the
    /// operation it waits for stop, and its job ends `Cancelled`.
    pub stop: Option<Interrupt>,
}

impl RunOptions {
    /// A drop-in script's: the sandbox with `grants`, filed away when done.
    pub fn sandboxed(grants: Grants) -> Self {
        RunOptions {
            limits: SandboxLimits::default(),
            sandbox: Some(grants),
            move_when_done: true,
            echo: false,
            stop: None,
        }
    }

    /// A drop-in script's with no grants but, if `allow_destructive`, destructive calls.
    pub fn drop_in(allow_destructive: bool) -> Self {
        RunOptions::sandboxed(Grants {
            destructive: allow_destructive,
            ..Grants::default()
        })
    }

    /// `pgvault run`'s: the operator's own tool, so no limits but sizes (a wall time only if
    /// asked), `import` and every call allowed, output echoed, the file left where it is.
    pub fn operator() -> Self {
        RunOptions {
            limits: SandboxLimits::operator(),
            sandbox: None,
            move_when_done: false,
            echo: true,
            stop: None,
        }
    }
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct RanScript {
    /// The `ScriptRun` job, finished.
    pub job: Job,
    /// Where the script was moved (`done/` or `failed/`), if it was.
    pub moved_to: Option<PathBuf>,
    /// The log written beside it, if one was.
    pub log: Option<PathBuf>,
}

/// Runs `script` as a `ScriptRun` job started at `now`, as `options` say; see the module
/// documentation. Returns once the script ended, however it ended: the job says how. `Err`
/// only when the job history fails: if the job could not be started, the script did not run;
/// if it could not be finished, the file stays in the folder.
pub async fn run_script_file(
    svc: Arc<Pgvault>,
    script: &ReadyScript,
    options: &RunOptions,
    now: DateTime<Utc>,
) -> Result<RanScript> {
    run_with(svc, script, options, now, |_, _| {}).await
}

/// Runs the alert hook at `path` as a `ScriptRun` job in the drop-in sandbox with no grants
/// (it may read, print and call nothing destructive), where `alert()` returns `alert` (the
/// common alert schema) as a map. The file stays where it is. Returns the finished job.
pub(crate) async fn run_alert_hook(
    svc: Arc<Pgvault>,
    path: &Path,
    alert: &serde_json::Value,
    now: DateTime<Utc>,
) -> Result<Job> {
    let map = rhai::serde::to_dynamic(alert).map_err(|e| {
        pgvault_core::engine::Error::new(
            ErrorCode::InternalError,
            format!("the alert could not be given to the hook as a map: {e}"),
        )
    })?;
    let mut options = RunOptions::sandboxed(Grants::default());
    options.move_when_done = false;
    let script = ReadyScript::run_once(path);
    let ran = run_with(svc, &script, &options, now, move |engine, _| {
        engine.register_fn("alert", move || map.clone());
    })
    .await?;
    Ok(ran.job)
}

/// [`run_script_file`] with `extend` registering more functions on the engine (the tests'
/// misbehaving bindings).
async fn run_with(
    svc: Arc<Pgvault>,
    script: &ReadyScript,
    options: &RunOptions,
    now: DateTime<Utc>,
    extend: impl FnOnce(&mut Engine, &ScriptContext) + Send + 'static,
) -> Result<RanScript> {
    let name = job_path(&script.path);
    let mut new = NewJob::script_run(name.clone(), now, current_owner());
    if let ScriptKind::Recurring(due) = &script.kind {
        new.is_user_triggered = false;
        new.scheduled = Some(ScheduledRun {
            due_time: due.due,
            late: due.late,
        });
        if due.missed > 0 {
            new.extended_details
                .insert("MissedOccurrences".to_owned(), due.missed.to_string());
        }
        if due.late {
            tracing::warn!(script = %name, due = %due.due, missed = due.missed, "running a recurring script late (the host was not running when it was due)");
        }
    }
    let run = JobRun::start(svc.history(), &new, Held::nothing()).await?;

    let (outcome, output) = match &script.kind {
        ScriptKind::BadHeader(message) => (failed(SCRIPT_ERROR, message.clone()), String::new()),
        ScriptKind::RunOnce | ScriptKind::Recurring(_) => match read_script(&script.path) {
            Err(message) => (failed(SCRIPT_ERROR, message), String::new()),
            Ok(source) => match narrowed(&name, &source, options.sandbox.as_ref()) {
                Err(message) => (failed(SCRIPT_ERROR, message), String::new()),
                Ok(grants) => evaluate(svc.clone(), &name, source, grants, options, extend).await,
            },
        },
    };
    if !output.is_empty() {
        run.set_script_output(&output)?;
    }
    let job = run.finish_as(&outcome, 0, 0).await?;
    if let Some(error) = job.state.error() {
        tracing::warn!(script = %name, job = %job.id, code = %error.code, "{}", error.message);
    }

    let mut ran = RanScript {
        job,
        moved_to: None,
        log: None,
    };
    if options.move_when_done && !matches!(script.kind, ScriptKind::Recurring(_)) {
        match file_away(&script.path, &ran.job, &output) {
            Ok((moved_to, log)) => {
                ran.moved_to = moved_to;
                ran.log = Some(log);
            }
            Err(e) => {
                tracing::error!(script = %name, error = %e, "cannot move the script out of the scripts folder; it stays there and does not run again until it changes");
            }
        }
    }
    Ok(ran)
}

/// The grants a sandboxed script runs with: the host's, narrowed by the script's header
/// (`// restore-dir:`, `// restore-server:`, `// env:`, `// destructive:`); an error naming
/// each wrong line (`path:line: ...`) when the header asks for more than the host allows.
/// The operator's scripts (`None`) ignore such lines.
fn narrowed(
    name: &str,
    source: &str,
    host: Option<&Grants>,
) -> std::result::Result<Option<Grants>, String> {
    let Some(host) = host else {
        return Ok(None);
    };
    let lines = leading_comments(source);
    let problems = match parse_narrowing(&lines) {
        Ok(narrowing) => match host.narrow(&narrowing) {
            Ok(grants) => return Ok(Some(grants)),
            Err(problems) => problems,
        },
        Err(problems) => problems,
    };
    Err(problems
        .iter()
        .map(|(line, problem)| format!("{name}:{line}: {problem}"))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// The script's lines up to its first line of code (the header), as [`read_header`] reads
/// them.
fn leading_comments(source: &str) -> Vec<&str> {
    source
        .lines()
        .take_while(|line| {
            let t = line.trim();
            t.is_empty() || t.starts_with("//") || t.starts_with("#!")
        })
        .collect()
}

fn failed(code: ErrorCode, message: String) -> JobOutcome {
    JobOutcome::Failed(JobError::new(code, message))
}

fn read_script(path: &Path) -> std::result::Result<String, String> {
    // Bounded, and never blocked by a FIFO or fed by a device (see `pgvault_core::limits`).
    pgvault_core::limits::read_text(path, "script", MAX_SCRIPT_BYTES).map_err(|e| e.to_string())
}

/// Runs `source` on a blocking thread (bindings block on the runtime) within the options'
/// limits, and returns how it ended with what it printed.
async fn evaluate(
    svc: Arc<Pgvault>,
    name: &str,
    source: String,
    grants: Option<Grants>,
    options: &RunOptions,
    extend: impl FnOnce(&mut Engine, &ScriptContext) + Send + 'static,
) -> (JobOutcome, String) {
    let confined = grants.is_some();
    let mut ctx = ScriptContext::operator(svc, tokio::runtime::Handle::current());
    ctx.sandbox = grants.map(Arc::new);
    let redactor = ctx.redactor.clone();
    let interrupt = Interrupt::new();
    let timed_out = Arc::new(AtomicBool::new(false));
    let stopped = Arc::new(AtomicBool::new(false));

    let stop_watch = options.stop.clone().map(|stop| {
        let (interrupt, stopped) = (interrupt.clone(), stopped.clone());
        tokio::spawn(async move {
            stop.raised().await;
            stopped.store(true, Ordering::SeqCst);
            interrupt.raise_because("the host is stopping");
        })
    });

    // What it prints, capped as the job will keep it, in bounded memory.
    let output = Arc::new(Mutex::new(CappedText::new(SCRIPT_OUTPUT_LIMIT)));
    let thread = {
        let (limits, echo) = (options.limits.clone(), options.echo);
        let (output, interrupt, timed_out) = (output.clone(), interrupt.clone(), timed_out.clone());
        let redactor = redactor.clone();
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || -> std::result::Result<(), Box<EvalAltResult>> {
            let mut engine = new_engine(ctx.clone());
            limits.apply(&mut engine);
            if confined {
                engine.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
                engine.disable_symbol("eval");
            }
            capture_output(&mut engine, output, echo, redactor);
            interrupt.stop_loops(&mut engine);
            extend(&mut engine, &ctx);
            let ast = engine.compile(&source)?;
            // The wall time is the script's: it starts now that the engine is ready.
            let _deadline = match limits.wall_time {
                Some(wall_time) => Some(keep_deadline(wall_time, &interrupt, &timed_out).map_err(
                    |e| {
                        crate::script::fail(format!(
                            "{name}: cannot start the thread that keeps the script's wall time: {e}"
                        ))
                    },
                )?),
                None => None,
            };
            interrupt.watch(|| engine.run_ast(&ast))
        })
    };
    // Dropped before the script ended (the caller stopped waiting), the script is stopped too,
    // rather than left running on its thread behind a job already ended as Cancelled.
    let stop_on_drop = StopOnDrop(Some(interrupt.clone()));
    let joined = thread.await;
    stop_on_drop.disarm();
    if let Some(watch) = stop_watch {
        watch.abort();
    }
    let output = output.lock().unwrap_or_else(PoisonError::into_inner).text();

    let outcome = match joined {
        Ok(Ok(())) => JobOutcome::Completed {
            recovery_point_id: None,
        },
        Ok(Err(_)) if stopped.load(Ordering::SeqCst) => JobOutcome::Cancelled,
        Ok(Err(e)) if timed_out.load(Ordering::SeqCst) => {
            let wall_time = options.limits.wall_time.unwrap_or_default();
            failed(
                SCRIPT_TIMED_OUT,
                located(
                    name,
                    &e,
                    &format!(
                        "the script ran longer than its wall time of {} and was stopped",
                        human(wall_time)
                    ),
                ),
            )
        }
        Ok(Err(e)) => classify(name, &e, &options.limits),
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_owned());
            tracing::error!(script = %name, panic = %what, "pgvault panicked while running a script; the host carries on");
            failed(
                SCRIPT_PANICKED,
                format!(
                    "{name}: pgvault panicked while running the script ({what}); this is a bug in \
                     pgvault, please report it with the script"
                ),
            )
        }
        // The runtime is shutting down and never started the thread.
        Err(_) => JobOutcome::Cancelled,
    };
    // A script can put a secret in its error (`throw`); the job, the log and the host's log
    // keep the error, so it is redacted as the output is.
    let outcome = match outcome {
        JobOutcome::Failed(error) => JobOutcome::Failed(JobError::new(
            error.code.clone(),
            redactor.redact(&error.message),
        )),
        other => other,
    };
    (outcome, output)
}

/// Raises its interrupt when dropped armed: the future waiting for the script was dropped.
struct StopOnDrop(Option<Interrupt>);

impl StopOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(interrupt) = self.0.take() {
            interrupt.raise_because("the script's run was cancelled");
        }
    }
}

/// Raises `interrupt` once `wall_time` has passed, from a thread of its own, unless the
/// returned guard was dropped first (the script ended, or its thread unwound).
fn keep_deadline(
    wall_time: Duration,
    interrupt: &Interrupt,
    timed_out: &Arc<AtomicBool>,
) -> io::Result<Sender<()>> {
    let (guard, finished) = channel::<()>();
    let (interrupt, timed_out) = (interrupt.clone(), timed_out.clone());
    std::thread::Builder::new()
        .name("script-deadline".into())
        .spawn(move || {
            if let Err(RecvTimeoutError::Timeout) = finished.recv_timeout(wall_time) {
                timed_out.store(true, Ordering::SeqCst);
                interrupt.raise_because(format!(
                    "the script's wall time of {} ran out",
                    human(wall_time)
                ));
            }
        })?;
    Ok(guard)
}

/// A failed run's outcome: a limit, or any other script error.
fn classify(name: &str, err: &EvalAltResult, limits: &SandboxLimits) -> JobOutcome {
    let mut inner = err;
    while let EvalAltResult::ErrorInFunctionCall(_, _, e, _) = inner {
        inner = e;
    }
    let limit = match inner {
        EvalAltResult::ErrorTooManyOperations(_) => {
            Some(format!("at most {} operations", limits.max_operations))
        }
        EvalAltResult::ErrorStackOverflow(_) => Some(format!(
            "at most {} nested function calls",
            limits.max_call_levels
        )),
        EvalAltResult::ErrorDataTooLarge(what, _) => Some(if what.contains("string") {
            format!("strings of at most {} bytes", limits.max_string_size)
        } else if what.contains("array") {
            format!("arrays of at most {} elements", limits.max_array_size)
        } else if what.contains("map") {
            format!("maps of at most {} entries", limits.max_map_size)
        } else {
            format!(
                "strings of at most {} bytes, arrays of {} elements, maps of {} entries",
                limits.max_string_size, limits.max_array_size, limits.max_map_size
            )
        }),
        EvalAltResult::ErrorTooManyVariables(_) | EvalAltResult::ErrorTooManyModules(_) => {
            Some("the engine's limits".to_owned())
        }
        EvalAltResult::ErrorParsing(ParseErrorType::ExprTooDeep, _) => Some(format!(
            "expressions nested at most {} deep",
            limits.max_expr_depth
        )),
        _ => None,
    };
    let described = describe_error(name, err);
    match limit {
        Some(limit) => failed(
            SCRIPT_LIMIT_EXCEEDED,
            format!("{described} (a script may use {limit})"),
        ),
        None => failed(SCRIPT_ERROR, described),
    }
}

/// `message` placed where `err` happened: `file:line:col: message`.
fn located(name: &str, err: &EvalAltResult, message: &str) -> String {
    let pos = err.position();
    match (pos.line(), pos.position()) {
        (Some(l), Some(c)) => format!("{name}:{l}:{c}: {message}"),
        (Some(l), None) => format!("{name}:{l}: {message}"),
        _ => format!("{name}: {message}"),
    }
}

/// `1h`, `90s`, `250ms`: a wall time as an operator wrote it.
fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 || secs == 0 {
        format!("{}ms", d.as_millis())
    } else if secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// Sends `print` and `debug` to `output` (and stdout when echoing), one line each, with
/// every secret the redactor knows replaced by `<redacted>`.
fn capture_output(
    engine: &mut Engine,
    output: Arc<Mutex<CappedText>>,
    echo: bool,
    redactor: Redactor,
) {
    let line = move |text: &str| {
        let text = &redactor.redact(text);
        output
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_line(text);
        if echo {
            // A closed stdout (`pgvault run | head`) must not stop the script.
            let _ = writeln!(io::stdout().lock(), "{text}");
        }
    };
    let print = line.clone();
    engine.on_print(move |text| print(text));
    // As Rhai's default: the position, then the value.
    engine.on_debug(move |text, _source, pos| {
        if pos.is_none() {
            line(text);
        } else {
            line(&format!("{pos:?} | {text}"));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dropin::ScriptsDir;
    use crate::scheduler::DueBackup;
    use crate::script::{CANCELLED, DESTRUCTIVE_REFUSED, RhaiResult, coded};
    use pgvault_core::engine::home::Home;
    use pgvault_core::model::job::JobStatus;
    use std::fs;

    fn t(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn service() -> (tempfile::TempDir, Arc<Pgvault>) {
        let dir = tempfile::tempdir().unwrap();
        let svc = Pgvault::open(Home::at(dir.path().join("home"))).unwrap();
        (dir, Arc::new(svc))
    }

    // ---- running ----

    async fn run(svc: &Arc<Pgvault>, path: &Path, options: &RunOptions) -> RanScript {
        run_script_file(
            svc.clone(),
            &ReadyScript::run_once(path),
            options,
            t("2026-11-21T02:00:00Z"),
        )
        .await
        .unwrap()
    }

    /// Writes `source` as `name` in a scripts folder under `home`.
    fn drop_script(home: &tempfile::TempDir, name: &str, source: &str) -> PathBuf {
        let dir = home.path().join("scripts");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        fs::write(&path, source).unwrap();
        path
    }

    fn error_of(ran: &RanScript) -> &JobError {
        ran.job
            .state
            .error()
            .unwrap_or_else(|| panic!("expected a failed job: {:?}", ran.job.state))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_completed_script_keeps_its_output_and_moves_to_done() {
        let (home, svc) = service();
        let path = drop_script(&home, "report.rhai", "print(\"3 vaults\");\ndebug(42);\n");
        // A script of this name already ran once: the new one gets a timestamp.
        let done = home.path().join("scripts/done");
        fs::create_dir_all(&done).unwrap();
        fs::write(done.join("report.rhai"), "earlier").unwrap();

        let ran = run(&svc, &path, &RunOptions::drop_in(false)).await;
        assert_eq!(
            ran.job.status(),
            JobStatus::Completed,
            "{:?}",
            ran.job.state
        );
        let output = "3 vaults\n2:1 | 42\n";
        let stored = svc.history().get(ran.job.id).unwrap().unwrap();
        assert_eq!(stored.script_output.as_deref(), Some(output));
        assert_eq!(stored.script_path.as_deref(), Some(path.to_str().unwrap()));
        assert_eq!(stored.state.start(), t("2026-11-21T02:00:00Z"));

        let moved = done.join("20261121T020000Z-report.rhai");
        assert_eq!(ran.moved_to.as_deref(), Some(moved.as_path()));
        assert!(!path.exists() && moved.is_file());
        assert_eq!(
            fs::read_to_string(done.join("report.rhai")).unwrap(),
            "earlier"
        );
        let log = fs::read_to_string(ran.log.as_ref().unwrap()).unwrap();
        assert_eq!(ran.log, Some(done.join("20261121T020000Z-report.log")));
        for part in [
            &format!("job:    {}", ran.job.id),
            "status: Completed",
            "start:  2026-11-21T02:00:00+00:00",
            output,
        ] {
            assert!(log.contains(part), "{part:?} not in\n{log}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_script_fails_its_job_with_the_position_and_moves_to_failed() {
        let (home, svc) = service();
        let path = drop_script(
            &home,
            "broken.rhai",
            "print(\"starting\");\nlet v = vault(\"NoSuchVault\");\n",
        );
        let ran = run(&svc, &path, &RunOptions::drop_in(false)).await;
        let error = error_of(&ran);
        assert_eq!(error.code, SCRIPT_ERROR);
        assert!(
            error.message.starts_with(&format!("{}:2:", path.display()))
                && error.message.contains("UserErrorVaultNotFound"),
            "{}",
            error.message
        );
        let moved = home.path().join("scripts/failed/broken.rhai");
        assert_eq!(ran.moved_to, Some(moved.clone()));
        let log = fs::read_to_string(moved.with_extension("log")).unwrap();
        assert!(log.contains("status: Failed"), "{log}");
        assert!(
            log.contains(&format!("error:  ScriptError: {}", error.message)),
            "{log}"
        );
        assert!(log.ends_with("--- output ---\nstarting\n"), "{log}");

        // A syntax error is a script error too, placed where the parser stopped.
        let path = drop_script(&home, "syntax.rhai", "let x = ;\n");
        let ran = run(&svc, &path, &RunOptions::drop_in(false)).await;
        assert_eq!(error_of(&ran).code, SCRIPT_ERROR);
        assert!(
            error_of(&ran)
                .message
                .starts_with(&format!("{}:1:", path.display())),
            "{}",
            error_of(&ran).message
        );
    }

    /// Runs `source` as a drop-in with `limits`, returning the failed job's error.
    async fn fails_within(limits: SandboxLimits, source: &str) -> JobError {
        let (home, svc) = service();
        let path = drop_script(&home, "limits.rhai", source);
        let options = RunOptions {
            limits,
            ..RunOptions::drop_in(false)
        };
        let ran = run(&svc, &path, &options).await;
        assert!(
            home.path().join("scripts/failed/limits.rhai").is_file(),
            "filed under failed/"
        );
        error_of(&ran).clone()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runaway_scripts_end_as_failed_jobs() {
        let few_operations = SandboxLimits {
            max_operations: 10_000,
            ..SandboxLimits::default()
        };
        let error = fails_within(few_operations, "let n = 0;\nloop { n += 1; }").await;
        assert_eq!(error.code, SCRIPT_LIMIT_EXCEEDED, "{error:?}");
        assert!(
            error.message.contains("at most 10000 operations"),
            "{error:?}"
        );

        // `try` cannot catch a limit.
        let error = fails_within(
            SandboxLimits::default(),
            "let s = \"x\";\ntry { loop { s += s; } } catch { print(\"caught\"); }",
        )
        .await;
        assert_eq!(error.code, SCRIPT_LIMIT_EXCEEDED, "{error:?}");
        assert!(error.message.contains(":2:"), "{error:?}");

        let error = fails_within(
            SandboxLimits::default(),
            "let a = [];\nfor i in 0..1000000 { a.push(i); }",
        )
        .await;
        assert_eq!(error.code, SCRIPT_LIMIT_EXCEEDED, "{error:?}");

        let error = fails_within(
            SandboxLimits::default(),
            "fn deeper(n) { deeper(n + 1) }\ndeeper(0);",
        )
        .await;
        assert_eq!(error.code, SCRIPT_LIMIT_EXCEEDED, "{error:?}");
        assert!(
            error.message.contains("at most 64 nested function calls"),
            "{error:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_script_past_its_wall_time_is_stopped() {
        let unlimited_but_brief = SandboxLimits {
            wall_time: Some(Duration::from_millis(50)),
            ..SandboxLimits::operator()
        };
        let error = fails_within(unlimited_but_brief, "print(\"on it\");\nloop { }").await;
        assert_eq!(error.code, SCRIPT_TIMED_OUT, "{error:?}");
        assert!(
            error.message.contains("longer than its wall time of 50ms"),
            "{error:?}"
        );
    }

    /// Registers `wait_forever()`, a pgvault call that never finishes (a backup of an
    /// endless database), and `boom()`, a binding that panics.
    fn misbehaving(engine: &mut Engine, ctx: &ScriptContext) {
        let c = ctx.clone();
        engine.register_fn("wait_forever", move || -> RhaiResult<()> {
            c.block_on(std::future::pending::<Result<()>>())
                .map_err(coded)
        });
        engine.register_fn("boom", || -> i64 { panic!("a binding went wrong") });
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pgvault_call_past_the_wall_time_is_cancelled() {
        let (home, svc) = service();
        let path = drop_script(
            &home,
            "slow.rhai",
            "print(\"backing up\");\nwait_forever();\nprint(\"after\");",
        );
        let options = RunOptions {
            limits: SandboxLimits {
                wall_time: Some(Duration::from_millis(50)),
                ..SandboxLimits::default()
            },
            ..RunOptions::drop_in(false)
        };
        // What the endless call returned, seen from inside the binding.
        let returned = Arc::new(Mutex::new(None));
        let seen = returned.clone();
        let extend = move |engine: &mut Engine, ctx: &ScriptContext| {
            let c = ctx.clone();
            engine.register_fn("wait_forever", move || -> RhaiResult<()> {
                let result = c.block_on(std::future::pending::<Result<()>>());
                *seen.lock().unwrap() = Some(
                    result
                        .as_ref()
                        .err()
                        .map(|e| format!("{}: {}", e.code, e.message)),
                );
                result.map_err(coded)
            });
        };
        // A guard, not a wait: the run ends in milliseconds unless cancelling is broken.
        let ran = tokio::time::timeout(
            Duration::from_secs(60),
            run_with(
                svc.clone(),
                &ReadyScript::run_once(&path),
                &options,
                t("2026-11-21T02:00:00Z"),
                extend,
            ),
        )
        .await
        .expect("the endless call was not cancelled")
        .unwrap();
        let error = error_of(&ran);
        assert_eq!(error.code, SCRIPT_TIMED_OUT);
        assert!(
            error.message.starts_with(&format!("{}:2:", path.display())),
            "stopped at the call: {error:?}"
        );
        let returned = returned
            .lock()
            .unwrap()
            .clone()
            .flatten()
            .unwrap_or_default();
        assert!(
            returned.contains(CANCELLED.as_str())
                && returned.contains("the script's wall time of 50ms ran out"),
            "{returned}"
        );
        assert_eq!(ran.job.script_output.as_deref(), Some("backing up\n"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_in_a_binding_fails_the_job_not_the_host() {
        let (home, svc) = service();
        let path = drop_script(&home, "panics.rhai", "print(\"before\");\nboom();\n");
        let ran = run_with(
            svc.clone(),
            &ReadyScript::run_once(&path),
            &RunOptions::drop_in(false),
            t("2026-11-21T02:00:00Z"),
            misbehaving,
        )
        .await
        .unwrap();
        let error = error_of(&ran);
        assert_eq!(error.code, SCRIPT_PANICKED);
        assert!(error.message.contains("a binding went wrong"), "{error:?}");
        let stored = svc.history().get(ran.job.id).unwrap().unwrap();
        assert_eq!(stored.script_output.as_deref(), Some("before\n"));
        assert!(home.path().join("scripts/failed/panics.rhai").is_file());
        // The host carries on: the next script runs.
        let next = drop_script(&home, "next.rhai", "1 + 1");
        let ran = run(&svc, &next, &RunOptions::drop_in(false)).await;
        assert_eq!(ran.job.status(), JobStatus::Completed);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_host_stopping_cancels_the_script() {
        let (home, svc) = service();
        let path = drop_script(&home, "long.rhai", "wait_forever();");
        let stop = Interrupt::new();
        stop.raise();
        let options = RunOptions {
            stop: Some(stop),
            ..RunOptions::drop_in(false)
        };
        // A guard, not a wait: the run ends at once unless stopping is broken.
        let ran = tokio::time::timeout(
            Duration::from_secs(60),
            run_with(
                svc.clone(),
                &ReadyScript::run_once(&path),
                &options,
                t("2026-11-21T02:00:00Z"),
                misbehaving,
            ),
        )
        .await
        .expect("the stop did not reach the endless call")
        .unwrap();
        assert_eq!(ran.job.status(), JobStatus::Cancelled);
        assert!(home.path().join("scripts/failed/long.rhai").is_file());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn drop_ins_cannot_import_files_or_eval() {
        let (home, svc) = service();
        // Outside the scripts folder, by its full path (without `.rhai`, as Rhai imports).
        let helper = home.path().join("helper.rhai");
        fs::write(&helper, "fn helped() { 41 }").unwrap();
        let import = format!(
            "import \"{}\" as h;\nprint(h::helped() + 1);",
            helper.with_extension("").display()
        );
        let cases = [
            ("importing.rhai", import.as_str(), "helper"),
            ("evaluating.rhai", "print(eval(\"40 + 2\"));", "eval"),
        ];
        for (name, source, named) in cases {
            let path = drop_script(&home, name, source);
            let ran = run(&svc, &path, &RunOptions::drop_in(true)).await;
            let error = error_of(&ran);
            assert_eq!(error.code, SCRIPT_ERROR, "{name}");
            assert!(
                error.message.starts_with(&format!("{}:", path.display()))
                    && error.message.contains(named),
                "{name}: {error:?}"
            );
            assert_eq!(ran.job.script_output, None, "{name} did not run");
            // The operator's own scripts may.
            let path = drop_script(&home, name, source);
            let ran = run(&svc, &path, &RunOptions::operator()).await;
            assert_eq!(
                ran.job.script_output.as_deref(),
                Some("42\n"),
                "{name}: {:?}",
                ran.job.state
            );
            assert!(path.is_file(), "the operator's file stays where it is");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn drop_ins_read_only_the_variables_the_host_allows() {
        let (home, svc) = service();
        // PATH is always set; a drop-in may not read it, nor any PGVAULT_* variable, unless
        // the host lists it (the README keeps a restore secret in PGVAULT_RESTORE_SECRET).
        for name in ["PATH", "PGVAULT_SURELY_UNSET_SETTING"] {
            let path = drop_script(&home, "nosy.rhai", &format!("print(env(\"{name}\"));"));
            let ran = run(&svc, &path, &RunOptions::drop_in(true)).await;
            let error = error_of(&ran);
            assert!(
                error.message.contains(&format!(
                    "UserErrorScriptNotAllowed: a script may read only the environment \
                     variables the host allows, and `{name}` is not one"
                )),
                "{error:?}"
            );
            assert_eq!(ran.job.script_output, None);
        }
        let allowed = RunOptions::sandboxed(Grants {
            env: vec!["PGVAULT_SURELY_*".into()],
            ..Grants::default()
        });
        let path = drop_script(
            &home,
            "config.rhai",
            "print(env(\"PGVAULT_SURELY_UNSET_SETTING\") ?? \"default\");",
        );
        let ran = run(&svc, &path, &allowed).await;
        assert_eq!(ran.job.script_output.as_deref(), Some("default\n"));
        // The header narrows: this script gives the allowed variables up.
        let path = drop_script(
            &home,
            "narrow.rhai",
            "// env: PGVAULT_SURELY_OTHER\nprint(env(\"PGVAULT_SURELY_UNSET_SETTING\"));",
        );
        let ran = run(&svc, &path, &allowed).await;
        assert!(
            error_of(&ran).message.contains("is not one"),
            "{:?}",
            ran.job.state
        );
        // And cannot widen: a header asking for more fails before the script runs.
        let path = drop_script(&home, "wide.rhai", "// env: PATH\nprint(1);");
        let ran = run(&svc, &path, &allowed).await;
        let error = error_of(&ran);
        assert!(
            error.message.starts_with(&format!(
                "{}:1: `PATH` is not an environment variable the host allows",
                path.display()
            )),
            "{error:?}"
        );
        assert_eq!(ran.job.script_output, None, "not run");
        // The operator's own scripts read anything.
        let path = drop_script(&home, "nosy.rhai", "print(env(\"PATH\") != ());");
        let ran = run(&svc, &path, &RunOptions::operator()).await;
        assert_eq!(ran.job.script_output.as_deref(), Some("true\n"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn secrets_are_redacted_from_output_and_errors() {
        let (home, svc) = service();
        let secret = home.path().join("db.secret");
        fs::write(&secret, "Server=db;User Id=u;Password=Pa55-word-x;").unwrap();
        // A script that hands pgvault a file: reference, then tries to show its password.
        let source = format!(
            r#"try {{ server_databases(#{{ datasource_type: "AzureDatabaseForPostgreSQLFlexibleServer",
    datasource_id: "postgres://127.0.0.1:1/postgres", secret_store_type: "File",
    secret_store_uri: "file://{}" }}); }} catch {{ }}
print("pw Pa55-word-x");
throw "Pa55-word-x";"#,
            secret.display()
        );
        for options in [RunOptions::drop_in(false), RunOptions::operator()] {
            let path = drop_script(&home, "leak.rhai", &source);
            let options = RunOptions {
                echo: false,
                ..options
            };
            let ran = run(&svc, &path, &options).await;
            assert_eq!(ran.job.script_output.as_deref(), Some("pw <redacted>\n"));
            let error = error_of(&ran);
            assert!(
                error.message.contains("<redacted>") && !error.message.contains("Pa55"),
                "{error:?}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sweeps_at_another_time_are_destructive() {
        let (home, svc) = service();
        let root = vault_with_points(&home, &svc, &["rp1", "rp2", "rp3"]).await;
        let sweep = r#"vault("V").retention_sweep(#{ at: "2099-01-01" });"#;
        let path = drop_script(&home, "sweep.rhai", sweep);
        let ran = run(&svc, &path, &RunOptions::drop_in(false)).await;
        assert!(
            error_of(&ran).message.contains(&format!(
                "{DESTRUCTIVE_REFUSED}: retention_sweep with `at` deletes recovery points a \
                 sweep now would keep"
            )),
            "{:?}",
            ran.job.state
        );
        for id in ["rp1", "rp2", "rp3"] {
            assert!(
                root.join(format!("recovery-points/db1/{id}.json"))
                    .is_file()
            );
        }
        // A plan at any time, and a sweep now, are allowed.
        let path = drop_script(
            &home,
            "plan.rhai",
            r#"let v = vault("V");
v.retention_sweep(#{ at: "2099-01-01", dry_run: true });
v.retention_sweep();"#,
        );
        let ran = run(&svc, &path, &RunOptions::drop_in(false)).await;
        assert_eq!(
            ran.job.status(),
            JobStatus::Completed,
            "{:?}",
            ran.job.state
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn drop_ins_make_no_vaults() {
        let (home, svc) = service();
        let elsewhere = home.path().join("elsewhere");
        let path = drop_script(
            &home,
            "vault.rhai",
            &format!(
                r#"new_vault("X", #{{ storage_url: "file://{}" }});"#,
                elsewhere.display()
            ),
        );
        let ran = run(&svc, &path, &RunOptions::drop_in(true)).await;
        assert!(
            error_of(&ran)
                .message
                .contains("UserErrorScriptNotAllowed: new_vault is refused to drop-in scripts"),
            "{:?}",
            ran.job.state
        );
        assert!(!elsewhere.exists());
        assert!(svc.vault_names().unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn operator_scripts_have_bounded_strings() {
        let (home, svc) = service();
        let path = drop_script(&home, "double.rhai", "let s = \"x\";\nloop { s += s; }");
        let ran = run(
            &svc,
            &path,
            &RunOptions {
                echo: false,
                ..RunOptions::operator()
            },
        )
        .await;
        let error = error_of(&ran);
        assert_eq!(error.code, SCRIPT_LIMIT_EXCEEDED);
        assert!(
            error
                .message
                .ends_with("(a script may use strings of at most 67108864 bytes)"),
            "{error:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bad_header_fails_without_running() {
        let (home, svc) = service();
        let path = drop_script(
            &home,
            "nightly.rhai",
            "// schedule: nightly\nprint(\"ran\");",
        );
        let mut scripts = ScriptsDir::new(home.path().join("scripts"), Duration::ZERO);
        let ready = scripts.scan(t("2026-11-21T02:00:00Z"));
        let ran = run_script_file(
            svc.clone(),
            &ready[0],
            &RunOptions::drop_in(false),
            t("2026-11-21T02:00:00Z"),
        )
        .await
        .unwrap();
        let error = error_of(&ran);
        assert_eq!(error.code, SCRIPT_ERROR);
        assert!(
            error
                .message
                .starts_with(&format!("{}:1: `nightly`", path.display())),
            "{error:?}"
        );
        assert_eq!(ran.job.script_output, None, "not run");
        let log = fs::read_to_string(home.path().join("scripts/failed/nightly.log")).unwrap();
        assert!(log.contains("is not a repeating interval"), "{log}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_recurring_run_records_its_occurrence_and_stays() {
        let (home, svc) = service();
        let path = drop_script(
            &home,
            "nightly.rhai",
            "// schedule: R/2026-01-01T02:00:00+00:00/P1D\nprint(\"ran\");",
        );
        let due = DueBackup {
            due: t("2026-11-21T02:00:00Z"),
            late: true,
            missed: 3,
        };
        let ran = run_script_file(
            svc.clone(),
            &ReadyScript {
                path: path.clone(),
                kind: ScriptKind::Recurring(due),
            },
            &RunOptions::drop_in(false),
            t("2026-11-21T09:00:00Z"),
        )
        .await
        .unwrap();
        assert_eq!(ran.job.status(), JobStatus::Completed);
        assert_eq!(
            ran.job.scheduled,
            Some(ScheduledRun {
                due_time: due.due,
                late: true
            })
        );
        assert_eq!(ran.job.extended_details["MissedOccurrences"], "3");
        assert!(!ran.job.is_user_triggered);
        assert!(path.is_file() && ran.moved_to.is_none() && ran.log.is_none());
        assert_eq!(
            svc.history().latest_script_run(&job_path(&path)).unwrap(),
            Some(t("2026-11-21T09:00:00Z"))
        );
    }

    /// A vault `V` with one backup instance `db1` holding the recovery points `ids`, written
    /// as the vault stores them (taking real backups needs PostgreSQL; deleting does not).
    async fn vault_with_points(home: &tempfile::TempDir, svc: &Pgvault, ids: &[&str]) -> PathBuf {
        use pgvault_core::engine::protect::{InitializeArgs, initialize_instance};
        use pgvault_core::store::manifest::{
            BackupStats, ChunkerParams, DatasourceInfo, MANIFEST_FORMAT, Manifest, PostgresInfo,
            StreamInfo,
        };
        let root = home.path().join("vault");
        svc.create_vault(
            "V",
            &Default::default(),
            Some(&format!("file://{}", root.display())),
        )
        .await
        .unwrap();
        let vault = svc.vault("V").await.unwrap();
        let mut instance = initialize_instance(&InitializeArgs {
            datasource_type: "AzureDatabaseForPostgreSQLFlexibleServer".into(),
            datasource_id: "postgres://db:5432/db1".into(),
            policy_id: "P".into(),
            secret_store_type: "Environment".into(),
            secret_store_uri: "env:DB1".into(),
            location: None,
        })
        .unwrap();
        instance.name = "db1".into();
        fs::create_dir_all(root.join("instances")).unwrap();
        fs::write(
            root.join("instances/db1.json"),
            serde_json::to_vec(&vault.instance_json(&instance)).unwrap(),
        )
        .unwrap();
        fs::create_dir_all(root.join("recovery-points/db1")).unwrap();
        for id in ids {
            let manifest = Manifest {
                format_version: MANIFEST_FORMAT,
                recovery_point_id: (*id).into(),
                backup_instance_name: "db1".into(),
                recovery_point_time: t("2026-11-20T02:00:00Z"),
                policy_name: "P".into(),
                policy_rule_name: "BackupDaily".into(),
                retention_tag_name: "Default".into(),
                expiry_time: None,
                rehydration_expiry_time: None,
                job_id: String::new(),
                datasource: DatasourceInfo {
                    resource_id: "postgres://db:5432/db1".into(),
                    server: "db".into(),
                    port: 5432,
                    database: "db1".into(),
                },
                postgres: PostgresInfo {
                    server_version: "17.0".into(),
                    pg_dump_version: "17.0".into(),
                    database_size: 0,
                    username_used: "backup".into(),
                },
                chunker: ChunkerParams {
                    algorithm: "fastcdc".into(),
                    min_size: 1,
                    avg_size: 2,
                    max_size: 4,
                },
                stream: StreamInfo {
                    length: 0,
                    chunks_blake3: String::new(),
                    chunk_count: 0,
                    chunk_lists: Vec::new(),
                },
                archive: None,
                contents: None,
                stats: BackupStats {
                    bytes_read: 0,
                    bytes_stored: 0,
                    new_chunks: 0,
                    duration_ms: 0,
                },
            };
            fs::write(
                root.join(format!("recovery-points/db1/{id}.json")),
                manifest.to_bytes(),
            )
            .unwrap();
        }
        root
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn destructive_calls_need_the_hosts_permission() {
        let (home, svc) = service();
        let root = vault_with_points(&home, &svc, &["rp1", "rp2", "rp3"]).await;
        let point = |id: &str| root.join(format!("recovery-points/db1/{id}.json"));
        let cases = [
            (
                "delete_recovery_point",
                r#"vault("V").delete_recovery_point("db1", "rp1")"#,
            ),
            (
                "delete_backup_instance",
                r#"vault("V").delete_backup_instance("db1")"#,
            ),
        ];
        for (function, call) in cases {
            let path = drop_script(&home, "delete.rhai", &format!("let jobs = {call};"));
            let ran = run(&svc, &path, &RunOptions::drop_in(false)).await;
            let error = error_of(&ran);
            assert_eq!(error.code, SCRIPT_ERROR);
            assert!(
                error.message.starts_with(&format!("{}:1:", path.display()))
                    && error.message.contains(&format!(
                        "{DESTRUCTIVE_REFUSED}: {function} deletes backup data and is refused to \
                         drop-in scripts; start the host with --allow-destructive-scripts to allow it"
                    )),
                "{error:?}"
            );
        }
        assert!(
            ["rp1", "rp2", "rp3"].iter().all(|id| point(id).is_file()),
            "nothing deleted"
        );

        // Allowed: one point, then the instance with the rest.
        let path = drop_script(
            &home,
            "delete.rhai",
            r#"let job = vault("V").delete_recovery_point("db1", "rp1");
print(`${job.properties.pgvaultOperation} ${job.properties.status}`);
let jobs = vault("V").delete_backup_instance("db1");
print(jobs.len());"#,
        );
        let ran = run(&svc, &path, &RunOptions::drop_in(true)).await;
        assert_eq!(
            ran.job.status(),
            JobStatus::Completed,
            "{:?}",
            ran.job.state
        );
        assert_eq!(
            ran.job.script_output.as_deref(),
            Some("DeleteRecoveryPoint Completed\n2\n")
        );
        assert!(!point("rp1").exists() && !point("rp2").exists() && !point("rp3").exists());
        assert!(!root.join("instances/db1.json").exists());
        let deletions = svc
            .jobs(
                &pgvault_core::model::job::JobFilter::default()
                    .operation(pgvault_core::model::job::Operation::DeleteRecoveryPoint),
            )
            .unwrap();
        assert_eq!(deletions.len(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scripts_suspend_stop_and_resume_protection() {
        let (home, svc) = service();
        vault_with_points(&home, &svc, &["rp1"]).await;
        let path = drop_script(
            &home,
            "states.rhai",
            r#"let v = vault("V");
print(v.suspend_backups("db1").properties.currentProtectionState);
print(v.stop_protection(v.instances()[0]).properties.currentProtectionState);
print(v.resume_protection("db1").properties.currentProtectionState);
v.stop_protection("db1");
v.suspend_backups("nope");"#,
        );
        // Suspending and stopping end backups: a drop-in needs the host's permission.
        let refused = run(&svc, &path, &RunOptions::drop_in(false)).await;
        let error = error_of(&refused);
        assert!(
            error.message.starts_with(&format!("{}:2:", path.display()))
                && error.message.contains(&format!(
                    "{DESTRUCTIVE_REFUSED}: suspend_backups stops the backups of an instance"
                )),
            "{error:?}"
        );
        let path = drop_script(
            &home,
            "states.rhai",
            &fs::read_to_string(home.path().join("scripts/failed/states.rhai")).unwrap(),
        );
        let ran = run(&svc, &path, &RunOptions::drop_in(true)).await;
        assert_eq!(
            ran.job.script_output.as_deref(),
            Some("BackupSchedulesSuspended\nProtectionStopped\nProtectionConfigured\n")
        );
        let error = error_of(&ran);
        assert!(
            error.message.starts_with(&format!("{}:6:", path.display()))
                && error.message.contains("UserErrorBackupInstanceNotFound"),
            "{error:?}"
        );
        let instance = svc.vault("V").await.unwrap().instance("db1").await.unwrap();
        assert_eq!(
            instance.properties.current_protection_state.as_deref(),
            Some(pgvault_core::model::instance::PROTECTION_STOPPED)
        );
        assert!(
            home.path()
                .join("vault/recovery-points/db1/rp1.json")
                .is_file(),
            "recovery points are kept"
        );
    }

    #[test]
    fn captured_output_keeps_its_head_and_tail_in_bounded_memory() {
        let mut out = CappedText::new(SCRIPT_OUTPUT_LIMIT);
        out.push_line("FIRST");
        for i in 0..200_000 {
            out.push_line(&format!("line {i} é"));
            assert!(out.held() <= SCRIPT_OUTPUT_LIMIT / 4 + 2 * SCRIPT_OUTPUT_LIMIT + 32);
        }
        out.push_line("LAST");
        let text = out.text();
        assert!(text.len() <= SCRIPT_OUTPUT_LIMIT, "{}", text.len());
        assert!(text.starts_with("FIRST\nline 0 é\n"), "{}", &text[..40]);
        assert!(text.ends_with("line 199999 é\nLAST\n"));
        let total: usize = 6
            + (0..200_000)
                .map(|i| format!("line {i} é\n").len())
                .sum::<usize>()
            + 5;
        let dropped: usize = text
            .split_once(" bytes of output left out")
            .and_then(|(before, _)| before.rsplit(' ').next()?.parse().ok())
            .unwrap();
        let note = format!(
            "\n[... pgvault: {} bytes of output left out ...]\n",
            dropped
        );
        assert!(text.contains(&note));
        assert_eq!(
            text.len() - note.len(),
            total - dropped,
            "nothing else lost"
        );
        assert_eq!(
            pgvault_core::model::job::cap_text(&text, SCRIPT_OUTPUT_LIMIT),
            text
        );
    }
}
