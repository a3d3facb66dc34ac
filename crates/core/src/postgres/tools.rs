//! `pg_dump` and `pg_restore` as child processes.
//!
//! The data itself never goes through `tokio-postgres`: `pg_dump --format=custom
//! --compress=0` writes the stream and `pg_restore` reads it back, both streamed through
//! pipes. Credentials reach the children only through their environment (`PGPASSWORD`
//! and friends, from `ConnectParams::pg_env`), never on a command line, and their stderr
//! is kept (the last few KiB) with any occurrence of the password scrubbed, so a failure
//! can be reported as it happened without leaking the secret.
//!
//! A tool runs in a process group of its own, and a [`ToolProcess`] dropped before it was
//! waited for stops that group and reaps the tool. That is what cancelling a backup or a
//! restore means: its future is dropped (Ctrl-C in the REPL, a script that gives up), and
//! without this `pg_dump` would go on holding its snapshot and server session, or stay behind
//! as a zombie until pgvault exits. Its own group also keeps the terminal's Ctrl-C away from
//! it, so the REPL decides what a Ctrl-C cancels.
//!
//! A tool also dies with pgvault. When pgvault is killed (`kill -9`, the OOM killer) no drop
//! runs; `pg_dump` would notice only at its next write into the closed pipe, and a tool waiting
//! on the server (a lock, an index build) would go on for as long as that takes. So each tool
//! asks the kernel for SIGTERM when its parent dies (`PR_SET_PDEATHSIG`), on which `pg_dump`
//! and `pg_restore` cancel their query on the server and exit. The kernel sends it when the
//! *thread* that forked the tool exits, not the process, and tokio's blocking threads come and
//! go; so every tool is forked by one thread that lives as long as the process
//! ([`spawn_from_lasting_thread`]). Setting the signal has to happen in the child between fork
//! and exec (`pre_exec`), the one `unsafe` block of the workspace ([`die_with_parent`]);
//! `setpriv --pdeathsig` would avoid it, but is not installed everywhere, and a wrapper
//! process would stand between pgvault and the tool's exit status.

use crate::model::code::ErrorCode;
use std::collections::VecDeque;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// How much of a tool's stderr is kept for the job's error message.
const STDERR_KEEP: usize = 8 * 1024;

/// How long a dropped tool has to exit after SIGTERM before its group gets SIGKILL. On
/// SIGTERM `pg_dump` and `pg_restore` cancel their running query on the server and exit at
/// once; the grace only matters for a tool that hangs, and it bounds how long a drop blocks.
const TERM_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error(
        "`{tool}` was not found: install the PostgreSQL client packages (for server major version {major}, or newer), or set PGVAULT_PG_BINDIR to the folder that holds it"
    )]
    NotFound { tool: String, major: u32 },
    #[error("could not start `{tool}`: {source}")]
    Spawn {
        tool: String,
        source: std::io::Error,
    },
    #[error("`{tool}` failed ({status}): {stderr}")]
    Failed {
        tool: String,
        status: String,
        stderr: String,
    },
}

impl ToolError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ToolError::NotFound { .. } | ToolError::Spawn { .. } => {
                ErrorCode::UserErrorPostgresToolMissing
            }
            ToolError::Failed { .. } => ErrorCode::UserErrorPostgresToolFailed,
        }
    }
}

/// Finds `tool` for a server of major version `major`: `PGVAULT_PG_BINDIR`, then the
/// newest Debian-style `/usr/lib/postgresql/<N>/bin` with `N >= major` (a `pg_dump` older
/// than the server refuses to run), then `pg_config --bindir`, then `PATH`.
pub fn find_tool(tool: &str, major: u32) -> Result<PathBuf, ToolError> {
    if let Some(dir) = std::env::var_os("PGVAULT_PG_BINDIR") {
        let p = Path::new(&dir).join(tool);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(ToolError::NotFound {
                tool: tool.into(),
                major,
            })
        };
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            Some((
                e.file_name().to_str()?.parse::<u32>().ok()?,
                e.path().join("bin").join(tool),
            ))
        })
        .filter(|(v, p)| *v >= major && p.is_file())
        .collect();
    versions.sort();
    if let Some((_, p)) = versions.pop() {
        return Ok(p);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let p = Path::new(String::from_utf8_lossy(&out.stdout).trim()).join(tool);
        if p.is_file() {
            return Ok(p);
        }
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .ok_or(ToolError::NotFound {
            tool: tool.into(),
            major,
        })
}

/// The most of `<tool> --version`'s output read: a real one prints one short line.
const VERSION_LIMIT: usize = 4096;
/// How long `<tool> --version` may take: a real one answers in milliseconds.
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);
/// The version recorded for a tool whose `--version` gave no usable answer.
pub const UNKNOWN_VERSION: &str = "unknown";

/// `<tool> --version`, e.g. "pg_dump (PostgreSQL) 15.18" (its first line), or
/// [`UNKNOWN_VERSION`], with a warning that says why, when the tool does not answer within
/// [`VERSION_TIMEOUT`], writes more than [`VERSION_LIMIT`] bytes, fails or cannot start.
/// The version is only recorded (in the manifest and the job's messages): a tool that
/// answers badly does not stop a backup, whose dump is checked on its own. Whatever the
/// tool does, this reads a bounded amount and returns within the timeout: the tool runs in
/// its own process group, which is killed if it has not ended by then.
pub fn tool_version(path: &Path) -> String {
    match version_within(path, VERSION_TIMEOUT) {
        Ok(version) => version,
        Err(why) => {
            tracing::warn!(
                tool = %path.display(),
                "`{} --version` {why}; its version is recorded as {UNKNOWN_VERSION}",
                path.display()
            );
            UNKNOWN_VERSION.to_owned()
        }
    }
}

/// `<tool> --version`'s first line, or why there is none (completing "`<tool> --version` ...").
fn version_within(path: &Path, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let mut cmd = Command::new(path);
    cmd.arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0);
    die_with_parent(&mut cmd);
    let mut child = spawn_from_lasting_thread(cmd).map_err(|e| format!("could not start: {e}"))?;
    let Some(stdout) = child.stdout.take() else {
        return Err("gave no output".to_owned());
    };
    let (tx, rx) = mpsc::channel();
    // A thread that reads at most one byte past the limit; it ends at end of file, at the
    // limit, or when the group is killed below and the pipe closes.
    let reader = std::thread::Builder::new()
        .name("tool-version".into())
        .spawn(move || {
            let mut out = Vec::new();
            let read = stdout
                .take(VERSION_LIMIT as u64 + 1)
                .read_to_end(&mut out)
                .map(|_| out);
            let _ = tx.send(read);
        });
    let outcome = match reader {
        Err(e) => Err(format!("could not be read: {e}")),
        Ok(_) => match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Err(_) => Err(format!("gave no answer within {} s", timeout.as_secs())),
            Ok(Err(e)) => Err(format!("could not be read: {e}")),
            Ok(Ok(out)) if out.len() > VERSION_LIMIT => {
                Err(format!("wrote more than {VERSION_LIMIT} bytes"))
            }
            Ok(Ok(out)) => Ok(out),
        },
    };
    // The output is complete: the tool should now exit, within what is left of the timeout.
    let mut status = None;
    if outcome.is_ok() {
        let mut pause = Duration::from_millis(1);
        loop {
            match child.try_wait() {
                Ok(Some(s)) => {
                    status = Some(s);
                    break;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                _ => break,
            }
        }
    }
    if status.is_none() {
        // Not reaped, so its pid is still its group's id: the group is the tool's own.
        let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
        let _ = child.wait();
    }
    let out = outcome?;
    match status {
        None => Err(format!("did not exit within {} s", timeout.as_secs())),
        Some(s) if !s.success() => Err(format!("failed ({s})")),
        Some(_) => {
            let text = String::from_utf8_lossy(&out);
            let line = text.lines().map(str::trim).find(|l| !l.is_empty());
            match line {
                Some(line) => Ok(line.chars().filter(|c| !c.is_control()).collect()),
                None => Err("printed nothing".to_owned()),
            }
        }
    }
}

/// A running `pg_dump` or `pg_restore`, the leader of its own process group. Dropped before
/// [`ToolProcess::wait`] returned, it stops the group and reaps the tool.
pub struct ToolProcess {
    tool: String,
    child: Child,
    stderr: Option<JoinHandle<Stderr>>,
    /// Whether the child has been reaped. Until then its pid is still its process group's
    /// id and cannot be reused, so signalling the group reaches this tool and nothing else.
    reaped: bool,
}

impl std::fmt::Debug for ToolProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolProcess")
            .field("tool", &self.tool)
            .field("pid", &self.child.id())
            .finish()
    }
}

impl ToolProcess {
    /// Starts `path args...` with `env` added to its environment, stdin/stdout as given and
    /// stderr collected. `scrub` lists strings (the password) to remove from stderr.
    pub fn spawn(
        path: &Path,
        args: &[&str],
        env: &[(String, String)],
        stdin: Stdio,
        stdout: Stdio,
        scrub: Vec<String>,
    ) -> Result<Self, ToolError> {
        let tool = path
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or("pg tool")
            .to_string();
        let mut cmd = Command::new(path);
        cmd.args(args)
            .stdin(stdin)
            .stdout(stdout)
            .stderr(Stdio::piped())
            .process_group(0);
        // The child connects exactly as `env` says: no PGPASSFILE, service file, PGSSLMODE
        // or other libpq variable inherited from the caller may change where or who.
        for (var, _) in std::env::vars_os() {
            if var
                .to_str()
                .is_some_and(|v| v.starts_with("PG") && !v.starts_with("PGVAULT"))
            {
                cmd.env_remove(var);
            }
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        die_with_parent(&mut cmd);
        let mut child = spawn_from_lasting_thread(cmd).map_err(|source| ToolError::Spawn {
            tool: tool.clone(),
            source,
        })?;
        let stderr = child.stderr.take().map(|s| {
            let error_prefixes = error_prefixes(&tool);
            std::thread::Builder::new()
                .name(format!("{tool}-stderr"))
                .spawn(move || collect_stderr(s, &scrub, &error_prefixes))
                .expect("spawn stderr thread")
        });
        Ok(ToolProcess {
            tool,
            child,
            stderr,
            reaped: false,
        })
    }

    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The tool's process id, which is also its process group's id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Kills the tool and everything it started (SIGKILL to its group), without waiting;
    /// [`wait`](Self::wait) then reports how it ended.
    pub fn kill(&mut self) {
        if !self.reaped {
            let _ = killpg(self.group(), Signal::SIGKILL);
        }
    }

    /// Waits for the process. A non-zero exit becomes `ToolError::Failed` with its stderr,
    /// and so does an exit 0 after an error line on stderr (`pg_dump: error: ...`): the
    /// tool said it failed, and a wrapper or a bug that loses the exit status must not turn
    /// that into a success.
    pub fn wait(mut self) -> Result<String, ToolError> {
        let status: std::io::Result<ExitStatus> = self.child.wait();
        self.reaped = status.is_ok();
        let Stderr {
            tail: stderr,
            error,
        } = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let tool = std::mem::take(&mut self.tool);
        match status {
            Ok(s) if s.success() => match error {
                None => Ok(stderr),
                Some(line) => Err(ToolError::Failed {
                    tool,
                    status: format!("{s}, but it reported an error"),
                    // The error line may have scrolled out of the kept tail.
                    stderr: if stderr.contains(&line) {
                        stderr.trim().to_string()
                    } else {
                        format!("{line}\n...\n{}", stderr.trim())
                    },
                }),
            },
            Ok(s) => Err(ToolError::Failed {
                tool,
                status: s.to_string(),
                stderr: stderr.trim().to_string(),
            }),
            Err(e) => Err(ToolError::Failed {
                tool,
                status: "unknown".into(),
                stderr: e.to_string(),
            }),
        }
    }

    fn group(&self) -> Pid {
        // A pid fits in an i32 on every Unix (Linux caps it at 2^22).
        Pid::from_raw(self.child.id() as i32)
    }

    /// SIGTERM to the group, up to [`TERM_GRACE`] for the tool to exit, then SIGKILL to the
    /// group; the tool is reaped either way, so no zombie stays behind.
    fn stop(&mut self) {
        let group = self.group();
        // An error means the group is already empty (the tool exited and took its children
        // with it): only the reaping below is left to do.
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + TERM_GRACE;
        let mut pause = Duration::from_millis(1);
        while Instant::now() < deadline {
            match self.child.try_wait() {
                // Reaped (or, on an error, not ours to reap): the pid may now be reused, so
                // the group is not signalled again. Its other members got the SIGTERM too.
                Ok(Some(_)) | Err(_) => {
                    self.reaped = true;
                    return;
                }
                Ok(None) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
            }
        }
        tracing::warn!(tool = %self.tool, pid = self.child.id(), "the tool did not exit on SIGTERM; killing its process group");
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
        self.reaped = true;
    }
}

impl Drop for ToolProcess {
    fn drop(&mut self) {
        if !self.reaped {
            self.stop();
        }
        // The stderr thread ends by itself once the group is gone and the pipe closes.
    }
}

/// What a tool wrote to stderr: the last [`STDERR_KEEP`] bytes, and its first error line.
#[derive(Debug, Default)]
struct Stderr {
    tail: String,
    error: Option<String>,
}

/// How the PostgreSQL tools start a line that reports an error: `pg_dump: error: ` from
/// PostgreSQL 12 on (`fatal: ` too in 12 to 14; 15 and later print fatal errors as `error: `).
/// Warnings (`pg_dump: warning: `) and details are not errors.
fn error_prefixes(tool: &str) -> Vec<Vec<u8>> {
    ["error: ", "fatal: "]
        .iter()
        .map(|level| format!("{tool}: {level}").into_bytes())
        .collect()
}

/// Longest error line kept whole for the job's message.
const ERROR_LINE_KEEP: usize = 1024;

/// Has the child of `cmd` receive SIGTERM when the thread that forks it exits (see the module
/// documentation: [`spawn_from_lasting_thread`] makes that the process's death). If the parent
/// already died between the fork and this request, the child does not start.
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    let parent = nix::unistd::getpid();
    // SAFETY: `pre_exec` runs the closure in the forked child before exec, where only
    // async-signal-safe calls are allowed. It makes two system calls, prctl(2) and getppid(2),
    // through nix's thin wrappers; it allocates nothing (an `Errno` converts into an
    // `io::Error` without allocating), takes no lock and touches no state shared with other
    // threads; `parent` is a copied integer.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)?;
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::from(nix::errno::Errno::ESRCH));
            }
            Ok(())
        });
    }
}

/// A request to the spawning thread: the command, and where to send the child.
type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns `cmd` from one thread that lives as long as the process, so a parent-death signal
/// fires when pgvault dies and not when the calling thread (a tokio blocking thread, say)
/// happens to end.
fn spawn_from_lasting_thread(cmd: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Option<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("pgvault-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .ok()
            .map(|_| tx)
    });
    let unavailable =
        || std::io::Error::other("the thread that starts PostgreSQL tools is not running");
    let spawner = spawner.as_ref().ok_or_else(unavailable)?;
    let (reply, child) = mpsc::channel();
    spawner.send((cmd, reply)).map_err(|_| unavailable())?;
    child.recv().map_err(|_| unavailable())?
}

fn collect_stderr(mut s: ChildStderr, scrub: &[String], error_prefixes: &[Vec<u8>]) -> Stderr {
    let mut kept: VecDeque<u8> = VecDeque::with_capacity(STDERR_KEEP);
    // The line being read (its first ERROR_LINE_KEEP bytes), until an error line is found.
    let mut line: Vec<u8> = Vec::new();
    let mut error: Option<Vec<u8>> = None;
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            if kept.len() == STDERR_KEEP {
                kept.pop_front();
            }
            kept.push_back(b);
            if error.is_some() {
                continue;
            }
            if b == b'\n' {
                if error_prefixes.iter().any(|p| line.starts_with(p)) {
                    error = Some(std::mem::take(&mut line));
                }
                line.clear();
            } else if line.len() < ERROR_LINE_KEEP {
                line.push(b);
            }
        }
    }
    // A last line without a newline counts too.
    if error.is_none() && error_prefixes.iter().any(|p| line.starts_with(p)) {
        error = Some(line);
    }
    let scrubbed = |bytes: &[u8]| {
        let mut text = String::from_utf8_lossy(bytes).into_owned();
        for secret in scrub.iter().filter(|s| !s.is_empty()) {
            text = text.replace(secret.as_str(), "<redacted>");
        }
        text
    };
    let error = error.map(|mut line| {
        // A line cut at ERROR_LINE_KEEP may end with the start of a secret, which the
        // scrubbing above would not recognise: drop such an end.
        if line.len() == ERROR_LINE_KEEP {
            for secret in scrub.iter().map(String::as_bytes) {
                if let Some(k) = (1..secret.len().min(line.len() + 1))
                    .rev()
                    .find(|&k| line.ends_with(&secret[..k]))
                {
                    line.truncate(line.len() - k);
                }
            }
        }
        scrubbed(&line)
    });
    Stderr {
        tail: scrubbed(kept.make_contiguous()),
        error,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_tool_version_is_read_bounded_and_in_bounded_time() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = |name: &str, body: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            p
        };
        let good = script("good", "echo 'pg_dump (PostgreSQL) 17.2'; echo second line");
        assert_eq!(
            version_within(&good, Duration::from_secs(30)).unwrap(),
            "pg_dump (PostgreSQL) 17.2"
        );
        let endless = script("endless", "exec yes 'pg_dump (PostgreSQL) 17.2'");
        let err = version_within(&endless, Duration::from_secs(30)).unwrap_err();
        assert!(err.contains("more than 4096 bytes"), "{err}");
        // No answer and no end (a child of the script holds the pipe too): the wait is
        // bounded, and the whole group is killed.
        let silent = script("silent", "sleep 100000 & wait");
        let started = Instant::now();
        let err = version_within(&silent, Duration::from_millis(300)).unwrap_err();
        assert!(err.contains("no answer"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(20));
        // Printed its line, then never exits.
        let lingering = script("lingering", "echo 'pg_dump 1'; exec sleep 100000 >&-");
        let err = version_within(&lingering, Duration::from_millis(300)).unwrap_err();
        assert!(err.contains("did not exit"), "{err}");
        let failing = script("failing", "echo 'pg_dump 1'; exit 3");
        assert!(
            version_within(&failing, Duration::from_secs(30))
                .unwrap_err()
                .contains("failed")
        );
        assert_eq!(tool_version(&dir.path().join("missing")), UNKNOWN_VERSION);
    }

    use super::*;

    #[test]
    fn failing_tool_reports_scrubbed_stderr() {
        let p = ToolProcess::spawn(
            Path::new("/bin/sh"),
            &["-c", "echo \"password hunter2 was wrong\" >&2; exit 3"],
            &[],
            Stdio::null(),
            Stdio::null(),
            vec!["hunter2".into()],
        )
        .unwrap();
        let err = p.wait().unwrap_err().to_string();
        assert!(err.contains("<redacted>"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("exit status: 3"), "{err}");
    }

    #[test]
    fn an_error_on_stderr_fails_a_tool_that_exits_0() {
        // Named pg_dump so its lines carry the prefix the real one uses.
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("pg_dump");
        let run = |script: &str| {
            std::fs::write(&tool, format!("#!/bin/sh\n{script}\n")).unwrap();
            std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
            ToolProcess::spawn(
                &tool,
                &[],
                &[],
                Stdio::null(),
                Stdio::null(),
                vec!["hunter2".into()],
            )
            .unwrap()
            .wait()
        };
        let err = run("echo 'pg_dump: error: query failed: password hunter2' >&2; exit 0")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("exit status: 0, but it reported an error"),
            "{err}"
        );
        assert!(err.contains("pg_dump: error: query failed"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");

        // PostgreSQL 12 to 14 say `fatal:`; a last line without a newline counts too.
        assert!(run("printf 'pg_dump: fatal: out of memory' >&2").is_err());

        // An error line followed by more than the kept tail is still reported, whole.
        let err = run(
            "echo 'pg_dump: error: lost the connection' >&2; \
             i=0; while [ $i -lt 400 ]; do echo 'pg_dump: warning: a long warning line, one of many' >&2; i=$((i+1)); done",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("pg_dump: error: lost the connection"), "{err}");

        // Warnings, details and an error quoted inside a line are not errors.
        let ok = run(
            "echo 'pg_dump: warning: there are circular foreign-key constraints' >&2; \
             echo 'pg_dump: detail: pg_dump: error: is quoted here' >&2",
        );
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn a_cut_error_line_never_ends_with_part_of_a_secret() {
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("pg_dump");
        // The line is cut at ERROR_LINE_KEEP bytes, in the middle of the secret.
        let pad = ERROR_LINE_KEEP - "pg_dump: error: ".len() - 3;
        std::fs::write(
            &tool,
            format!(
                "#!/bin/sh\nprintf 'pg_dump: error: %s%s\\n' \"$(head -c {pad} /dev/zero | tr '\\0' x)\" 's3cretpassword' >&2\n\
                 i=0; while [ $i -lt 400 ]; do echo 'pg_dump: warning: more than the tail keeps' >&2; i=$((i+1)); done\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let err = ToolProcess::spawn(
            &tool,
            &[],
            &[],
            Stdio::null(),
            Stdio::null(),
            vec!["s3cretpassword".into()],
        )
        .unwrap()
        .wait()
        .unwrap_err();
        let ToolError::Failed { stderr, .. } = err else {
            panic!("{err:?}");
        };
        assert!(!stderr.contains("s3c"), "{stderr}");
    }

    /// Whether `pid` is a live process: it exists and is not a zombie waiting to be reaped.
    fn running(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // The state letter follows the command name, which is in parentheses.
            Ok(stat) => !matches!(
                stat.rfind(')')
                    .and_then(|i| stat[i + 1..].split_whitespace().next()),
                Some("Z" | "X")
            ),
            Err(_) => false,
        }
    }

    /// Waits, boundedly, for `done`; the processes involved stop on a signal, so this takes
    /// milliseconds, and the bound only turns a hang into a failure.
    fn eventually(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A tool started as `sh` that starts a `sleep` of its own, then prints `ready` and the
    /// sleep's pid: (the tool, the tool's pid, the sleep's pid).
    fn tool_with_a_child(script: &str) -> (ToolProcess, u32, u32) {
        let mut p = ToolProcess::spawn(
            Path::new("/bin/sh"),
            &["-c", script],
            &[],
            Stdio::null(),
            Stdio::piped(),
            vec![],
        )
        .unwrap();
        let mut out = std::io::BufReader::new(p.child_mut().stdout.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        let sleeper: u32 = line
            .trim()
            .strip_prefix("ready ")
            .unwrap_or_else(|| panic!("the tool said {line:?}"))
            .parse()
            .unwrap();
        let pid = p.id();
        assert!(running(pid) && running(sleeper));
        (p, pid, sleeper)
    }

    #[test]
    fn a_dropped_tool_is_stopped_with_its_children_and_reaped() {
        let (p, pid, sleeper) = tool_with_a_child("sleep 30 & echo ready $!; wait");
        let started = Instant::now();
        drop(p);
        // The tool was reaped during the drop: not even a zombie is left of it.
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "the tool {pid} is still there after the drop"
        );
        assert!(
            started.elapsed() < TERM_GRACE,
            "SIGTERM alone should have stopped it"
        );
        // Its child was in its group and got the SIGTERM; it belongs to init now, which
        // reaps it in its own time.
        eventually("the tool's child survived the drop", || !running(sleeper));
    }

    #[test]
    fn a_dropped_tool_that_ignores_sigterm_is_killed() {
        // An ignored signal stays ignored across fork and exec, so the sleep ignores it too.
        let (p, pid, sleeper) =
            tool_with_a_child("trap '' TERM; sleep 30 & echo ready $!; wait; wait");
        let started = Instant::now();
        drop(p);
        assert!(
            started.elapsed() >= TERM_GRACE,
            "the tool ignored SIGTERM, so only SIGKILL after the grace could stop it"
        );
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
        eventually("the tool's child survived SIGKILL", || !running(sleeper));
    }

    #[test]
    fn a_tool_outlives_the_thread_that_asked_for_it() {
        // The parent-death signal follows the forking thread, and tokio's blocking threads
        // end when idle; a tool started from a thread that then ends must keep running.
        let (mut p, tid) = std::thread::spawn(|| {
            let p = ToolProcess::spawn(
                Path::new("/bin/sh"),
                &["-c", "read x; echo got $x"],
                &[],
                Stdio::piped(),
                Stdio::piped(),
                vec![],
            )
            .unwrap();
            (p, nix::unistd::gettid())
        })
        .join()
        .unwrap();
        // Once the thread is gone from /proc, the kernel has sent any parent-death signal it
        // was going to send: the tool would be dead before it could read a line.
        eventually("the thread ended", || {
            !Path::new(&format!("/proc/self/task/{tid}")).exists()
        });
        let mut stdin = p.child_mut().stdin.take().unwrap();
        std::io::Write::write_all(&mut stdin, b"hello\n").unwrap();
        drop(stdin);
        let mut out = String::new();
        p.child_mut()
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        p.wait().unwrap();
        assert_eq!(out, "got hello\n");
    }

    #[test]
    fn env_reaches_the_child_not_the_command_line() {
        let mut p = ToolProcess::spawn(
            Path::new("/bin/sh"),
            &["-c", "printf %s \"$PGPASSWORD\""],
            &[("PGPASSWORD".into(), "s3cret".into())],
            Stdio::null(),
            Stdio::piped(),
            vec![],
        )
        .unwrap();
        let mut out = String::new();
        p.child_mut()
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        p.wait().unwrap();
        assert_eq!(out, "s3cret");
    }
}
