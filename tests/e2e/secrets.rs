//! Secrets never reach a log, a job row, the vault, or an error message.

use crate::support::{World, cluster, files_under, sample_database};

#[test]
fn the_password_appears_nowhere() {
    let mut w = World::new();
    let c = cluster();
    let db = sample_database("nosecret", 2_000);
    let password = format!("Zq8-secret-{}-pw", std::process::id());
    let user = format!("secretive_{}", std::process::id());
    c.psql(
        "postgres",
        &format!("CREATE ROLE {user} LOGIN SUPERUSER PASSWORD '{password}'"),
    );
    w.env.push(("RUST_LOG".into(), "trace".into()));
    w.env.push((
        "PGVAULT_SECRET".into(),
        format!("Server=h;Database={db};User Id={user};Password={password};"),
    ));
    w.vault_with_policy("V");

    let mut transcript = String::new();
    let mut run = |w: &World, args: &[&str]| {
        let out = w
            .command(args)
            .arg("--log-level")
            .arg("trace")
            .output()
            .unwrap();
        transcript.push_str(&String::from_utf8_lossy(&out.stdout));
        transcript.push_str(&String::from_utf8_lossy(&out.stderr));
        out
    };
    let req = w.initialize(&db, "env:PGVAULT_SECRET");
    let f = w.write("i.json", &req.to_string());
    let created = run(
        &w,
        &[
            "backup-instance",
            "create",
            "--vault-name",
            "V",
            "--backup-instance",
            f.to_str().unwrap(),
        ],
    );
    assert!(created.status.success(), "{transcript}");
    let instance = req["name"].as_str().unwrap().to_string();
    assert!(
        run(
            &w,
            &[
                "backup-instance",
                "adhoc-backup",
                "--vault-name",
                "V",
                "--name",
                &instance
            ]
        )
        .status
        .success(),
        "{transcript}"
    );
    // A failing backup too: the server refuses the user, and the error is reported.
    c.psql("postgres", &format!("ALTER ROLE {user} NOLOGIN"));
    assert!(
        !run(
            &w,
            &[
                "backup-instance",
                "adhoc-backup",
                "--vault-name",
                "V",
                "--name",
                &instance
            ]
        )
        .status
        .success()
    );
    run(&w, &["job", "list"]);
    run(
        &w,
        &[
            "backup-instance",
            "show",
            "--vault-name",
            "V",
            "--name",
            &instance,
        ],
    );

    assert!(
        transcript.contains("UserErrorDBUserAuthFailed") || transcript.contains("UserError"),
        "{transcript}"
    );
    assert!(
        !transcript.contains(&password),
        "the password reached the output or logs"
    );
    for file in files_under(w.dir.path()) {
        let bytes = std::fs::read(&file).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        // The secret's own source (the environment) is not in any file; everything pgvault
        // wrote (vault, registry, job history with its WAL) must not hold it either.
        assert!(
            !text.contains(&password),
            "the password is in {}",
            file.display()
        );
    }
}
