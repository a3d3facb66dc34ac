//! The drop-in sandbox tried as an attacker would: a script dropped into the scripts folder
//! (run by `pgvault tick`, the host's one-pass loop, through the same code as `serve`) may do
//! only what the host's flags and its own header allow. Each escape the issue found is tried
//! here against a real vault with three real recovery points; each must end with its
//! `ScriptRun` job Failed, the script in `failed/` with a log naming why, and the data
//! untouched. A script that grows a string without end fails cleanly, in a drop-in, in
//! `pgvault run`, and in a running `serve` that carries on. A secret in the environment never
//! reaches a log or the job history.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::support::{World, cluster, sample_database};

/// A vault `V` with one instance holding three recovery points; returns (instance, ids).
fn vault_with_three_points(w: &World) -> (String, Vec<String>) {
    w.vault_with_policy("V");
    let db = sample_database("sandbox", 200);
    let instance = w.protect("V", &db, &w.admin_secret(&db));
    for _ in 0..3 {
        w.backup("V", &instance);
    }
    (instance.clone(), point_ids(w, &instance))
}

fn point_ids(w: &World, instance: &str) -> Vec<String> {
    let mut ids: Vec<String> = w
        .recovery_points("V", instance)
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn protection_state(w: &World, instance: &str) -> String {
    let shown = w.json(&[
        "backup-instance",
        "show",
        "--vault-name",
        "V",
        "--name",
        instance,
    ]);
    shown["properties"]["currentProtectionState"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Writes `scripts/<name>` as a file last changed an hour ago, so `tick` (which has no
/// earlier scan to compare with) runs it at once instead of waiting for it to settle.
fn drop_script(dir: &Path, name: &str, source: &str) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    fs::write(&path, source).unwrap();
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    path
}

/// Runs `pgvault tick --scripts-dir DIR` with `flags`; returns the ScriptRun jobs it ran.
fn tick(w: &World, dir: &Path, flags: &[&str]) -> Vec<Value> {
    let mut args = vec!["tick", "--scripts-dir", dir.to_str().unwrap()];
    args.extend_from_slice(flags);
    let out = w.run(&args);
    let jobs: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "tick printed no JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    jobs.as_array()
        .unwrap()
        .iter()
        .filter(|j| j["properties"]["pgvaultOperation"] == "ScriptRun")
        .cloned()
        .collect()
}

/// The job of the script `name` among `jobs`.
fn job_of<'a>(jobs: &'a [Value], name: &str) -> &'a Value {
    jobs.iter()
        .find(|j| {
            j["properties"]["extendedInfo"]["additionalDetails"]["ScriptPath"]
                .as_str()
                .is_some_and(|p| p.ends_with(name))
        })
        .unwrap_or_else(|| panic!("no job for {name} in {jobs:#?}"))
}

/// Asserts the drop-in `name` failed with `code` and a message containing `says`, and was
/// filed in `failed/` with a log saying so.
fn assert_refused(jobs: &[Value], dir: &Path, name: &str, code: &str, says: &str) {
    let job = job_of(jobs, name);
    assert_eq!(job["properties"]["status"], "Failed", "{name}: {job:#}");
    let error = &job["properties"]["errorDetails"][0];
    assert_eq!(error["code"], "ScriptError", "{name}: {error}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains(code) && message.contains(says),
        "{name}: {message}"
    );
    let log = fs::read_to_string(dir.join("failed").join(name).with_extension("log"))
        .unwrap_or_else(|e| panic!("{name}: no log in failed/: {e}"));
    assert!(log.contains(says), "{name}: {log}");
    assert!(!dir.join("done").join(name).exists(), "{name} is not done");
}

#[test]
fn drop_ins_cannot_delete_shorten_or_stop_protection() {
    let w = World::new();
    let (instance, ids) = vault_with_three_points(&w);
    let dir = w.path("scripts");
    let escapes = [
        // Found: deleted two of three recovery points.
        (
            "sweep-future.rhai",
            r#"vault("V").retention_sweep(#{ at: "2099-01-01" });"#,
            "retention_sweep with `at`",
        ),
        (
            "sweep-past.rhai",
            r#"vault("V").retention_sweep(#{ at: "2020-01-01", dry_run: false });"#,
            "retention_sweep with `at`",
        ),
        (
            "delete.rhai",
            &format!(
                r#"vault("V").delete_recovery_point("{instance}", "{}");"#,
                ids[0]
            ),
            "delete_recovery_point",
        ),
        (
            "delete-instance.rhai",
            &format!(r#"vault("V").delete_backup_instance("{instance}");"#),
            "delete_backup_instance",
        ),
        (
            "stop.rhai",
            &format!(r#"vault("V").stop_protection("{instance}");"#),
            "stop_protection",
        ),
        (
            "suspend.rhai",
            &format!(r#"vault("V").suspend_backups("{instance}");"#),
            "suspend_backups",
        ),
    ]
    .map(|(name, source, says)| (name, source.to_owned(), says));
    for (name, source, _) in &escapes {
        drop_script(&dir, name, source);
    }
    // A dry run at another time only plans: allowed.
    drop_script(
        &dir,
        "plan.rhai",
        r#"let s = vault("V").retention_sweep(#{ at: "2099-01-01", dry_run: true });
print(s.plan.actions.len());"#,
    );
    let jobs = tick(&w, &dir, &[]);
    for (name, _, says) in &escapes {
        assert_refused(
            &jobs,
            &dir,
            name,
            "UserErrorDestructiveOperationNotAllowed",
            says,
        );
    }
    let plan = job_of(&jobs, "plan.rhai");
    assert_eq!(plan["properties"]["status"], "Completed", "{plan:#}");
    assert_eq!(
        plan["properties"]["extendedInfo"]["additionalDetails"]["ScriptOutput"], "2\n",
        "the dry run saw the two points a sweep in 2099 would delete"
    );
    assert_eq!(point_ids(&w, &instance), ids, "every recovery point kept");
    assert_eq!(protection_state(&w, &instance), "ProtectionConfigured");
    let deletions = w.json(&["job", "list", "--operation", "DeleteRecoveryPoint"]);
    assert_eq!(deletions.as_array().unwrap().len(), 0, "{deletions:#}");

    // A stopped instance resumed by a drop-in would let its points expire again.
    w.json(&[
        "backup-instance",
        "stop-protection",
        "--vault-name",
        "V",
        "--name",
        &instance,
    ]);
    drop_script(
        &dir,
        "resume.rhai",
        &format!(r#"vault("V").resume_protection("{instance}");"#),
    );
    let jobs = tick(&w, &dir, &[]);
    assert_refused(
        &jobs,
        &dir,
        "resume.rhai",
        "UserErrorDestructiveOperationNotAllowed",
        "resume_protection",
    );
    assert_eq!(protection_state(&w, &instance), "ProtectionStopped");
}

#[test]
fn drop_ins_cannot_make_vaults_or_restore_outside_what_the_host_allows() {
    let w = World::new();
    let (instance, ids) = vault_with_three_points(&w);
    let c = cluster();
    let dir = w.path("scripts");
    let allowed = w.path("restores");
    fs::create_dir_all(&allowed).unwrap();
    let outside = w.path("elsewhere");
    let sneaky_vault = w.path("sneaky-vault");
    let target_db = format!("sandbox_escape_{}", std::process::id());
    let escapes = [
        (
            "vault.rhai",
            format!(
                r#"new_vault("Sneaky", #{{ storage_url: "file://{}" }});"#,
                sneaky_vault.display()
            ),
            "new_vault is refused",
        ),
        (
            "files-outside.rhai",
            format!(
                r#"vault("V").restore_as_files("{instance}", #{{ recovery_point_id: "{}", target_directory: "{}" }});"#,
                ids[0],
                outside.display()
            ),
            "restore as files only into an allowed folder",
        ),
        (
            "files-climb.rhai",
            format!(
                r#"vault("V").restore_as_files("{instance}", #{{ recovery_point_id: "{}", target_directory: "{}/../elsewhere" }});"#,
                ids[0],
                allowed.display()
            ),
            "restore as files only into an allowed folder",
        ),
        (
            "server.rhai",
            format!(
                r#"vault("V").restore("{instance}", #{{ recovery_point_id: "{}",
                    target_database_url: "postgres://{}:{}/{target_db}", secret_store_uri: "{}" }});"#,
                ids[0],
                c.host(),
                c.port(),
                w.admin_secret("postgres")
            ),
            "restore only onto an allowed server",
        ),
    ];
    for (name, source, _) in &escapes {
        drop_script(&dir, name, source);
    }
    // What the host allows still works: a restore as files into the allowed folder.
    drop_script(
        &dir,
        "files-allowed.rhai",
        &format!(
            r#"let j = vault("V").restore_as_files("{instance}", #{{ recovery_point_id: "{}", target_directory: "{}/nightly", file_name: "db" }});
print(j.properties.status);"#,
            ids[0],
            allowed.display()
        ),
    );
    let jobs = tick(
        &w,
        &dir,
        &[
            "--script-restore-dir",
            allowed.to_str().unwrap(),
            // Another server only: the cluster's is not allowed.
            "--script-restore-server",
            "db2.example:5432",
        ],
    );
    for (name, _, says) in &escapes {
        assert_refused(&jobs, &dir, name, "UserError", says);
    }
    let ok = job_of(&jobs, "files-allowed.rhai");
    assert_eq!(ok["properties"]["status"], "Completed", "{ok:#}");
    assert!(allowed.join("nightly/db.dump").is_file());

    assert!(!sneaky_vault.exists(), "no vault folder made");
    let vaults = w.json(&["backup-vault", "list"]);
    assert!(
        !vaults.to_string().contains("Sneaky"),
        "no vault registered: {vaults}"
    );
    assert!(
        !outside.exists(),
        "nothing written outside the allowed folder"
    );
    let exists = c.psql(
        "postgres",
        &format!("SELECT count(*) FROM pg_database WHERE datname LIKE '%{target_db}%'"),
    );
    assert_eq!(
        exists.trim(),
        "0",
        "no database made on a server not allowed"
    );
    assert_eq!(point_ids(&w, &instance), ids);
}

#[test]
fn secrets_never_reach_a_log_or_the_job_history() {
    const SECRET: &str = "Sup3r-Secret-Pw-4711";
    let mut w = World::new();
    w.env.push((
        "PGVAULT_RESTORE_SECRET".into(),
        format!("User Id=restore_user;Password={SECRET};"),
    ));
    let dir = w.path("scripts");
    // Not allowed: refused, as any variable the host does not list.
    drop_script(
        &dir,
        "nosy.rhai",
        r#"print(env("PGVAULT_RESTORE_SECRET"));"#,
    );
    let jobs = tick(&w, &dir, &[]);
    assert_refused(
        &jobs,
        &dir,
        "nosy.rhai",
        "UserErrorScriptNotAllowed",
        "--script-env PGVAULT_RESTORE_SECRET",
    );
    // Allowed by a careless host: what the script prints or throws is redacted anyway.
    drop_script(
        &dir,
        "printing.rhai",
        r#"let s = env("PGVAULT_RESTORE_SECRET");
print(s);
print(`password: ${s.split("Password=")[1]}`);
debug(s);"#,
    );
    drop_script(
        &dir,
        "throwing.rhai",
        r#"throw env("PGVAULT_RESTORE_SECRET");"#,
    );
    let jobs = tick(&w, &dir, &["--script-env", "PGVAULT_RESTORE_SECRET"]);
    let printing = job_of(&jobs, "printing.rhai");
    assert_eq!(printing["properties"]["status"], "Completed");
    let output = printing["properties"]["extendedInfo"]["additionalDetails"]["ScriptOutput"]
        .as_str()
        .unwrap();
    assert!(
        output.starts_with("<redacted>\npassword: <redacted>"),
        "{output}"
    );
    let throwing = job_of(&jobs, "throwing.rhai");
    assert_eq!(throwing["properties"]["status"], "Failed");

    // Nowhere: not in a log, not in any job as the CLI shows it, not in the history's files.
    let mut places: Vec<(String, Vec<u8>)> = Vec::new();
    for sub in ["done", "failed"] {
        for entry in fs::read_dir(dir.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            places.push((path.display().to_string(), fs::read(&path).unwrap()));
        }
    }
    let all_jobs = w.run(&["job", "list"]);
    places.push(("job list".into(), all_jobs.stdout));
    for entry in fs::read_dir(w.path("home")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            places.push((path.display().to_string(), fs::read(&path).unwrap()));
        }
    }
    assert!(places.iter().any(|(p, _)| p.ends_with("printing.log")));
    for (place, bytes) in &places {
        let text = String::from_utf8_lossy(bytes);
        assert!(!text.contains(SECRET), "the secret is in {place}");
    }
}

/// A script that doubles a string: the process must survive it.
const DOUBLING: &str = "let s = \"xxxxxxxx\";\nloop { s += s; }\n";

#[test]
fn a_string_doubling_script_fails_cleanly_everywhere() {
    let w = World::new();
    // As a drop-in.
    let dir = w.path("scripts");
    drop_script(&dir, "double.rhai", DOUBLING);
    let jobs = tick(&w, &dir, &[]);
    let job = job_of(&jobs, "double.rhai");
    assert_eq!(job["properties"]["status"], "Failed");
    let error = &job["properties"]["errorDetails"][0];
    assert_eq!(error["code"], "ScriptLimitExceeded");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("a script may use strings of at most 1048576 bytes"),
        "{error}"
    );

    // As the operator's `pgvault run` (found: the process aborted, its job InProgress), and
    // with `--sandbox`.
    let script = w.write("double.rhai", DOUBLING);
    for flags in [&[][..], &["--sandbox"][..]] {
        let mut args = vec!["run"];
        args.extend_from_slice(flags);
        args.push(script.to_str().unwrap());
        let out = w.run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flags:?}: {stderr}");
        assert!(
            stderr.contains("a script may use strings of at most"),
            "{flags:?}: {stderr}"
        );
    }
    let runs = w.json(&["job", "list", "--operation", "ScriptRun"]);
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 3);
    assert!(
        runs.iter().all(|j| j["properties"]["status"] == "Failed"
            && j["properties"]["errorDetails"][0]["code"] == "ScriptLimitExceeded"),
        "{runs:#?}"
    );

    // In a running host: the job fails and the host carries on to a clean shutdown.
    let serve_dir = w.path("served");
    fs::create_dir_all(&serve_dir).unwrap();
    let mut child = w
        .command(&[
            "serve",
            "--scripts-dir",
            serve_dir.to_str().unwrap(),
            "--log-format",
            "json",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = {
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        rx
    };
    let mut seen = Vec::new();
    let mut wait_for = |needle: &str| loop {
        // The deadline only bounds a broken test; the wait ends on the line itself.
        match lines.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => {
                let found = line.contains(needle);
                seen.push(line);
                if found {
                    return;
                }
            }
            Err(_) => panic!("no log line with {needle:?}:\n{}", seen.join("\n")),
        }
    };
    wait_for("pgvault host started");
    // Written under a name the host ignores, then renamed: the host sees it whole.
    let tmp = serve_dir.join("double.rhai.tmp");
    fs::File::create(&tmp)
        .unwrap()
        .write_all(DOUBLING.as_bytes())
        .unwrap();
    fs::rename(&tmp, serve_dir.join("double.rhai")).unwrap();
    wait_for("ScriptLimitExceeded");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the host is still running"
    );
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "the host stopped cleanly: {status:?}");
    assert!(serve_dir.join("failed/double.log").is_file());
}

/// A server that asks whoever connects for their password in clear, as a hostile server
/// would, and keeps what it is sent. `stop` returns everything received.
struct PasswordTrap {
    port: u16,
    received: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PasswordTrap {
    fn start() -> Self {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = received.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                // The startup message: a length, then the protocol and user, database, ...
                let read_message = |stream: &mut std::net::TcpStream| -> Option<Vec<u8>> {
                    let mut len = [0u8; 4];
                    stream.read_exact(&mut len).ok()?;
                    let mut body = vec![0u8; (u32::from_be_bytes(len) as usize).saturating_sub(4)];
                    stream.read_exact(&mut body).ok()?;
                    Some(body)
                };
                let Some(mut startup) = read_message(&mut stream) else {
                    return; // the test's own wake-up connection: stop.
                };
                // An SSLRequest (80877103): "no TLS here", and the real startup follows.
                if startup == [4, 210, 22, 47] {
                    let _ = stream.write_all(b"N");
                    let Some(next) = read_message(&mut stream) else {
                        continue;
                    };
                    startup = next;
                }
                kept.lock().unwrap().extend_from_slice(&startup);
                // AuthenticationCleartextPassword, then whatever comes back.
                let _ = stream.write_all(b"R\0\0\0\x08\0\0\0\x03");
                let mut answer = [0u8; 512];
                if let Ok(n) = stream.read(&mut answer) {
                    kept.lock().unwrap().extend_from_slice(&answer[..n]);
                }
            }
        });
        PasswordTrap {
            port,
            received,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> Vec<u8> {
        // Wakes the accept loop with a connection that sends nothing.
        drop(std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap());
        self.thread.take().unwrap().join().unwrap();
        std::mem::take(&mut *self.received.lock().unwrap())
    }
}

/// A drop-in cannot send a secret to a server of its choosing: `protect` and
/// `server_databases` use a secret only with a server an instance already logs in to with it.
/// The same calls with the pairing the operator made still work.
#[test]
fn drop_ins_cannot_send_a_secret_to_another_server() {
    let w = World::new();
    let c = cluster();
    w.vault_with_policy("V");
    let db = sample_database("pairing", 10);
    let secret = w.admin_secret(&db);
    w.protect("V", &db, &secret);
    let trap = PasswordTrap::start();
    let dir = w.path("scripts");
    let args = |server: &str| {
        format!(
            r#"#{{ datasource_type: "AzureDatabaseForPostgreSQLFlexibleServer", datasource_id: "postgres://{server}/{db}",
                secret_store_type: "File", secret_store_uri: "{secret}" }}"#
        )
    };
    let trap_server = format!("127.0.0.1:{}", trap.port);
    let own_server = format!("{}:{}", c.host(), c.port());
    drop_script(
        &dir,
        "steal-list.rhai",
        &format!("server_databases({});", args(&trap_server)),
    );
    drop_script(
        &dir,
        "steal-protect.rhai",
        &format!(
            r#"let r = initialize_instance({});
r.properties.policyInfo.policyId = vault("V").policy("OssPolicy").id;
vault("V").protect(r);"#,
            args(&trap_server).replace(
                "secret_store_type",
                r#"policy_id: "OssPolicy", secret_store_type"#
            )
        ),
    );
    drop_script(
        &dir,
        "list-own.rhai",
        &format!(
            "print(server_databases({}).contains(\"{db}\"));",
            args(&own_server)
        ),
    );
    let jobs = tick(&w, &dir, &[]);
    let received = trap.stop();
    assert!(
        received.is_empty(),
        "the hostile server was sent: {:?}",
        String::from_utf8_lossy(&received)
    );
    for name in ["steal-list.rhai", "steal-protect.rhai"] {
        assert_refused(
            &jobs,
            &dir,
            name,
            "UserErrorScriptNotAllowed",
            "only with a server a backup instance already uses it with",
        );
    }
    let ok = job_of(&jobs, "list-own.rhai");
    assert_eq!(ok["properties"]["status"], "Completed", "{ok:#}");
    let instances = w.json(&["backup-instance", "list", "--vault-name", "V"]);
    assert_eq!(instances.as_array().unwrap().len(), 1, "{instances:#}");
}
