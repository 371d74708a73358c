//! Writing a settled batch, in the caller's database transaction: the
//! balances that moved, the new and resolved transactions, the entries,
//! the idempotency keys and the totals; then the originals of replayed requests are read
//! back, which may be rows this batch has just written.

use std::sync::atomic::{AtomicU16, Ordering};

use sea_orm::DatabaseTransaction;
use uuid::Uuid;

use super::Applied;
use super::settle::{Outcome, Settlement, replay_invalidation};
use crate::error::Error;
use crate::treasury::domain::Transaction;
use crate::treasury::store;

pub(super) async fn write(
    transaction: &DatabaseTransaction,
    settlement: Settlement,
) -> Result<Applied, Error> {
    let Settlement {
        outcomes,
        posted_at,
        wallet_balances,
        system_balances,
        created,
        resolved,
        entries,
        other_wallets,
        new_keys,
        totals,
        mut invalidation,
        groups,
        new_groups,
    } = settlement;
    // The rare parts first (mints, burns and chain resolutions), then the
    // rest, which every transfer has, at once.
    for (account, micros) in system_balances {
        store::update_system_balance(transaction, account, micros).await?;
    }
    for record in &resolved {
        store::update_resolution(transaction, record).await?;
    }
    let span = tracing::info_span!(
        target: crate::telemetry::TARGET,
        "db.write_batch",
        db.system = crate::db::backend_name_of(transaction),
        transactions = created.len(),
    );
    let writing = store::write_batch(
        transaction,
        store::BatchWrites {
            wallet_balances: &wallet_balances,
            transactions: &created,
            entries: &entries,
            other_wallets: &other_wallets,
            keys: new_keys,
            totals: &totals,
            slot: next_slot(),
            posted_at,
        },
    );
    tracing::Instrument::instrument(writing, span).await?;
    store::insert_transfer_batches(transaction, new_groups, posted_at).await?;
    let mut answers = Vec::with_capacity(outcomes.len());
    for outcome in outcomes {
        answers.push(match outcome {
            Outcome::Settled(settled) => Ok(*settled),
            Outcome::Rejected(error) => Err(error),
            Outcome::Replay(transaction_id) => {
                let original = replayed(transaction, transaction_id).await?;
                invalidation.merge(replay_invalidation(&original));
                Ok(original)
            }
        });
    }
    Ok(Applied {
        outcomes: answers,
        invalidation,
        groups,
    })
}

/// How many rows each total is spread over. Each batch adds to the rows of
/// one slot, taken in turn, so that batches in flight together (one per
/// ledger writer, and the services that post in their own transactions)
/// rarely wait for each other's commit on the same rows; sharing a slot is
/// only slower, never wrong.
const TOTALS_SLOTS: u16 = 16;

fn next_slot() -> i16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Below 16: fits.
    (NEXT.fetch_add(1, Ordering::Relaxed) % TOTALS_SLOTS) as i16
}

async fn replayed(
    transaction: &DatabaseTransaction,
    transaction_id: Uuid,
) -> Result<Transaction, Error> {
    store::find_transaction(transaction, transaction_id)
        .await?
        .ok_or_else(|| {
            Error::internal(format!(
                "idempotency key points at missing transaction {transaction_id}"
            ))
        })
}
