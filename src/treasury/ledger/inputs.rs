//! Locking a batch's inputs: everything settling reads, read under lock in
//! one fixed order — the idempotency keys' advisory locks, the stored keys,
//! the referenced pending transactions, the taken deposit hashes, the wallets
//! in id order, then the system accounts in code order. Every batch of every
//! writer and replica takes its locks in this order, so none deadlock.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use sea_orm::DatabaseTransaction;
use uuid::Uuid;

use super::Request;
use super::books::Books;
use super::group::StoredItem;
use crate::error::Error;
use crate::treasury::domain::{Account, BurnSource, Command, Leg, Transaction, TransactionStatus};
use crate::treasury::store;

/// What a batch read under lock: all that settling needs.
pub(super) struct Inputs {
    /// Stored idempotency keys: (caller, request id) → (fingerprint,
    /// transaction).
    pub(super) stored_keys: HashMap<(Uuid, String), (String, Uuid)>,
    /// The transactions that Confirm, Fail and Reverse commands name, by id.
    pub(super) referenced: HashMap<Uuid, Transaction>,
    /// The entries of the confirmed transactions that Reverse commands
    /// name, as posted: what their reversals negate.
    pub(super) posted: HashMap<Uuid, Vec<Leg>>,
    /// The deposit hashes of the batch that are already stored.
    pub(super) taken_hashes: HashSet<String>,
    pub(super) books: Books,
    /// Stored groups among the batch's (caller, batch request id) keys:
    /// their fingerprint and results.
    pub(super) stored_groups: HashMap<(Uuid, String), (String, Vec<StoredItem>)>,
}

pub(super) async fn lock(
    transaction: &DatabaseTransaction,
    requests: &[Request],
    group_keys: &[(Uuid, String)],
) -> Result<Inputs, Error> {
    let keys = idempotency_keys(requests);
    // A group's key shares the advisory locks of the items' keys (a clash
    // of hashes only serialises two batches), taken in the one order.
    let all_keys: Vec<(Uuid, String)> = keys.iter().chain(group_keys).cloned().collect();
    store::lock_idempotency_keys(transaction, &all_keys).await?;
    let stored_groups = stored_groups(transaction, group_keys).await?;
    let stored_keys = store::find_idempotency_keys(transaction, &keys).await?;
    let referenced = store::lock_transactions(transaction, &referenced_ids(requests)).await?;
    let posted = store::posted_legs(transaction, &reversed_ids(requests, &referenced)).await?;
    let taken_hashes = store::existing_tx_hashes(transaction, &deposit_hashes(requests)).await?;
    let mut wallet_ids = wallets_to_lock(requests, &referenced);
    wallet_ids.extend(posted_wallets(&posted));
    wallet_ids.sort_unstable();
    wallet_ids.dedup();
    let wallets = store::lock_wallets(transaction, &wallet_ids).await?;
    let system = if needs_system_accounts(requests) {
        store::lock_system_accounts(transaction).await?
    } else {
        BTreeMap::new()
    };
    Ok(Inputs {
        stored_keys,
        referenced,
        posted,
        taken_hashes,
        books: Books::new(wallets, system),
        stored_groups,
    })
}

async fn stored_groups(
    transaction: &DatabaseTransaction,
    group_keys: &[(Uuid, String)],
) -> Result<HashMap<(Uuid, String), (String, Vec<StoredItem>)>, Error> {
    store::find_transfer_batches(transaction, group_keys)
        .await?
        .into_iter()
        .map(|(key, stored)| {
            let results: Vec<StoredItem> =
                serde_json::from_str(&stored.results).map_err(|error| {
                    Error::internal(format!("stored batch {} is unreadable: {error}", key.1))
                })?;
            Ok((key, (stored.fingerprint, results)))
        })
        .collect()
}

/// (caller, request id) of every request.
pub(super) fn idempotency_keys(requests: &[Request]) -> Vec<(Uuid, String)> {
    requests
        .iter()
        .map(|(caller, request_id, _)| (caller.user_id, request_id.as_str().to_owned()))
        .collect()
}

/// The pending transactions the batch resolves.
pub(super) fn referenced_ids(requests: &[Request]) -> Vec<Uuid> {
    requests
        .iter()
        .filter_map(|(_, _, command)| match command {
            Command::Confirm { transaction_id, .. }
            | Command::Fail { transaction_id, .. }
            | Command::Reverse { transaction_id, .. } => Some(*transaction_id),
            _ => None,
        })
        .collect()
}

/// The transactions the batch reverses that were confirmed when locked:
/// those whose entries are read.
pub(super) fn reversed_ids(
    requests: &[Request],
    referenced: &HashMap<Uuid, Transaction>,
) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = requests
        .iter()
        .filter_map(|(_, _, command)| match command {
            Command::Reverse { transaction_id, .. } => Some(*transaction_id),
            _ => None,
        })
        .filter(|id| {
            referenced
                .get(id)
                .is_some_and(|found| found.status == TransactionStatus::Confirmed)
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Every wallet that posted entries name: a reversal moves them all back.
pub(super) fn posted_wallets(posted: &HashMap<Uuid, Vec<Leg>>) -> Vec<Uuid> {
    posted
        .values()
        .flatten()
        .flat_map(|leg| [leg.from.0, leg.to.0])
        .filter_map(|account| match account {
            Account::Wallet(id) => Some(id),
            Account::System(_) => None,
        })
        .collect()
}

/// The chain hashes the batch's deposits claim.
pub(super) fn deposit_hashes(requests: &[Request]) -> Vec<String> {
    requests
        .iter()
        .filter_map(|(_, _, command)| match command {
            Command::Deposit {
                tx_hash: Some(hash),
                ..
            } => Some(hash.clone()),
            _ => None,
        })
        .collect()
}

/// Every wallet the batch may read or move, in id order: those its commands
/// name and those of the transactions it resolves.
pub(super) fn wallets_to_lock(
    requests: &[Request],
    referenced: &HashMap<Uuid, Transaction>,
) -> Vec<Uuid> {
    let mut wallet_ids = BTreeSet::new();
    for (_, _, command) in requests {
        match command {
            Command::Mint { to_wallet, .. } => wallet_ids.extend(*to_wallet),
            Command::Burn {
                source: BurnSource::Wallet(wallet),
                ..
            } => {
                wallet_ids.insert(*wallet);
            }
            Command::Burn { .. } => {}
            Command::Transfer {
                from_wallet,
                to_wallet,
                ..
            } => wallet_ids.extend([*from_wallet, *to_wallet]),
            Command::Deposit { to_wallet, .. } | Command::PoolPayout { to_wallet, .. } => {
                wallet_ids.insert(*to_wallet);
            }
            Command::Withdraw { from_wallet, .. } | Command::PoolPayment { from_wallet, .. } => {
                wallet_ids.insert(*from_wallet);
            }
            Command::Stake { wallet, .. } | Command::Unstake { wallet, .. } => {
                wallet_ids.insert(*wallet);
            }
            Command::Confirm { .. } | Command::Fail { .. } | Command::Reverse { .. } => {}
            Command::MultiTransfer {
                from_wallet,
                payments,
                ..
            } => {
                wallet_ids.insert(*from_wallet);
                wallet_ids.extend(payments.iter().map(|(to_wallet, _)| *to_wallet));
            }
        }
    }
    for referenced_transaction in referenced.values() {
        wallet_ids.extend(referenced_transaction.from_wallet);
        wallet_ids.extend(referenced_transaction.to_wallet);
    }
    wallet_ids.into_iter().collect()
}

/// Transfers between wallets, stakes and unstakes touch no system account;
/// a batch of only those does not lock the system accounts (which every
/// other batch contends for).
pub(super) fn needs_system_accounts(requests: &[Request]) -> bool {
    requests.iter().any(|(_, _, command)| {
        !matches!(
            command,
            Command::Transfer { .. }
                | Command::Stake { .. }
                | Command::Unstake { .. }
                | Command::MultiTransfer { fee: None, .. }
        )
    })
}
