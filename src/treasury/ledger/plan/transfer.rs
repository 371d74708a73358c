//! Transfers: between wallets, and between a wallet and a system pool (pool
//! payouts and payments, which only other services issue).

use uuid::Uuid;

use super::{Context, Plan, available, leg};
use crate::error::Error;
use crate::money::Amount;
use crate::treasury::domain::{Account, Note, SystemAccount, TransactionKind};

pub(super) fn plan_transfer(
    context: &Context<'_>,
    from_wallet: Uuid,
    to_wallet: Uuid,
    amount: Amount,
    note: &Note,
) -> Result<Plan, Error> {
    context.require_owned(from_wallet)?;
    context.require_wallet(to_wallet)?;
    Ok(transfer(
        context,
        amount,
        Account::Wallet(from_wallet),
        Account::Wallet(to_wallet),
        note,
    ))
}

pub(super) fn plan_pool_payout(
    context: &Context<'_>,
    pool: SystemAccount,
    to_wallet: Uuid,
    amount: Amount,
    note: &Note,
) -> Result<Plan, Error> {
    context.require_wallet(to_wallet)?;
    Ok(transfer(
        context,
        amount,
        Account::System(pool),
        Account::Wallet(to_wallet),
        note,
    ))
}

pub(super) fn plan_pool_payment(
    context: &Context<'_>,
    from_wallet: Uuid,
    pool: SystemAccount,
    amount: Amount,
    note: &Note,
) -> Result<Plan, Error> {
    context.require_owned(from_wallet)?;
    Ok(transfer(
        context,
        amount,
        Account::Wallet(from_wallet),
        Account::System(pool),
        note,
    ))
}

/// A confirmed `transfer` from one account's available balance to
/// another's: between wallets, or between a wallet and a system pool.
fn transfer(
    context: &Context<'_>,
    amount: Amount,
    from: Account,
    to: Account,
    note: &Note,
) -> Plan {
    let mut transaction = context.new_transaction(TransactionKind::Transfer, amount.micros(), note);
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
