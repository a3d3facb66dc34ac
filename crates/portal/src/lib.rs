//! pgvault-portal: Azure's Data Protection REST API (and, with it, the web console) served by
//! `pgvault serve --listen`.
//!
//! The portal sits above the host, as the CLI does: every answer comes from the host's
//! operations (each a recorded job) and queries, never from the store or the engine. The
//! pieces:
//!
//! - [`route`] parses ARM's paths for `Microsoft.DataProtection` into what they name;
//! - [`arm`] is ARM's conventions: the error body with the HTTP status of each typed
//!   [`ErrorCode`](pgvault_model::code::ErrorCode), `api-version`, `nextLink` paging;
//! - [`api`] authenticates the bearer token, checks the role and answers;
//! - [`operations`] runs long-running operations (201/202 with `Azure-AsyncOperation`);
//! - [`tls`] serves HTTPS with rustls.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

use pgvault_host::service::Pgvault;

pub mod api;
pub mod arm;
pub mod console;
pub mod operations;
pub mod route;
pub mod tls;

pub use pgvault_model::resource::DEFAULT_SUBSCRIPTION_ID;

/// What the handlers share.
#[derive(Debug)]
pub struct Portal {
    pub svc: Arc<Pgvault>,
    /// The one subscription this host serves.
    pub subscription: String,
    pub ops: operations::Operations,
    /// Whether the server speaks HTTPS (for the URLs it gives back).
    pub tls: bool,
    /// The address it listens on (the URLs' host when a request names none).
    pub listen: String,
    /// The console's signed-in sessions.
    pub sessions: console::session::Sessions,
}

impl Portal {
    /// The portal of `svc`, serving the subscription of its home.
    pub fn new(svc: Arc<Pgvault>, tls: bool, listen: SocketAddr) -> Portal {
        Portal {
            subscription: svc.subscription_id().to_string(),
            svc,
            ops: operations::Operations::default(),
            tls,
            listen: listen.to_string(),
            sessions: console::session::Sessions::default(),
        }
    }
}

/// The portal's routes: the REST API under `/subscriptions/`, the console everywhere else.
pub fn router(portal: Arc<Portal>) -> Router {
    Router::new()
        .route("/subscriptions/{*rest}", axum::routing::any(api::handle))
        .route("/metrics", axum::routing::get(api::metrics))
        .merge(console::routes())
        .fallback(not_found)
        .with_state(portal)
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

async fn not_found() -> arm::ApiError {
    arm::ApiError::new(
        pgvault_model::code::ErrorCode::InvalidResourceType,
        "nothing is served at this path; the REST API is under /subscriptions/",
    )
}

/// Serves `router` on `listener` (over TLS when `tls` is given) until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match tls {
        None => {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(config) => tls::serve(listener, config, router, shutdown).await,
    }
}
