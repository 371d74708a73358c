//! Burn: AZR leaves a wallet or a system pool for the burned account.

use super::{Context, Plan, available, leg};
use crate::error::Error;
use crate::money::Amount;
use crate::treasury::domain::{Account, BurnSource, Note, SystemAccount, TransactionKind};

pub(super) fn plan_burn(
    context: &Context<'_>,
    amount: Amount,
    source: &BurnSource,
    note: &Note,
) -> Result<Plan, Error> {
    let mut transaction = context.new_transaction(TransactionKind::Burn, amount.micros(), note);
    let from = match *source {
        BurnSource::Wallet(wallet) => {
            context.require_wallet(wallet)?;
            transaction.from_wallet = Some(wallet);
            Account::Wallet(wallet)
        }
        BurnSource::System(system) => {
            transaction.from_system = Some(system);
            Account::System(system)
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
