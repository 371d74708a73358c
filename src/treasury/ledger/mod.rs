//! The ledger: every change to balances goes through here.
//!
//! # The path of one Transfer
//!
//! 1. **Submit.** The handler (`treasury/transport.rs`) parses the request
//!    into a [`Command::Transfer`]; `Treasury::execute`
//!    (`treasury/operations.rs`) checks the caller's role and calls
//!    [`Ledger::submit`], which puts the command on the writer queue (an mpsc
//!    channel) and waits, at most the deadline, for the answer on a oneshot
//!    channel.
//! 2. **Batch** (`writer.rs`). A writer task drains the queue: whatever has
//!    queued, up to [`MAX_BATCH`] commands, becomes one batch applied in one
//!    database write transaction (group commit: under load many small commits
//!    become a few large ones; with one caller it is one ordinary
//!    transaction).
//! 3. **Lock** (`inputs.rs`, I/O). Advisory locks on the batch's idempotency
//!    keys, then the stored keys, the pending transactions that Confirm and
//!    Fail resolve, the deposit hashes already taken, the wallets in id order
//!    and the system accounts in code order. Every writer and every replica
//!    locks in this one order, so they cannot deadlock each other.
//! 4. **Settle** (`settle.rs`, pure). Each command in arrival order: a
//!    repeated request id is answered with the original transaction;
//!    otherwise its plan (`plan/`, one function per command) decides the
//!    transaction and its legs, and the books (`books.rs`) post the legs all
//!    or none. A command that fails (insufficient funds, a wallet the caller
//!    does not own) is rejected alone; later commands see the balances its
//!    neighbours left. Unit-tested without a database in `tests.rs`.
//! 5. **Write** (`write.rs`, I/O). The balances that moved, the new
//!    transactions, the resolutions, the balanced entries and the idempotency
//!    keys, through `treasury/store.rs`.
//! 6. **Commit** (`writer.rs`), with one audit event per applied command, in
//!    the same transaction.
//! 7. **Invalidate** the cached reads the batch changed (the wallets whose
//!    balances moved, and the treasury summary: see [`crate::cache`]), before
//!    any caller is answered.
//! 8. **Answer** each caller with its transaction or its own error.
//!
//! If a whole batch fails (a constraint the planner did not foresee, a
//! concurrent replica taking the same idempotency key), each command is
//! retried alone so one bad command cannot fail its neighbours. A batch that
//! outlives the deadline is abandoned and its callers get UNAVAILABLE (a
//! retry with the same request id applies once).
//!
//! # Groups
//!
//! `CreateTransfers` submits its transfers as one group (`group.rs`): one
//! submission on the queue, so the whole group lands in one batch, one
//! database transaction and one commit. Settling checkpoints the batch
//! before an atomic group and restores the checkpoint when one of its
//! commands fails; the group's results are written under its own key, so its
//! retry answers the same. A batch takes at most
//! `MAX_ITEMS_PER_TRANSACTION` commands; a group is never split.
//!
//! # Inside another service's unit of work
//!
//! Services whose own change must commit together with money (ending a
//! mining session and minting its earnings) call [`apply_in`], which runs
//! steps 3 to 5 inside their [`Audited`] unit of work and adds what it
//! changed to the unit's invalidation. The contract is the type: the only
//! way to apply money in someone else's transaction is inside a unit whose
//! commit writes the caller's audit event and then invalidates the cache.
//! They lock their own rows first:
//!
//! ```ignore
//! let mut transaction = Audited::begin(&db, &cache).await?;
//! let outcomes = ledger::apply_in(&mut transaction, &policy, &requests).await?;
//! transaction.commit(caller, change).await?; // audit, commit, invalidate
//! ```

mod books;
mod group;
mod inputs;
mod plan;
mod settle;
#[cfg(test)]
mod tests;
mod write;
mod writer;

use chrono::{SubsecRound, Utc};

use super::domain::{AllocationPolicy, Command, Transaction};
use crate::audit::Audited;
use crate::auth::Principal;
use crate::cache::Invalidation;
use crate::error::Error;
use crate::money::RequestId;

pub use group::Group;
pub use writer::{Ledger, MAX_BATCH};

/// One command as the ledger receives it: who asks, under which
/// idempotency key, and what.
type Request = (Principal, RequestId, Command);

/// What the write step did: one outcome per request, in order, and the
/// cached reads it changed.
#[derive(Debug)]
struct Applied {
    outcomes: Vec<Result<Transaction, Error>>,
    invalidation: Invalidation,
    /// One per group, in order.
    groups: Vec<group::GroupSettled>,
}

/// Applies commands inside a unit of work the caller owns, for services
/// whose own change must commit together with the money (ending a mining
/// session and minting its earnings). The caller locks its own rows before
/// calling and commits the unit afterwards; the cached reads the commands
/// change are added to the unit, which invalidates them after its commit.
/// Role checks are the caller's. `Err` only when the transaction itself
/// failed; a command the ledger refuses is an `Err` in its outcome, one per
/// request, in order.
pub async fn apply_in(
    work: &mut Audited,
    policy: &AllocationPolicy,
    requests: &[(Principal, RequestId, Command)],
) -> Result<Vec<Result<Transaction, Error>>, Error> {
    Ok(apply_groups(work, policy, requests, &[]).await?.0)
}

/// [`apply_in`] for requests some of which form groups (`spans`): the
/// outcomes, one per request, and what settling decided for each group.
async fn apply_groups(
    work: &mut Audited,
    policy: &AllocationPolicy,
    requests: &[Request],
    spans: &[group::GroupSpan],
) -> Result<writer::Outcomes, Error> {
    // PostgreSQL keeps microseconds: answer with what a later read returns.
    let now = Utc::now().trunc_subsecs(6);
    let group_keys: Vec<_> = spans.iter().map(|span| span.key.clone()).collect();
    let inputs = inputs::lock(work, requests, &group_keys).await?;
    let settlement = settle::settle_groups(inputs, policy, requests, spans, now);
    let Applied {
        outcomes,
        invalidation,
        groups,
    } = write::write(work, settlement).await?;
    work.invalidate(invalidation);
    Ok((outcomes, groups))
}

/// [`apply_in`] for one command: its transaction, or the ledger's reason for
/// refusing it (insufficient funds, a wallet the caller does not own).
pub async fn apply_one(
    work: &mut Audited,
    policy: &AllocationPolicy,
    caller: &Principal,
    request_id: RequestId,
    command: Command,
) -> Result<Transaction, Error> {
    apply_in(work, policy, &[(caller.clone(), request_id, command)])
        .await?
        .pop()
        .unwrap_or_else(|| Err(Error::internal("the ledger gave no outcome")))
}
