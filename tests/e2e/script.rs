//! `pgvault run`: the walkthrough as a Rhai script, and script errors with positions.

use crate::support::{World, cluster, plain_dump, sample_database};

#[test]
fn walkthrough_script_backs_up_and_restores() {
    let mut w = World::new();
    let c = cluster();
    let db = sample_database("script", 5_000);
    let target = format!("{db}_from_script");
    let secret = w.admin_secret(&db);
    let files = w.path("script-files");
    w.env.extend([
        (
            "PGVAULT_DATASOURCE".to_string(),
            format!("postgres://{}:{}/{db}", c.host(), c.port()),
        ),
        ("PGVAULT_SECRET_URI".to_string(), secret),
        (
            "PGVAULT_RESTORE_URL".to_string(),
            format!("postgres://{}:{}/{target}", c.host(), c.port()),
        ),
        (
            "PGVAULT_VAULT_URL".to_string(),
            format!("file://{}", w.path("script-vault").display()),
        ),
        ("PGVAULT_FILES_DIR".to_string(), files.display().to_string()),
    ]);
    let script = format!(
        "{}/../../scripts/walkthrough.rhai",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = w.run(&["run", &script]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Protected") && stdout.contains("Restore job"),
        "{stdout}"
    );
    assert_eq!(plain_dump(&target), plain_dump(&db));
    assert!(files.join("walkthrough.dump").is_file());
    let jobs = w.json(&["job", "list", "--vault-name", "TestBkpVault"]);
    let ops: Vec<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["properties"]["operation"].as_str().unwrap())
        .collect();
    for op in ["ConfigureBackup", "OnDemandBackup", "Restore"] {
        assert!(ops.contains(&op), "{ops:?}");
    }
}

#[test]
fn script_errors_name_file_line_and_column() {
    let w = World::new();
    let f = w.write(
        "broken.rhai",
        "let a = 1;\nlet v = vault(\"NoSuchVault\");\n",
    );
    let err = w.fails(&["run", f.to_str().unwrap()]);
    assert!(err.contains("broken.rhai:2:"), "{err}");
    assert!(err.contains("UserErrorVaultNotFound"), "{err}");
    let f = w.write("syntax.rhai", "let x = ;\n");
    let err = w.fails(&["run", f.to_str().unwrap()]);
    assert!(err.contains("syntax.rhai:1:"), "{err}");
}
