//! `pgvault run FILE`: a Rhai runbook against pgvault's API.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use pgvault_host::script::{ScriptContext, run_script};

use super::open_service;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The script to run.
    pub file: PathBuf,
}

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let ctx = ScriptContext {
        pgvault: Arc::new(open_service()?),
        runtime: tokio::runtime::Handle::current(),
        allow_destructive: true,
    };
    match run_script(ctx, args.file).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(msg) => {
            eprintln!("{msg}");
            Ok(ExitCode::FAILURE)
        }
    }
}
