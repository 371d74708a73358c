//! Mint: new AZR from issuance, split by the allocation policy.

use uuid::Uuid;

use super::{Context, Plan, available, leg, mark_pending};
use crate::error::Error;
use crate::money::Amount;
use crate::treasury::domain::{Account, Allocation, Leg, Note, SystemAccount, TransactionKind};

pub(super) fn plan_mint(
    context: &Context<'_>,
    amount: Amount,
    to_wallet: Option<Uuid>,
    note: &Note,
    mining_session: Option<Uuid>,
    pending: bool,
    backing_reference: &Option<String>,
) -> Result<Plan, Error> {
    if let Some(wallet) = to_wallet {
        context.require_wallet(wallet)?;
    }
    if pending && mining_session.is_none() {
        return Err(Error::internal("only a mining claim may mint pending"));
    }
    let split = context.policy.split(amount);
    let mut transaction = context.new_transaction(TransactionKind::Mint, amount.micros(), note);
    transaction.allocation = Some(split);
    transaction.mining_session = mining_session;
    transaction.to_wallet = to_wallet;
    transaction.backing_reference = backing_reference.clone();
    let legs = if pending {
        // A claim: recorded with its allocation, posted on confirmation.
        mark_pending(&mut transaction);
        Vec::new()
    } else {
        mint_legs(&split, to_wallet)
    };
    Ok(Plan {
        transaction,
        legs,
        resolves: false,
    })
}

/// The entries of a mint: the allocation from issuance to the treasury
/// reserve, the founder pool, burned, and the circulation share to the
/// recipient wallet (or the circulation pool).
pub(super) fn mint_legs(split: &Allocation, to_wallet: Option<Uuid>) -> Vec<Leg> {
    let issuance = available(Account::System(SystemAccount::Issuance));
    let recipient = match to_wallet {
        Some(wallet) => Account::Wallet(wallet),
        None => Account::System(SystemAccount::CirculationPool),
    };
    [
        leg(
            issuance,
            available(Account::System(SystemAccount::TreasuryReserve)),
            split.treasury,
        ),
        leg(
            issuance,
            available(Account::System(SystemAccount::FounderPool)),
            split.founder,
        ),
        leg(
            issuance,
            available(Account::System(SystemAccount::Burned)),
            split.burn,
        ),
        leg(issuance, available(recipient), split.circulation),
    ]
    .into_iter()
    .flatten()
    .collect()
}
