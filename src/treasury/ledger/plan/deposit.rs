//! Deposit: AZR bridged in from the chain (the external account) to a
//! wallet, confirmed at once or pending until a treasurer confirms it.

use uuid::Uuid;

use super::{Context, Plan, available, leg, mark_pending};
use crate::error::Error;
use crate::money::Amount;
use crate::treasury::domain::{Account, Note, SystemAccount, TransactionKind};

pub(super) fn plan_deposit(
    context: &Context<'_>,
    to_wallet: Uuid,
    amount: Amount,
    tx_hash: &Option<String>,
    pending: bool,
    note: &Note,
) -> Result<Plan, Error> {
    context.require_wallet(to_wallet)?;
    // One chain transaction is deposited once.
    if tx_hash
        .as_ref()
        .is_some_and(|hash| context.taken_hashes.contains(hash))
    {
        return Err(Error::AlreadyExists {
            entity: "transaction",
            field: "tx_hash".into(),
        });
    }
    let mut transaction = context.new_transaction(TransactionKind::Deposit, amount.micros(), note);
    transaction.to_wallet = Some(to_wallet);
    if let Some(hash) = tx_hash {
        transaction.tx_hash = hash.clone();
    }
    let legs = if pending {
        mark_pending(&mut transaction);
        Vec::new()
    } else {
        let external = available(Account::System(SystemAccount::External));
        leg(
            external,
            available(Account::Wallet(to_wallet)),
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
