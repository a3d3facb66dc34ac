//! Restore options on a database shaped like the public sample databases issue 16 was found
//! on (`support::owned_database`: owned by a non-superuser role, serial and identity columns,
//! a foreign key, a check constraint, an index, a trigger, a view, a second schema, grants):
//! `--keep-owners` by a role with only CREATEDB, by a member of the owner role and by a
//! superuser; `--tables` and `--schemas` bringing what a table needs; a restore secret that
//! names the maintenance database; and a restore job's sub-tasks.

use std::process::Output;

use serde_json::Value;

use crate::support::{OwnedDatabase, World, cluster, owned_database};

/// A backed-up [`OwnedDatabase`] and the recovery point to restore.
struct Fit {
    w: World,
    db: OwnedDatabase,
    instance: String,
    rp: String,
}

const VAULT: &str = "F";

impl Fit {
    fn new(prefix: &str, rows: u32) -> Fit {
        let db = owned_database(prefix, rows);
        let w = World::new();
        w.vault_with_policy(VAULT);
        // The admin secret backs up; the restores below use their own.
        let instance = w.protect(VAULT, &db.name, &w.admin_secret(&db.name));
        let rp = w.backup(VAULT, &instance)["properties"]["result"]["recoveryPointId"]
            .as_str()
            .unwrap()
            .to_owned();
        Fit {
            w,
            db,
            instance,
            rp,
        }
    }

    /// Initializes and triggers a restore into the new database `target`; returns the
    /// trigger's output (the finished job on stdout, the log on stderr).
    fn restore(&self, target: &str, secret: &str, options: &[&str]) -> Output {
        let c = cluster();
        let url = format!("postgres://{}:{}/{target}", c.host(), c.port());
        let mut args = vec![
            "backup-instance",
            "restore",
            "initialize-for-data-recovery",
            "--vault-name",
            VAULT,
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
        let out = self.w.run(&args);
        assert!(
            out.status.success(),
            "initialize {options:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let request = self.w.write(
            &format!("request-{target}.json"),
            &String::from_utf8_lossy(&out.stdout),
        );
        self.w.run(&[
            "backup-instance",
            "restore",
            "trigger",
            "--vault-name",
            VAULT,
            "--backup-instance-name",
            &self.instance,
            "--restore-request-object",
            request.to_str().unwrap(),
        ])
    }

    /// [`Self::restore`], which must complete; returns the job as `job show` shows it.
    fn restored(&self, target: &str, secret: &str, options: &[&str]) -> Value {
        let out = self.restore(target, secret, options);
        assert!(
            out.status.success(),
            "restore {options:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let job: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(job["properties"]["status"], "Completed", "{job:#}");
        self.w
            .json(&["job", "show", "--job-id", job["name"].as_str().unwrap()])
    }

    /// A login role with only CREATEDB, and a file secret for it naming the maintenance
    /// database.
    fn restoring_role(&self, name: &str) -> (String, String) {
        let role = format!("{name}_{}", std::process::id());
        let password = format!("pw-{role}");
        cluster().psql(
            "postgres",
            &format!("CREATE ROLE {role} LOGIN CREATEDB PASSWORD '{password}'"),
        );
        let secret = self
            .w
            .secret_file(&format!("{role}.secret"), "postgres", &role, &password);
        (role, secret)
    }
}

fn details(job: &Value) -> &Value {
    &job["properties"]["extendedInfo"]["additionalDetails"]
}

/// Owners of the objects that matter, in `database`.
fn owner(database: &str, what: &str) -> String {
    let sql = match what {
        "database" => {
            "SELECT datdba::regrole::text FROM pg_database WHERE datname = current_database()"
                .to_owned()
        }
        "schema inventory" => {
            "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'inventory'"
                .to_owned()
        }
        "schema public" => {
            "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'public'".to_owned()
        }
        "function" => {
            "SELECT proowner::regrole::text FROM pg_proc WHERE proname = 'touch_last_update'"
                .to_owned()
        }
        "view" => "SELECT viewowner FROM pg_views WHERE viewname = 'open_rentals'".to_owned(),
        "sequence" => "SELECT relowner::regrole::text FROM pg_class WHERE relname = 'customer_customer_id_seq'".to_owned(),
        table => format!(
            "SELECT relowner::regrole::text FROM pg_class WHERE oid = '{table}'::regclass"
        ),
    };
    cluster().psql(database, &sql)
}

/// The sub-tasks of a job: (name, status) in order.
fn sub_tasks(job: &Value) -> Vec<(String, String)> {
    job["properties"]["extendedInfo"]["subTasks"]
        .as_array()
        .unwrap_or_else(|| panic!("no subTasks: {job:#}"))
        .iter()
        .map(|t| {
            (
                t["taskName"].as_str().unwrap().to_owned(),
                t["taskStatus"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn tasks(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(n, s)| (n.to_string(), s.to_string()))
        .collect()
}

#[test]
fn keep_owners_sets_the_owners_the_restoring_user_may_and_lists_the_rest() {
    let c = cluster();
    let f = Fit::new("keepowners", 200);
    let objects = [
        "database",
        "public.rental",
        "public.customer",
        "inventory.film",
        "function",
        "view",
        "sequence",
        "schema inventory",
        "schema public",
    ];

    // A role with only CREATEDB: the restore completes; what it may not give to the owner
    // role stays its own, and the job lists it.
    let (restorer, secret) = f.restoring_role("restorer");
    let target = format!("{}_by_restorer", f.db.name);
    let job = f.restored(&target, &secret, &["--keep-owners"]);
    for what in objects {
        // `public` stays with the database's owner, the restoring user, as in a new database.
        let expected = if what == "schema public" {
            "pg_database_owner"
        } else {
            &restorer
        };
        assert_eq!(owner(&target, what), expected, "{what}");
    }
    assert_eq!(c.psql(&target, "SELECT count(*) FROM public.rental"), "200");
    // The grants to the reader role are restored all the same: the restoring user owns the
    // objects, so it may grant on them.
    assert_eq!(
        c.psql(
            &target,
            &format!(
                "SELECT has_table_privilege('{}', 'public.rental', 'SELECT')",
                f.db.reader
            )
        ),
        "t"
    );
    let not_kept = details(&job)["OwnersNotKept"]
        .as_str()
        .unwrap_or_else(|| panic!("the job lists the objects whose owner was not kept: {job:#}"));
    assert!(
        not_kept.starts_with(&format!("{}: ", f.db.owner))
            && not_kept.contains("TABLE public.rental")
            && not_kept.contains("touch_last_update")
            && not_kept.contains("SCHEMA inventory")
            && not_kept.contains(&format!("DATABASE \"{target}\"")),
        "{not_kept}"
    );
    let warning = details(&job)["Warning"].as_str().unwrap_or_default();
    assert!(
        warning.contains(&format!(
            "`{restorer}` may not give objects to `{}`",
            f.db.owner
        )) && warning.contains(&format!("GRANT \"{}\" TO \"{restorer}\";", f.db.owner)),
        "{warning}"
    );
    assert_eq!(
        sub_tasks(&job),
        tasks(&[
            ("Validate", "Completed"),
            ("Restore", "Completed"),
            ("ApplyOwners", "Completed"),
            ("Commit", "Completed"),
        ])
    );

    // The source's owners: the owner role's, but for `public`, which PostgreSQL 15 gives to
    // pg_database_owner (and older versions to the bootstrap superuser).
    for what in objects.iter().filter(|w| **w != "schema public") {
        assert_eq!(owner(&f.db.name, what), f.db.owner, "{what}");
    }

    // A member of the owner role may give objects to it: every object gets its owner.
    let (member, secret) = f.restoring_role("member");
    c.psql("postgres", &format!("GRANT {} TO {member}", f.db.owner));
    let target = format!("{}_by_member", f.db.name);
    let job = f.restored(&target, &secret, &["--keep-owners"]);
    for what in objects {
        assert_eq!(owner(&target, what), owner(&f.db.name, what), "{what}");
    }
    assert!(details(&job).get("OwnersNotKept").is_none(), "{job:#}");
    assert!(details(&job).get("Warning").is_none(), "{job:#}");

    // A superuser: the real owners, as before.
    let target = format!("{}_by_superuser", f.db.name);
    f.restored(&target, &f.w.admin_secret("postgres"), &["--keep-owners"]);
    for what in objects {
        assert_eq!(owner(&target, what), owner(&f.db.name, what), "{what}");
    }
}

#[test]
fn a_table_restores_with_its_sequences_keys_indexes_and_triggers() {
    let c = cluster();
    let f = Fit::new("onetable", 300);
    let admin = f.w.admin_secret("postgres");
    let constraints = |db: &str, table: &str| {
        c.psql(
            db,
            &format!(
                "SELECT string_agg(contype::text, '' ORDER BY contype) FROM pg_constraint WHERE conrelid = '{table}'::regclass AND contype IN ('c', 'f', 'p', 'u')"
            ),
        )
    };
    let triggers = |db: &str, table: &str| {
        c.psql(
            db,
            &format!(
                "SELECT count(*) FROM pg_trigger WHERE tgrelid = '{table}'::regclass AND NOT tgisinternal"
            ),
        )
    };
    let exists = |db: &str, relation: &str| {
        c.psql(db, &format!("SELECT to_regclass('{relation}') IS NOT NULL")) == "t"
    };

    // The table with an identity column and a foreign key to a table it comes without.
    let rental = format!("{}_rental", f.db.name);
    let job = f.restored(&rental, &admin, &["--tables", "public.rental"]);
    assert_eq!(c.psql(&rental, "SELECT count(*) FROM public.rental"), "300");
    // Its identity sequence, at the source's value: the next id follows the last.
    assert_eq!(
        c.psql(
            &rental,
            "INSERT INTO public.rental (customer_id, rented) VALUES (1, now()) RETURNING rental_id"
        ),
        "301"
    );
    // Its primary key and check constraint; its index; its trigger, which works.
    assert_eq!(constraints(&rental, "public.rental"), "cp");
    assert!(exists(&rental, "public.rental_customer_idx"));
    assert_eq!(triggers(&rental, "public.rental"), "1");
    assert_eq!(
        c.psql(
            &rental,
            "UPDATE public.rental SET returned = rented + interval '1 day' WHERE rental_id = 1 RETURNING last_update > '2024-01-02'"
        ),
        "t"
    );
    // Not the table it references, nor the view over it; the foreign key is left out, and
    // the job says why.
    assert!(!exists(&rental, "public.customer"));
    assert!(!exists(&rental, "public.open_rentals"));
    let warning = details(&job)["Warning"].as_str().unwrap_or_default();
    assert!(
        warning.contains("rental_customer_id_fkey") && warning.contains("public.customer"),
        "{warning}"
    );
    assert_eq!(
        sub_tasks(&job),
        tasks(&[
            ("Validate", "Completed"),
            ("Restore", "Completed"),
            ("Commit", "Completed"),
        ])
    );

    // A table with a serial column: its sequence continues.
    let customer = format!("{}_customer", f.db.name);
    let job = f.restored(&customer, &admin, &["--tables", "public.customer"]);
    assert_eq!(
        c.psql(
            &customer,
            "INSERT INTO public.customer (name) VALUES ('new') RETURNING customer_id"
        ),
        "31"
    );
    assert_eq!(constraints(&customer, "public.customer"), "pu");
    assert!(details(&job).get("Warning").is_none(), "{job:#}");

    // Both: the foreign key between them comes too.
    let both = format!("{}_both", f.db.name);
    f.restored(
        &both,
        &admin,
        &["--tables", "public.rental,public.customer"],
    );
    assert_eq!(constraints(&both, "public.rental"), "cfp");
    assert!(
        c.try_psql_as(
            &both,
            c.admin_user(),
            c.admin_password(),
            "INSERT INTO public.rental (customer_id, rented) VALUES (999, now())"
        )
        .is_err(),
        "the foreign key holds"
    );

    // A schema: everything in it, with its sequence.
    let inventory = format!("{}_inventory", f.db.name);
    f.restored(&inventory, &admin, &["--schemas", "inventory"]);
    assert_eq!(
        c.psql(&inventory, "SELECT count(*) FROM inventory.film"),
        "15"
    );
    assert_eq!(
        c.psql(
            &inventory,
            "INSERT INTO inventory.film (title) VALUES ('new') RETURNING film_id"
        ),
        "16"
    );
    assert_eq!(constraints(&inventory, "inventory.film"), "p");
    assert!(!exists(&inventory, "public.rental"));

    // Without dependents: the table, its data and its identity sequence only.
    let bare = format!("{}_bare", f.db.name);
    f.restored(
        &bare,
        &admin,
        &["--tables", "public.rental", "--no-table-dependents"],
    );
    assert_eq!(c.psql(&bare, "SELECT count(*) FROM public.rental"), "300");
    assert_eq!(
        c.psql(
            &bare,
            "INSERT INTO public.rental (customer_id, rented) VALUES (1, now()) RETURNING rental_id"
        ),
        "301"
    );
    assert_eq!(constraints(&bare, "public.rental"), "c");
    assert!(!exists(&bare, "public.rental_customer_idx"));
    assert_eq!(triggers(&bare, "public.rental"), "0");
}

#[test]
fn a_restore_secret_naming_the_maintenance_database_is_not_warned_about() {
    let f = Fit::new("quietsecret", 20);
    // The admin secret names `postgres`, the database a restore connects to first.
    let target = format!("{}_restored", f.db.name);
    let out = f.restore(&target, &f.w.admin_secret("postgres"), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("names another"), "{stderr}");

    // A secret naming another server is still worth a warning (the restore then fails to
    // connect to the datasource's server only if it is not there; here it is).
    let c = cluster();
    let elsewhere = f.w.write(
        "elsewhere.secret",
        &format!(
            "Server=elsewhere.invalid;Database=postgres;Port={};User Id={};Password={};Ssl Mode=Prefer;",
            c.port(),
            c.admin_user(),
            c.admin_password()
        ),
    );
    let out = f.restore(
        &format!("{}_again", f.db.name),
        &format!("file://{}", elsewhere.display()),
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("names another server"), "{stderr}");
    assert!(!stderr.contains(c.admin_password()), "no secret in a log");
}

#[test]
fn a_restore_job_records_its_steps_on_success_and_failure() {
    let f = Fit::new("restoresteps", 20);
    let admin = f.w.admin_secret("postgres");
    // To a file: validate, write, commit.
    let out = f.w.run(&[
        "backup-instance",
        "restore",
        "initialize-for-data-recovery-as-files",
        "--vault-name",
        VAULT,
        "--backup-instance-name",
        &f.instance,
        "--recovery-point-id",
        &f.rp,
        "--target-directory",
        f.w.path("files").to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let request =
        f.w.write("files.json", &String::from_utf8_lossy(&out.stdout));
    let job = f.w.json(&[
        "backup-instance",
        "restore",
        "trigger",
        "--vault-name",
        VAULT,
        "--backup-instance-name",
        &f.instance,
        "--restore-request-object",
        request.to_str().unwrap(),
    ]);
    let job =
        f.w.json(&["job", "show", "--job-id", job["name"].as_str().unwrap()]);
    assert_eq!(
        sub_tasks(&job),
        tasks(&[
            ("Validate", "Completed"),
            ("Write", "Completed"),
            ("Commit", "Completed"),
        ])
    );

    // A target that exists fails in Validate, which is finished as Failed.
    let out = f.restore(&f.db.name, &admin, &[]);
    assert!(!out.status.success());
    let failed = f.w.json(&[
        "job",
        "list",
        "--vault-name",
        VAULT,
        "--operation",
        "Restore",
        "--status",
        "Failed",
    ]);
    let failed = &failed.as_array().unwrap()[0];
    let failed =
        f.w.json(&["job", "show", "--job-id", failed["name"].as_str().unwrap()]);
    assert_eq!(sub_tasks(&failed), tasks(&[("Validate", "Failed")]));

    // A view named without the table it reads is refused, naming the table to add.
    let out = f.restore(
        &format!("{}_view", f.db.name),
        &admin,
        &["--tables", "public.open_rentals"],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("public.open_rentals") && stderr.contains("public.rental"),
        "{stderr}"
    );
}
