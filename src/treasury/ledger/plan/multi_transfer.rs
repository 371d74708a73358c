//! A multi-transfer: one wallet pays several wallets, and optionally a fee
//! to the treasury reserve, in one transaction. Its legs balance by
//! construction (each moves an amount from the source to one payee) and post
//! all or none, so the source is debited the sum or nothing.

use uuid::Uuid;

use super::{Context, Plan, available, leg};
use crate::error::Error;
use crate::money::Amount;
use crate::treasury::domain::{Account, Note, SystemAccount, TransactionKind};

pub(super) fn plan_multi_transfer(
    context: &Context<'_>,
    from_wallet: Uuid,
    payments: &[(Uuid, Amount)],
    fee: Option<Amount>,
    note: &Note,
) -> Result<Plan, Error> {
    context.require_owned(from_wallet)?;
    for (to_wallet, _) in payments {
        context.require_wallet(*to_wallet)?;
    }
    let total = payments
        .iter()
        .map(|(_, amount)| amount.micros())
        .chain(fee.map(Amount::micros))
        .try_fold(0i64, i64::checked_add)
        .ok_or_else(|| Error::invalid("payments", "the total is out of range"))?;
    let mut transaction = context.new_transaction(TransactionKind::MultiTransfer, total, note);
    transaction.from_wallet = Some(from_wallet);
    let source = available(Account::Wallet(from_wallet));
    let legs = payments
        .iter()
        .map(|(to_wallet, amount)| {
            leg(
                source,
                available(Account::Wallet(*to_wallet)),
                amount.micros(),
            )
        })
        .chain(fee.map(|fee| {
            leg(
                source,
                available(Account::System(SystemAccount::TreasuryReserve)),
                fee.micros(),
            )
        }))
        .flatten()
        .collect();
    Ok(Plan {
        transaction,
        legs,
        resolves: false,
    })
}
