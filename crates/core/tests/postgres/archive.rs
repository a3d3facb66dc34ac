//! The archive scanner against real `pg_dump` output.
//!
//! One database on the shared cluster is filled with schemas, tables (one of thousands of rows,
//! one empty, two of the same name in different schemas), large objects, a sequence and a view,
//! and dumped in several ways once for the whole binary; the tests then only read bytes, so
//! they run in parallel. The strongest check is the single-table restore: the header and TOC
//! plus the bytes of one extent are handed to the real `pg_restore`, which must find that
//! entry's data in them.
//!
//! Besides that database, databases of other shapes (empty, hundreds of tables, partitioned
//! tables, many large objects, the odd objects) are dumped as pgvault dumps them: a backup
//! refuses a stream the scanner does not call complete, so no real dump may be refused, and
//! no cut of one accepted.
//!
//! Only what needs real `pg_dump` output is here; the scanner's handling of every archive
//! version, of corrupt input and of splits at every byte is unit-tested in the module on
//! archives it builds itself.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::process::{Output, Stdio};
use std::sync::OnceLock;

use pgvault_core::postgres::archive::{ArchiveError, ArchiveScanner, ArchiveSummary, TocEntry};
use pgvault_testkit::TestCluster;

/// Rows in `sales.orders`, the big table.
const ORDERS: usize = 5000;

const SETUP_SQL: &str = "
CREATE SCHEMA sales;
CREATE SCHEMA hr;
CREATE TABLE sales.orders (id int PRIMARY KEY, customer text NOT NULL, amount numeric(10,2), note text);
INSERT INTO sales.orders
    SELECT g, 'customer ' || (g % 97), g * 1.25, repeat('x', g % 50) FROM generate_series(1, 5000) g;
COMMENT ON TABLE sales.orders IS 'one row per order';
CREATE TABLE sales.items (id int, name text);
INSERT INTO sales.items VALUES (1, 'anvil'), (2, 'rope'), (3, 'rocket skates');
CREATE TABLE hr.items (id int, title text);
INSERT INTO hr.items VALUES (1, 'desk'), (2, 'chair');
CREATE TABLE hr.empty (id int);
CREATE SEQUENCE hr.badge_seq;
SELECT nextval('hr.badge_seq');
CREATE VIEW sales.big_orders AS SELECT id, amount FROM sales.orders WHERE amount > 1000;
SELECT lo_from_bytea(0, decode(repeat('0123456789abcdef', 8192), 'hex'));
SELECT lo_from_bytea(0, 'a small large object'::bytea);
";

/// The tables with rows or without: every one must have a `TABLE DATA` entry with data.
const TABLES: [(&str, &str); 4] = [
    ("hr", "empty"),
    ("hr", "items"),
    ("sales", "items"),
    ("sales", "orders"),
];

fn check(what: &str, output: Output) -> Output {
    assert!(
        output.status.success(),
        "{what} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Everything the tests look at, made once.
struct Dumps {
    /// The database dumped, named by the test kit.
    database: String,
    /// `server_version` of the server, as pg_dump records it in the header.
    server_version: String,
    /// The version of pg_dump, as it records it in the header.
    pg_dump_version: String,
    /// `--format=custom --compress=0`, read from pg_dump's stdout pipe.
    custom: Vec<u8>,
    /// The same dump's summary from a scanner fed while the pipe was being read.
    streamed: Result<ArchiveSummary, ArchiveError>,
    /// `--format=custom --compress=6`.
    gzip: Vec<u8>,
    /// `--format=plain`.
    plain: Vec<u8>,
    /// toc.dat of `--format=directory`.
    directory_toc: Vec<u8>,
}

impl Dumps {
    /// pg_dump's major version.
    fn pg_dump_major(&self) -> u32 {
        let major = self.pg_dump_version.split(['.', ' ']).next().unwrap_or("");
        major
            .parse()
            .unwrap_or_else(|_| panic!("pg_dump version {:?}", self.pg_dump_version))
    }

    /// The archive version pg_dump writes (`K_VERS_1_14` in PostgreSQL 12 to 15, `1_15` in 16,
    /// `1_16` from 17), and how the header of a `--compress=6` dump names its compression:
    /// before 1.15 the header holds the zlib level, from 1.15 the algorithm only.
    fn expected_version_and_gzip(&self) -> (&'static str, &'static str) {
        match self.pg_dump_major() {
            12..=15 => ("1.14.0", "gzip:6"),
            16 => ("1.15.0", "gzip"),
            17.. => ("1.16.0", "gzip"),
            major => panic!("pg_dump {major} is older than PostgreSQL 12, which these tests need"),
        }
    }
}

fn dumps() -> &'static Dumps {
    static DUMPS: OnceLock<Dumps> = OnceLock::new();
    DUMPS.get_or_init(|| {
        let cluster = TestCluster::shared();
        let database = cluster.create_database("archive_shop");
        cluster.psql(&database, SETUP_SQL);
        let server_version = cluster.psql(&database, "SHOW server_version");
        let version = check(
            "pg_dump --version",
            cluster
                .command("pg_dump")
                .arg("--version")
                .output()
                .unwrap(),
        );
        let pg_dump_version = String::from_utf8(version.stdout)
            .unwrap()
            .trim()
            .strip_prefix("pg_dump (PostgreSQL) ")
            .expect("pg_dump --version starts `pg_dump (PostgreSQL) `")
            .to_owned();

        // Read the custom dump the way pgvault does: from a pipe, in pieces as they come.
        let mut child = cluster
            .command("pg_dump")
            .args(["--format=custom", "--compress=0", "-d", &database])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut scanner = ArchiveScanner::new();
        let mut custom = Vec::new();
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = stdout.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            scanner.feed(&buf[..n]);
            custom.extend_from_slice(&buf[..n]);
        }
        check("pg_dump", child.wait_with_output().unwrap());

        let pg_dump = |args: &[&str]| {
            let output = cluster
                .command("pg_dump")
                .args(args)
                .args(["-d", &database])
                .output()
                .unwrap();
            check("pg_dump", output).stdout
        };
        let gzip = pg_dump(&["--format=custom", "--compress=6"]);
        let plain = pg_dump(&["--format=plain"]);
        let dir = tempfile::tempdir().unwrap();
        let dump_dir = dir.path().join("directory-dump");
        pg_dump(&[
            "--format=directory",
            "--compress=0",
            "-f",
            dump_dir.to_str().unwrap(),
        ]);
        let directory_toc = std::fs::read(dump_dir.join("toc.dat")).unwrap();

        Dumps {
            database,
            server_version,
            pg_dump_version,
            custom,
            streamed: scanner.finish(),
            gzip,
            plain,
            directory_toc,
        }
    })
}

fn scan_in(bytes: &[u8], size: usize) -> Result<ArchiveSummary, ArchiveError> {
    let mut s = ArchiveScanner::new();
    for piece in bytes.chunks(size) {
        s.feed(piece);
    }
    s.finish()
}

fn summary() -> ArchiveSummary {
    scan_in(&dumps().custom, usize::MAX).expect("the custom dump scans")
}

fn table_data(summary: &ArchiveSummary) -> BTreeSet<(String, String)> {
    summary
        .entries
        .iter()
        .filter(|e| e.desc == "TABLE DATA")
        .map(|e| (e.namespace.clone(), e.tag.clone()))
        .collect()
}

fn expected_tables() -> BTreeSet<(String, String)> {
    TABLES
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
}

/// An int as pg_dump writes it with 4-byte ints.
fn int_bytes(v: i32) -> [u8; 5] {
    let m = v.unsigned_abs().to_le_bytes();
    [u8::from(v < 0), m[0], m[1], m[2], m[3]]
}

/// Runs pg_restore on `archive` given on stdin (so it cannot seek) and returns its script.
fn pg_restore(archive: Vec<u8>, args: &[&str]) -> String {
    // The kit's command has the cluster's connection settings, which pg_restore ignores when it
    // writes a script.
    let mut child = TestCluster::shared()
        .command("pg_restore")
        .args(args)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Written from another thread so a large script on stdout cannot deadlock us.
    let writer = std::thread::spawn(move || stdin.write_all(&archive));
    let output = check("pg_restore", child.wait_with_output().unwrap());
    writer.join().unwrap().unwrap();
    String::from_utf8(output.stdout).unwrap()
}

/// The header and TOC of `dump` followed by only the data block of `entry`.
fn archive_of_one(dump: &[u8], summary: &ArchiveSummary, entry: &TocEntry) -> Vec<u8> {
    let extent = entry.data.expect("the entry has data");
    let mut archive = dump[..summary.toc_end as usize].to_vec();
    archive.extend_from_slice(&dump[extent.start as usize..extent.end as usize]);
    archive
}

/// The rows of the COPY block for `table` in a restore script.
fn copy_rows(script: &str, table: &str) -> Vec<String> {
    let mut lines = script.lines();
    let copy = format!("COPY {table} ");
    assert!(
        lines.any(|l| l.starts_with(&copy)),
        "no COPY for {table} in the script"
    );
    lines
        .take_while(|l| *l != "\\.")
        .map(str::to_string)
        .collect()
}

#[test]
fn header_describes_the_dump() {
    let dumps = dumps();
    let header = summary().header;
    assert_eq!(header.database_name, dumps.database);
    assert_eq!(header.format_version, dumps.expected_version_and_gzip().0);
    assert_eq!((header.int_size, header.off_size), (4, 8));
    assert_eq!(header.compression, "none");
    assert_eq!(header.server_version, dumps.server_version, "{header:?}");
    assert_eq!(header.pg_dump_version, dumps.pg_dump_version, "{header:?}");
    let created = header.created.as_bytes();
    assert_eq!(created.len(), 19, "{}", header.created);
    for (i, c) in created.iter().enumerate() {
        let expected = match i {
            4 | 7 => b'-' == *c,
            10 => b'T' == *c,
            13 | 16 => b':' == *c,
            _ => c.is_ascii_digit(),
        };
        assert!(expected, "created {:?}", header.created);
    }
}

#[test]
fn every_table_has_data_and_nothing_else_does() {
    let summary = summary();
    assert_eq!(table_data(&summary), expected_tables());
    let descs: BTreeSet<&str> = summary.entries.iter().map(|e| e.desc.as_str()).collect();
    for desc in [
        "SCHEMA",
        "TABLE",
        "VIEW",
        "SEQUENCE",
        "SEQUENCE SET",
        "BLOBS",
        "COMMENT",
    ] {
        assert!(descs.contains(desc), "no {desc} entry in {descs:?}");
    }
    for e in &summary.entries {
        assert_eq!(
            e.data.is_some(),
            e.had_dumper,
            "entry {} {} {}.{}",
            e.dump_id,
            e.desc,
            e.namespace,
            e.tag
        );
        assert!(e.had_dumper == (e.desc == "TABLE DATA" || e.desc == "BLOBS"));
    }
    let orders_table = summary
        .entries
        .iter()
        .find(|e| e.desc == "TABLE" && e.tag == "orders")
        .unwrap();
    assert_eq!(orders_table.table_am, "heap");
    let orders = summary.table_data("sales", "orders").unwrap();
    assert_eq!(orders.dependencies, [orders_table.dump_id]);
    assert_eq!(orders.section, 3);
}

#[test]
fn extents_tile_the_data_section_in_toc_order() {
    let dump = &dumps().custom;
    let summary = summary();
    assert_eq!(summary.stream_len, dump.len() as u64);
    // pg_dump writes the blocks in TOC order right after the TOC, with nothing in between.
    let mut next = summary.toc_end;
    for e in summary.entries.iter().filter(|e| e.data.is_some()) {
        let extent = e.data.unwrap();
        assert_eq!(extent.start, next, "{} {}", e.desc, e.tag);
        assert!(extent.end > extent.start);
        next = extent.end;

        let bytes = &dump[extent.start as usize..extent.end as usize];
        let block_type = if e.desc == "BLOBS" { 3 } else { 1 };
        assert_eq!(bytes[0], block_type, "{} {}", e.desc, e.tag);
        assert_eq!(bytes[1..6], int_bytes(e.dump_id), "{} {}", e.desc, e.tag);
        assert_eq!(bytes[bytes.len() - 5..], int_bytes(0));
    }
    assert_eq!(next, summary.stream_len);
    let empty = summary.table_data("hr", "empty").unwrap().data.unwrap();
    // An empty table's COPY data is only pg_dump's end-of-copy marker, in one chunk.
    let empty_bytes = &dump[empty.start as usize..empty.end as usize];
    assert_eq!(empty_bytes[6..11], int_bytes(5));
    assert_eq!(&empty_bytes[11..16], b"\\.\n\n\n");
    assert_eq!(empty.len(), 1 + 5 + 5 + 5 + 5);
}

#[test]
fn any_split_of_the_stream_gives_the_same_summary() {
    let dump = &dumps().custom;
    let whole = summary();
    assert_eq!(dumps().streamed, Ok(whole.clone()), "fed from the pipe");
    for size in [1, 7, 4093, 65537] {
        assert_eq!(scan_in(dump, size), Ok(whole.clone()), "pieces of {size}");
    }
    // Uneven pieces: 1, 2, 3, ... bytes.
    let mut s = ArchiveScanner::new();
    let (mut at, mut size) = (0, 1);
    while at < dump.len() {
        let end = (at + size).min(dump.len());
        s.feed(&dump[at..end]);
        (at, size) = (end, size + 1);
    }
    assert_eq!(s.finish(), Ok(whole));
}

#[test]
fn pg_restore_restores_a_table_from_header_toc_and_its_extent() {
    let dump = &dumps().custom;
    let summary = summary();
    let orders = summary.table_data("sales", "orders").unwrap();
    let script = pg_restore(
        archive_of_one(dump, &summary, orders),
        &["--data-only", "--schema=sales", "--table=orders"],
    );
    let rows = copy_rows(&script, "sales.orders");
    assert_eq!(rows.len(), ORDERS);
    assert_eq!(rows[0], "1\tcustomer 1\t1.25\tx");
    assert!(!script.contains("hr.items"));
}

#[test]
fn pg_restore_restores_large_objects_from_their_extent() {
    let dump = &dumps().custom;
    let summary = summary();
    let blobs = summary.entries.iter().find(|e| e.desc == "BLOBS").unwrap();
    let list = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(list.path(), format!("{};\n", blobs.dump_id)).unwrap();
    let script = pg_restore(
        archive_of_one(dump, &summary, blobs),
        &["-L", list.path().to_str().unwrap()],
    );
    assert_eq!(script.matches("lo_open").count(), 2, "{script}");
    // lowrite calls carry the bytes in hex: both objects' contents must be there.
    let small: String = b"a small large object"
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(
        script.contains(&small),
        "the small object's bytes are missing"
    );
    assert!(script.contains("0123456789abcdef0123456789abcdef"));
}

#[test]
fn gzip_compressed_dump_scans_and_restores() {
    let dump = &dumps().gzip;
    let summary = scan_in(dump, 4093).expect("the gzip dump scans");
    assert_eq!(
        summary.header.compression,
        dumps().expected_version_and_gzip().1
    );
    assert_eq!(table_data(&summary), expected_tables());
    for e in summary.entries.iter().filter(|e| e.had_dumper) {
        assert!(e.data.is_some(), "{} {}", e.desc, e.tag);
    }
    assert_eq!(scan_in(dump, 1), Ok(summary.clone()));
    let orders = summary.table_data("sales", "orders").unwrap();
    let script = pg_restore(
        archive_of_one(dump, &summary, orders),
        &["--data-only", "--schema=sales", "--table=orders"],
    );
    assert_eq!(copy_rows(&script, "sales.orders").len(), ORDERS);
}

#[test]
fn truncated_dumps_are_errors() {
    let dump = &dumps().custom;
    let summary = summary();
    let orders = summary.table_data("sales", "orders").unwrap().data.unwrap();
    let first_block_end = summary.entries.iter().find_map(|e| e.data).unwrap().end;
    for (cut, what) in [
        (3, "inside the magic"),
        (40, "inside the header"),
        (summary.toc_end - 10, "inside the TOC"),
        ((orders.start + orders.end) / 2, "inside the orders data"),
        (summary.stream_len - 1, "inside the last block"),
    ] {
        match scan_in(&dump[..cut as usize], 4096) {
            Err(ArchiveError::Truncated { offset, .. }) => assert_eq!(offset, cut, "{what}"),
            other => panic!("{what}: {other:?}"),
        }
    }
    for cut in [summary.toc_end, first_block_end] {
        match scan_in(&dump[..cut as usize], 4096) {
            Err(ArchiveError::MissingData { entries }) => assert!(!entries.is_empty()),
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
}

#[test]
fn other_dump_formats_are_not_custom_archives() {
    let err = scan_in(&dumps().plain, 4096).unwrap_err();
    assert!(
        matches!(err, ArchiveError::NotCustomArchive { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("plain-format SQL dump"), "{err}");

    let err = scan_in(&dumps().directory_toc, 4096).unwrap_err();
    assert!(err.to_string().contains("directory-format"), "{err}");

    let noise: Vec<u8> = (0..10_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
        .collect();
    assert!(matches!(
        scan_in(&noise, 100),
        Err(ArchiveError::NotCustomArchive { .. })
    ));
}

/// Databases of the shapes a backup meets, each dumped as pgvault dumps it (`--format=custom
/// --compress=0 --quote-all-identifiers`, read from a pipe): the scanner's verdict on every
/// one must be "complete" (a backup refuses any other), with a data block for exactly the
/// entries pg_dump had data for, and every cut of it must be refused, wherever it falls.
#[test]
fn real_dumps_of_every_shape_are_complete_and_every_cut_is_refused() {
    let cluster = TestCluster::shared();
    let shapes: [(&str, &str); 5] = [
        ("empty", ""),
        (
            "many_tables",
            "DO $$ BEGIN FOR i IN 1..300 LOOP
                 EXECUTE format('CREATE TABLE t%s (id int, v text)', i);
                 IF i % 3 = 0 THEN
                     EXECUTE format('INSERT INTO t%s SELECT g, md5(g::text) FROM generate_series(1, %s) g', i, i);
                 END IF;
             END LOOP; END $$;",
        ),
        (
            "partitioned",
            "CREATE TABLE m (id int, at date, v text) PARTITION BY RANGE (at);
             CREATE TABLE m_2024 PARTITION OF m FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')
                 PARTITION BY LIST (id);
             CREATE TABLE m_2024_a PARTITION OF m_2024 FOR VALUES IN (1, 2);
             CREATE TABLE m_2024_b PARTITION OF m_2024 DEFAULT;
             CREATE TABLE m_2025 PARTITION OF m FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
             CREATE TABLE m_empty PARTITION OF m FOR VALUES FROM ('2030-01-01') TO ('2031-01-01');
             INSERT INTO m SELECT g % 5, date '2024-01-01' + g, repeat('p', g % 40)
                 FROM generate_series(1, 600) g;",
        ),
        (
            "large_objects",
            "SELECT lo_from_bytea(0, decode(repeat(lpad(to_hex(g), 2, '0'), g * 97), 'hex'))
                 FROM generate_series(1, 255) g;
             SELECT lo_create(0);
             CREATE TABLE docs (id int, body oid);",
        ),
        (
            "everything_else",
            "CREATE EXTENSION IF NOT EXISTS plpgsql;
             CREATE TYPE mood AS ENUM ('sad', 'ok');
             CREATE TABLE person (id serial PRIMARY KEY, m mood, tags text[], doc jsonb);
             INSERT INTO person (m, tags, doc) SELECT 'ok', ARRAY['a', 'b'], '{\"k\": 1}' FROM generate_series(1, 50);
             CREATE MATERIALIZED VIEW sad AS SELECT * FROM person WHERE m = 'sad';
             CREATE UNLOGGED TABLE scratch (x int); INSERT INTO scratch VALUES (1);
             CREATE TABLE \"Odd \"\"Name\"\"\" (\"a b\" int); INSERT INTO \"Odd \"\"Name\"\"\" VALUES (7);
             CREATE TABLE child (x int UNIQUE, FOREIGN KEY (x) REFERENCES person (id));
             INSERT INTO child VALUES (1);
             ALTER TABLE person ADD COLUMN partner int REFERENCES child (x) DEFERRABLE;
             CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';
             COMMENT ON DATABASE CURRENT_DATABASE IS 'the last shape';",
        ),
    ];
    for (shape, sql) in shapes {
        let database = cluster.create_database(&format!("shape_{shape}"));
        if !sql.is_empty() {
            cluster.psql(&database, sql);
        }
        let output = check(
            "pg_dump",
            cluster
                .command("pg_dump")
                .args([
                    "--format=custom",
                    "--compress=0",
                    "--no-password",
                    "--quote-all-identifiers",
                    "-d",
                    &database,
                ])
                .output()
                .unwrap(),
        );
        let dump = output.stdout;
        let summary = scan_in(&dump, 8192)
            .unwrap_or_else(|e| panic!("{shape}: a real dump was refused: {e}"));
        assert_eq!(summary.stream_len, dump.len() as u64, "{shape}");
        for e in &summary.entries {
            assert_eq!(
                e.had_dumper,
                e.data.is_some(),
                "{shape}: dumpId {} ({} {})",
                e.dump_id,
                e.desc,
                e.tag
            );
        }
        // pg_restore reads the whole stream from a pipe, as a restore gives it.
        pg_restore(dump.clone(), &[]);

        // Every cut: between blocks (and right after the TOC) when there is data, inside
        // every block, and at every byte of the header and TOC for the small ones.
        let mut cuts: Vec<u64> = Vec::new();
        for d in summary.entries.iter().filter_map(|e| e.data) {
            cuts.extend([d.start, d.start + 1, (d.start + d.end) / 2, d.end - 1]);
        }
        let step = (summary.toc_end / 400).max(1);
        cuts.extend((0..summary.toc_end).step_by(step as usize));
        cuts.retain(|&c| c < summary.stream_len);
        match shape {
            "empty" => assert!(cuts.iter().all(|&c| c < summary.toc_end)),
            "large_objects" => assert!(summary.entries.iter().any(|e| e.desc == "BLOBS")),
            "many_tables" => assert!(table_data(&summary).len() >= 300),
            "partitioned" => assert!(table_data(&summary).len() >= 4),
            _ => {}
        }
        for cut in cuts {
            match scan_in(&dump[..cut as usize], 4096) {
                Err(ArchiveError::Truncated { .. } | ArchiveError::MissingData { .. }) => {}
                Err(ArchiveError::NotCustomArchive { .. }) if cut == 0 => {}
                other => panic!("{shape}: cut at {cut} of {}: {other:?}", dump.len()),
            }
        }
    }
}
