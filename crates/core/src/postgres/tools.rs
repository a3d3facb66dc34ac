//! `pg_dump` and `pg_restore` as child processes.
//!
//! The data itself never goes through `tokio-postgres`: `pg_dump --format=custom
//! --compress=0` writes the stream and `pg_restore` reads it back, both streamed through
//! pipes. Credentials reach the children only through their environment (`PGPASSWORD`
//! and friends, from `ConnectParams::pg_env`), never on a command line, and their stderr
//! is kept (the last few KiB) with any occurrence of the password scrubbed, so a failure
//! can be reported as it happened without leaking the secret.

use std::collections::VecDeque;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;

/// How much of a tool's stderr is kept for the job's error message.
const STDERR_KEEP: usize = 8 * 1024;

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
    pub fn code(&self) -> &'static str {
        match self {
            ToolError::NotFound { .. } | ToolError::Spawn { .. } => "UserErrorPostgresToolMissing",
            ToolError::Failed { .. } => "UserErrorPostgresToolFailed",
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

/// `<tool> --version`, e.g. "pg_dump (PostgreSQL) 15.18".
pub fn tool_version(path: &Path) -> String {
    Command::new(path)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// A running `pg_dump` or `pg_restore`.
pub struct ToolProcess {
    tool: String,
    child: Child,
    stderr: Option<JoinHandle<String>>,
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
            .stderr(Stdio::piped());
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
        let mut child = cmd.spawn().map_err(|source| ToolError::Spawn {
            tool: tool.clone(),
            source,
        })?;
        let stderr = child.stderr.take().map(|s| {
            std::thread::Builder::new()
                .name(format!("{tool}-stderr"))
                .spawn(move || collect_stderr(s, &scrub))
                .expect("spawn stderr thread")
        });
        Ok(ToolProcess {
            tool,
            child,
            stderr,
        })
    }

    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
    }

    /// Waits for the process; a non-zero exit becomes `ToolError::Failed` with its stderr.
    pub fn wait(mut self) -> Result<String, ToolError> {
        let status: std::io::Result<ExitStatus> = self.child.wait();
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        match status {
            Ok(s) if s.success() => Ok(stderr),
            Ok(s) => Err(ToolError::Failed {
                tool: self.tool,
                status: s.to_string(),
                stderr: stderr.trim().to_string(),
            }),
            Err(e) => Err(ToolError::Failed {
                tool: self.tool,
                status: "unknown".into(),
                stderr: e.to_string(),
            }),
        }
    }
}

fn collect_stderr(mut s: ChildStderr, scrub: &[String]) -> String {
    let mut kept: VecDeque<u8> = VecDeque::with_capacity(STDERR_KEEP);
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
        }
    }
    let mut text = String::from_utf8_lossy(kept.make_contiguous()).into_owned();
    for secret in scrub.iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret.as_str(), "<redacted>");
    }
    text
}

#[cfg(test)]
mod tests {
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
