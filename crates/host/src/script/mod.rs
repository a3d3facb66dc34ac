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
pub mod sandbox;
mod server;
mod vault;

pub use docs::scripting_markdown;
pub use interrupt::{CANCELLED, Interrupt};

use std::sync::Arc;

use rhai::{Dynamic, Engine, EvalAltResult, NativeCallContext, Position};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::service::Pgvault;
use pgvault_core::model::code::ErrorCode;
use sandbox::{Grants, Redactor};

/// The error code of a destructive call refused to a script (see
/// [`ScriptContext::check_destructive`]).
pub const DESTRUCTIVE_REFUSED: ErrorCode = ErrorCode::UserErrorDestructiveOperationNotAllowed;

/// What every binding needs: the service, a handle to block on async operations, and what
/// the script is allowed to do.
#[derive(Clone)]
pub struct ScriptContext {
    pub pgvault: Arc<Pgvault>,
    pub runtime: tokio::runtime::Handle,
    /// `None` for the operator's own tools (`pgvault run`, the REPL), which may do anything;
    /// the [`Grants`] of a sandboxed script (a drop-in, `pgvault run --sandbox`) otherwise,
    /// because a file that lands in a folder is a weaker proof of intent than a command typed
    /// by hand.
    pub sandbox: Option<Arc<Grants>>,
    /// The secrets to keep out of what the script prints and of its error.
    pub redactor: Redactor,
}

impl ScriptContext {
    /// The operator's context: every call allowed.
    pub fn operator(pgvault: Arc<Pgvault>, runtime: tokio::runtime::Handle) -> Self {
        ScriptContext {
            pgvault,
            runtime,
            sandbox: None,
            redactor: Redactor::from_environment(),
        }
    }

    /// Refuses `function` unless this context may remove recovery points, shorten their
    /// life or stop backups; `what` says which it does.
    ///
    /// Every registered function, classified (keep this list when adding one):
    /// - guarded here: `delete_recovery_point`, `delete_backup_instance` (delete);
    ///   `suspend_backups`, `stop_protection` (stop backups); `resume_protection` of a
    ///   stopped instance (its points, kept forever while stopped, expire again);
    ///   `retention_sweep` with an `at` other than now unless `dry_run` (deletes what a
    ///   sweep now keeps).
    /// - refused to every sandboxed script: `new_vault` (a vault anywhere).
    /// - checked against the grants: `restore` (the server), `restore_as_files` (the
    ///   folder or container), `env` (the allowlist).
    /// - checked against the instances: `protect` and `server_databases` send a secret only
    ///   to a server an instance already uses it with ([`Self::check_secret_destination`]).
    /// - guarded here too: `rehydrate` of a point whose rehydrated copy would end sooner
    ///   than it does now.
    /// - adding only, never shortening: `create_policy` (a new policy; an existing name is
    ///   refused), `protect` (a new instance; an existing one is refused; its secret checked
    ///   as above), `adhoc_backup`,
    ///   `rehydrate` otherwise (a copy for 10 to 30 days). There is no binding that changes a
    ///   stored policy or an instance's policy.
    /// - reading or pure: `vault`, `vaults`, `policy`, `policies`, `instances`,
    ///   `recovery_points`, `verify`, `jobs`, `job`, `server_databases` (its secret checked as
    ///   above), `to_json`, `help`,
    ///   `initialize_instance`, `policy_template`, `schedule`, `set_trigger`, `lifecycle`,
    ///   `set_retention_rule`, `remove_retention_rule`, `tag_criteria`, `set_tag`,
    ///   `remove_tag`, `simulate` (the policy edits change a map, not a stored policy).
    pub fn check_destructive(&self, function: &str, what: &str) -> RhaiResult<()> {
        match &self.sandbox {
            Some(grants) if !grants.destructive => Err(coded(pgvault_core::engine::Error::new(
                DESTRUCTIVE_REFUSED,
                format!(
                    "{function} {what} and is refused to drop-in scripts; start the host with \
                     --allow-destructive-scripts to allow it"
                ),
            ))),
            _ => Ok(()),
        }
    }

    /// Refuses `new_vault` to a sandboxed script: a vault is storage at a path or URL the
    /// script would choose, which only the operator decides.
    pub fn check_new_vault(&self) -> RhaiResult<()> {
        self.check_grants(|_| {
            Err(pgvault_core::engine::Error::new(
                sandbox::SANDBOX_REFUSED,
                "new_vault is refused to drop-in scripts: a vault is created by the operator \
                 (pgvault backup-vault create, or pgvault run without --sandbox)",
            ))
        })
    }

    /// Refuses a sandboxed script's use of `secret` with a server no backup instance uses it
    /// with (`protect`, `server_databases`; see [`sandbox::check_secret_destination`]).
    pub fn check_secret_destination(
        &self,
        secret: &pgvault_core::secrets::SecretRef,
        target: &pgvault_core::postgres::connection::Datasource,
    ) -> RhaiResult<()> {
        if self.sandbox.is_none() {
            return Ok(());
        }
        let known = self
            .block_on(sandbox::secret_pairings(&self.pgvault))
            .map_err(coded)?;
        sandbox::check_secret_destination(&known, secret, target).map_err(coded)
    }

    /// Runs `check` against the grants of a sandboxed script; the operator's pass.
    pub fn check_grants(
        &self,
        check: impl FnOnce(&Grants) -> pgvault_core::engine::Result<()>,
    ) -> RhaiResult<()> {
        match &self.sandbox {
            Some(grants) => check(grants).map_err(coded),
            None => Ok(()),
        }
    }

    /// Waits for an operation. While an [`Interrupt`] watches this thread (the REPL's Ctrl-C),
    /// raising it drops the operation and returns `OperationCancelled` instead.
    pub fn block_on<T>(
        &self,
        f: impl std::future::Future<Output = pgvault_core::engine::Result<T>>,
    ) -> pgvault_core::engine::Result<T> {
        interrupt::block_on(&self.runtime, f)
    }

    /// Jobs as Azure's JSON, under their vaults' ids ([`Pgvault::jobs_json`]); an interrupted
    /// lookup shows them in the default resource group rather than not at all.
    pub fn jobs_json(&self, jobs: &[pgvault_core::model::job::Job]) -> Vec<serde_json::Value> {
        self.block_on(async { Ok(self.pgvault.jobs_json(jobs).await) })
            .unwrap_or_else(|_| {
                jobs.iter()
                    .map(|j| j.azure_json(self.pgvault.subscription_id(), &Default::default()))
                    .collect()
            })
    }
}

impl ScriptContext {
    /// What an operation that started `job` answers ([`Pgvault::operation_json`]), with the
    /// same fallback as [`ScriptContext::jobs_json`].
    pub fn operation_json(&self, job: &pgvault_core::model::job::Job) -> serde_json::Value {
        self.block_on(async { Ok(self.pgvault.operation_json(job).await) })
            .unwrap_or_else(|_| {
                job.operation_json(self.pgvault.subscription_id(), &Default::default())
            })
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
    let c = ctx.clone();
    engine.register_fn("env", move |name: &str| -> RhaiResult<Dynamic> {
        c.check_grants(|g| g.check_env(name))?;
        Ok(match std::env::var(name) {
            Ok(value) => {
                // A connection string is a secret whatever its variable is called.
                c.redactor.learn_if_credential(&value);
                Dynamic::from(value)
            }
            Err(_) => Dynamic::UNIT,
        })
    });
    engine.register_fn(
        "to_json",
        |call: NativeCallContext, v: Dynamic| -> RhaiResult<String> {
            bounded_json(&v, call.engine().max_string_size())
        },
    );
    // Last: help() describes every function registered before it.
    help::register(&mut engine);
    engine
}

/// `value` as pretty JSON, stopping with Rhai's "too large" error as soon as the text passes
/// `max` bytes (0: no limit), so that a small map of shared large strings cannot make a text
/// far larger than the script's strings may be.
pub fn bounded_json(value: &Dynamic, max: usize) -> RhaiResult<String> {
    struct Capped {
        buf: Vec<u8>,
        max: usize,
    }
    impl std::io::Write for Capped {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            if self.max != 0 && self.buf.len() + bytes.len() > self.max {
                return Err(std::io::Error::other("too large"));
            }
            self.buf.extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut out = Capped {
        buf: Vec::new(),
        max,
    };
    match serde_json::to_writer_pretty(&mut out, value) {
        Ok(()) => String::from_utf8(out.buf).map_err(|e| fail(format!("to_json: {e}"))),
        Err(e) if e.is_io() => {
            Err(EvalAltResult::ErrorDataTooLarge("Length of string".into(), Position::NONE).into())
        }
        Err(e) => Err(fail(format!("value is not valid: {e}"))),
    }
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
        let ctx = ScriptContext::operator(Arc::new(pgvault), runtime.handle().clone());
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

    /// A script for each custom type the API hands out, giving one value of it. A type
    /// registered without a line here fails `every_custom_type_prints_as_data`.
    const CUSTOM_TYPE_SAMPLES: &[(&str, &str)] = &[("Vault", r#"new_vault("Alpha")"#)];

    /// Rhai's own types: what it prints as data without help.
    const RHAI_TYPES: &[&str] = &[
        "",
        "()",
        "Dynamic",
        "string",
        "String",
        "ImmutableString",
        "&str",
        "i64",
        "INT",
        "f64",
        "FLOAT",
        "bool",
        "char",
        "array",
        "Array",
        "Vec",
        "map",
        "Map",
        "Blob",
        "FnPtr",
    ];

    /// Every custom type the API exposes (Rhai's metadata lists the registered ones, and any
    /// function returning a type outside Rhai's own must return one of them) has
    /// `to_string` and `to_debug`, Rhai's display hooks: without them a value prints as its
    /// Rust path (`[pgvault_host::script::vault::VaultRef]`). Each then prints as data alone,
    /// in an array, in a map and in an interpolated string.
    #[test]
    fn every_custom_type_prints_as_data() {
        let (mut engine, _dir, rt) = engine();
        let meta: serde_json::Value =
            serde_json::from_str(&engine.gen_fn_metadata_to_json(false).unwrap()).unwrap();
        let types: Vec<(String, String)> = meta["customTypes"]
            .as_array()
            .map(|types| {
                types
                    .iter()
                    .map(|t| {
                        let name = |k: &str| t[k].as_str().unwrap().to_owned();
                        (name("typeName"), name("displayName"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        assert!(!types.is_empty(), "no custom types in {meta}");
        let functions = meta["functions"].as_array().unwrap();
        // A type as the metadata spells it (`core::result::Result<alloc::string::String, ..>`,
        // `&mut Vault`): the success type, without `&mut`, by its last path segment.
        let base = |ty: &str| -> String {
            let mut ty = ty.trim().trim_start_matches("&mut ").trim();
            for result in ["core::result::Result<", "Result<"] {
                if let Some(inner) = ty.strip_prefix(result) {
                    let mut depth = 0;
                    let end = inner
                        .char_indices()
                        .find(|&(_, c)| {
                            match c {
                                '<' => depth += 1,
                                '>' => depth -= 1,
                                _ => {}
                            }
                            c == ',' && depth == 0
                        })
                        .map_or(inner.len(), |(i, _)| i);
                    ty = &inner[..end];
                }
            }
            let ty = ty.trim();
            if types.iter().any(|(path, _)| path == ty) {
                return ty.to_owned();
            }
            let outer = ty.split('<').next().unwrap_or(ty);
            outer.rsplit("::").next().unwrap_or(outer).to_owned()
        };
        let known = |ty: &str| {
            let ty = base(ty);
            RHAI_TYPES.contains(&ty.as_str())
                || types
                    .iter()
                    .any(|(path, shown)| &ty == path || &ty == shown)
        };
        for f in functions {
            let returns = f["returnType"].as_str().unwrap_or_default();
            assert!(
                known(returns),
                "{} returns {}, which is no registered custom type: register it with a name \
                 and display hooks",
                f["signature"],
                base(returns)
            );
        }
        for (path, shown) in &types {
            for hook in ["to_string", "to_debug"] {
                let found = functions.iter().any(|f| {
                    f["name"] == hook
                        && f["numParams"] == 1
                        && f["params"][0]["type"].as_str().is_some_and(|t| {
                            let t = base(t);
                            &t == path || &t == shown
                        })
                });
                assert!(
                    found,
                    "{shown} ({path}) has no {hook}: it would print as {path}"
                );
            }
        }

        let printed = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let sink = printed.clone();
        engine.on_print(move |text| sink.lock().unwrap().push(text.to_owned()));
        engine.on_debug(|_, _, _| {});
        for (path, shown) in &types {
            let sample = CUSTOM_TYPE_SAMPLES
                .iter()
                .find(|(name, _)| name == shown)
                .unwrap_or_else(|| panic!("add a sample script for {shown} to CUSTOM_TYPE_SAMPLES"))
                .1;
            let script = format!(
                "let x = {sample}; print(x); print([x]); print(#{{ x: x }}); print(`${{x}}`); \
                 to_debug(x)"
            );
            printed.lock().unwrap().clear();
            let debug = std::thread::scope(|s| {
                s.spawn(|| {
                    engine
                        .eval::<String>(&script)
                        .unwrap_or_else(|e| panic!("{script}: {e}"))
                })
                .join()
                .unwrap()
            });
            let lines = printed.lock().unwrap().clone();
            assert_eq!(lines.len(), 4, "{lines:?}");
            for text in lines.iter().chain([&debug]) {
                assert!(
                    !text.contains("::") && !text.contains(path.as_str()),
                    "{shown} printed as a type, not data: {text}"
                );
            }
            if shown == "Vault" {
                assert_eq!(
                    lines,
                    [
                        "Alpha",
                        r#"[vault("Alpha")]"#,
                        r#"#{"x": vault("Alpha")}"#,
                        "Alpha"
                    ]
                );
                assert_eq!(debug, r#"vault("Alpha")"#);
            }
        }
        drop(rt);
    }
}
