//! Founder compensation's SQL.

use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    Set, Value,
};
use uuid::Uuid;

use super::domain::{
    Compensation, CompensationFilter, CompensationStatus, CompensationType, Month, Summary, Totals,
};
use super::entities::founder_compensation::{self as row, Column, Entity};
use crate::db::{classify, statement};
use crate::error::Error;
use crate::pagination::PageRequest;

type Result<T> = std::result::Result<T, Error>;

fn corrupt(what: &str, value: &str) -> Error {
    Error::internal(format!("unexpected founder compensation {what} {value:?}"))
}

fn from_row(row: row::Model) -> Result<Compensation> {
    Ok(Compensation {
        kind: CompensationType::parse(&row.compensation_type)
            .ok_or_else(|| corrupt("type", &row.compensation_type))?,
        status: CompensationStatus::parse(&row.status)
            .ok_or_else(|| corrupt("status", &row.status))?,
        id: row.id,
        founder: row.founder_id,
        wallet: row.wallet_id,
        month: row.month,
        amount_micros: row.amount_azr_micros,
        notes: row.notes,
        request_id: row.request_id,
        fingerprint: row.fingerprint,
        created_by: row.created_by,
        created_at: row.created_at,
        approved_by: row.approved_by,
        approved_at: row.approved_at,
        paid_by: row.paid_by,
        transaction: row.transaction_id,
        tx_hash: row.tx_hash,
        paid_at: row.paid_at,
        cancelled_by: row.cancelled_by,
        cancelled_at: row.cancelled_at,
        cancel_reason: row.cancel_reason,
    })
}

fn to_row(record: &Compensation) -> row::ActiveModel {
    row::ActiveModel {
        id: Set(record.id),
        founder_id: Set(record.founder),
        wallet_id: Set(record.wallet),
        month: Set(record.month.clone()),
        compensation_type: Set(record.kind.as_str().to_owned()),
        status: Set(record.status.as_str().to_owned()),
        amount_azr_micros: Set(record.amount_micros),
        // The peg: the database checks that both are equal.
        amount_usd_micros: Set(record.amount_micros),
        notes: Set(record.notes.clone()),
        request_id: Set(record.request_id.clone()),
        fingerprint: Set(record.fingerprint.clone()),
        created_by: Set(record.created_by),
        created_at: Set(record.created_at),
        approved_by: Set(record.approved_by),
        approved_at: Set(record.approved_at),
        paid_by: Set(record.paid_by),
        transaction_id: Set(record.transaction),
        tx_hash: Set(record.tx_hash.clone()),
        paid_at: Set(record.paid_at),
        cancelled_by: Set(record.cancelled_by),
        cancelled_at: Set(record.cancelled_at),
        cancel_reason: Set(record.cancel_reason.clone()),
    }
}

pub(super) async fn insert(db: &impl ConnectionTrait, record: &Compensation) -> Result<()> {
    Entity::insert(to_row(record))
        .exec_without_returning(db)
        .await
        .map_err(classify)?;
    Ok(())
}

/// Writes every field of the record; the database refuses illegal moves.
pub(super) async fn update(db: &impl ConnectionTrait, record: &Compensation) -> Result<()> {
    Entity::update(to_row(record))
        .exec(db)
        .await
        .map_err(classify)?;
    Ok(())
}

pub(super) async fn find(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<Compensation>> {
    Entity::find_by_id(id)
        .one(db)
        .await
        .map_err(classify)?
        .map(from_row)
        .transpose()
}

/// The record, locked until the transaction ends: approving, paying and
/// cancelling one record serialise on its row.
pub(super) async fn lock(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<Compensation>> {
    Entity::find_by_id(id)
        .lock_exclusive()
        .one(db)
        .await
        .map_err(classify)?
        .map(from_row)
        .transpose()
}

pub(super) async fn find_by_request(
    db: &impl ConnectionTrait,
    created_by: Uuid,
    request_id: &str,
) -> Result<Option<Compensation>> {
    Entity::find()
        .filter(Column::CreatedBy.eq(created_by))
        .filter(Column::RequestId.eq(request_id))
        .one(db)
        .await
        .map_err(classify)?
        .map(from_row)
        .transpose()
}

/// The live (not cancelled) record for a founder, month and type, if any.
pub(super) async fn find_live(
    db: &impl ConnectionTrait,
    founder: Uuid,
    month: &Month,
    kind: CompensationType,
) -> Result<Option<Compensation>> {
    Entity::find()
        .filter(Column::FounderId.eq(founder))
        .filter(Column::Month.eq(month.as_str()))
        .filter(Column::CompensationType.eq(kind.as_str()))
        .filter(Column::Status.ne(CompensationStatus::Cancelled.as_str()))
        .one(db)
        .await
        .map_err(classify)?
        .map(from_row)
        .transpose()
}

pub(super) async fn list(
    db: &impl ConnectionTrait,
    filter: &CompensationFilter,
    page: &PageRequest,
) -> Result<Vec<Compensation>> {
    Entity::find()
        .apply_if(filter.founder, |query, founder| {
            query.filter(Column::FounderId.eq(founder))
        })
        .apply_if(filter.month.clone(), |query, month| {
            query.filter(Column::Month.eq(month.as_str()))
        })
        .apply_if(filter.status, |query, status| {
            query.filter(Column::Status.eq(status.as_str()))
        })
        .apply_if(filter.kind, |query, kind| {
            query.filter(Column::CompensationType.eq(kind.as_str()))
        })
        .apply_if(page.after, |query, after| {
            query.filter(Column::Id.lt(after))
        })
        .order_by_desc(Column::Id)
        .limit(page.fetch_limit())
        .all(db)
        .await
        .map_err(classify)?
        .into_iter()
        .map(from_row)
        .collect()
}

/// Exact sums by founder, month, type and status, folded into rows, per
/// founder totals and a grand total.
pub(super) async fn summary(
    db: &impl ConnectionTrait,
    founder: Option<Uuid>,
    start: Option<&Month>,
    end: Option<&Month>,
) -> Result<Summary> {
    let mut conditions = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    if let Some(founder) = founder {
        conditions.push("founder_id = ?");
        values.push(founder.into());
    }
    if let Some(start) = start {
        conditions.push("month >= ?");
        values.push(start.as_str().into());
    }
    if let Some(end) = end {
        conditions.push("month <= ?");
        values.push(end.as_str().into());
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let rows = db
        .query_all_raw(statement(
            db,
            &format!(
                "SELECT founder_id, month, compensation_type, status, CAST(COUNT(*) AS BIGINT) AS records, \
                 CAST(SUM(amount_azr_micros) AS BIGINT) AS micros FROM founder_compensations {filter} \
                 GROUP BY founder_id, month, compensation_type, status"
            ),
            values,
        ))
        .await
        .map_err(classify)?;
    let mut groups: std::collections::BTreeMap<(Uuid, String, CompensationType), Totals> =
        Default::default();
    let mut founders: std::collections::BTreeMap<Uuid, Totals> = Default::default();
    let mut totals = Totals::default();
    for row in rows {
        let founder: Uuid = row.try_get("", "founder_id").map_err(classify)?;
        let month: String = row.try_get("", "month").map_err(classify)?;
        let kind: String = row.try_get("", "compensation_type").map_err(classify)?;
        let status: String = row.try_get("", "status").map_err(classify)?;
        let count: i64 = row.try_get("", "records").map_err(classify)?;
        let micros: i64 = row.try_get("", "micros").map_err(classify)?;
        let kind = CompensationType::parse(&kind).ok_or_else(|| corrupt("type", &kind))?;
        let status =
            CompensationStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?;
        groups
            .entry((founder, month, kind))
            .or_default()
            .add(status, count, micros);
        founders
            .entry(founder)
            .or_default()
            .add(status, count, micros);
        totals.add(status, count, micros);
    }
    Ok(Summary {
        rows: groups
            .into_iter()
            .map(|((founder, month, kind), totals)| (founder, month, kind, totals))
            .collect(),
        founders: founders.into_iter().collect(),
        totals,
    })
}
