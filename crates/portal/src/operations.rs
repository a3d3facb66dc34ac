//! Long-running operations, as ARM runs them: a request that starts work answers 201 or 202
//! at once with `Azure-AsyncOperation` (the operation's status) and `Location` (its result),
//! and the work goes on in a task.
//!
//! An operation's id is the id of the job it starts (pre-assigned through
//! [`pgvault_host::on_behalf`]), so `properties.jobId` of its status names the job from the
//! first answer on, and an operation outlives a restart of the server: one not in memory any
//! more is found through its job. Two kinds:
//! - [`Ends::WhenJobStarts`]: a backup, restore or rehydration ends once its job is
//!   recorded, as Azure's do; the job says how the work went (follow it with `backupJobs`).
//! - [`Ends::WhenDone`]: protecting an instance or a validation ends with the work, and fails
//!   with its error.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

use pgvault_host::api::Result;
use pgvault_host::service::Pgvault;
use pgvault_host::{OnBehalf, on_behalf};
use pgvault_model::job::JobId;

use crate::arm::ApiError;

/// When an operation is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ends {
    WhenJobStarts,
    WhenDone,
}

#[derive(Debug, Clone)]
enum State {
    Running,
    Succeeded(Option<Value>),
    Failed(ApiError),
}

#[derive(Debug, Clone)]
struct Op {
    ends: Ends,
    start: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
    state: State,
}

/// What an operation's status answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    InProgress,
    Succeeded(Option<Value>),
    Failed(ApiError),
}

/// How long a finished operation stays in memory (its job, if any, stays in the history).
const KEEP_FINISHED: TimeDelta = TimeDelta::days(1);

/// The operations this server started.
#[derive(Debug, Clone, Default)]
pub struct Operations {
    ops: Arc<Mutex<HashMap<String, Op>>>,
}

impl Operations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Op>> {
        self.ops.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts `work` on behalf of `initiator` as an operation; returns its id (the id its job
    /// takes).
    pub fn start<F>(&self, svc: &Arc<Pgvault>, initiator: &str, ends: Ends, work: F) -> String
    where
        F: Future<Output = Result<Option<Value>>> + Send + 'static,
    {
        let job_id = JobId::new();
        let id = job_id.to_string();
        let now = svc.now();
        {
            let mut ops = self.lock();
            ops.retain(|_, op| op.end.is_none_or(|end| now - end < KEEP_FINISHED));
            ops.insert(
                id.clone(),
                Op {
                    ends,
                    start: now,
                    end: None,
                    state: State::Running,
                },
            );
        }
        let who = OnBehalf {
            initiator: format!("api-token:{initiator}"),
            job_id,
        };
        let (this, svc, op_id) = (self.clone(), svc.clone(), id.clone());
        tokio::spawn(async move {
            let result = on_behalf(who, work).await;
            let end = svc.now();
            if let Some(op) = this.lock().get_mut(&op_id) {
                op.end = Some(end);
                op.state = match result {
                    Ok(value) => State::Succeeded(value),
                    Err(e) => State::Failed(e.into()),
                };
            }
        });
        id
    }

    /// The operation's status, its start and its end; `None` for an operation this server
    /// does not know and no job has the id of.
    pub fn status(
        &self,
        svc: &Pgvault,
        id: &str,
    ) -> Option<(Status, DateTime<Utc>, Option<DateTime<Utc>>)> {
        let op = self.lock().get(id).cloned();
        let job = || {
            id.parse::<JobId>()
                .ok()
                .and_then(|j| svc.history().get(j).ok().flatten())
        };
        match op {
            Some(op) => {
                let status = match (&op.state, op.ends) {
                    (State::Running, Ends::WhenJobStarts) => match job() {
                        Some(_) => Status::Succeeded(None),
                        None => Status::InProgress,
                    },
                    (State::Running, Ends::WhenDone) => Status::InProgress,
                    (State::Succeeded(v), _) => Status::Succeeded(v.clone()),
                    (State::Failed(e), _) => Status::Failed(e.clone()),
                };
                let end = match status {
                    Status::InProgress => None,
                    _ => op.end.or_else(|| Some(svc.now())),
                };
                Some((status, op.start, end))
            }
            // Started by an earlier run of the server: its job tells.
            None => job().map(|j| {
                let start = j.state.start();
                (Status::Succeeded(None), start, Some(start))
            }),
        }
    }
}

/// An operation's status resource (`OperationResource`).
pub fn status_body(
    url_id: &str,
    id: &str,
    status: &Status,
    start: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
    has_job: bool,
) -> Value {
    let mut body = json!({
        "id": url_id,
        "name": id,
        "status": match status {
            Status::InProgress => "InProgress",
            Status::Succeeded(_) => "Succeeded",
            Status::Failed(_) => "Failed",
        },
        "startTime": start.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    });
    if let Some(end) = end {
        body["endTime"] = json!(end.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
    }
    if has_job {
        body["properties"] = job_info(id);
    }
    if let Status::Failed(e) = status {
        body["error"] = e.body();
    }
    body
}

/// `OperationJobExtendedInfo`: what an adhoc backup or a restore answers with.
pub fn job_info(job_id: &str) -> Value {
    json!({"objectType": "OperationJobExtendedInfo", "jobId": job_id})
}
