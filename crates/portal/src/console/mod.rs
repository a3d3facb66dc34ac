//! The web console: the Azure portal's flows against pgvault, served at `/` next to the REST
//! API. Pages are rendered on the server (maud: compile-time checked, escaped by default) from
//! the host's operations and queries, as the REST API's answers are; forms post back to the
//! server, so the console works without JavaScript and from the keyboard. Everything it needs
//! (the style sheet) is built into the binary.
//!
//! Every page but sign-in needs a session ([`session`]); every POST carries the session's
//! anti-forgery token; an action refused shows Azure's code and message, never a stack.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use crate::Portal;

mod center;
mod configure;
mod instance;
mod jobs;
mod policy;
mod restore;
pub mod session;

use session::Session;

/// The console's style sheet, in the binary.
const CSS: &str = include_str!("console.css");

/// The console's routes.
pub fn routes() -> Router<Arc<Portal>> {
    Router::new()
        .route("/", get(center::show))
        .route("/sign-in", get(sign_in_page).post(sign_in))
        .route("/sign-out", post(sign_out))
        .route("/configure", get(configure::show).post(configure::submit))
        .route("/policies", get(policy::list))
        .route("/policies/new", get(policy::new).post(policy::submit))
        .route("/policies/preview", post(policy::preview))
        .route("/vaults/{vault}/policies/{name}", get(policy::show))
        .route("/jobs", get(jobs::list))
        .route("/jobs/{id}", get(jobs::show))
        .route("/operations/{id}", get(jobs::operation))
        .route("/vaults/{vault}/instances/{instance}", get(instance::show))
        .route(
            "/vaults/{vault}/instances/{instance}/backup",
            post(instance::backup_now),
        )
        .route(
            "/vaults/{vault}/instances/{instance}/protection",
            post(instance::protection),
        )
        .route(
            "/vaults/{vault}/instances/{instance}/restore",
            get(restore::show).post(restore::submit),
        )
        .route("/console.css", get(css))
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

/// Why a request gets no page: no valid session (the browser goes to sign in), or a form
/// not sent by the session's page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    SignIn,
    Forgery,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::SignIn => Redirect::to("/sign-in").into_response(),
            Refused::Forgery => (
                StatusCode::FORBIDDEN,
                Html(
                    frame(
                        "Refused",
                        None,
                        problem(
                            "AntiForgeryTokenInvalid",
                            "The form was not sent by this console's page (its anti-forgery token does not match). Reload the page and try again.",
                        ),
                    )
                    .into_string(),
                ),
            )
                .into_response(),
        }
    }
}

/// The session of a signed-in request, as a handler's argument: a request without one is
/// answered by [`Refused`] (the browser goes to sign in) before the handler runs.
#[derive(Debug)]
pub(crate) struct SignedIn(pub Session);

impl axum::extract::FromRequestParts<Arc<Portal>> for SignedIn {
    type Rejection = Refused;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        portal: &Arc<Portal>,
    ) -> Result<Self, Self::Rejection> {
        signed_in(portal, &parts.headers).map(SignedIn)
    }
}

/// A signed-in request's session.
pub(crate) fn signed_in(portal: &Portal, headers: &HeaderMap) -> Result<Session, Refused> {
    let id = headers
        .get(header::COOKIE)
        .and_then(|c| c.to_str().ok())
        .and_then(session::cookie_value)
        .ok_or(Refused::SignIn)?;
    let session = portal
        .sessions
        .get(id, portal.svc.now())
        .ok_or(Refused::SignIn)?;
    // A revoked token ends its sessions at once.
    match portal.svc.authenticate(&session.token) {
        Ok(Some(_)) => Ok(session),
        _ => {
            portal.sessions.close(id);
            Err(Refused::SignIn)
        }
    }
}

/// A POST's session, once its anti-forgery token is the session's.
pub(crate) fn signed_in_post(
    portal: &Portal,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<Session, Refused> {
    let session = signed_in(portal, headers)?;
    if session::same_secret(&session.csrf, csrf) {
        Ok(session)
    } else {
        Err(Refused::Forgery)
    }
}

/// A page in the console's frame: the header with navigation and the signed-in token, the
/// content, and nothing else.
pub(crate) fn frame(title: &str, session: Option<&Session>, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · pgvault" }
                link rel="stylesheet" href="/console.css";
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "pgvault" }
                    @if let Some(s) = session {
                        nav aria-label="Main" {
                            a href="/" { "Backup center" }
                            a href="/configure" { "Configure backup" }
                            a href="/policies" { "Policies" }
                            a href="/jobs" { "Jobs" }
                        }
                        form.signout method="post" action="/sign-out" {
                            input type="hidden" name="csrf" value=(s.csrf);
                            span.who { (s.caller.name) " · " (s.caller.role.as_str()) }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main #main {
                    h1 { (title) }
                    (content)
                }
            }
        }
    }
}

/// Azure's code and message for a refused action, as the portal shows them.
pub(crate) fn problem(code: &str, message: &str) -> Markup {
    html! {
        div.problem role="alert" {
            strong { (code) } " " (message)
        }
    }
}

/// An error page for a failed read: its code and message, with the status the API would use.
pub(crate) fn error_page(session: &Session, e: pgvault_host::api::Error) -> Response {
    let status =
        StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        Html(
            frame(
                "Something went wrong",
                Some(session),
                problem(e.code.as_str(), &e.message),
            )
            .into_string(),
        ),
    )
        .into_response()
}

/// A status as a badge whose colour says how it went.
pub(crate) fn status_badge(status: &str) -> Markup {
    let class = match status {
        "Completed" | "Succeeded" | "ProtectionConfigured" => "ok",
        "Failed" | "ProtectionError" => "bad",
        "InProgress" | "ConfiguringProtection" => "busy",
        _ => "quiet",
    };
    html! { span class={"badge " (class)} { (status) } }
}

#[derive(Debug, Deserialize)]
pub(crate) struct SignIn {
    token: String,
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct Next {
    #[serde(default)]
    error: Option<String>,
}

async fn sign_in_page(Query(q): Query<Next>) -> Html<String> {
    Html(sign_in_form(q.error.as_deref()).into_string())
}

fn sign_in_form(error: Option<&str>) -> Markup {
    frame(
        "Sign in",
        None,
        html! {
            @if let Some(e) = error { (problem("InvalidAuthenticationToken", e)) }
            form.card method="post" action="/sign-in" {
                p { "Sign in with an API token (" code { "pgvault api-token create --name NAME --role Reader|Operator|Contributor" } ")." }
                label for="token" { "API token" }
                input #token type="password" name="token" autocomplete="off" required autofocus;
                button type="submit" { "Sign in" }
            }
        },
    )
}

async fn sign_in(State(portal): State<Arc<Portal>>, Form(form): Form<SignIn>) -> Response {
    let token = form.token.trim();
    let caller = match portal.svc.authenticate(token) {
        Ok(Some(caller)) => caller,
        Ok(None) => {
            return (
                StatusCode::UNAUTHORIZED,
                Html(
                    sign_in_form(Some("The token is unknown to this host or was revoked."))
                        .into_string(),
                ),
            )
                .into_response();
        }
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html(frame("Sign in", None, problem(e.code.as_str(), &e.message)).into_string()),
            )
                .into_response();
        }
    };
    let Some(id) = portal.sessions.open(token, caller, portal.svc.now()) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut response = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(&id, portal.tls)) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

#[derive(Debug, Deserialize)]
pub(crate) struct CsrfOnly {
    csrf: String,
}

async fn sign_out(
    State(portal): State<Arc<Portal>>,
    headers: HeaderMap,
    Form(form): Form<CsrfOnly>,
) -> Response {
    if let Err(r) = signed_in_post(&portal, &headers, &form.csrf) {
        return r.into_response();
    }
    if let Some(id) = headers
        .get(header::COOKIE)
        .and_then(|c| c.to_str().ok())
        .and_then(session::cookie_value)
    {
        portal.sessions.close(id);
    }
    let mut response = Redirect::to("/sign-in").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&session::clear_cookie()).unwrap_or(HeaderValue::from_static("")),
    );
    response
}

/// `Path` of a vault and an instance.
#[derive(Debug, Deserialize)]
pub(crate) struct InstancePath {
    vault: String,
    instance: String,
}

/// A path segment as it goes into a link.
pub(crate) fn seg(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, crate::api::SEGMENT).to_string()
}
