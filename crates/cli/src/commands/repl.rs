//! `pgvault repl`: pgvault's script API one entry at a time, to explore a vault.
//!
//! The engine is `pgvault run`'s ([`new_engine`]), so what works here works in a runbook.
//! Each entry is compiled against the session's [`Scope`] (variables persist) and run
//! together with the functions of every earlier entry: the session keeps one AST of
//! function definitions and drops its statements after each run, so an entry's statements
//! run once and its functions stay callable.
//!
//! Entries are read with rustyline: history in `$PGVAULT_HOME/repl_history`, completion of
//! function, variable, vault, instance and policy names, and a continuation prompt while an
//! entry is incomplete, which Rhai's parser tells by failing at the very end of the input
//! (an open `{`, `(` or `[`, a backtick string, a trailing operator).
//!
//! The session runs on a blocking thread, because bindings block on the runtime. At the
//! prompt the terminal is in raw mode and Ctrl-C is a key: rustyline reports it and the
//! entry is dropped. While an entry runs, the terminal is back in cooked mode and Ctrl-C is
//! SIGINT, which a task turns into raising the session's [`Interrupt`]: a Rhai loop stops at
//! its next operation and an operation in progress is dropped (see
//! `pgvault_host::script::Interrupt`). The job the dropped operation had started is then
//! recorded as `Cancelled`, since the service never got to finish it.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::Args;
use rhai::{AST, Dynamic, Engine, EvalAltResult, LexError, ParseError, ParseErrorType, Scope};
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::FileHistory;
use rustyline::validate::Validator;
use rustyline::{CompletionType, Config, Editor, Helper};
use serde_json::Value;

use pgvault_host::history::current_owner;
use pgvault_host::script::{Interrupt, ScriptContext, describe_error, new_engine};
use pgvault_host::service::Pgvault;
use pgvault_model::job::{Job, JobFilter, JobOutcome, JobStatus};

use super::open_service;
use crate::output::{Format, render};
use pgvault_model::human;

const PROMPT: &str = "pgvault> ";
/// The prompt while an entry is incomplete.
const MORE: &str = "     ... ";
/// How often a running backup or restore reports its progress (the service refreshes a
/// job's byte counters at the same pace).
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

#[derive(Args, Debug)]
pub struct ReplArgs {}

pub async fn run(_args: ReplArgs) -> anyhow::Result<ExitCode> {
    // The REPL is the operator at the keyboard: destructive calls are theirs to make.
    let ctx = ScriptContext::operator(Arc::new(open_service()?), tokio::runtime::Handle::current());
    let interrupt = Interrupt::new();
    let on_sigint = raise_on_sigint(interrupt.clone())?;
    let session = tokio::task::spawn_blocking(move || Session::new(ctx, interrupt)?.run()).await;
    on_sigint.abort();
    session.context("the REPL's thread stopped")??;
    Ok(ExitCode::SUCCESS)
}

/// From here on SIGINT no longer ends the process: it raises `interrupt`. The handler is
/// installed before this returns, so no Ctrl-C after the first prompt can kill the REPL.
#[cfg(unix)]
fn raise_on_sigint(interrupt: Interrupt) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle Ctrl-C")?;
    Ok(tokio::spawn(async move {
        while sigint.recv().await.is_some() {
            interrupt.raise();
        }
    }))
}

#[cfg(not(unix))]
fn raise_on_sigint(interrupt: Interrupt) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    Ok(tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            interrupt.raise();
        }
    }))
}

struct Session {
    ctx: ScriptContext,
    engine: Engine,
    scope: Scope<'static>,
    /// Every function the entries so far defined (statements are cleared after each run).
    functions: AST,
    editor: Editor<Completion, FileHistory>,
    names: Arc<RwLock<Names>>,
    /// Whether a background refresh of instance and policy names is under way.
    refreshing: Arc<AtomicBool>,
    interrupt: Interrupt,
    history: PathBuf,
    history_failed: bool,
}

impl Session {
    fn new(ctx: ScriptContext, interrupt: Interrupt) -> anyhow::Result<Self> {
        let mut engine = new_engine(ctx.clone());
        interrupt.stop_loops(&mut engine);
        let config = Config::builder()
            .max_history_size(1000)?
            .history_ignore_dups(true)?
            .history_ignore_space(true)
            .auto_add_history(false)
            .completion_type(CompletionType::List)
            .build();
        let mut editor = Editor::with_config(config).context("cannot set up the terminal")?;
        let names = Arc::new(RwLock::new(Names::of_engine(&engine)));
        editor.set_helper(Some(Completion {
            names: names.clone(),
        }));
        let home = ctx.pgvault.home().dir().to_path_buf();
        std::fs::create_dir_all(&home)
            .with_context(|| format!("cannot create {}", home.display()))?;
        let history = home.join("repl_history");
        if history.exists()
            && let Err(e) = editor.load_history(&history)
        {
            eprintln!(
                "warning: the REPL history {} could not be read ({e}); starting without it",
                history.display()
            );
        }
        Ok(Session {
            ctx,
            engine,
            scope: Scope::new(),
            functions: AST::empty(),
            editor,
            names,
            refreshing: Arc::new(AtomicBool::new(false)),
            interrupt,
            history,
            history_failed: false,
        })
    }

    fn run(mut self) -> anyhow::Result<()> {
        let interactive = std::io::stdin().is_terminal();
        if interactive {
            println!(
                "pgvault {} REPL: the script API of `pgvault run`. help() lists it; Tab completes; \
                 Ctrl-C cancels; Ctrl-D exits.",
                env!("CARGO_PKG_VERSION")
            );
        }
        self.refresh_names();
        while let Some((text, parsed)) = self.read_entry()? {
            self.evaluate(&text, parsed);
            self.refresh_names();
        }
        if interactive {
            println!();
        }
        Ok(())
    }

    /// One entry, over as many lines as it takes to parse, or `None` at Ctrl-D.
    fn read_entry(&mut self) -> anyhow::Result<Option<(String, Result<AST, ParseError>)>> {
        let mut entry = String::new();
        loop {
            let prompt = if entry.is_empty() { PROMPT } else { MORE };
            match self.editor.readline(prompt) {
                Ok(line) => {
                    if !entry.is_empty() {
                        entry.push('\n');
                    }
                    entry.push_str(&line);
                    if entry.trim().is_empty() {
                        entry.clear();
                        continue;
                    }
                    let parsed = self.engine.compile_with_scope(&self.scope, &entry);
                    if let Err(e) = &parsed
                        && is_incomplete(&entry, e)
                    {
                        continue;
                    }
                    self.remember(&entry);
                    return Ok(Some((entry, parsed)));
                }
                // Ctrl-C at the prompt drops what was typed, continuation lines included.
                Err(ReadlineError::Interrupted) => entry.clear(),
                Err(ReadlineError::Eof) => return Ok(None),
                Err(e) => return Err(e).context("cannot read from the terminal"),
            }
        }
    }

    /// Adds an entry to the history file at once, so a session that is killed keeps it.
    fn remember(&mut self, entry: &str) {
        let saved = self
            .editor
            .add_history_entry(entry)
            .and_then(|_| self.editor.append_history(&self.history));
        if let Err(e) = saved
            && !self.history_failed
        {
            self.history_failed = true;
            eprintln!(
                "warning: cannot write the REPL history {}: {e}",
                self.history.display()
            );
        }
    }

    fn evaluate(&mut self, text: &str, parsed: Result<AST, ParseError>) {
        let ast = match parsed {
            Ok(ast) => ast,
            Err(e) => {
                eprintln!("{}", parse_error(&e));
                return;
            }
        };
        self.functions += ast;
        self.interrupt.clear();
        let progress = self
            .ctx
            .runtime
            .spawn(show_progress(self.ctx.pgvault.clone()));
        let result = self.interrupt.watch(|| {
            self.engine
                .eval_ast_with_scope::<Dynamic>(&mut self.scope, &self.functions)
        });
        progress.abort();
        self.functions.clear_statements();
        if self.interrupt.is_raised() {
            record_cancelled(&self.ctx.pgvault);
        }
        match result {
            Ok(value) => {
                if let Some(shown) = self.show(&value) {
                    println!("{shown}");
                }
            }
            Err(e) => eprintln!("{}", runtime_error(text, &e)),
        }
    }

    /// A value as a person reads it: nothing for `()`, strings as they are, maps and arrays
    /// as JSON (arrays of Azure resources, such as jobs or vaults, as a table), a vault as its
    /// resource; anything else as `print` shows it.
    fn show(&self, value: &Dynamic) -> Option<String> {
        if value.is_unit() {
            return None;
        }
        if value.is_string() {
            return Some(value.to_string());
        }
        if (value.is_map() || value.is_array() || is_pgvault_type(value))
            && let Some(json) = self.to_json(value)
        {
            return Some(show_json(&json));
        }
        Some(self.print_form(value))
    }

    /// `value` as JSON, a pgvault type (a Vault) as its `to_json` (its resource, as
    /// `$vault | fl` shows it in PowerShell), inside arrays and maps too; `None` when a part
    /// has no JSON (a function pointer, a vault that cannot be read).
    fn to_json(&self, value: &Dynamic) -> Option<Value> {
        if value.is_array() {
            let items = value.clone().into_array().ok()?;
            return items
                .iter()
                .map(|v| self.to_json(v))
                .collect::<Option<Vec<_>>>()
                .map(Value::Array);
        }
        if value.is_map() {
            let map = value.clone().try_cast::<rhai::Map>()?;
            return map
                .iter()
                .map(|(k, v)| Some((k.to_string(), self.to_json(v)?)))
                .collect::<Option<serde_json::Map<_, _>>>()
                .map(Value::Object);
        }
        if is_pgvault_type(value) {
            let text = self.call("to_json", value).ok()?;
            return serde_json::from_str(&text).ok();
        }
        rhai::serde::from_dynamic::<Value>(value).ok()
    }

    /// What `print(value)` shows: Rhai's `to_string`, which pgvault's types define.
    fn print_form(&self, value: &Dynamic) -> String {
        self.call("to_string", value)
            .unwrap_or_else(|_| value.to_string())
    }

    /// `function(value)` on the session's engine, outside the session's scope.
    fn call(&self, function: &str, value: &Dynamic) -> Result<String, Box<EvalAltResult>> {
        let mut scope = Scope::new();
        scope.push_dynamic("value", value.clone());
        self.engine
            .eval_with_scope::<String>(&mut scope, &format!("{function}(value)"))
    }

    /// Refreshes the names Tab completes: variables and functions defined so far and vault
    /// names (one small file) now; instance and policy names, which need every vault listed,
    /// in the background, so a slow store never delays the prompt.
    fn refresh_names(&self) {
        let mut defined: BTreeSet<String> =
            self.scope.iter_raw().map(|(n, ..)| n.to_string()).collect();
        defined.extend(self.functions.iter_functions().map(|f| f.name.to_string()));
        let vaults: BTreeSet<String> = self
            .ctx
            .pgvault
            .home()
            .registry()
            .map(|r| r.vaults.into_keys().collect())
            .unwrap_or_default();
        {
            let mut names = self.names.write().unwrap_or_else(PoisonError::into_inner);
            names.defined = defined;
            names.vaults = vaults.clone();
        }
        if self.refreshing.swap(true, Ordering::SeqCst) {
            return;
        }
        let (pgvault, names, refreshing) = (
            self.ctx.pgvault.clone(),
            self.names.clone(),
            self.refreshing.clone(),
        );
        self.ctx.runtime.spawn(async move {
            let (mut instances, mut policies) = (BTreeSet::new(), BTreeSet::new());
            for name in &vaults {
                let (vault_instances, vault_policies) = pgvault.resource_names(name).await;
                instances.extend(vault_instances);
                policies.extend(vault_policies);
            }
            let mut names = names.write().unwrap_or_else(PoisonError::into_inner);
            names.instances = instances;
            names.policies = policies;
            refreshing.store(false, Ordering::SeqCst);
        });
    }
}

/// Whether a parse error only says the input stopped early, so another line may complete
/// it: Rhai reports those at the end of the input.
fn is_incomplete(src: &str, err: &ParseError) -> bool {
    let pos = err.1;
    let (Some(line), Some(col)) = (pos.line(), pos.position()) else {
        return false;
    };
    if let ParseErrorType::BadInput(LexError::UnterminatedString) = &*err.0 {
        // Reported where the string starts. A backtick string may span lines; a quoted one
        // only continues after a backslash.
        let start = src
            .lines()
            .nth(line - 1)
            .and_then(|l| l.chars().nth(col - 1));
        return start == Some('`') || src.trim_end_matches([' ', '\t']).ends_with('\\');
    }
    let text = src.trim_end();
    let last_line = text.lines().count().max(1);
    let last_col = text.lines().last().map_or(0, |l| l.chars().count());
    (line, col) > (last_line, last_col)
}

fn parse_error(err: &ParseError) -> String {
    match (err.1.line(), err.1.position()) {
        (Some(l), Some(c)) => format!("{l}:{c}: {}", err.0),
        (Some(l), None) => format!("{l}: {}", err.0),
        _ => err.0.to_string(),
    }
}

/// `line:col: message`, as `pgvault run` prints it without the file; a pgvault error in a
/// one-line entry as just `CODE: message`.
fn runtime_error(entry: &str, err: &EvalAltResult) -> String {
    let mut inner = err;
    while let EvalAltResult::ErrorInFunctionCall(_, _, e, _) = inner {
        inner = e;
    }
    if let EvalAltResult::ErrorTerminated(..) = inner {
        return "cancelled (Ctrl-C)".to_string();
    }
    let described = describe_error("", err);
    let located = described
        .strip_prefix(':')
        .unwrap_or(&described)
        .trim_start();
    let message = located
        .trim_start_matches(|c: char| c.is_ascii_digit() || c == ':')
        .trim_start();
    if !entry.contains('\n') && has_code(message) {
        message.to_string()
    } else {
        located.to_string()
    }
}

/// Whether a message starts with an Azure-style code (`UserErrorVaultNotFound: ...`).
fn has_code(message: &str) -> bool {
    message.split_once(": ").is_some_and(|(code, _)| {
        code.len() > 1
            && code.starts_with(|c: char| c.is_ascii_uppercase())
            && code.chars().all(|c| c.is_ascii_alphanumeric())
    })
}

/// A value of a type pgvault registers (a Vault), whose Rust type name is a path.
fn is_pgvault_type(value: &Dynamic) -> bool {
    value.type_name().contains("::")
}

fn show_json(json: &Value) -> String {
    // An array of one kind of Azure resource (jobs, instances, recovery points) reads best
    // as the table `--output table` prints; anything else as indented JSON.
    if let Value::Array(items) = json
        && let Some(kind) = items.first().and_then(|i| i["type"].as_str())
        && items.iter().all(|i| i["type"].as_str() == Some(kind))
    {
        let table = render(json, Format::Table);
        if !table.starts_with('[') {
            return table;
        }
    }
    serde_json::to_string_pretty(json).expect("JSON values serialize")
}

/// Prints the progress of this process's running jobs on stderr every few seconds, until
/// aborted when the entry ends.
async fn show_progress(pgvault: Arc<Pgvault>) {
    let owner = current_owner();
    // Sampled a little after the service writes the counters, not in a race with it.
    let first = tokio::time::Instant::now() + PROGRESS_EVERY + PROGRESS_EVERY / 4;
    let mut tick = tokio::time::interval_at(first, PROGRESS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let Ok(running) = pgvault.jobs(&JobFilter::default().status(JobStatus::InProgress)) else {
            continue;
        };
        for job in running.iter().filter(|j| j.owner == owner) {
            eprintln!("{}", progress_line(job, Utc::now()));
        }
    }
}

/// `OnDemandBackup empdb11: 1.2 GiB read (96.0 MiB/s), 310.5 MiB stored, 13 s`, or
/// `ConfigureBackup empdb11: running, 4.0 s` before any data moved.
fn progress_line(job: &Job, now: DateTime<Utc>) -> String {
    let elapsed = job.state.elapsed(now).max(chrono::TimeDelta::zero());
    let seconds = elapsed.num_milliseconds() as f64 / 1000.0;
    let what = format!(
        "  {} {}",
        job.operation,
        job.datasource_name
            .as_deref()
            .or(job.backup_instance_name.as_deref())
            .unwrap_or(&job.vault_name)
    );
    if job.bytes_read == 0 && job.bytes_stored == 0 {
        return format!("{what}: running, {}", human::duration(elapsed));
    }
    // `as` saturates: a rate past u64 (it cannot be) would print as the largest size.
    let rate = if seconds > 0.0 {
        (job.bytes_read as f64 / seconds) as u64
    } else {
        0
    };
    format!(
        "{what}: {} read ({}/s), {} stored, {}",
        human::size(job.bytes_read),
        human::size(rate),
        human::size(job.bytes_stored),
        human::duration(elapsed),
    )
}

/// Finishes as `Cancelled` the jobs this process left running: an interrupted operation's
/// future was dropped, so the service never recorded its end. (The REPL runs one entry at a
/// time, so every running job of this process belongs to the interrupted entry.)
fn record_cancelled(pgvault: &Pgvault) {
    let owner = current_owner();
    let running = match pgvault.jobs(&JobFilter::default().status(JobStatus::InProgress)) {
        Ok(jobs) => jobs,
        Err(e) => {
            eprintln!("warning: cannot read the job history to record the cancellation: {e}");
            return;
        }
    };
    for job in running.into_iter().filter(|j| j.owner == owner) {
        match pgvault.history().finish(
            job.id,
            &JobOutcome::Cancelled,
            Utc::now(),
            job.bytes_read,
            job.bytes_stored,
        ) {
            Ok(_) => eprintln!("job {} ({}) cancelled", job.id, job.operation),
            Err(e) => eprintln!("warning: cannot record job {} as cancelled: {e}", job.id),
        }
    }
}

// ---- completion ----

/// What Tab completes.
#[derive(Debug, Default)]
struct Names {
    /// The engine's functions (pgvault's and Rhai's) and Rhai's keywords.
    builtins: BTreeSet<String>,
    /// Variables and functions the session defined.
    defined: BTreeSet<String>,
    vaults: BTreeSet<String>,
    instances: BTreeSet<String>,
    policies: BTreeSet<String>,
}

const KEYWORDS: &[&str] = &[
    "break", "catch", "const", "continue", "else", "false", "fn", "for", "if", "in", "let", "loop",
    "return", "switch", "throw", "true", "try", "while",
];

/// What `policy_template("` completes to.
const DATASOURCE_TYPES: &[&str] = &[
    "AzureDatabaseForPostgreSQL",
    "AzureDatabaseForPostgreSQLFlexibleServer",
];

impl Names {
    fn of_engine(engine: &Engine) -> Self {
        let mut builtins: BTreeSet<String> = engine
            .gen_fn_signatures(true)
            .iter()
            .filter_map(|sig| sig.split_once('(').map(|(name, _)| name))
            .map(|name| name.trim_start_matches("get$"))
            .filter(|name| is_identifier(name))
            .map(str::to_string)
            .collect();
        builtins.extend(KEYWORDS.iter().map(|k| k.to_string()));
        Names {
            builtins,
            ..Names::default()
        }
    }
}

fn is_identifier(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Completion at `pos` in `line`: a name inside a string (vault, instance, policy, closed
/// with the quote), or a function, variable or keyword otherwise. Returns where the
/// replaced text starts and the candidates.
fn complete(names: &Names, line: &str, pos: usize) -> (usize, Vec<Pair>) {
    let before = &line[..pos];
    match cursor_in(before) {
        Cursor::Comment => (pos, Vec::new()),
        Cursor::String { start, quote } => (start, complete_string(names, before, start, quote)),
        Cursor::Code => complete_code(names, before),
    }
}

/// A vault, instance or policy name (the kind the called function takes, when the string
/// is its first argument), closed with the quote.
fn complete_string(names: &Names, before: &str, start: usize, quote: char) -> Vec<Pair> {
    let prefix = &before[start..];
    let opening = &before[..start - quote.len_utf8()];
    let pool: Vec<&str> = match first_argument_of(opening) {
        Some("vault") => names.vaults.iter().map(String::as_str).collect(),
        Some("policy") => names.policies.iter().map(String::as_str).collect(),
        Some("adhoc_backup" | "recovery_points" | "restore" | "restore_as_files") => {
            names.instances.iter().map(String::as_str).collect()
        }
        Some("policy_template") => DATASOURCE_TYPES.to_vec(),
        _ => {
            let all: BTreeSet<&str> = (names.vaults.iter())
                .chain(&names.instances)
                .chain(&names.policies)
                .map(String::as_str)
                .collect();
            all.into_iter().collect()
        }
    };
    pool.into_iter()
        .filter(|n| n.starts_with(prefix))
        .map(|n| Pair {
            display: n.to_string(),
            replacement: format!("{n}{quote}"),
        })
        .collect()
}

/// A function, variable or keyword name.
fn complete_code(names: &Names, before: &str) -> (usize, Vec<Pair>) {
    let start = word_start(before);
    let prefix = &before[start..];
    if prefix.is_empty() || prefix.starts_with(|c: char| c.is_ascii_digit()) {
        return (before.len(), Vec::new());
    }
    let candidates: BTreeSet<&String> = names
        .builtins
        .iter()
        .chain(&names.defined)
        .filter(|n| n.starts_with(prefix))
        .collect();
    let candidates = candidates
        .into_iter()
        .map(|n| Pair {
            display: n.clone(),
            replacement: n.clone(),
        })
        .collect();
    (start, candidates)
}

/// Where the identifier that ends `text` starts.
fn word_start(text: &str) -> usize {
    text.char_indices()
        .rev()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
        .map_or(0, |(i, c)| i + c.len_utf8())
}

/// Where the cursor is, lexically.
#[derive(Debug, PartialEq, Eq)]
enum Cursor {
    Code,
    /// Inside a string literal whose content starts at `start`.
    String {
        start: usize,
        quote: char,
    },
    /// In a `//` comment, or a character literal: nothing to complete.
    Comment,
}

/// Where the end of `text` is: in code, in a string (`"`, or a backtick string) or in a
/// comment.
fn cursor_in(text: &str) -> Cursor {
    let mut open: Option<(usize, char)> = None;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match open {
            Some((_, quote)) => {
                if c == '\\' {
                    chars.next();
                } else if c == quote {
                    open = None;
                }
            }
            None => match c {
                '"' | '`' | '\'' => open = Some((i + 1, c)),
                '/' if chars.peek().is_some_and(|(_, n)| *n == '/') => return Cursor::Comment,
                _ => {}
            },
        }
    }
    match open {
        None => Cursor::Code,
        Some((_, '\'')) => Cursor::Comment,
        Some((start, quote)) => Cursor::String { start, quote },
    }
}

/// The function whose first argument starts at the end of `text` (`v.policy(` → `policy`).
fn first_argument_of(text: &str) -> Option<&str> {
    let text = text.trim_end().strip_suffix('(')?.trim_end();
    Some(&text[word_start(text)..]).filter(|name| !name.is_empty())
}

struct Completion {
    names: Arc<RwLock<Names>>,
}

impl Completer for Completion {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let names = self.names.read().unwrap_or_else(PoisonError::into_inner);
        Ok(complete(&names, line, pos))
    }
}

impl Hinter for Completion {
    type Hint = String;
}

impl Highlighter for Completion {}

impl Validator for Completion {}

impl Helper for Completion {}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        let set = |items: &[&str]| items.iter().map(|s| s.to_string()).collect();
        Names {
            builtins: set(&["policy_template", "policy", "policies", "print", "let"]),
            defined: set(&["pol"]),
            vaults: set(&["V1", "Vault2"]),
            instances: set(&["db-empdb11"]),
            policies: set(&["OssPolicy"]),
        }
    }

    fn completed(line: &str) -> Vec<String> {
        let (start, candidates) = complete(&names(), line, line.len());
        candidates
            .iter()
            .map(|c| format!("{}{}", &line[..start], c.replacement))
            .collect()
    }

    #[test]
    fn tab_completes_names_in_code_and_in_strings() {
        let cases: &[(&str, &[&str])] = &[
            ("policy_te", &["policy_template"]),
            (
                "let p = pol",
                &[
                    "let p = pol",
                    "let p = policies",
                    "let p = policy",
                    "let p = policy_template",
                ],
            ),
            ("v.polic", &["v.policies", "v.policy", "v.policy_template"]),
            (r#"vault("V"#, &[r#"vault("V1""#, r#"vault("Vault2""#]),
            (r#"vault("Va"#, &[r#"vault("Vault2""#]),
            (r#"v.policy("O"#, &[r#"v.policy("OssPolicy""#]),
            (r#"v.adhoc_backup(`d"#, &["v.adhoc_backup(`db-empdb11`"]),
            (
                r#"policy_template("AzureDatabaseForPostgreSQLF"#,
                &[r#"policy_template("AzureDatabaseForPostgreSQLFlexibleServer""#],
            ),
            (
                r#"print("x", ""#,
                &[
                    r#"print("x", "OssPolicy""#,
                    r#"print("x", "V1""#,
                    r#"print("x", "Vault2""#,
                    r#"print("x", "db-empdb11""#,
                ],
            ),
            (r#"vault("V1").na"#, &[]),
            ("12", &[]),
            ("x // pol", &[]),
            ("", &[]),
        ];
        for (line, expected) in cases {
            assert_eq!(&completed(line), expected, "completing {line:?}");
        }
    }

    #[test]
    fn entries_that_stop_early_ask_for_more() {
        let engine = Engine::new();
        let cases = [
            ("fn f(a) {", true),
            ("fn f(a) {\n  a * 2", true),
            ("fn f(a) {\n  a * 2\n}", false),
            ("let x = (1 +", true),
            ("let x = [1, 2", true),
            ("#{ a: 1", true),
            ("if x { 1 } else", true),
            ("let s = `two\nlines", true),
            ("let s = \"abc\\", true),
            ("let s = \"abc", false),
            ("foo(  ", true),
            ("1 )", false),
            ("let = 3", false),
            ("x +* 2", false),
        ];
        for (src, expected) in cases {
            let incomplete = match engine.compile(src) {
                Ok(_) => false,
                Err(e) => is_incomplete(src, &e),
            };
            assert_eq!(incomplete, expected, "{src:?}");
        }
    }

    #[test]
    fn errors_read_as_code_or_position() {
        let coded: Box<EvalAltResult> = EvalAltResult::ErrorRuntime(
            "UserErrorVaultNotFound: no vault named `X`".into(),
            rhai::Position::new(1, 1),
        )
        .into();
        assert_eq!(
            runtime_error(r#"vault("X")"#, &coded),
            "UserErrorVaultNotFound: no vault named `X`"
        );
        assert_eq!(
            runtime_error("let v =\n  vault(\"X\")", &coded),
            "1:1: UserErrorVaultNotFound: no vault named `X`"
        );
        let plain = Engine::new()
            .eval::<Dynamic>("let x = 1;\nx.nope()")
            .unwrap_err();
        assert!(
            runtime_error("x", &plain).starts_with("2:3: "),
            "{}",
            runtime_error("x", &plain)
        );
        let parse = Engine::new().compile("1 )").unwrap_err();
        assert!(
            parse_error(&parse).starts_with("1:3: "),
            "{}",
            parse_error(&parse)
        );
    }

    #[test]
    fn progress_reads_as_sizes_throughput_and_time() {
        use pgvault_model::job::{JobOwner, NewJob, Operation};
        let start: DateTime<Utc> = "2026-01-01T02:00:00Z".parse().unwrap();
        let mut new = NewJob::new(Operation::OnDemandBackup, "V", start, JobOwner::new(1, "h"));
        new.datasource_name = Some("empdb11".into());
        let mut job = Job::start(&new);
        let later = start + chrono::TimeDelta::seconds(94);
        assert_eq!(
            progress_line(&job, start + chrono::TimeDelta::seconds(4)),
            "  OnDemandBackup empdb11: running, 4.0 s"
        );
        job.bytes_read = 94 * 1024 * 1024;
        job.bytes_stored = 1536;
        assert_eq!(
            progress_line(&job, later),
            "  OnDemandBackup empdb11: 94.0 MiB read (1.0 MiB/s), 1.5 KiB stored, 1 min 34 s"
        );
    }

    #[test]
    fn job_arrays_show_as_a_table_and_other_values_as_json() {
        let job = serde_json::json!({"name": "j1", "type": "Microsoft.DataProtection/backupVaults/backupJobs",
            "properties": {"operation": "Backup", "pgvaultOperation": "OnDemandBackup", "status": "Completed", "duration": "PT1S"}});
        let table = show_json(&Value::Array(vec![job.clone()]));
        assert!(table.starts_with("Job"), "{table}");
        assert!(table.contains("OnDemandBackup"), "{table}");
        assert!(show_json(&job).starts_with("{\n"), "a single job is JSON");
        assert_eq!(show_json(&serde_json::json!([1, 2])), "[\n  1,\n  2\n]");
    }
}
