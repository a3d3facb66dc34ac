//! Shared test support: the real `pgvault` binary with a private PGVAULT_HOME, against
//! the shared throwaway PostgreSQL cluster (see `pgvault-testkit`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pgvault_testkit::TestCluster;
use serde_json::{Value, json};

pub fn cluster() -> &'static TestCluster {
    TestCluster::shared()
}

/// One test's world: its own home, vault folder and scratch space.
pub struct World {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

impl World {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("pgvault-e2e-")
            .tempdir()
            .unwrap();
        let env = vec![(
            "PGVAULT_HOME".to_string(),
            dir.path().join("home").display().to_string(),
        )];
        World { dir, env }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgvault"));
        cmd.args(args).env_remove("RUST_LOG");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs pgvault; returns the output whatever the exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run pgvault")
    }

    /// Runs pgvault, asserts success, parses stdout as JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "pgvault {args:?} failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "pgvault {args:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Runs pgvault, asserts failure, returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "pgvault {args:?} should have failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// A file secret with an ADO.NET connection string for `user`/`password`.
    pub fn secret_file(&self, name: &str, database: &str, user: &str, password: &str) -> String {
        let c = cluster();
        let p = self.write(
            name,
            &format!("Server={};Database={database};Port={};User Id={user};Password={password};Ssl Mode=Prefer;", c.host(), c.port()),
        );
        // As an administrator keeps a secret: readable by its owner only (pgvault warns
        // about one others may read).
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        format!("file://{}", p.display())
    }

    pub fn admin_secret(&self, database: &str) -> String {
        let c = cluster();
        self.secret_file(
            &format!("{database}.secret"),
            database,
            c.admin_user(),
            c.admin_password(),
        )
    }

    /// vault create + default policy `OssPolicy`; returns the vault folder.
    pub fn vault_with_policy(&self, vault: &str) -> PathBuf {
        let template = self.json(&[
            "backup-policy",
            "get-default-policy-template",
            "--datasource-type",
            "AzureDatabaseForPostgreSQLFlexibleServer",
        ]);
        let policy = self.write(&format!("policy-{vault}.json"), &template.to_string());
        self.vault_with_policy_file(vault, &policy)
    }

    /// The default policy template as `OssPolicy` in the existing vault `vault`.
    pub fn add_default_policy(&self, vault: &str) {
        let template = self.json(&[
            "backup-policy",
            "get-default-policy-template",
            "--datasource-type",
            "AzureDatabaseForPostgreSQLFlexibleServer",
        ]);
        let policy = self.write(&format!("policy-{vault}.json"), &template.to_string());
        self.json(&[
            "backup-policy",
            "create",
            "--vault-name",
            vault,
            "--backup-policy-name",
            "OssPolicy",
            "--policy",
            policy.to_str().unwrap(),
        ]);
    }

    /// vault create + the policy in `policy` as `OssPolicy`; returns the vault folder.
    pub fn vault_with_policy_file(&self, vault: &str, policy: &Path) -> PathBuf {
        let dir = self.path(&format!("vault-{vault}"));
        self.json(&[
            "backup-vault",
            "create",
            "--vault-name",
            vault,
            "--storage-url",
            &format!("file://{}", dir.display()),
        ]);
        self.json(&[
            "backup-policy",
            "create",
            "--vault-name",
            vault,
            "--backup-policy-name",
            "OssPolicy",
            "--policy",
            policy.to_str().unwrap(),
        ]);
        dir
    }

    /// initialize + create for `database` with `secret_uri`; returns the instance name.
    pub fn protect(&self, vault: &str, database: &str, secret_uri: &str) -> String {
        let req = self.initialize(database, secret_uri);
        let file = self.write(&format!("instance-{database}.json"), &req.to_string());
        let created = self.json(&[
            "backup-instance",
            "create",
            "--vault-name",
            vault,
            "--backup-instance",
            file.to_str().unwrap(),
        ]);
        created["name"].as_str().unwrap().to_string()
    }

    pub fn initialize(&self, database: &str, secret_uri: &str) -> Value {
        let c = cluster();
        let store_type = if secret_uri.starts_with("env:") {
            "Environment"
        } else {
            "File"
        };
        self.json(&[
            "backup-instance",
            "initialize",
            "--datasource-type",
            "AzureDatabaseForPostgreSQLFlexibleServer",
            "--datasource-id",
            &format!("postgres://{}:{}/{database}", c.host(), c.port()),
            "--policy-id",
            "OssPolicy",
            "--secret-store-type",
            store_type,
            "--secret-store-uri",
            secret_uri,
        ])
    }

    /// An adhoc backup under the Default rule that must succeed: its job.
    pub fn backup(&self, vault: &str, instance: &str) -> Value {
        self.json(&backup_args(vault, instance))
    }

    pub fn recovery_points(&self, vault: &str, instance: &str) -> Vec<Value> {
        let v = self.json(&[
            "recovery-point",
            "list",
            "--vault-name",
            vault,
            "--backup-instance-name",
            instance,
        ]);
        v.as_array().unwrap().clone()
    }
}

/// `backup-instance adhoc-backup` of `instance` in `vault` under the Default rule, for a test
/// that runs it its own way (another environment, a failure expected, killed half way).
pub fn backup_args<'a>(vault: &'a str, instance: &'a str) -> [&'a str; 8] {
    [
        "backup-instance",
        "adhoc-backup",
        "--vault-name",
        vault,
        "--name",
        instance,
        "--rule-name",
        "Default",
    ]
}

/// A database with the shapes a real one has: schemas, several column types, a
/// sequence, a view, an index, a large object, and enough rows to span many chunks.
pub fn sample_database(prefix: &str, rows: u32) -> String {
    let c = cluster();
    let db = c.create_database(prefix);
    c.psql(
        &db,
        &format!(
            "CREATE SCHEMA sales;
             CREATE TABLE sales.orders (id bigserial PRIMARY KEY, customer text NOT NULL, amount numeric(12,2),
                 placed timestamptz NOT NULL DEFAULT '2024-01-01', doc jsonb);
             INSERT INTO sales.orders (customer, amount, placed, doc)
                 SELECT 'customer ' || (g % 977), (g * 7 % 10000) / 100.0, timestamptz '2024-01-01' + g * interval '1 minute',
                        jsonb_build_object('g', g, 'note', md5(g::text))
                 FROM generate_series(1, {rows}) g;
             CREATE INDEX ON sales.orders (customer);
             CREATE TABLE public.notes (id int PRIMARY KEY, body text);
             INSERT INTO public.notes SELECT g, repeat(md5(g::text), 20) FROM generate_series(1, {rows} / 4) g;
             CREATE TABLE public.empty_table (x int);
             CREATE VIEW sales.big_orders AS SELECT * FROM sales.orders WHERE amount > 50;
             CREATE SEQUENCE public.invoice_no START 1000;
             SELECT setval('public.invoice_no', 4242);
             SELECT lo_from_bytea(0, 'a large object'::bytea);"
        ),
    );
    db
}

/// A database shaped like the public sample databases an administrator loads: owned by a
/// non-superuser role (`owner`), every object created by that role, with serial and identity
/// columns, a foreign key, a check constraint, indexes, a trigger, a view, a second schema,
/// and grants to another role (`reader`). The superuser does nothing in it but create the
/// roles and the database.
pub struct OwnedDatabase {
    pub name: String,
    pub owner: String,
    pub owner_password: String,
    pub reader: String,
}

impl OwnedDatabase {
    /// Runs SQL in the database logged in as its owner.
    pub fn as_owner(&self, sql: &str) -> String {
        cluster().psql_as(&self.name, &self.owner, &self.owner_password, sql)
    }

    /// Runs SQL as its owner and returns psql's error instead of panicking.
    #[allow(dead_code)] // for tests that expect the owner to be refused
    pub fn try_as_owner(&self, sql: &str) -> Result<String, String> {
        cluster().try_psql_as(&self.name, &self.owner, &self.owner_password, sql)
    }
}

/// Creates an [`OwnedDatabase`] with `rows` rentals.
pub fn owned_database(prefix: &str, rows: u32) -> OwnedDatabase {
    let c = cluster();
    let name = c.create_database(prefix);
    let owner = format!("{name}_owner");
    let reader = format!("{name}_reader");
    let owner_password = format!("pw-{name}");
    c.psql(
        "postgres",
        &format!(
            "CREATE ROLE {owner} LOGIN PASSWORD '{owner_password}';
             CREATE ROLE {reader} NOLOGIN;
             ALTER DATABASE {name} OWNER TO {owner};"
        ),
    );
    let db = OwnedDatabase {
        name,
        owner,
        owner_password,
        reader,
    };
    db.as_owner(&format!(
        "CREATE TABLE public.customer (customer_id serial PRIMARY KEY, name text NOT NULL,
             email text UNIQUE, active boolean NOT NULL DEFAULT true);
         CREATE TABLE public.rental (rental_id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
             customer_id integer NOT NULL REFERENCES public.customer (customer_id),
             rented timestamptz NOT NULL, returned timestamptz,
             last_update timestamptz NOT NULL DEFAULT '2024-01-01',
             CHECK (returned IS NULL OR returned >= rented));
         CREATE INDEX rental_customer_idx ON public.rental (customer_id);
         CREATE FUNCTION public.touch_last_update() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN NEW.last_update := now(); RETURN NEW; END $$;
         CREATE TRIGGER rental_touch BEFORE UPDATE ON public.rental
             FOR EACH ROW EXECUTE FUNCTION public.touch_last_update();
         CREATE VIEW public.open_rentals AS SELECT * FROM public.rental WHERE returned IS NULL;
         CREATE SCHEMA inventory;
         CREATE TABLE inventory.film (film_id bigserial PRIMARY KEY, title text NOT NULL);
         INSERT INTO public.customer (name, email)
             SELECT 'customer ' || g, 'c' || g || '@example.com' FROM generate_series(1, greatest({rows} / 10, 1)) g;
         INSERT INTO public.rental (customer_id, rented, returned)
             SELECT 1 + g % greatest({rows} / 10, 1), timestamptz '2024-01-01' + g * interval '1 hour',
                    CASE WHEN g % 3 = 0 THEN NULL ELSE timestamptz '2024-01-01' + g * interval '1 hour' + interval '2 days' END
             FROM generate_series(1, {rows}) g;
         INSERT INTO inventory.film (title) SELECT 'film ' || g FROM generate_series(1, greatest({rows} / 20, 1)) g;
         GRANT USAGE ON SCHEMA inventory TO {reader};
         GRANT SELECT ON ALL TABLES IN SCHEMA public, inventory TO {reader};",
        reader = db.reader
    ));
    db
}

/// The database as plain SQL without owners or privileges, for comparing a restore with
/// its source. pg_dump's per-run `\restrict` keys are removed.
pub fn plain_dump(database: &str) -> String {
    let out = cluster()
        .command("pg_dump")
        .args(["--no-owner", "--no-acl", "--format=plain", database])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_dump {database}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    normalize_sql(&String::from_utf8_lossy(&out.stdout))
}

pub fn normalize_sql(sql: &str) -> String {
    sql.lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p)
            } else {
                out.push(p)
            }
        }
    }
    out
}

/// Weekly backups; the month's first is Monthly: one month in the vault tier, then moved to
/// the archive tier for six months. Others: seven days.
pub fn archive_policy(w: &World) -> String {
    let vault = |keep: &str, copy: Value| {
        json!({
            "sourceDataStore": {"dataStoreType": "VaultStore", "objectType": "DataStoreInfoBase"},
            "deleteAfter": {"duration": keep, "objectType": "AbsoluteDeleteOption"},
            "targetDataStoreCopySettings": copy
        })
    };
    let policy = json!({
        "datasourceTypes": ["Microsoft.DBforPostgreSQL/flexibleServers/databases"],
        "objectType": "BackupPolicy",
        "policyRules": [
            {
                "name": "BackupWeekly", "objectType": "AzureBackupRule",
                "backupParameters": {"backupType": "Full", "objectType": "AzureBackupParams"},
                "dataStore": {"dataStoreType": "VaultStore", "objectType": "DataStoreInfoBase"},
                "trigger": {
                    "objectType": "ScheduleBasedTriggerContext",
                    "schedule": {"repeatingTimeIntervals": ["R/2041-01-06T02:00:00+00:00/P1W"], "timeZone": "UTC"},
                    "taggingCriteria": [
                        {"isDefault": true, "taggingPriority": 99, "tagInfo": {"tagName": "Default"}},
                        {"isDefault": false, "taggingPriority": 15, "tagInfo": {"tagName": "Monthly"},
                         "criteria": [{"objectType": "ScheduleBasedBackupCriteria", "absoluteCriteria": ["FirstOfMonth"]}]}
                    ]
                }
            },
            {"name": "Default", "objectType": "AzureRetentionRule", "isDefault": true,
             "lifecycles": [vault("P7D", json!([]))]},
            {"name": "Monthly", "objectType": "AzureRetentionRule", "isDefault": false,
             "lifecycles": [
                vault("P1M", json!([{
                    "dataStore": {"dataStoreType": "ArchiveStore", "objectType": "DataStoreInfoBase"},
                    "copyAfter": {"objectType": "CopyOnExpiryOption"}
                }])),
                {"sourceDataStore": {"dataStoreType": "ArchiveStore", "objectType": "DataStoreInfoBase"},
                 "deleteAfter": {"duration": "P6M", "objectType": "AbsoluteDeleteOption"}}
             ]}
        ]
    });
    w.write("archive-policy.json", &policy.to_string())
        .to_str()
        .unwrap()
        .to_owned()
}

/// Makes a vault write small packs (64 KiB, the least `vault.json` allows), so one backup
/// stores several and a test can damage, or kill a backup between, one of them.
pub fn use_small_packs(vault_dir: &Path) {
    let config_path = vault_dir.join("vault.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["packTargetSize"] = Value::from(64 * 1024);
    std::fs::write(&config_path, config.to_string()).unwrap();
}

/// Restores recovery point `rp` of `instance` into a new database `target` on the test cluster
/// (as its administrator), in a world of its own with `w`'s environment; returns the job, or
/// `{"stderr": ...}` when the command failed.
pub fn restore_into(
    w: &World,
    vault: &str,
    instance: &str,
    rp: &str,
    target: &str,
) -> serde_json::Value {
    let c = cluster();
    let mut w2 = World {
        dir: tempfile::tempdir().unwrap(),
        env: w.env.clone(),
    };
    w2.env.push((
        "PGVAULT_RESTORE_SECRET".into(),
        format!(
            "Server={};Port={};Database=postgres;User Id={};Password={};",
            c.host(),
            c.port(),
            c.admin_user(),
            c.admin_password()
        ),
    ));
    let req = w2.json(&[
        "backup-instance",
        "restore",
        "initialize-for-data-recovery",
        "--vault-name",
        vault,
        "--backup-instance-name",
        instance,
        "--recovery-point-id",
        rp,
        "--target-database-url",
        &format!("postgres://{}:{}/{target}", c.host(), c.port()),
        "--secret-store-uri",
        "env:PGVAULT_RESTORE_SECRET",
    ]);
    let req_file = w2.write("restore.json", &req.to_string());
    let out = w2.run(&[
        "backup-instance",
        "restore",
        "trigger",
        "--vault-name",
        vault,
        "--backup-instance-name",
        instance,
        "--restore-request-object",
        req_file.to_str().unwrap(),
    ]);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| serde_json::json!({"stderr": String::from_utf8_lossy(&out.stderr)}))
}
