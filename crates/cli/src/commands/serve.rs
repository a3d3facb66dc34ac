//! `pgvault serve`: the long-running host (see `pgvault_host::serve`): scheduled backups,
//! the daily retention sweep and, with `--scripts-dir`, drop-in scripts, until SIGTERM or
//! Ctrl-C.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::sync::mpsc;

use pgvault_host::serve::{Event, ServeOptions, SystemClock, serve};

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
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let svc = Arc::new(open_service()?);
    let (events, rx) = mpsc::channel(16);
    let opts = ServeOptions {
        max_concurrent_jobs: args.max_concurrent_jobs.max(1),
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
        ..ServeOptions::default()
    };
    let signals = tokio::spawn(shutdown_on_signal(events.clone()));
    let summary = serve(svc, opts, Arc::new(SystemClock), rx)
        .await
        .map_err(coded)?;
    signals.abort();
    tracing::info!(
        started = summary.started,
        cancelled = summary.cancelled,
        "host stopped"
    );
    Ok(ExitCode::SUCCESS)
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
