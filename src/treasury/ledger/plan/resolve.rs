//! Resolving a pending transaction: Confirm posts what was held back (a
//! deposit's credit, a withdrawal's payout, a mining claim's allocation);
//! Fail returns a withdrawal's hold. Each pending transaction resolves once.

use chrono::{DateTime, SubsecRound, Utc};
use uuid::Uuid;

use super::mint::mint_legs;
use super::{Context, Plan, available, leg};
use crate::error::Error;
use crate::treasury::domain::{
    Account, Bucket, Leg, SystemAccount, Transaction, TransactionKind, TransactionStatus,
};

pub(super) fn plan_confirm(
    context: &Context<'_>,
    transaction_id: Uuid,
    (gas_used, gas_price_wei): (i64, i64),
    confirmed_at: Option<DateTime<Utc>>,
    backing_reference: &Option<String>,
) -> Result<Plan, Error> {
    let mut transaction = pending_transaction(context, transaction_id)?;
    check_claim_resolver(context, &transaction)?;
    check_backing_reference(transaction.kind, backing_reference)?;
    let confirmed_at = confirmed_at.map_or(context.now, |at| at.trunc_subsecs(6));
    if confirmed_at < transaction.created_at {
        return Err(Error::invalid(
            "confirm_time",
            "must not be before the transaction was created",
        ));
    }
    let legs = confirmation_legs(&transaction)?;
    transaction.status = TransactionStatus::Confirmed;
    transaction.gas_used = Some(gas_used);
    transaction.gas_price_wei = Some(gas_price_wei);
    transaction.confirmed_at = Some(confirmed_at);
    transaction.processed_at = Some(context.now);
    if transaction.kind == TransactionKind::Mint {
        transaction.backing_reference = backing_reference.clone();
    }
    Ok(Plan {
        transaction,
        legs,
        resolves: true,
    })
}

pub(super) fn plan_fail(
    context: &Context<'_>,
    transaction_id: Uuid,
    reason: &str,
) -> Result<Plan, Error> {
    let mut transaction = pending_transaction(context, transaction_id)?;
    check_claim_resolver(context, &transaction)?;
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
    transaction.reason = reason.to_owned();
    transaction.processed_at = Some(context.now);
    Ok(Plan {
        transaction,
        legs: legs.into_iter().collect(),
        resolves: true,
    })
}

/// A pending mint is confirmed only with the reference of the inflow that
/// backs it; nothing else carries one.
fn check_backing_reference(
    kind: TransactionKind,
    backing_reference: &Option<String>,
) -> Result<(), Error> {
    match (kind, backing_reference) {
        (TransactionKind::Mint, None) => Err(Error::invalid(
            "backing_reference",
            "is required to confirm a mint: the reference of the inflow that backs it",
        )),
        (TransactionKind::Mint, Some(_)) | (_, None) => Ok(()),
        (_, Some(_)) => Err(Error::invalid(
            "backing_reference",
            "only a pending mint is confirmed with a backing reference",
        )),
    }
}

/// What a confirmation posts: a deposit's credit from the external account,
/// a withdrawal's hold paid out to it, or a mining claim's allocation.
fn confirmation_legs(transaction: &Transaction) -> Result<Vec<Leg>, Error> {
    let micros = transaction.amount_micros;
    let external = available(Account::System(SystemAccount::External));
    match (
        transaction.kind,
        transaction.from_wallet,
        transaction.to_wallet,
    ) {
        (TransactionKind::Deposit, _, Some(to)) => {
            Ok(leg(external, available(Account::Wallet(to)), micros)
                .into_iter()
                .collect())
        }
        (TransactionKind::Withdrawal, Some(from), _) => {
            Ok(
                leg((Account::Wallet(from), Bucket::Pending), external, micros)
                    .into_iter()
                    .collect(),
            )
        }
        (TransactionKind::Mint, _, to) => match &transaction.allocation {
            Some(split) => Ok(mint_legs(split, to)),
            None => Err(Error::internal(format!(
                "pending mint {} has no allocation",
                transaction.id
            ))),
        },
        _ => Err(Error::internal(format!(
            "pending transaction {} has an impossible shape",
            transaction.id
        ))),
    }
}

/// Four eyes on new money: nobody confirms or rejects a mining claim paid
/// to their own wallet.
fn check_claim_resolver(context: &Context<'_>, transaction: &Transaction) -> Result<(), Error> {
    let paid_to_caller = transaction
        .to_wallet
        .and_then(|wallet| context.books.wallet(&wallet))
        .is_some_and(|wallet| wallet.owner == context.caller.user_id);
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
