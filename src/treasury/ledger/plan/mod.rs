//! What one command does, decided before anything is written: the
//! transaction it records and the legs it posts. One function per command,
//! each in the module of its kind; they read the books and never change them
//! (settling posts the legs, all or none).

mod burn;
mod deposit;
mod mint;
mod multi_transfer;
mod resolve;
mod reverse;
mod stake;
mod transfer;
mod withdraw;

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::books::Books;
use crate::auth::Principal;
use crate::error::Error;
use crate::money::RequestId;
use crate::treasury::domain::{
    Account, AllocationPolicy, Bucket, Command, Leg, Note, Transaction, TransactionKind,
    TransactionStatus,
};

/// What a command does.
pub(super) struct Plan {
    pub(super) transaction: Transaction,
    pub(super) legs: Vec<Leg>,
    /// True when the command resolves an existing transaction rather than
    /// creating one.
    pub(super) resolves: bool,
}

/// What a plan may read: who asks and under which key, the batch's clock
/// and policy, and the state the batch locked, as it stands before this
/// command.
pub(super) struct Context<'a> {
    pub(super) caller: &'a Principal,
    pub(super) request_id: &'a RequestId,
    pub(super) now: DateTime<Utc>,
    pub(super) policy: &'a AllocationPolicy,
    pub(super) books: &'a Books,
    /// The pending transactions the batch's Confirm and Fail commands name,
    /// as resolved so far in this batch.
    pub(super) referenced: &'a HashMap<Uuid, Transaction>,
    /// The entries of the transactions the batch's Reverse commands name.
    pub(super) posted: &'a HashMap<Uuid, Vec<Leg>>,
    /// Deposit hashes already stored or claimed earlier in this batch.
    pub(super) taken_hashes: &'a HashSet<String>,
}

/// Decides what `command` does, by its kind; an `Err` rejects this command
/// alone.
pub(super) fn plan(context: &Context<'_>, command: &Command) -> Result<Plan, Error> {
    match command {
        Command::Mint {
            amount,
            to_wallet,
            note,
            mining_session,
            pending,
            backing_reference,
        } => mint::plan_mint(
            context,
            *amount,
            *to_wallet,
            note,
            *mining_session,
            *pending,
            backing_reference,
        ),
        Command::Burn {
            amount,
            source,
            note,
        } => burn::plan_burn(context, *amount, source, note),
        Command::Transfer {
            from_wallet,
            to_wallet,
            amount,
            note,
        } => transfer::plan_transfer(context, *from_wallet, *to_wallet, *amount, note),
        Command::Deposit {
            to_wallet,
            amount,
            tx_hash,
            pending,
            note,
        } => deposit::plan_deposit(context, *to_wallet, *amount, tx_hash, *pending, note),
        Command::Withdraw {
            from_wallet,
            amount,
            destination_address,
            note,
        } => withdraw::plan_withdraw(context, *from_wallet, *amount, destination_address, note),
        Command::PoolPayout {
            pool,
            to_wallet,
            amount,
            note,
        } => transfer::plan_pool_payout(context, *pool, *to_wallet, *amount, note),
        Command::PoolPayment {
            from_wallet,
            pool,
            amount,
            note,
        } => transfer::plan_pool_payment(context, *from_wallet, *pool, *amount, note),
        Command::Confirm {
            transaction_id,
            gas_used,
            gas_price_wei,
            confirmed_at,
            backing_reference,
        } => resolve::plan_confirm(
            context,
            *transaction_id,
            (*gas_used, *gas_price_wei),
            *confirmed_at,
            backing_reference,
        ),
        Command::Fail {
            transaction_id,
            reason,
        } => resolve::plan_fail(context, *transaction_id, reason),
        Command::Reverse {
            transaction_id,
            note,
        } => reverse::plan_reverse(context, *transaction_id, note),
        Command::Stake {
            wallet,
            amount,
            note,
        } => stake::plan_stake(context, *wallet, *amount, note),
        Command::Unstake {
            wallet,
            amount,
            note,
        } => stake::plan_unstake(context, *wallet, *amount, note),
        Command::MultiTransfer {
            from_wallet,
            payments,
            fee,
            note,
        } => multi_transfer::plan_multi_transfer(context, *from_wallet, payments, *fee, note),
    }
}

impl Context<'_> {
    /// A confirmed transaction of `kind` by the caller, at the batch's time,
    /// with an internal hash; the plan fills in its accounts.
    fn new_transaction(&self, kind: TransactionKind, micros: i64, note: &Note) -> Transaction {
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
            request_id: self.request_id.as_str().to_owned(),
            requested_by: self.caller.user_id,
            created_at: self.now,
            confirmed_at: Some(self.now),
            processed_at: Some(self.now),
            mining_session: None,
            backing_reference: None,
            reverses: None,
            reversed_by: None,
        }
    }

    fn require_wallet(&self, id: Uuid) -> Result<(), Error> {
        match self.books.wallet(&id) {
            Some(_) => Ok(()),
            None => Err(Error::not_found("wallet", id)),
        }
    }

    /// The caller must own the source wallet; a missing or foreign wallet
    /// looks the same, so wallet ids cannot be probed.
    fn require_owned(&self, id: Uuid) -> Result<(), Error> {
        match self.books.wallet(&id) {
            Some(wallet) if wallet.owner == self.caller.user_id => Ok(()),
            _ => Err(Error::PermissionDenied),
        }
    }
}

fn internal_tx_hash(id: Uuid) -> String {
    format!("0x{}", hex::encode(Sha256::digest(id.as_bytes())))
}

fn available(account: Account) -> (Account, Bucket) {
    (account, Bucket::Available)
}

/// A leg moving `micros`, or none for zero (entries move positive amounts).
fn leg(from: (Account, Bucket), to: (Account, Bucket), micros: i64) -> Option<Leg> {
    (micros > 0).then_some(Leg { from, to, micros })
}

/// Awaiting resolution (ConfirmTransaction or FailTransaction): neither
/// confirmed nor processed yet.
fn mark_pending(transaction: &mut Transaction) {
    transaction.status = TransactionStatus::Pending;
    transaction.confirmed_at = None;
    transaction.processed_at = None;
}
