//! A real browser for the console's tests: Debian's Chromium, headless, driven through
//! ChromeDriver with the W3C WebDriver protocol (installed by tools/test.sh).
//!
//! The client is a few calls of the protocol (new session, navigate, find, type, click, read,
//! screenshot) over HTTP/1.1 on loopback, written here rather than taken from a crate:
//! fantoccini, the maintained Rust client, brings the `webdriver` crate and with it ICU's
//! segmentation tables, a heavy build for eight requests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long finding an element waits for it to appear, in seconds.
const IMPLICIT_WAIT: u64 = 10;

/// A headless Chromium session, closed (and its driver stopped) when dropped.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    shots: PathBuf,
    _profile: tempfile::TempDir,
}

fn program(env: &str, default: &str) -> String {
    std::env::var(env).unwrap_or_else(|_| default.to_owned())
}

impl Browser {
    /// Starts ChromeDriver and a headless Chromium; screenshots go to `shots`.
    pub fn start(shots: &Path) -> Browser {
        let chromedriver = program("PGVAULT_CHROMEDRIVER", "/usr/bin/chromedriver");
        let chromium = program("PGVAULT_CHROMIUM", "/usr/bin/chromium");
        for p in [&chromedriver, &chromium] {
            assert!(
                Path::new(p).exists(),
                "{p} is missing: the console's browser test needs Debian's chromium and chromium-driver; run tools/test.sh (it installs them), or set PGVAULT_CHROMIUM and PGVAULT_CHROMEDRIVER"
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port for chromedriver");
        let mut driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {chromedriver}: {e}"));
        // Wait for its own "started successfully" line, not for a timer.
        let stdout = driver.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("started successfully") => break,
                Some(Ok(_)) => continue,
                _ => panic!("chromedriver stopped before it was ready"),
            }
        }
        std::thread::spawn(move || for _ in lines {});
        std::fs::create_dir_all(shots).unwrap();
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Browser {
            driver,
            port,
            session: String::new(),
            shots: shots.to_owned(),
            _profile: profile,
        };
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,1000",
            &format!("--user-data-dir={}", browser._profile.path().display()),
        ];
        let created = browser.call(
            "POST",
            "/session",
            Some(json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": chromium, "args": args},
            }}})),
        );
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {created}"))
            .to_owned();
        browser.implicit_wait(IMPLICIT_WAIT);
        browser
    }

    /// One WebDriver request; the answer's `value`.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.port)).expect("connect to chromedriver");
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        )
        .unwrap();
        // The answer's head, then exactly its body: chromedriver may keep the connection open.
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        let mut length = None;
        let mut chunked = false;
        loop {
            let mut line = String::new();
            reader
                .read_line(&mut line)
                .expect("read chromedriver's answer");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse::<usize>().ok();
            }
            chunked |= lower.starts_with("transfer-encoding:") && lower.contains("chunked");
            head.push_str(&line);
        }
        let payload = if let Some(n) = length {
            let mut body = vec![0; n];
            reader
                .read_exact(&mut body)
                .expect("read chromedriver's answer");
            String::from_utf8_lossy(&body).into_owned()
        } else if chunked {
            let mut rest = String::new();
            let mut payload = String::new();
            loop {
                let mut size = String::new();
                reader.read_line(&mut size).expect("read a chunk");
                let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                if n == 0 {
                    break;
                }
                let mut chunk = vec![0; n + 2];
                reader.read_exact(&mut chunk).expect("read a chunk");
                payload.push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
            rest.push_str(&payload);
            rest
        } else {
            let mut rest = String::new();
            reader
                .read_to_string(&mut rest)
                .expect("read chromedriver's answer");
            rest
        };
        let value: Value = serde_json::from_str(&payload).unwrap_or_else(|e| {
            panic!("chromedriver answered {method} {path} with no JSON ({e}): {head}")
        });
        if value["value"]["error"].is_string() {
            // What the page showed when it went wrong, for whoever reads the failure.
            if !path.ends_with("/screenshot") && !self.session.is_empty() {
                let shot = self.screenshot("failure");
                panic!(
                    "WebDriver {method} {path}: {} (the page is in {})",
                    value["value"]["message"],
                    shot.display()
                );
            }
            panic!("WebDriver {method} {path}: {}", value["value"]);
        }
        value["value"].clone()
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub fn go(&self, url: &str) {
        self.call(
            "POST",
            &self.session_path("/url"),
            Some(json!({"url": url})),
        );
    }

    pub fn url(&self) -> String {
        self.call("GET", &self.session_path("/url"), None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn find(&self, css: &str) -> String {
        let found = self.call(
            "POST",
            &self.session_path("/element"),
            Some(json!({"using": "css selector", "value": css})),
        );
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_owned()
    }

    /// Waits up to `seconds` for an element matching `css` (WebDriver's implicit wait: the
    /// driver looks again as the page changes or reloads itself), then returns its text.
    pub fn wait_for(&self, css: &str, seconds: u64) -> String {
        self.implicit_wait(seconds);
        let text = self.text(css);
        self.implicit_wait(IMPLICIT_WAIT);
        text
    }

    fn implicit_wait(&self, seconds: u64) {
        self.call(
            "POST",
            &self.session_path("/timeouts"),
            Some(json!({"implicit": seconds * 1000})),
        );
    }

    /// Whether an element matches `css` now.
    pub fn has(&self, css: &str) -> bool {
        let found = self.call(
            "POST",
            &self.session_path("/elements"),
            Some(json!({"using": "css selector", "value": css})),
        );
        found.as_array().is_some_and(|a| !a.is_empty())
    }

    /// Clears the field and types `text` into it.
    pub fn fill(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.call(
            "POST",
            &self.session_path(&format!("/element/{id}/clear")),
            Some(json!({})),
        );
        self.call(
            "POST",
            &self.session_path(&format!("/element/{id}/value")),
            Some(json!({"text": text})),
        );
    }

    pub fn click(&self, css: &str) {
        let id = self.find(css);
        self.call(
            "POST",
            &self.session_path(&format!("/element/{id}/click")),
            Some(json!({})),
        );
    }

    /// Clicks what submits a form or follows a link, and returns once the next page has
    /// replaced this one (its document element is a new one), so that what is read next is
    /// the new page's. Bounded so a page that never comes fails the test.
    pub fn click_and_load(&self, css: &str) {
        let before = self.find("html");
        self.click(css);
        for _ in 0..3000 {
            if self.find("html") != before {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("clicking {css} loaded no new page in 30 s");
    }

    /// The rendered text of the first element matching `css`.
    pub fn text(&self, css: &str) -> String {
        let id = self.find(css);
        self.call(
            "GET",
            &self.session_path(&format!("/element/{id}/text")),
            None,
        )
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Saves the page as `<name>.png` in the screenshot folder; returns its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.call("GET", &self.session_path("/screenshot"), None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap_or_default())
            .expect("a base64 screenshot");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = self.session_path("");
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.call("DELETE", &path, None)
            }));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
