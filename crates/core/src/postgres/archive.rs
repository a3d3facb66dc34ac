//! pg_dump's custom archive format, as the store and the engine see it: the scanner itself is
//! crate `pgvault-pgdump` (pure parsing, re-exported here); this module plugs it into the
//! store as the [`StreamFormat`] of every backup's stream, and reads back what a manifest
//! recorded.

pub use pgvault_pgdump::*;

use crate::store::manifest::Manifest;
use crate::store::observe::{ObserveError, Recorded, StreamFormat, StreamLayout, StreamObserver};

/// pg_dump's custom archive format as the store sees it ([`crate::store::observe`]): every
/// backup's stream is watched by an [`ArchiveScanner`], whose [`ArchiveSummary`] the manifest
/// keeps as its `archive`.
#[derive(Clone, Copy, Debug, Default)]
pub struct CustomArchive;

impl StreamFormat for CustomArchive {
    fn name(&self) -> &'static str {
        "custom-format archive"
    }

    fn observer(&self) -> Box<dyn StreamObserver> {
        Box::new(Observer(ArchiveScanner::new()))
    }

    fn layout(&self, recorded: &Recorded) -> Option<StreamLayout> {
        let archive: ArchiveSummary = recorded.read().ok()?;
        Some(StreamLayout {
            header: 0..archive.toc_end,
            parts: archive
                .entries
                .iter()
                .filter_map(|t| {
                    let d = t.data.as_ref()?;
                    Some((format!("{}.{}", t.namespace, t.tag), d.start..d.end))
                })
                .collect(),
            entries: archive.entries.len(),
        })
    }
}

/// The scanner as the store's observer of one stream.
struct Observer(ArchiveScanner);

impl StreamObserver for Observer {
    fn observe(&mut self, bytes: &[u8]) {
        self.0.feed(bytes);
    }

    fn finish(self: Box<Self>) -> Result<Recorded, ObserveError> {
        let summary = self.0.finish()?;
        Ok(Recorded::of(&summary)?)
    }
}

/// The table of contents a manifest recorded, typed; `None` when it recorded none or one that
/// does not read as an [`ArchiveSummary`] (logged: the manifest's checksum held, so this is a
/// bug or a hand-made manifest, and a restore goes on without the extents).
pub fn recorded_archive(manifest: &Manifest) -> Option<ArchiveSummary> {
    let recorded = manifest.archive.as_ref()?;
    recorded
        .read()
        .inspect_err(|e| {
            tracing::warn!(recovery_point = %manifest.recovery_point_id, error = %e, "the recovery point's table of contents does not read; going on without it");
        })
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::contents::recorded_contents;
    use crate::store::manifest::{Manifest, StreamInfo};
    use crate::store::testing::{archive, manifest};

    fn sample(archive: Option<Recorded>, contents: Option<Recorded>) -> Manifest {
        let stream = StreamInfo {
            length: 0,
            chunks_blake3: String::new(),
            chunk_count: 0,
            chunk_lists: Vec::new(),
        };
        let mut m = manifest("db", "rp", stream, archive);
        m.contents = contents;
        m
    }

    /// What the scanner records is what the engine reads back, and its layout names each
    /// table's data.
    #[test]
    fn a_scanned_archive_reads_back_typed_with_its_layout() {
        let mut observer = CustomArchive.observer();
        observer.observe(&archive(50, 0));
        let recorded = observer.finish().unwrap();
        let summary = recorded_archive(&sample(Some(recorded.clone()), None)).unwrap();
        let layout = CustomArchive.layout(&recorded).unwrap();
        assert_eq!(layout.entries, summary.entries.len());
        assert_eq!(layout.header, 0..summary.toc_end);
        assert!(!layout.parts.is_empty());
    }

    /// A part the store kept (a JSON object under a checksum that holds) but that is not what
    /// the engine wrote reads as nothing, never as a panic: the store does not judge types.
    #[test]
    fn records_of_the_wrong_shape_read_as_none() {
        let wrong = Recorded::of(&serde_json::json!({"schemas": 3})).unwrap();
        let m = sample(Some(wrong.clone()), Some(wrong.clone()));
        assert!(recorded_archive(&m).is_none());
        assert!(recorded_contents(&m).is_none());
        assert!(CustomArchive.layout(&wrong).is_none());
    }

    /// A stream that is not an archive fails the scan with the scanner's own error.
    #[test]
    fn a_stream_that_is_not_an_archive_keeps_its_typed_error() {
        let mut observer = CustomArchive.observer();
        observer.observe(b"not an archive at all");
        let err = observer.finish().unwrap_err();
        let typed = err
            .downcast_ref::<ArchiveError>()
            .expect("the scanner's error");
        assert_eq!(typed.code().as_str(), "UserErrorPgDumpNotAnArchive");
    }
}
