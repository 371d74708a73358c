//! Compliance SQL: audit event reads, reports, alerts and health snapshots,
//! and the conversion of their rows into domain types. Database errors are
//! classified here.

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::NotSet, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait, Set, TryInsertResult,
};
use uuid::Uuid;

use super::domain::{
    Alert, AuditEvent, AuditFilter, AuditOutcome, ChainLink, Report, ReportStatus, ReportType,
    Severity,
};
use super::entities::{alert, report, system_health};
use crate::audit::entities::audit_event;
use crate::db::{classify, statement};
use crate::error::Error;
use crate::pagination::PageRequest;

type Result<T> = std::result::Result<T, Error>;

fn corrupt(column: &str, value: &str) -> Error {
    Error::internal(format!("unexpected {column} {value:?} in the database"))
}

fn alert_from_row(row: alert::Model) -> Result<Alert> {
    Ok(Alert {
        severity: Severity::parse(&row.severity)
            .ok_or_else(|| corrupt("severity", &row.severity))?,
        id: row.id,
        source: row.source,
        message: row.message,
        created_at: row.created_at,
        acknowledged_by: row.acknowledged_by,
        acknowledged_at: row.acknowledged_at,
        sequence: row.sequence,
    })
}

fn report_from_row(row: report::Model) -> Result<Report> {
    Ok(Report {
        kind: ReportType::parse(&row.report_type)
            .ok_or_else(|| corrupt("report_type", &row.report_type))?,
        status: ReportStatus::parse(&row.status).ok_or_else(|| corrupt("status", &row.status))?,
        checks: serde_json::from_str(&row.checks).map_err(Error::internal)?,
        recommendations: serde_json::from_str(&row.recommendations).map_err(Error::internal)?,
        id: row.id,
        period_start: row.period_start,
        period_end: row.period_end,
        total_transactions: row.total_transactions,
        volume_azr_micros: row.volume_azr_micros,
        volume_usd_micros: row.volume_usd_micros,
        treasury_balance_micros: row.treasury_balance_micros,
        generated_by: row.generated_by,
        generated_at: row.generated_at,
        request_id: row.request_id,
        pending_claims: row.pending_claims,
        pending_claims_micros: row.pending_claims_micros,
    })
}

fn event_from_row(row: audit_event::Model) -> Result<AuditEvent> {
    Ok(AuditEvent {
        outcome: AuditOutcome::parse(&row.outcome)
            .ok_or_else(|| corrupt("outcome", &row.outcome))?,
        id: row.id,
        recorded_at: row.recorded_at,
        actor_user: row.actor_user_id,
        actor_key: row.actor_key_id,
        action: row.action,
        resource_type: row.resource_type,
        resource_id: row.resource_id,
        old_values: row.old_values,
        new_values: row.new_values,
        peer_address: row.peer_address,
        user_agent: row.user_agent,
        request_id: row.request_id,
        link: None,
    })
}

/// Inserts an alert inside `transaction`, which commits it with the rest of
/// its change. The alert takes the next number of `alert_sequence`, whose row
/// stays locked until `transaction` ends, so alerts become visible in
/// sequence order and a watcher that has seen sequence n has seen (or will
/// never see) every alert below n. It takes a transaction, never a bare
/// connection: numbering and inserting in two autocommits would lose that.
pub(super) async fn raise_alert_in(
    transaction: &DatabaseTransaction,
    severity: Severity,
    source: &str,
    message: &str,
) -> Result<Alert> {
    let sequence = next_alert_sequence(transaction).await?;
    let raised = Alert {
        id: Uuid::now_v7(),
        severity,
        source: source.to_owned(),
        message: message.to_owned(),
        created_at: Utc::now().trunc_subsecs(6),
        acknowledged_by: None,
        acknowledged_at: None,
        sequence,
    };
    alert::Entity::insert(alert::ActiveModel {
        id: Set(raised.id),
        severity: Set(severity.as_str().to_owned()),
        source: Set(raised.source.clone()),
        message: Set(raised.message.clone()),
        created_at: Set(raised.created_at),
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
    Ok(raised)
}

/// Takes the next alert number, locking the sequence row until
/// `transaction` ends.
async fn next_alert_sequence(transaction: &DatabaseTransaction) -> Result<i64> {
    transaction
        .query_one_raw(statement(
            transaction,
            "UPDATE alert_sequence SET last = last + 1 WHERE id = 1 RETURNING last",
            Vec::new(),
        ))
        .await
        .map_err(classify)?
        .ok_or_else(|| Error::internal("the alert sequence row is missing"))?
        .try_get("", "last")
        .map_err(classify)
}

pub(super) async fn find_alert(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<Alert>> {
    alert::Entity::find_by_id(id)
        .one(db)
        .await
        .map_err(classify)?
        .map(alert_from_row)
        .transpose()
}

/// Newest first (ids are UUIDv7).
pub(super) async fn list_alerts(
    db: &impl ConnectionTrait,
    unacknowledged_only: bool,
    page: &PageRequest,
) -> Result<Vec<Alert>> {
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
        .map_err(classify)?
        .into_iter()
        .map(alert_from_row)
        .collect()
}

/// Alerts numbered after `after`, in sequence order, at most 100.
pub(super) async fn alerts_after(db: &impl ConnectionTrait, after: i64) -> Result<Vec<Alert>> {
    alert::Entity::find()
        .filter(alert::Column::Sequence.gt(after))
        .order_by_asc(alert::Column::Sequence)
        .limit(100)
        .all(db)
        .await
        .map_err(classify)?
        .into_iter()
        .map(alert_from_row)
        .collect()
}

/// The sequence of the newest alert; 0 when there is none.
pub(super) async fn newest_alert_sequence(db: &impl ConnectionTrait) -> Result<i64> {
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

/// Marks an alert acknowledged, unless it already is.
pub(super) async fn acknowledge_alert(
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

pub(super) async fn record_health(
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

/// Newest first (ids are UUIDv7), without their chain links.
pub(super) async fn list_audit_events(
    db: &impl ConnectionTrait,
    filter: &AuditFilter,
    page: &PageRequest,
) -> Result<Vec<AuditEvent>> {
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
        .map_err(classify)?
        .into_iter()
        .map(event_from_row)
        .collect()
}

/// An audit event without its chain link.
pub(super) async fn find_audit_event(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<AuditEvent>> {
    audit_event::Entity::find_by_id(id)
        .one(db)
        .await
        .map_err(classify)?
        .map(event_from_row)
        .transpose()
}

/// Fills in the chain links of `events` (those chained so far).
pub(super) async fn attach_links(
    db: &impl ConnectionTrait,
    events: &mut [AuditEvent],
) -> Result<()> {
    let ids: Vec<Uuid> = events.iter().map(|event| event.id).collect();
    let mut links = crate::audit::links_of(db, &ids).await?;
    for event in events {
        event.link = links.remove(&event.id).map(|link| ChainLink {
            sequence: link.sequence,
            hash: link.hash,
            previous_hash: link.previous_hash,
        });
    }
    Ok(())
}

/// Stores a report. Returns false, storing nothing, when the caller already
/// has a report under the same request id (a concurrent retry won).
pub(super) async fn insert_report(db: &impl ConnectionTrait, report: &Report) -> Result<bool> {
    let inserted = report::Entity::insert(report::ActiveModel {
        id: Set(report.id),
        report_type: Set(report.kind.as_str().to_owned()),
        period_start: Set(report.period_start),
        period_end: Set(report.period_end),
        status: Set(report.status.as_str().to_owned()),
        total_transactions: Set(report.total_transactions),
        volume_azr_micros: Set(report.volume_azr_micros),
        volume_usd_micros: Set(report.volume_usd_micros),
        treasury_balance_micros: Set(report.treasury_balance_micros),
        checks: Set(serde_json::to_string(&report.checks).map_err(Error::internal)?),
        recommendations: Set(
            serde_json::to_string(&report.recommendations).map_err(Error::internal)?
        ),
        generated_by: Set(report.generated_by),
        generated_at: Set(report.generated_at),
        request_id: Set(report.request_id.clone()),
        pending_claims: Set(report.pending_claims),
        pending_claims_micros: Set(report.pending_claims_micros),
    })
    .on_conflict_do_nothing_on([report::Column::GeneratedBy, report::Column::RequestId])
    .exec_without_returning(db)
    .await
    .map_err(classify)?;
    Ok(matches!(inserted, TryInsertResult::Inserted(rows) if rows > 0))
}

/// The report a caller generated under `request_id`, if any.
pub(super) async fn find_report_by_request(
    db: &impl ConnectionTrait,
    caller: Uuid,
    request_id: &str,
) -> Result<Option<Report>> {
    report::Entity::find()
        .filter(report::Column::GeneratedBy.eq(caller))
        .filter(report::Column::RequestId.eq(request_id))
        .one(db)
        .await
        .map_err(classify)?
        .map(report_from_row)
        .transpose()
}

pub(super) async fn find_report(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<Report>> {
    report::Entity::find_by_id(id)
        .one(db)
        .await
        .map_err(classify)?
        .map(report_from_row)
        .transpose()
}

/// Newest first (ids are UUIDv7).
pub(super) async fn list_reports(
    db: &impl ConnectionTrait,
    page: &PageRequest,
) -> Result<Vec<Report>> {
    report::Entity::find()
        .apply_if(page.after, |query, after| {
            query.filter(report::Column::Id.lt(after))
        })
        .order_by_desc(report::Column::Id)
        .limit(page.fetch_limit())
        .all(db)
        .await
        .map_err(classify)?
        .into_iter()
        .map(report_from_row)
        .collect()
}
