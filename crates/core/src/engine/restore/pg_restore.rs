//! pg_restore fed from the vault: the tool chosen for the archive and the target server,
//! the recovery point's stream piped to its stdin (only the ranges a selection needs) or
//! staged in a temporary file for parallel jobs, its output passed on for a plain SQL file,
//! and which failure is the cause when the vault, the tool or the output fails together.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use tokio::io::AsyncWriteExt;

use super::options::Selection;
use crate::engine::leftovers::{Leftover, Leftovers, Registration};
use crate::engine::vault::Vault;
use crate::engine::{Error, Result};
use crate::model::code::ErrorCode;
use crate::postgres::connection::ConnectParams;
use crate::postgres::tools::{ToolProcess, find_tool};
use crate::store::manifest::Manifest;
use crate::store::pack::ChunkIndex;
use crate::store::reader::{ReadError, read_stream_ranges};

/// A recovery point's stream as a restore reads it: through the vault's readable index (so a
/// sound copy of a chunk wins over a damaged one) with the vault's chunk key.
pub(super) struct PointSource<'a> {
    vault: &'a Vault,
    manifest: &'a Manifest,
    index: ChunkIndex,
    key: [u8; 32],
}

impl<'a> PointSource<'a> {
    pub(super) async fn open(vault: &'a Vault, manifest: &'a Manifest) -> Result<Self> {
        let index = crate::store::damage::load_readable_index(&vault.store)
            .await?
            .0;
        let key = vault.chunk_key();
        Ok(PointSource {
            vault,
            manifest,
            index,
            key,
        })
    }

    /// Writes `ranges` of the stream (all of it for `None`) to `out`, counting into `written`.
    pub(super) async fn read<W: tokio::io::AsyncWrite + Unpin>(
        &self,
        ranges: Option<&[std::ops::Range<u64>]>,
        out: &mut W,
        written: Arc<AtomicU64>,
    ) -> std::result::Result<u64, ReadError> {
        read_stream_ranges(
            &self.vault.store,
            &self.index,
            &self.key,
            &self.manifest.stream,
            ranges,
            out,
            written,
        )
        .await
    }
}

/// pg_restore as a restore runs it: the binary, its arguments, its environment (a database's
/// credentials, or none) and the secrets to scrub from what it prints.
pub(super) struct ToolRun<'a> {
    pub tool: &'a std::path::Path,
    pub args: Vec<String>,
    pub env: &'a [(String, String)],
    pub scrub: Vec<String>,
}

impl<'a> ToolRun<'a> {
    /// A run that reaches no database (it writes a file or its standard output): no
    /// credentials in its environment, nothing to scrub.
    pub(super) fn offline(tool: &'a std::path::Path, args: Vec<String>) -> Self {
        ToolRun {
            tool,
            args,
            env: &[],
            scrub: Vec::new(),
        }
    }
}

/// Waits for pg_restore to exit, on a blocking thread.
async fn wait_for(
    proc: ToolProcess,
) -> std::result::Result<std::result::Result<String, crate::postgres::tools::ToolError>, FeedError>
{
    tokio::task::spawn_blocking(move || proc.wait())
        .await
        .map_err(|_| {
            FeedError::Other(Error::new(
                ErrorCode::InternalError,
                "waiting for pg_restore failed",
            ))
        })
}

/// The major version in a `server_version` string (`15.4 (Debian ...)` is 15).
pub(super) fn major_of(version: &str) -> u32 {
    version
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0)
}

/// What a restore into a server of major version `target` should say about a recovery point
/// taken from `source`: nothing for the same or a newer server (pg_dump's output restores
/// forward); for an older one, what may fail.
pub fn version_warning(source: u32, target: u32) -> Option<String> {
    (target < source && source > 0).then(|| {
        format!(
            "the recovery point was taken from PostgreSQL {source} and the target runs PostgreSQL {target}: \
             restoring to an older major version is not supported by pg_dump, and statements using \
             syntax, types or settings that {target} lacks will fail (the restore then stops and \
             leaves no database); restore to PostgreSQL {source} or newer, or restore --format plain \
             and edit the SQL"
        )
    })
}

/// libpq's quoting of a connection-string value.
pub(super) fn conninfo_value(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Runs pg_restore with the selection into `params`' database (without owners and
/// privileges: [`apply_owners_and_privileges`] restores those); returns the bytes read and
/// what the user should know (an older target server, what a selection left out).
pub(super) async fn run_pg_restore(
    vault: &Vault,
    manifest: &Manifest,
    params: &ConnectParams,
    database: &str,
    selection: &Selection,
    written: Arc<AtomicU64>,
) -> Result<(u64, Vec<String>)> {
    let target = params.connect().await?;
    let version: i32 = target
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(|e| Error::caused_by(ErrorCode::UserErrorDBQueryFailed, e.to_string(), e))?
        .get(0);
    drop(target);
    let (source_major, target_major) = (
        major_of(&manifest.postgres.server_version),
        (version / 10000) as u32,
    );
    let mut warnings: Vec<String> = version_warning(source_major, target_major)
        .into_iter()
        .collect();
    warnings.extend(selection.warnings.iter().cloned());
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let pg_restore = restore_tool(manifest, target_major)?;
    let mut args = vec![
        "--exit-on-error".to_owned(),
        "--no-password".to_owned(),
        format!("--dbname=dbname={}", conninfo_value(database)),
    ];
    args.extend(selection.args.iter().cloned());
    let env = params.pg_env();
    let scrub: Vec<String> = params.password().into_iter().map(str::to_string).collect();
    let run = ToolRun {
        tool: &pg_restore,
        args,
        env: &env,
        scrub: scrub.clone(),
    };
    let restored = feed_tool(vault, manifest, run, selection, written, None)
        .await
        .map_err(|e| match e {
            FeedError::Tool(stderr) => {
                let mut message =
                    format!("pg_restore failed, the target database was removed: {stderr}");
                if let Some(w) = warnings.first() {
                    message.push_str(&format!(" (note: {w})"));
                }
                Error::new(ErrorCode::UserErrorPgRestoreFailed, message)
            }
            FeedError::Other(e) => e,
        })?;
    Ok((restored, warnings))
}

/// A pg_restore at least as new as the pg_dump that wrote the archive (it reads older archive
/// formats, not newer ones) and as the target server.
pub(super) fn restore_tool(manifest: &Manifest, target_major: u32) -> Result<PathBuf> {
    let source_major = major_of(&manifest.postgres.server_version);
    Ok(find_tool("pg_restore", source_major.max(target_major))?)
}

/// Why feeding a tool failed: the tool itself (its stderr), or the vault or the staging.
pub(super) enum FeedError {
    Tool(String),
    Other(Error),
}

/// A restore's file in the temporary folder ([`crate::engine::leftovers::temp_file`]), recorded as a
/// leftover before it is created (so the next start removes it if this process is killed),
/// and removed when dropped, its record with it.
pub(super) struct TempFile(pub(super) PathBuf, Option<Registration>);

impl TempFile {
    /// Names and records a new temporary file with `extension`; the caller creates it.
    pub(super) fn register(
        leftovers: &Leftovers,
        extension: &str,
    ) -> std::result::Result<Self, FeedError> {
        let path = crate::engine::leftovers::temp_file(extension);
        let registration = leftovers
            .register("restore", Leftover::TempFile { path: path.clone() })
            .map_err(FeedError::Other)?;
        Ok(TempFile(path, Some(registration)))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let removed = match std::fs::remove_file(&self.0) {
            Ok(()) => true,
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        };
        if let Some(registration) = self.1.take()
            && removed
        {
            registration.done();
        }
    }
}

/// Marks each write of a restored stream as the test-only fault point `restore-stream` (see
/// [`crate::fault`]), so a test can kill a restore half way through its data.
pub(super) struct FaultPoints<W>(pub(super) W);

impl<W: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for FaultPoints<W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        crate::fault::point("restore-stream");
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Runs `tool` on the recovery point's stream: piped to its stdin, or, for parallel jobs,
/// staged in a temporary file it is given. With `stdout`, what the tool prints is copied into
/// it as it comes (not with parallel jobs). Returns the bytes read from the vault.
#[allow(clippy::too_many_arguments)]
pub(super) async fn feed_tool(
    vault: &Vault,
    manifest: &Manifest,
    run: ToolRun<'_>,
    selection: &Selection,
    written: Arc<AtomicU64>,
    stdout: Option<&mut (dyn tokio::io::AsyncWrite + Unpin + Send)>,
) -> std::result::Result<u64, FeedError> {
    let ToolRun {
        tool,
        mut args,
        env,
        scrub,
    } = run;
    let other = FeedError::Other;
    let counter = written.clone();
    let list = match &selection.list {
        Some(text) => {
            let file = TempFile::register(&selection.leftovers, "list")?;
            let path = file.0.clone();
            std::fs::write(&path, text).map_err(|e| {
                other(Error::caused_by(
                    ErrorCode::RestoreStagingFailed,
                    format!("cannot write `{}`: {e}", path.display()),
                    e,
                ))
            })?;
            args.push(format!("--use-list={}", path.display()));
            Some(file)
        }
        None => None,
    };
    let source = PointSource::open(vault, manifest).await.map_err(other)?;
    let arg_refs = |args: &[String]| -> Vec<String> { args.to_vec() };

    if stdout.is_some() && selection.jobs.is_some() {
        return Err(other(Error::new(
            ErrorCode::InternalError,
            "a tool's output is passed on only when it reads its input from a pipe",
        )));
    }
    let (bytes, finished, copied) = if let Some(jobs) = selection.jobs {
        check_room(&std::env::temp_dir(), manifest.stream.length).map_err(other)?;
        let staged = TempFile::register(&selection.leftovers, "dump")?;
        let path = staged.0.clone();
        let file = tokio::fs::File::create(&path).await.map_err(|e| {
            other(Error::caused_by(
                ErrorCode::RestoreStagingFailed,
                format!("cannot create `{}`: {e}", path.display()),
                e,
            ))
        })?;
        let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
        let bytes = source
            .read(None, &mut out, written)
            .await
            .map_err(|e| other(e.into()))?;
        out.into_inner().sync_all().await.map_err(|e| {
            other(Error::caused_by(
                ErrorCode::RestoreStagingFailed,
                format!("cannot write the staged archive: {e}"),
                e,
            ))
        })?;
        crate::fault::point("restore-staged");
        args.push(format!("--jobs={jobs}"));
        args.push(path.display().to_string());
        let refs = arg_refs(&args);
        let argv: Vec<&str> = refs.iter().map(String::as_str).collect();
        let proc = ToolProcess::spawn(tool, &argv, env, Stdio::null(), Stdio::null(), scrub)
            .map_err(|e| other(e.into()))?;
        let finished = wait_for(proc).await?;
        drop(staged);
        (Ok(bytes), finished, Ok(()))
    } else {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = if stdout.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        let mut proc = ToolProcess::spawn(tool, &argv, env, Stdio::piped(), output, scrub)
            .map_err(|e| other(e.into()))?;
        let stdin = proc.child_mut().stdin.take().expect("stdin is piped");
        let mut stdin = FaultPoints(tokio::process::ChildStdin::from_std(stdin).map_err(|e| {
            other(Error::caused_by(
                ErrorCode::InternalError,
                format!("cannot drive pg_restore's input: {e}"),
                e,
            ))
        })?);
        let printed = match proc.child_mut().stdout.take() {
            Some(out) => Some(tokio::process::ChildStdout::from_std(out).map_err(|e| {
                other(Error::caused_by(
                    ErrorCode::InternalError,
                    format!("cannot read pg_restore's output: {e}"),
                    e,
                ))
            })?),
            None => None,
        };
        let feeding = async {
            let streamed = source
                .read(selection.ranges.as_deref(), &mut stdin, written)
                .await;
            let _ = stdin.shutdown().await;
            drop(stdin);
            streamed
        };
        // Both at once: a tool whose output nobody reads stops reading its input.
        let copying = async move {
            match (printed, stdout) {
                (Some(mut printed), Some(out)) => {
                    tokio::io::copy(&mut printed, out).await.map(|_| ())
                }
                _ => Ok(()),
            }
        };
        let (streamed, copied) = tokio::join!(feeding, copying);
        let finished = wait_for(proc).await?;
        (streamed, finished, copied)
    };
    drop(list);
    use crate::store::reader::ReadError;
    match (finished, bytes) {
        // The vault could not give the stream (a missing or corrupt chunk): that is the cause,
        // whatever the tool then said about its input ending.
        (_, Err(e)) if !matches!(e, ReadError::Write(_)) => Err(other(e.into())),
        // The tool's output could not be passed on: the tool then only saw a closed pipe.
        _ if copied.is_err() => Err(other(Error::new(
            ErrorCode::RestoreTargetWriteFailed,
            format!(
                "cannot pass the tool's output on: {}",
                copied.err().map(|e| e.to_string()).unwrap_or_default()
            ),
        ))),
        // Otherwise the tool's own error explains more than a broken pipe does.
        (Err(e), _) => Err(FeedError::Tool(match e {
            crate::postgres::tools::ToolError::Failed { stderr, .. } => stderr,
            other => other.to_string(),
        })),
        // The tool succeeded without reading the whole stream (a schema-only or selective
        // restore stops once it has what it was asked for); what it read was verified.
        (Ok(_), Err(ReadError::Write(e))) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(counter.load(std::sync::atomic::Ordering::Relaxed))
        }
        (Ok(_), result) => result.map_err(|e| other(e.into())),
    }
}

/// Refuses to stage `needed` bytes where the disk has no room for them (with a margin).
pub(super) fn check_room(dir: &std::path::Path, needed: u64) -> Result<()> {
    let margin = 64 << 20;
    let stat = nix::sys::statvfs::statvfs(dir).map_err(|e| {
        Error::caused_by(
            ErrorCode::RestoreStagingFailed,
            format!("cannot read the free space of `{}`: {e}", dir.display()),
            e,
        )
    })?;
    let free = stat.blocks_available() as u64 * stat.fragment_size() as u64;
    if free < needed + margin {
        return Err(Error::new(
            ErrorCode::UserErrorInsufficientDiskSpace,
            format!(
                "a parallel restore stages the {needed}-byte archive in `{}`, which has {free} bytes free; free space there, point TMPDIR at a larger disk, or restore without --jobs",
                dir.display()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_target_is_warned_about() {
        assert_eq!(major_of("15.4 (Debian 15.4-1.pgdg120+1)"), 15);
        assert_eq!(major_of("17beta2"), 17);
        assert!(version_warning(15, 15).is_none());
        assert!(version_warning(15, 17).is_none(), "forward is supported");
        let w = version_warning(17, 15).unwrap();
        assert!(
            w.contains("PostgreSQL 17") && w.contains("PostgreSQL 15"),
            "{w}"
        );
    }

    #[test]
    fn staging_is_refused_where_the_disk_has_no_room() {
        let dir = std::env::temp_dir();
        assert!(check_room(&dir, 1).is_ok());
        // More than any disk holds.
        let error = check_room(&dir, u64::MAX / 4).unwrap_err();
        assert_eq!(error.code.as_str(), "UserErrorInsufficientDiskSpace");
        assert!(
            error.message.contains("TMPDIR") && error.message.contains("without --jobs"),
            "{}",
            error.message
        );
    }
}
