//! Staking: AZR moves inside one wallet the caller owns, between its
//! available and staked buckets. Staked AZR is not available, so nothing
//! that spends (a transfer, a withdrawal, a burn, a payment) can reach it
//! until it is unstaked.

use uuid::Uuid;

use super::{Context, Plan, leg};
use crate::error::Error;
use crate::money::Amount;
use crate::treasury::domain::{Account, Bucket, Note, TransactionKind};

pub(super) fn plan_stake(
    context: &Context<'_>,
    wallet: Uuid,
    amount: Amount,
    note: &Note,
) -> Result<Plan, Error> {
    within_wallet(context, TransactionKind::Stake, wallet, amount, note)
}

pub(super) fn plan_unstake(
    context: &Context<'_>,
    wallet: Uuid,
    amount: Amount,
    note: &Note,
) -> Result<Plan, Error> {
    within_wallet(context, TransactionKind::Unstake, wallet, amount, note)
}

fn within_wallet(
    context: &Context<'_>,
    kind: TransactionKind,
    wallet: Uuid,
    amount: Amount,
    note: &Note,
) -> Result<Plan, Error> {
    context.require_owned(wallet)?;
    let account = Account::Wallet(wallet);
    let (from, to) = match kind {
        TransactionKind::Unstake => (Bucket::Staked, Bucket::Available),
        _ => (Bucket::Available, Bucket::Staked),
    };
    let mut transaction = context.new_transaction(kind, amount.micros(), note);
    transaction.from_wallet = Some(wallet);
    transaction.to_wallet = Some(wallet);
    Ok(Plan {
        transaction,
        legs: leg((account, from), (account, to), amount.micros())
            .into_iter()
            .collect(),
        resolves: false,
    })
}
