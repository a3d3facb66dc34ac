//! A restore as files into a Blob container (Azure's `AzureBlobs` target): the container URL
//! and blob name checked, the output streamed by a multipart upload committed only whole, and
//! Blob Storage's errors said for the user without a SAS.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::RestoreOutcome;
use super::files::{files_prefix_and_extension, write_files_output};
use super::steps::{RestoreStep, Tracker};
use crate::engine::leftovers::Leftovers;
use crate::engine::vault::Vault;
use crate::engine::{Error, Result};
use crate::model::code::ErrorCode;
use crate::model::restore::{RestoreOptions, TargetDetails};
use crate::store::azure::AzureLocation;
use crate::store::manifest::Manifest;

/// A URL as it may be shown: without a query string, and with any SAS signature redacted.
pub(super) fn shown_url(url: &str) -> String {
    crate::store::azure::redact(url.split(['?', '#']).next().unwrap_or_default())
}

/// The container (and optional prefix) a Blob target URL names, or why it names none.
pub(super) fn blob_location(url: &str) -> Result<AzureLocation> {
    let bad = |why: String| {
        Error::new(
            ErrorCode::UserErrorInvalidTarget,
            format!("`{}` is not a Blob container URL: {why}", shown_url(url)),
        )
    };
    match AzureLocation::parse(url) {
        Ok(Some(location)) => Ok(location),
        Ok(None) => Err(bad(
            "give https://<account>.blob.core.windows.net/<container> (or az://<account>/<container>)"
                .into(),
        )),
        Err(why) => Err(bad(why)),
    }
}

/// The blob name `<prefix>.<extension>`, checked as a blob path (no empty, `.` or `..`
/// segments, no leading slash).
pub(super) fn blob_name(prefix: &str, extension: &str) -> Result<object_store::path::Path> {
    let name = format!("{prefix}.{extension}");
    let bad = || {
        Error::new(
            ErrorCode::UserErrorInvalidTarget,
            format!(
                "`{name}` is not a blob name: use letters, digits, `-`, `_` and `.`, with `/` only between folder names"
            ),
        )
    };
    if prefix.starts_with('/')
        || prefix
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(bad());
    }
    object_store::path::Path::parse(&name).map_err(|_| bad())
}

/// Upload parts in flight at once: with [`blob_part_size`], what bounds a restore's memory.
pub(super) const UPLOAD_CONCURRENCY: usize = 4;

/// The size of each uploaded part: 8 MiB, or more for a dump that would otherwise need more
/// than Azure's 50,000 blocks (a plain SQL file is guessed at 16 times the compressed
/// archive, with room to spare).
pub(super) fn blob_part_size(stream_length: u64, plain: bool) -> usize {
    const MIB: u64 = 1 << 20;
    let expected = stream_length.saturating_mul(if plain { 16 } else { 1 });
    let needed = expected.div_ceil(45_000).div_ceil(MIB) * MIB;
    needed.clamp(8 * MIB, 2048 * MIB) as usize
}

/// A restore as files into a Blob container (Azure's `AzureBlobs` target): the same output
/// as for a folder, streamed into the blob `<prefix>/<filePrefix>.dump` (or `.sql`) of the
/// container by a multipart upload (Put Block, then Put Block List), so memory stays bounded
/// whatever the size of the dump and the blob appears only whole: a failed or cancelled
/// restore commits nothing under the name (the upload is aborted; uncommitted blocks expire).
///
/// `FailIfExists`: the blob is looked up (HEAD) before anything is written and an existing one
/// is refused. `object_store` offers create-only semantics (`PutMode::Create`) for single puts
/// only, not for multipart uploads, so a blob created by someone else between that check and
/// the commit would be replaced.
///
/// Credentials come from the environment variables a Blob vault uses
/// ([`crate::store::azure::build_store`]); an error never shows a SAS.
#[allow(clippy::too_many_arguments)]
pub(super) async fn restore_to_container(
    vault: &Vault,
    manifest: &Manifest,
    target: &TargetDetails,
    opts: &RestoreOptions,
    plain: bool,
    written: Arc<AtomicU64>,
    leftovers: &Leftovers,
    track: &mut Tracker<'_>,
) -> Result<RestoreOutcome> {
    use object_store::{ObjectStore, WriteMultipart};

    let location = blob_location(&target.url)?;
    let (prefix, extension) = files_prefix_and_extension(target, manifest, plain)?;
    let name = blob_name(&prefix, extension)?;
    let blob_url = format!("{}/{name}", shown_url(target.url.trim_end_matches('/')));
    let store: Arc<dyn ObjectStore> = crate::store::azure::AzureAuth::from_env()
        .and_then(|auth| crate::store::azure::build_store(&location, &auth))
        .map_err(|e| {
            Error::new(
                ErrorCode::UserErrorInvalidTarget,
                format!("cannot open the Blob container for `{blob_url}`: {e}"),
            )
        })?;
    match store.head(&name).await {
        Ok(_) => {
            return Err(Error::new(
                ErrorCode::UserErrorFileAlreadyExists,
                format!(
                    "blob `{blob_url}` already exists and the recovery option is FailIfExists; choose another --target-file-name, or delete the blob first"
                ),
            ));
        }
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(blob_error(&location, &blob_url, "cannot look up", e)),
    }
    track.done(format!("blob `{blob_url}` is free"));
    track.start(RestoreStep::Write);
    let upload = store
        .put_multipart(&name)
        .await
        .map_err(|e| blob_error(&location, &blob_url, "cannot start writing", e))?;
    let mut parts =
        WriteMultipart::new_with_chunk_size(upload, blob_part_size(manifest.stream.length, plain));
    let (tx, rx) = tokio::io::duplex(1 << 20);
    let produce = async move {
        let mut tx = tx;
        let produced =
            write_files_output(vault, manifest, opts, plain, &mut tx, written, leftovers).await;
        // End of input for the upload (on success and failure alike; a failure is not
        // committed, below).
        let _ = tx.shutdown().await;
        produced
    };
    let (produced, pumped) = tokio::join!(produce, pump_into_upload(rx, &mut parts));
    let finished = match (produced, pumped) {
        // The upload failing is the cause: the writer then only saw a closed pipe.
        (_, Err(e)) => Err(blob_error(&location, &blob_url, "cannot write", e)),
        (Err(e), Ok(_)) => Err(e),
        (Ok((_, warnings)), Ok(bytes)) => match parts.wait_for_capacity(0).await {
            Ok(()) => Ok((bytes, warnings)),
            Err(e) => Err(blob_error(&location, &blob_url, "cannot write", e)),
        },
    };
    let (bytes_written, warnings) = match finished {
        Ok(done) => done,
        Err(e) => {
            if let Err(abort) = parts.abort().await {
                tracing::warn!(blob = %blob_url, error = %crate::store::azure::redact(&abort.to_string()), "could not abort the upload");
            }
            return Err(e);
        }
    };
    track.done(format!("{bytes_written} bytes uploaded"));
    track.start(RestoreStep::Commit);
    parts
        .finish()
        .await
        .map_err(|e| blob_error(&location, &blob_url, "cannot commit", e))?;
    track.done(format!("blob `{blob_url}` committed"));
    Ok(RestoreOutcome {
        bytes_written,
        target: json!({ "blob": blob_url }),
        warnings,
        owners_not_kept: None,
    })
}

/// Copies `input` into the upload until its end, waiting for a free upload slot before each
/// piece so at most [`UPLOAD_CONCURRENCY`] parts are in flight. Returns the bytes copied.
pub(super) async fn pump_into_upload(
    mut input: tokio::io::DuplexStream,
    parts: &mut object_store::WriteMultipart,
) -> object_store::Result<u64> {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0u64;
    loop {
        let n = input
            .read(&mut buf)
            .await
            .map_err(|e| object_store::Error::Generic {
                store: "restore",
                source: Box::new(e),
            })?;
        if n == 0 {
            return Ok(total);
        }
        parts.wait_for_capacity(UPLOAD_CONCURRENCY).await?;
        parts.write(&buf[..n]);
        total += n as u64;
    }
}

/// A Blob Storage error of a restore as files, said for the user, without any SAS.
pub(super) fn blob_error(
    location: &AzureLocation,
    blob_url: &str,
    what: &str,
    e: object_store::Error,
) -> Error {
    use crate::store::azure::redact;
    match e {
        object_store::Error::NotFound { .. } => Error::new(
            ErrorCode::UserErrorContainerNotFound,
            format!(
                "{what} `{blob_url}`: container `{}` does not exist in storage account `{}`; create it first (a restore writes into an existing container)",
                location.container(),
                location.account()
            ),
        ),
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => Error::new(
            ErrorCode::UserErrorTargetAccessDenied,
            redact(&format!(
                "{what} `{blob_url}`: access denied ({e}); check AZURE_STORAGE_ACCOUNT_KEY or AZURE_STORAGE_SAS_TOKEN (a SAS needs read, create and write permission on the container)"
            )),
        ),
        e => Error::new(
            ErrorCode::RestoreTargetWriteFailed,
            redact(&format!("{what} `{blob_url}`: {e}")),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_parts_stay_within_azures_block_count() {
        const MIB: usize = 1 << 20;
        assert_eq!(blob_part_size(0, false), 8 * MIB);
        assert_eq!(blob_part_size(100 << 30, false), 8 * MIB);
        // 1 TiB of archive: fewer than 50,000 blocks.
        let part = blob_part_size(1 << 40, false);
        assert!((1u64 << 40).div_ceil(part as u64) < 50_000, "{part}");
        assert!(blob_part_size(1 << 40, true) > part);
    }
}
