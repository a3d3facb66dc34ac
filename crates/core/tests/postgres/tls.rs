//! Connecting to a server with `ssl=on` and a certificate from a private CA, for `localhost`
//! only: each sslmode connects or fails as libpq's would.
//!
//! The server is a cluster of the test's own, started with the certificate, its key and
//! `ssl=on` in place ([`ClusterOptions`]); the shared cluster runs without TLS, as the
//! `connect` tests need. The certificates are made with the `openssl` CLI. Where it is not
//! installed the test cannot run, and it says so on the terminal even though the test
//! harness captures output, rather than passing quietly.

use std::io::{ErrorKind, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use pgvault_testkit::{ClusterOptions, TestCluster};

use crate::{ado_password, create_login_role, params, run_ok, session_uses_tls};

/// TLS material made with the openssl CLI: a CA, and a server certificate it signed for
/// `localhost` only, so connecting to 127.0.0.1 fails a host name check and connecting to
/// `localhost` passes it.
struct TlsFiles {
    /// Holds the CA's certificate, which clients name as their root certificate.
    _dir: tempfile::TempDir,
    ca_cert: PathBuf,
    server_cert: Vec<u8>,
    server_key: Vec<u8>,
}

impl TlsFiles {
    /// The CA and the server's certificate and key, or `None` when the openssl CLI is not
    /// installed. Any other failure of openssl fails the test.
    fn make() -> Option<TlsFiles> {
        match Command::new("openssl").arg("version").output() {
            Err(e) if e.kind() == ErrorKind::NotFound => return None,
            Err(e) => panic!("could not run openssl: {e}"),
            Ok(_) => {}
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let openssl = |args: &[&str]| {
            run_ok(
                Command::new("openssl").args(args).current_dir(root),
                &format!("openssl {args:?}"),
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.crt",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=pgvault test CA",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req"][..],
                &ec,
                &[
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                    "-subj",
                    "/CN=localhost",
                ],
            ]
            .concat(),
        );
        std::fs::write(
            root.join("server.ext"),
            "subjectAltName = DNS:localhost\nbasicConstraints = CA:FALSE\n\
             keyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        // The keys stay private to us while they exist here; the test kit writes the server's
        // copy with the mode PostgreSQL demands.
        for key in ["ca.key", "server.key"] {
            std::fs::set_permissions(root.join(key), std::fs::Permissions::from_mode(0o600))
                .unwrap();
        }
        let read = |name: &str| std::fs::read(root.join(name)).unwrap();
        Some(TlsFiles {
            ca_cert: root.join("ca.crt"),
            server_cert: read("server.crt"),
            server_key: read("server.key"),
            _dir: dir,
        })
    }
}

/// Says that the TLS test did not run, where a person will see it: straight to the process's
/// stderr, since `eprintln!` inside a test is captured and shown only if the test fails.
fn announce_skip() {
    let banner = "!".repeat(78);
    let _ = writeln!(
        std::io::stderr(),
        "\n{banner}\n\
         SKIPPED tls::tls_server: the `openssl` CLI is not installed, so no certificates could \
         be made\nand NO TLS connection was tested. Install openssl (Debian/Ubuntu: `apt-get \
         install openssl`)\nto run it.\n{banner}\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_server() {
    let Some(tls) = TlsFiles::make() else {
        announce_skip();
        return;
    };
    // Relative paths in these settings are taken relative to the data directory, where the
    // files go.
    let cluster = TestCluster::start_with(
        &ClusterOptions::new()
            .setting("ssl", "on")
            .setting("ssl_cert_file", "server.crt")
            .setting("ssl_key_file", "server.key")
            .file("server.crt", tls.server_cert.clone())
            .file("server.key", tls.server_key.clone()),
    );
    let database = cluster.create_database("tls");
    let user = create_login_role(&cluster, &database);
    let port = cluster.port();
    let ca = tls.ca_cert.display().to_string();
    let by_ip = format!("postgres://127.0.0.1:{port}/{database}");
    let by_name = format!("postgres://localhost:{port}/{database}");

    // (datasource, SSL Mode, root certificate, Ok(uses TLS) or Err(the reason given))
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, Result<bool, &'a str>);
    let wrong_name = "not valid for name \"127.0.0.1\"";
    let cases: &[Case<'_>] = &[
        (&by_ip, "Disable", None, Ok(false)),
        (&by_ip, "Allow", None, Ok(true)),
        (&by_ip, "Prefer", None, Ok(true)),
        // require: TLS, certificate not verified (the private CA is unknown to webpki).
        (&by_ip, "Require", None, Ok(true)),
        // A root certificate makes require verify the chain, as in libpq.
        (&by_ip, "Require", Some(&ca), Ok(true)),
        // verify-ca checks the chain, not the name (127.0.0.1 is not in the certificate).
        (&by_ip, "VerifyCA", Some(&ca), Ok(true)),
        // verify-full checks both.
        (&by_name, "VerifyFull", Some(&ca), Ok(true)),
        (&by_ip, "VerifyFull", Some(&ca), Err(wrong_name)),
        // Without the root certificate, the chain does not lead to a webpki root.
        (&by_name, "VerifyFull", None, Err("UnknownIssuer")),
        (&by_ip, "VerifyCA", None, Err("UnknownIssuer")),
    ];
    for (datasource, mode, root, expected) in cases {
        let mut secret = format!("User Id={user};Password={};Ssl Mode={mode}", ado_password());
        if let Some(root) = root {
            secret.push_str(&format!(";Root Certificate={root}"));
        }
        let what = format!("{datasource} {mode} root={root:?}");
        match (params(datasource, &secret).connect().await, expected) {
            (Ok(client), Ok(tls)) => {
                assert_eq!(session_uses_tls(&client).await, *tls, "{what}");
            }
            (Err(err), Err(reason)) => {
                assert_eq!(
                    err.code().as_str(),
                    "UserErrorDBServerUnreachable",
                    "{what}: {err}"
                );
                let msg = err.to_string();
                assert!(msg.contains("TLS") && msg.contains(reason), "{what}: {msg}");
                assert!(!msg.contains("s3cret"), "{msg}");
            }
            (Ok(_), Err(reason)) => panic!("{what}: connected, expected {reason}"),
            (Err(err), Ok(_)) => panic!("{what}: {err}"),
        }
    }

    // pg_dump's side: libpq takes the same sslmode and root certificate from the environment.
    let p = params(
        &by_ip,
        &format!(
            "User Id={user};Password={};Ssl Mode=VerifyCA;Root Certificate={ca}",
            ado_password()
        ),
    );
    let out = run_ok(
        Command::new(cluster.bindir().join("psql"))
            .env_clear()
            .envs(p.pg_env())
            .args([
                "-X",
                "-A",
                "-t",
                "-c",
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            ]),
        "psql",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "t");
}
