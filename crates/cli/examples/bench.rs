//! The backup benchmark: pgvault against `pg_dump` on the same database, in one run.
//!
//! ```text
//! cargo build --release && cargo run --release -p pgvault --example bench -- --scale 40 --docs-mb 400
//! ```
//!
//! It starts a throwaway PostgreSQL (the test suite's testkit), builds a database of pgbench
//! data plus a table of poorly compressible text and jsonb, and measures: `pg_dump -Fc`
//! (default compression) to a file; `pg_dump -Fc -Z0` to /dev/null (the speed limit: the
//! server cannot deliver faster); `pgvault adhoc-backup`; `pg_restore` of the file against a
//! pgvault restore; and a second backup after updating 1% of rows at random in every table.
//! Every measure of pgvault is taken twice, on an unencrypted vault and on an encrypted one
//! (`--encryption-key-uri` with a key file), alternating, so encryption's cost is read off the
//! same run (`--encryption no|yes|both`, default both). `--rounds N` then repeats, N times,
//! a first backup into a fresh vault and its restore, alternating an unencrypted and an
//! encrypted vault, and prints each variant's median and range and the median of the paired
//! ratios: encryption's cost read without one noisy run deciding it.
//! Each command runs under GNU time for wall time and peak resident memory. It is a
//! benchmark, not a test: it prints numbers for the README and asserts nothing.
//!
//! What a backup stored is measured on disk: the growth of the vault folder, every file in
//! it (packs, index files, manifests, anything else), summed by length. The job's
//! `bytesStored` is printed beside it when the two differ, which they should not.

use std::path::PathBuf;
use std::process::Command;

use pgvault_testkit::TestCluster;
use serde_json::Value;

struct Measured {
    seconds: f64,
    max_rss_kib: u64,
    stdout: String,
}

/// Runs a command under `/usr/bin/time -f "%e %M"`.
fn measure(cmd: Command) -> Measured {
    let times = tempfile::NamedTempFile::new().unwrap();
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let mut timed = Command::new("/usr/bin/time");
    timed
        .arg("-o")
        .arg(times.path())
        .arg("-f")
        .arg("%e %M")
        .arg(&program)
        .args(&args);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    let out = timed
        .output()
        .expect("run /usr/bin/time (install GNU time)");
    assert!(
        out.status.success(),
        "{program:?} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = std::fs::read_to_string(times.path()).unwrap();
    let mut it = t.split_whitespace();
    Measured {
        seconds: it.next().unwrap().parse().unwrap(),
        max_rss_kib: it.next().unwrap().parse().unwrap(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

/// What a vault folder holds, summed by file length.
#[derive(Clone, Copy, Default)]
struct Folder {
    /// Every file.
    all: u64,
    /// The manifests (`recovery-points/`).
    manifests: u64,
    /// The lock objects (`locks/`): coordination, not data. A backup's instance lock is one
    /// object per instance that each backup replaces.
    locks: u64,
}

fn folder_bytes(dir: &std::path::Path) -> Folder {
    let mut f = Folder::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                stack.push(e.path());
                continue;
            }
            f.all += meta.len();
            if e.path().starts_with(dir.join("recovery-points")) {
                f.manifests += meta.len();
            }
            if e.path().starts_with(dir.join("locks")) {
                f.locks += meta.len();
            }
        }
    }
    f
}

/// The folder's growth from `before` to `after`, and how it compares with the job's figure
/// (which counts packs, index files and the manifest, not lock objects).
fn on_disk(before: Folder, after: Folder, reported: u64) -> String {
    let grown = after.all - before.all;
    let locks = after.locks as i64 - before.locks as i64;
    if grown == reported {
        mib(grown)
    } else if grown as i64 == reported as i64 + locks {
        format!(
            "{} (the job's {reported} bytes and {locks} of lock objects)",
            mib(grown)
        )
    } else {
        format!(
            "{} (the job reported {reported} bytes, the folder grew by {grown})",
            mib(grown)
        )
    }
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / 1048576.0)
}

struct Pgvault {
    bin: PathBuf,
    home: PathBuf,
}

impl Pgvault {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args).env("PGVAULT_HOME", &self.home);
        c
    }
    fn json(&self, args: &[&str]) -> Value {
        let out = self.cmd(args).output().unwrap();
        assert!(
            out.status.success(),
            "pgvault {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn main() {
    let scale = arg("--scale", "20");
    let docs_mb: u64 = arg("--docs-mb", "200").parse().unwrap();
    let chunk_sizes: Vec<String> = arg("--chunk-kib", "32")
        .split(',')
        .map(str::to_string)
        .collect();
    let rounds: usize = arg("--rounds", "0").parse().unwrap();
    let encryption: Vec<bool> = match arg("--encryption", "both").as_str() {
        "no" => vec![false],
        "yes" => vec![true],
        _ => vec![false, true],
    };
    let work = tempfile::Builder::new()
        .prefix("pgvault-bench-")
        .tempdir()
        .unwrap();
    let bin = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("pgvault");
    assert!(
        bin.is_file(),
        "build the binary first: cargo build --release ({} is missing)",
        bin.display()
    );

    eprintln!(
        "starting PostgreSQL and building the database (pgbench scale {scale}, {docs_mb} MB of text and jsonb)..."
    );
    let c = TestCluster::start();
    c.psql("postgres", "CREATE DATABASE bench");
    let ok = c
        .command("pgbench")
        .args(["-i", "-q", "-s", &scale, "bench"])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "pgbench: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // ~700 bytes a row of hex text and jsonb: compresses about 2:1, like real documents.
    let rows = docs_mb * 1_000_000 / 700;
    c.psql(
        "bench",
        &format!(
            "CREATE TABLE docs AS SELECT g AS id, \
               md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) || \
               md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) || \
               md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) AS body, \
               jsonb_build_object('id', g, 'owner', md5(random()::text), 'score', random(), 'tags', \
                 jsonb_build_array(md5(random()::text), md5(random()::text))) AS doc \
             FROM generate_series(1, {rows}) g; \
             ALTER TABLE docs ADD PRIMARY KEY (id); VACUUM ANALYZE;"
        ),
    );
    let db_size: i64 = c
        .psql("bench", "SELECT pg_database_size('bench')")
        .parse()
        .unwrap();

    let dump_file = work.path().join("bench.fc");
    let mut d = c.command("pg_dump");
    d.args(["-Fc", "-f"]).arg(&dump_file).arg("bench");
    let fc = measure(d);
    let fc_size = std::fs::metadata(&dump_file).unwrap().len();
    let mut d = c.command("pg_dump");
    d.args(["-Fc", "-Z0", "--no-sync", "-f", "/dev/null", "bench"]);
    let z0 = measure(d);

    let secret = work.path().join("bench.secret");
    std::fs::write(
        &secret,
        format!(
            "postgres://{}:{}@{}:{}/bench",
            c.admin_user(),
            c.admin_password(),
            c.host(),
            c.port()
        ),
    )
    .unwrap();
    let ds = format!("postgres://{}:{}/bench", c.host(), c.port());
    let policy = work.path().join("policy.json");

    let key_file = work.path().join("vault.key");
    let key: Vec<u8> = (0..32u8)
        .map(|i| i.wrapping_mul(151).wrapping_add(7))
        .collect();
    std::fs::write(&key_file, key).unwrap();
    struct Run {
        label: String,
        pv: Pgvault,
        instance: String,
        vault_dir: PathBuf,
        first: Measured,
        /// The vault folder's growth, and the job's `bytesStored`.
        first_stored: u64,
        first_disk: String,
        first_manifest: u64,
        read: u64,
    }
    let mut runs = Vec::new();
    for (kib, encrypted) in chunk_sizes
        .iter()
        .flat_map(|k| encryption.iter().map(move |e| (k, *e)))
    {
        let label = if encrypted {
            format!("{kib} KiB chunks, encrypted")
        } else {
            format!("{kib} KiB chunks")
        };
        let tag = if encrypted { "-enc" } else { "" };
        let pv = Pgvault {
            bin: bin.clone(),
            home: work.path().join(format!("home-{kib}{tag}")),
        };
        let vault_dir = work.path().join(format!("vault-{kib}{tag}"));
        let t = pv.json(&[
            "backup-policy",
            "get-default-policy-template",
            "--datasource-type",
            "AzureDatabaseForPostgreSQLFlexibleServer",
        ]);
        std::fs::write(&policy, t.to_string()).unwrap();
        let instance = new_instance(
            &pv,
            &Setup {
                work: work.path(),
                secret: &secret,
                datasource: &ds,
                policy: &policy,
                key_file: encrypted.then_some(key_file.as_path()),
            },
            &vault_dir,
            kib,
        );
        eprintln!("backing up with {label}...");
        let before = folder_bytes(&vault_dir);
        let first = measure(pv.cmd(&[
            "backup-instance",
            "adhoc-backup",
            "--vault-name",
            "B",
            "--name",
            &instance,
        ]));
        let job: Value = serde_json::from_str(&first.stdout).unwrap();
        let first_reported = job["properties"]["result"]["bytesStored"].as_u64().unwrap();
        let read = job["properties"]["result"]["bytesRead"].as_u64().unwrap();
        let after = folder_bytes(&vault_dir);
        runs.push(Run {
            label,
            pv,
            instance,
            vault_dir,
            first,
            first_stored: after.all - before.all,
            first_disk: on_disk(before, after, first_reported),
            first_manifest: after.manifests - before.manifests,
            read,
        });
    }

    eprintln!("restoring...");
    // The baseline creates its database too, as pgvault's restore does.
    let mut r = Command::new("sh");
    r.arg("-c")
        .arg("\"$0\" r_pg && \"$1\" --no-owner --no-acl --exit-on-error -d r_pg \"$2\"");
    r.arg(c.bindir().join("createdb"))
        .arg(c.bindir().join("pg_restore"))
        .arg(&dump_file);
    for (k, v) in c.command("pg_restore").get_envs() {
        match v {
            Some(v) => r.env(k, v),
            None => r.env_remove(k),
        };
    }
    let pg_restore = measure(r);
    let mut vault_restores = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let rp = run.pv.json(&[
            "recovery-point",
            "list",
            "--vault-name",
            "B",
            "--backup-instance-name",
            &run.instance,
        ]);
        let rp_id = rp[0]["name"].as_str().unwrap();
        let req = run.pv.json(&[
            "backup-instance",
            "restore",
            "initialize-for-data-recovery",
            "--recovery-point-id",
            rp_id,
            "--target-database-url",
            &format!("postgres://{}:{}/r_vault_{i}", c.host(), c.port()),
            "--secret-store-uri",
            &format!("file://{}", secret.display()),
        ]);
        let req_file = work.path().join("restore.json");
        std::fs::write(&req_file, req.to_string()).unwrap();
        vault_restores.push(measure(run.pv.cmd(&[
            "backup-instance",
            "restore",
            "trigger",
            "--vault-name",
            "B",
            "--backup-instance-name",
            &run.instance,
            "--restore-request-object",
            req_file.to_str().unwrap(),
        ])));
    }

    eprintln!("updating 1% of rows at random, then backing up again...");
    c.psql("bench", "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE random() < 0.01; \
                     UPDATE pgbench_tellers SET tbalance = tbalance + 1 WHERE random() < 0.01; \
                     UPDATE docs SET doc = jsonb_set(doc, '{score}', to_jsonb(random())) WHERE random() < 0.01;");
    let mut seconds = Vec::new();
    for run in &runs {
        let before = folder_bytes(&run.vault_dir);
        let m = measure(run.pv.cmd(&[
            "backup-instance",
            "adhoc-backup",
            "--vault-name",
            "B",
            "--name",
            &run.instance,
        ]));
        let job: Value = serde_json::from_str(&m.stdout).unwrap();
        let reported = job["properties"]["result"]["bytesStored"].as_u64().unwrap();
        let after = folder_bytes(&run.vault_dir);
        seconds.push((m, after.all - before.all, on_disk(before, after, reported)));
    }

    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!(
        "\n## Benchmark: {} database, {cores} cores, {}",
        mib(db_size as u64),
        c.psql("postgres", "SHOW server_version")
    );
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| `pg_dump -Fc` to a file | {:.1} s, {} file |",
        fc.seconds,
        mib(fc_size)
    );
    println!(
        "| `pg_dump -Fc -Z0` to /dev/null (the limit) | {:.1} s, stream {} |",
        z0.seconds,
        mib(runs[0].read)
    );
    for (run, (second, second_stored, second_disk)) in runs.iter().zip(&seconds) {
        let k = &run.label;
        println!(
            "| pgvault backup, {k} | {:.1} s = {:.2}x `-Fc`, {:.2}x `-Z0`; peak memory {} |",
            run.first.seconds,
            run.first.seconds / fc.seconds,
            run.first.seconds / z0.seconds,
            mib(run.first.max_rss_kib * 1024)
        );
        println!(
            "| stored by the first backup (the vault folder's growth), {k} | {} = {:.3}x the `-Fc` file; manifest {:.1} KiB |",
            run.first_disk,
            run.first_stored as f64 / fc_size as f64,
            run.first_manifest as f64 / 1024.0
        );
        println!(
            "| second backup after 1% random updates, {k} | {} new = {:.1}% of the first, {:.3}x the `-Fc` file; {:.1} s; peak memory {} |",
            second_disk,
            100.0 * *second_stored as f64 / run.first_stored as f64,
            *second_stored as f64 / fc_size as f64,
            second.seconds,
            mib(second.max_rss_kib * 1024)
        );
    }
    println!(
        "| `createdb` + `pg_restore` from the `-Fc` file | {:.1} s |",
        pg_restore.seconds
    );
    for (run, restore) in runs.iter().zip(&vault_restores) {
        println!(
            "| pgvault restore ({}) | {:.1} s = {:.2}x `pg_restore`; peak memory {} |",
            run.label,
            restore.seconds,
            restore.seconds / pg_restore.seconds,
            mib(restore.max_rss_kib * 1024)
        );
    }
    if rounds > 0 {
        encryption_rounds(&Rounds {
            bin: &bin,
            work: work.path(),
            cluster: &c,
            secret: &secret,
            datasource: &ds,
            policy: &policy,
            key_file: &key_file,
            rounds,
        });
    }
}

struct Rounds<'a> {
    bin: &'a std::path::Path,
    work: &'a std::path::Path,
    cluster: &'a TestCluster,
    secret: &'a std::path::Path,
    datasource: &'a str,
    policy: &'a std::path::Path,
    key_file: &'a std::path::Path,
    rounds: usize,
}

/// A first backup into a fresh vault and its restore, `r.rounds` times, alternating an
/// unencrypted and an encrypted vault; prints medians, ranges and the paired ratios.
fn encryption_rounds(r: &Rounds) {
    let mut times: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
    for round in 0..r.rounds {
        for (e, encrypted) in [false, true].into_iter().enumerate() {
            eprintln!(
                "round {round}, {}...",
                if encrypted {
                    "encrypted"
                } else {
                    "unencrypted"
                }
            );
            let home = r.work.join(format!("round-home-{round}-{e}"));
            let vault_dir = r.work.join(format!("round-vault-{round}-{e}"));
            let pv = Pgvault {
                bin: r.bin.to_path_buf(),
                home: home.clone(),
            };
            let instance = new_instance(
                &pv,
                &Setup {
                    work: r.work,
                    secret: r.secret,
                    datasource: r.datasource,
                    policy: r.policy,
                    key_file: encrypted.then_some(r.key_file),
                },
                &vault_dir,
                "32",
            );
            let secret_uri = format!("file://{}", r.secret.display());
            let backup = measure(pv.cmd(&[
                "backup-instance",
                "adhoc-backup",
                "--vault-name",
                "B",
                "--name",
                &instance,
            ]));
            let rp = pv.json(&[
                "recovery-point",
                "list",
                "--vault-name",
                "B",
                "--backup-instance-name",
                &instance,
            ]);
            let target = format!("r_round_{round}_{e}");
            let req = pv.json(&[
                "backup-instance",
                "restore",
                "initialize-for-data-recovery",
                "--recovery-point-id",
                rp[0]["name"].as_str().unwrap(),
                "--target-database-url",
                &format!(
                    "postgres://{}:{}/{target}",
                    r.cluster.host(),
                    r.cluster.port()
                ),
                "--secret-store-uri",
                &secret_uri,
            ]);
            let restore_file = r.work.join("round-restore.json");
            std::fs::write(&restore_file, req.to_string()).unwrap();
            let restore = measure(pv.cmd(&[
                "backup-instance",
                "restore",
                "trigger",
                "--vault-name",
                "B",
                "--backup-instance-name",
                &instance,
                "--restore-request-object",
                restore_file.to_str().unwrap(),
            ]));
            times[e].push((backup.seconds, restore.seconds));
            r.cluster
                .psql("postgres", &format!("DROP DATABASE {target}"));
            let _ = std::fs::remove_dir_all(&vault_dir);
            let _ = std::fs::remove_dir_all(&home);
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let mid = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        (mid, v[0], v[n - 1])
    };
    println!();
    println!("### Encryption's cost: {} rounds, alternating", r.rounds);
    println!();
    println!("| measure | unencrypted | encrypted | encrypted / unencrypted, paired |");
    println!("|---|---|---|---|");
    for (name, pick) in [("first backup", 0usize), ("restore", 1usize)] {
        let get = |e: usize| -> Vec<f64> {
            times[e]
                .iter()
                .map(|t| if pick == 0 { t.0 } else { t.1 })
                .collect()
        };
        let (pm, plo, phi) = median(get(0));
        let (em, elo, ehi) = median(get(1));
        let ratios: Vec<f64> = get(1).iter().zip(get(0)).map(|(e, p)| e / p).collect();
        let (rm, rlo, rhi) = median(ratios);
        println!(
            "| {name} | {pm:.2} s ({plo:.2} to {phi:.2}) | {em:.2} s ({elo:.2} to {ehi:.2}) | median {rm:.3} ({rlo:.3} to {rhi:.3}) |"
        );
    }
}

/// What a new vault and instance are made from.
struct Setup<'a> {
    work: &'a std::path::Path,
    secret: &'a std::path::Path,
    datasource: &'a str,
    policy: &'a std::path::Path,
    /// The key file an encrypted vault is created with; `None`: unencrypted.
    key_file: Option<&'a std::path::Path>,
}

/// Creates vault `B` at `vault_dir` (chunks of `kib` KiB), policy `P` from `s.policy` and the
/// benchmark database's instance; returns the instance's name.
fn new_instance(pv: &Pgvault, s: &Setup, vault_dir: &std::path::Path, kib: &str) -> String {
    let url = format!("file://{}", vault_dir.display());
    let key_ref = s.key_file.map(|k| format!("file:{}", k.display()));
    let mut create = vec![
        "backup-vault",
        "create",
        "--vault-name",
        "B",
        "--storage-url",
        &url,
        "--chunk-size-kib",
        kib,
    ];
    if let Some(key_ref) = &key_ref {
        create.extend(["--encryption-key-uri", key_ref]);
    }
    pv.json(&create);
    pv.json(&[
        "backup-policy",
        "create",
        "--vault-name",
        "B",
        "--backup-policy-name",
        "P",
        "--policy",
        s.policy.to_str().unwrap(),
    ]);
    let req = pv.json(&[
        "backup-instance",
        "initialize",
        "--datasource-type",
        "AzureDatabaseForPostgreSQLFlexibleServer",
        "--datasource-id",
        s.datasource,
        "--policy-id",
        "P",
        "--secret-store-type",
        "File",
        "--secret-store-uri",
        &format!("file://{}", s.secret.display()),
    ]);
    let req_file = s.work.join("instance.json");
    std::fs::write(&req_file, req.to_string()).unwrap();
    pv.json(&[
        "backup-instance",
        "create",
        "--vault-name",
        "B",
        "--backup-instance",
        req_file.to_str().unwrap(),
    ])["name"]
        .as_str()
        .unwrap()
        .to_string()
}
