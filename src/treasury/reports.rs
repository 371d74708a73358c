//! What the Treasury tells an auditor about its books: read-only figures over
//! the ledger tables (`ledger_transactions`, `ledger_entries`,
//! `system_accounts`) and the wallet balance columns it keeps
//! ([`wallet_balance`]). Compliance
//! reports are built from these; nothing here writes.
//!
//! Every function takes any connection, so a caller reading inside one
//! snapshot transaction (as a report does) gets figures that agree with each
//! other.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryResult, QuerySelect, QueryTrait,
    Value,
};
use uuid::Uuid;

use super::entities::{ledger_entry, system_account, wallet_balance};
use crate::db::{classify, statement};
use crate::error::Error;

type Result<T> = std::result::Result<T, Error>;

/// Ids listed per question at most.
const MAX_IDS: u64 = 100;

/// Confirmed transactions created in a period.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeriodTotals {
    pub transactions: i64,
    pub volume_azr_micros: i64,
    pub volume_usd_micros: i64,
}

/// Mining claims (pending mints) open at a moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PendingClaims {
    pub count: i64,
    pub azr_micros: i64,
}

/// An account in the books and one of its buckets: a wallet (its id as
/// text) or a system account (its code), and `available`, `pending` or
/// `staked`. Ordered as text, account first.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountBucket {
    pub account: String,
    pub bucket: String,
}

impl AccountBucket {
    pub fn new(account: impl Into<String>, bucket: impl Into<String>) -> Self {
        Self {
            account: account.into(),
            bucket: bucket.into(),
        }
    }

    /// The `available` bucket of a system account.
    pub fn system(code: &str) -> Self {
        Self::new(code, "available")
    }

    /// Whether the account is a wallet (not a system account).
    pub fn is_wallet(&self) -> bool {
        Uuid::parse_str(&self.account).is_ok()
    }
}

/// What every account holds, micro-AZR per bucket.
pub type Balances = BTreeMap<AccountBucket, i64>;

/// A confirmed transfer out of a wallet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalletTransfer {
    pub id: Uuid,
    pub amount_micros: i64,
    pub from_wallet: Uuid,
}

/// A settlement whose ledger transfer disagrees with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnmatchedSettlement {
    /// `founder compensation`, `knowledge reward` or `invoice`.
    pub kind: &'static str,
    pub id: Uuid,
}

fn aggregate(row: Option<QueryResult>) -> Result<QueryResult> {
    row.ok_or_else(|| Error::internal("an aggregate returned no row"))
}

/// Confirmed transactions created in `[start, end)`: count and volume.
pub async fn period_totals(
    db: &impl ConnectionTrait,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<PeriodTotals> {
    let row = db
        .query_one_raw(statement(
            db,
            "SELECT CAST(COUNT(*) AS BIGINT) AS n, CAST(COALESCE(SUM(amount_azr_micros), 0) AS BIGINT) AS azr, \
             CAST(COALESCE(SUM(amount_usd_micros), 0) AS BIGINT) AS usd FROM ledger_transactions \
             WHERE status = 'confirmed' AND created_at >= ? AND created_at < ?",
            vec![start.into(), end.into()],
        ))
        .await
        .map_err(classify)?;
    let row = aggregate(row)?;
    Ok(PeriodTotals {
        transactions: row.try_get("", "n").map_err(classify)?,
        volume_azr_micros: row.try_get("", "azr").map_err(classify)?,
        volume_usd_micros: row.try_get("", "usd").map_err(classify)?,
    })
}

/// Mining claims (pending mints) open at `end`: created before it and not
/// resolved before it.
pub async fn pending_claims_at(
    db: &impl ConnectionTrait,
    end: DateTime<Utc>,
) -> Result<PendingClaims> {
    let row = db
        .query_one_raw(statement(
            db,
            "SELECT CAST(COUNT(*) AS BIGINT) AS n, CAST(COALESCE(SUM(amount_azr_micros), 0) AS BIGINT) AS azr \
             FROM ledger_transactions WHERE kind = 'mint' AND mining_session_id IS NOT NULL \
             AND created_at < ? AND (processed_at IS NULL OR processed_at >= ?)",
            vec![end.into(), end.into()],
        ))
        .await
        .map_err(classify)?;
    let row = aggregate(row)?;
    Ok(PendingClaims {
        count: row.try_get("", "n").map_err(classify)?,
        azr_micros: row.try_get("", "azr").map_err(classify)?,
    })
}

/// Ids of transactions created in `[start, end)` matching `condition`, in id
/// order, at most [`MAX_IDS`].
async fn transactions_where(
    db: &impl ConnectionTrait,
    condition: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<Uuid>> {
    let sql = format!(
        "SELECT id FROM ledger_transactions WHERE ({condition}) AND created_at >= ? AND created_at < ? \
         ORDER BY id LIMIT {MAX_IDS}"
    );
    db.query_all_raw(statement(db, &sql, vec![start.into(), end.into()]))
        .await
        .map_err(classify)?
        .into_iter()
        .map(|row| row.try_get::<Uuid>("", "id").map_err(classify))
        .collect()
}

/// Transactions in the period whose USD amount differs from their AZR
/// amount (the 1:1 peg).
pub async fn transactions_off_peg(
    db: &impl ConnectionTrait,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<Uuid>> {
    transactions_where(db, "amount_usd_micros <> amount_azr_micros", start, end).await
}

/// Mints in the period without a complete allocation, or whose allocation
/// does not sum to their amount.
pub async fn mints_with_bad_allocation(
    db: &impl ConnectionTrait,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<Uuid>> {
    transactions_where(
        db,
        "kind = 'mint' AND (allocation_policy_version IS NULL OR alloc_treasury_micros IS NULL OR alloc_founder_micros IS NULL \
         OR alloc_burn_micros IS NULL OR alloc_circulation_micros IS NULL OR alloc_treasury_micros + alloc_founder_micros \
         + alloc_burn_micros + alloc_circulation_micros <> amount_azr_micros)",
        start,
        end,
    )
    .await
}

/// Confirmed transfers out of a wallet above `threshold` micro-AZR created
/// in `[start, end)`, in id order after `after`, at most `limit`.
pub async fn wallet_transfers_above(
    db: &impl ConnectionTrait,
    threshold: i64,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<WalletTransfer>> {
    let mut values: Vec<Value> = vec![threshold.into(), start.into(), end.into()];
    let cursor = match after {
        Some(after) => {
            values.push(after.into());
            "AND id > ?"
        }
        None => "",
    };
    let sql = format!(
        "SELECT id, amount_azr_micros AS amount, from_wallet_id AS wallet FROM ledger_transactions \
         WHERE kind IN ('transfer','multi_transfer') AND status = 'confirmed' AND from_wallet_id IS NOT NULL AND amount_azr_micros > ? \
         AND created_at >= ? AND created_at < ? {cursor} ORDER BY id LIMIT {limit}"
    );
    db.query_all_raw(statement(db, &sql, values))
        .await
        .map_err(classify)?
        .into_iter()
        .map(|row| {
            Ok(WalletTransfer {
                id: row.try_get("", "id").map_err(classify)?,
                amount_micros: row.try_get("", "amount").map_err(classify)?,
                from_wallet: row.try_get("", "wallet").map_err(classify)?,
            })
        })
        .collect()
}

/// What the entries say every account holds, counting entries posted before
/// `before` (all of them when `None`).
pub async fn balances_from_entries(
    db: &impl ConnectionTrait,
    before: Option<DateTime<Utc>>,
) -> Result<Balances> {
    use ledger_entry::Column;
    let mut totals = Balances::new();
    for (sign, wallet_column, system_column, bucket_column) in [
        (
            1,
            Column::DestinationWalletId,
            Column::DestinationSystem,
            Column::DestinationBucket,
        ),
        (
            -1,
            Column::SourceWalletId,
            Column::SourceSystem,
            Column::SourceBucket,
        ),
    ] {
        let rows: Vec<(Option<Uuid>, Option<String>, String, i64)> = ledger_entry::Entity::find()
            .select_only()
            .column(wallet_column)
            .column(system_column)
            .column(bucket_column)
            .column_as(Expr::cust("CAST(SUM(amount_micros) AS BIGINT)"), "total")
            .apply_if(before, |query, before| {
                query.filter(Column::PostedAt.lt(before))
            })
            .group_by(wallet_column)
            .group_by(system_column)
            .group_by(bucket_column)
            .into_tuple()
            .all(db)
            .await
            .map_err(classify)?;
        for (wallet, system, bucket, total) in rows {
            let account = wallet
                .map(|id| id.to_string())
                .or(system)
                .unwrap_or_default();
            *totals
                .entry(AccountBucket::new(account, bucket))
                .or_default() += sign * total;
        }
    }
    Ok(totals)
}

/// What the balance columns say every account holds: each wallet's three
/// buckets and each system account's balance.
pub async fn balances_on_record(db: &impl ConnectionTrait) -> Result<Balances> {
    let mut balances = Balances::new();
    for row in wallet_balance::Entity::find()
        .all(db)
        .await
        .map_err(classify)?
    {
        let id = row.id.to_string();
        for (bucket, micros) in [
            ("available", row.available_micros),
            ("pending", row.pending_micros),
            ("staked", row.staked_micros),
        ] {
            balances.insert(AccountBucket::new(id.clone(), bucket), micros);
        }
    }
    for row in system_account::Entity::find()
        .all(db)
        .await
        .map_err(classify)?
    {
        balances.insert(AccountBucket::system(&row.code), row.balance_micros);
    }
    Ok(balances)
}

/// Settlements whose ledger transfer disagrees with them: paid founder
/// compensations (from the founder pool to the record's wallet), knowledge
/// rewards (from circulation to the student's wallet) and paid invoices (from
/// the payer's wallet to the treasury reserve), each by the exact amount.
/// The settlement tables are read by name only: each names the ledger
/// transaction that settled it, and the ledger is what is checked here.
pub async fn settlements_not_matching_ledger(
    db: &impl ConnectionTrait,
) -> Result<Vec<UnmatchedSettlement>> {
    let queries: [(&'static str, &str); 3] = [
        (
            "founder compensation",
            "SELECT s.id AS id FROM founder_compensations s LEFT JOIN ledger_transactions t ON t.id = s.transaction_id \
             WHERE s.status = 'paid' AND (t.id IS NULL OR t.kind <> 'transfer' OR t.status <> 'confirmed' \
             OR t.amount_azr_micros <> s.amount_azr_micros OR t.to_wallet_id IS NULL OR t.to_wallet_id <> s.wallet_id \
             OR t.from_system_account IS NULL OR t.from_system_account <> 'founder_pool') ORDER BY s.id LIMIT 100",
        ),
        (
            "knowledge reward",
            "SELECT s.id AS id FROM student_earnings s LEFT JOIN ledger_transactions t ON t.id = s.transaction_id \
             WHERE t.id IS NULL OR t.kind <> 'transfer' OR t.status <> 'confirmed' \
             OR t.amount_azr_micros <> s.amount_azr_micros OR t.to_wallet_id IS NULL OR t.to_wallet_id <> s.wallet_id \
             OR t.from_system_account IS NULL OR t.from_system_account <> 'circulation_pool' ORDER BY s.id LIMIT 100",
        ),
        (
            "invoice",
            "SELECT s.id AS id FROM invoices s LEFT JOIN ledger_transactions t ON t.id = s.transaction_id \
             WHERE s.status = 'paid' AND (t.id IS NULL OR t.kind <> 'transfer' OR t.status <> 'confirmed' \
             OR t.amount_azr_micros <> s.amount_micros OR t.from_wallet_id IS NULL OR t.from_wallet_id <> s.wallet_id \
             OR t.to_system_account IS NULL OR t.to_system_account <> 'treasury_reserve') ORDER BY s.id LIMIT 100",
        ),
    ];
    let mut found = Vec::new();
    for (kind, sql) in queries {
        for row in db
            .query_all_raw(statement(db, sql, Vec::new()))
            .await
            .map_err(classify)?
        {
            let id = row.try_get("", "id").map_err(classify)?;
            found.push(UnmatchedSettlement { kind, id });
        }
    }
    Ok(found)
}

/// Reversals created in `[start, end)` that do not mirror what they
/// reverse: the original missing, not confirmed or itself a reversal, a
/// different amount, or entries other than the original's negated (same
/// accounts, buckets and amounts, source and destination swapped). In id
/// order, at most [`MAX_IDS`].
pub async fn reversals_not_mirroring(
    db: &impl ConnectionTrait,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<Uuid>> {
    let pairs: Vec<(Uuid, Option<Uuid>, bool)> = db
        .query_all_raw(statement(
            db,
            "SELECT r.id AS id, o.id AS original, \
             CASE WHEN o.status = 'confirmed' AND o.kind <> 'reversal' AND o.amount_azr_micros = r.amount_azr_micros \
             THEN 1 ELSE 0 END AS matches \
             FROM ledger_transactions r LEFT JOIN ledger_transactions o ON o.id = r.reverses_transaction_id \
             WHERE r.kind = 'reversal' AND r.created_at >= ? AND r.created_at < ? ORDER BY r.id",
            vec![start.into(), end.into()],
        ))
        .await
        .map_err(classify)?
        .into_iter()
        .map(|row| {
            Ok((
                row.try_get("", "id").map_err(classify)?,
                row.try_get("", "original").map_err(classify)?,
                row.try_get::<i32>("", "matches").map_err(classify)? == 1,
            ))
        })
        .collect::<Result<_>>()?;
    let mut found = Vec::new();
    for chunk in pairs.chunks(200) {
        let ids: Vec<Uuid> = chunk
            .iter()
            .flat_map(|(id, original, _)| [Some(*id), *original])
            .flatten()
            .collect();
        let entries = entry_moves(db, &ids).await?;
        for (id, original, matches) in chunk {
            let mirrored = original.is_some_and(|original| {
                let mut negated: Vec<Move> = entries
                    .get(&original)
                    .into_iter()
                    .flatten()
                    .map(|(from, to, micros)| (to.clone(), from.clone(), *micros))
                    .collect();
                let mut reversal = entries.get(id).cloned().unwrap_or_default();
                negated.sort();
                reversal.sort();
                !negated.is_empty() && negated == reversal
            });
            if !(*matches && mirrored) {
                found.push(*id);
            }
            if found.len() as u64 >= MAX_IDS {
                return Ok(found);
            }
        }
    }
    Ok(found)
}

/// One entry as (source, destination, micro-AZR).
type Move = (AccountBucket, AccountBucket, i64);

async fn entry_moves(
    db: &impl ConnectionTrait,
    transactions: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, Vec<Move>>> {
    let side = |wallet: Option<Uuid>, system: Option<String>, bucket: String| {
        AccountBucket::new(
            wallet
                .map(|id| id.to_string())
                .or(system)
                .unwrap_or_default(),
            bucket,
        )
    };
    let mut moves: std::collections::HashMap<Uuid, Vec<Move>> = std::collections::HashMap::new();
    for row in ledger_entry::Entity::find()
        .filter(ledger_entry::Column::TransactionId.is_in(transactions.iter().copied()))
        .all(db)
        .await
        .map_err(classify)?
    {
        moves.entry(row.transaction_id).or_default().push((
            side(row.source_wallet_id, row.source_system, row.source_bucket),
            side(
                row.destination_wallet_id,
                row.destination_system,
                row.destination_bucket,
            ),
            row.amount_micros,
        ));
    }
    Ok(moves)
}

/// AZR staked in wallets now.
pub async fn total_staked(db: &impl ConnectionTrait) -> Result<i64> {
    let row = db
        .query_one_raw(statement(
            db,
            "SELECT CAST(COALESCE(SUM(staked_micros), 0) AS BIGINT) AS staked FROM wallets",
            Vec::new(),
        ))
        .await
        .map_err(classify)?;
    aggregate(row)?.try_get("", "staked").map_err(classify)
}

/// Where the totals the batches keep (what the summary reads) differ from
/// the same totals counted from the rows: one line per kind and status, and
/// one for what wallets hold or have staked. Empty when they agree.
pub async fn kept_totals_not_matching(db: &impl ConnectionTrait) -> Result<Vec<String>> {
    let kept = super::store::kept_kind_totals(db).await?;
    let counted = super::store::counted_kind_totals(db).await?;
    let mut found = Vec::new();
    let keys: std::collections::BTreeSet<_> = kept.keys().chain(counted.keys()).collect();
    for key @ (kind, status) in keys {
        let (kept, counted) = (
            kept.get(key).copied().unwrap_or_default(),
            counted.get(key).copied().unwrap_or_default(),
        );
        if kept != counted {
            found.push(format!(
                "{} {}: kept {} transactions of {} micro-AZR, counted {} of {}",
                kind.as_str(),
                status.as_str(),
                kept.transactions,
                kept.micros,
                counted.transactions,
                counted.micros
            ));
        }
    }
    let (kept_held, kept_staked) = super::store::kept_wallet_totals(db).await?;
    let (held, staked) = super::store::counted_wallet_totals(db).await?;
    if (kept_held, kept_staked) != (held, staked) {
        found.push(format!(
            "wallets: kept {kept_held} micro-AZR held and {kept_staked} staked, counted {held} and {staked}"
        ));
    }
    Ok(found)
}

/// Wallets with an entry whose running balances are not the running sum of
/// the wallet's postings up to and including it (a posting: one
/// transaction's entries of one batch, which all carry the balances after
/// it). In id order, at most [`MAX_IDS`]. Together with the check that the
/// entries sum to the balance columns, this proves a balance as of any time
/// right.
pub async fn running_balances_not_matching(db: &impl ConnectionTrait) -> Result<Vec<Uuid>> {
    let rows = db
        .query_all_raw(statement(
            db,
            "WITH moves AS ( \
                SELECT id, transaction_id, posted_at, source_wallet_id AS wallet_id, \
                    CASE source_bucket WHEN 'available' THEN -amount_micros ELSE 0 END AS available, \
                    CASE source_bucket WHEN 'pending' THEN -amount_micros ELSE 0 END AS pending, \
                    CASE source_bucket WHEN 'staked' THEN -amount_micros ELSE 0 END AS staked, \
                    source_available_after AS available_after, source_pending_after AS pending_after, \
                    source_staked_after AS staked_after \
                FROM ledger_entries WHERE source_wallet_id IS NOT NULL \
                UNION ALL \
                SELECT id, transaction_id, posted_at, destination_wallet_id, \
                    CASE destination_bucket WHEN 'available' THEN amount_micros ELSE 0 END, \
                    CASE destination_bucket WHEN 'pending' THEN amount_micros ELSE 0 END, \
                    CASE destination_bucket WHEN 'staked' THEN amount_micros ELSE 0 END, \
                    destination_available_after, destination_pending_after, destination_staked_after \
                FROM ledger_entries WHERE destination_wallet_id IS NOT NULL \
            ), postings AS ( \
                SELECT wallet_id, MAX(id) AS last_id, \
                    SUM(available) AS available, SUM(pending) AS pending, SUM(staked) AS staked, \
                    SUM(CASE WHEN available_after IS NULL OR pending_after IS NULL OR staked_after IS NULL \
                        THEN 1 ELSE 0 END) AS missing, \
                    MIN(available_after) AS available_low, MAX(available_after) AS available_high, \
                    MIN(pending_after) AS pending_low, MAX(pending_after) AS pending_high, \
                    MIN(staked_after) AS staked_low, MAX(staked_after) AS staked_high \
                FROM moves GROUP BY wallet_id, transaction_id, posted_at \
            ), running AS ( \
                SELECT wallet_id, missing, available_low, available_high, pending_low, pending_high, \
                    staked_low, staked_high, \
                    SUM(available) OVER w AS available, SUM(pending) OVER w AS pending, \
                    SUM(staked) OVER w AS staked \
                FROM postings WINDOW w AS (PARTITION BY wallet_id ORDER BY last_id ROWS UNBOUNDED PRECEDING) \
            ) \
            SELECT DISTINCT wallet_id FROM running WHERE missing > 0 \
                OR available_low <> available OR available_high <> available \
                OR pending_low <> pending OR pending_high <> pending \
                OR staked_low <> staked OR staked_high <> staked \
            ORDER BY wallet_id LIMIT ?",
            vec![(MAX_IDS as i64).into()],
        ))
        .await
        .map_err(classify)?;
    rows.iter()
        .map(|row| row.try_get("", "wallet_id").map_err(classify))
        .collect()
}
