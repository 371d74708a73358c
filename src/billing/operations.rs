//! Billing use cases: who may do what, the invoice issuer, and paying an
//! invoice through the ledger in one audited database transaction.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Months, SubsecRound, Utc};
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::domain::{
    CancelSubscription, CreateSubscription, DUE_AFTER, GetUserBalances, Invoice, InvoiceStatus,
    ListInvoices, ListSubscriptions, MAX_BACKDATED_MONTHS, PayInvoice, Subscription,
    SubscriptionStatus, UserBalances, period, periods_begun,
};
use super::store;
use crate::audit::{Audited, Begun, Change, Replay};
use crate::auth::{Principal, Role};
use crate::cache::{Cache, Generation, Invalidation};
use crate::error::Error;
use crate::idempotency::RequestKey;
use crate::identity::directory;
use crate::money::{Amount, RequestId};
use crate::pagination::Page;
use crate::pagination::PageRequest;
use crate::treasury::domain::{AllocationPolicy, Command, Note, SystemAccount};
use crate::treasury::ledger;

type Result<T> = std::result::Result<T, Error>;

const BILLING_STAFF: &[Role] = &[Role::Admin, Role::Treasurer];
const SUBSCRIBERS: &[Role] = &[Role::Admin, Role::Treasurer, Role::Member, Role::Service];
/// Subscriptions the issuer handles per database round.
const ISSUE_BATCH: u64 = 100;

#[derive(Clone)]
pub struct Billing {
    db: DatabaseConnection,
    policy: AllocationPolicy,
    cache: Cache,
}

/// The invoices of periods `from..to` of `subscription`.
fn invoices_for(
    subscription: &Subscription,
    from: u32,
    to: u32,
    now: DateTime<Utc>,
) -> Result<Vec<Invoice>> {
    (from..to)
        .map(|index| {
            let (period_start, period_end) = period(subscription.start_at, index)
                .ok_or_else(|| Error::internal("a billing period is out of the calendar"))?;
            Ok(Invoice {
                id: Uuid::now_v7(),
                subscription: subscription.id,
                user: subscription.user,
                period_index: index as i32,
                amount_micros: subscription.price_micros,
                currency: subscription.currency,
                status: InvoiceStatus::Open,
                period_start,
                period_end,
                due_at: period_start + DUE_AFTER,
                created_at: now,
                paid_at: None,
                paid_by: None,
                wallet: None,
                transaction: None,
            })
        })
        .collect()
}

/// Invoices every period of `subscription` that has begun by `now` and is
/// not invoiced yet; the caller holds the subscription's row lock.
fn catch_up(subscription: &mut Subscription, now: DateTime<Utc>) -> Result<Vec<Invoice>> {
    let begun = periods_begun(subscription.start_at, now);
    let invoiced = subscription.periods_invoiced.max(0) as u32;
    if subscription.status != SubscriptionStatus::Active || begun <= invoiced {
        return Ok(Vec::new());
    }
    let invoices = invoices_for(subscription, invoiced, begun, now)?;
    subscription.periods_invoiced = begun as i32;
    subscription.current_period_end = period(subscription.start_at, begun - 1)
        .ok_or_else(|| Error::internal("a billing period is out of the calendar"))?
        .1;
    Ok(invoices)
}

/// A backdated start as stored (microseconds), if it is neither in the
/// future nor more than [`MAX_BACKDATED_MONTHS`] in the past.
fn checked_start(start: DateTime<Utc>, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    if start > now {
        return Err(Error::invalid("start_time", "must not be in the future"));
    }
    let earliest = now
        .checked_sub_months(Months::new(MAX_BACKDATED_MONTHS))
        .unwrap_or(now);
    if start < earliest {
        return Err(Error::OutOfRange {
            field: "start_time",
            message: format!("may be at most {MAX_BACKDATED_MONTHS} months in the past"),
        });
    }
    Ok(start.trunc_subsecs(6))
}

/// Answers a CreateSubscription sent again with its request id: the
/// subscription it created, unchanged, and audited as a call.
async fn replay_subscription(
    transaction: Audited,
    caller: &Principal,
    request_id: &RequestId,
    fingerprint: &str,
    existing: Subscription,
) -> Result<(Subscription, Vec<Invoice>)> {
    if existing.fingerprint != fingerprint {
        return Err(Error::invalid(
            "request_id",
            "was already used for a different request",
        ));
    }
    let change = Change::new("subscription", existing.id)
        .old(&existing)
        .new_values(&existing)
        .request_id(request_id.as_str());
    transaction.commit(caller, change).await?;
    Ok((existing, Vec::new()))
}

/// Answers a PayInvoice retry with the invoice as it is now.
async fn replay_payment(mut replay: Replay, caller: &Principal) -> Result<Invoice> {
    let invoice = store::find_invoice(replay.transaction(), replay.resource_id()?)
        .await?
        .ok_or_else(|| Error::internal("a replayed invoice is gone"))?;
    // The first call may have paid and died before invalidating.
    let mut invalidation = Invalidation::of(invoice.wallet.map(Generation::Wallet));
    invalidation.add(Generation::Ledger);
    replay.invalidate(invalidation);
    replay.answer(caller, "invoice", invoice).await
}

/// The ledger command that pays `invoice` from `wallet` into the treasury
/// reserve, with its ledger request id (one per invoice, so paying twice
/// pays once).
fn invoice_payment(invoice: &Invoice, wallet: Uuid) -> Result<(RequestId, Command)> {
    let amount = Amount::from_micros(invoice.amount_micros)
        .ok_or_else(|| Error::internal("a stored invoice amount is out of range"))?;
    let mut metadata = serde_json::Map::new();
    metadata.insert("invoice_id".into(), invoice.id.to_string().into());
    metadata.insert(
        "subscription_id".into(),
        invoice.subscription.to_string().into(),
    );
    let command = Command::PoolPayment {
        from_wallet: wallet,
        pool: SystemAccount::TreasuryReserve,
        amount,
        note: Note {
            reason: format!(
                "invoice {} ({} {})",
                invoice.id,
                crate::money::format_azr(invoice.amount_micros),
                invoice.currency.as_str()
            ),
            metadata,
        },
    };
    let request_id = RequestId::parse("invoice_id", &format!("azora:invoice:{}", invoice.id))?;
    Ok((request_id, command))
}

impl Billing {
    pub fn new(db: DatabaseConnection, policy: AllocationPolicy, cache: Cache) -> Self {
        Self { db, policy, cache }
    }

    pub async fn create_subscription(
        &self,
        caller: &Principal,
        create: CreateSubscription,
    ) -> Result<(Subscription, Vec<Invoice>)> {
        caller.require_role(SUBSCRIBERS)?;
        let (request_id, mut new) = create.for_caller(caller.user_id);
        if new.user != caller.user_id || new.start.is_some() {
            caller.require_role(BILLING_STAFF)?;
        }
        let now = Utc::now().trunc_subsecs(6);
        new.start = new
            .start
            .map(|start| checked_start(start, now))
            .transpose()?;
        let fingerprint = new.fingerprint();
        let transaction = Audited::begin(&self.db, &self.cache).await?;
        if let Some(existing) =
            store::find_subscription_by_request(&*transaction, caller.user_id, request_id.as_str())
                .await?
        {
            return replay_subscription(transaction, caller, &request_id, &fingerprint, existing)
                .await;
        }
        directory::find_user(&*transaction, new.user)
            .await?
            .ok_or_else(|| Error::not_found("user", new.user))?;
        let price_micros = store::tier_price(&*transaction, new.tier).await?;
        let mut subscription = Subscription::started(
            new,
            price_micros,
            &request_id,
            fingerprint,
            caller.user_id,
            now,
        );
        let invoices = catch_up(&mut subscription, now)?;
        store::insert_subscription(&*transaction, &subscription).await?;
        store::insert_invoices(&*transaction, &invoices).await?;
        let change = Change::new("subscription", subscription.id)
            .new_values(serde_json::json!({
                "subscription": &subscription,
                "invoices": &invoices,
            }))
            .request_id(request_id.as_str());
        transaction.commit(caller, change).await?;
        Ok((subscription, invoices))
    }

    pub async fn cancel_subscription(
        &self,
        caller: &Principal,
        key: Option<RequestKey>,
        cancel: CancelSubscription,
    ) -> Result<Subscription> {
        caller.require_role(SUBSCRIBERS)?;
        let CancelSubscription {
            subscription: id,
            reason,
        } = cancel;
        let transaction =
            match Audited::begin_once(&self.db, &self.cache, caller, key.as_ref()).await? {
                Begun::Fresh(transaction) => transaction,
                Begun::Replay(replay) => {
                    let subscription =
                        store::lock_subscription(replay.transaction(), replay.resource_id()?)
                            .await?
                            .ok_or_else(|| Error::internal("a replayed subscription is gone"))?;
                    return replay.answer(caller, "subscription", subscription).await;
                }
            };
        let mut subscription = match store::lock_subscription(&*transaction, id).await? {
            Some(found) if found.user == caller.user_id || BILLING_STAFF.contains(&caller.role) => {
                found
            }
            None if caller.role.reads_everything() => {
                return Err(Error::not_found("subscription", id));
            }
            _ => return Err(Error::PermissionDenied),
        };
        let before = subscription.clone();
        if subscription.status == SubscriptionStatus::Active {
            subscription.status = SubscriptionStatus::Cancelled;
            subscription.cancelled_by = Some(caller.user_id);
            subscription.cancelled_at = Some(Utc::now().trunc_subsecs(6));
            subscription.cancel_reason = Some(reason);
            store::update_subscription(&*transaction, &subscription).await?;
        }
        let change = Change::new("subscription", id)
            .old(&before)
            .new_values(&subscription);
        transaction.commit(caller, change).await?;
        Ok(subscription)
    }

    pub async fn list_subscriptions(
        &self,
        caller: &Principal,
        list: ListSubscriptions,
    ) -> Result<Page<Subscription>> {
        let ListSubscriptions {
            mut filter,
            page_size,
            page_token,
        } = list;
        filter.user = caller.visible_owner(filter.user)?;
        let page = PageRequest::parse(page_size, &page_token, &filter.fingerprint())?;
        let mut items = store::list_subscriptions(&self.db, &filter, &page).await?;
        let next_page_token = page.finish(&mut items, |record| record.id);
        Ok(Page {
            items,
            next_page_token,
        })
    }

    pub async fn list_invoices(
        &self,
        caller: &Principal,
        list: ListInvoices,
    ) -> Result<Page<Invoice>> {
        let ListInvoices {
            mut filter,
            page_size,
            page_token,
        } = list;
        filter.user = caller.visible_owner(filter.user)?;
        let page = PageRequest::parse(page_size, &page_token, &filter.fingerprint())?;
        let mut items = store::list_invoices(&self.db, &filter, &page).await?;
        let next_page_token = page.finish(&mut items, |record| record.id);
        Ok(Page {
            items,
            next_page_token,
        })
    }

    /// Pays an open invoice from a wallet of its user: the ledger transfer
    /// into the treasury reserve and the status change commit together, or
    /// neither does. A paid invoice is returned as it is.
    pub async fn pay_invoice(
        &self,
        caller: &Principal,
        key: Option<RequestKey>,
        pay: PayInvoice,
    ) -> Result<Invoice> {
        caller.require_role(SUBSCRIBERS)?;
        let PayInvoice {
            invoice: id,
            wallet,
        } = pay;
        let mut transaction =
            match Audited::begin_once(&self.db, &self.cache, caller, key.as_ref()).await? {
                Begun::Fresh(transaction) => transaction,
                Begun::Replay(replay) => return replay_payment(replay, caller).await,
            };
        let mut invoice = match store::lock_invoice(&*transaction, id).await? {
            Some(found) if found.user == caller.user_id => found,
            None if caller.role.reads_everything() => {
                return Err(Error::not_found("invoice", id));
            }
            _ => return Err(Error::PermissionDenied),
        };
        let before = invoice.clone();
        if invoice.status == InvoiceStatus::Open {
            let (request_id, command) = invoice_payment(&invoice, wallet)?;
            // The ledger checks, under its lock, that the caller owns the
            // wallet and that it holds enough.
            let paid =
                ledger::apply_one(&mut transaction, &self.policy, caller, request_id, command)
                    .await?;
            invoice.mark_paid(caller.user_id, wallet, paid.id, paid.created_at);
            store::update_invoice(&*transaction, &invoice).await?;
        }
        let change = Change::new("invoice", id).old(&before).new_values(&invoice);
        transaction.commit(caller, change).await?;
        Ok(invoice)
    }

    pub async fn user_balances(
        &self,
        caller: &Principal,
        get: GetUserBalances,
    ) -> Result<(Uuid, UserBalances)> {
        let user = get.user.unwrap_or(caller.user_id);
        if !caller.can_read(user) {
            return Err(Error::PermissionDenied);
        }
        directory::find_user(&self.db, user)
            .await?
            .ok_or_else(|| Error::not_found("user", user))?;
        Ok((user, store::user_balances(&self.db, user).await?))
    }

    /// One issuer round: invoices the periods that have begun for every
    /// active subscription that is due. Returns how many invoices it issued.
    pub async fn issue_due_invoices(&self, now: DateTime<Utc>) -> Result<usize> {
        let mut issued = 0;
        loop {
            let due = store::due_subscriptions(&self.db, now, ISSUE_BATCH).await?;
            let round = due.len();
            let issued_before = issued;
            for id in due {
                // Dropped without a commit (nothing to issue) is a rollback.
                let transaction = Audited::begin(&self.db, &self.cache).await?;
                let Some(mut subscription) = store::lock_subscription(&*transaction, id).await?
                else {
                    continue;
                };
                // Another replica may have issued it since the query.
                let invoices = catch_up(&mut subscription, now)?;
                if invoices.is_empty() {
                    continue;
                }
                store::insert_invoices(&*transaction, &invoices).await?;
                store::update_subscription(&*transaction, &subscription).await?;
                let change = Change::new("subscription", id).new_values(serde_json::json!({
                    "issued_invoices": &invoices,
                }));
                transaction
                    .commit(
                        &Principal::command_line("azora.billing.InvoiceIssuer"),
                        change,
                    )
                    .await?;
                issued += invoices.len();
            }
            // A full batch may hide more; a round that issued nothing would
            // only find the same subscriptions again.
            if (round as u64) < ISSUE_BATCH || issued == issued_before {
                return Ok(issued);
            }
        }
    }
}

/// Runs the invoice issuer every `interval` until `stop`; every replica may
/// run it, since each subscription is issued under its row lock.
pub async fn run_issuer(billing: Billing, interval: StdDuration, stop: CancellationToken) {
    loop {
        match billing
            .issue_due_invoices(Utc::now().trunc_subsecs(6))
            .await
        {
            Ok(0) => {}
            Ok(issued) => tracing::info!(issued, "issued invoices"),
            Err(error) => tracing::warn!(%error, "invoice issuer round failed"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
