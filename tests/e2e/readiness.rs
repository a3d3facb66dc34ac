//! Readiness validation on `backup-instance create`: each failure with its Azure code
//! and a message that says what to do.

use crate::support::{World, cluster, sample_database};

fn create_error(w: &World, database: &str, secret_uri: &str) -> String {
    let req = w.initialize(database, secret_uri);
    let f = w.write("instance.json", &req.to_string());
    w.fails(&[
        "backup-instance",
        "create",
        "--vault-name",
        "V",
        "--backup-instance",
        f.to_str().unwrap(),
    ])
}

#[test]
fn wrong_password_is_auth_failed() {
    let w = World::new();
    let db = sample_database("authfail", 10);
    w.vault_with_policy("V");
    let secret = w.secret_file(
        "bad.secret",
        &db,
        cluster().admin_user(),
        "not-the-password-7731",
    );
    let err = create_error(&w, &db, &secret);
    assert!(err.contains("UserErrorDBUserAuthFailed"), "{err}");
    assert!(
        !err.contains("not-the-password-7731"),
        "the password leaked: {err}"
    );
}

#[test]
fn missing_database_is_db_not_found() {
    let w = World::new();
    w.vault_with_policy("V");
    let err = create_error(&w, "no_such_db_here", &w.admin_secret("no_such_db_here"));
    assert!(err.contains("UserErrorDBNotFound"), "{err}");
}

#[test]
fn closed_port_is_unreachable() {
    let w = World::new();
    w.vault_with_policy("V");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let req = w.json(&[
        "backup-instance",
        "initialize",
        "--datasource-type",
        "AzureDatabaseForPostgreSQLFlexibleServer",
        "--datasource-id",
        &format!("postgres://127.0.0.1:{port}/x"),
        "--policy-id",
        "OssPolicy",
        "--secret-store-type",
        "File",
        "--secret-store-uri",
        &w.admin_secret("x"),
    ]);
    let f = w.write("i.json", &req.to_string());
    let err = w.fails(&[
        "backup-instance",
        "create",
        "--vault-name",
        "V",
        "--backup-instance",
        f.to_str().unwrap(),
    ]);
    assert!(err.contains("UserErrorDBServerUnreachable"), "{err}");
}

#[test]
fn missing_privileges_name_the_objects_and_give_the_grant_script() {
    let w = World::new();
    let c = cluster();
    let db = sample_database("privs", 10);
    let user = format!("limited_{}", std::process::id());
    c.psql(
        "postgres",
        &format!("CREATE ROLE {user} LOGIN PASSWORD 'limited-pw'"),
    );
    c.psql(&db, &format!("REVOKE ALL ON SCHEMA public FROM PUBLIC; GRANT USAGE ON SCHEMA public TO {user}; GRANT SELECT ON public.notes TO {user}"));
    w.vault_with_policy("V");
    let secret = w.secret_file("limited.secret", &db, &user, "limited-pw");
    let err = create_error(&w, &db, &secret);
    assert!(err.contains("UserErrorMissingDBPermissions"), "{err}");
    assert!(err.contains("USAGE on schema sales"), "{err}");
    assert!(err.contains("SELECT on table sales.orders"), "{err}");
    assert!(
        err.contains("SELECT on sequence public.invoice_no"),
        "{err}"
    );
    assert!(
        !err.contains("public.notes"),
        "granted objects are not listed: {err}"
    );
    assert!(
        err.contains(&format!(
            "GRANT SELECT ON ALL TABLES IN SCHEMA sales TO {user};"
        )),
        "{err}"
    );

    // The printed script, run as the admin, is enough.
    let script = err.split_once("\n\n").unwrap().1.trim();
    c.psql(&db, script);
    let req = w.initialize(&db, &secret);
    let f = w.write("ok.json", &req.to_string());
    w.json(&[
        "backup-instance",
        "create",
        "--vault-name",
        "V",
        "--backup-instance",
        f.to_str().unwrap(),
    ]);
}

#[test]
fn secret_problems_have_their_codes() {
    let w = World::new();
    let db = sample_database("secrets", 10);
    w.vault_with_policy("V");
    // A variable that is not set.
    let err = create_error(&w, &db, "env:PGVAULT_TEST_NO_SUCH_VARIABLE");
    assert!(err.contains("UserErrorInvalidSecret"), "{err}");
    // A file that is not a connection string.
    let garbage = w.write("garbage.secret", "this is not a connection string at all");
    let err = create_error(&w, &db, &format!("file://{}", garbage.display()));
    assert!(
        err.contains("UserErrorSecretValueInUnsupportedFormat"),
        "{err}"
    );
    assert!(
        !err.contains("not a connection string at all"),
        "the secret's text leaked: {err}"
    );
}

#[test]
fn excluded_and_already_protected_databases_are_refused() {
    let w = World::new();
    let db = sample_database("twice", 10);
    w.vault_with_policy("V");
    for excluded in ["azure_sys", "azure_maintenance"] {
        let c = cluster();
        let out = w.run(&[
            "backup-instance",
            "initialize",
            "--datasource-type",
            "AzureDatabaseForPostgreSQLFlexibleServer",
            "--datasource-id",
            &format!("postgres://{}:{}/{excluded}", c.host(), c.port()),
            "--policy-id",
            "OssPolicy",
            "--secret-store-type",
            "File",
            "--secret-store-uri",
            &w.admin_secret(excluded),
        ]);
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("UserErrorDatabaseNotSupportedForBackup")
        );
    }
    w.protect("V", &db, &w.admin_secret(&db));
    let err = create_error(&w, &db, &w.admin_secret(&db));
    assert!(err.contains("UserErrorDatasourceAlreadyProtected"), "{err}");
}
