//! Azurite, the Azure Storage emulator, for tests of vaults on Blob Storage.
//!
//! [`Azurite::start`] launches the blob service (`azurite-blob`) on a free port on 127.0.0.1
//! with a fresh data folder, and returns when it has said it is listening: Azurite prints
//! `... successfully listens on http://127.0.0.1:PORT` on stdout, so the kit reads its
//! output instead of polling the port. If it exits before that (another process took the
//! port between our probe and its bind), the start is retried on a new port.
//!
//! The program is `$PGVAULT_AZURITE_BIN`, set by `tools/test.sh` after it installs Azurite
//! with npm, else the same install's default place (`~/.cache/pgvault/azurite`), else
//! `azurite-blob` on `PATH`. When none exists the start panics saying to run `tools/test.sh`:
//! a test of Blob Storage never passes without Blob Storage.
//!
//! Clean-up is the PostgreSQL cluster's scheme (see the crate docs): a reaper `sh` blocked on
//! a pipe only this process holds kills Azurite and removes its folder when the pipe closes,
//! however this process ends. `Drop` closes the pipe and waits, so the port and folder are
//! gone when it returns.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};

use crate::{create_private_dir, free_port};

/// The environment variable naming the `azurite-blob` program.
pub const AZURITE_BIN_ENV: &str = "PGVAULT_AZURITE_BIN";

/// Azurite's well-known development account and key, published by Microsoft.
pub const DEV_ACCOUNT: &str = "devstoreaccount1";
pub const DEV_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A running Azurite blob service, stopped and its data deleted on drop.
pub struct Azurite {
    port: u16,
    https: bool,
    azurite: Child,
    reaper_stdin: Option<ChildStdin>,
    reaper: Child,
}

impl std::fmt::Debug for Azurite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Azurite").field("port", &self.port).finish()
    }
}

impl Azurite {
    /// Starts Azurite's blob service; panics with the reason if it cannot.
    pub fn start() -> Azurite {
        Self::try_start(false).unwrap_or_else(|message| panic!("{message}"))
    }

    /// Starts it over HTTPS with the test certificate in `fixtures/azurite-tls` (trust
    /// [`Azurite::ca_file`]) and with OAuth on: Azurite then also accepts Microsoft Entra
    /// bearer tokens, checking their audience, issuer and lifetime but not their signature
    /// (its `--oauth basic`), which it allows only over HTTPS.
    pub fn start_https() -> Azurite {
        Self::try_start(true).unwrap_or_else(|message| panic!("{message}"))
    }

    /// The CA certificate that signed the HTTPS certificate, for `SSL_CERT_FILE`.
    pub fn ca_file() -> PathBuf {
        tls_dir().join("ca.pem")
    }

    /// `http://127.0.0.1:PORT` (`https://` from [`Azurite::start_https`]), what
    /// `AZURITE_BLOB_STORAGE_URL` should say.
    pub fn blob_url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The account's endpoint (path-style, as Azurite serves it), what
    /// `AZURE_STORAGE_ENDPOINT` should say when Azurite stands in for a real account.
    pub fn account_endpoint(&self) -> String {
        format!("{}/{DEV_ACCOUNT}", self.blob_url())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The environment a `pgvault` process needs to use this Azurite as an `az://` store.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AZURE_STORAGE_USE_EMULATOR".into(), "true".into()),
            ("AZURITE_BLOB_STORAGE_URL".into(), self.blob_url()),
        ]
    }

    fn try_start(https: bool) -> Result<Azurite, String> {
        let program = find_program()?;
        let mut last = String::new();
        for _ in 0..crate::START_ATTEMPTS {
            let dir = create_private_dir()?;
            let port = free_port()?;
            let azurite = Command::new(&program)
                .args(["--blobHost", "127.0.0.1", "--blobPort"])
                .arg(port.to_string())
                .arg("--location")
                .arg(&dir)
                // No telemetry: tests must not talk to the internet.
                .args([
                    "--silent",
                    "--skipApiVersionCheck",
                    "--loose",
                    "--disableTelemetry",
                ])
                .args(if https {
                    let tls = tls_dir();
                    vec![
                        "--cert".into(),
                        tls.join("cert.pem").into_os_string(),
                        "--key".into(),
                        tls.join("key.pem").into_os_string(),
                        "--oauth".into(),
                        "basic".into(),
                    ]
                } else {
                    Vec::new()
                })
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("could not run {}: {e}", program.display()))?;
            // The reaper comes before waiting, so a panic from here on still cleans up.
            let mut reaper = Command::new("sh")
                .arg("-c")
                .arg("trap '' INT HUP\nread -r _\nkill \"$1\" 2>/dev/null\nrm -rf \"$2\"")
                .arg("pgvault-testkit-azurite-reaper")
                .arg(azurite.id().to_string())
                .arg(&dir)
                .current_dir("/")
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("could not start the clean-up process (sh): {e}"))?;
            let reaper_stdin = reaper.stdin.take();
            let mut handle = Azurite {
                port,
                https,
                azurite,
                reaper_stdin,
                reaper,
            };
            let stdout = handle.azurite.stdout.take().expect("stdout is piped");
            let mut seen = String::new();
            let mut lines = BufReader::new(stdout).lines();
            let ready = lines.by_ref().map_while(Result::ok).any(|line| {
                seen.push_str(&line);
                seen.push('\n');
                line.contains("successfully listen")
            });
            if ready {
                // Keep reading, so a later line never meets a closed pipe.
                std::thread::spawn(move || lines.for_each(drop));
                if let Some(stderr) = handle.azurite.stderr.take() {
                    std::thread::spawn(move || BufReader::new(stderr).lines().for_each(drop));
                }
                return Ok(handle);
            }
            let mut stderr = String::new();
            if let Some(mut e) = handle.azurite.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
            }
            last = format!("{seen}{stderr}");
            drop(handle);
        }
        Err(format!(
            "Azurite ({}) did not start after {} attempts; its last output:\n{last}",
            program.display(),
            crate::START_ATTEMPTS
        ))
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        drop(self.reaper_stdin.take());
        let _ = self.reaper.wait();
        let _ = self.azurite.wait();
    }
}

/// The test-only certificate and key (see the README beside them).
fn tls_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/azurite-tls")
}

fn find_program() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os(AZURITE_BIN_ENV).filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        return if bin.is_file() {
            Ok(bin)
        } else {
            Err(format!(
                "{AZURITE_BIN_ENV} names {}, which does not exist; run tools/test.sh to install Azurite",
                bin.display()
            ))
        };
    }
    if let Some(home) = std::env::var_os("HOME") {
        let cached =
            PathBuf::from(home).join(".cache/pgvault/azurite/node_modules/.bin/azurite-blob");
        if cached.is_file() {
            return Ok(cached);
        }
    }
    if let Some(found) = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("azurite-blob"))
            .find(|p| p.is_file())
    }) {
        return Ok(found);
    }
    Err(format!(
        "Azurite (the Azure Storage emulator) is not installed; run tools/test.sh, which installs it with npm, or set {AZURITE_BIN_ENV} to an azurite-blob program"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azurite_listens_until_dropped() {
        let azurite = Azurite::start();
        let addr = ("127.0.0.1", azurite.port());
        assert!(std::net::TcpStream::connect(addr).is_ok());
        drop(azurite);
        // Drop waits for the reaper and for Azurite itself, so the port is closed now.
        assert!(std::net::TcpStream::connect(addr).is_err());
    }
}
