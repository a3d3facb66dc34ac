//! `pgvault repl` through a pseudo-terminal, as a person types it: state across entries,
//! multi-line input, help, Tab completion, errors that leave the session running, Ctrl-C
//! for a loop and for an operation in progress, Ctrl-D, and the history file.
//!
//! Every step waits for the output it expects (with rexpect's timeout), never for a time.
//! Expected outputs are chosen so they cannot match the echo of what was typed: the
//! terminal shows the input line too.

use std::io::Read;
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use rexpect::process::WaitStatus;
use rexpect::session::{PtySession, spawn_command};

use crate::support::World;

const PROMPT: &str = "pgvault> ";
const MORE: &str = "... ";
const TIMEOUT_MS: u64 = 30_000;

/// The REPL in a pseudo-terminal with `world`'s home. TERM is set because rustyline edits
/// lines (and completes) only on a terminal it knows.
fn repl(world: &World) -> PtySession {
    let mut cmd = world.command(&["repl"]);
    cmd.env("TERM", "xterm");
    let mut p = spawn_command(cmd, Some(TIMEOUT_MS)).expect("start pgvault repl in a pty");
    expect(&mut p, PROMPT);
    p
}

/// Waits for `needle`; returns what came before it.
fn expect(p: &mut PtySession, needle: &str) -> String {
    p.exp_string(needle)
        .unwrap_or_else(|e| panic!("waiting for {needle:?}: {e}"))
}

/// Types `line` and Enter, waits for `output` (when given) and then the next prompt.
/// rustyline redraws the prompt when it refreshes an edited line, so after Tab or Ctrl-C
/// the test waits for the redrawn text before it waits for a prompt.
fn entry(p: &mut PtySession, line: &str, output: Option<&str>) {
    p.send_line(line).unwrap();
    if let Some(output) = output {
        expect(p, output);
    }
    expect(p, PROMPT);
}

/// Types `keys` without Enter (rexpect buffers writes until a newline or a flush).
fn keys(p: &mut PtySession, keys: &str) {
    p.send(keys).unwrap();
    p.flush().unwrap();
}

/// Ctrl-D at an empty prompt ends the session with status 0.
fn exit(mut p: PtySession) {
    p.send_control('d').unwrap();
    p.exp_eof().unwrap();
    match p.process().wait().unwrap() {
        WaitStatus::Exited(_, 0) => {}
        other => panic!("pgvault repl ended with {other:?}"),
    }
}

#[test]
fn repl_keeps_state_reads_multi_line_entries_and_survives_errors() {
    let world = World::new();
    let mut p = repl(&world);

    entry(&mut p, "let x = 40 + 2;", None);
    entry(&mut p, "x", Some("\n42"));

    p.send_line("fn f(a) {").unwrap();
    expect(&mut p, MORE);
    p.send_line("a * 2").unwrap();
    expect(&mut p, MORE);
    entry(&mut p, "}", None);
    entry(&mut p, "f(21)", Some("\n42"));

    entry(
        &mut p,
        r#"help("adhoc_backup")"#,
        Some(r#"adhoc_backup("db-empdb11", "Default")"#),
    );

    // Errors print and the session goes on, state intact.
    entry(
        &mut p,
        r#"vault("Nope")"#,
        Some("UserErrorVaultNotFound: no vault named `Nope`"),
    );
    entry(&mut p, "1 )", Some("1:3: "));
    entry(&mut p, "x + 1", Some("\n43"));

    // Ctrl-C at the prompt drops what was typed.
    keys(&mut p, "garbage");
    p.send_control('c').unwrap();
    expect(&mut p, PROMPT);
    entry(&mut p, "x - 1", Some("\n41"));

    exit(p);
    let history =
        std::fs::read_to_string(world.path("home").join("repl_history")).expect("the history file");
    assert!(history.contains("let x = 40 + 2;"), "{history}");
    assert!(history.contains("fn f(a) {"), "{history}");
}

#[test]
fn tab_completes_function_and_vault_names() {
    let world = World::new();
    let mut p = repl(&world);

    // `policy_te` + Tab becomes `policy_template`, and the entry works only if it did.
    keys(&mut p, "policy_te\t");
    expect(&mut p, "policy_template");
    entry(
        &mut p,
        r#"("AzureDatabaseForPostgreSQL").policyRules[0].name"#,
        Some("BackupWeekly"),
    );

    entry(&mut p, r#"new_vault("V1", #{})"#, Some("file://"));
    // `vault("V` + Tab becomes `vault("V1"`: the string is closed too.
    keys(&mut p, "\"vault: \" + vault(\"V\t");
    expect(&mut p, r#"vault("V1""#);
    entry(&mut p, ").name", Some("vault: V1"));

    exit(p);
}

#[test]
fn ctrl_c_cancels_the_running_entry_not_the_repl() {
    let mut world = World::new();
    // A "server" that accepts connections and never answers: protecting a database there
    // waits until cancelled (the secret's Timeout=0 waits indefinitely, as in libpq).
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    world.env.push((
        "PGVAULT_REPL_TEST_SECRET".to_string(),
        format!(
            "Server=127.0.0.1;Port={port};Database=silentdb;User Id=u;Password=p;Timeout=0;Ssl Mode=Prefer;"
        ),
    ));
    let (accepted_tx, accepted) = mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((conn, _)) = silent.accept() {
            let _ = accepted_tx.send(conn);
        }
    });
    let mut p = repl(&world);
    entry(&mut p, "let x = 42;", None);

    // A Rhai loop, stopped at its next operation. The print shows that the entry runs, so
    // the terminal is out of raw mode and Ctrl-C is a signal.
    p.send_line(r#"print("loop" + "ing"); loop { }"#).unwrap();
    expect(&mut p, "looping");
    p.send_control('c').unwrap();
    expect(&mut p, "cancelled (Ctrl-C)");
    expect(&mut p, PROMPT);
    entry(&mut p, "x", Some("\n42"));

    // An operation in progress: its future is dropped (the connection closes), the call
    // fails with OperationCancelled and the job it started is recorded as Cancelled.
    entry(&mut p, r#"let v = new_vault("V", #{});"#, None);
    entry(
        &mut p,
        r#"v.create_policy("P", policy_template("AzureDatabaseForPostgreSQLFlexibleServer")).name + "!""#,
        Some("P!"),
    );
    p.send_line(&format!(
        r#"v.protect(initialize_instance(#{{ datasource_type: "AzureDatabaseForPostgreSQLFlexibleServer", datasource_id: "postgres://127.0.0.1:{port}/silentdb", policy_id: "P", secret_store_type: "Environment", secret_store_uri: "env:PGVAULT_REPL_TEST_SECRET" }}))"#
    ))
    .unwrap();
    let mut conn = match accepted.recv_timeout(Duration::from_millis(TIMEOUT_MS)) {
        Ok(conn) => conn,
        Err(_) => panic!(
            "pgvault did not connect to the silent server; the REPL said: {:?}",
            p.exp_string(PROMPT)
        ),
    };
    // While it waits, the REPL says what is running.
    expect(&mut p, ": running, ");
    p.send_control('c').unwrap();
    expect(&mut p, "OperationCancelled");
    expect(&mut p, PROMPT);
    conn.set_read_timeout(Some(Duration::from_millis(TIMEOUT_MS)))
        .unwrap();
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest)
        .expect("the cancelled operation closes its connection");

    p.send_line("jobs()").unwrap();
    let jobs = expect(&mut p, PROMPT);
    assert!(
        jobs.lines()
            .any(|l| l.contains("ConfigureBackup") && l.contains("Cancelled")),
        "the job is recorded as cancelled:\n{jobs}"
    );
    entry(&mut p, "x", Some("\n42"));
    exit(p);
}

/// Values show as the user's data, never as a Rust type (`vaults()` once echoed
/// `[pgvault_host::script::vault::VaultRef]`): vaults as the table `backup-vault list -o table`
/// prints, one vault as its resource, and `print` and `${..}` as their names.
#[test]
fn vaults_show_as_data_in_echoes_and_prints() {
    let world = World::new();
    let mut p = repl(&world);
    entry(&mut p, r#"new_vault("ReplVaultA", #{});"#, None);
    entry(&mut p, r#"new_vault("ReplVaultB", #{});"#, None);

    // The echo of an array of vaults: a table (`Storage` is only in its header).
    p.send_line("vaults()").unwrap();
    expect(&mut p, "Storage");
    let shown = expect(&mut p, PROMPT);
    assert!(
        shown.contains("ReplVaultA") && shown.contains("ReplVaultB") && shown.contains("file://"),
        "{shown}"
    );
    assert!(!shown.contains("::"), "{shown}");

    // One vault: its resource JSON.
    p.send_line(r#"vault("ReplVaultB")"#).unwrap();
    expect(&mut p, "Microsoft.DataProtection/backupVaults");
    let shown = expect(&mut p, PROMPT);
    assert!(!shown.contains("::"), "{shown}");

    // print: the array's vaults as the calls that give them back, one vault as its name.
    p.send_line("print(vaults())").unwrap();
    let before = expect(&mut p, r#"[vault("ReplVaultA"), vault("ReplVaultB")]"#);
    assert!(!before.contains("::"), "{before}");
    expect(&mut p, PROMPT);
    entry(
        &mut p,
        r#"let v = vault("ReplVaultA"); print("named " + `${v}` + "!");"#,
        Some("named ReplVaultA!"),
    );
    // A map holding a vault: JSON, the vault as its resource in it.
    p.send_line(r#"#{ which: vault("ReplVaultA"), n: 1 }"#)
        .unwrap();
    let shown = expect(&mut p, PROMPT);
    assert!(
        shown.contains("Microsoft.DataProtection/backupVaults") && !shown.contains("::"),
        "{shown}"
    );
    exit(p);
}
