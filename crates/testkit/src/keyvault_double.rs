//! A test double of Azure Key Vault's secrets API and of Microsoft Entra's token endpoint, on
//! a loopback port. Key Vault and Entra have no emulator, so this is the one place pgvault's
//! Azure client meets "a server"; it is small, hand-written HTTP/1.1 (one request per
//! connection), and answers only with the documented shapes:
//!
//! - `POST /{tenant}/oauth2/v2.0/token` (client credentials): `{"token_type":"Bearer",
//!   "expires_in":3599,"access_token":..}` for the configured client id and secret, else 401
//!   `{"error":"invalid_client","error_description":"AADSTS7000215: .."}`.
//! - `GET /secrets/{name}[/{version}]?api-version=7.4`: without a bearer token, 401 with
//!   `WWW-Authenticate: Bearer authorization="{authority}/{tenant}",
//!   resource="https://vault.azure.net"` (the challenge); with a wrong token, 401; a forbidden
//!   name, 403 `{"error":{"code":"Forbidden",..}}`; an unknown one, 404 `SecretNotFound`; a
//!   name set to throttle, 429 with `Retry-After: 0` that many times; else 200 `{"value",
//!   "id","attributes"}` of the latest (or asked) version. [`KeyVaultDouble::set_secret`] adds
//!   a version, which is how a test rotates a secret.
//!
//! It is pointed at the way a sovereign-cloud user points pgvault: `AZURE_AUTHORITY_HOST` for
//! the token endpoint, and the vault's address in the secret URI. It counts every request, so
//! a test can show that nothing Azure was contacted.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

pub const TENANT_ID: &str = "00000000-0000-0000-0000-0000000000aa";
pub const CLIENT_ID: &str = "00000000-0000-0000-0000-0000000000bb";
pub const CLIENT_SECRET: &str = "double-client-secret-Zq8";

#[derive(Default)]
struct State {
    /// Versions of each secret, oldest first: (version id, value).
    secrets: HashMap<String, Vec<(String, String)>>,
    forbidden: HashSet<String>,
    throttle: HashMap<String, u32>,
    tokens: Vec<String>,
    requests: usize,
    token_requests: usize,
}

/// A running double. The server thread lives until the test process exits.
pub struct KeyVaultDouble {
    base: String,
    state: Arc<Mutex<State>>,
}

impl KeyVaultDouble {
    pub fn start() -> KeyVaultDouble {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let (s, b) = (state.clone(), base.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                // A broken connection is the client's business; the double goes on.
                let _ = serve(stream, &s, &b);
            }
        });
        KeyVaultDouble { base, state }
    }

    /// What `AZURE_AUTHORITY_HOST` should be set to.
    pub fn authority_host(&self) -> String {
        self.base.clone()
    }

    /// The secret URI a user would give as `--secret-store-uri`.
    pub fn secret_uri(&self, name: &str) -> String {
        format!("{}/secrets/{name}", self.base)
    }

    /// Adds a version of `name` (creating it), as `az keyvault secret set` does.
    pub fn set_secret(&self, name: &str, value: &str) {
        let mut st = self.state.lock().unwrap();
        let versions = st.secrets.entry(name.to_owned()).or_default();
        let version = format!("{:032x}", versions.len() + 1);
        versions.push((version, value.to_owned()));
    }

    /// The version id of the latest value of `name`.
    pub fn latest_version(&self, name: &str) -> String {
        let st = self.state.lock().unwrap();
        st.secrets[name].last().unwrap().0.clone()
    }

    /// Answers 403 for `name`, as a vault whose access policy lacks `get` does.
    pub fn forbid(&self, name: &str) {
        self.state.lock().unwrap().forbidden.insert(name.to_owned());
    }

    /// Answers 429 with `Retry-After: 0` the next `times` reads of `name`.
    pub fn throttle(&self, name: &str, times: u32) {
        self.state
            .lock()
            .unwrap()
            .throttle
            .insert(name.to_owned(), times);
    }

    /// Every request received, of any kind.
    pub fn requests(&self) -> usize {
        self.state.lock().unwrap().requests
    }

    /// Token requests received.
    pub fn token_requests(&self) -> usize {
        self.state.lock().unwrap().token_requests
    }
}

struct Answer {
    status: &'static str,
    headers: Vec<(String, String)>,
    body: String,
}

fn answer(status: &'static str, body: String) -> Answer {
    Answer {
        status,
        headers: Vec::new(),
        body,
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>, base: &str) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("").to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let body = String::from_utf8_lossy(&body).into_owned();

    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let a = {
        let mut st = state.lock().unwrap();
        st.requests += 1;
        if method == "POST" && path == format!("/{TENANT_ID}/oauth2/v2.0/token") {
            token(&mut st, &body)
        } else if method == "GET" && path.starts_with("/secrets/") {
            secret(&mut st, base, path, query, headers.get("authorization"))
        } else {
            answer("404 Not Found", String::new())
        }
    };
    let mut out = stream;
    let mut head = format!(
        "HTTP/1.1 {}\r\ncontent-type: application/json; charset=utf-8\r\n\
         content-length: {}\r\nconnection: close\r\n",
        a.status,
        a.body.len()
    );
    for (k, v) in &a.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    out.write_all(a.body.as_bytes())?;
    out.flush()
}

fn form_field<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    body.split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn token(st: &mut State, body: &str) -> Answer {
    st.token_requests += 1;
    let ok = form_field(body, "grant_type") == Some("client_credentials")
        && form_field(body, "client_id") == Some(CLIENT_ID)
        && form_field(body, "client_secret") == Some(CLIENT_SECRET)
        && form_field(body, "scope") == Some("https%3A%2F%2Fvault.azure.net%2F.default");
    if !ok {
        return answer(
            "401 Unauthorized",
            r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.\r\nTrace ID: 0","error_codes":[7000215]}"#.to_owned(),
        );
    }
    let token = format!("double-token-{}", st.tokens.len() + 1);
    st.tokens.push(token.clone());
    answer(
        "200 OK",
        format!(
            r#"{{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"{token}"}}"#
        ),
    )
}

fn kv_error(status: &'static str, code: &str, message: &str) -> Answer {
    answer(
        status,
        format!(r#"{{"error":{{"code":"{code}","message":"{message}"}}}}"#),
    )
}

fn secret(
    st: &mut State,
    base: &str,
    path: &str,
    query: &str,
    authorization: Option<&String>,
) -> Answer {
    if query != "api-version=7.4" {
        return kv_error(
            "400 Bad Request",
            "BadParameter",
            "The api-version is missing or not supported.",
        );
    }
    let token = authorization.and_then(|a| a.strip_prefix("Bearer "));
    match token {
        None => {
            let mut a = kv_error(
                "401 Unauthorized",
                "Unauthorized",
                "AKV10000: Request is missing a Bearer or PoP token.",
            );
            a.headers.push((
                "www-authenticate".into(),
                format!(
                    r#"Bearer authorization="{base}/{TENANT_ID}", resource="https://vault.azure.net""#
                ),
            ));
            return a;
        }
        Some(t) if !st.tokens.iter().any(|k| k == t) => {
            return kv_error(
                "401 Unauthorized",
                "Unauthorized",
                "AKV10032: Invalid issuer.",
            );
        }
        Some(_) => {}
    }
    let mut segments = path.trim_start_matches("/secrets/").split('/');
    let name = segments.next().unwrap_or("").to_owned();
    let version = segments.next().filter(|v| !v.is_empty());
    if st.forbidden.contains(&name) {
        return kv_error(
            "403 Forbidden",
            "Forbidden",
            "The user, group or application does not have secrets get permission on key vault.",
        );
    }
    if let Some(n) = st.throttle.get_mut(&name).filter(|n| **n > 0) {
        *n -= 1;
        let mut a = kv_error(
            "429 Too Many Requests",
            "Throttled",
            "Request was not processed because too many requests were received.",
        );
        a.headers.push(("retry-after".into(), "0".into()));
        return a;
    }
    let found = st.secrets.get(&name).and_then(|versions| match version {
        Some(v) => versions.iter().find(|(id, _)| id == v),
        None => versions.last(),
    });
    match found {
        Some((id, value)) => answer(
            "200 OK",
            format!(
                r#"{{"value":{},"id":"{base}/secrets/{name}/{id}","attributes":{{"enabled":true}}}}"#,
                json_string(value)
            ),
        ),
        None => kv_error(
            "404 Not Found",
            "SecretNotFound",
            &format!("A secret with (name/id) {name} was not found in this key vault."),
        ),
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
