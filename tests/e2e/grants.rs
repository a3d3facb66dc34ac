//! The grant script the readiness error prints, run as printed by the roles it names, on a
//! database owned by a non-superuser (issue 16): it works for the database owner, splits
//! by owner when ownership is split, keeps tables created later backed up, names just the
//! new tables when a backup finds some it cannot read, and touches no system catalog.

use crate::support::{OwnedDatabase, World, cluster, owned_database};

/// A login role with no privileges: its name and password.
fn backup_role(db: &OwnedDatabase) -> (String, String) {
    let user = format!("{}_backup", db.name);
    let password = format!("bk-{}", db.name);
    cluster().psql(
        "postgres",
        &format!("CREATE ROLE {user} LOGIN PASSWORD '{password}'"),
    );
    (user, password)
}

fn instance_file(w: &World, database: &str, secret: &str) -> String {
    let req = w.initialize(database, secret);
    let f = w.write(&format!("instance-{database}.json"), &req.to_string());
    f.to_str().unwrap().to_string()
}

/// `backup-instance create`, which must fail; returns its error.
fn create_fails(w: &World, database: &str, secret: &str) -> String {
    let f = instance_file(w, database, secret);
    let err = w.fails(&[
        "backup-instance",
        "create",
        "--vault-name",
        "V",
        "--backup-instance",
        &f,
    ]);
    assert!(err.contains("UserErrorMissingDBPermissions"), "{err}");
    err
}

fn create(w: &World, database: &str, secret: &str) -> String {
    let f = instance_file(w, database, secret);
    let created = w.json(&[
        "backup-instance",
        "create",
        "--vault-name",
        "V",
        "--backup-instance",
        &f,
    ]);
    created["name"].as_str().unwrap().to_string()
}

/// The script in an error: everything after the first blank line.
fn script(err: &str) -> &str {
    err.split_once("\n\n")
        .unwrap_or_else(|| panic!("no script in: {err}"))
        .1
        .trim_end()
}

/// The script's parts: the role each names (as an SQL identifier) and its SQL.
fn parts(err: &str) -> Vec<(String, String)> {
    script(err)
        .split("\n\n")
        .map(|part| {
            let header = part.lines().next().unwrap();
            let role = header
                .strip_prefix("-- as ")
                .and_then(|h| h.split_once(" or a superuser"))
                .unwrap_or_else(|| panic!("a part without its role: {part}\nin: {err}"))
                .0;
            (role.to_string(), part.to_string())
        })
        .collect()
}

fn part_for<'a>(parts: &'a [(String, String)], role: &str) -> &'a str {
    &parts
        .iter()
        .find(|(r, _)| r == role)
        .unwrap_or_else(|| panic!("no part for {role} in {parts:#?}"))
        .1
}

fn adhoc_backup(w: &World, instance: &str) -> std::process::Output {
    w.run(&crate::support::backup_args("V", instance))
}

#[test]
fn the_owner_runs_the_printed_script_and_later_tables_stay_backed_up() {
    let w = World::new();
    let db = owned_database("grantown", 200);
    let (user, password) = backup_role(&db);
    w.vault_with_policy("V");
    let secret = w.secret_file("b.secret", &db.name, &user, &password);

    let err = create_fails(&w, &db.name, &secret);
    assert!(err.contains("USAGE on schema inventory"), "{err}");
    assert!(err.contains("SELECT on table public.rental"), "{err}");
    assert!(
        err.contains("SELECT on sequence inventory.film_film_id_seq"),
        "{err}"
    );
    for system in ["pg_toast", "pg_catalog", "information_schema"] {
        assert!(!script(&err).contains(system), "{system} in: {err}");
    }
    // One owner, one part, and it names the owner.
    let parts = parts(&err);
    assert_eq!(parts.len(), 1, "{err}");
    assert_eq!(parts[0].0, db.owner);
    assert!(
        script(&err).contains(&format!(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {} GRANT SELECT ON TABLES TO {user};",
            db.owner
        )),
        "{err}"
    );

    // Run by the database owner, not a superuser, as printed.
    db.try_as_owner(script(&err))
        .unwrap_or_else(|e| panic!("the owner could not run the script: {e}\n{err}"));
    let instance = create(&w, &db.name, &secret);
    let first = w.backup("V", &instance);
    assert_eq!(first["properties"]["status"], "Completed", "{first:#}");

    // A table the owner creates afterwards is readable through the default privileges.
    db.as_owner(
        "CREATE TABLE public.rw_newtable (id serial PRIMARY KEY, note text);
         INSERT INTO public.rw_newtable (note) VALUES ('after the grants');
         CREATE SCHEMA later;
         CREATE TABLE later.t (x bigint GENERATED ALWAYS AS IDENTITY, y text);
         INSERT INTO later.t (y) VALUES ('in a schema created later');",
    );
    let second = w.backup("V", &instance);
    assert_eq!(second["properties"]["status"], "Completed", "{second:#}");
    assert_eq!(w.recovery_points("V", &instance).len(), 2);
}

#[test]
fn split_ownership_gives_each_role_its_part() {
    let w = World::new();
    let c = cluster();
    let db = owned_database("grantsplit", 50);
    let (user, password) = backup_role(&db);
    let stock = format!("{}_stock", db.name);
    c.psql(
        "postgres",
        &format!("CREATE ROLE {stock} LOGIN PASSWORD 'stock-pw'"),
    );
    // The schema `inventory` and its tables belong to a second role, which also creates
    // a table of its own there.
    c.psql(
        &db.name,
        &format!(
            "ALTER SCHEMA inventory OWNER TO {stock}; ALTER TABLE inventory.film OWNER TO {stock};"
        ),
    );
    c.psql_as(
        &db.name,
        &stock,
        "stock-pw",
        "CREATE TABLE inventory.shelf (id bigserial PRIMARY KEY, label text);
         INSERT INTO inventory.shelf (label) VALUES ('A1');",
    );
    w.vault_with_policy("V");
    let secret = w.secret_file("b.secret", &db.name, &user, &password);

    let err = create_fails(&w, &db.name, &secret);
    let parts = parts(&err);
    assert_eq!(
        parts.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(),
        [db.owner.as_str(), stock.as_str()],
        "the database owner's part first: {err}"
    );
    let owner_part = part_for(&parts, &db.owner);
    let stock_part = part_for(&parts, &stock);
    assert!(!owner_part.contains("inventory"), "{err}");
    assert!(
        stock_part.contains(&format!("GRANT USAGE ON SCHEMA inventory TO {user};"))
            && stock_part.contains(&format!(
                "GRANT SELECT ON ALL TABLES IN SCHEMA inventory TO {user};"
            ))
            && stock_part.contains(&format!(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {stock} GRANT SELECT ON TABLES TO {user};"
            )),
        "{err}"
    );
    // The owner cannot run the other role's part: which is why it is apart.
    assert!(db.try_as_owner(stock_part).is_err());
    db.try_as_owner(owner_part)
        .unwrap_or_else(|e| panic!("the owner's part failed: {e}\n{err}"));
    c.try_psql_as(&db.name, &stock, "stock-pw", stock_part)
        .unwrap_or_else(|e| panic!("{stock}'s part failed: {e}\n{err}"));

    let instance = create(&w, &db.name, &secret);
    assert_eq!(
        w.backup("V", &instance)["properties"]["status"],
        "Completed"
    );
    // Both owners' later tables stay readable.
    c.psql_as(
        &db.name,
        &stock,
        "stock-pw",
        "CREATE TABLE inventory.bin (id serial, shelf bigint);",
    );
    db.as_owner("CREATE TABLE public.payment (id serial, amount numeric);");
    assert_eq!(
        w.backup("V", &instance)["properties"]["status"],
        "Completed"
    );
}

#[test]
fn a_table_created_by_a_role_without_defaults_fails_the_backup_with_its_grant() {
    let w = World::new();
    let c = cluster();
    let db = owned_database("grantlate", 50);
    let (user, password) = backup_role(&db);
    w.vault_with_policy("V");
    let secret = w.secret_file("b.secret", &db.name, &user, &password);
    let err = create_fails(&w, &db.name, &secret);
    c.psql(&db.name, script(&err));
    let instance = create(&w, &db.name, &secret);

    // A role that owned nothing when the script was printed creates a table.
    let etl = format!("{}_etl", db.name);
    c.psql(
        "postgres",
        &format!("CREATE ROLE {etl} LOGIN PASSWORD 'etl-pw'"),
    );
    db.as_owner(&format!("GRANT CREATE ON SCHEMA public TO {etl};"));
    c.psql_as(
        &db.name,
        &etl,
        "etl-pw",
        "CREATE TABLE public.rw_newtable (id int, note text); INSERT INTO public.rw_newtable VALUES (1, 'x');",
    );

    let out = adhoc_backup(&w, &instance);
    assert!(!out.status.success());
    let job: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(job["properties"]["status"], "Failed");
    let error = &job["properties"]["errorDetails"][0];
    assert_eq!(error["code"], "UserErrorMissingDBPermissions");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains(": SELECT on table public.rw_newtable.\n"),
        "only the new table is named: {message}"
    );
    let parts = parts(message);
    assert_eq!(parts.len(), 1, "{message}");
    assert_eq!(parts[0].0, etl, "{message}");
    let grants: Vec<&str> = parts[0]
        .1
        .lines()
        .filter(|l| l.starts_with("GRANT"))
        .collect();
    assert_eq!(
        grants,
        [format!(
            "GRANT SELECT ON TABLE public.rw_newtable TO {user};"
        )],
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {etl} GRANT SELECT ON TABLES TO {user};"
        )),
        "{message}"
    );

    // Run by that role as printed, the backups work again, its next tables too.
    c.try_psql_as(&db.name, &etl, "etl-pw", &parts[0].1)
        .unwrap_or_else(|e| panic!("{etl}'s part failed: {e}\n{message}"));
    assert_eq!(
        w.backup("V", &instance)["properties"]["status"],
        "Completed"
    );
    c.psql_as(
        &db.name,
        &etl,
        "etl-pw",
        "CREATE TABLE public.rw_next (id int);",
    );
    assert_eq!(
        w.backup("V", &instance)["properties"]["status"],
        "Completed"
    );
}

/// Every ACL in the system schemas and every default privilege, as text.
fn system_acls(database: &str) -> String {
    cluster().psql(
        database,
        "SELECT 'rel ' || c.oid::regclass || ' ' || coalesce(c.relacl::text, '-') FROM pg_class c
           WHERE c.relnamespace IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace, 'pg_toast'::regnamespace)
         UNION ALL
         SELECT 'nsp ' || n.nspname || ' ' || coalesce(n.nspacl::text, '-') FROM pg_namespace n
           WHERE n.nspname IN ('pg_catalog', 'information_schema') OR n.nspname LIKE 'pg\\_%'
         UNION ALL
         SELECT 'proc ' || p.oid::regprocedure || ' ' || coalesce(p.proacl::text, '-') FROM pg_proc p
           WHERE p.pronamespace IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
         UNION ALL
         SELECT 'default ' || d.defaclrole::regrole || ' ' || d.defaclnamespace || ' ' || d.defaclobjtype::text || ' ' || d.defaclacl::text
           FROM pg_default_acl d WHERE d.defaclnamespace <> 0
         ORDER BY 1",
    )
}

#[test]
fn a_superuser_run_leaves_the_system_catalogs_alone() {
    let w = World::new();
    let c = cluster();
    let db = owned_database("grantsys", 20);
    let (user, password) = backup_role(&db);
    w.vault_with_policy("V");
    let secret = w.secret_file("b.secret", &db.name, &user, &password);
    let err = create_fails(&w, &db.name, &secret);

    let before = system_acls(&db.name);
    c.psql(&db.name, script(&err));
    let after = system_acls(&db.name);
    if before != after {
        let changed: Vec<&str> = after.lines().filter(|l| !before.contains(l)).collect();
        panic!(
            "the script changed {} system ACLs, e.g. {:?}",
            changed.len(),
            &changed[..changed.len().min(5)]
        );
    }
    let instance = create(&w, &db.name, &secret);
    assert_eq!(
        w.backup("V", &instance)["properties"]["status"],
        "Completed"
    );
}

#[test]
fn odd_identifiers_are_quoted() {
    let w = World::new();
    let c = cluster();
    let db = owned_database("grantodd", 20);
    let n = std::process::id();
    // Mixed case, a double quote and a space, in the backup user, an owner, a schema and
    // a table.
    let user = format!("Back \"Up\" {n}");
    let user_ident = format!("\"Back \"\"Up\"\" {n}\"");
    let keeper = format!("Stock Keeper {}", db.name);
    let keeper_ident = format!("\"{keeper}\"");
    c.psql(
        "postgres",
        &format!(
            "CREATE ROLE {user_ident} LOGIN PASSWORD 'odd-pw'; CREATE ROLE {keeper_ident} LOGIN PASSWORD 'keeper-pw';"
        ),
    );
    c.psql(
        &db.name,
        &format!(
            "CREATE SCHEMA \"Odd \"\"Schema\"\" x\" AUTHORIZATION {keeper_ident};
             ALTER SCHEMA inventory OWNER TO {keeper_ident}; ALTER TABLE inventory.film OWNER TO {keeper_ident};"
        ),
    );
    c.psql_as(
        &db.name,
        &keeper,
        "keeper-pw",
        "CREATE TABLE \"Odd \"\"Schema\"\" x\".\"Mixed Case\" (\"Id\" serial PRIMARY KEY, \"a \"\"b\"\"\" text);
         INSERT INTO \"Odd \"\"Schema\"\" x\".\"Mixed Case\" (\"a \"\"b\"\"\") VALUES ('odd');",
    );
    db.as_owner("CREATE TABLE public.\"CamelCase\" (x int);");
    w.vault_with_policy("V");
    let secret_file = w.write(
        "odd.secret",
        &format!(
            "Server={};Database={};Port={};User Id='{user}';Password=odd-pw;Ssl Mode=Prefer;",
            c.host(),
            db.name,
            c.port()
        ),
    );
    let secret = format!("file://{}", secret_file.display());

    let err = create_fails(&w, &db.name, &secret);
    assert!(
        err.contains("SELECT on table \"Odd \"\"Schema\"\" x\".\"Mixed Case\""),
        "{err}"
    );
    let parts = parts(&err);
    let keeper_part = part_for(&parts, &keeper_ident);
    assert!(
        keeper_part.contains(&format!(
            "GRANT USAGE ON SCHEMA \"Odd \"\"Schema\"\" x\" TO {user_ident};"
        )),
        "{err}"
    );
    db.try_as_owner(part_for(&parts, &db.owner))
        .unwrap_or_else(|e| panic!("the owner's part failed: {e}\n{err}"));
    c.try_psql_as(&db.name, &keeper, "keeper-pw", keeper_part)
        .unwrap_or_else(|e| panic!("the keeper's part failed: {e}\n{err}"));

    let instance = create(&w, &db.name, &secret);
    assert_eq!(
        w.backup("V", &instance)["properties"]["status"],
        "Completed"
    );
    c.psql_as(
        &db.name,
        &keeper,
        "keeper-pw",
        "CREATE TABLE \"Odd \"\"Schema\"\" x\".\"Later One\" (x int);",
    );
    assert_eq!(
        w.backup("V", &instance)["properties"]["status"],
        "Completed"
    );
}

/// Large objects: `pg_dump` reads every one, and only their owner (or a grant) lets it. The
/// owner's part grants its large objects; one the owner adds after the grants (large objects
/// have no default privileges before PostgreSQL 18) fails the next backup naming it, with
/// its grant.
#[test]
fn large_objects_are_granted_and_a_new_one_is_named() {
    let w = World::new();
    let db = owned_database("grantlo", 50);
    let first = db.as_owner("SELECT lo_from_bytea(0, 'the owner''s document'::bytea)");
    let (user, password) = backup_role(&db);
    w.vault_with_policy("V");
    let secret = w.secret_file("b.secret", &db.name, &user, &password);

    let err = create_fails(&w, &db.name, &secret);
    assert!(
        err.contains(&format!("SELECT on large object {first}")),
        "{err}"
    );
    let parts = parts(&err);
    let own = part_for(&parts, &db.owner);
    assert!(
        own.contains(&format!("GRANT SELECT ON LARGE OBJECT {first} TO")),
        "{own}"
    );
    db.as_owner(script(&err));
    let instance = create(&w, &db.name, &secret);
    let out = adhoc_backup(&w, &instance);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let second = db.as_owner("SELECT lo_from_bytea(0, 'added later'::bytea)");
    let out = adhoc_backup(&w, &instance);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("UserErrorMissingDBPermissions")
            && err.contains(&format!("SELECT on large object {second}"))
            && err.contains(&format!("GRANT SELECT ON LARGE OBJECT {second} TO")),
        "{err}"
    );
    assert!(!err.contains(&format!("LARGE OBJECT {first}")), "{err}");
    db.as_owner(script(&err));
    let out = adhoc_backup(&w, &instance);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Row-level security: `pg_dump` reads with row security off, which a role that does not own
/// the table may only with BYPASSRLS, and only a superuser gives that. Readiness names the
/// table and the script ends with the superuser's part; the backup works once it has run.
#[test]
fn a_table_with_row_level_security_needs_the_superusers_part() {
    let w = World::new();
    let c = cluster();
    let db = owned_database("grantrls", 50);
    db.as_owner(
        "ALTER TABLE public.customer ENABLE ROW LEVEL SECURITY;
         CREATE POLICY active_only ON public.customer USING (active);",
    );
    let (user, password) = backup_role(&db);
    w.vault_with_policy("V");
    let secret = w.secret_file("b.secret", &db.name, &user, &password);

    let err = create_fails(&w, &db.name, &secret);
    assert!(
        err.contains("BYPASSRLS for table public.customer, which has row-level security"),
        "{err}"
    );
    let script = script(&err);
    let (superuser, owners): (Vec<&str>, Vec<&str>) = script
        .split("\n\n")
        .partition(|part| part.starts_with("-- as a superuser ("));
    assert_eq!(
        superuser,
        [format!(
            "-- as a superuser (row-level security on 1 table):\nALTER ROLE {user} BYPASSRLS;"
        )],
        "{err}"
    );
    for part in &owners {
        db.as_owner(part);
    }
    // Without the superuser's part the backup user still cannot dump the table.
    let err = create_fails(&w, &db.name, &secret);
    assert!(err.contains("BYPASSRLS"), "{err}");
    c.psql(&db.name, superuser[0]);
    let instance = create(&w, &db.name, &secret);
    let out = adhoc_backup(&w, &instance);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
