//! The ledger's SQL: locking reads for the ledger worker, its batched writes,
//! and the queries behind the read RPCs. Database errors are classified here.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::NotSet, ColumnTrait, Condition, ConnectionTrait, DbBackend,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Set, Statement,
};
use sha2::Digest;
use uuid::Uuid;

use super::domain::{
    Account, Allocation, AllocationPolicy, Balance, Bucket, KindTotals, Leg, Summary,
    SystemAccount, Transaction, TransactionFilter, TransactionKind, TransactionStatus,
};
use super::entities::{
    allocation_policy, idempotency_key, ledger_entry, ledger_transaction,
    ledger_transaction_wallet, system_account, wallet_balance,
};
use crate::db::classify;
use crate::error::Error;
use crate::pagination::PageRequest;

type Result<T> = std::result::Result<T, Error>;

fn corrupt(column: &str, value: &str) -> Error {
    Error::internal(format!("unexpected {column} {value:?} in the ledger"))
}

pub(super) fn transaction_from_row(row: ledger_transaction::Model) -> Result<Transaction> {
    let allocation = match (
        row.allocation_policy_version,
        row.alloc_treasury_micros,
        row.alloc_founder_micros,
        row.alloc_burn_micros,
        row.alloc_circulation_micros,
    ) {
        (Some(policy_version), Some(treasury), Some(founder), Some(burn), Some(circulation)) => {
            Some(Allocation {
                policy_version,
                treasury,
                founder,
                burn,
                circulation,
            })
        }
        _ => None,
    };
    Ok(Transaction {
        id: row.id,
        kind: TransactionKind::parse(&row.kind).ok_or_else(|| corrupt("kind", &row.kind))?,
        status: TransactionStatus::parse(&row.status)
            .ok_or_else(|| corrupt("status", &row.status))?,
        from_system: row
            .from_system_account
            .as_deref()
            .map(|code| SystemAccount::parse(code).ok_or_else(|| corrupt("system account", code)))
            .transpose()?,
        to_system: row
            .to_system_account
            .as_deref()
            .map(|code| SystemAccount::parse(code).ok_or_else(|| corrupt("system account", code)))
            .transpose()?,
        tx_hash: row.tx_hash,
        amount_micros: row.amount_azr_micros,
        allocation,
        from_wallet: row.from_wallet_id,
        to_wallet: row.to_wallet_id,
        destination_address: row.destination_address,
        gas_used: row.gas_used,
        gas_price_wei: row.gas_price_wei,
        reason: row.reason,
        metadata: row.metadata,
        request_id: row.request_id,
        requested_by: row.requested_by,
        created_at: row.created_at,
        confirmed_at: row.confirmed_at,
        processed_at: row.processed_at,
        mining_session: row.mining_session_id,
        backing_reference: row.backing_reference,
        reverses: row.reverses_transaction_id,
        reversed_by: None,
    })
}

fn transaction_to_row(transaction: &Transaction) -> ledger_transaction::Model {
    let allocation = transaction.allocation;
    ledger_transaction::Model {
        id: transaction.id,
        kind: transaction.kind.as_str().to_owned(),
        status: transaction.status.as_str().to_owned(),
        tx_hash: transaction.tx_hash.clone(),
        amount_azr_micros: transaction.amount_micros,
        // The peg: one AZR is one USD, and the database checks it.
        amount_usd_micros: transaction.amount_micros,
        allocation_policy_version: allocation.map(|a| a.policy_version),
        alloc_treasury_micros: allocation.map(|a| a.treasury),
        alloc_founder_micros: allocation.map(|a| a.founder),
        alloc_burn_micros: allocation.map(|a| a.burn),
        alloc_circulation_micros: allocation.map(|a| a.circulation),
        from_wallet_id: transaction.from_wallet,
        to_wallet_id: transaction.to_wallet,
        from_system_account: transaction
            .from_system
            .map(|account| account.as_str().to_owned()),
        to_system_account: transaction
            .to_system
            .map(|account| account.as_str().to_owned()),
        destination_address: transaction.destination_address.clone(),
        gas_used: transaction.gas_used,
        gas_price_wei: transaction.gas_price_wei,
        reason: transaction.reason.clone(),
        metadata: transaction.metadata.clone(),
        request_id: transaction.request_id.clone(),
        requested_by: transaction.requested_by,
        created_at: transaction.created_at,
        confirmed_at: transaction.confirmed_at,
        processed_at: transaction.processed_at,
        mining_session_id: transaction.mining_session,
        backing_reference: transaction.backing_reference.clone(),
        reverses_transaction_id: transaction.reverses,
    }
}

/// The newest allocation policy.
pub(super) async fn latest_policy(db: &impl ConnectionTrait) -> Result<Option<AllocationPolicy>> {
    Ok(allocation_policy::Entity::find()
        .order_by_desc(allocation_policy::Column::Version)
        .one(db)
        .await
        .map_err(classify)?
        .map(|row| AllocationPolicy {
            version: row.version,
            treasury_bp: row.treasury_bp,
            founder_bp: row.founder_bp,
            burn_bp: row.burn_bp,
            circulation_bp: row.circulation_bp,
        }))
}

pub(super) async fn insert_policy(
    db: &impl ConnectionTrait,
    policy: AllocationPolicy,
) -> Result<()> {
    allocation_policy::Entity::insert(allocation_policy::ActiveModel {
        version: Set(policy.version),
        treasury_bp: Set(policy.treasury_bp),
        founder_bp: Set(policy.founder_bp),
        burn_bp: Set(policy.burn_bp),
        circulation_bp: Set(policy.circulation_bp),
        created_at: Set(Utc::now()),
    })
    .exec_without_returning(db)
    .await
    .map_err(classify)?;
    Ok(())
}

/// Serialises batches that carry the same (caller, request id): one
/// transaction-scoped advisory lock per key, taken in one order by every
/// batch (so they cannot deadlock), before the keys are looked up. A batch
/// whose twin is in flight waits for it to commit and then finds its key: a
/// replay, instead of a unique violation that would fail the whole batch
/// into one-by-one retries. PostgreSQL only: SQLite write transactions are
/// serialised already.
pub(super) async fn lock_idempotency_keys(
    db: &impl ConnectionTrait,
    keys: &[(Uuid, String)],
) -> Result<()> {
    if keys.is_empty() || db.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    let mut locks: Vec<i64> = keys
        .iter()
        .map(|(caller, request_id)| {
            let digest = sha2::Sha256::new()
                .chain_update(caller.as_bytes())
                .chain_update(request_id.as_bytes())
                .finalize();
            i64::from_be_bytes(digest[..8].try_into().unwrap_or_default())
        })
        .collect();
    locks.sort_unstable();
    locks.dedup();
    // One text whatever the count, so it is prepared once per connection;
    // the aggregate takes the locks in the order the sorted rows arrive.
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT k FROM UNNEST($1::bigint[]) AS k ORDER BY k) AS sorted",
        [locks.into()],
    ))
    .await
    .map_err(classify)?;
    Ok(())
}

/// Stored idempotency keys among `keys`: (caller, request id) → (fingerprint,
/// transaction).
pub(super) async fn find_idempotency_keys(
    db: &impl ConnectionTrait,
    keys: &[(Uuid, String)],
) -> Result<HashMap<(Uuid, String), (String, Uuid)>> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    if db.get_database_backend() == DbBackend::Postgres {
        let (callers, requests): (Vec<Uuid>, Vec<String>) = keys.iter().cloned().unzip();
        let wanted: HashSet<&(Uuid, String)> = keys.iter().collect();
        // Both columns by `= ANY`, which the primary key's index answers
        // whatever the counts; pairs crossed from two keys are dropped here.
        let rows = db
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT caller_id, request_id, fingerprint, transaction_id FROM idempotency_keys \
                 WHERE caller_id = ANY($1) AND request_id = ANY($2)",
                [callers.into(), requests.into()],
            ))
            .await
            .map_err(classify)?;
        let found: Result<Vec<_>> = rows
            .iter()
            .map(|row| {
                let column = |error: sea_orm::DbErr| Error::internal(error.to_string());
                Ok((
                    (
                        row.try_get::<Uuid>("", "caller_id").map_err(column)?,
                        row.try_get::<String>("", "request_id").map_err(column)?,
                    ),
                    (
                        row.try_get::<String>("", "fingerprint").map_err(column)?,
                        row.try_get::<Uuid>("", "transaction_id").map_err(column)?,
                    ),
                ))
            })
            .collect();
        return Ok(found?
            .into_iter()
            .filter(|(key, _)| wanted.contains(key))
            .collect());
    }
    let condition = keys
        .iter()
        .fold(Condition::any(), |any, (caller, request)| {
            any.add(
                Condition::all()
                    .add(idempotency_key::Column::CallerId.eq(*caller))
                    .add(idempotency_key::Column::RequestId.eq(request.clone())),
            )
        });
    Ok(idempotency_key::Entity::find()
        .filter(condition)
        .all(db)
        .await
        .map_err(classify)?
        .into_iter()
        .map(|row| {
            (
                (row.caller_id, row.request_id),
                (row.fingerprint, row.transaction_id),
            )
        })
        .collect())
}

/// An entry as a batch writes it: its leg, and the buckets of each wallet
/// it moves once its posting (its transaction's legs in this batch) was
/// applied, so that a balance as of a time is one row away (migration
/// 000018). `None` on a system side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct NewEntry {
    pub transaction: Uuid,
    pub leg: Leg,
    pub source_after: Option<Balance>,
    pub destination_after: Option<Balance>,
}

/// What a batch adds to the ledger's totals: per kind and status, the
/// change in the number of transactions and in their volume, and the change
/// in what all wallets hold and have staked.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct TotalsChange {
    pub kinds: BTreeMap<(TransactionKind, TransactionStatus), KindChange>,
    pub held: i64,
    pub staked: i64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct KindChange {
    pub transactions: i64,
    pub micros: i64,
}

impl TotalsChange {
    pub(super) fn add(
        &mut self,
        kind: TransactionKind,
        status: TransactionStatus,
        sign: i64,
        micros: i64,
    ) {
        let change = self.kinds.entry((kind, status)).or_default();
        change.transactions += sign;
        change.micros += sign * micros;
    }
}

#[derive(Debug)]
pub(super) struct NewIdempotencyKey {
    pub caller: Uuid,
    pub request_id: String,
    pub operation: &'static str,
    pub fingerprint: String,
    pub transaction: Uuid,
}

pub(super) async fn insert_idempotency_keys(
    db: &impl ConnectionTrait,
    keys: Vec<NewIdempotencyKey>,
    now: DateTime<Utc>,
) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    idempotency_key::Entity::insert_many(keys.into_iter().map(|key| {
        idempotency_key::ActiveModel {
            caller_id: Set(key.caller),
            request_id: Set(key.request_id),
            operation: Set(key.operation.to_owned()),
            fingerprint: Set(key.fingerprint),
            transaction_id: Set(key.transaction),
            created_at: Set(now),
        }
    }))
    .exec_without_returning(db)
    .await
    .map_err(classify)?;
    Ok(())
}

/// Transactions by id, locked for update (PostgreSQL; SQLite's IMMEDIATE
/// transaction already holds the write lock).
pub(super) async fn lock_transactions(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Transaction>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut locked = ledger_transaction::Entity::find()
        .filter(ledger_transaction::Column::Id.is_in(ids.iter().copied()))
        .order_by_asc(ledger_transaction::Column::Id)
        .lock_exclusive()
        .all(db)
        .await
        .map_err(classify)?
        .into_iter()
        .map(transaction_from_row)
        .collect::<Result<Vec<_>>>()?;
    attach_reversed_by(db, &mut locked).await?;
    Ok(locked
        .into_iter()
        .map(|transaction| (transaction.id, transaction))
        .collect())
}

/// Fills in `reversed_by` from the reversals' links: the link lives on the
/// reversal only (its unique index is the at-most-once rule), so the
/// original's side is read, never stored twice.
pub(super) async fn attach_reversed_by(
    db: &impl ConnectionTrait,
    transactions: &mut [Transaction],
) -> Result<()> {
    if transactions.is_empty() {
        return Ok(());
    }
    use ledger_transaction::Column;
    let links: HashMap<Uuid, Uuid> = ledger_transaction::Entity::find()
        .select_only()
        .column(Column::ReversesTransactionId)
        .column(Column::Id)
        .filter(Column::ReversesTransactionId.is_in(transactions.iter().map(|t| t.id)))
        .into_tuple::<(Uuid, Uuid)>()
        .all(db)
        .await
        .map_err(classify)?
        .into_iter()
        .collect();
    for transaction in transactions {
        transaction.reversed_by = links.get(&transaction.id).copied();
    }
    Ok(())
}

/// What a reversal needs of a transaction: the entries it posted.
pub(super) async fn posted_legs(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<Leg>>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let account = |wallet: Option<Uuid>, system: Option<String>| -> Result<Account> {
        match (wallet, system) {
            (Some(wallet), None) => Ok(Account::Wallet(wallet)),
            (None, Some(code)) => SystemAccount::parse(&code)
                .map(Account::System)
                .ok_or_else(|| corrupt("system account", &code)),
            _ => Err(Error::internal("an entry without exactly one account")),
        }
    };
    let bucket = |text: &str| Bucket::parse(text).ok_or_else(|| corrupt("bucket", text));
    let mut legs: HashMap<Uuid, Vec<Leg>> = HashMap::new();
    for row in ledger_entry::Entity::find()
        .filter(ledger_entry::Column::TransactionId.is_in(ids.iter().copied()))
        .order_by_asc(ledger_entry::Column::Id)
        .all(db)
        .await
        .map_err(classify)?
    {
        let leg = Leg {
            from: (
                account(row.source_wallet_id, row.source_system)?,
                bucket(&row.source_bucket)?,
            ),
            to: (
                account(row.destination_wallet_id, row.destination_system)?,
                bucket(&row.destination_bucket)?,
            ),
            micros: row.amount_micros,
        };
        legs.entry(row.transaction_id).or_default().push(leg);
    }
    Ok(legs)
}

pub(super) async fn existing_tx_hashes(
    db: &impl ConnectionTrait,
    hashes: &[String],
) -> Result<HashSet<String>> {
    if hashes.is_empty() {
        return Ok(HashSet::new());
    }
    Ok(ledger_transaction::Entity::find()
        .select_only()
        .column(ledger_transaction::Column::TxHash)
        .filter(ledger_transaction::Column::TxHash.is_in(hashes.iter().cloned()))
        .into_tuple::<String>()
        .all(db)
        .await
        .map_err(classify)?
        .into_iter()
        .collect())
}

/// A wallet as the ledger worker sees it: owner and balances, locked.
#[derive(Clone, Copy, Debug)]
pub(super) struct LockedWallet {
    pub owner: Uuid,
    pub balance: Balance,
}

/// Locks wallets in id order: every writer locks in this one order, so
/// concurrent batches (or replicas) cannot deadlock on each other.
pub(super) async fn lock_wallets(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, LockedWallet>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    if db.get_database_backend() == DbBackend::Postgres {
        // One text whatever the count: prepared once per connection.
        let rows = db
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT id, owner_id, available_micros, pending_micros, staked_micros FROM wallets \
                 WHERE id = ANY($1) ORDER BY id FOR UPDATE",
                [ids.to_vec().into()],
            ))
            .await
            .map_err(classify)?;
        return rows
            .iter()
            .map(|row| {
                let column = |error: sea_orm::DbErr| Error::internal(error.to_string());
                let balance = Balance {
                    available: row.try_get("", "available_micros").map_err(column)?,
                    pending: row.try_get("", "pending_micros").map_err(column)?,
                    staked: row.try_get("", "staked_micros").map_err(column)?,
                };
                let owner = row.try_get("", "owner_id").map_err(column)?;
                Ok((
                    row.try_get("", "id").map_err(column)?,
                    LockedWallet { owner, balance },
                ))
            })
            .collect();
    }
    Ok(wallet_balance::Entity::find()
        .filter(wallet_balance::Column::Id.is_in(ids.iter().copied()))
        .order_by_asc(wallet_balance::Column::Id)
        .lock_exclusive()
        .all(db)
        .await
        .map_err(classify)?
        .into_iter()
        .map(|row| {
            let balance = Balance {
                available: row.available_micros,
                pending: row.pending_micros,
                staked: row.staked_micros,
            };
            (
                row.id,
                LockedWallet {
                    owner: row.owner_id,
                    balance,
                },
            )
        })
        .collect())
}

/// Locks every system account, in code order, after the wallets.
pub(super) async fn lock_system_accounts(
    db: &impl ConnectionTrait,
) -> Result<BTreeMap<SystemAccount, i64>> {
    system_account::Entity::find()
        .order_by_asc(system_account::Column::Code)
        .lock_exclusive()
        .all(db)
        .await
        .map_err(classify)?
        .into_iter()
        .map(|row| {
            SystemAccount::parse(&row.code)
                .map(|account| (account, row.balance_micros))
                .ok_or_else(|| corrupt("system account", &row.code))
        })
        .collect()
}

pub(super) async fn update_wallet_balance(
    db: &impl ConnectionTrait,
    id: Uuid,
    balance: Balance,
) -> Result<()> {
    wallet_balance::Entity::update_many()
        .col_expr(
            wallet_balance::Column::AvailableMicros,
            Expr::value(balance.available),
        )
        .col_expr(
            wallet_balance::Column::PendingMicros,
            Expr::value(balance.pending),
        )
        .col_expr(
            wallet_balance::Column::StakedMicros,
            Expr::value(balance.staked),
        )
        .filter(wallet_balance::Column::Id.eq(id))
        .exec(db)
        .await
        .map_err(classify)?;
    Ok(())
}

/// Writes the balances of many wallets, a statement each: SQLite's path
/// (in-process, no round trip); PostgreSQL writes them inside
/// [`write_batch`]'s one statement.
async fn update_wallet_balances(
    db: &impl ConnectionTrait,
    balances: &[(Uuid, Balance)],
) -> Result<()> {
    for (id, balance) in balances {
        update_wallet_balance(db, *id, *balance).await?;
    }
    Ok(())
}

pub(super) async fn update_system_balance(
    db: &impl ConnectionTrait,
    account: SystemAccount,
    micros: i64,
) -> Result<()> {
    system_account::Entity::update_many()
        .col_expr(system_account::Column::BalanceMicros, Expr::value(micros))
        .filter(system_account::Column::Code.eq(account.as_str()))
        .exec(db)
        .await
        .map_err(classify)?;
    Ok(())
}

pub(super) async fn insert_transactions(
    db: &impl ConnectionTrait,
    transactions: &[Transaction],
) -> Result<()> {
    if transactions.is_empty() {
        return Ok(());
    }
    ledger_transaction::Entity::insert_many(transactions.iter().map(|transaction| {
        ledger_transaction::ActiveModel::from(transaction_to_row(transaction)).reset_all()
    }))
    .exec_without_returning(db)
    .await
    .map_err(classify)?;
    Ok(())
}

/// Writes the outcome of a confirmation or failure.
pub(super) async fn update_resolution(
    db: &impl ConnectionTrait,
    transaction: &Transaction,
) -> Result<()> {
    ledger_transaction::Entity::update_many()
        .col_expr(
            ledger_transaction::Column::Status,
            Expr::value(transaction.status.as_str()),
        )
        .col_expr(
            ledger_transaction::Column::GasUsed,
            Expr::value(transaction.gas_used),
        )
        .col_expr(
            ledger_transaction::Column::GasPriceWei,
            Expr::value(transaction.gas_price_wei),
        )
        .col_expr(
            ledger_transaction::Column::Reason,
            Expr::value(transaction.reason.clone()),
        )
        .col_expr(
            ledger_transaction::Column::ConfirmedAt,
            Expr::value(transaction.confirmed_at),
        )
        .col_expr(
            ledger_transaction::Column::ProcessedAt,
            Expr::value(transaction.processed_at),
        )
        .col_expr(
            ledger_transaction::Column::BackingReference,
            Expr::value(transaction.backing_reference.clone()),
        )
        .filter(ledger_transaction::Column::Id.eq(transaction.id))
        .filter(ledger_transaction::Column::Status.eq(TransactionStatus::Pending.as_str()))
        .exec(db)
        .await
        .map_err(classify)?;
    Ok(())
}

/// One side of an entry: its wallet, or its system account's code.
fn side(account: Account) -> (Option<Uuid>, Option<&'static str>) {
    match account {
        Account::Wallet(id) => (Some(id), None),
        Account::System(system) => (None, Some(system.as_str())),
    }
}

pub(super) async fn insert_entries(
    db: &impl ConnectionTrait,
    entries: &[NewEntry],
    posted_at: DateTime<Utc>,
) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    ledger_entry::Entity::insert_many(entries.iter().map(|entry| {
        let leg = entry.leg;
        let (source_wallet, source_system) = side(leg.from.0);
        let (destination_wallet, destination_system) = side(leg.to.0);
        ledger_entry::ActiveModel {
            id: NotSet,
            transaction_id: Set(entry.transaction),
            source_wallet_id: Set(source_wallet),
            source_system: Set(source_system.map(str::to_owned)),
            source_bucket: Set(leg.from.1.as_str().to_owned()),
            destination_wallet_id: Set(destination_wallet),
            destination_system: Set(destination_system.map(str::to_owned)),
            destination_bucket: Set(leg.to.1.as_str().to_owned()),
            amount_micros: Set(leg.micros),
            posted_at: Set(posted_at),
            source_available_after: Set(entry.source_after.map(|b| b.available)),
            source_pending_after: Set(entry.source_after.map(|b| b.pending)),
            source_staked_after: Set(entry.source_after.map(|b| b.staked)),
            destination_available_after: Set(entry.destination_after.map(|b| b.available)),
            destination_pending_after: Set(entry.destination_after.map(|b| b.pending)),
            destination_staked_after: Set(entry.destination_after.map(|b| b.staked)),
        }
    }))
    .exec_without_returning(db)
    .await
    .map_err(classify)?;
    Ok(())
}

/// SQLite's half of [`write_batch`] for the wallets a transaction moves
/// besides the two it names.
async fn insert_other_wallets(db: &impl ConnectionTrait, others: &[(Uuid, Uuid)]) -> Result<()> {
    if others.is_empty() {
        return Ok(());
    }
    ledger_transaction_wallet::Entity::insert_many(others.iter().map(|(transaction, wallet)| {
        ledger_transaction_wallet::ActiveModel {
            wallet_id: Set(*wallet),
            transaction_id: Set(*transaction),
        }
    }))
    .exec_without_returning(db)
    .await
    .map_err(classify)?;
    Ok(())
}

/// SQLite's half of [`write_batch`] for the totals: one upsert per row.
async fn add_totals(db: &impl ConnectionTrait, slot: i16, totals: &TotalsChange) -> Result<()> {
    for ((kind, status), change) in &totals.kinds {
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "INSERT INTO ledger_kind_totals AS t (slot, kind, status, transactions, micros) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (slot, kind, status) DO UPDATE SET transactions = t.transactions + excluded.transactions, \
             micros = t.micros + excluded.micros",
            [
                slot.into(),
                kind.as_str().into(),
                status.as_str().into(),
                change.transactions.into(),
                change.micros.into(),
            ],
        ))
        .await
        .map_err(classify)?;
    }
    if totals.held != 0 || totals.staked != 0 {
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "INSERT INTO ledger_wallet_totals AS t (slot, held_micros, staked_micros) VALUES (?, ?, ?) \
             ON CONFLICT (slot) DO UPDATE SET held_micros = t.held_micros + excluded.held_micros, \
             staked_micros = t.staked_micros + excluded.staked_micros",
            [slot.into(), totals.held.into(), totals.staked.into()],
        ))
        .await
        .map_err(classify)?;
    }
    Ok(())
}

/// What a settled batch writes besides resolutions and system balances:
/// the wallet balances that moved, the new transactions, their entries, the
/// wallets they move besides the two they name, the idempotency keys that
/// name them, and what all that adds to the totals of `slot`.
pub(super) struct BatchWrites<'a> {
    pub wallet_balances: &'a [(Uuid, Balance)],
    pub transactions: &'a [Transaction],
    pub entries: &'a [NewEntry],
    pub other_wallets: &'a [(Uuid, Uuid)],
    pub keys: Vec<NewIdempotencyKey>,
    pub totals: &'a TotalsChange,
    pub slot: i16,
    pub posted_at: DateTime<Utc>,
}

pub(super) async fn write_batch(db: &impl ConnectionTrait, writes: BatchWrites<'_>) -> Result<()> {
    if db.get_database_backend() == DbBackend::Postgres {
        return write_batch_postgres(db, writes).await;
    }
    let BatchWrites {
        wallet_balances,
        transactions,
        entries,
        other_wallets,
        keys,
        totals,
        slot,
        posted_at,
    } = writes;
    update_wallet_balances(db, wallet_balances).await?;
    insert_transactions(db, transactions).await?;
    insert_entries(db, entries, posted_at).await?;
    insert_other_wallets(db, other_wallets).await?;
    insert_idempotency_keys(db, keys, posted_at).await?;
    add_totals(db, slot, totals).await
}

/// An entry as `write_batch_postgres` sends it.
#[derive(serde::Serialize)]
struct EntryRow {
    transaction_id: Uuid,
    source_wallet_id: Option<Uuid>,
    source_system: Option<&'static str>,
    source_bucket: &'static str,
    destination_wallet_id: Option<Uuid>,
    destination_system: Option<&'static str>,
    destination_bucket: &'static str,
    amount_micros: i64,
    source_available_after: Option<i64>,
    source_pending_after: Option<i64>,
    source_staked_after: Option<i64>,
    destination_available_after: Option<i64>,
    destination_pending_after: Option<i64>,
    destination_staked_after: Option<i64>,
}

impl From<&NewEntry> for EntryRow {
    fn from(entry: &NewEntry) -> Self {
        let leg = entry.leg;
        let (source_wallet_id, source_system) = side(leg.from.0);
        let (destination_wallet_id, destination_system) = side(leg.to.0);
        Self {
            transaction_id: entry.transaction,
            source_wallet_id,
            source_system,
            source_bucket: leg.from.1.as_str(),
            destination_wallet_id,
            destination_system,
            destination_bucket: leg.to.1.as_str(),
            amount_micros: leg.micros,
            source_available_after: entry.source_after.map(|b| b.available),
            source_pending_after: entry.source_after.map(|b| b.pending),
            source_staked_after: entry.source_after.map(|b| b.staked),
            destination_available_after: entry.destination_after.map(|b| b.available),
            destination_pending_after: entry.destination_after.map(|b| b.pending),
            destination_staked_after: entry.destination_after.map(|b| b.staked),
        }
    }
}

/// The batch in one statement of data-modifying CTEs. Rows with nullable
/// columns travel as one JSON array each, read back into the tables' own
/// row types; the rest as arrays. Foreign keys from the entries and keys to
/// the transactions inserted beside them are checked at the end of the
/// statement, when all of it is in. Every part reports how many rows it
/// wrote, and anything short is an error: the batch then rolls back.
async fn write_batch_postgres(db: &impl ConnectionTrait, writes: BatchWrites<'_>) -> Result<()> {
    let BatchWrites {
        wallet_balances,
        transactions,
        entries,
        other_wallets,
        keys,
        totals,
        slot,
        posted_at,
    } = writes;
    let entry_rows: Vec<EntryRow> = entries.iter().map(EntryRow::from).collect();
    let transaction_rows: Vec<ledger_transaction::Model> =
        transactions.iter().map(transaction_to_row).collect();
    let transactions_json = rows_json(&transaction_rows)?;
    let entries_json = rows_json(&entry_rows)?;
    let wallet_ids: Vec<Uuid> = wallet_balances.iter().map(|(id, _)| *id).collect();
    let available: Vec<i64> = wallet_balances.iter().map(|(_, b)| b.available).collect();
    let pending: Vec<i64> = wallet_balances.iter().map(|(_, b)| b.pending).collect();
    let staked: Vec<i64> = wallet_balances.iter().map(|(_, b)| b.staked).collect();
    let holdings_moved = totals.held != 0 || totals.staked != 0;
    let expected = [
        wallet_ids.len(),
        transaction_rows.len(),
        entry_rows.len(),
        keys.len(),
        other_wallets.len(),
        totals.kinds.len(),
        usize::from(holdings_moved),
    ];
    let mut callers = Vec::with_capacity(keys.len());
    let mut request_ids = Vec::with_capacity(keys.len());
    let mut operations = Vec::with_capacity(keys.len());
    let mut fingerprints = Vec::with_capacity(keys.len());
    let mut key_transactions = Vec::with_capacity(keys.len());
    for key in keys {
        callers.push(key.caller);
        request_ids.push(key.request_id);
        operations.push(key.operation.to_owned());
        fingerprints.push(key.fingerprint);
        key_transactions.push(key.transaction);
    }
    let other_transactions: Vec<Uuid> = other_wallets.iter().map(|(t, _)| *t).collect();
    let other_wallet_ids: Vec<Uuid> = other_wallets.iter().map(|(_, w)| *w).collect();
    let mut kinds = Vec::with_capacity(totals.kinds.len());
    let mut statuses = Vec::with_capacity(totals.kinds.len());
    let mut counts = Vec::with_capacity(totals.kinds.len());
    let mut volumes = Vec::with_capacity(totals.kinds.len());
    for ((kind, status), change) in &totals.kinds {
        kinds.push(kind.as_str().to_owned());
        statuses.push(status.as_str().to_owned());
        counts.push(change.transactions);
        volumes.push(change.micros);
    }
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            WRITE_BATCH,
            [
                wallet_ids.into(),
                available.into(),
                pending.into(),
                staked.into(),
                transactions_json.into(),
                entries_json.into(),
                posted_at.into(),
                callers.into(),
                request_ids.into(),
                operations.into(),
                fingerprints.into(),
                key_transactions.into(),
                other_transactions.into(),
                other_wallet_ids.into(),
                slot.into(),
                kinds.into(),
                statuses.into(),
                counts.into(),
                volumes.into(),
                totals.held.into(),
                totals.staked.into(),
            ],
        ))
        .await
        .map_err(classify)?
        .ok_or_else(|| Error::internal("the batch write returned no row"))?;
    let mut written = [0usize; 7];
    for (index, count) in written.iter_mut().enumerate() {
        let value: i64 = row
            .try_get_by_index(index)
            .map_err(|error| Error::internal(error.to_string()))?;
        *count = usize::try_from(value).unwrap_or_default();
    }
    if written != expected {
        return Err(Error::internal(format!(
            "the batch wrote {written:?} rows (wallets, transactions, entries, keys, other wallets, \
             kind totals, wallet totals) of {expected:?}"
        )));
    }
    Ok(())
}

/// Rows as the JSON array `json_populate_recordset` reads.
fn rows_json(rows: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(rows)
        .map_err(|error| Error::internal(format!("encoding a batch: {error}")))
}

/// `write_batch_postgres`'s one statement. The totals are upserts adding
/// this batch's deltas to its slot's rows (at most one row per kind and
/// status, so no row is touched twice by the statement); a batch that moved
/// nothing wallets hold writes no wallet-totals row.
const WRITE_BATCH: &str = "\
WITH balances AS (
    UPDATE wallets AS w
    SET available_micros = v.available, pending_micros = v.pending, staked_micros = v.staked,
        updated_at = now()
    FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[]) AS v(id, available, pending, staked)
    WHERE w.id = v.id
    RETURNING 1
), transactions AS (
    INSERT INTO ledger_transactions
    SELECT * FROM json_populate_recordset(NULL::ledger_transactions, $5::json)
    RETURNING 1
), entries AS (
    INSERT INTO ledger_entries (transaction_id, source_wallet_id, source_system, source_bucket,
        destination_wallet_id, destination_system, destination_bucket, amount_micros, posted_at,
        source_available_after, source_pending_after, source_staked_after,
        destination_available_after, destination_pending_after, destination_staked_after)
    SELECT e.transaction_id, e.source_wallet_id, e.source_system, e.source_bucket,
        e.destination_wallet_id, e.destination_system, e.destination_bucket, e.amount_micros, $7::timestamptz,
        e.source_available_after, e.source_pending_after, e.source_staked_after,
        e.destination_available_after, e.destination_pending_after, e.destination_staked_after
    FROM json_to_recordset($6::json) AS e(transaction_id uuid, source_wallet_id uuid, source_system text,
        source_bucket text, destination_wallet_id uuid, destination_system text, destination_bucket text,
        amount_micros bigint, source_available_after bigint, source_pending_after bigint,
        source_staked_after bigint, destination_available_after bigint, destination_pending_after bigint,
        destination_staked_after bigint)
    RETURNING 1
), keys AS (
    INSERT INTO idempotency_keys (caller_id, request_id, operation, fingerprint, transaction_id, created_at)
    SELECT k.caller_id, k.request_id, k.operation, k.fingerprint, k.transaction_id, $7::timestamptz
    FROM UNNEST($8::uuid[], $9::text[], $10::text[], $11::text[], $12::uuid[])
        AS k(caller_id, request_id, operation, fingerprint, transaction_id)
    RETURNING 1
), others AS (
    INSERT INTO ledger_transaction_wallets (transaction_id, wallet_id)
    SELECT * FROM UNNEST($13::uuid[], $14::uuid[])
    RETURNING 1
), kind_totals AS (
    INSERT INTO ledger_kind_totals AS t (slot, kind, status, transactions, micros)
    SELECT $15::smallint, c.kind, c.status, c.transactions, c.micros
    FROM UNNEST($16::text[], $17::text[], $18::bigint[], $19::bigint[]) AS c(kind, status, transactions, micros)
    ON CONFLICT (slot, kind, status) DO UPDATE SET transactions = t.transactions + EXCLUDED.transactions,
        micros = t.micros + EXCLUDED.micros
    RETURNING 1
), wallet_totals AS (
    INSERT INTO ledger_wallet_totals AS t (slot, held_micros, staked_micros)
    SELECT $15::smallint, $20::bigint, $21::bigint WHERE $20::bigint <> 0 OR $21::bigint <> 0
    ON CONFLICT (slot) DO UPDATE SET held_micros = t.held_micros + EXCLUDED.held_micros,
        staked_micros = t.staked_micros + EXCLUDED.staked_micros
    RETURNING 1
)
SELECT (SELECT count(*) FROM balances), (SELECT count(*) FROM transactions),
    (SELECT count(*) FROM entries), (SELECT count(*) FROM keys), (SELECT count(*) FROM others),
    (SELECT count(*) FROM kind_totals), (SELECT count(*) FROM wallet_totals)";

pub(super) async fn find_transaction(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<Transaction>> {
    let Some(row) = ledger_transaction::Entity::find_by_id(id)
        .one(db)
        .await
        .map_err(classify)?
    else {
        return Ok(None);
    };
    let mut found = [transaction_from_row(row)?];
    attach_reversed_by(db, &mut found).await?;
    let [transaction] = found;
    Ok(Some(transaction))
}

/// Newest first: the cursor is the last id of the previous page.
///
/// A transaction is a wallet's when it names the wallet as its source or
/// destination, or moves it otherwise (a multi-transfer's payees, kept in
/// `ledger_transaction_wallets`). Each of the three is its own query that an
/// index answers in id order, stopping after a page; the page is the newest
/// of their union. One query with `OR` would have to find and sort every
/// transaction of the wallet first.
pub(super) async fn list_transactions(
    db: &impl ConnectionTrait,
    filter: &TransactionFilter,
    page: &PageRequest,
) -> Result<Vec<Transaction>> {
    use ledger_transaction::Column;
    let limit = page.fetch_limit();
    let owned = |owner: Uuid| {
        wallet_balance::Entity::find()
            .select_only()
            .column(wallet_balance::Column::Id)
            .filter(wallet_balance::Column::OwnerId.eq(owner))
            .into_query()
    };
    let owners = |owner: Option<Uuid>| {
        owner.map(|owner| {
            Condition::any()
                .add(Column::FromWalletId.in_subquery(owned(owner)))
                .add(Column::ToWalletId.in_subquery(owned(owner)))
                .add(
                    Column::Id.in_subquery(
                        ledger_transaction_wallet::Entity::find()
                            .select_only()
                            .column(ledger_transaction_wallet::Column::TransactionId)
                            .filter(
                                ledger_transaction_wallet::Column::WalletId
                                    .in_subquery(owned(owner)),
                            )
                            .into_query(),
                    ),
                )
        })
    };
    // Every filter but the wallet, newest first, a page at most.
    let filtered = |after: Option<Uuid>| {
        ledger_transaction::Entity::find()
            .apply_if(owners(filter.owner), |query, owner| query.filter(owner))
            .apply_if(filter.kind, |query, kind| {
                query.filter(Column::Kind.eq(kind.as_str()))
            })
            .apply_if(filter.status, |query, status| {
                query.filter(Column::Status.eq(status.as_str()))
            })
            .apply_if(filter.start, |query, start| {
                query.filter(Column::CreatedAt.gte(start))
            })
            .apply_if(filter.end, |query, end| {
                query.filter(Column::CreatedAt.lt(end))
            })
            .apply_if(
                metadata_condition(db, &filter.metadata),
                |query, condition| query.filter(condition),
            )
            .apply_if(after, |query, after| query.filter(Column::Id.lt(after)))
            .order_by_desc(Column::Id)
            .limit(limit)
    };
    let only_the_wallet = filter.owner.is_none()
        && filter.kind.is_none()
        && filter.status.is_none()
        && filter.start.is_none()
        && filter.end.is_none()
        && filter.metadata.is_empty();
    let mut rows = match filter.wallet {
        None => filtered(page.after).all(db).await.map_err(classify)?,
        Some(wallet) if only_the_wallet => {
            let ids = wallet_page_ids(db, wallet, page.after, limit).await?;
            ledger_transaction::Entity::find()
                .filter(Column::Id.is_in(ids))
                .all(db)
                .await
                .map_err(classify)?
        }
        Some(wallet) => {
            let mut rows = filtered(page.after)
                .filter(Column::FromWalletId.eq(wallet))
                .all(db)
                .await
                .map_err(classify)?;
            rows.extend(
                filtered(page.after)
                    .filter(Column::ToWalletId.eq(wallet))
                    .all(db)
                    .await
                    .map_err(classify)?,
            );
            rows.extend(
                moving(db, wallet, page.after, limit, |ids, after| {
                    filtered(after).filter(Column::Id.is_in(ids))
                })
                .await?,
            );
            rows
        }
    };
    rows.sort_unstable_by_key(|row| std::cmp::Reverse(row.id));
    rows.dedup_by_key(|row| row.id);
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let mut transactions = rows
        .into_iter()
        .map(transaction_from_row)
        .collect::<Result<Vec<_>>>()?;
    attach_reversed_by(db, &mut transactions).await?;
    Ok(transactions)
}

/// The ids of a page of a wallet's transactions, unfiltered: each part from
/// its index alone (`(from_wallet_id, id)`, `(to_wallet_id, id)`, the
/// moved wallets' key), then the newest of them. Reading rows instead lets
/// the planner prefer walking the whole ledger backwards by id, betting
/// that a wallet's transactions are spread evenly through it; a wallet
/// whose history is old loses that bet.
async fn wallet_page_ids(
    db: &impl ConnectionTrait,
    wallet: Uuid,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<Uuid>> {
    use ledger_transaction::Column;
    let mut ids: Vec<Uuid> = Vec::new();
    for named in [Column::FromWalletId, Column::ToWalletId] {
        let found: Vec<Uuid> = ledger_transaction::Entity::find()
            .select_only()
            .column(Column::Id)
            .filter(named.eq(wallet))
            .apply_if(after, |query, after| query.filter(Column::Id.lt(after)))
            .order_by_desc(Column::Id)
            .limit(limit)
            .into_tuple()
            .all(db)
            .await
            .map_err(classify)?;
        ids.extend(found);
    }
    let moved: Vec<Uuid> = ledger_transaction_wallet::Entity::find()
        .select_only()
        .column(ledger_transaction_wallet::Column::TransactionId)
        .filter(ledger_transaction_wallet::Column::WalletId.eq(wallet))
        .apply_if(after, |query, after| {
            query.filter(ledger_transaction_wallet::Column::TransactionId.lt(after))
        })
        .order_by_desc(ledger_transaction_wallet::Column::TransactionId)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await
        .map_err(classify)?;
    ids.extend(moved);
    ids.sort_unstable_by_key(|id| std::cmp::Reverse(*id));
    ids.dedup();
    ids.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(ids)
}

/// Ids read per step while looking for the transactions that move a wallet
/// besides the two they name.
const MOVING_CHUNK: u64 = 500;

/// Up to `limit` of the transactions that move `wallet` without naming it,
/// newest first, below `after`, that `matching` (the other filters) keeps.
/// Their ids come from the wallet's own index range, a chunk at a time, and
/// only those are looked up: a query joining the two would let the planner
/// walk the whole ledger backwards looking for the few that match.
async fn moving(
    db: &impl ConnectionTrait,
    wallet: Uuid,
    after: Option<Uuid>,
    limit: u64,
    matching: impl Fn(Vec<Uuid>, Option<Uuid>) -> sea_orm::Select<ledger_transaction::Entity>,
) -> Result<Vec<ledger_transaction::Model>> {
    use ledger_transaction_wallet::Column;
    let mut found: Vec<ledger_transaction::Model> = Vec::new();
    let mut below = after;
    loop {
        let ids: Vec<Uuid> = ledger_transaction_wallet::Entity::find()
            .select_only()
            .column(Column::TransactionId)
            .filter(Column::WalletId.eq(wallet))
            .apply_if(below, |query, below| {
                query.filter(Column::TransactionId.lt(below))
            })
            .order_by_desc(Column::TransactionId)
            .limit(MOVING_CHUNK)
            .into_tuple()
            .all(db)
            .await
            .map_err(classify)?;
        let Some(last) = ids.last().copied() else {
            break;
        };
        let complete = (ids.len() as u64) < MOVING_CHUNK;
        found.extend(matching(ids, after).all(db).await.map_err(classify)?);
        if found.len() as u64 >= limit || complete {
            break;
        }
        below = Some(last);
    }
    Ok(found)
}

/// Every pair must match: the key at the top level of the metadata object
/// holding a JSON string equal to the value. PostgreSQL asks `metadata @>
/// {...}`, which the GIN index (`jsonb_path_ops`) answers; SQLite looks
/// through `json_each`, unindexed, with the key as a bound value (a JSON
/// path would need the key quoted into it).
fn metadata_condition(
    db: &impl ConnectionTrait,
    metadata: &BTreeMap<String, String>,
) -> Option<Condition> {
    if metadata.is_empty() {
        return None;
    }
    if db.get_database_backend() == DbBackend::Postgres {
        let object: serde_json::Map<String, serde_json::Value> = metadata
            .iter()
            .map(|(key, value)| (key.clone(), serde_json::Value::String(value.clone())))
            .collect();
        return Some(Condition::all().add(Expr::cust_with_values(
            "metadata @> CAST($1 AS jsonb)",
            [serde_json::Value::Object(object).to_string()],
        )));
    }
    Some(metadata.iter().fold(Condition::all(), |all, (key, value)| {
        all.add(Expr::cust_with_values(
            "EXISTS (SELECT 1 FROM json_each(ledger_transactions.metadata) AS pair \
             WHERE pair.key = ? AND pair.type = 'text' AND pair.value = ?)",
            [key.clone(), value.clone()],
        ))
    }))
}

pub(super) async fn find_wallet_owner_and_balance(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<(Uuid, Balance, DateTime<Utc>)>> {
    Ok(wallet_balance::Entity::find_by_id(id)
        .one(db)
        .await
        .map_err(classify)?
        .map(|row| {
            (
                row.owner_id,
                Balance {
                    available: row.available_micros,
                    pending: row.pending_micros,
                    staked: row.staked_micros,
                },
                row.created_at,
            )
        }))
}

/// A wallet's balances as of `at`: the running balances on its newest
/// entry posted by then, as the source or as the destination (two index
/// lookups, whatever the length of its history). Zero before its first.
pub(super) async fn wallet_balance_as_of(
    db: &impl ConnectionTrait,
    id: Uuid,
    at: DateTime<Utc>,
) -> Result<Balance> {
    use ledger_entry::Column;
    let newest = |wallet: Column| {
        ledger_entry::Entity::find()
            .filter(wallet.eq(id))
            .filter(Column::PostedAt.lte(at))
            .order_by_desc(Column::PostedAt)
            .order_by_desc(Column::Id)
            .one(db)
    };
    let as_source = newest(Column::SourceWalletId).await.map_err(classify)?;
    let as_destination = newest(Column::DestinationWalletId)
        .await
        .map_err(classify)?;
    let newest = match (as_source, as_destination) {
        (Some(source), Some(destination)) => {
            if (source.posted_at, source.id) > (destination.posted_at, destination.id) {
                Some((source, true))
            } else {
                Some((destination, false))
            }
        }
        (Some(source), None) => Some((source, true)),
        (None, Some(destination)) => Some((destination, false)),
        (None, None) => None,
    };
    let Some((entry, as_source)) = newest else {
        return Ok(Balance::default());
    };
    let after = if as_source {
        (
            entry.source_available_after,
            entry.source_pending_after,
            entry.source_staked_after,
        )
    } else {
        (
            entry.destination_available_after,
            entry.destination_pending_after,
            entry.destination_staked_after,
        )
    };
    match after {
        (Some(available), Some(pending), Some(staked)) => Ok(Balance {
            available,
            pending,
            staked,
        }),
        _ => Err(Error::internal(format!(
            "ledger entry {} has no running balance for wallet {id}",
            entry.id
        ))),
    }
}

/// The summary from what the batches keep: the system accounts' balances
/// and the totals of every slot (migration 000018), a few dozen rows
/// however long the ledger. The compliance report checks the totals
/// against the rows.
pub(super) async fn summary(db: &impl ConnectionTrait, policy_version: i32) -> Result<Summary> {
    let system = system_account::Entity::find()
        .all(db)
        .await
        .map_err(classify)?
        .into_iter()
        .map(|row| {
            SystemAccount::parse(&row.code)
                .map(|account| (account, row.balance_micros))
                .ok_or_else(|| corrupt("system account", &row.code))
        })
        .collect::<Result<BTreeMap<_, _>>>()?;
    let (held, staked) = kept_wallet_totals(db).await?;
    let mut by_kind: BTreeMap<TransactionKind, KindTotals> = TransactionKind::ALL
        .iter()
        .map(|kind| (*kind, KindTotals::default()))
        .collect();
    for ((kind, status), change) in kept_kind_totals(db).await? {
        let totals = by_kind.entry(kind).or_default();
        match status {
            TransactionStatus::Confirmed => {
                totals.confirmed_count = change.transactions;
                totals.confirmed_micros = change.micros;
            }
            TransactionStatus::Pending => {
                totals.pending_count = change.transactions;
                totals.pending_micros = change.micros;
            }
            TransactionStatus::Failed => totals.failed_count = change.transactions,
        }
    }
    Ok(Summary {
        system,
        held_in_wallets: held,
        staked_in_wallets: staked,
        by_kind,
        policy_version,
    })
}

/// The kind totals as kept, summed over slots.
pub(super) async fn kept_kind_totals(
    db: &impl ConnectionTrait,
) -> Result<BTreeMap<(TransactionKind, TransactionStatus), KindChange>> {
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT kind, status, CAST(SUM(transactions) AS BIGINT) AS transactions, \
             CAST(SUM(micros) AS BIGINT) AS micros FROM ledger_kind_totals GROUP BY kind, status",
        ))
        .await
        .map_err(classify)?;
    kind_totals_from_rows(&rows)
}

/// The same totals counted from the transactions themselves.
pub(super) async fn counted_kind_totals(
    db: &impl ConnectionTrait,
) -> Result<BTreeMap<(TransactionKind, TransactionStatus), KindChange>> {
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT kind, status, CAST(COUNT(*) AS BIGINT) AS transactions, \
             CAST(COALESCE(SUM(amount_azr_micros), 0) AS BIGINT) AS micros \
             FROM ledger_transactions GROUP BY kind, status",
        ))
        .await
        .map_err(classify)?;
    kind_totals_from_rows(&rows)
}

fn kind_totals_from_rows(
    rows: &[sea_orm::QueryResult],
) -> Result<BTreeMap<(TransactionKind, TransactionStatus), KindChange>> {
    let mut totals = BTreeMap::new();
    for row in rows {
        let kind: String = row.try_get("", "kind").map_err(classify)?;
        let status: String = row.try_get("", "status").map_err(classify)?;
        let change = KindChange {
            transactions: row.try_get("", "transactions").map_err(classify)?,
            micros: row.try_get("", "micros").map_err(classify)?,
        };
        let kind = TransactionKind::parse(&kind).ok_or_else(|| corrupt("kind", &kind))?;
        let status = TransactionStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?;
        // A kind and status whose slots net to nothing reads as absent, as
        // it does when counted.
        if change != KindChange::default() {
            totals.insert((kind, status), change);
        }
    }
    Ok(totals)
}

/// What wallets hold and have staked, as kept, summed over slots.
pub(super) async fn kept_wallet_totals(db: &impl ConnectionTrait) -> Result<(i64, i64)> {
    wallet_sums(
        db,
        "SELECT CAST(COALESCE(SUM(held_micros), 0) AS BIGINT) AS held, \
         CAST(COALESCE(SUM(staked_micros), 0) AS BIGINT) AS staked FROM ledger_wallet_totals",
    )
    .await
}

/// The same, summed over the wallets themselves.
pub(super) async fn counted_wallet_totals(db: &impl ConnectionTrait) -> Result<(i64, i64)> {
    wallet_sums(
        db,
        "SELECT CAST(COALESCE(SUM(available_micros + pending_micros + staked_micros), 0) AS BIGINT) AS held, \
         CAST(COALESCE(SUM(staked_micros), 0) AS BIGINT) AS staked FROM wallets",
    )
    .await
}

async fn wallet_sums(db: &impl ConnectionTrait, sql: &str) -> Result<(i64, i64)> {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .map_err(classify)?;
    match row {
        Some(row) => Ok((
            row.try_get::<i64>("", "held").map_err(classify)?,
            row.try_get::<i64>("", "staked").map_err(classify)?,
        )),
        None => Ok((0, 0)),
    }
}

/// A batch of transfers as stored: its fingerprint and each item's result
/// (see `ledger::group`), as JSON text.
#[derive(Debug)]
pub(super) struct StoredBatch {
    pub fingerprint: String,
    pub results: String,
}

/// The stored batches among `keys` (caller, batch request id).
pub(super) async fn find_transfer_batches(
    db: &impl ConnectionTrait,
    keys: &[(Uuid, String)],
) -> Result<HashMap<(Uuid, String), StoredBatch>> {
    use super::entities::transfer_batch;
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let condition = keys
        .iter()
        .fold(Condition::any(), |any, (caller, request)| {
            any.add(
                Condition::all()
                    .add(transfer_batch::Column::CallerId.eq(*caller))
                    .add(transfer_batch::Column::RequestId.eq(request.clone())),
            )
        });
    Ok(transfer_batch::Entity::find()
        .filter(condition)
        .all(db)
        .await
        .map_err(classify)?
        .into_iter()
        .map(|row| {
            (
                (row.caller_id, row.request_id),
                StoredBatch {
                    fingerprint: row.fingerprint,
                    results: row.results,
                },
            )
        })
        .collect())
}

#[derive(Debug)]
pub(super) struct NewTransferBatch {
    pub caller: Uuid,
    pub request_id: String,
    pub mode: &'static str,
    pub fingerprint: String,
    pub item_count: i64,
    pub results: String,
}

pub(super) async fn insert_transfer_batches(
    db: &impl ConnectionTrait,
    batches: Vec<NewTransferBatch>,
    now: DateTime<Utc>,
) -> Result<()> {
    use super::entities::transfer_batch;
    if batches.is_empty() {
        return Ok(());
    }
    transfer_batch::Entity::insert_many(batches.into_iter().map(|batch| {
        transfer_batch::ActiveModel {
            caller_id: Set(batch.caller),
            request_id: Set(batch.request_id),
            mode: Set(batch.mode.to_owned()),
            fingerprint: Set(batch.fingerprint),
            item_count: Set(batch.item_count),
            results: Set(batch.results),
            created_at: Set(now),
        }
    }))
    .exec_without_returning(db)
    .await
    .map_err(classify)?;
    Ok(())
}

fn account_of(wallet: Option<Uuid>, system: Option<&str>) -> Result<Account> {
    match (wallet, system) {
        (Some(wallet), None) => Ok(Account::Wallet(wallet)),
        (None, Some(code)) => SystemAccount::parse(code)
            .map(Account::System)
            .ok_or_else(|| corrupt("system account", code)),
        _ => Err(Error::internal(
            "a ledger entry side names no single account",
        )),
    }
}

/// The entries of each of `transactions`, in posting order: one query for
/// them all (a page of ListTransactions costs one more query, not one per
/// row).
pub(super) async fn entries_of(
    db: &impl ConnectionTrait,
    transactions: &[Uuid],
) -> Result<HashMap<Uuid, Vec<Leg>>> {
    use ledger_entry::Column;
    let mut legs: HashMap<Uuid, Vec<Leg>> = HashMap::new();
    if transactions.is_empty() {
        return Ok(legs);
    }
    let rows = ledger_entry::Entity::find()
        .filter(Column::TransactionId.is_in(transactions.iter().copied()))
        .order_by_asc(Column::Id)
        .all(db)
        .await
        .map_err(classify)?;
    for row in rows {
        let bucket = |text: &str| Bucket::parse(text).ok_or_else(|| corrupt("bucket", text));
        let leg = Leg {
            from: (
                account_of(row.source_wallet_id, row.source_system.as_deref())?,
                bucket(&row.source_bucket)?,
            ),
            to: (
                account_of(row.destination_wallet_id, row.destination_system.as_deref())?,
                bucket(&row.destination_bucket)?,
            ),
            micros: row.amount_micros,
        };
        legs.entry(row.transaction_id).or_default().push(leg);
    }
    Ok(legs)
}
