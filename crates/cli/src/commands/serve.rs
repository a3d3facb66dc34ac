//! `pgvault serve`: the long-running host (see `pgvault_host::serve`): scheduled backups,
//! the daily retention sweep and, with `--scripts-dir`, drop-in scripts, until SIGTERM or
//! Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::sync::mpsc;

use pgvault_host::dropin::DEFAULT_SETTLE;
use pgvault_host::serve::{Event, ScriptsOptions, ServeOptions, serve};

use super::{coded, open_service};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// At most this many jobs (backups, sweeps, scripts) at once; one backup per instance
    /// regardless.
    #[arg(long, default_value_t = 4)]
    max_concurrent_jobs: usize,
    /// On SIGTERM or Ctrl-C, how long running jobs may take (seconds) before they are
    /// cancelled (their jobs end Cancelled; a cancelled backup leaves no recovery point).
    #[arg(long, default_value_t = 60)]
    shutdown_grace: u64,
    /// The drop-in scripts folder: a `.rhai` file dropped here runs once (then moves to
    /// done/ or failed/ with a log); one with a `// schedule: R/...` header runs at each
    /// occurrence. Default: $PGVAULT_HOME/scripts.
    #[arg(long)]
    scripts_dir: Option<PathBuf>,
    #[command(flatten)]
    script_grants: super::run::ScriptGrantArgs,
    /// Finished jobs older than this (ISO 8601 duration) are pruned daily.
    #[arg(long, value_parser = super::job::parse_retention, default_value = "P365D")]
    keep_job_history: pgvault_model::duration::IsoDuration,
    /// A scheduled backup still missing this many minutes after its time raises the
    /// "Backup Overdue" alert.
    #[arg(long, default_value_t = 120)]
    overdue_grace_minutes: u32,
    #[command(flatten)]
    portal: PortalArgs,
}

/// The REST API's options.
#[derive(Args, Debug)]
pub struct PortalArgs {
    /// Also serve Azure's Data Protection REST API at this address (`127.0.0.1:8080`; port 0
    /// picks a free one). Requests need a bearer token from `pgvault api-token create`.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// HTTPS: the server's certificate chain (PEM). Needs --tls-key.
    #[arg(long, requires = "tls_key", requires = "listen")]
    tls_cert: Option<PathBuf>,
    /// HTTPS: the certificate's private key (PEM). Needs --tls-cert.
    #[arg(long, requires = "tls_cert", requires = "listen")]
    tls_key: Option<PathBuf>,
    /// Serve plain HTTP on an address other than loopback (tokens then cross the network in
    /// clear text: only behind a TLS proxy).
    #[arg(long, requires = "listen")]
    insecure_http: bool,
    /// The subscription id the REST API serves (a GUID; ids are
    /// `/subscriptions/<id>/resourceGroups/<group>/...`).
    /// Default: PGVAULT_SUBSCRIPTION_ID, else the all-zero GUID, as every command reads it.
    #[arg(long, value_parser = parse_subscription)]
    subscription_id: Option<pgvault_model::resource::SubscriptionId>,
}

/// A subscription id: a GUID, as Azure's.
fn parse_subscription(text: &str) -> Result<pgvault_model::resource::SubscriptionId, String> {
    pgvault_model::resource::SubscriptionId::parse(text).map_err(|e| e.to_string())
}

/// Binds the REST API's listener and reads its TLS identity, or says why not.
async fn bind_portal(
    args: &PortalArgs,
    svc: &Arc<pgvault_host::service::Pgvault>,
) -> anyhow::Result<
    Option<(
        tokio::net::TcpListener,
        Option<Arc<rustls::ServerConfig>>,
        axum::Router,
    )>,
> {
    let Some(addr) = args.listen else {
        return Ok(None);
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            Some(pgvault_portal::tls::config(cert, key).map_err(anyhow::Error::msg)?)
        }
        _ => None,
    };
    if tls.is_none() && !addr.ip().is_loopback() && !args.insecure_http {
        anyhow::bail!(
            "refusing to serve plain HTTP on {addr}, which is not a loopback address: API tokens would cross the network in clear text. Give --tls-cert and --tls-key, or --insecure-http behind a TLS proxy"
        );
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}; is another server using it?"))?;
    let bound = listener
        .local_addr()
        .context("reading the listening address")?;
    let portal = pgvault_portal::Portal::new(svc.clone(), tls.is_some(), bound);
    let scheme = if tls.is_some() { "https" } else { "http" };
    eprintln!("pgvault: REST API listening on {scheme}://{bound}");
    Ok(Some((
        listener,
        tls,
        pgvault_portal::router(Arc::new(portal)),
    )))
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let svc = Arc::new(match &args.portal.subscription_id {
        Some(subscription) => super::open_service_in(subscription.clone())?,
        None => open_service()?,
    });

    let (events, rx) = mpsc::channel(16);
    let scripts_dir = args
        .scripts_dir
        .unwrap_or_else(|| svc.home().dir().join("scripts"));
    std::fs::create_dir_all(&scripts_dir).with_context(|| {
        format!(
            "cannot create the scripts folder `{}`; choose another with --scripts-dir",
            scripts_dir.display()
        )
    })?;
    // Kept alive for as long as the host runs.
    let _watcher = watch(&scripts_dir, events.clone())?;
    let opts = ServeOptions {
        max_concurrent_jobs: args.max_concurrent_jobs.max(1),
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
        scripts: Some(ScriptsOptions {
            dir: scripts_dir,
            settle: DEFAULT_SETTLE,
            grants: args.script_grants.grants(),
        }),
        keep_job_history: args.keep_job_history,
        overdue_grace: chrono::TimeDelta::minutes(i64::from(args.overdue_grace_minutes)),
        ..ServeOptions::default()
    };
    let portal = bind_portal(&args.portal, &svc).await?;
    let signals = tokio::spawn(shutdown_on_signal(events.clone()));
    let (stop_portal, portal_stopped) = tokio::sync::oneshot::channel::<()>();
    let portal = portal.map(|(listener, tls, router)| {
        tokio::spawn(pgvault_portal::serve(listener, tls, router, async move {
            let _ = portal_stopped.await;
        }))
    });
    let clock = svc.clock();
    let summary = serve(svc, opts, clock, rx).await.map_err(coded)?;
    signals.abort();
    let _ = stop_portal.send(());
    if let Some(portal) = portal {
        match portal.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "the REST API server failed"),
            Err(e) => tracing::error!(error = %e, "the REST API server stopped on a panic"),
        }
    }
    tracing::info!(
        started = summary.started,
        cancelled = summary.cancelled,
        "host stopped"
    );
    Ok(ExitCode::SUCCESS)
}

/// Sends [`Event::ScriptsChanged`] when anything changes in the scripts folder (not its
/// done/ and failed/ subfolders, which the host itself writes).
fn watch(dir: &Path, events: mpsc::Sender<Event>) -> anyhow::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        match event {
            Ok(event) if changes_scripts(&event.kind) => {
                // A full channel already holds a wake-up; dropping this one loses nothing.
                let _ = events.try_send(Event::ScriptsChanged);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "watching the scripts folder"),
        }
    })
    .context("cannot watch the scripts folder")?;
    watcher
        .watch(dir, notify::RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch the scripts folder `{}`", dir.display()))?;
    Ok(watcher)
}

/// Whether a file event in the scripts folder may change what is there. Reads do not: the
/// host's own scan of the folder opens it, and inotify reports that as an access; waking the
/// host for it made the loop scan again at once, for ever (half a core on an idle host).
/// A file closed after writing (inotify's `IN_CLOSE_WRITE`, an access to notify) is a change.
fn changes_scripts(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    match kind {
        notify::EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        notify::EventKind::Access(_) => false,
        _ => true,
    }
}

/// Sends [`Event::Shutdown`] on the first SIGTERM or Ctrl-C (SIGINT).
async fn shutdown_on_signal(events: mpsc::Sender<Event>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; stop the host with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            let _ = events.send(Event::Shutdown).await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C: shutting down"),
    }
    let _ = events.send(Event::Shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RemoveKind};

    #[test]
    fn reading_the_scripts_folder_does_not_wake_the_host() {
        assert!(!changes_scripts(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!changes_scripts(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(changes_scripts(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(changes_scripts(&EventKind::Create(CreateKind::File)));
        assert!(changes_scripts(&EventKind::Modify(ModifyKind::Any)));
        assert!(changes_scripts(&EventKind::Remove(RemoveKind::File)));
        assert!(changes_scripts(&EventKind::Any));
    }
}
