//! Dumps that are not whole archives make no recovery point (issue 12, finding 2), and a vault
//! that cannot store the stream is named as the cause, not pg_dump's SIGPIPE (finding 11).
//!
//! A `pg_dump` wrapper placed first through PGVAULT_PG_BINDIR stands in for a dump gone wrong:
//! it runs the real `pg_dump` into a file and hands pgvault only part of it, or something else,
//! and exits 0 all the same. Where the stream is cut is computed from a reference dump of the
//! same database with the scanner, and checked afterwards against the very dump the wrapper
//! cut, so each case cuts where it says (inside the header, the TOC, a data block, or exactly
//! between two blocks). Every case must end Failed with a code that says why, leave the
//! recovery points as they were, and the instance must back up normally right after.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use pgvault_core::postgres::archive::{ArchiveScanner, ArchiveSummary};
use serde_json::Value;

use crate::support::{World, cluster, sample_database};

/// The arguments pgvault gives pg_dump, less the snapshot: a reference dump made with them
/// has the layout of the dump the wrapper sees.
const DUMP_ARGS: [&str; 4] = [
    "--format=custom",
    "--compress=0",
    "--no-password",
    "--quote-all-identifiers",
];

/// Places `pg_dump` (a shell script with `body`) in `dir`. It answers `--version` as the real
/// one does, since pgvault asks before it dumps.
fn wrapper(dir: &Path, body: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join("pg_dump");
    let real = real_pg_dump();
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\n[ \"$1\" = --version ] && exec \"{}\" --version\n{body}\n",
            real.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn real_pg_dump() -> PathBuf {
    cluster().bindir().join("pg_dump")
}

fn scan(bytes: &[u8]) -> ArchiveSummary {
    let mut s = ArchiveScanner::new();
    s.feed(bytes);
    s.finish().expect("a real dump scans")
}

/// A reference dump of `database` as pgvault asks for it.
fn reference_dump(database: &str) -> Vec<u8> {
    let out = cluster()
        .command("pg_dump")
        .args(DUMP_ARGS)
        .arg(database)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// An adhoc backup of `instance` with `bin` as PGVAULT_PG_BINDIR: the job as printed.
fn backup_with(w: &World, instance: &str, bin: &Path) -> (bool, Value, String) {
    let out = w
        .command(&crate::support::backup_args("V", instance))
        .env("PGVAULT_PG_BINDIR", bin)
        .output()
        .unwrap();
    let job = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no job printed ({e}), {}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (
        out.status.success(),
        job,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The backup failed with `code`, its Dump sub-task failed, nothing was committed, and the
/// instance's recovery points are still the `before` ones. Returns the job's error message.
fn assert_failed_without_recovery_point(
    w: &World,
    instance: &str,
    what: &str,
    (succeeded, job, stderr): (bool, Value, String),
    code: &str,
    before: usize,
) -> String {
    let p = &job["properties"];
    assert!(!succeeded, "{what}: the backup succeeded: {job:#}");
    assert_eq!(p["status"], "Failed", "{what}: {job:#}");
    assert_eq!(p["errorDetails"][0]["code"], code, "{what}: {job:#}");
    assert!(stderr.contains(code), "{what}: {stderr}");
    let tasks = p["extendedInfo"]["subTasks"].as_array().unwrap();
    let dump = tasks.iter().find(|t| t["taskName"] == "Dump").unwrap();
    assert_eq!(dump["taskStatus"], "Failed", "{what}: {job:#}");
    assert!(
        tasks.iter().all(|t| t["taskName"] != "Commit"),
        "{what}: {job:#}"
    );
    assert_eq!(
        w.recovery_points("V", instance).len(),
        before,
        "{what}: the recovery points changed"
    );
    p["errorDetails"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The instance backs up normally (no wrapper) and the new recovery point verifies.
fn backs_up_normally(w: &World, instance: &str, before: usize) {
    let ok = w.backup("V", instance);
    assert_eq!(ok["properties"]["status"], "Completed", "{ok:#}");
    let points = w.recovery_points("V", instance);
    assert_eq!(points.len(), before + 1);
}

/// A protected instance of a small sample database, and its reference dump.
fn setup(w: &World, prefix: &str) -> (String, String, Vec<u8>) {
    let db = sample_database(prefix, 3000);
    w.vault_with_policy("V");
    let instance = w.protect("V", &db, &w.admin_secret(&db));
    let reference = reference_dump(&db);
    (db, instance, reference)
}

#[test]
fn a_dump_cut_anywhere_makes_no_recovery_point() {
    let w = World::new();
    let (_db, instance, reference) = setup(&w, "cut");
    let summary = scan(&reference);
    let data: Vec<_> = summary.entries.iter().filter_map(|e| e.data).collect();
    assert!(data.len() >= 3, "the sample has several data blocks");
    let big = data.iter().max_by_key(|d| d.len()).unwrap();
    let boundary = data[0].end;
    assert!(boundary < summary.stream_len);

    // (cut, what, is the cut where it says, in the summary of the dump actually cut)
    type Where = fn(u64, &ArchiveSummary) -> bool;
    let cases: [(u64, &str, Where); 4] = [
        (20, "inside the header", |cut, s| cut < s.toc_end / 4),
        (summary.toc_end - 7, "inside the TOC", |cut, s| {
            cut < s.toc_end && cut > s.toc_end / 2
        }),
        (
            (big.start + big.end) / 2,
            "inside a data block",
            |cut, s| {
                s.entries
                    .iter()
                    .filter_map(|e| e.data)
                    .any(|d| d.start < cut && cut < d.end)
            },
        ),
        (boundary, "between two data blocks", |cut, s| {
            cut < s.stream_len
                && s.entries
                    .iter()
                    .any(|e| e.data.is_some_and(|d| d.end == cut))
        }),
    ];
    // Each case ends with one more recovery point: `n` of them exist when case `n` starts.
    for (n, (cut, what, is_where)) in cases.into_iter().enumerate() {
        let full = w.path(&format!("full-{n}.dump"));
        let bin = w.path(&format!("cut-bin-{n}"));
        wrapper(
            &bin,
            &format!(
                "\"{}\" \"$@\" > '{}' || exit $?\nhead -c {cut} '{}'\nexit 0",
                real_pg_dump().display(),
                full.display(),
                full.display()
            ),
        );
        let outcome = backup_with(&w, &instance, &bin);
        let message = assert_failed_without_recovery_point(
            &w,
            &instance,
            what,
            outcome,
            "UserErrorPgDumpIncomplete",
            n,
        );
        assert!(message.contains("incomplete"), "{what}: {message}");
        // The dump the wrapper cut has the reference's layout, so the cut is where it says.
        let cut_dump = scan(&std::fs::read(&full).unwrap());
        assert!(is_where(cut, &cut_dump), "{what}: cut at {cut}");

        backs_up_normally(&w, &instance, n);
    }
}

#[test]
fn random_bytes_or_nothing_make_no_recovery_point() {
    let w = World::new();
    let (db, instance, _) = setup(&w, "garbage");
    // Reproducible noise: a fixed linear congruential generator.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let noise: Vec<u8> = (0..300_000)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 56) as u8
        })
        .collect();
    let noise_file = w.path("noise.bin");
    std::fs::write(&noise_file, &noise).unwrap();
    // A real archive header and TOC followed by noise instead of data blocks.
    let reference = reference_dump(&db);
    let toc_end = scan(&reference).toc_end as usize;
    let mangled_file = w.path("mangled.bin");
    std::fs::write(&mangled_file, [&reference[..toc_end], &noise[..]].concat()).unwrap();

    let cases = [
        (
            format!("cat '{}'\nexit 0", noise_file.display()),
            "random bytes",
            "UserErrorPgDumpNotAnArchive",
            "not a pg_dump custom-format archive",
        ),
        (
            "exit 0".to_string(),
            "an empty stream",
            "UserErrorPgDumpNotAnArchive",
            "an empty stream",
        ),
        (
            format!("cat '{}'\nexit 0", mangled_file.display()),
            "a real TOC followed by noise",
            "UserErrorPgDumpNotAnArchive",
            "corrupt archive",
        ),
    ];
    // Each case ends with one more recovery point: `n` of them exist when case `n` starts.
    for (n, (body, what, code, says)) in cases.into_iter().enumerate() {
        let bin = w.path(&format!("garbage-bin-{n}"));
        wrapper(&bin, &body);
        let outcome = backup_with(&w, &instance, &bin);
        let message = assert_failed_without_recovery_point(&w, &instance, what, outcome, code, n);
        assert!(message.contains(says), "{what}: {message}");
        backs_up_normally(&w, &instance, n);
    }
}

#[test]
fn an_error_on_pg_dumps_stderr_fails_the_backup_even_with_exit_0() {
    let w = World::new();
    let (_db, instance, _) = setup(&w, "stderr");
    // The whole, valid dump reaches pgvault; only stderr says something went wrong.
    let bin = w.path("lying-bin");
    wrapper(
        &bin,
        &format!(
            "\"{}\" \"$@\" || exit $?\necho 'pg_dump: error: query failed: server closed the connection unexpectedly' >&2\nexit 0",
            real_pg_dump().display()
        ),
    );
    let outcome = backup_with(&w, &instance, &bin);
    let message = assert_failed_without_recovery_point(
        &w,
        &instance,
        "an error on stderr",
        outcome,
        "UserErrorPgDumpFailed",
        0,
    );
    assert!(
        message.contains("server closed the connection unexpectedly")
            && message.contains("reported an error"),
        "{message}"
    );
    backs_up_normally(&w, &instance, 0);
}

#[test]
fn a_vault_that_cannot_store_the_stream_is_the_cause_not_pg_dumps_sigpipe() {
    let w = World::new();
    let (_db, instance, _) = setup(&w, "nostore");
    let vault = w.path("vault-V");
    // Packs go to <vault>/packs/<xx>/<id>: a file in the way of that folder makes every
    // pack write fail, the same way each time.
    let packs = vault.join("packs");
    if packs.exists() {
        std::fs::remove_dir_all(&packs).unwrap();
    }
    std::fs::write(&packs, b"in the way").unwrap();
    // A pg_dump that writes more than the pipeline holds (the real dump, then endless noise
    // that does not dedup), so it is still writing when the vault fails and dies of SIGPIPE
    // once pgvault stops reading.
    let bin = w.path("endless-bin");
    wrapper(
        &bin,
        &format!(
            "\"{}\" \"$@\" || exit $?\nexec cat /dev/urandom",
            real_pg_dump().display()
        ),
    );
    let (succeeded, job, stderr) = backup_with(&w, &instance, &bin);
    let p = &job["properties"];
    assert!(!succeeded, "{job:#}");
    assert_eq!(p["status"], "Failed", "{job:#}");
    let code = p["errorDetails"][0]["code"].as_str().unwrap();
    let message = p["errorDetails"][0]["message"].as_str().unwrap();
    assert_ne!(code, "UserErrorPgDumpFailed", "{job:#}");
    assert!(!message.contains("SIGPIPE"), "{message}");
    assert!(
        message.contains("packs"),
        "the error names where storing failed: {message}"
    );
    assert!(stderr.contains(code), "{stderr}");
    let tasks = p["extendedInfo"]["subTasks"].as_array().unwrap();
    let upload = tasks.iter().find(|t| t["taskName"] == "Upload").unwrap();
    assert_eq!(upload["taskStatus"], "Failed", "{job:#}");
    // pg_dump's own end is still told, as the consequence it is.
    let dump = tasks.iter().find(|t| t["taskName"] == "Dump").unwrap();
    let detail = dump["additionalDetails"]["Detail"]
        .as_str()
        .unwrap_or_default();
    assert!(
        detail.contains("SIGPIPE") && detail.contains("stopped storing"),
        "{dump:#}"
    );
    assert!(w.recovery_points("V", &instance).is_empty());

    // With the folder back, the instance backs up normally.
    std::fs::remove_file(&packs).unwrap();
    backs_up_normally(&w, &instance, 0);
}
