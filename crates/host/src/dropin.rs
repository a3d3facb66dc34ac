//! Drop-in scripts: the watched scripts folder, and the filing of the scripts dropped in it.
//! Running a script is [`crate::script_run`]'s (re-exported here, where the host and
//! `pgvault run` have always found it).
//!
//! A `.rhai` file that appears in the scripts folder (`--scripts-dir`, by default
//! `$PGVAULT_HOME/scripts`) runs once and then moves to `done/` or `failed/` with a `.log`
//! beside it; one whose leading comment lines carry `// schedule: R/2025-01-01T02:00:00+00:00/P1D`
//! (and optionally `// time-zone: Europe/Berlin`) is a recurring runbook instead: it stays where
//! it is and runs at each occurrence, with the scheduled backups' rules (the latest occurrence
//! due runs once; occurrences missed while the host was down run once, late).
//!
//! # The API the host's agenda calls
//!
//! ```text
//! let mut scripts = ScriptsDir::new(scripts_dir, DEFAULT_SETTLE);
//! let options = RunOptions::sandboxed(grants);   // the host's flags; plus `stop` for shutdown
//! // At start (and in `pgvault tick`, which has no earlier scan to compare with):
//! let ready = scripts.scan_at_startup(now, SystemTime::now());
//! // On each file-system event and at scripts.next_wakeup(now):
//! let ready = scripts.scan(now);
//! // And at each schedule deadline (`next_wakeup` includes them):
//! let due = scripts.recurring_due(&svc, now)?;
//! for script in ready.iter().chain(&due) {
//!     let ran = run_script_file(svc.clone(), script, &options, now).await?;
//! }
//! ```
//!
//! - [`ScriptsDir`] finds scripts and decides when they are ready; it reads the folder but
//!   never the clock: every `now` is the caller's, so tests (and `tick --at`) pin time.
//! - [`file_away`] moves a run-once script that ran to `done/` or `failed/` with its log.

//! # Decisions
//!
//! **Stable, not complete.** Nothing tells a reader that a writer has finished a file, so a
//! file is ready once scans have seen it unchanged (size and modification time) for the
//! settle time. A slow writer that pauses longer than that can still be caught half-way:
//! writers should write `name.rhai.tmp` or `.name.rhai` and rename it, which this module
//! ignores until the rename.
//!
//! **One clock, the caller's.** Scans compare what they see with what earlier scans saw at
//! the caller's `now`; the file-system clock only enters through
//! [`ScriptsDir::scan_at_startup`], which is told the file-system time explicitly.
//!
//! **A recurring script's protection start.** `crate::scheduler::due_backup` needs the time
//! the schedule began to apply: it is when this process first saw the file (or, at startup,
//! the file's modification time), or the script's latest job if that is earlier, so that a
//! restart does not forget the runbook existed and an occurrence missed while the host was
//! down still runs (once, late).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufRead, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, TimeDelta, Utc};

use pgvault_core::engine::Result;
use pgvault_core::model::job::{Job, JobStatus};
use pgvault_core::model::schedule::{Schedule, ScheduleField};

use crate::scheduler::{DueBackup, due_backup};
use crate::service::{Pgvault, history_err};

pub use crate::script_run::{
    MAX_SCRIPT_BYTES, RanScript, RunOptions, SCRIPT_ERROR, SCRIPT_LIMIT_EXCEEDED, SCRIPT_PANICKED,
    SCRIPT_TIMED_OUT, SandboxLimits, run_script_file,
};

/// How long a file must stay unchanged before it runs.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(2);

/// Where run-once scripts go after a completed run, under the scripts folder.
pub const DONE_DIR: &str = "done";
/// Where run-once scripts go after a failed or cancelled run, or with a bad header.
pub const FAILED_DIR: &str = "failed";

/// The leading comment lines are read for a header within this many bytes of the start.
const HEADER_BYTES: u64 = 64 * 1024;

// ---- finding scripts ----

/// A script to run now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyScript {
    pub path: PathBuf,
    pub kind: ScriptKind,
}

impl ReadyScript {
    /// A script run as it is, whatever its header says (`pgvault run FILE`).
    pub fn run_once(path: impl Into<PathBuf>) -> Self {
        ReadyScript {
            path: path.into(),
            kind: ScriptKind::RunOnce,
        }
    }
}

/// Why a script runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptKind {
    /// A dropped file: it runs once, then moves to `done/` or `failed/`.
    RunOnce,
    /// An occurrence of a recurring runbook's schedule; the file stays.
    Recurring(DueBackup),
    /// A dropped file whose schedule header is wrong: it is not run but recorded as a failed
    /// job and moved to `failed/`, the message (`path:line: ...`) saying what to fix.
    BadHeader(String),
}

/// The scripts folder as scans have seen it.
#[derive(Debug)]
pub struct ScriptsDir {
    dir: PathBuf,
    settle: TimeDelta,
    /// By file name.
    files: BTreeMap<String, Tracked>,
}

/// What identifies a version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
}

#[derive(Debug)]
struct Tracked {
    stamp: Stamp,
    /// When a scan first saw the file as it is now (the caller's clock).
    unchanged_since: DateTime<Utc>,
    /// When a file of this name was first seen (a recurring script's protection start).
    first_seen: DateTime<Utc>,
    state: FileState,
}

#[derive(Debug)]
enum FileState {
    /// Seen, not yet unchanged for the settle time.
    Settling,
    /// Returned by a scan as a run-once script (or a bad header); not again while it stays
    /// as it is. A file that changes or reappears is a new drop.
    HandedOut,
    Recurring {
        schedule: Schedule,
        /// The occurrence last returned by [`ScriptsDir::recurring_due`], so one that is due
        /// is returned once even before its job is recorded.
        handed_out: Option<DateTime<Utc>>,
    },
}

impl ScriptsDir {
    /// The scripts folder `dir`, where a file runs once it stayed unchanged for `settle`.
    /// The folder need not exist yet: scans of a missing folder find nothing.
    pub fn new(dir: impl Into<PathBuf>, settle: Duration) -> Self {
        ScriptsDir {
            dir: dir.into(),
            settle: TimeDelta::from_std(settle).unwrap_or(TimeDelta::MAX),
            files: BTreeMap::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Looks at the folder at `now` and returns the run-once scripts that became ready: seen
    /// unchanged for the settle time by this and earlier scans. Each is returned once.
    /// Recurring scripts are registered here and returned by [`Self::recurring_due`].
    ///
    /// Only `DIR/*.rhai` counts: not subfolders (`done/`, `failed/`), not dotfiles, not
    /// `*.tmp` or any other name. A folder that cannot be read is logged and yields nothing.
    pub fn scan(&mut self, now: DateTime<Utc>) -> Vec<ReadyScript> {
        self.scan_with(now, None)
    }

    /// [`Self::scan`] for a process that has no earlier scan to compare with (`serve`
    /// starting, `pgvault tick`): a file first seen now whose modification time is at least
    /// the settle time before `fs_now` (the file system's clock, `SystemTime::now()`) counts as
    /// having been unchanged for that long, so it is ready at once; a file modified more
    /// recently settles as usual. A recurring script's protection start is then its
    /// modification time, so a runbook dropped while the host was down is not forgotten.
    pub fn scan_at_startup(&mut self, now: DateTime<Utc>, fs_now: SystemTime) -> Vec<ReadyScript> {
        self.scan_with(now, Some(fs_now))
    }

    fn scan_with(&mut self, now: DateTime<Utc>, fs_now: Option<SystemTime>) -> Vec<ReadyScript> {
        let listed = match list_scripts(&self.dir) {
            Ok(listed) => listed,
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "cannot read the scripts folder");
                }
                BTreeMap::new()
            }
        };
        // A file that left (moved to done/, deleted) is forgotten: if it comes back, it is a
        // new drop.
        self.files.retain(|name, _| listed.contains_key(name));
        let settle = self.settle;
        let mut ready = Vec::new();
        for (name, stamp) in listed {
            let tracked = self.files.entry(name.clone()).or_insert_with(|| {
                // The modification time, on the caller's clock.
                let since = match fs_age(fs_now, stamp.modified) {
                    Some(age) if age >= settle => now - age,
                    _ => now,
                };
                Tracked {
                    stamp,
                    unchanged_since: since,
                    first_seen: since,
                    state: FileState::Settling,
                }
            });
            if tracked.stamp != stamp {
                tracked.stamp = stamp;
                tracked.unchanged_since = now;
                tracked.state = FileState::Settling;
            }
            if !matches!(tracked.state, FileState::Settling)
                || now - tracked.unchanged_since < settle
            {
                continue;
            }
            let path = self.dir.join(&name);
            match read_header(&path) {
                Ok(Ok(None)) => {
                    tracked.state = FileState::HandedOut;
                    ready.push(ReadyScript::run_once(path));
                }
                Ok(Ok(Some(schedule))) => {
                    tracing::info!(script = %path.display(), "a recurring script was registered");
                    tracked.state = FileState::Recurring {
                        schedule,
                        handed_out: None,
                    };
                }
                Ok(Err(problems)) => {
                    tracked.state = FileState::HandedOut;
                    let message = problems
                        .iter()
                        .map(|(line, problem)| format!("{}:{line}: {problem}", path.display()))
                        .collect::<Vec<_>>()
                        .join("\n");
                    ready.push(ReadyScript {
                        path,
                        kind: ScriptKind::BadHeader(message),
                    });
                }
                // Gone between the listing and now: the next scan forgets it.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                // Unreadable (not UTF-8, no permission): the run records why, and files it.
                Err(_) => {
                    tracked.state = FileState::HandedOut;
                    ready.push(ReadyScript::run_once(path));
                }
            }
        }
        ready
    }

    /// The recurring scripts with an occurrence due at `now` that has not run: the latest
    /// occurrence at or before `now`, unless the script's latest `ScriptRun` job started at
    /// or after it (see [`crate::scheduler`]). Each occurrence is returned once.
    pub fn recurring_due(&mut self, svc: &Pgvault, now: DateTime<Utc>) -> Result<Vec<ReadyScript>> {
        let mut due = Vec::new();
        for (name, tracked) in &mut self.files {
            let FileState::Recurring {
                schedule,
                handed_out,
            } = &mut tracked.state
            else {
                continue;
            };
            let path = self.dir.join(name);
            let last = svc
                .history()
                .latest_script_run(&job_path(&path))
                .map_err(history_err)?;
            let since = last.map_or(tracked.first_seen, |l| l.min(tracked.first_seen));
            let Some(occurrence) = due_backup(schedule, Some(since), last, now) else {
                continue;
            };
            if *handed_out == Some(occurrence.due) {
                continue;
            }
            *handed_out = Some(occurrence.due);
            due.push(ReadyScript {
                path,
                kind: ScriptKind::Recurring(occurrence),
            });
        }
        Ok(due)
    }

    /// When the host should look again: the earliest time a settling file may become ready
    /// or a recurring script's next occurrence after `now`. `None` when nothing waits.
    pub fn next_wakeup(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.files
            .values()
            .filter_map(|tracked| match &tracked.state {
                FileState::Settling => tracked.unchanged_since.checked_add_signed(self.settle),
                FileState::HandedOut => None,
                FileState::Recurring { schedule, .. } => schedule.next_after(now),
            })
            .min()
    }
}

/// The `*.rhai` regular files directly in `dir`, by name, with their stamps.
fn list_scripts(dir: &Path) -> io::Result<BTreeMap<String, Stamp>> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !is_script_name(&name) {
            continue;
        }
        // Followed through a symbolic link; one that dangles, or a file gone since the
        // listing, is not there.
        let Ok(meta) = fs::metadata(entry.path()) else {
            continue;
        };
        if meta.is_file() {
            out.insert(
                name,
                Stamp {
                    len: meta.len(),
                    modified: meta.modified().ok(),
                },
            );
        }
    }
    Ok(out)
}

/// `name.rhai`, not a dotfile (editors' and writers' temporary files are dotfiles or
/// `*.tmp`, which end otherwise).
fn is_script_name(name: &str) -> bool {
    !name.starts_with('.') && name.len() > ".rhai".len() && name.ends_with(".rhai")
}

/// How long before `fs_now` a file was modified, on the file system's clock.
fn fs_age(fs_now: Option<SystemTime>, modified: Option<SystemTime>) -> Option<TimeDelta> {
    let age = fs_now?.duration_since(modified?).ok()?;
    TimeDelta::from_std(age).ok()
}

/// What a script's header says: no schedule (run once), a schedule, or what is wrong with
/// it as (line, problem) pairs.
type Header = std::result::Result<Option<Schedule>, Vec<(usize, String)>>;

/// The script's header, reading only its first lines.
fn read_header(path: &Path) -> io::Result<Header> {
    let file = fs::File::open(path)?;
    let mut lines = Vec::new();
    for line in io::BufReader::new(file.take(HEADER_BYTES)).lines() {
        let line = line?;
        let trimmed = line.trim();
        if !(trimmed.is_empty() || trimmed.starts_with("//") || trimmed.starts_with("#!")) {
            break;
        }
        lines.push(line);
    }
    Ok(parse_header(&lines))
}

/// The schedule a script's leading comment lines give, if any: `// schedule: <interval>`
/// (several lines for several intervals, as a policy's `repeatingTimeIntervals`) and at most
/// one `// time-zone: <IANA or Windows name>`. Only the comments before the first line of
/// code count; other comments (`// Author: ...`) are ignored. Errors are (line, problem).
fn parse_header<S: AsRef<str>>(lines: &[S]) -> Header {
    let mut intervals: Vec<(usize, String)> = Vec::new();
    let mut zone: Option<(usize, String)> = None;
    let mut problems = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let number = index + 1;
        let line = line.as_ref().trim();
        if line.is_empty() || (number == 1 && line.starts_with("#!")) {
            continue;
        }
        let Some(comment) = line.strip_prefix("//") else {
            break;
        };
        let Some((key, value)) = comment.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim().to_ascii_lowercase().as_str() {
            "schedule" if value.is_empty() => problems.push((
                number,
                "`// schedule:` names no repeating interval; write one such as \
                 `// schedule: R/2025-01-01T02:00:00+00:00/P1D`"
                    .to_owned(),
            )),
            "schedule" => intervals.push((number, value.to_owned())),
            "time-zone" | "timezone" | "time_zone" => match &zone {
                Some((first, _)) => problems.push((
                    number,
                    format!("a second `// time-zone:` line (the first is line {first}); keep one"),
                )),
                None => zone = Some((number, value.to_owned())),
            },
            _ => {}
        }
    }
    if intervals.is_empty() {
        if let Some((number, _)) = zone {
            problems.push((
                number,
                "`// time-zone:` without a `// schedule:` line; add the schedule, or remove the \
                 time zone to run the script once"
                    .to_owned(),
            ));
        }
        return if problems.is_empty() {
            Ok(None)
        } else {
            Err(problems)
        };
    }
    let texts: Vec<&str> = intervals.iter().map(|(_, text)| text.as_str()).collect();
    let parsed = Schedule::parse(&texts, zone.as_ref().map(|(_, name)| name.as_str()));
    if let Err(errors) = &parsed {
        for (field, error) in errors {
            problems.push(match field {
                ScheduleField::Interval(i) => {
                    let (number, text) = &intervals[*i];
                    (
                        *number,
                        format!("`{text}` is not a repeating interval: {error}"),
                    )
                }
                ScheduleField::TimeZone => {
                    let (number, name) = zone.as_ref().expect("a time zone error needs a zone");
                    (*number, format!("`{name}` is not a time zone: {error}"))
                }
            });
        }
    }
    problems.sort();
    match parsed {
        Ok(schedule) if problems.is_empty() => Ok(Some(schedule)),
        _ => Err(problems),
    }
}

/// The script path a job records and a recurring script's history is looked up by.
pub(crate) fn job_path(path: &Path) -> String {
    path.display().to_string()
}

// ---- filing run-once scripts ----

/// Moves the script to `done/` or `failed/` beside it (a name taken there gets the job's
/// start time as a prefix, `20261121T020000Z-name.rhai`) and writes `name.log` beside it.
/// Returns where the script went (`None` if it had already gone) and the log.
pub(crate) fn file_away(
    path: &Path,
    job: &Job,
    output: &str,
) -> io::Result<(Option<PathBuf>, PathBuf)> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let folder = dir.join(match job.status() {
        JobStatus::Completed => DONE_DIR,
        _ => FAILED_DIR,
    });
    fs::create_dir_all(&folder)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "script.rhai".to_owned());
    let stamp = job.state.start().format("%Y%m%dT%H%M%SZ");
    let candidates = [
        name.clone(),
        format!("{stamp}-{name}"),
        format!("{stamp}-{}-{name}", job.id),
    ];
    let free = |c: &&String| {
        let target = folder.join(c);
        !target.exists() && !target.with_extension("log").exists()
    };
    let chosen = candidates.iter().find(free).unwrap_or(&candidates[2]);
    let target = folder.join(chosen);
    let moved_to = match fs::rename(path, &target) {
        Ok(()) => Some(target.clone()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let log = target.with_extension("log");
    fs::write(&log, log_text(path, job, output))?;
    Ok((moved_to, log))
}

fn log_text(path: &Path, job: &Job, output: &str) -> String {
    let mut text = format!(
        "job:    {}\nscript: {}\nstatus: {}\nstart:  {}\n",
        job.id,
        path.display(),
        job.status(),
        job.state.start().to_rfc3339(),
    );
    if let Some(end) = job.state.end() {
        text.push_str(&format!("end:    {}\n", end.to_rfc3339()));
    }
    if let Some(error) = job.state.error() {
        text.push_str(&format!("error:  {}: {}\n", error.code, error.message));
    }
    text.push_str("\n--- output ---\n");
    text.push_str(output);
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::current_owner;
    use pgvault_core::engine::home::Home;
    use pgvault_core::model::job::{JobOutcome, NewJob};
    use std::io::Write;
    use std::sync::Arc;

    fn t(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn secs(n: i64) -> TimeDelta {
        TimeDelta::seconds(n)
    }

    fn names(ready: &[ReadyScript]) -> Vec<String> {
        ready
            .iter()
            .map(|r| r.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    fn append(path: &Path, text: &str) {
        fs::OpenOptions::new()
            .append(true)
            .open(path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }

    // ---- detection ----

    #[test]
    fn a_file_runs_once_scans_saw_it_unchanged_for_the_settle_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut scripts = ScriptsDir::new(dir.path(), Duration::from_secs(2));
        let t0 = t("2026-11-21T02:00:00Z");
        let path = dir.path().join("report.rhai");
        fs::write(&path, "print(\"half").unwrap();
        assert!(scripts.scan(t0).is_empty(), "just seen");
        assert_eq!(scripts.next_wakeup(t0), Some(t0 + secs(2)));
        append(&path, " of a script\");\n");
        // Changed since the last scan: the settle time starts again.
        assert!(scripts.scan(t0 + secs(1)).is_empty());
        assert!(
            scripts.scan(t0 + secs(2)).is_empty(),
            "unchanged for 1 s only"
        );
        assert_eq!(scripts.next_wakeup(t0 + secs(2)), Some(t0 + secs(3)));
        let ready = scripts.scan(t0 + secs(3));
        assert_eq!(ready, vec![ReadyScript::run_once(&path)]);
        assert!(scripts.scan(t0 + secs(60)).is_empty(), "returned once");
        assert_eq!(scripts.next_wakeup(t0 + secs(60)), None);
    }

    #[test]
    fn only_rhai_files_directly_in_the_folder_are_scripts() {
        let dir = tempfile::tempdir().unwrap();
        let mut scripts = ScriptsDir::new(dir.path().join("scripts"), Duration::ZERO);
        let t0 = t("2026-11-21T02:00:00Z");
        assert!(scripts.scan(t0).is_empty(), "a missing folder has nothing");
        let root = dir.path().join("scripts");
        for sub in ["done", "failed", "folder.rhai"] {
            fs::create_dir_all(root.join(sub)).unwrap();
        }
        for name in [
            "a.rhai",
            ".hidden.rhai",
            "b.rhai.tmp",
            "c.tmp",
            "notes.txt",
            ".rhai",
            "done/d.rhai",
            "failed/e.rhai",
        ] {
            fs::write(root.join(name), "1").unwrap();
        }
        assert_eq!(names(&scripts.scan(t0)), ["a.rhai"]);
        // The writer's rename makes it a script.
        fs::rename(root.join("b.rhai.tmp"), root.join("b.rhai")).unwrap();
        assert_eq!(names(&scripts.scan(t0 + secs(1))), ["b.rhai"]);
    }

    #[test]
    fn a_script_dropped_again_or_changed_runs_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut scripts = ScriptsDir::new(dir.path(), Duration::from_secs(2));
        let t0 = t("2026-11-21T02:00:00Z");
        let path = dir.path().join("x.rhai");
        fs::write(&path, "1").unwrap();
        scripts.scan(t0);
        assert_eq!(names(&scripts.scan(t0 + secs(2))), ["x.rhai"]);
        // Moved away after its run, then dropped again under the same name.
        fs::remove_file(&path).unwrap();
        assert!(scripts.scan(t0 + secs(3)).is_empty());
        fs::write(&path, "1").unwrap();
        assert!(scripts.scan(t0 + secs(4)).is_empty());
        assert_eq!(names(&scripts.scan(t0 + secs(6))), ["x.rhai"]);
        // Rewritten in place: a new version.
        fs::write(&path, "1 + 1").unwrap();
        assert!(scripts.scan(t0 + secs(7)).is_empty());
        assert_eq!(names(&scripts.scan(t0 + secs(9))), ["x.rhai"]);
    }

    #[test]
    fn at_startup_a_file_untouched_for_the_settle_time_is_ready_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut scripts = ScriptsDir::new(dir.path(), Duration::from_secs(2));
        let fs_now = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let old = dir.path().join("old.rhai");
        let fresh = dir.path().join("fresh.rhai");
        for (path, age) in [(&old, 3600), (&fresh, 1)] {
            let file = fs::File::create(path).unwrap();
            file.set_modified(fs_now - Duration::from_secs(age))
                .unwrap();
        }
        let t0 = t("2026-11-21T02:00:00Z");
        assert_eq!(names(&scripts.scan_at_startup(t0, fs_now)), ["old.rhai"]);
        assert_eq!(names(&scripts.scan(t0 + secs(2))), ["fresh.rhai"]);
    }

    #[test]
    fn schedule_headers() {
        type Case<'a> = (
            &'a str,
            std::result::Result<Option<(&'a [&'a str], &'a str)>, &'a [usize]>,
        );
        let daily: &[&str] = &["R/2025-01-01T02:00:00+00:00/P1D"];
        let cases: &[Case] = &[
            ("print(1);", Ok(None)),
            ("// A report.\n// Author: ops\nprint(1);", Ok(None)),
            (
                "// schedule: R/2025-01-01T02:00:00+00:00/P1D\nprint(1);",
                Ok(Some((daily, "UTC"))),
            ),
            (
                "#!/usr/bin/env pgvault\n\n// Nightly.\n//Schedule:R/2025-01-01T02:00:00+00:00/P1D\n// time-zone: Europe/Berlin\nx",
                Ok(Some((daily, "Europe/Berlin"))),
            ),
            (
                "// schedule: R/2025-01-01T02:00:00+00:00/P1D\n// schedule: R/2025-01-01T14:00:00+00:00/P1D\n// time-zone: W. Europe Standard Time",
                Ok(Some((
                    &[
                        "R/2025-01-01T02:00:00+00:00/P1D",
                        "R/2025-01-01T14:00:00+00:00/P1D",
                    ],
                    "Europe/Berlin",
                ))),
            ),
            // After the first line of code, a schedule comment is just a comment.
            (
                "print(1);\n// schedule: R/2025-01-01T02:00:00+00:00/P1D",
                Ok(None),
            ),
            ("// schedule: every night\n", Err(&[1])),
            ("// schedule:\n", Err(&[1])),
            (
                "// schedule: R/2025-01-01T02:00:00+00:00/P1D\n// time-zone: Mars/Olympus",
                Err(&[2]),
            ),
            ("// time-zone: UTC\nprint(1);", Err(&[1])),
            (
                "// schedule: nope\n// time-zone: UTC\n// time-zone: UTC",
                Err(&[1, 3]),
            ),
        ];
        for (text, expected) in cases {
            let lines: Vec<&str> = text.lines().collect();
            let got = parse_header(&lines);
            match (expected, &got) {
                (Ok(None), Ok(None)) => {}
                (Ok(Some((intervals, zone))), Ok(Some(schedule))) => {
                    assert_eq!(
                        schedule,
                        &Schedule::parse(intervals, Some(zone)).unwrap(),
                        "{text}"
                    );
                }
                (Err(lines), Err(problems)) => {
                    let got: Vec<usize> = problems.iter().map(|(line, _)| *line).collect();
                    assert_eq!(&got, lines, "{text}: {problems:?}");
                }
                _ => panic!("{text}: expected {expected:?}, got {got:?}"),
            }
        }
        let problems = parse_header(&["// schedule: every night"]).unwrap_err();
        assert!(
            problems[0]
                .1
                .contains("`every night` is not a repeating interval"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_bad_header_is_returned_with_its_explanation() {
        let dir = tempfile::tempdir().unwrap();
        let mut scripts = ScriptsDir::new(dir.path(), Duration::ZERO);
        let path = dir.path().join("nightly.rhai");
        fs::write(
            &path,
            "// Nightly.\n// schedule: R/2025-13-01T02:00:00Z/P1D\nprint(1);",
        )
        .unwrap();
        let ready = scripts.scan(t("2026-11-21T02:00:00Z"));
        let [
            ReadyScript {
                path: got,
                kind: ScriptKind::BadHeader(message),
            },
        ] = ready.as_slice()
        else {
            panic!("{ready:?}");
        };
        assert_eq!(got, &path);
        assert!(
            message.starts_with(&format!(
                "{}:2: `R/2025-13-01T02:00:00Z/P1D`",
                path.display()
            )),
            "{message}"
        );
    }

    fn service() -> (tempfile::TempDir, Arc<Pgvault>) {
        let dir = tempfile::tempdir().unwrap();
        let svc = Pgvault::open(Home::at(dir.path().join("home"))).unwrap();
        (dir, Arc::new(svc))
    }

    /// Records a `ScriptRun` job for `path` started at `at`, as an earlier run would have.
    fn record_run(svc: &Pgvault, path: &Path, at: DateTime<Utc>) {
        let new = NewJob::script_run(job_path(path), at, current_owner());
        svc.history().start(&new).unwrap();
        svc.history()
            .finish(
                new.id,
                &JobOutcome::Completed {
                    recovery_point_id: None,
                },
                at + secs(1),
                0,
                0,
            )
            .unwrap();
    }

    #[test]
    fn a_recurring_script_is_due_at_each_occurrence_once() {
        let (home, svc) = service();
        let dir = home.path().join("scripts");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("nightly.rhai");
        fs::write(
            &path,
            "// Nightly report.\n// schedule: R/2026-01-01T02:00:00+01:00/P1D\n// time-zone: Europe/Berlin\nprint(1);",
        )
        .unwrap();
        let mut scripts = ScriptsDir::new(&dir, Duration::from_secs(2));
        let seen = t("2026-11-20T12:00:00Z");
        assert!(scripts.scan(seen).is_empty());
        assert!(
            scripts.scan(seen + secs(2)).is_empty(),
            "recurring, not run once"
        );
        // Its first occurrence after it was dropped: 02:00 in Berlin is 01:00 UTC in November.
        assert_eq!(
            scripts.next_wakeup(seen + secs(2)),
            Some(t("2026-11-21T01:00:00Z"))
        );
        assert!(
            scripts
                .recurring_due(&svc, seen + secs(3))
                .unwrap()
                .is_empty(),
            "the occurrence before it was dropped does not run"
        );
        let on_time = t("2026-11-21T01:00:30Z");
        let due = scripts.recurring_due(&svc, on_time).unwrap();
        let expected = DueBackup {
            due: t("2026-11-21T01:00:00Z"),
            late: false,
            missed: 0,
        };
        assert_eq!(
            due,
            vec![ReadyScript {
                path: path.clone(),
                kind: ScriptKind::Recurring(expected)
            }]
        );
        assert!(
            scripts.recurring_due(&svc, on_time).unwrap().is_empty(),
            "returned once, even before its job is recorded"
        );
        record_run(&svc, &path, on_time);
        assert!(
            scripts
                .recurring_due(&svc, t("2026-11-21T20:00:00Z"))
                .unwrap()
                .is_empty()
        );

        // The host is down for three nights; a new process sees the file again at startup.
        let mut restarted = ScriptsDir::new(&dir, Duration::from_secs(2));
        let back = t("2026-11-24T09:00:00Z");
        restarted.scan(back);
        restarted.scan(back + secs(2));
        let due = restarted.recurring_due(&svc, back + secs(2)).unwrap();
        assert_eq!(
            due[0].kind,
            ScriptKind::Recurring(DueBackup {
                due: t("2026-11-24T01:00:00Z"),
                late: true,
                missed: 2,
            }),
            "the latest occurrence runs once, late; the two before it are counted as missed"
        );
    }
}
