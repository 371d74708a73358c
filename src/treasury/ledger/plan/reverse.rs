//! Reversal: a confirmed transaction's entries posted negated, as one new
//! `reversal` transaction linked to it. Whatever the original was made of —
//! one leg (a transfer, a burn), a mint's allocation split, several legs —
//! its reversal is every leg with source and destination swapped, posted all
//! or none, so balances refuse it when the AZR has moved on (the recipient
//! spent it) and the books are as if the original had not been, issuance
//! included. At most once: refused here when the original is reversed
//! already (in the database or earlier in the batch), and a unique index on
//! the link refuses a second reversal that any race would let through.

use uuid::Uuid;

use super::{Context, Plan};
use crate::error::Error;
use crate::treasury::domain::{Leg, Note, Transaction, TransactionKind, TransactionStatus};

pub(super) fn plan_reverse(
    context: &Context<'_>,
    transaction_id: Uuid,
    note: &Note,
) -> Result<Plan, Error> {
    let original = context
        .referenced
        .get(&transaction_id)
        .ok_or_else(|| Error::not_found("transaction", transaction_id))?;
    check_reversible(original)?;
    // Confirmed when the batch locked it: a transaction confirmed by an
    // earlier command of this same batch has no entries to read yet.
    let legs = context
        .posted
        .get(&transaction_id)
        .filter(|legs| !legs.is_empty())
        .ok_or_else(|| {
            refused(
                "NOT_CONFIRMED",
                format!("transaction {transaction_id} has no posted entries yet; retry"),
            )
        })?;
    let mut reversal =
        context.new_transaction(TransactionKind::Reversal, original.amount_micros, note);
    reversal.reverses = Some(original.id);
    reversal.from_wallet = original.to_wallet;
    reversal.to_wallet = original.from_wallet;
    reversal.from_system = original.to_system;
    reversal.to_system = original.from_system;
    Ok(Plan {
        transaction: reversal,
        legs: legs.iter().map(negated).collect(),
        resolves: false,
    })
}

fn negated(leg: &Leg) -> Leg {
    Leg {
        from: leg.to,
        to: leg.from,
        micros: leg.micros,
    }
}

fn refused(reason: &'static str, message: String) -> Error {
    Error::FailedPrecondition { reason, message }
}

/// Only a confirmed transaction the treasury alone records is reversed:
/// chain deposits and withdrawals are settled on the chain, and a mining
/// mint or a payment to or from a pool is the record of another service
/// (a session's earnings, a paid invoice or compensation), which would
/// then disagree with the ledger.
fn check_reversible(original: &Transaction) -> Result<(), Error> {
    let id = original.id;
    match original.status {
        TransactionStatus::Confirmed => {}
        TransactionStatus::Pending => {
            return Err(refused(
                "NOT_CONFIRMED",
                format!("transaction {id} is pending: fail it with FailTransaction"),
            ));
        }
        TransactionStatus::Failed => {
            return Err(refused(
                "NOT_CONFIRMED",
                format!("transaction {id} failed: nothing of it is posted"),
            ));
        }
    }
    if let Some(reversal) = original.reversed_by {
        return Err(refused(
            "ALREADY_REVERSED",
            format!("transaction {id} is already reversed by {reversal}"),
        ));
    }
    let other_record = original.mining_session.is_some()
        || (original.kind == TransactionKind::Transfer
            && (original.from_system.is_some() || original.to_system.is_some()));
    let not_reversible = match original.kind {
        TransactionKind::Reversal => Some("a reversal is not reversed; it would undo itself"),
        TransactionKind::Deposit | TransactionKind::Withdrawal => {
            Some("a chain deposit or withdrawal is settled on the chain")
        }
        _ if other_record => Some(
            "it settles another service's record (a mining session, a pool payment); undo it there",
        ),
        _ => None,
    };
    match not_reversible {
        Some(why) => Err(refused(
            "NOT_REVERSIBLE",
            format!("transaction {id} cannot be reversed: {why}"),
        )),
        None => Ok(()),
    }
}
