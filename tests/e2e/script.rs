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
    let dumps: Vec<_> = std::fs::read_dir(&files)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        dumps.len() == 1 && dumps[0].starts_with("walkthrough-") && dumps[0].ends_with(".dump"),
        "{dumps:?}"
    );
    let jobs = w.json(&["job", "list", "--vault-name", "TestBkpVault"]);
    let ops: Vec<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["properties"]["pgvaultOperation"].as_str().unwrap())
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

#[test]
fn run_records_a_script_run_job_with_what_the_script_printed() {
    let w = World::new();
    let f = w.write("hello.rhai", "print(\"hello\");\nprint(40 + 2);\n");
    let out = w.run(&["run", f.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, "hello\n42\n", "still printed as it runs");
    assert!(f.is_file(), "`pgvault run` leaves the file where it is");
    let jobs = w.json(&["job", "list", "--operation", "ScriptRun"]);
    let [job] = jobs.as_array().unwrap().as_slice() else {
        panic!("one ScriptRun job: {jobs}");
    };
    let p = &job["properties"];
    assert_eq!(p["status"], "Completed", "{job}");
    let details = &p["extendedInfo"]["additionalDetails"];
    assert_eq!(details["ScriptPath"], f.to_str().unwrap(), "{job}");
    assert_eq!(details["ScriptOutput"], "hello\n42\n", "{job}");

    // A failing script fails its job with the same message it prints.
    let f = w.write(
        "broken.rhai",
        "print(\"starting\");\nthrow \"no backups today\";\n",
    );
    let err = w.fails(&["run", f.to_str().unwrap()]);
    assert!(err.contains("broken.rhai:2:"), "{err}");
    let failed = w.json(&["job", "list", "--status", "Failed"]);
    let error = &failed[0]["properties"]["errorDetails"];
    assert!(error.to_string().contains("ScriptError"), "{failed}");
}

#[test]
fn run_stops_a_script_at_its_wall_time() {
    let w = World::new();
    let f = w.write("spin.rhai", "print(\"spinning\");\nloop { }\n");
    let err = w.fails(&["run", "--wall-time", "PT1S", f.to_str().unwrap()]);
    assert!(
        err.contains("spin.rhai:2:") && err.contains("longer than its wall time of 1s"),
        "{err}"
    );
    let jobs = w.json(&["job", "list", "--operation", "ScriptRun"]);
    assert!(jobs[0].to_string().contains("ScriptTimedOut"), "{jobs}");
    let err = w.fails(&["run", "--wall-time", "soon", f.to_str().unwrap()]);
    assert!(err.contains("soon"), "{err}");
}

#[cfg(unix)]
#[test]
fn ctrl_c_cancels_the_run_and_records_it() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let w = World::new();
    let f = w.write("long.rhai", "print(\"started\");\nloop { }\n");
    let mut child = w
        .command(&["run", f.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once the script printed, its job exists and the Ctrl-C handler is in place.
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first, "started\n");
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{out:?}");
    let jobs = w.json(&["job", "list", "--operation", "ScriptRun"]);
    assert_eq!(jobs[0]["properties"]["status"], "Cancelled", "{jobs}");
}

/// What a script prints is the user's data: a vault by its name, vaults in an array as the
/// calls that give them back, never a Rust type (`[pgvault_host::script::vault::VaultRef]`).
#[test]
fn scripts_print_vaults_as_data() {
    let w = World::new();
    let f = w.write(
        "vaults.rhai",
        r#"new_vault("PrintB"); new_vault("PrintA");
print(vaults());
let v = vault("PrintA");
print(v);
print(`vault ${v} has ${v.instances().len()} instances`);
debug(v);
print(#{ first: v });
"#,
    );
    let out = w.run(&["run", f.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout,
        "[vault(\"PrintA\"), vault(\"PrintB\")]\nPrintA\nvault PrintA has 0 instances\n\
         6:1 | vault(\"PrintA\")\n#{\"first\": vault(\"PrintA\")}\n"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("::"), "{stderr}");
}
