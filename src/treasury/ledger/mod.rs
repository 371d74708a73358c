//! The ledger writer: every change to balances goes through here.
//!
//! Group commit: calls queue their command, and one worker takes whatever has
//! queued (up to [`MAX_BATCH`]) and applies it in a single database
//! transaction — lock the wallets in id order, then the system accounts,
//! apply each command in memory in arrival order (a command that fails, say
//! for insufficient funds, is dropped alone), write the balances, the
//! transactions, their balanced entries and the idempotency keys, commit, and
//! answer each caller. Under load this turns many small commits into a few
//! large ones; with one caller it is one ordinary transaction.
//!
//! If a whole batch fails (a constraint the planner did not foresee, a
//! concurrent replica taking the same idempotency key), each command is
//! retried alone so one bad command cannot fail its neighbours.
//!
//! # The cache
//!
//! After each commit, and before any caller is answered, the writer
//! invalidates the cached reads the batch changed (the wallets whose balances
//! moved, and the treasury summary): see [`crate::cache`].
//!
//! **Callers of [`apply_in`]** (code whose own change commits together with
//! money, such as ending a mining session) get an [`Applied`] whose
//! `invalidation` they must hand to [`Cache::invalidate`] *after* their own
//! commit and before answering:
//!
//! ```ignore
//! let applied = ledger::apply_in(&transaction, &policy, &requests).await?;
//! transaction.commit(caller, change).await?;
//! cache.invalidate(applied.invalidation).await;
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::{DatabaseConnection, DatabaseTransaction};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::domain::{
    Account, Allocation, AllocationPolicy, Amount, Balance, Bucket, BurnSource, Command, Leg, Note,
    RequestId, SystemAccount, Transaction, TransactionKind, TransactionStatus,
};
use super::store::{self, LockedWallet, NewIdempotencyKey};
use crate::audit::{self, Change};
use crate::auth::Principal;
use crate::cache::{Cache, Generation, Invalidation};
use crate::db::{begin_write, classify};
use crate::error::Error;

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
        let receiver = std::sync::Arc::new(tokio::sync::Mutex::new(receiver));
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
async fn run(
    writer: Writer,
    receiver: std::sync::Arc<tokio::sync::Mutex<mpsc::Receiver<Submission>>>,
) {
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
    async fn process(&self, batch: Vec<Submission>) {
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

    /// [`apply`] within the deadline. When the deadline passes the outcome
    /// is unknown (the commit may have happened), so the cache is no longer
    /// trusted until its epoch has moved on.
    async fn apply(&self, requests: &[Request]) -> Result<Vec<Result<Transaction, Error>>, Error> {
        let applying = apply(&self.db, &self.policy, &self.cache, requests);
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

type Request = (Principal, RequestId, Command);

/// Balances of the accounts a batch touches, as they stand mid-batch.
struct Books {
    wallets: HashMap<Uuid, LockedWallet>,
    system: BTreeMap<SystemAccount, i64>,
}

impl Books {
    fn slot(&mut self, account: Account, bucket: Bucket) -> Result<&mut i64, Error> {
        match account {
            Account::Wallet(id) => {
                let wallet = self
                    .wallets
                    .get_mut(&id)
                    .ok_or_else(|| Error::internal(format!("wallet {id} was not locked")))?;
                Ok(match bucket {
                    Bucket::Available => &mut wallet.balance.available,
                    Bucket::Pending => &mut wallet.balance.pending,
                    Bucket::Staked => &mut wallet.balance.staked,
                })
            }
            Account::System(system) => self.system.get_mut(&system).ok_or_else(|| {
                Error::internal(format!("system account {} was not locked", system.as_str()))
            }),
        }
    }

    /// Applies all legs or none: no holding account may end below zero.
    fn post(&mut self, legs: &[Leg]) -> Result<(), Error> {
        let mut changes: BTreeMap<(Account, Bucket), i64> = BTreeMap::new();
        for leg in legs {
            *changes.entry(leg.from).or_default() -= leg.micros;
            *changes.entry(leg.to).or_default() += leg.micros;
        }
        let mut updated = Vec::with_capacity(changes.len());
        for ((account, bucket), change) in changes {
            let current = *self.slot(account, bucket)?;
            let next = current
                .checked_add(change)
                .ok_or_else(|| Error::FailedPrecondition {
                    reason: "BALANCE_OUT_OF_RANGE",
                    message: "the resulting balance would be out of range".into(),
                })?;
            let may_go_negative =
                matches!(account, Account::System(system) if system.may_go_negative());
            if next < 0 && !may_go_negative {
                return Err(Error::FailedPrecondition {
                    reason: "INSUFFICIENT_FUNDS",
                    message: format!(
                        "{} has {} AZR {}; {} AZR are needed",
                        describe(account),
                        super::domain::format_azr(current),
                        bucket.as_str(),
                        super::domain::format_azr(-change)
                    ),
                });
            }
            updated.push(((account, bucket), next));
        }
        for ((account, bucket), next) in updated {
            *self.slot(account, bucket)? = next;
        }
        Ok(())
    }
}

fn describe(account: Account) -> String {
    match account {
        Account::Wallet(id) => format!("wallet {id}"),
        Account::System(system) => format!("the {} account", system.as_str()),
    }
}

/// What a command does, decided before anything is written.
struct Plan {
    transaction: Transaction,
    legs: Vec<Leg>,
    /// True when the command resolves an existing transaction rather than
    /// creating one.
    resolves: bool,
}

fn internal_tx_hash(id: Uuid) -> String {
    format!("0x{}", hex::encode(Sha256::digest(id.as_bytes())))
}

fn available(account: Account) -> (Account, Bucket) {
    (account, Bucket::Available)
}

fn leg(from: (Account, Bucket), to: (Account, Bucket), micros: i64) -> Option<Leg> {
    (micros > 0).then_some(Leg { from, to, micros })
}

struct Context<'a> {
    now: DateTime<Utc>,
    policy: &'a AllocationPolicy,
    books: &'a Books,
    referenced: &'a HashMap<Uuid, Transaction>,
    taken_hashes: &'a HashSet<String>,
}

fn new_transaction(
    caller: &Principal,
    request_id: &RequestId,
    kind: TransactionKind,
    micros: i64,
    note: &Note,
    now: DateTime<Utc>,
) -> Transaction {
    let id = Uuid::now_v7();
    Transaction {
        id,
        kind,
        status: TransactionStatus::Confirmed,
        tx_hash: internal_tx_hash(id),
        amount_micros: micros,
        allocation: None,
        from_wallet: None,
        to_wallet: None,
        from_system: None,
        to_system: None,
        destination_address: None,
        gas_used: None,
        gas_price_wei: None,
        reason: note.reason.clone(),
        metadata: serde_json::Value::Object(note.metadata.clone()),
        request_id: request_id.as_str().to_owned(),
        requested_by: caller.user_id,
        created_at: now,
        confirmed_at: Some(now),
        processed_at: Some(now),
        mining_session: None,
        backing_reference: None,
    }
}

/// A confirmed `transfer` from one account's available balance to
/// another's: between wallets, or between a wallet and a system pool.
fn transfer(
    (caller, request_id, note, now): (&Principal, &RequestId, &Note, DateTime<Utc>),
    amount: Amount,
    from: Account,
    to: Account,
) -> Plan {
    let mut transaction = new_transaction(
        caller,
        request_id,
        TransactionKind::Transfer,
        amount.micros(),
        note,
        now,
    );
    match from {
        Account::Wallet(wallet) => transaction.from_wallet = Some(wallet),
        Account::System(system) => transaction.from_system = Some(system),
    }
    match to {
        Account::Wallet(wallet) => transaction.to_wallet = Some(wallet),
        Account::System(system) => transaction.to_system = Some(system),
    }
    Plan {
        transaction,
        legs: leg(available(from), available(to), amount.micros())
            .into_iter()
            .collect(),
        resolves: false,
    }
}

fn plan(context: &Context<'_>, (caller, request_id, command): &Request) -> Result<Plan, Error> {
    let now = context.now;
    let exists = |id: &Uuid| context.books.wallets.contains_key(id);
    // The caller must own the source wallet; a missing or foreign wallet
    // looks the same, so wallet ids cannot be probed.
    let owned = |id: &Uuid| match context.books.wallets.get(id) {
        Some(wallet) if wallet.owner == caller.user_id => Ok(()),
        _ => Err(Error::PermissionDenied),
    };
    match command {
        Command::Mint {
            amount,
            to_wallet,
            note,
            mining_session,
            pending,
            backing_reference,
        } => {
            if let Some(wallet) = to_wallet.filter(|wallet| !exists(wallet)) {
                return Err(Error::not_found("wallet", wallet));
            }
            if *pending && mining_session.is_none() {
                return Err(Error::internal("only a mining claim may mint pending"));
            }
            let split = context.policy.split(*amount);
            let mut transaction = new_transaction(
                caller,
                request_id,
                TransactionKind::Mint,
                amount.micros(),
                note,
                now,
            );
            transaction.allocation = Some(split);
            transaction.mining_session = *mining_session;
            transaction.to_wallet = *to_wallet;
            transaction.backing_reference = backing_reference.clone();
            let legs = if *pending {
                // A claim: recorded with its allocation, posted on confirmation.
                mark_pending(&mut transaction);
                Vec::new()
            } else {
                mint_legs(&split, *to_wallet)
            };
            Ok(Plan {
                transaction,
                legs,
                resolves: false,
            })
        }
        Command::Burn {
            amount,
            source,
            note,
        } => {
            let mut transaction = new_transaction(
                caller,
                request_id,
                TransactionKind::Burn,
                amount.micros(),
                note,
                now,
            );
            let from = match source {
                BurnSource::Wallet(wallet) => {
                    if !exists(wallet) {
                        return Err(Error::not_found("wallet", wallet));
                    }
                    transaction.from_wallet = Some(*wallet);
                    Account::Wallet(*wallet)
                }
                BurnSource::System(system) => {
                    transaction.from_system = Some(*system);
                    Account::System(*system)
                }
            };
            let burned = available(Account::System(SystemAccount::Burned));
            Ok(Plan {
                transaction,
                legs: leg(available(from), burned, amount.micros())
                    .into_iter()
                    .collect(),
                resolves: false,
            })
        }
        Command::Transfer {
            from_wallet,
            to_wallet,
            amount,
            note,
        } => {
            owned(from_wallet)?;
            if !exists(to_wallet) {
                return Err(Error::not_found("wallet", to_wallet));
            }
            Ok(transfer(
                (caller, request_id, note, now),
                *amount,
                Account::Wallet(*from_wallet),
                Account::Wallet(*to_wallet),
            ))
        }
        Command::Deposit {
            to_wallet,
            amount,
            tx_hash,
            pending,
            note,
        } => {
            if !exists(to_wallet) {
                return Err(Error::not_found("wallet", to_wallet));
            }
            if tx_hash
                .as_ref()
                .is_some_and(|hash| context.taken_hashes.contains(hash))
            {
                return Err(Error::AlreadyExists {
                    entity: "transaction",
                    field: "tx_hash".into(),
                });
            }
            let mut transaction = new_transaction(
                caller,
                request_id,
                TransactionKind::Deposit,
                amount.micros(),
                note,
                now,
            );
            transaction.to_wallet = Some(*to_wallet);
            if let Some(hash) = tx_hash {
                transaction.tx_hash = hash.clone();
            }
            let legs = if *pending {
                mark_pending(&mut transaction);
                Vec::new()
            } else {
                let external = available(Account::System(SystemAccount::External));
                leg(
                    external,
                    available(Account::Wallet(*to_wallet)),
                    amount.micros(),
                )
                .into_iter()
                .collect()
            };
            Ok(Plan {
                transaction,
                legs,
                resolves: false,
            })
        }
        Command::Withdraw {
            from_wallet,
            amount,
            destination_address,
            note,
        } => {
            owned(from_wallet)?;
            let mut transaction = new_transaction(
                caller,
                request_id,
                TransactionKind::Withdrawal,
                amount.micros(),
                note,
                now,
            );
            mark_pending(&mut transaction);
            transaction.from_wallet = Some(*from_wallet);
            transaction.destination_address = Some(destination_address.clone());
            let wallet = Account::Wallet(*from_wallet);
            let hold = leg(
                (wallet, Bucket::Available),
                (wallet, Bucket::Pending),
                amount.micros(),
            );
            Ok(Plan {
                transaction,
                legs: hold.into_iter().collect(),
                resolves: false,
            })
        }
        Command::PoolPayout {
            pool,
            to_wallet,
            amount,
            note,
        } => {
            if !exists(to_wallet) {
                return Err(Error::not_found("wallet", to_wallet));
            }
            Ok(transfer(
                (caller, request_id, note, now),
                *amount,
                Account::System(*pool),
                Account::Wallet(*to_wallet),
            ))
        }
        Command::PoolPayment {
            from_wallet,
            pool,
            amount,
            note,
        } => {
            owned(from_wallet)?;
            Ok(transfer(
                (caller, request_id, note, now),
                *amount,
                Account::Wallet(*from_wallet),
                Account::System(*pool),
            ))
        }
        Command::Confirm {
            transaction_id,
            gas_used,
            gas_price_wei,
            confirmed_at,
            backing_reference,
        } => {
            let mut transaction = pending_transaction(context, *transaction_id)?;
            check_claim_resolver(context, caller, &transaction)?;
            match (transaction.kind, backing_reference) {
                (TransactionKind::Mint, None) => {
                    return Err(Error::invalid(
                        "backing_reference",
                        "is required to confirm a mint: the reference of the inflow that backs it",
                    ));
                }
                (TransactionKind::Mint, Some(_)) => {}
                (_, Some(_)) => {
                    return Err(Error::invalid(
                        "backing_reference",
                        "only a pending mint is confirmed with a backing reference",
                    ));
                }
                (_, None) => {}
            }
            let confirmed_at = confirmed_at.map_or(now, |at| at.trunc_subsecs(6));
            if confirmed_at < transaction.created_at {
                return Err(Error::invalid(
                    "confirm_time",
                    "must not be before the transaction was created",
                ));
            }
            let micros = transaction.amount_micros;
            let external = available(Account::System(SystemAccount::External));
            let legs = match (
                transaction.kind,
                transaction.from_wallet,
                transaction.to_wallet,
            ) {
                (TransactionKind::Deposit, _, Some(to)) => {
                    leg(external, available(Account::Wallet(to)), micros)
                        .into_iter()
                        .collect()
                }
                (TransactionKind::Withdrawal, Some(from), _) => {
                    leg((Account::Wallet(from), Bucket::Pending), external, micros)
                        .into_iter()
                        .collect()
                }
                (TransactionKind::Mint, _, to) => match &transaction.allocation {
                    Some(split) => mint_legs(split, to),
                    None => {
                        return Err(Error::internal(format!(
                            "pending mint {transaction_id} has no allocation"
                        )));
                    }
                },
                _ => {
                    return Err(Error::internal(format!(
                        "pending transaction {transaction_id} has an impossible shape"
                    )));
                }
            };
            transaction.status = TransactionStatus::Confirmed;
            transaction.gas_used = Some(*gas_used);
            transaction.gas_price_wei = Some(*gas_price_wei);
            transaction.confirmed_at = Some(confirmed_at);
            transaction.processed_at = Some(now);
            if transaction.kind == TransactionKind::Mint {
                transaction.backing_reference = backing_reference.clone();
            }
            Ok(Plan {
                transaction,
                legs,
                resolves: true,
            })
        }
        Command::Fail {
            transaction_id,
            reason,
        } => {
            let mut transaction = pending_transaction(context, *transaction_id)?;
            check_claim_resolver(context, caller, &transaction)?;
            let legs = match (transaction.kind, transaction.from_wallet) {
                (TransactionKind::Withdrawal, Some(from)) => {
                    let wallet = Account::Wallet(from);
                    leg(
                        (wallet, Bucket::Pending),
                        (wallet, Bucket::Available),
                        transaction.amount_micros,
                    )
                }
                _ => None,
            };
            transaction.status = TransactionStatus::Failed;
            transaction.reason = reason.clone();
            transaction.processed_at = Some(now);
            Ok(Plan {
                transaction,
                legs: legs.into_iter().collect(),
                resolves: true,
            })
        }
    }
}

/// Awaiting resolution (ConfirmTransaction or FailTransaction): neither
/// confirmed nor processed yet.
fn mark_pending(transaction: &mut Transaction) {
    transaction.status = TransactionStatus::Pending;
    transaction.confirmed_at = None;
    transaction.processed_at = None;
}

/// The entries of a mint: the allocation from issuance to the treasury
/// reserve, the founder pool, burned, and the circulation share to the
/// recipient wallet (or the circulation pool).
fn mint_legs(split: &Allocation, to_wallet: Option<Uuid>) -> Vec<Leg> {
    let issuance = available(Account::System(SystemAccount::Issuance));
    let recipient = match to_wallet {
        Some(wallet) => Account::Wallet(wallet),
        None => Account::System(SystemAccount::CirculationPool),
    };
    [
        leg(
            issuance,
            available(Account::System(SystemAccount::TreasuryReserve)),
            split.treasury,
        ),
        leg(
            issuance,
            available(Account::System(SystemAccount::FounderPool)),
            split.founder,
        ),
        leg(
            issuance,
            available(Account::System(SystemAccount::Burned)),
            split.burn,
        ),
        leg(issuance, available(recipient), split.circulation),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Four eyes on new money: nobody confirms or rejects a mining claim paid
/// to their own wallet.
fn check_claim_resolver(
    context: &Context<'_>,
    caller: &Principal,
    transaction: &Transaction,
) -> Result<(), Error> {
    let paid_to_caller = transaction
        .to_wallet
        .and_then(|wallet| context.books.wallets.get(&wallet))
        .is_some_and(|wallet| wallet.owner == caller.user_id);
    if transaction.kind == TransactionKind::Mint && paid_to_caller {
        return Err(Error::PermissionDenied);
    }
    Ok(())
}

fn pending_transaction(context: &Context<'_>, id: Uuid) -> Result<Transaction, Error> {
    let transaction = context
        .referenced
        .get(&id)
        .cloned()
        .ok_or_else(|| Error::not_found("transaction", id))?;
    if transaction.status != TransactionStatus::Pending {
        return Err(Error::FailedPrecondition {
            reason: "ALREADY_RESOLVED",
            message: format!(
                "transaction {id} is already {}",
                transaction.status.as_str()
            ),
        });
    }
    Ok(transaction)
}

/// One database transaction for the whole batch; `Err` only when that
/// transaction itself failed (nothing of the batch was written). After the
/// commit the cache entries it changed are invalidated.
async fn apply(
    db: &DatabaseConnection,
    policy: &AllocationPolicy,
    cache: &Cache,
    requests: &[Request],
) -> Result<Vec<Result<Transaction, Error>>, Error> {
    let transaction = begin_write(db).await?;
    let Applied {
        outcomes,
        invalidation,
    } = apply_in(&transaction, policy, requests).await?;
    // One audit event per applied command (replays included: each call of a
    // mutating RPC is audited once), in the batch's transaction.
    let mut events = Vec::with_capacity(requests.len());
    for ((caller, request_id, command), outcome) in requests.iter().zip(&outcomes) {
        let Ok(applied) = outcome else { continue };
        let mut change = Change::new("transaction", applied.id)
            .new_values(applied)
            .request_id(request_id.as_str());
        if matches!(command, Command::Confirm { .. } | Command::Fail { .. }) {
            change = change.old(serde_json::json!({ "id": applied.id, "status": "pending" }));
        }
        events.push((caller, change, audit::Outcome::Ok));
    }
    audit::record_many(&transaction, events).await?;
    transaction.commit().await.map_err(classify)?;
    cache.invalidate(invalidation).await;
    for ((caller, _, _), outcome) in requests.iter().zip(&outcomes) {
        if outcome.is_ok() {
            caller
                .context
                .audited
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    Ok(outcomes)
}

/// What [`apply_in`] did: one outcome per request, in order, and the cached
/// reads it changed.
#[derive(Debug)]
pub struct Applied {
    pub outcomes: Vec<Result<Transaction, Error>>,
    /// Hand to [`Cache::invalidate`] after the commit, before answering.
    pub invalidation: Invalidation,
}

/// Applies commands inside a database transaction the caller owns, for
/// services whose own change must commit together with the money (ending a
/// mining session and minting its earnings). The caller must lock its own
/// rows before calling, and commit afterwards; then it must pass
/// [`Applied::invalidation`] to [`Cache::invalidate`] before answering. Role
/// checks are the caller's.
pub async fn apply_in(
    transaction: &DatabaseTransaction,
    policy: &AllocationPolicy,
    requests: &[(Principal, RequestId, Command)],
) -> Result<Applied, Error> {
    // PostgreSQL keeps microseconds: answer with what a later read returns.
    let now = Utc::now().trunc_subsecs(6);

    let keys: Vec<(Uuid, String)> = requests
        .iter()
        .map(|(caller, request_id, _)| (caller.user_id, request_id.as_str().to_owned()))
        .collect();
    store::lock_idempotency_keys(transaction, &keys).await?;
    let stored_keys = store::find_idempotency_keys(transaction, &keys).await?;

    let referenced_ids: Vec<Uuid> = requests
        .iter()
        .filter_map(|(_, _, command)| match command {
            Command::Confirm { transaction_id, .. } | Command::Fail { transaction_id, .. } => {
                Some(*transaction_id)
            }
            _ => None,
        })
        .collect();
    let mut referenced = store::lock_transactions(transaction, &referenced_ids).await?;

    let hashes: Vec<String> = requests
        .iter()
        .filter_map(|(_, _, command)| match command {
            Command::Deposit {
                tx_hash: Some(hash),
                ..
            } => Some(hash.clone()),
            _ => None,
        })
        .collect();
    let mut taken_hashes = store::existing_tx_hashes(transaction, &hashes).await?;

    let mut wallet_ids = BTreeSet::new();
    for (_, _, command) in requests {
        match command {
            Command::Mint { to_wallet, .. } => wallet_ids.extend(*to_wallet),
            Command::Burn {
                source: BurnSource::Wallet(wallet),
                ..
            } => {
                wallet_ids.insert(*wallet);
            }
            Command::Burn { .. } => {}
            Command::Transfer {
                from_wallet,
                to_wallet,
                ..
            } => wallet_ids.extend([*from_wallet, *to_wallet]),
            Command::Deposit { to_wallet, .. } => {
                wallet_ids.insert(*to_wallet);
            }
            Command::Withdraw { from_wallet, .. } => {
                wallet_ids.insert(*from_wallet);
            }
            Command::PoolPayout { to_wallet, .. } => {
                wallet_ids.insert(*to_wallet);
            }
            Command::PoolPayment { from_wallet, .. } => {
                wallet_ids.insert(*from_wallet);
            }
            Command::Confirm { .. } | Command::Fail { .. } => {}
        }
    }
    for referenced_transaction in referenced.values() {
        wallet_ids.extend(referenced_transaction.from_wallet);
        wallet_ids.extend(referenced_transaction.to_wallet);
    }
    let wallet_ids: Vec<Uuid> = wallet_ids.into_iter().collect();
    let wallets = store::lock_wallets(transaction, &wallet_ids).await?;
    let needs_system = requests
        .iter()
        .any(|(_, _, command)| !matches!(command, Command::Transfer { .. }));
    let system = if needs_system {
        store::lock_system_accounts(transaction).await?
    } else {
        BTreeMap::new()
    };
    let original_wallets: HashMap<Uuid, Balance> = wallets
        .iter()
        .map(|(id, wallet)| (*id, wallet.balance))
        .collect();
    let original_system = system.clone();
    let mut books = Books { wallets, system };

    let mut outcomes: Vec<Option<Result<Transaction, Error>>> = Vec::with_capacity(requests.len());
    let mut replays: Vec<(usize, Uuid)> = Vec::new();
    let mut claimed_keys: HashMap<(Uuid, String), (String, Uuid)> = HashMap::new();
    let mut created = Vec::new();
    let mut resolved = Vec::new();
    let mut entries = Vec::new();
    let mut new_keys = Vec::new();

    for (index, request) in requests.iter().enumerate() {
        let (caller, request_id, command) = request;
        let key = (caller.user_id, request_id.as_str().to_owned());
        let fingerprint = command.fingerprint();
        if let Some((stored, transaction_id)) =
            stored_keys.get(&key).or_else(|| claimed_keys.get(&key))
        {
            if *stored == fingerprint {
                replays.push((index, *transaction_id));
                outcomes.push(None);
            } else {
                outcomes.push(Some(Err(Error::invalid(
                    "request_id",
                    "was already used for a different request",
                ))));
            }
            continue;
        }
        let context = Context {
            now,
            policy,
            books: &books,
            referenced: &referenced,
            taken_hashes: &taken_hashes,
        };
        let planned =
            plan(&context, request).and_then(|planned| books.post(&planned.legs).map(|()| planned));
        match planned {
            Ok(Plan {
                transaction: record,
                legs,
                resolves,
            }) => {
                entries.extend(legs.into_iter().map(|leg| (record.id, leg)));
                claimed_keys.insert(key.clone(), (fingerprint.clone(), record.id));
                new_keys.push(NewIdempotencyKey {
                    caller: caller.user_id,
                    request_id: key.1,
                    operation: command.operation(),
                    fingerprint,
                    transaction: record.id,
                });
                if let Command::Deposit {
                    tx_hash: Some(hash),
                    ..
                } = command
                {
                    taken_hashes.insert(hash.clone());
                }
                if resolves {
                    referenced.insert(record.id, record.clone());
                    resolved.push(record.clone());
                } else {
                    created.push(record.clone());
                }
                outcomes.push(Some(Ok(record)));
            }
            Err(error) => outcomes.push(Some(Err(error))),
        }
    }

    let changed_wallets: Vec<(Uuid, Balance)> = books
        .wallets
        .iter()
        .filter(|(id, wallet)| original_wallets.get(id) != Some(&wallet.balance))
        .map(|(id, wallet)| (*id, wallet.balance))
        .collect();
    store::update_wallet_balances(transaction, &changed_wallets).await?;
    let mut invalidation = Invalidation::of(
        changed_wallets
            .iter()
            .map(|(id, _)| Generation::Wallet(*id)),
    );
    if !created.is_empty() || !resolved.is_empty() {
        invalidation.add(Generation::Ledger);
    }
    for (account, micros) in &books.system {
        if original_system.get(account) != Some(micros) {
            store::update_system_balance(transaction, *account, *micros).await?;
        }
    }
    store::insert_transactions(transaction, &created).await?;
    for record in &resolved {
        store::update_resolution(transaction, record).await?;
    }
    store::insert_entries(transaction, &entries, now).await?;
    store::insert_idempotency_keys(transaction, new_keys, now).await?;
    for (index, transaction_id) in replays {
        let original = store::find_transaction(transaction, transaction_id)
            .await?
            .ok_or_else(|| {
                Error::internal(format!(
                    "idempotency key points at missing transaction {transaction_id}"
                ))
            })?;
        // The first call may have committed and died before its
        // invalidation reached Redis: its retry invalidates again.
        invalidation.merge(Invalidation::of(
            original
                .from_wallet
                .into_iter()
                .chain(original.to_wallet)
                .map(Generation::Wallet)
                .chain([Generation::Ledger]),
        ));
        outcomes[index] = Some(Ok(original));
    }
    let outcomes = outcomes
        .into_iter()
        .map(|outcome| outcome.unwrap_or_else(|| Err(Error::internal("a request got no outcome"))))
        .collect();
    Ok(Applied {
        outcomes,
        invalidation,
    })
}
