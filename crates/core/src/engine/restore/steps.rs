//! The steps of a restore (validate, restore or write, apply owners, commit), told to a
//! [`RestoreSteps`] that the host records as the job's sub-tasks, and the [`Tracker`] that
//! finishes the step under way on every path.

use crate::engine::Error;

/// The steps of a restore, which the host records as its job's sub-tasks, as a backup's.
/// `Restore` (or `Write`) reads the vault and feeds pg_restore (or the file) at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RestoreStep {
    /// The request, the recovery point, the secret, the connection and the privileges (or the
    /// target folder or container).
    Validate,
    /// The staging database is created and pg_restore fills it from the vault.
    Restore,
    /// The file (or blob) is written from the vault, under a temporary name.
    Write,
    /// `--keep-owners`: owners and privileges are applied where the restoring user may.
    ApplyOwners,
    /// The staging database takes the target's name (the file its name, the blob is
    /// committed): the restore exists.
    Commit,
}

impl RestoreStep {
    /// The sub-task name, as Azure's `extendedInfo.subTasks` shows it.
    pub fn name(self) -> &'static str {
        match self {
            RestoreStep::Validate => "Validate",
            RestoreStep::Restore => "Restore",
            RestoreStep::Write => "Write",
            RestoreStep::ApplyOwners => "ApplyOwners",
            RestoreStep::Commit => "Commit",
        }
    }
}

/// Told when a restore's step starts and how it ended (as [`crate::engine::backup::Steps`]).
pub trait RestoreSteps: Send + Sync {
    fn started(&self, step: RestoreStep);
    fn finished(&self, step: RestoreStep, result: std::result::Result<String, String>);
}

/// For callers that record no steps.
#[derive(Debug, Clone, Copy)]
pub struct NoRestoreSteps;

impl RestoreSteps for NoRestoreSteps {
    fn started(&self, _: RestoreStep) {}
    fn finished(&self, _: RestoreStep, _: std::result::Result<String, String>) {}
}

/// The step under way, so that whichever way the restore returns, the step it was in is
/// finished: with its detail by [`Tracker::done`], or failed with the restore's error by
/// [`super::restore_with_steps`]. (A restore whose future is dropped leaves its step running; the
/// job that ends then ends it.)
pub(super) struct Tracker<'a> {
    pub(super) steps: &'a dyn RestoreSteps,
    pub(super) current: Option<RestoreStep>,
}

impl Tracker<'_> {
    pub(super) fn start(&mut self, step: RestoreStep) {
        self.done(String::new());
        self.steps.started(step);
        self.current = Some(step);
    }

    pub(super) fn done(&mut self, detail: String) {
        if let Some(step) = self.current.take() {
            self.steps.finished(step, Ok(detail));
        }
    }

    pub(super) fn failed(&mut self, error: &Error) {
        if let Some(step) = self.current.take() {
            self.steps.finished(step, Err(error.message.clone()));
        }
    }
}
