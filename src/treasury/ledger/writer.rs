//! The writer queue: callers submit a command and wait; writer tasks take
//! what has queued, apply it as one batch in one database transaction within
//! a deadline, retry its commands alone when the batch as a whole fails, and
//! answer each caller.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::{Request, apply_in};
use crate::audit::{Audited, Change};
use crate::auth::Principal;
use crate::cache::Cache;
use crate::error::Error;
use crate::money::RequestId;
use crate::treasury::domain::{AllocationPolicy, Command, Transaction};

/// Most commands applied in one database transaction.
pub const MAX_BATCH: usize = 256;
/// Attempts for a single command whose transaction failed for a transient
/// reason (lock timeout, serialization failure, a busy SQLite).
const SINGLE_ATTEMPTS: usize = 3;

type Reply = oneshot::Sender<Result<Transaction, Error>>;

struct Submission {
    caller: Principal,
    request_id: RequestId,
    command: Command,
    reply: Reply,
}

/// The handle callers submit commands through; cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    sender: mpsc::Sender<Submission>,
    deadline: Duration,
}

/// What every writer task shares.
#[derive(Clone)]
struct Writer {
    db: DatabaseConnection,
    policy: AllocationPolicy,
    cache: Cache,
    /// The longest a batch may take in the database. Past it the batch is
    /// abandoned (its connection dropped, so the database rolls back what
    /// did not commit) and its callers get UNAVAILABLE: a database that went
    /// silent must not hold the writers, and with them every write, for as
    /// long as TCP takes to give up.
    deadline: Duration,
}

impl Ledger {
    /// Starts `writers` writer tasks. They stop when the last `Ledger` handle
    /// is dropped. A caller waits at most `deadline` for its answer, and a
    /// batch may take at most that long in the database; either way the
    /// caller then gets UNAVAILABLE (a retry with the same request id is
    /// safe: it applies once).
    pub fn start(
        db: DatabaseConnection,
        policy: AllocationPolicy,
        writers: usize,
        cache: Cache,
        deadline: Duration,
    ) -> Self {
        let (sender, receiver) = mpsc::channel(16 * MAX_BATCH);
        let receiver = Arc::new(Mutex::new(receiver));
        let writer = Writer {
            db,
            policy,
            cache,
            deadline,
        };
        for _ in 0..writers.max(1) {
            tokio::spawn(run(writer.clone(), receiver.clone()));
        }
        Self { sender, deadline }
    }

    /// Queues one command for the next batch and waits for its outcome.
    pub async fn submit(
        &self,
        caller: &Principal,
        request_id: RequestId,
        command: Command,
    ) -> Result<Transaction, Error> {
        let (reply, answer) = oneshot::channel();
        let submission = Submission {
            caller: caller.clone(),
            request_id,
            command,
            reply,
        };
        self.sender
            .send(submission)
            .await
            .map_err(|_| Error::Unavailable("the ledger writer has stopped".into()))?;
        match tokio::time::timeout(self.deadline, answer).await {
            Ok(answer) => {
                answer.map_err(|_| Error::internal("the ledger writer dropped a request"))?
            }
            Err(_) => Err(Error::Unavailable(
                "the ledger did not answer in time".into(),
            )),
        }
    }
}

/// One writer: takes what has queued, applies it, repeats. With several
/// writers one batch can be in the database while the next is being taken;
/// they lock rows in the same order, so they never deadlock each other.
async fn run(writer: Writer, receiver: Arc<Mutex<mpsc::Receiver<Submission>>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let received = receiver.lock().await.recv_many(&mut batch, MAX_BATCH).await;
        if received == 0 {
            return;
        }
        writer.process(std::mem::take(&mut batch)).await;
    }
}

impl Writer {
    async fn process(&self, mut batch: Vec<Submission>) {
        // A caller that has gone (its deadline passed while the command
        // queued, or it cancelled) was told nothing, so the command is not
        // applied: under overload the writers spend themselves on callers
        // still waiting, and a retry with the same request id applies it.
        batch.retain(|submission| !submission.reply.is_closed());
        if batch.is_empty() {
            return;
        }
        let (requests, replies): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|submission| {
                (
                    (submission.caller, submission.request_id, submission.command),
                    submission.reply,
                )
            })
            .unzip();
        let outcomes = match self.apply(&requests).await {
            Ok(outcomes) => outcomes,
            // The database is away: retrying command by command would only
            // wait longer.
            Err(Error::Unavailable(cause)) => requests
                .iter()
                .map(|_| Err(Error::Unavailable(cause.clone())))
                .collect(),
            Err(batch_error) => {
                if requests.len() > 1 {
                    tracing::warn!(error = %batch_error, size = requests.len(), "ledger batch failed; applying its commands one by one");
                }
                let mut outcomes = Vec::with_capacity(requests.len());
                for request in &requests {
                    outcomes.push(self.apply_alone(request).await);
                }
                outcomes
            }
        };
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            // A caller that went away (deadline, cancel) no longer needs its
            // answer; the effect is committed either way and a retry replays it.
            let _ = reply.send(outcome);
        }
    }

    async fn apply_alone(&self, request: &Request) -> Result<Transaction, Error> {
        let mut last = None;
        for _ in 0..SINGLE_ATTEMPTS {
            match self.apply(std::slice::from_ref(request)).await {
                Ok(mut outcomes) => {
                    return outcomes
                        .pop()
                        .unwrap_or_else(|| Err(Error::internal("no outcome")));
                }
                Err(error @ Error::Unavailable(_)) => return Err(error),
                Err(error @ (Error::Internal(_) | Error::AlreadyExists { .. })) => {
                    last = Some(error)
                }
                Err(error) => return Err(error),
            }
        }
        Err(last.unwrap_or_else(|| Error::internal("no attempt made")))
    }

    /// [`apply_batch`] within the deadline. When the deadline passes the
    /// outcome is unknown (the commit may have happened), so the cache is no
    /// longer trusted until its epoch has moved on.
    async fn apply(&self, requests: &[Request]) -> Result<Vec<Result<Transaction, Error>>, Error> {
        let applying = apply_batch(&self.db, &self.policy, &self.cache, requests);
        match tokio::time::timeout(self.deadline, applying).await {
            Ok(outcome) => outcome,
            Err(_) => {
                self.cache.distrust().await;
                Err(Error::Unavailable(format!(
                    "a ledger batch took longer than {} ms",
                    self.deadline.as_millis()
                )))
            }
        }
    }
}

/// One database transaction for the whole batch; `Err` only when that
/// transaction itself failed (nothing of the batch was written). After the
/// commit the cache entries it changed are invalidated.
async fn apply_batch(
    db: &DatabaseConnection,
    policy: &AllocationPolicy,
    cache: &Cache,
    requests: &[Request],
) -> Result<Vec<Result<Transaction, Error>>, Error> {
    let mut work = Audited::begin(db, cache).await?;
    let outcomes = apply_in(&mut work, policy, requests).await?;
    work.commit_all(audit_events(requests, &outcomes)).await?;
    Ok(outcomes)
}

/// One audit event per applied command (replays included: each call of a
/// mutating RPC is audited once), in request order; a refused command is
/// not audited here.
pub(super) fn audit_events<'a>(
    requests: &'a [Request],
    outcomes: &[Result<Transaction, Error>],
) -> Vec<(&'a Principal, Change)> {
    requests
        .iter()
        .zip(outcomes)
        .filter_map(|((caller, request_id, command), outcome)| {
            let applied = outcome.as_ref().ok()?;
            let mut change = Change::new("transaction", applied.id)
                .new_values(applied)
                .request_id(request_id.as_str());
            if matches!(command, Command::Confirm { .. } | Command::Fail { .. }) {
                change = change.old(serde_json::json!({ "id": applied.id, "status": "pending" }));
            }
            Some((caller, change))
        })
        .collect()
}
