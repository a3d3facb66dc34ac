//! Stopping a running evaluation (Ctrl-C in the REPL, a drop-in script's wall time, the
//! host shutting down) without stopping the process.
//!
//! An evaluation waits in two places, and an [`Interrupt`] reaches both. A Rhai loop is
//! stopped by the engine's progress callback ([`Interrupt::stop_loops`]), checked between
//! operations. An operation a binding waits for (a backup, a restore) goes through
//! [`super::ScriptContext::block_on`]; while an interrupt watches the thread
//! ([`Interrupt::watch`]), `block_on` races the operation against it and, when it is raised,
//! drops the operation's future and fails the call with `OperationCancelled`. Dropping is
//! what cancels: the backup writer's threads wind down when their queues close, and a
//! recovery point exists only once its manifest is written, so nothing partial becomes
//! visible.
//!
//! The interrupt reaches `block_on` through a thread-local rather than a field of
//! `ScriptContext` because an evaluation runs on one thread from start to end (bindings are
//! synchronous), and because every caller that builds a context (`run`, the scheduler, the
//! tests) then stays as it is: without a watching interrupt, `block_on` simply waits.

use std::cell::RefCell;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rhai::{Dynamic, Engine};
use tokio::sync::Notify;

use pgvault_core::engine::{Error, Result};
use pgvault_core::model::code::ErrorCode;

/// The error code of an operation stopped by an interrupt.
pub const CANCELLED: ErrorCode = ErrorCode::OperationCancelled;

thread_local! {
    static WATCHING: RefCell<Option<Interrupt>> = const { RefCell::new(None) };
}

/// Why an operation was cancelled when the raiser gave no reason: the REPL's Ctrl-C.
const DEFAULT_REASON: &str = "Ctrl-C";

/// A flag that asks the evaluation it watches to stop. Raised from anywhere (a signal
/// handler task, a deadline), it stays raised until cleared, so a script that catches the
/// cancelled call's error is still stopped at its next operation.
#[derive(Clone, Debug, Default)]
pub struct Interrupt(Arc<State>);

#[derive(Debug, Default)]
struct State {
    raised: AtomicBool,
    notify: Notify,
    /// What the cancelled operation's error says stopped it; the first reason given wins.
    reason: Mutex<Option<String>>,
}

impl Interrupt {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn raise(&self) {
        self.0.raised.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    /// Raises the interrupt, saying why in the error of the operation it cancels (`the
    /// script's wall time of 1h ran out`), unless another reason was given first.
    pub fn raise_because(&self, reason: impl Into<String>) {
        self.0
            .reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(|| reason.into());
        self.raise();
    }

    /// Why the interrupt was raised: the reason given to [`Self::raise_because`], or Ctrl-C.
    pub fn reason(&self) -> String {
        self.0
            .reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| DEFAULT_REASON.to_owned())
    }

    pub fn is_raised(&self) -> bool {
        self.0.raised.load(Ordering::SeqCst)
    }

    /// Lowers the flag and forgets the reason, before the next evaluation.
    pub fn clear(&self) {
        self.0.raised.store(false, Ordering::SeqCst);
        *self.0.reason.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Makes `engine` stop a running script (with `ErrorTerminated`) at its next operation
    /// once this interrupt is raised. This replaces any progress callback the engine had.
    pub fn stop_loops(&self, engine: &mut Engine) {
        let me = self.clone();
        engine.on_progress(move |_| me.is_raised().then_some(Dynamic::UNIT));
    }

    /// Runs `f` (an evaluation) with this interrupt watching every operation that
    /// [`super::ScriptContext::block_on`] waits for on this thread.
    pub fn watch<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Restore(Option<Interrupt>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let previous = self.0.take();
                WATCHING.with(|w| *w.borrow_mut() = previous);
            }
        }
        let previous = WATCHING.with(|w| w.borrow_mut().replace(self.clone()));
        let _restore = Restore(previous);
        f()
    }

    /// Resolves once the interrupt is raised (at once if it already is).
    pub async fn raised(&self) {
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            // Registered before the flag is read, so a raise in between is not missed.
            notified.as_mut().enable();
            if self.is_raised() {
                return;
            }
            notified.await;
        }
    }
}

/// `ScriptContext::block_on`: `f` to completion, or `OperationCancelled` as soon as the
/// interrupt watching this thread is raised (the future is dropped unfinished).
pub(super) fn block_on<T>(
    runtime: &tokio::runtime::Handle,
    f: impl Future<Output = Result<T>>,
) -> Result<T> {
    let Some(interrupt) = WATCHING.with(|w| w.borrow().clone()) else {
        return runtime.block_on(f);
    };
    runtime.block_on(async {
        tokio::select! {
            // Checked first: an interrupted evaluation starts no further operation.
            biased;
            () = interrupt.raised() => Err(Error::new(
                CANCELLED,
                format!("the operation was cancelled ({}) before it finished", interrupt.reason()),
            )),
            out = f => out,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn without_a_watching_interrupt_block_on_waits_for_the_result() {
        let rt = runtime();
        let raised = Interrupt::new();
        raised.raise();
        // Raised, but not watching this thread: no effect.
        assert_eq!(block_on(rt.handle(), async { Ok(7) }).unwrap(), 7);
        assert_eq!(
            raised
                .watch(|| Interrupt::new().watch(|| block_on(rt.handle(), async { Ok(8) })))
                .unwrap(),
            8,
            "the innermost watching interrupt counts"
        );
    }

    #[test]
    fn raising_drops_the_running_operation_and_fails_the_call() {
        let rt = runtime();
        let interrupt = Interrupt::new();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let dropped = Arc::new(AtomicBool::new(false));
        struct SetOnDrop(Arc<AtomicBool>);
        impl Drop for SetOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let raiser = {
            let interrupt = interrupt.clone();
            std::thread::spawn(move || {
                started_rx.recv().unwrap();
                interrupt.raise();
            })
        };
        let guard = SetOnDrop(dropped.clone());
        let out: Result<()> = interrupt.watch(|| {
            block_on(rt.handle(), async move {
                let _guard = guard;
                started_tx.send(()).unwrap();
                std::future::pending().await
            })
        });
        raiser.join().unwrap();
        assert_eq!(out.unwrap_err().code, CANCELLED);
        assert!(
            dropped.load(Ordering::SeqCst),
            "the operation's future was dropped"
        );
        // Still raised: the next operation of the same evaluation does not even start.
        let next: Result<i32> = interrupt.watch(|| block_on(rt.handle(), async { Ok(1) }));
        assert_eq!(next.unwrap_err().code, CANCELLED);
        interrupt.clear();
        assert_eq!(
            interrupt
                .watch(|| block_on(rt.handle(), async { Ok(2) }))
                .unwrap(),
            2
        );
    }

    #[test]
    fn the_cancelled_call_says_why_it_was_cancelled() {
        let rt = runtime();
        let ctrl_c = Interrupt::new();
        ctrl_c.raise();
        let err = ctrl_c
            .watch(|| block_on(rt.handle(), async { Ok(()) }))
            .unwrap_err();
        assert!(err.message.contains("(Ctrl-C)"), "{}", err.message);

        let deadline = Interrupt::new();
        deadline.raise_because("the script's wall time of 1s ran out");
        deadline.raise_because("the host is shutting down");
        let err = deadline
            .watch(|| block_on(rt.handle(), async { Ok(()) }))
            .unwrap_err();
        assert_eq!(err.code, CANCELLED);
        assert!(
            err.message
                .contains("(the script's wall time of 1s ran out)"),
            "the first reason given wins: {}",
            err.message
        );
        deadline.clear();
        deadline.raise();
        assert_eq!(deadline.reason(), "Ctrl-C", "clear forgets the reason");
    }

    #[test]
    fn raising_stops_a_rhai_loop() {
        let interrupt = Interrupt::new();
        let mut engine = Engine::new();
        interrupt.stop_loops(&mut engine);
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let started_tx = std::sync::Mutex::new(started_tx);
        engine.register_fn("started", move || {
            started_tx.lock().unwrap().send(()).unwrap();
        });
        let raiser = {
            let interrupt = interrupt.clone();
            std::thread::spawn(move || {
                started_rx.recv().unwrap();
                interrupt.raise();
            })
        };
        let err = engine.run("started(); loop { }").unwrap_err();
        raiser.join().unwrap();
        assert!(
            matches!(*err, rhai::EvalAltResult::ErrorTerminated(..)),
            "{err}"
        );
    }
}
