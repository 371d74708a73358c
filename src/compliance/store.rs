//! Compliance SQL: audit event reads, reports, alerts, health snapshots, and
//! the queries behind a report's checks.

use std::collections::BTreeMap;

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::NotSet, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Set, TryInsertResult,
};
use uuid::Uuid;

use super::entities::{alert, report, system_health};
use crate::audit::entities::audit_event;
use crate::db::{begin_write, classify, statement};
use crate::error::Error;
use crate::identity::entities::wallet;
use crate::pagination::PageRequest;
use crate::treasury::entities::{ledger_entry, system_account};

type Result<T> = std::result::Result<T, Error>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

/// Raises an alert in its own transaction; WatchAlerts streams pick it up.
pub async fn raise_alert(
    db: &DatabaseConnection,
    severity: Severity,
    source: &str,
    message: &str,
) -> Result<alert::Model> {
    let transaction = begin_write(db).await?;
    let raised = raise_alert_in(&transaction, severity, source, message).await?;
    transaction.commit().await.map_err(classify)?;
    Ok(raised)
}

/// Raises an alert inside `transaction`, which commits it with the rest of
/// its change. The alert takes the next number of `alert_sequence`, whose row
/// stays locked until `transaction` ends, so alerts become visible in
/// sequence order and a watcher that has seen sequence n has seen (or will
/// never see) every alert below n. It takes a transaction, never a bare
/// connection: numbering and inserting in two autocommits would lose that.
pub async fn raise_alert_in(
    transaction: &DatabaseTransaction,
    severity: Severity,
    source: &str,
    message: &str,
) -> Result<alert::Model> {
    let sequence: i64 = transaction
        .query_one_raw(statement(
            transaction,
            "UPDATE alert_sequence SET last = last + 1 WHERE id = 1 RETURNING last",
            Vec::new(),
        ))
        .await
        .map_err(classify)?
        .ok_or_else(|| Error::internal("the alert sequence row is missing"))?
        .try_get("", "last")
        .map_err(classify)?;
    let row = alert::Model {
        id: Uuid::now_v7(),
        severity: severity.as_str().to_owned(),
        source: source.to_owned(),
        message: message.to_owned(),
        created_at: Utc::now().trunc_subsecs(6),
        acknowledged_by: None,
        acknowledged_at: None,
        sequence,
    };
    alert::Entity::insert(alert::ActiveModel {
        id: Set(row.id),
        severity: Set(row.severity.clone()),
        source: Set(row.source.clone()),
        message: Set(row.message.clone()),
        created_at: Set(row.created_at),
        acknowledged_by: Set(None),
        acknowledged_at: Set(None),
        sequence: Set(sequence),
    })
    .exec_without_returning(transaction)
    .await
    .map_err(classify)?;
    tracing::warn!(
        severity = severity.as_str(),
        source,
        message,
        sequence,
        "alert raised"
    );
    Ok(row)
}

pub async fn find_alert(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<alert::Model>> {
    alert::Entity::find_by_id(id)
        .one(db)
        .await
        .map_err(classify)
}

pub async fn list_alerts(
    db: &impl ConnectionTrait,
    unacknowledged_only: bool,
    page: &PageRequest,
) -> Result<Vec<alert::Model>> {
    alert::Entity::find()
        .apply_if(unacknowledged_only.then_some(()), |query, ()| {
            query.filter(alert::Column::AcknowledgedAt.is_null())
        })
        .apply_if(page.after, |query, after| {
            query.filter(alert::Column::Id.lt(after))
        })
        .order_by_desc(alert::Column::Id)
        .limit(page.fetch_limit())
        .all(db)
        .await
        .map_err(classify)
}

/// Alerts numbered after `after`, in sequence order, at most 100.
pub async fn alerts_after(db: &impl ConnectionTrait, after: i64) -> Result<Vec<alert::Model>> {
    alert::Entity::find()
        .filter(alert::Column::Sequence.gt(after))
        .order_by_asc(alert::Column::Sequence)
        .limit(100)
        .all(db)
        .await
        .map_err(classify)
}

/// The sequence of the newest alert; 0 when there is none.
pub async fn newest_alert_sequence(db: &impl ConnectionTrait) -> Result<i64> {
    Ok(alert::Entity::find()
        .select_only()
        .column(alert::Column::Sequence)
        .order_by_desc(alert::Column::Sequence)
        .into_tuple::<i64>()
        .one(db)
        .await
        .map_err(classify)?
        .unwrap_or_default())
}

pub async fn acknowledge_alert(
    db: &impl ConnectionTrait,
    id: Uuid,
    by: Uuid,
    at: DateTime<Utc>,
) -> Result<()> {
    alert::Entity::update_many()
        .col_expr(alert::Column::AcknowledgedBy, Expr::value(by))
        .col_expr(alert::Column::AcknowledgedAt, Expr::value(at))
        .filter(alert::Column::Id.eq(id))
        .filter(alert::Column::AcknowledgedAt.is_null())
        .exec(db)
        .await
        .map_err(classify)?;
    Ok(())
}

pub async fn record_health(
    db: &impl ConnectionTrait,
    component: &str,
    up: bool,
    latency_micros: Option<i64>,
) -> Result<()> {
    system_health::Entity::insert(system_health::ActiveModel {
        id: NotSet,
        component: Set(component.to_owned()),
        status: Set(if up { "up" } else { "down" }.to_owned()),
        latency_micros: Set(latency_micros),
        recorded_at: Set(Utc::now().trunc_subsecs(6)),
    })
    .exec_without_returning(db)
    .await
    .map_err(classify)?;
    Ok(())
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub actor: Option<Uuid>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub action: Option<String>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

pub async fn list_audit_events(
    db: &impl ConnectionTrait,
    filter: &AuditFilter,
    page: &PageRequest,
) -> Result<Vec<audit_event::Model>> {
    use audit_event::Column;
    audit_event::Entity::find()
        .apply_if(filter.actor, |query, actor| {
            query.filter(Column::ActorUserId.eq(actor))
        })
        .apply_if(filter.resource_type.clone(), |query, value| {
            query.filter(Column::ResourceType.eq(value))
        })
        .apply_if(filter.resource_id.clone(), |query, value| {
            query.filter(Column::ResourceId.eq(value))
        })
        .apply_if(filter.action.clone(), |query, value| {
            query.filter(Column::Action.eq(value))
        })
        .apply_if(filter.start, |query, start| {
            query.filter(Column::RecordedAt.gte(start))
        })
        .apply_if(filter.end, |query, end| {
            query.filter(Column::RecordedAt.lt(end))
        })
        .apply_if(page.after, |query, after| {
            query.filter(Column::Id.lt(after))
        })
        .order_by_desc(Column::Id)
        .limit(page.fetch_limit())
        .all(db)
        .await
        .map_err(classify)
}

pub async fn find_audit_event(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<audit_event::Model>> {
    audit_event::Entity::find_by_id(id)
        .one(db)
        .await
        .map_err(classify)
}

/// Stores a report. Returns false, storing nothing, when the caller already
/// has a report under the same request id (a concurrent retry won).
pub async fn insert_report(db: &impl ConnectionTrait, row: report::Model) -> Result<bool> {
    let inserted = report::Entity::insert(report::ActiveModel {
        id: Set(row.id),
        report_type: Set(row.report_type),
        period_start: Set(row.period_start),
        period_end: Set(row.period_end),
        status: Set(row.status),
        total_transactions: Set(row.total_transactions),
        volume_azr_micros: Set(row.volume_azr_micros),
        volume_usd_micros: Set(row.volume_usd_micros),
        treasury_balance_micros: Set(row.treasury_balance_micros),
        checks: Set(row.checks),
        recommendations: Set(row.recommendations),
        generated_by: Set(row.generated_by),
        generated_at: Set(row.generated_at),
        request_id: Set(row.request_id),
        pending_claims: Set(row.pending_claims),
        pending_claims_micros: Set(row.pending_claims_micros),
    })
    .on_conflict_do_nothing_on([report::Column::GeneratedBy, report::Column::RequestId])
    .exec_without_returning(db)
    .await
    .map_err(classify)?;
    Ok(matches!(inserted, TryInsertResult::Inserted(rows) if rows > 0))
}

/// The report a caller generated under `request_id`, if any.
pub async fn find_report_by_request(
    db: &impl ConnectionTrait,
    caller: Uuid,
    request_id: &str,
) -> Result<Option<report::Model>> {
    report::Entity::find()
        .filter(report::Column::GeneratedBy.eq(caller))
        .filter(report::Column::RequestId.eq(request_id))
        .one(db)
        .await
        .map_err(classify)
}

pub async fn find_report(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<report::Model>> {
    report::Entity::find_by_id(id)
        .one(db)
        .await
        .map_err(classify)
}

pub async fn list_reports(
    db: &impl ConnectionTrait,
    page: &PageRequest,
) -> Result<Vec<report::Model>> {
    report::Entity::find()
        .apply_if(page.after, |query, after| {
            query.filter(report::Column::Id.lt(after))
        })
        .order_by_desc(report::Column::Id)
        .limit(page.fetch_limit())
        .all(db)
        .await
        .map_err(classify)
}

/// Mining claims (pending mints) open at `end`: created before it and not
/// resolved before it. Count and AZR.
pub async fn pending_claims_at(
    db: &impl ConnectionTrait,
    end: DateTime<Utc>,
) -> Result<(i64, i64)> {
    let row = db
        .query_one_raw(statement(
            db,
            "SELECT CAST(COUNT(*) AS BIGINT) AS n, CAST(COALESCE(SUM(amount_azr_micros), 0) AS BIGINT) AS azr \
             FROM ledger_transactions WHERE kind = 'mint' AND mining_session_id IS NOT NULL \
             AND created_at < ? AND (processed_at IS NULL OR processed_at >= ?)",
            vec![end.into(), end.into()],
        ))
        .await
        .map_err(classify)?
        .ok_or_else(|| Error::internal("an aggregate returned no row"))?;
    Ok((
        row.try_get("", "n").map_err(classify)?,
        row.try_get("", "azr").map_err(classify)?,
    ))
}

/// Confirmed transactions created in the period: count and volume.
pub async fn period_totals(
    db: &impl ConnectionTrait,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<(i64, i64, i64)> {
    let row = db
        .query_one_raw(statement(
            db,
            "SELECT CAST(COUNT(*) AS BIGINT) AS n, CAST(COALESCE(SUM(amount_azr_micros), 0) AS BIGINT) AS azr, \
             CAST(COALESCE(SUM(amount_usd_micros), 0) AS BIGINT) AS usd FROM ledger_transactions \
             WHERE status = 'confirmed' AND created_at >= ? AND created_at < ?",
            vec![start.into(), end.into()],
        ))
        .await
        .map_err(classify)?
        .ok_or_else(|| Error::internal("an aggregate returned no row"))?;
    Ok((
        row.try_get("", "n").map_err(classify)?,
        row.try_get("", "azr").map_err(classify)?,
        row.try_get("", "usd").map_err(classify)?,
    ))
}

/// Ids of transactions in the period matching `condition`, at most 100.
pub async fn transactions_where(
    db: &impl ConnectionTrait,
    condition: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<String>> {
    let rows = db
        .query_all_raw(statement(
            db,
            &format!("SELECT id FROM ledger_transactions WHERE ({condition}) AND created_at >= ? AND created_at < ? ORDER BY id LIMIT 100"),
            vec![start.into(), end.into()],
        ))
        .await
        .map_err(classify)?;
    rows.into_iter()
        .map(|row| {
            row.try_get::<Uuid>("", "id")
                .map(|id| id.to_string())
                .map_err(classify)
        })
        .collect()
}

/// Confirmed transfers above `threshold` micro-AZR in the period whose
/// sender's KYC is not verified: (transaction, amount, username, kyc).
pub async fn unverified_large_transfers(
    db: &impl ConnectionTrait,
    threshold: i64,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<(Uuid, i64, String, String)>> {
    let rows = db
        .query_all_raw(statement(
            db,
            "SELECT t.id AS id, t.amount_azr_micros AS amount, u.username AS username, u.kyc_status AS kyc \
             FROM ledger_transactions t JOIN wallets w ON w.id = t.from_wallet_id JOIN users u ON u.id = w.owner_id \
             WHERE t.kind = 'transfer' AND t.status = 'confirmed' AND t.amount_azr_micros > ? \
             AND u.kyc_status <> 'verified' AND t.created_at >= ? AND t.created_at < ? ORDER BY t.id LIMIT 100",
            vec![threshold.into(), start.into(), end.into()],
        ))
        .await
        .map_err(classify)?;
    rows.into_iter()
        .map(|row| {
            Ok((
                row.try_get("", "id").map_err(classify)?,
                row.try_get("", "amount").map_err(classify)?,
                row.try_get("", "username").map_err(classify)?,
                row.try_get("", "kyc").map_err(classify)?,
            ))
        })
        .collect()
}

/// An account in the books: a wallet bucket or a system account.
pub type AccountKey = (String, String);

/// What the entries say every account holds: (account, bucket) → micros.
pub async fn balances_from_entries(
    db: &impl ConnectionTrait,
    before: Option<DateTime<Utc>>,
) -> Result<BTreeMap<AccountKey, i64>> {
    use ledger_entry::Column;
    let mut totals: BTreeMap<AccountKey, i64> = BTreeMap::new();
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
            *totals.entry((account, bucket)).or_default() += sign * total;
        }
    }
    Ok(totals)
}

/// What the balance columns say every account holds.
pub async fn balances_on_record(db: &impl ConnectionTrait) -> Result<BTreeMap<AccountKey, i64>> {
    let mut balances = BTreeMap::new();
    for row in wallet::Entity::find().all(db).await.map_err(classify)? {
        let id = row.id.to_string();
        balances.insert((id.clone(), "available".to_owned()), row.available_micros);
        balances.insert((id.clone(), "pending".to_owned()), row.pending_micros);
        balances.insert((id, "staked".to_owned()), row.staked_micros);
    }
    for row in system_account::Entity::find()
        .all(db)
        .await
        .map_err(classify)?
    {
        balances.insert((row.code, "available".to_owned()), row.balance_micros);
    }
    Ok(balances)
}

/// Settlements whose ledger transfer disagrees with them: paid founder
/// compensations (from the founder pool to the record's wallet), knowledge
/// rewards (from circulation to the student's wallet) and paid invoices (from
/// the payer's wallet to the treasury reserve), each by the exact amount.
/// Returns (what, id) pairs.
pub async fn settlements_not_matching_ledger(
    db: &impl ConnectionTrait,
) -> Result<Vec<(&'static str, Uuid)>> {
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
    for (what, sql) in queries {
        for row in db
            .query_all_raw(statement(db, sql, Vec::new()))
            .await
            .map_err(classify)?
        {
            found.push((what, row.try_get("", "id").map_err(classify)?));
        }
    }
    Ok(found)
}
