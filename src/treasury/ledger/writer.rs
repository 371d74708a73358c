//! The writer queue: callers submit a command and wait; writer tasks take
//! what has queued, apply it as one batch in one database transaction within
//! a deadline, retry its commands alone when the batch as a whole fails, and
//! answer each caller.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::group::{self, Group, GroupSettled, GroupSpan, MAX_ITEMS_PER_TRANSACTION};
use super::{Request, apply_groups};
use crate::audit::{Audited, Change};
use crate::auth::Principal;
use crate::cache::Cache;
use crate::error::Error;
use crate::metrics::LedgerMetrics;
use crate::money::RequestId;
use crate::treasury::domain::{AllocationPolicy, Command, ItemResult, Transaction};

/// Most commands applied in one database transaction.
pub const MAX_BATCH: usize = 256;
/// Attempts for a single command whose transaction failed for a transient
/// reason (lock timeout, serialization failure, a busy SQLite).
const SINGLE_ATTEMPTS: usize = 3;

type Reply = oneshot::Sender<Result<Transaction, Error>>;
type GroupReply = oneshot::Sender<Result<Vec<ItemResult>, Error>>;
/// What applying a batch decided: one outcome per command, and one result
/// per group.
pub(super) type Outcomes = (Vec<Result<Transaction, Error>>, Vec<GroupSettled>);

struct Submission {
    caller: Principal,
    work: Work,
    /// The submitting call's trace span, for the batch's span.
    span: tracing::Span,
}

/// One command, or a group of them that settles together.
enum Work {
    One {
        request_id: RequestId,
        command: Command,
        reply: Reply,
    },
    Group {
        group: Group,
        reply: GroupReply,
    },
}

impl Submission {
    fn caller_has_gone(&self) -> bool {
        match &self.work {
            Work::One { reply, .. } => reply.is_closed(),
            Work::Group { reply, .. } => reply.is_closed(),
        }
    }

    fn items(&self) -> usize {
        match &self.work {
            Work::One { .. } => 1,
            Work::Group { group, .. } => group.items.len(),
        }
    }
}

/// Who waits for which outcomes of a flattened batch.
enum Waiting {
    One(Reply),
    Group { reply: GroupReply, len: usize },
}

/// Submissions as the ledger applies them: every command in order, the
/// groups among them, and who waits.
#[derive(Default)]
struct Flat {
    requests: Vec<Request>,
    spans: Vec<GroupSpan>,
    waiting: Vec<Waiting>,
    /// The trace spans of the calls this serves.
    traces: Vec<tracing::Span>,
}

impl Flat {
    fn push(&mut self, Submission { caller, work, span }: Submission) {
        self.traces.push(span);
        match work {
            Work::One {
                request_id,
                command,
                reply,
            } => {
                self.requests.push((caller, request_id, command));
                self.waiting.push(Waiting::One(reply));
            }
            Work::Group { group, reply } => {
                let Group {
                    request_id,
                    mode,
                    fingerprint,
                    items,
                } = group;
                self.spans.push(GroupSpan {
                    start: self.requests.len(),
                    len: items.len(),
                    mode,
                    key: (caller.user_id, request_id.as_str().to_owned()),
                    fingerprint,
                });
                self.waiting.push(Waiting::Group {
                    reply,
                    len: items.len(),
                });
                self.requests.extend(
                    items
                        .into_iter()
                        .map(|(request_id, command)| (caller.clone(), request_id, command)),
                );
            }
        }
    }

    /// The parts of the batch, each alone (for one-by-one retries).
    fn split(self) -> Vec<Flat> {
        let Flat {
            requests,
            spans,
            waiting,
            traces,
        } = self;
        let mut requests = requests.into_iter();
        let mut spans = spans.into_iter();
        // One trace per submission, as one waiting.
        waiting
            .into_iter()
            .zip(traces)
            .map(|(waiting, trace)| match waiting {
                Waiting::One(reply) => Flat {
                    requests: requests.next().into_iter().collect(),
                    spans: Vec::new(),
                    waiting: vec![Waiting::One(reply)],
                    traces: vec![trace],
                },
                Waiting::Group { reply, len } => Flat {
                    requests: requests.by_ref().take(len).collect(),
                    spans: spans
                        .next()
                        .map(|span| GroupSpan { start: 0, ..span })
                        .into_iter()
                        .collect(),
                    waiting: vec![Waiting::Group { reply, len }],
                    traces: vec![trace],
                },
            })
            .collect()
    }

    /// Answers everyone waiting.
    fn answer(self, outcome: Result<Outcomes, Error>) {
        let (outcomes, groups) = match outcome {
            Ok(applied) => applied,
            Err(error) => {
                let cause = error.to_string();
                let mut first = Some(error);
                for waiting in self.waiting {
                    let error = first
                        .take()
                        .unwrap_or_else(|| Error::Unavailable(cause.clone()));
                    match waiting {
                        Waiting::One(reply) => {
                            let _ = reply.send(Err(error));
                        }
                        Waiting::Group { reply, .. } => {
                            let _ = reply.send(Err(error));
                        }
                    }
                }
                return;
            }
        };
        let mut outcomes = outcomes.into_iter();
        let mut groups = groups.into_iter();
        for waiting in self.waiting {
            // A caller that went away (deadline, cancel) no longer needs its
            // answer; the effect is committed either way and a retry replays it.
            match waiting {
                Waiting::One(reply) => {
                    let outcome = outcomes
                        .next()
                        .unwrap_or_else(|| Err(Error::internal("no outcome")));
                    let _ = reply.send(outcome);
                }
                Waiting::Group { reply, len } => {
                    let items: Vec<_> = outcomes.by_ref().take(len).collect();
                    let answer = match groups.next() {
                        Some(settled) => group::answer(items, settled),
                        None => Err(Error::internal("no outcome for a group")),
                    };
                    let _ = reply.send(answer);
                }
            }
        }
    }
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
    metrics: LedgerMetrics,
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
        metrics: LedgerMetrics,
    ) -> Self {
        let (sender, receiver) = mpsc::channel(16 * MAX_BATCH);
        let receiver = Arc::new(Mutex::new(receiver));
        let writer = Writer {
            db,
            policy,
            cache,
            deadline,
            metrics,
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
            work: Work::One {
                request_id,
                command,
                reply,
            },
            span: tracing::Span::none(),
        };
        self.wait(submission, answer).await
    }
}

impl Ledger {
    /// Queues a group of commands as one submission: they settle in one
    /// batch, one database transaction and one commit, all or none when the
    /// group is atomic. Waits for the group's results.
    pub async fn submit_group(
        &self,
        caller: &Principal,
        group: Group,
    ) -> Result<Vec<ItemResult>, Error> {
        let (reply, answer) = oneshot::channel();
        let submission = Submission {
            caller: caller.clone(),
            work: Work::Group { group, reply },
            span: tracing::Span::none(),
        };
        self.wait(submission, answer).await
    }

    /// Queues `submission` and waits, within the deadline, for its answer.
    async fn wait<T>(
        &self,
        mut submission: Submission,
        answer: oneshot::Receiver<Result<T, Error>>,
    ) -> Result<T, Error> {
        let span = tracing::info_span!(target: crate::telemetry::TARGET, "ledger.submit");
        submission.span = span.clone();
        let waiting = async {
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
        };
        tracing::Instrument::instrument(waiting, span).await
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
        batch.retain(|submission| !submission.caller_has_gone());
        // Groups make submissions uneven: at most so many commands go in
        // one database transaction (a group is never split).
        let mut chunk = Flat::default();
        for submission in batch {
            if !chunk.requests.is_empty()
                && chunk.requests.len() + submission.items() > MAX_ITEMS_PER_TRANSACTION
            {
                self.process_flat(std::mem::take(&mut chunk)).await;
            }
            chunk.push(submission);
        }
        if !chunk.waiting.is_empty() {
            self.process_flat(chunk).await;
        }
    }

    async fn process_flat(&self, flat: Flat) {
        match self.apply(&flat).await {
            Ok(applied) => flat.answer(Ok(applied)),
            // The database is away: retrying command by command would only
            // wait longer.
            Err(error @ Error::Unavailable(_)) => flat.answer(Err(error)),
            Err(batch_error) => {
                if flat.waiting.len() > 1 {
                    tracing::warn!(error = %batch_error, size = flat.requests.len(), "ledger batch failed; applying its commands one by one");
                    for alone in flat.split() {
                        let outcome = self.apply_alone(&alone).await;
                        alone.answer(outcome);
                    }
                } else {
                    let outcome = self.retry_alone(&flat, batch_error).await;
                    flat.answer(outcome);
                }
            }
        }
    }

    async fn apply_alone(&self, alone: &Flat) -> Result<Outcomes, Error> {
        match self.apply(alone).await {
            Ok(applied) => Ok(applied),
            Err(error) => self.retry_alone(alone, error).await,
        }
    }

    /// Retries one submission whose transaction failed for a transient
    /// reason (lock timeout, serialization failure, a busy SQLite).
    async fn retry_alone(&self, alone: &Flat, error: Error) -> Result<Outcomes, Error> {
        let mut last = error;
        for _ in 1..SINGLE_ATTEMPTS {
            if !matches!(last, Error::Internal(_) | Error::AlreadyExists { .. }) {
                break;
            }
            match self.apply(alone).await {
                Ok(applied) => return Ok(applied),
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    /// [`apply_batch`] within the deadline. When the deadline passes the
    /// outcome is unknown (the commit may have happened), so the cache is no
    /// longer trusted until its epoch has moved on.
    async fn apply(&self, flat: &Flat) -> Result<Outcomes, Error> {
        let (requests, spans) = (&flat.requests, &flat.spans);
        let started = std::time::Instant::now();
        let applying = tracing::Instrument::instrument(
            apply_batch(&self.db, &self.policy, &self.cache, requests, spans),
            batch_span(&flat.traces, requests.len()),
        );
        match tokio::time::timeout(self.deadline, applying).await {
            Ok(outcome) => {
                if outcome.is_ok() {
                    self.metrics.batch(requests.len(), started.elapsed());
                }
                outcome
            }
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

/// The trace span of one batch: a child of the first call it serves (so
/// that call's trace shows where its time went), linked to every other.
fn batch_span(traces: &[tracing::Span], commands: usize) -> tracing::Span {
    let mut callers = traces.iter().filter(|span| !span.is_disabled());
    let Some(first) = callers.next() else {
        return tracing::Span::none();
    };
    let span = tracing::info_span!(
        target: crate::telemetry::TARGET,
        parent: first,
        "ledger.batch",
        commands
    );
    for other in callers {
        span.follows_from(other);
    }
    span
}

/// One database transaction for the whole batch; `Err` only when that
/// transaction itself failed (nothing of the batch was written). After the
/// commit the cache entries it changed are invalidated.
async fn apply_batch(
    db: &DatabaseConnection,
    policy: &AllocationPolicy,
    cache: &Cache,
    requests: &[Request],
    spans: &[GroupSpan],
) -> Result<Outcomes, Error> {
    let mut work = Audited::begin(db, cache).await?;
    let (outcomes, groups) = apply_groups(&mut work, policy, requests, spans).await?;
    let mut events = audit_events(requests, &outcomes);
    events.extend(spans.iter().zip(&groups).filter_map(|(span, settled)| {
        let GroupSettled::Results(results) = settled else {
            return None;
        };
        let (caller, _, _) = requests.get(span.start)?;
        Some((caller, group::audit_change(span, results)))
    }));
    work.commit_all(events).await?;
    Ok((outcomes, groups))
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
