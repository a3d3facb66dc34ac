//! Restore options against the test PostgreSQL: one table, all but one table, definitions
//! only, parallel jobs, a plain SQL file, owners kept, and the errors a user can cause (no
//! CREATEDB, a role missing for --keep-owners, a corrupt chunk), each leaving no database
//! behind under the name asked for.

use serde_json::Value;

use crate::support::{World, cluster, plain_dump, sample_database};

struct Restores {
    w: World,
    vault: &'static str,
    db: String,
    instance: String,
    rp: String,
}

impl Restores {
    /// Restores to a new database `target` with `options`; returns the finished job, or the
    /// error the initialize or trigger step printed.
    fn to_database(&self, target: &str, secret: &str, options: &[&str]) -> Result<Value, String> {
        let c = cluster();
        let url = format!("postgres://{}:{}/{target}", c.host(), c.port());
        let mut args = vec![
            "backup-instance",
            "restore",
            "initialize-for-data-recovery",
            "--vault-name",
            self.vault,
            "--backup-instance-name",
            &self.instance,
            "--recovery-point-id",
            &self.rp,
            "--target-database-url",
            &url,
            "--secret-store-uri",
            secret,
        ];
        args.extend_from_slice(options);
        self.run(&args)
    }

    fn to_file(&self, name: &str, options: &[&str]) -> Result<Value, String> {
        let dir = self.w.path("files");
        let mut args = vec![
            "backup-instance",
            "restore",
            "initialize-for-data-recovery-as-files",
            "--vault-name",
            self.vault,
            "--backup-instance-name",
            &self.instance,
            "--recovery-point-id",
            &self.rp,
            "--target-directory",
            dir.to_str().unwrap(),
            "--target-file-name",
            name,
        ];
        args.extend_from_slice(options);
        self.run(&args)
    }

    fn run(&self, initialize: &[&str]) -> Result<Value, String> {
        let out = self.w.run(initialize);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let file = self
            .w
            .write("request.json", &String::from_utf8_lossy(&out.stdout));
        let out = self.w.run(&[
            "backup-instance",
            "restore",
            "trigger",
            "--vault-name",
            self.vault,
            "--backup-instance-name",
            &self.instance,
            "--restore-request-object",
            file.to_str().unwrap(),
            // The staging database's name is logged at info.
            "--log-level",
            "info",
        ]);
        if out.status.success() {
            Ok(serde_json::from_slice(&out.stdout).unwrap())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    fn admin(&self) -> String {
        self.w.admin_secret("postgres")
    }
}

/// The bytes a restore job read from the vault.
fn bytes_read(job: &Value) -> u64 {
    job["properties"]["extendedInfo"]["additionalDetails"]["BytesRead"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| job["properties"]["extendedInfo"]["additionalDetails"]["BytesRead"].as_u64())
        .unwrap_or_else(|| panic!("no BytesRead: {job:#}"))
}

fn rows(db: &str, table: &str) -> String {
    cluster().psql(db, &format!("SELECT count(*) FROM {table}"))
}

fn exists(db: &str, relation: &str) -> bool {
    cluster().psql(db, &format!("SELECT to_regclass('{relation}') IS NOT NULL")) == "t"
}

fn databases_like(pattern: &str) -> String {
    cluster().psql(
        "postgres",
        &format!("SELECT string_agg(datname, ',') FROM pg_database WHERE datname LIKE '{pattern}'"),
    )
}

#[test]
fn restore_options_select_what_is_restored_and_how() {
    let c = cluster();
    let db = sample_database("granular", 400);
    let pid = std::process::id();
    let (owner, ghost, reader) = (
        format!("notes_owner_{pid}"),
        format!("ghost_{pid}"),
        format!("reader_{pid}"),
    );
    c.psql(
        &db,
        &format!(
            "CREATE ROLE {owner}; CREATE ROLE {ghost}; CREATE ROLE {reader};
             ALTER TABLE public.notes OWNER TO {owner};
             GRANT SELECT ON public.notes TO {reader};
             ALTER TABLE public.empty_table OWNER TO {ghost};"
        ),
    );
    let w = World::new();
    const VAULT: &str = "R";
    w.vault_with_policy(VAULT);
    let instance = w.protect(VAULT, &db, &w.admin_secret(&db));
    let job = w.backup(VAULT, &instance);
    let rp = job["properties"]["result"]["recoveryPointId"]
        .as_str()
        .unwrap()
        .to_owned();
    // The ghost role goes away after the backup, as roles do between a backup and a restore.
    c.psql(
        &db,
        &format!(
            "ALTER TABLE public.empty_table OWNER TO {}; DROP ROLE {ghost};",
            c.admin_user()
        ),
    );
    let r = Restores {
        w,
        vault: VAULT,
        db: db.clone(),
        instance,
        rp,
    };

    // One table: its definition and data, nothing else, reading only the archive's table of
    // contents and that table's data block.
    let one = format!("{db}_one");
    let job = r
        .to_database(&one, &r.admin(), &["--tables", "sales.orders"])
        .unwrap();
    let one_read = bytes_read(&job);
    assert_eq!(rows(&one, "sales.orders"), "400");
    assert!(!exists(&one, "public.notes"));

    // All but one table, and what depends on it (the view over it).
    let but = format!("{db}_but");
    r.to_database(&but, &r.admin(), &["--exclude-tables", "sales.orders"])
        .unwrap();
    assert!(!exists(&but, "sales.orders"));
    assert!(!exists(&but, "sales.big_orders"), "the view depends on it");
    assert_eq!(rows(&but, "public.notes"), "100");

    // Definitions only: no data block is read.
    let defs = format!("{db}_defs");
    let defs_job = r
        .to_database(&defs, &r.admin(), &["--schema-only"])
        .unwrap();
    assert_eq!(rows(&defs, "sales.orders"), "0");

    // Parallel: the whole database, the same as its source.
    let parallel = format!("{db}_parallel");
    let job = r
        .to_database(&parallel, &r.admin(), &["--jobs", "2"])
        .unwrap();
    assert_eq!(job["properties"]["status"], "Completed");
    assert_eq!(plain_dump(&parallel), plain_dump(&r.db));
    let all_read = bytes_read(&job);
    // Without --keep-owners, no privileges either (Azure's --no-owner --no-acl).
    assert_eq!(
        c.psql(
            &parallel,
            &format!("SELECT has_table_privilege('{reader}', 'public.notes', 'SELECT')")
        ),
        "f"
    );
    let defs_read = bytes_read(&defs_job);
    assert!(
        defs_read < one_read && one_read < all_read,
        "schema only {defs_read} < one table {one_read} < everything {all_read}"
    );

    // A plain SQL file of one table.
    let job = r
        .to_file("orders", &["--format", "plain", "--tables", "sales.orders"])
        .unwrap();
    assert_eq!(job["properties"]["status"], "Completed");
    let sql = std::fs::read_to_string(r.w.path("files").join("orders.sql")).unwrap();
    assert!(
        sql.contains("CREATE TABLE \"sales\".\"orders\""),
        "{}",
        &sql[..sql.len().min(2000)]
    );
    assert!(sql.contains("COPY \"sales\".\"orders\""));
    assert!(!sql.contains("\"notes\""));
    // A custom-format file is the archive as stored: a selection is refused.
    let refused = r.to_file("x", &["--tables", "sales.orders"]).unwrap_err();
    assert!(refused.contains("--format plain"), "{refused}");

    // Owners kept where the roles exist: notes gets its owner and its grant back; the
    // table of the role the target lacks belongs to the restoring user, and the job says so.
    let owner_of = |database: &str, table: &str| {
        c.psql(
            database,
            &format!(
                "SELECT tableowner FROM pg_tables WHERE schemaname || '.' || tablename = '{table}'"
            ),
        )
    };
    let partial = format!("{db}_partial");
    let job = r
        .to_database(&partial, &r.admin(), &["--keep-owners"])
        .unwrap();
    assert_eq!(owner_of(&partial, "public.notes"), owner);
    assert_eq!(owner_of(&partial, "public.empty_table"), c.admin_user());
    assert_eq!(
        c.psql(
            &partial,
            &format!("SELECT has_table_privilege('{reader}', 'public.notes', 'SELECT')")
        ),
        "t",
        "the grant is back"
    );
    let warning = job["properties"]["extendedInfo"]["additionalDetails"]["Warning"]
        .as_str()
        .unwrap_or_else(|| panic!("a warning names the missing role: {job:#}"));
    assert!(
        warning.contains(&ghost) && !warning.contains(&owner),
        "{warning}"
    );
    // Once the role exists, every object gets its owner back.
    c.psql("postgres", &format!("CREATE ROLE {ghost}"));
    let kept = format!("{db}_kept");
    r.to_database(&kept, &r.admin(), &["--keep-owners"])
        .unwrap();
    assert_eq!(owner_of(&kept, "public.notes"), owner);
    assert_eq!(owner_of(&kept, "public.empty_table"), ghost);
    // Without --keep-owners, everything belongs to the restoring user.
    assert_eq!(
        c.psql(
            &one,
            "SELECT tableowner FROM pg_tables WHERE tablename = 'orders'"
        ),
        c.admin_user()
    );

    // A user without CREATEDB is told the grant to run.
    let weak = format!("weak_{pid}");
    c.psql(
        "postgres",
        &format!("CREATE ROLE {weak} LOGIN PASSWORD 'weak-pw'"),
    );
    let weak_secret = r.w.secret_file("weak.secret", "postgres", &weak, "weak-pw");
    let refused = r
        .to_database(&format!("{db}_weak"), &weak_secret, &[])
        .unwrap_err();
    assert!(
        refused.contains("UserErrorMissingDBPermissions"),
        "{refused}"
    );
    assert!(
        refused.contains(&format!("ALTER ROLE \"{weak}\" CREATEDB;")),
        "{refused}"
    );
    assert!(!refused.contains("weak-pw"), "no secret in an error");

    // A corrupt chunk stops the restore, names the chunk, and leaves no database behind:
    // neither the target nor the staging one.
    let vault = r.w.path("vault-R");
    let mut packs = crate::support::files_under(&vault.join("packs"));
    packs.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    let biggest = packs.last().unwrap();
    let mut bytes = std::fs::read(biggest).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x55;
    std::fs::write(biggest, bytes).unwrap();
    let broken = format!("{db}_broken");
    let refused = r.to_database(&broken, &r.admin(), &[]).unwrap_err();
    assert!(
        refused.contains("RecoveryPointDamaged") && refused.contains("chunk"),
        "{refused}"
    );
    assert_eq!(databases_like(&broken), "");
    // This restore's staging database, by the name it logged (other tests restore on the same
    // server at the same time, so not every `pgvault_restore_%`).
    let staging = refused
        .split_whitespace()
        .find_map(|w| w.strip_prefix("staging=pgvault_restore_"))
        .unwrap_or_else(|| panic!("no staging database logged: {refused}"));
    assert_eq!(databases_like(&format!("pgvault_restore_{staging}")), "");
}

/// A recovery point restores into a server of another major version when this machine has
/// one installed (newer restores as is; older is attempted with a warning in the job). With
/// one version only, the test says so and checks that a same-version restore carries no
/// version warning.
#[test]
fn a_recovery_point_restores_across_major_versions_when_another_is_installed() {
    let c = cluster();
    let db = sample_database("crossver", 200);
    let w = World::new();
    const VAULT: &str = "X";
    w.vault_with_policy(VAULT);
    let instance = w.protect(VAULT, &db, &w.admin_secret(&db));
    let rp = w.backup(VAULT, &instance)["properties"]["result"]["recoveryPointId"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = Restores {
        w,
        vault: VAULT,
        db: db.clone(),
        instance,
        rp,
    };
    let source_major: u32 = c
        .psql("postgres", "SHOW server_version_num")
        .parse::<u32>()
        .unwrap()
        / 10000;
    let others: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (major != source_major && bin.join("initdb").is_file()).then_some((major, bin))
        })
        .collect();
    if others.is_empty() {
        println!(
            "cross-version restore: only PostgreSQL {source_major} is installed on this machine, \
             so no restore into another major version was made; install another major version \
             (e.g. apt-get install postgresql-17) to exercise it"
        );
        let job = r
            .to_database(&format!("{db}_same"), &r.admin(), &[])
            .unwrap();
        assert!(
            job["properties"]["extendedInfo"]["additionalDetails"]
                .get("Warning")
                .is_none(),
            "{job:#}"
        );
        return;
    }
    for (major, bin) in others {
        println!("cross-version restore: PostgreSQL {source_major} -> {major}");
        let other = pgvault_testkit::TestCluster::start_with(
            &pgvault_testkit::ClusterOptions::new().bindir(&bin),
        );
        let secret = r.w.write(
            &format!("pg{major}.secret"),
            &format!(
                "User Id={};Password={};Ssl Mode=Prefer;",
                other.admin_user(),
                other.admin_password()
            ),
        );
        let secret_uri = format!("file://{}", secret.display());
        let target = format!("{db}_on{major}");
        let url = format!("postgres://{}:{}/{target}", other.host(), other.port());
        let result = r.run(&[
            "backup-instance",
            "restore",
            "initialize-for-data-recovery",
            "--vault-name",
            VAULT,
            "--backup-instance-name",
            &r.instance,
            "--recovery-point-id",
            &r.rp,
            "--target-database-url",
            &url,
            "--secret-store-uri",
            &secret_uri,
        ]);
        if major > source_major {
            let job = result.unwrap();
            assert_eq!(job["properties"]["status"], "Completed");
            assert_eq!(
                other.psql(&target, "SELECT count(*) FROM sales.orders"),
                "200"
            );
        } else {
            // Older: it may work or not, but the user is told why it might not.
            let said = match result {
                Ok(job) => {
                    job["properties"]["extendedInfo"]["additionalDetails"]["Warning"].to_string()
                }
                Err(e) => e,
            };
            assert!(
                said.contains(&format!("PostgreSQL {source_major}")),
                "{said}"
            );
        }
    }
}
