//! Withdrawal: AZR leaving for the chain. It is held in the wallet's pending
//! bucket until a treasurer confirms it (paid out) or fails it (returned).

use uuid::Uuid;

use super::{Context, Plan, leg, mark_pending};
use crate::error::Error;
use crate::money::Amount;
use crate::treasury::domain::{Account, Bucket, Note, TransactionKind};

pub(super) fn plan_withdraw(
    context: &Context<'_>,
    from_wallet: Uuid,
    amount: Amount,
    destination_address: &str,
    note: &Note,
) -> Result<Plan, Error> {
    context.require_owned(from_wallet)?;
    let mut transaction =
        context.new_transaction(TransactionKind::Withdrawal, amount.micros(), note);
    mark_pending(&mut transaction);
    transaction.from_wallet = Some(from_wallet);
    transaction.destination_address = Some(destination_address.to_owned());
    let wallet = Account::Wallet(from_wallet);
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
