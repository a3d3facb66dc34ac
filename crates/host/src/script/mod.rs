//! The Rhai scripting API: one module per domain type, each with `register`, and one
//! [`new_engine`] shared by `pgvault run`, the tests and (later) the REPL, watcher and
//! scheduler.
//!
//! Scripts read like Azure's PowerShell walkthrough: `policy_template(..)`,
//! `vault.create_policy(..)`, `initialize_instance(#{..})`, `vault.protect(..)`,
//! `vault.adhoc_backup(..)`, `jobs(#{..})`. Values are Azure's JSON as Rhai maps, so what
//! a script prints is what the CLI prints.
//!
//! **API Boundary:** the function names and signatures registered here are the script
//! API; `tests` keeps a snapshot of them so every change shows in review.
//!
//! Rhai functions are synchronous; operations are async. Scripts therefore run on a
//! thread outside the async runtime (see [`run_script`]) and each call blocks on the
//! runtime's handle.

mod docs;
mod help;
mod instance;
mod interrupt;
mod job;
mod policy;
mod recovery;
mod server;
mod vault;

pub use docs::scripting_markdown;
pub use interrupt::{CANCELLED, Interrupt};

use std::sync::Arc;

use rhai::{Dynamic, Engine, EvalAltResult, Position};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::service::Pgvault;

/// The error code of a destructive call refused to a script (see
/// [`ScriptContext::allow_destructive`]).
pub const DESTRUCTIVE_REFUSED: &str = "UserErrorDestructiveOperationNotAllowed";

/// What every binding needs: the service, a handle to block on async operations, and what
/// the script is allowed to do.
#[derive(Clone)]
pub struct ScriptContext {
    pub pgvault: Arc<Pgvault>,
    pub runtime: tokio::runtime::Handle,
    /// Whether calls that delete backup data (`vault.delete_recovery_point`,
    /// `vault.delete_backup_instance`) may run. True for the operator's own tools (`pgvault
    /// run`, the REPL); false for drop-in scripts unless the host was started with
    /// `--allow-destructive-scripts`, because a file that lands in a folder is a weaker
    /// proof of intent than a command typed by hand.
    pub allow_destructive: bool,
}

impl ScriptContext {
    /// Refuses `function` (a destructive binding) unless this context allows it.
    pub fn check_destructive(&self, function: &str) -> RhaiResult<()> {
        if self.allow_destructive {
            return Ok(());
        }
        Err(coded(pgvault_core::engine::Error::new(
            DESTRUCTIVE_REFUSED,
            format!(
                "{function} deletes backup data and is refused to drop-in scripts; start the \
                 host with --allow-destructive-scripts to allow it"
            ),
        )))
    }

    /// Waits for an operation. While an [`Interrupt`] watches this thread (the REPL's Ctrl-C),
    /// raising it drops the operation and returns `OperationCancelled` instead.
    pub fn block_on<T>(
        &self,
        f: impl std::future::Future<Output = pgvault_core::engine::Result<T>>,
    ) -> pgvault_core::engine::Result<T> {
        interrupt::block_on(&self.runtime, f)
    }
}

pub type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// An engine error from a pgvault error, keeping the Azure code in the text.
pub fn fail(e: impl std::fmt::Display) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(e.to_string().into(), Position::NONE).into()
}

pub fn coded(e: pgvault_core::engine::Error) -> Box<EvalAltResult> {
    fail(format!("{}: {}", e.code, e.message))
}

pub fn to_dynamic<T: Serialize>(v: &T) -> RhaiResult<Dynamic> {
    rhai::serde::to_dynamic(v)
}

pub fn from_dynamic<T: DeserializeOwned>(what: &str, v: &Dynamic) -> RhaiResult<T> {
    rhai::serde::from_dynamic(v).map_err(|e| fail(format!("{what} is not valid: {e}")))
}

/// An engine with pgvault's API registered.
pub fn new_engine(ctx: ScriptContext) -> Engine {
    let mut engine = Engine::new();
    engine.set_max_expr_depths(128, 64);
    vault::register(&mut engine, &ctx);
    policy::register(&mut engine, &ctx);
    instance::register(&mut engine, &ctx);
    job::register(&mut engine, &ctx);
    server::register(&mut engine, &ctx);
    recovery::register(&mut engine, &ctx);
    engine.register_fn("env", |name: &str| -> Dynamic {
        std::env::var(name)
            .map(Dynamic::from)
            .unwrap_or(Dynamic::UNIT)
    });
    engine.register_fn("to_json", |v: Dynamic| -> RhaiResult<String> {
        let value: serde_json::Value = from_dynamic("value", &v)?;
        Ok(serde_json::to_string_pretty(&value).expect("JSON value serializes"))
    });
    // Last: help() describes every function registered before it.
    help::register(&mut engine);
    engine
}

/// A script error as `file:line:column: message`.
pub fn describe_error(file: &str, err: &EvalAltResult) -> String {
    let pos = err.position();
    let mut inner = err;
    // Errors inside functions are wrapped; the innermost names the real failure.
    while let EvalAltResult::ErrorInFunctionCall(_, _, e, _) = inner {
        inner = e;
    }
    let msg = match inner {
        EvalAltResult::ErrorRuntime(v, _) => v.to_string(),
        other => other.to_string(),
    };
    let msg = msg.split(" (line ").next().unwrap_or(&msg).to_string();
    match (pos.line(), pos.position()) {
        (Some(l), Some(c)) => format!("{file}:{l}:{c}: {msg}"),
        (Some(l), None) => format!("{file}:{l}: {msg}"),
        _ => format!("{file}: {msg}"),
    }
}

/// Runs a script file to completion on a thread of its own (so bindings may block on
/// the runtime), returning the error text as `file:line:col: message`.
pub async fn run_script(ctx: ScriptContext, path: std::path::PathBuf) -> Result<(), String> {
    let name = path.display().to_string();
    let source = pgvault_core::limits::read_text(&path, "script", crate::dropin::MAX_SCRIPT_BYTES)
        .map_err(|e| e.to_string())?;
    tokio::task::spawn_blocking(move || {
        let engine = new_engine(ctx);
        engine.run(&source).map_err(|e| describe_error(&name, &e))
    })
    .await
    .map_err(|e| format!("{}: the script's thread stopped: {e}", path.display()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> (Engine, tempfile::TempDir, tokio::runtime::Runtime) {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let pgvault = Pgvault::open(pgvault_core::engine::home::Home::at(dir.path())).unwrap();
        let ctx = ScriptContext {
            pgvault: Arc::new(pgvault),
            runtime: runtime.handle().clone(),
            allow_destructive: true,
        };
        (new_engine(ctx), dir, runtime)
    }

    /// The script API is an API boundary: its signatures are kept in `api.txt`, so any
    /// change shows in review. Regenerate with `PGVAULT_UPDATE_SNAPSHOTS=1 cargo test`.
    #[test]
    fn script_api_signatures_match_the_snapshot() {
        let (engine, _dir, _rt) = engine();
        // Rust's type paths say nothing a script writer needs: show Rhai's names.
        let readable = |sig: String| {
            let mut s = sig
                .replace(
                    "alloc::boxed::Box<rhai::types::error::EvalAltResult>",
                    "Error",
                )
                .replace("rhai::types::dynamic::Dynamic", "Dynamic")
                .replace("types::dynamic::Dynamic", "Dynamic")
                .replace("alloc::vec::Vec<Dynamic>", "array")
                .replace("alloc::string::String", "string")
                .replace("pgvault_host::script::vault::VaultRef", "Vault");
            if let Some(i) = s.find("core::result::Result<") {
                let inner = &s[i + "core::result::Result<".len()..s.len() - ",Error>".len()];
                s = format!("{}{inner}", &s[..i]);
            }
            s
        };
        let mut sigs: Vec<String> = engine
            .gen_fn_signatures(false)
            .into_iter()
            .map(readable)
            .collect();
        sigs.sort();
        let actual = sigs.join("\n") + "\n";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/script/api.txt");
        if std::env::var_os("PGVAULT_UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(path, &actual).unwrap();
        }
        let expected = std::fs::read_to_string(path).unwrap_or_default();
        assert_eq!(
            actual, expected,
            "the Rhai API changed; review it and regenerate api.txt"
        );
    }

    /// Every script shipped in `scripts/` parses with the real engine (the end-to-end tests
    /// run them against PostgreSQL; this catches a slip, such as a reserved word used as a
    /// name, without one).
    #[test]
    fn every_shipped_script_compiles() {
        let (engine, _dir, _rt) = engine();
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rhai") {
                let source = std::fs::read_to_string(&path).unwrap();
                if let Err(e) = engine.compile(&source) {
                    panic!("{}: {e}", path.display());
                }
                seen += 1;
            }
        }
        assert!(seen >= 5, "only {seen} scripts in {dir}");
    }

    /// Runs `script` on a fresh engine and compares its result (as JSON) or its error.
    fn check(script: &str, expected: &str) {
        let (engine, _dir, rt) = engine();
        let out = std::thread::scope(|s| {
            s.spawn(|| match engine.eval::<Dynamic>(script) {
                Ok(v) => serde_json::to_string(
                    &rhai::serde::from_dynamic::<serde_json::Value>(&v).unwrap(),
                )
                .unwrap(),
                Err(e) => describe_error("t.rhai", &e),
            })
            .join()
            .unwrap()
        });
        drop(rt);
        assert!(
            out.contains(expected),
            "script:\n{script}\ngave: {out}\nexpected to contain: {expected}"
        );
    }

    #[test]
    fn scripts_see_azure_json_and_coded_errors() {
        check(
            r#"policy_template("AzureDatabaseForPostgreSQLFlexibleServer").policyRules[1].name"#,
            r#""Default""#,
        );
        check(r#"policy_template("NoSuchType")"#, "t.rhai:1:");
        check(r#"vault("Missing")"#, "UserErrorVaultNotFound");
        check(
            r#"let v = new_vault("V"); let p = policy_template("AzureDatabaseForPostgreSQL"); v.create_policy("P", p).name"#,
            r#""P""#,
        );
        check(
            r#"let v = new_vault("V"); let p = policy_template("AzureDatabaseForPostgreSQL"); v.create_policy("P", p); v.create_policy("P", p)"#,
            "UserErrorBMSUpdatePolicyNotSupported",
        );
        check(
            r#"initialize_instance(#{ datasource_type: "AzureDatabaseForPostgreSQLFlexibleServer", datasource_id: "postgres://db:5432/empdb11",
                 policy_id: "P", secret_store_type: "Environment", secret_store_uri: "env:X" }).properties.friendlyName"#,
            r#""db\\empdb11""#,
        );
        check(
            r#"server_databases(#{ datasource_type: "AzureDatabaseForPostgreSQLFlexibleServer",
                 datasource_id: "postgres://db:5432/postgres", secret_store_type: "Environment" })"#,
            "missing `secret_store_uri`",
        );
        check(
            r#"server_databases(#{ datasource_type: "AzureDatabaseForPostgreSQLFlexibleServer",
                 datasource_id: "postgres://db:5432/postgres", secret_store_type: "Environment",
                 secret_store_uri: "env:PGVAULT_SURELY_UNSET_VARIABLE" })"#,
            "UserErrorInvalidSecret",
        );
        check(r#"jobs(#{ colour: "red" })"#, "unknown job filter `colour`");
        check("jobs().len()", "0");
        check(
            r#"jobs(#{ status: "Failed", since: "P7D", limit: 5 }).len()"#,
            "0",
        );
        check(
            r#"jobs(#{ before: "2026-01-01", since: "2026-02-01" })"#,
            "is not before",
        );
        check(
            r#"new_vault("Beta"); new_vault("Alpha"); vaults().map(|v| v.name)"#,
            r#"["Alpha","Beta"]"#,
        );
        check(r#"env("PGVAULT_SURELY_UNSET_VARIABLE") == ()"#, "true");
    }
}
