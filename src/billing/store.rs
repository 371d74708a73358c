//! Billing's SQL.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    Set,
};
use uuid::Uuid;

use super::domain::{
    Currency, Invoice, InvoiceFilter, InvoiceStatus, Subscription, SubscriptionFilter,
    SubscriptionStatus, Tier, UserBalances,
};
use super::entities::{invoice, subscription, tier};
use crate::db::{classify, statement};
use crate::error::Error;
use crate::pagination::PageRequest;

type Result<T> = std::result::Result<T, Error>;

fn corrupt(what: &str, value: &str) -> Error {
    Error::internal(format!("unexpected billing {what} {value:?}"))
}

fn subscription_from_row(row: subscription::Model) -> Result<Subscription> {
    Ok(Subscription {
        tier: Tier::parse(&row.tier).ok_or_else(|| corrupt("tier", &row.tier))?,
        status: SubscriptionStatus::parse(&row.status)
            .ok_or_else(|| corrupt("subscription status", &row.status))?,
        currency: Currency::parse(&row.currency)
            .ok_or_else(|| corrupt("currency", &row.currency))?,
        id: row.id,
        user: row.user_id,
        price_micros: row.price_micros,
        start_at: row.start_at,
        periods_invoiced: row.periods_invoiced,
        current_period_end: row.current_period_end,
        request_id: row.request_id,
        fingerprint: row.fingerprint,
        created_by: row.created_by,
        created_at: row.created_at,
        cancelled_by: row.cancelled_by,
        cancelled_at: row.cancelled_at,
        cancel_reason: row.cancel_reason,
    })
}

fn subscription_to_row(record: &Subscription) -> subscription::ActiveModel {
    subscription::ActiveModel {
        id: Set(record.id),
        user_id: Set(record.user),
        tier: Set(record.tier.as_str().to_owned()),
        status: Set(record.status.as_str().to_owned()),
        price_micros: Set(record.price_micros),
        currency: Set(record.currency.as_str().to_owned()),
        start_at: Set(record.start_at),
        periods_invoiced: Set(record.periods_invoiced),
        current_period_end: Set(record.current_period_end),
        request_id: Set(record.request_id.clone()),
        fingerprint: Set(record.fingerprint.clone()),
        created_by: Set(record.created_by),
        created_at: Set(record.created_at),
        cancelled_by: Set(record.cancelled_by),
        cancelled_at: Set(record.cancelled_at),
        cancel_reason: Set(record.cancel_reason.clone()),
    }
}

fn invoice_from_row(row: invoice::Model) -> Result<Invoice> {
    Ok(Invoice {
        currency: Currency::parse(&row.currency)
            .ok_or_else(|| corrupt("currency", &row.currency))?,
        status: InvoiceStatus::parse(&row.status)
            .ok_or_else(|| corrupt("invoice status", &row.status))?,
        id: row.id,
        subscription: row.subscription_id,
        user: row.user_id,
        period_index: row.period_index,
        amount_micros: row.amount_micros,
        period_start: row.period_start,
        period_end: row.period_end,
        due_at: row.due_at,
        created_at: row.created_at,
        paid_at: row.paid_at,
        paid_by: row.paid_by,
        wallet: row.wallet_id,
        transaction: row.transaction_id,
    })
}

fn invoice_to_row(record: &Invoice) -> invoice::ActiveModel {
    invoice::ActiveModel {
        id: Set(record.id),
        subscription_id: Set(record.subscription),
        user_id: Set(record.user),
        period_index: Set(record.period_index),
        amount_micros: Set(record.amount_micros),
        currency: Set(record.currency.as_str().to_owned()),
        status: Set(record.status.as_str().to_owned()),
        period_start: Set(record.period_start),
        period_end: Set(record.period_end),
        due_at: Set(record.due_at),
        created_at: Set(record.created_at),
        paid_at: Set(record.paid_at),
        paid_by: Set(record.paid_by),
        wallet_id: Set(record.wallet),
        transaction_id: Set(record.transaction),
    }
}

pub(super) async fn tier_price(db: &impl ConnectionTrait, tier: Tier) -> Result<i64> {
    tier::Entity::find_by_id(tier.as_str().to_owned())
        .one(db)
        .await
        .map_err(classify)?
        .map(|row| row.monthly_price_micros)
        .ok_or_else(|| Error::internal(format!("no price for tier {}", tier.as_str())))
}

pub(super) async fn insert_subscription(
    db: &impl ConnectionTrait,
    record: &Subscription,
) -> Result<()> {
    subscription::Entity::insert(subscription_to_row(record))
        .exec_without_returning(db)
        .await
        .map_err(classify)?;
    Ok(())
}

pub(super) async fn update_subscription(
    db: &impl ConnectionTrait,
    record: &Subscription,
) -> Result<()> {
    subscription::Entity::update(subscription_to_row(record))
        .exec(db)
        .await
        .map_err(classify)?;
    Ok(())
}

pub(super) async fn find_subscription_by_request(
    db: &impl ConnectionTrait,
    created_by: Uuid,
    request_id: &str,
) -> Result<Option<Subscription>> {
    subscription::Entity::find()
        .filter(subscription::Column::CreatedBy.eq(created_by))
        .filter(subscription::Column::RequestId.eq(request_id))
        .one(db)
        .await
        .map_err(classify)?
        .map(subscription_from_row)
        .transpose()
}

/// The subscription, locked until the transaction ends: issuing, cancelling
/// and replicas' issuers serialise on its row.
pub(super) async fn lock_subscription(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<Subscription>> {
    subscription::Entity::find_by_id(id)
        .lock_exclusive()
        .one(db)
        .await
        .map_err(classify)?
        .map(subscription_from_row)
        .transpose()
}

/// Active subscriptions whose latest invoiced period has ended by `now`.
pub(super) async fn due_subscriptions(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<Uuid>> {
    subscription::Entity::find()
        .select_only()
        .column(subscription::Column::Id)
        .filter(subscription::Column::Status.eq(SubscriptionStatus::Active.as_str()))
        .filter(subscription::Column::CurrentPeriodEnd.lte(now))
        .order_by_asc(subscription::Column::CurrentPeriodEnd)
        .limit(limit)
        .into_tuple::<Uuid>()
        .all(db)
        .await
        .map_err(classify)
}

pub(super) async fn list_subscriptions(
    db: &impl ConnectionTrait,
    filter: &SubscriptionFilter,
    page: &PageRequest,
) -> Result<Vec<Subscription>> {
    use subscription::Column;
    subscription::Entity::find()
        .apply_if(filter.user, |query, user| {
            query.filter(Column::UserId.eq(user))
        })
        .apply_if(filter.status, |query, status| {
            query.filter(Column::Status.eq(status.as_str()))
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
        .map(subscription_from_row)
        .collect()
}

pub(super) async fn insert_invoices(db: &impl ConnectionTrait, invoices: &[Invoice]) -> Result<()> {
    if invoices.is_empty() {
        return Ok(());
    }
    invoice::Entity::insert_many(invoices.iter().map(invoice_to_row))
        .exec_without_returning(db)
        .await
        .map_err(classify)?;
    Ok(())
}

pub(super) async fn update_invoice(db: &impl ConnectionTrait, record: &Invoice) -> Result<()> {
    invoice::Entity::update(invoice_to_row(record))
        .exec(db)
        .await
        .map_err(classify)?;
    Ok(())
}

pub(super) async fn find_invoice(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<Invoice>> {
    invoice::Entity::find_by_id(id)
        .one(db)
        .await
        .map_err(classify)?
        .map(invoice_from_row)
        .transpose()
}

/// The invoice, locked until the transaction ends: concurrent payments of
/// one invoice serialise here and the second finds it paid.
pub(super) async fn lock_invoice(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<Invoice>> {
    invoice::Entity::find_by_id(id)
        .lock_exclusive()
        .one(db)
        .await
        .map_err(classify)?
        .map(invoice_from_row)
        .transpose()
}

pub(super) async fn list_invoices(
    db: &impl ConnectionTrait,
    filter: &InvoiceFilter,
    page: &PageRequest,
) -> Result<Vec<Invoice>> {
    use invoice::Column;
    invoice::Entity::find()
        .apply_if(filter.user, |query, user| {
            query.filter(Column::UserId.eq(user))
        })
        .apply_if(filter.subscription, |query, subscription| {
            query.filter(Column::SubscriptionId.eq(subscription))
        })
        .apply_if(filter.status, |query, status| {
            query.filter(Column::Status.eq(status.as_str()))
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
        .map(invoice_from_row)
        .collect()
}

/// Sums over the user's wallets (the ledger's balances) and open invoices.
pub(super) async fn user_balances(db: &impl ConnectionTrait, user: Uuid) -> Result<UserBalances> {
    let wallets = db
        .query_one_raw(statement(
            db,
            "SELECT CAST(COUNT(*) AS BIGINT) AS wallets, \
             CAST(COALESCE(SUM(available_micros), 0) AS BIGINT) AS available, \
             CAST(COALESCE(SUM(pending_micros), 0) AS BIGINT) AS pending, \
             CAST(COALESCE(SUM(staked_micros), 0) AS BIGINT) AS staked \
             FROM wallets WHERE owner_id = ?",
            vec![user.into()],
        ))
        .await
        .map_err(classify)?
        .ok_or_else(|| Error::internal("an aggregate returned no row"))?;
    let invoices = db
        .query_one_raw(statement(
            db,
            "SELECT CAST(COUNT(*) AS BIGINT) AS open, CAST(COALESCE(SUM(amount_micros), 0) AS BIGINT) AS owed \
             FROM invoices WHERE user_id = ? AND status = 'open'",
            vec![user.into()],
        ))
        .await
        .map_err(classify)?
        .ok_or_else(|| Error::internal("an aggregate returned no row"))?;
    Ok(UserBalances {
        wallet_count: wallets.try_get("", "wallets").map_err(classify)?,
        available_micros: wallets.try_get("", "available").map_err(classify)?,
        pending_micros: wallets.try_get("", "pending").map_err(classify)?,
        staked_micros: wallets.try_get("", "staked").map_err(classify)?,
        open_invoice_count: invoices.try_get("", "open").map_err(classify)?,
        open_invoice_micros: invoices.try_get("", "owed").map_err(classify)?,
    })
}
