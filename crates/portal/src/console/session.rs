//! Console sessions: sign-in takes an API token and sets an `HttpOnly`, `SameSite=Strict`
//! cookie naming a session held in memory (a restart of the server signs everyone out). Each
//! session has its own anti-forgery token, which every form carries and every POST must send
//! back. A session ends at sign-out, after [`IDLE`] without a request, or as soon as its API
//! token is revoked (each request authenticates the token again).

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use chrono::{DateTime, TimeDelta, Utc};
use ring::rand::SecureRandom as _;

use pgvault_host::access::Caller;

/// The session cookie's name.
pub const COOKIE: &str = "pgvault_session";
/// How long a session lasts without a request.
pub const IDLE: TimeDelta = TimeDelta::hours(8);

#[derive(Debug, Clone)]
pub struct Session {
    /// The API token signed in with (kept in memory only, to check it is still valid).
    pub token: String,
    pub caller: Caller,
    /// The anti-forgery token the session's forms carry.
    pub csrf: String,
    last_seen: DateTime<Utc>,
}

#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

/// 32 random bytes, base64url: a session id or an anti-forgery token.
pub fn random_token() -> Option<String> {
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new session for `caller`; returns its id (the cookie's value).
    pub fn open(&self, token: &str, caller: Caller, now: DateTime<Utc>) -> Option<String> {
        let id = random_token()?;
        let csrf = random_token()?;
        let mut map = self.lock();
        map.retain(|_, s| now - s.last_seen < IDLE);
        map.insert(
            id.clone(),
            Session {
                token: token.to_owned(),
                caller,
                csrf,
                last_seen: now,
            },
        );
        Some(id)
    }

    /// The session `id` names, if it has not ended; marks it used at `now`.
    pub fn get(&self, id: &str, now: DateTime<Utc>) -> Option<Session> {
        let mut map = self.lock();
        let session = map.get_mut(id)?;
        if now - session.last_seen >= IDLE {
            map.remove(id);
            return None;
        }
        session.last_seen = now;
        Some(session.clone())
    }

    pub fn close(&self, id: &str) {
        self.lock().remove(id);
    }
}

/// The session id in a `Cookie` header.
pub fn cookie_value(header: &str) -> Option<&str> {
    header
        .split(';')
        .map(str::trim)
        .find_map(|pair| pair.strip_prefix(COOKIE)?.strip_prefix('='))
}

/// The `Set-Cookie` value of a new session (`Secure` when served over HTTPS).
pub fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict{}; Max-Age={}",
        if secure { "; Secure" } else { "" },
        IDLE.num_seconds()
    )
}

/// The `Set-Cookie` value that ends the session in the browser.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgvault_host::access::Role;

    fn caller() -> Caller {
        Caller {
            name: "ops".into(),
            role: Role::Operator,
        }
    }

    #[test]
    fn sessions_end_when_idle_or_closed() {
        let sessions = Sessions::default();
        let t0 = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let id = sessions.open("pgv_x", caller(), t0).unwrap();
        assert!(sessions.get(&id, t0 + TimeDelta::hours(7)).is_some());
        // Use keeps it alive.
        assert!(sessions.get(&id, t0 + TimeDelta::hours(14)).is_some());
        assert!(sessions.get(&id, t0 + TimeDelta::hours(23)).is_none());
        let id = sessions.open("pgv_x", caller(), t0).unwrap();
        sessions.close(&id);
        assert!(sessions.get(&id, t0).is_none());
        assert!(sessions.get("made-up", t0).is_none());
    }

    #[test]
    fn the_cookie_is_found_among_others_and_set_safely() {
        assert_eq!(cookie_value("a=1; pgvault_session=abc; b=2"), Some("abc"));
        assert_eq!(cookie_value("pgvault_sessionx=abc"), None);
        let set = set_cookie("abc", true);
        for part in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
            assert!(set.contains(part), "{set}");
        }
        assert!(!set_cookie("abc", false).contains("Secure"));
        assert!(
            same_secret("abc", "abc") && !same_secret("abc", "abd") && !same_secret("abc", "ab")
        );
    }
}
