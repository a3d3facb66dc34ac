//! A restore as files into a folder: the archive as stored (custom format) or the SQL
//! pg_restore makes of it (`--format plain`), written under a partial name and renamed into
//! place, with file names that never lead out of the folder. [`write_files_output`] is the
//! one writer a folder and a Blob container share.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::RestoreOutcome;
use super::blob::{restore_to_container, shown_url};
use super::options::Selection;
use super::pg_restore::{FaultPoints, FeedError, PointSource, ToolRun, feed_tool, major_of};
use super::steps::{RestoreStep, Tracker};
use crate::engine::leftovers::{Leftover, Leftovers, Registration};
use crate::engine::vault::Vault;
use crate::engine::{Error, Result};
use crate::model::code::ErrorCode;
use crate::model::restore::{AZURE_BLOBS, RestoreOptions, TargetDetails};
use crate::postgres::tools::find_tool;
use crate::store::manifest::Manifest;

/// A restore's partial file, removed when dropped (after the rename: already gone), and its
/// leftover record forgotten once it is; a file that cannot be removed keeps its record.
pub(super) struct PartialFile {
    path: PathBuf,
    registration: Option<Registration>,
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        let removed = match std::fs::remove_file(&self.path) {
            Ok(()) => true,
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        };
        if let Some(registration) = self.registration.take()
            && removed
        {
            registration.done();
        }
    }
}

/// `--format` of a restore as files (`true`: plain SQL), with the options that go with it
/// checked; the same for every target.
pub(super) fn files_format(opts: &RestoreOptions) -> Result<bool> {
    let plain = match opts
        .format
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("custom") => false,
        Some("plain") => true,
        Some(other) => {
            return Err(Error::new(
                ErrorCode::UserErrorInvalidRestoreOption,
                format!("--format {other}: write custom (the archive as stored) or plain (SQL)"),
            ));
        }
    };
    if !plain && (opts.selects() || opts.keep_owners || opts.jobs.is_some()) {
        return Err(Error::new(
            ErrorCode::UserErrorInvalidRestoreOption,
            "a custom-format file is the whole archive as stored; select schemas or tables with --format plain, or pass them to pg_restore when you restore the file",
        ));
    }
    if opts.jobs.is_some_and(|j| j > 1) {
        return Err(Error::new(
            ErrorCode::UserErrorInvalidRestoreOption,
            "--jobs applies to a restore to a database (pg_restore writes SQL files on one thread)",
        ));
    }
    Ok(plain)
}

/// The file (or blob) name of a restore as files: `<filePrefix>.dump` for the custom format,
/// `<filePrefix>.sql` for plain SQL; without a prefix, `<database>-<recovery point>` made a
/// safe name ([`safe_file_name`]: a database may be called `../../x`). For a folder, an
/// explicit prefix must be a plain file name ([`check_plain_file_name`]); a blob name is
/// checked by [`blob_name`]. (Azure's documentation does not say how it names the files of a
/// restore as files, so pgvault names them this way for a folder and a Blob container alike.)
pub(super) fn files_prefix_and_extension(
    target: &TargetDetails,
    manifest: &Manifest,
    plain: bool,
) -> Result<(String, &'static str)> {
    let prefix = if target.file_prefix.is_empty() {
        safe_file_name(&format!(
            "{}-{}",
            manifest.datasource.database, manifest.recovery_point_id
        ))
    } else {
        if !target.is_blob_container() {
            check_plain_file_name(&target.file_prefix)?;
        }
        target.file_prefix.clone()
    };
    Ok((prefix, if plain { "sql" } else { "dump" }))
}

/// The longest name pgvault makes or accepts for a restore's file, in bytes: with its
/// extension and the partial file's `.` and `.<pid>.partial`, well under the 255 of Linux
/// file systems.
pub(super) const MAX_FILE_NAME: usize = 200;

/// `name` as a file (and blob) name that stays in its folder: path separators and control
/// characters become `_`, and so do leading dots (no `.` or `..`, no hidden file); at most
/// [`MAX_FILE_NAME`] bytes; never empty.
pub(super) fn safe_file_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let dots = out.len() - out.trim_start_matches('.').len();
    out.replace_range(..dots, &"_".repeat(dots));
    if out.len() > MAX_FILE_NAME {
        let mut end = MAX_FILE_NAME;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    if out.is_empty() {
        out.push_str("database");
    }
    out
}

/// Refuses a `--target-file-name` for a folder that is not a plain file name: one that is
/// empty, holds a path separator or a control character, starts with a dot (`.`, `..`, a
/// hidden file) or is too long.
pub(super) fn check_plain_file_name(name: &str) -> Result<()> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
        && name.len() <= MAX_FILE_NAME;
    if plain {
        return Ok(());
    }
    let shown: String = name.chars().take(80).collect();
    Err(Error::new(
        ErrorCode::UserErrorInvalidTarget,
        format!(
            "--target-file-name {shown:?} is not a plain file name: give a name without `/` or `\\`, not starting with a dot, of at most {MAX_FILE_NAME} bytes; the file is written in the target folder"
        ),
    ))
}

/// Writes what a restore as files produces into `out`, whatever the target: the archive as
/// stored (custom format), or for `--format plain` the SQL pg_restore makes of it with the
/// selection options (pg_restore writing to its stdout, copied into `out`). Returns the bytes
/// read from the vault and what the selection left out.
pub(super) async fn write_files_output(
    vault: &Vault,
    manifest: &Manifest,
    opts: &RestoreOptions,
    plain: bool,
    out: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
    written: Arc<AtomicU64>,
    leftovers: &Leftovers,
) -> Result<(u64, Vec<String>)> {
    if plain {
        let mut selection = Selection::new(opts, manifest)?;
        selection.leftovers = leftovers.clone();
        for w in &selection.warnings {
            tracing::warn!("{w}");
        }
        let pg_restore = find_tool("pg_restore", major_of(&manifest.postgres.server_version))?;
        // `-`: stdout (pg_restore 17 and later want an output named when there is no database).
        let mut args = vec!["--file=-".to_owned()];
        args.extend(selection.args.iter().cloned());
        let run = ToolRun::offline(&pg_restore, args);
        return feed_tool(vault, manifest, run, &selection, written, Some(out))
            .await
            .map(|bytes| (bytes, selection.warnings.clone()))
            .map_err(|e| match e {
                FeedError::Tool(stderr) => Error::new(
                    ErrorCode::UserErrorPgRestoreFailed,
                    format!("pg_restore could not write the SQL file: {stderr}"),
                ),
                FeedError::Other(e) => e,
            });
    }
    let source = PointSource::open(vault, manifest).await?;
    let mut out = FaultPoints(out);
    let bytes = source.read(None, &mut out, written).await?;
    out.flush().await.map_err(|e| {
        Error::caused_by(
            ErrorCode::RestoreTargetWriteFailed,
            format!("cannot write the dump: {e}"),
            e,
        )
    })?;
    Ok((bytes, Vec::new()))
}

pub(super) async fn restore_to_file(
    vault: &Vault,
    manifest: &Manifest,
    target: &TargetDetails,
    opts: &RestoreOptions,
    written: Arc<AtomicU64>,
    leftovers: &Leftovers,
    track: &mut Tracker<'_>,
) -> Result<RestoreOutcome> {
    let plain = files_format(opts)?;
    if target.is_blob_container() {
        return restore_to_container(
            vault, manifest, target, opts, plain, written, leftovers, track,
        )
        .await;
    }
    let dir = match target.url.strip_prefix("file://") {
        Some(p) => PathBuf::from(p),
        None if target.url.starts_with('/') => PathBuf::from(&target.url),
        None => {
            return Err(Error::new(
                ErrorCode::UserErrorInvalidTarget,
                format!(
                    "restore-as-files target `{}` is not a folder (file:///path); for a Blob container, restoreTargetLocationType is {AZURE_BLOBS} (--target-blob-container-url)",
                    shown_url(&target.url)
                ),
            ));
        }
    };
    let io = |what: &str, e: std::io::Error| {
        if crate::store::disk::io_is_disk_full(&e) {
            return disk_full(&dir);
        }
        Error::new(ErrorCode::RestoreTargetWriteFailed, format!("{what}: {e}"))
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| io(&format!("cannot create `{}`", dir.display()), e))?;
    let (prefix, extension) = files_prefix_and_extension(target, manifest, plain)?;
    let path = dir.join(format!("{prefix}.{extension}"));
    if path.exists() {
        return Err(Error::new(
            ErrorCode::UserErrorFileAlreadyExists,
            format!(
                "`{}` already exists; choose another --target-file-name or folder",
                path.display()
            ),
        ));
    }
    // Write to a temporary name and rename, so a file with the final name is always whole.
    // The partial file is recorded before it exists, for the next pgvault to remove if this
    // one is killed; an absolute path, so the record means the same file from any folder.
    let dir = std::path::absolute(&dir)
        .map_err(|e| io(&format!("cannot resolve `{}`", dir.display()), e))?;
    let path = dir.join(format!("{prefix}.{extension}"));
    let partial = dir.join(format!(
        ".{prefix}.{extension}.{}.partial",
        std::process::id()
    ));
    track.done(format!("`{}` is free", path.display()));
    track.start(RestoreStep::Write);
    let registration = leftovers.register(
        "restore",
        Leftover::File {
            path: partial.clone(),
        },
    )?;
    let tmp = PartialFile {
        path: partial,
        registration: Some(registration),
    };
    let file = tokio::fs::File::create(&tmp.path)
        .await
        .map_err(|e| io(&format!("cannot create `{}`", tmp.path.display()), e))?;
    crate::fault::point("staging-created");
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
    let (_, warnings) =
        write_files_output(vault, manifest, opts, plain, &mut out, written, leftovers)
            .await
            .map_err(|e| {
                // The write error (ours, or pg_restore's for a plain SQL file) carries no errno
                // here; a target disk left without room is what it means.
                let writing = matches!(
                    e.code,
                    ErrorCode::RestoreTargetWriteFailed | ErrorCode::UserErrorPgRestoreFailed
                );
                if writing && crate::store::disk::has_no_room(&dir) {
                    disk_full(&dir)
                } else {
                    e
                }
            })?;
    out.flush()
        .await
        .map_err(|e| io("cannot write the file", e))?;
    let file = out.into_inner();
    file.sync_all()
        .await
        .map_err(|e| io("cannot flush the file", e))?;
    let bytes_written = file
        .metadata()
        .await
        .map_err(|e| io("cannot read the file's size", e))?
        .len();
    track.done(format!("{bytes_written} bytes written"));
    track.start(RestoreStep::Commit);
    crate::fault::point("before-rename");
    tokio::fs::rename(&tmp.path, &path)
        .await
        .map_err(|e| io("cannot rename the file into place", e))?;
    drop(tmp);
    track.done(format!("renamed to `{}`", path.display()));
    Ok(RestoreOutcome {
        bytes_written,
        target: json!({ "file": path.display().to_string() }),
        warnings,
        owners_not_kept: None,
    })
}

/// A restore target's disk is full.
pub(super) fn disk_full(dir: &std::path::Path) -> Error {
    Error::new(
        ErrorCode::UserErrorDiskFull,
        crate::store::disk::disk_full_message(dir),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::restore::initialize_for_data_recovery_as_files;
    use crate::engine::restore::test_manifest;
    use crate::model::restore::FILE_SYSTEM;

    #[test]
    fn a_restore_file_name_never_leads_out_of_its_folder() {
        let mut manifest = test_manifest();
        let folder = |prefix: &str| TargetDetails {
            file_prefix: prefix.into(),
            restore_target_location_type: FILE_SYSTEM.into(),
            url: "file:///restores".into(),
        };
        for (database, expected) in [
            ("a/../b", "a_.._b-rp"),
            ("../../etc/x", "___.._etc_x-rp"),
            ("..", "__-rp"),
            (".hidden", "_hidden-rp"),
            ("back\\slash\nnew", "back_slash_new-rp"),
            ("plain_name", "plain_name-rp"),
        ] {
            manifest.datasource.database = database.into();
            let (prefix, ext) = files_prefix_and_extension(&folder(""), &manifest, false).unwrap();
            assert_eq!(prefix, expected, "{database}");
            assert_eq!(ext, "dump");
            let path = std::path::Path::new("/restores").join(format!("{prefix}.{ext}"));
            assert_eq!(path.parent(), Some(std::path::Path::new("/restores")));
            assert!(path.components().all(|c| matches!(
                c,
                std::path::Component::RootDir | std::path::Component::Normal(_)
            )));
        }
        manifest.datasource.database = "é".repeat(150);
        let (prefix, _) = files_prefix_and_extension(&folder(""), &manifest, false).unwrap();
        assert!(prefix.len() <= MAX_FILE_NAME && prefix.starts_with('é'));
        // An explicit name must be plain for a folder; a blob name may have folders.
        for bad in ["../x", "a/b", "..", ".", ".hidden", "a\\b", "a\nb"] {
            let e = files_prefix_and_extension(&folder(bad), &manifest, true).unwrap_err();
            assert_eq!(e.code.as_str(), "UserErrorInvalidTarget", "{bad}");
            assert!(e.message.contains("plain file name"), "{}", e.message);
        }
        let blob = TargetDetails {
            file_prefix: "restores/empdb".into(),
            restore_target_location_type: AZURE_BLOBS.into(),
            url: "https://acct.blob.core.windows.net/c".into(),
        };
        assert!(files_prefix_and_extension(&blob, &manifest, false).is_ok());
        let long = folder(&"x".repeat(MAX_FILE_NAME + 1));
        assert!(files_prefix_and_extension(&long, &manifest, true).is_err());
        assert_eq!(
            files_prefix_and_extension(&folder("empdb-2026"), &manifest, true).unwrap(),
            ("empdb-2026".to_owned(), "sql")
        );
        assert!(initialize_for_data_recovery_as_files("rp", "/restores", "../up", None).is_err());
        assert!(initialize_for_data_recovery_as_files("rp", "/restores", "fine", None).is_ok());
    }
}
