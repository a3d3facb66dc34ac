//! The REST API's conformance test: Microsoft's Python SDK (azure-mgmt-dataprotection, installed
//! by tools/test.sh, found through PGVAULT_PYTHON) drives `pgvault serve` over HTTPS through the
//! portal walkthrough in tests/sdk/walkthrough.py: vault, policy with an archive rule and a tag,
//! protect a real database, adhoc backup, its job followed to Completed, recovery points, restore
//! into a new database, suspend/stop and resume. The SDK must read every answer, and every answer
//! must have the types the SDK declares. The restored database is then compared with its source.
//!
//! The server is the real binary with a private home and a self-signed certificate made here with
//! `openssl` (azure-core refuses to send a bearer token over plain http). The test waits on the
//! server's own "listening on" line, never on a timer.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::support::{World, cluster, plain_dump, sample_database};

/// The SDK's Python, from tools/test.sh; a clear failure (never a skip) when it is missing.
fn sdk_python() -> PathBuf {
    let python = std::env::var_os("PGVAULT_PYTHON").unwrap_or_else(|| {
        panic!(
            "PGVAULT_PYTHON is not set: this test runs Microsoft's Python SDK for the Data \
             Protection API. Run tools/test.sh (it installs azure-mgmt-dataprotection into \
             ~/.cache/pgvault/python and sets PGVAULT_PYTHON), or set PGVAULT_PYTHON to a Python \
             with azure-mgmt-dataprotection installed"
        )
    });
    let python = PathBuf::from(python);
    let probe = Command::new(&python)
        .args(["-c", "import azure.mgmt.dataprotection"])
        .output()
        .unwrap_or_else(|e| panic!("PGVAULT_PYTHON={} cannot be run: {e}", python.display()));
    assert!(
        probe.status.success(),
        "PGVAULT_PYTHON={} has no azure-mgmt-dataprotection (run tools/test.sh): {}",
        python.display(),
        String::from_utf8_lossy(&probe.stderr)
    );
    python
}

/// A self-signed certificate for 127.0.0.1 and localhost (rustls wants a v3 certificate with
/// subject alternative names, and a PKCS#8 key): (certificate, key), both PEM.
fn self_signed_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("tls-cert.pem"), dir.join("tls-key.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=pgvault sdk test"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap_or_else(|e| {
            panic!("the openssl command makes this test's TLS certificate and cannot be run ({e}); install it (sudo apt-get install openssl)")
        });
    assert!(
        out.status.success(),
        "openssl could not make a certificate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// `pgvault serve --listen`, killed when the test ends however it ends.
pub(crate) struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Server {
    /// Over HTTPS with `cert` and `key`.
    fn start(w: &World, cert: &Path, key: &Path) -> (Server, String) {
        let args = [
            "--tls-cert".as_ref(),
            cert.as_os_str(),
            "--tls-key".as_ref(),
            key.as_os_str(),
        ];
        Server::start_with(w, &args)
    }

    /// `pgvault serve --listen 127.0.0.1:0` with `args`; returns it and its base URL.
    pub(crate) fn start_with(w: &World, args: &[&std::ffi::OsStr]) -> (Server, String) {
        let mut child = w
            .command(&["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pgvault serve");
        // Read stderr as it comes, all along, so the server never blocks on a full pipe.
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child,
            lines,
            seen: Vec::new(),
        };
        let url = server.wait_for_address();
        (server, url)
    }

    /// The `http(s)://ADDR` of the server's "listening on" line. The deadline only bounds a
    /// broken test; the wait ends on the line itself.
    fn wait_for_address(&mut self) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(120)) {
                Ok(line) => {
                    let url = line
                        .find("listening on http")
                        .map(|at| &line[at + "listening on ".len()..])
                        .map(|rest| {
                            rest.chars()
                                .take_while(|c| c.is_ascii_alphanumeric() || ":/.[]-".contains(*c))
                                .collect::<String>()
                        });
                    self.seen.push(line);
                    if let Some(url) = url {
                        return url.trim_end_matches('/').to_owned();
                    }
                }
                Err(_) => panic!(
                    "pgvault serve printed no \"listening on http(s)://ADDR\" line; it said:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Everything the server has logged so far.
    pub(crate) fn log(&mut self) -> String {
        self.seen.extend(self.lines.try_iter());
        self.seen.join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Contributor API token, as `api-token create` prints it once (a bare line, or JSON with
/// `token`).
pub(crate) fn contributor_token(w: &World) -> String {
    let out = w.run(&[
        "api-token",
        "create",
        "--name",
        "sdk",
        "--role",
        "Contributor",
    ]);
    assert!(
        out.status.success(),
        "pgvault api-token create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    if let Ok(v) = serde_json::from_str::<Value>(&stdout)
        && let Some(token) = v["token"].as_str()
    {
        return token.to_owned();
    }
    stdout
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or_else(|| panic!("api-token create printed no token"))
        .to_owned()
}

#[test]
fn microsofts_python_sdk_drives_the_walkthrough_through_the_rest_api() {
    let python = sdk_python();
    let w = World::new();
    let c = cluster();
    let db = sample_database("sdk", 5_000);
    let target = format!("{db}_restored");
    let server_url = |database: &str| format!("postgres://{}:{}/{database}", c.host(), c.port());

    let template = w.json(&[
        "backup-policy",
        "get-default-policy-template",
        "--datasource-type",
        "AzureDatabaseForPostgreSQL",
    ]);
    let template = w.write("policy-template.json", &template.to_string());
    let source_secret = w.admin_secret(&db);
    let target_secret = w.admin_secret("postgres");
    let token = contributor_token(&w);
    let (cert, key) = self_signed_certificate(w.dir.path());
    let (mut server, base_url) = Server::start(&w, &cert, &key);

    let walkthrough = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/sdk/walkthrough.py"
    );
    let instance = format!("{db}-sdk");
    let out = Command::new(&python)
        .arg(walkthrough)
        .args(["--base-url", &base_url])
        .arg("--ca-file")
        .arg(&cert)
        .args(["--resource-group", "pgvault-sdk", "--vault", "SdkVault"])
        .args(["--policy", "SdkPolicy", "--tag", "Weekly"])
        .args(["--instance", &instance])
        .arg("--policy-template")
        .arg(&template)
        .args(["--datasource-url", &server_url(&db)])
        .args([
            "--secret-store-type",
            "File",
            "--secret-store-uri",
            &source_secret,
        ])
        .args(["--target-database-url", &server_url(&target)])
        .args(["--target-secret-store-type", "File"])
        .args(["--target-secret-store-uri", &target_secret])
        .env("PGVAULT_SDK_TOKEN", &token)
        .env_remove("REQUESTS_CA_BUNDLE")
        .output()
        .expect("run the walkthrough");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the SDK walkthrough failed:\n{stderr}\n--- pgvault serve said:\n{}",
        server.log()
    );
    assert!(
        !stdout.contains(&token) && !stderr.contains(&token),
        "the API token leaked into the walkthrough's output"
    );
    let done: Value = stdout
        .lines()
        .next_back()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("the walkthrough's last line is not JSON:\n{stdout}"));

    // The restore the SDK asked for made a new database with the source's content.
    assert_eq!(done["restoredDatabase"], target.as_str(), "{done:#}");
    assert_eq!(plain_dump(&target), plain_dump(&db));

    // What the API made is pgvault's own: the CLI sees the same jobs.
    let jobs = w.json(&["job", "list", "--vault-name", "SdkVault"]);
    let names: Vec<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|j| j["name"].as_str())
        .collect();
    for id in [&done["backupJobId"], &done["restoreJobId"]] {
        assert!(
            names.contains(&id.as_str().unwrap()),
            "job {id} is not in the CLI's job list {names:?}"
        );
    }
    // No secret reached the server's log.
    let log = server.log();
    assert!(
        (c.admin_password().is_empty() || !log.contains(c.admin_password()))
            && !log.contains(&token),
        "a secret reached the server's log:\n{log}"
    );
}
