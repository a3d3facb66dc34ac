//! A request's options as what pg_restore is told: the arguments (always `--no-owner
//! --no-acl`), parallel jobs, the `--use-list` a selective restore plans from the recorded
//! table of contents ([`super::selection`]), and the ranges of the stream it needs.

use super::selection::{self, split_table};
use crate::engine::leftovers::Leftovers;
use crate::engine::{Error, Result};
use crate::model::code::ErrorCode;
use crate::model::restore::RestoreOptions;
use crate::postgres::archive::recorded_archive;
use crate::store::manifest::Manifest;

/// What pg_restore is told to restore, from a request's options.
#[derive(Debug, Default)]
pub(super) struct Selection {
    /// Selection and ownership arguments.
    pub(super) args: Vec<String>,
    /// `-j N`: the archive is staged in a temporary file, which pg_restore can seek.
    pub(super) jobs: Option<u32>,
    /// `--use-list` for a selective restore ([`selection::plan`]): written next to the
    /// staged archive.
    pub(super) list: Option<String>,
    /// The dumpIds the list names.
    pub(super) listed: Option<std::collections::HashSet<i32>>,
    /// Schemas a `--schemas` / `--tables` restore of a recovery point without a recorded table
    /// of contents needs created first: pg_restore's `--schema` selects a schema's contents,
    /// not the schema itself, and the target database is new.
    pub(super) schemas: Vec<String>,
    /// For a selective restore: the parts of the stream pg_restore needs (the header and
    /// table of contents, and the data blocks of the entries it may restore), so only the
    /// chunks holding them are read. `None`: the whole stream.
    pub(super) ranges: Option<Vec<std::ops::Range<u64>>>,
    /// What the plan left out, for the job.
    pub(super) warnings: Vec<String>,
    /// Where the files it stages in the temporary folder (the archive for `--jobs`, the
    /// `--use-list` file, the owners SQL) are recorded before they are created.
    pub(super) leftovers: Leftovers,
}

impl Selection {
    pub(super) fn new(opts: &RestoreOptions, manifest: &Manifest) -> Result<Self> {
        let bad = |msg: String| Error::new(ErrorCode::UserErrorInvalidRestoreOption, msg);
        if opts.schema_only && opts.data_only {
            return Err(bad(
                "--schema-only and --data-only exclude each other".to_owned()
            ));
        }
        if opts.no_table_dependents && opts.tables.is_empty() && opts.schemas.is_empty() {
            return Err(bad(
                "--no-table-dependents applies to the tables --tables or --schemas select; give one of them".to_owned(),
            ));
        }
        let mut sel = Selection::default();
        if let Some(jobs) = opts.jobs {
            if !(1..=64).contains(&jobs) {
                return Err(bad(format!("--jobs {jobs}: give 1 to 64")));
            }
            sel.jobs = (jobs > 1).then_some(jobs);
        }
        // Always without owners and privileges: with --keep-owners they are applied after the
        // restore, statement by statement, where the restoring user may
        // ([`apply_owners_and_privileges`]), instead of failing the whole restore at the
        // first object it may not give away.
        sel.args.push("--no-owner".into());
        sel.args.push("--no-acl".into());
        let selecting = !opts.tables.is_empty() || !opts.schemas.is_empty();
        match &recorded_archive(manifest) {
            Some(archive) if selecting || !opts.exclude_tables.is_empty() => {
                let plan = selection::plan(
                    archive,
                    &selection::Request {
                        tables: &opts.tables,
                        schemas: &opts.schemas,
                        exclude_tables: &opts.exclude_tables,
                        with_dependents: !opts.no_table_dependents,
                    },
                )?;
                sel.list = Some(plan.list);
                sel.listed = Some(plan.ids);
                sel.warnings = plan.warnings;
            }
            None if !opts.exclude_tables.is_empty() => {
                return Err(Error::new(
                    ErrorCode::UserErrorInvalidRestoreOption,
                    "--exclude-tables needs the recovery point's table of contents, which was not recorded for this one; restore it as files and run pg_restore -L by hand",
                ));
            }
            None if selecting => {
                // A recovery point without a recorded table of contents: pg_restore's own
                // selection, which takes a table's definition and data only.
                if opts.no_table_dependents {
                    return Err(bad("--no-table-dependents needs the recovery point's table of contents, which was not recorded for this one".to_owned()));
                }
                let mut schemas: Vec<String> = opts.schemas.clone();
                for table in &opts.tables {
                    let (schema, name) = split_table(table);
                    if let Some(schema) = schema {
                        schemas.push(schema.to_owned());
                    }
                    sel.args.push(format!("--table={name}"));
                }
                schemas.sort();
                schemas.dedup();
                for schema in &schemas {
                    sel.args.push(format!("--schema={schema}"));
                }
                sel.schemas = schemas;
                sel.warnings.push(
                    "this recovery point has no recorded table of contents, so the selected tables come without their sequences, indexes, constraints and triggers".to_owned(),
                );
            }
            _ => {}
        }
        if opts.schema_only {
            sel.args.push("--schema-only".into());
        }
        if opts.data_only {
            sel.args.push("--data-only".into());
        }
        sel.ranges = data_ranges(opts, manifest, sel.listed.as_ref());
        Ok(sel)
    }
}

/// The parts of the stream a selective restore needs: the header and table of contents, then
/// the data blocks of every entry pg_restore may ask for (a superset is harmless: pg_restore
/// skips blocks it does not want; a block it wants must be there). `None` (read everything)
/// without a selection, or when the recorded table of contents does not say where each
/// block is.
pub(super) fn data_ranges(
    opts: &RestoreOptions,
    manifest: &Manifest,
    listed: Option<&std::collections::HashSet<i32>>,
) -> Option<Vec<std::ops::Range<u64>>> {
    if !opts.selects() {
        return None;
    }
    let archive = recorded_archive(manifest)?;
    if archive.stream_len != manifest.stream.length {
        return None;
    }
    let names: Vec<&str> = opts.tables.iter().map(|t| split_table(t).1).collect();
    let mut schemas: Vec<&str> = opts.schemas.iter().map(String::as_str).collect();
    schemas.extend(opts.tables.iter().filter_map(|t| split_table(t).0));
    let header_and_toc = 0..archive.toc_end;
    let mut ranges = Vec::with_capacity(archive.entries.len() + 1);
    ranges.push(header_and_toc);
    if !opts.schema_only {
        for e in archive.entries.iter().filter(|e| e.had_dumper) {
            let extent = e.data?;
            let wanted = match listed {
                Some(ids) => ids.contains(&e.dump_id),
                None => {
                    (names.is_empty() || names.contains(&e.tag.as_str()))
                        && (schemas.is_empty() || schemas.contains(&e.namespace.as_str()))
                }
            };
            if wanted {
                ranges.push(extent.start..extent.end);
            }
        }
    }
    ranges.sort_by_key(|r| r.start);
    // Blocks never overlap the table of contents or each other; if the record says they do,
    // it is not to be trusted for this.
    if ranges.windows(2).any(|w| w[0].end > w[1].start) {
        return None;
    }
    Some(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::restore::test_manifest;

    #[test]
    fn contradictory_or_misplaced_options_are_refused() {
        let m = |opts: RestoreOptions| {
            Selection::new(&opts, &test_manifest())
                .map(|_| ())
                .unwrap_err()
                .message
        };
        assert!(
            m(RestoreOptions {
                schema_only: true,
                data_only: true,
                ..Default::default()
            })
            .contains("exclude each other")
        );
        assert!(
            m(RestoreOptions {
                jobs: Some(0),
                ..Default::default()
            })
            .contains("1 to 64")
        );
        // Excluding needs the recorded table of contents.
        assert!(
            m(RestoreOptions {
                exclude_tables: vec!["t".into()],
                ..Default::default()
            })
            .contains("table of contents")
        );
    }
}
