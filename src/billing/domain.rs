//! Billing types, parsed at the edge, and the calendar of billing periods.

use chrono::{DateTime, Duration, Months, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::money::RequestId;

wire_enum!(Tier as crate::proto::treasury::SubscriptionTier, "tier" {
    Basic => "basic",
    Pro => "pro",
    Enterprise => "enterprise",
});

wire_enum!(SubscriptionStatus as crate::proto::treasury::SubscriptionStatus, "status" {
    Active => "active",
    Cancelled => "cancelled",
});

wire_enum!(InvoiceStatus as crate::proto::treasury::InvoiceStatus, "status" {
    Open => "open",
    Paid => "paid",
});

wire_enum!(Currency as crate::proto::treasury::Currency, "currency" {
    Azr => "AZR",
    Usd => "USD",
});

/// An invoice is due this long after its period starts.
pub const DUE_AFTER: Duration = Duration::days(14);
/// A backdated start may reach this many months into the past at most.
pub const MAX_BACKDATED_MONTHS: u32 = 24;

/// Period `index` of a subscription that started at `start`: monthly from
/// the start, each computed from the start itself, so a start on the 31st
/// bills on the last day of shorter months and returns to the 31st after.
pub fn period(start: DateTime<Utc>, index: u32) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    Some((
        start.checked_add_months(Months::new(index))?,
        start.checked_add_months(Months::new(index.checked_add(1)?))?,
    ))
}

/// How many periods have begun by `now` (at least the first).
pub fn periods_begun(start: DateTime<Utc>, now: DateTime<Utc>) -> u32 {
    let mut count = 1;
    while let Some((begins, _)) = period(start, count) {
        if begins > now {
            break;
        }
        count += 1;
    }
    count
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSubscription {
    pub user: Uuid,
    pub tier: Tier,
    pub currency: Currency,
    pub start: Option<DateTime<Utc>>,
}

impl NewSubscription {
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(format!("{self:?}").as_bytes()))
    }
}

/// CreateSubscription's input. The request id is required: a retry with it
/// answers with the subscription the first call created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateSubscription {
    pub request_id: RequestId,
    /// The subscriber; the caller when not given.
    pub user: Option<Uuid>,
    pub tier: Tier,
    pub currency: Currency,
    /// A backdated start (staff only); now when not given.
    pub start: Option<DateTime<Utc>>,
}

impl CreateSubscription {
    /// The subscription asked for, with the caller as the default user.
    pub fn for_caller(self, caller: Uuid) -> (RequestId, NewSubscription) {
        let Self {
            request_id,
            user,
            tier,
            currency,
            start,
        } = self;
        let new = NewSubscription {
            user: user.unwrap_or(caller),
            tier,
            currency,
            start,
        };
        (request_id, new)
    }
}

/// CancelSubscription's input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CancelSubscription {
    pub subscription: Uuid,
    pub reason: String,
}

/// ListSubscriptions' input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListSubscriptions {
    pub filter: SubscriptionFilter,
    pub page_size: i32,
    pub page_token: String,
}

/// ListInvoices' input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListInvoices {
    pub filter: InvoiceFilter,
    pub page_size: i32,
    pub page_token: String,
}

/// PayInvoice's input: which invoice, paid from which wallet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayInvoice {
    pub invoice: Uuid,
    pub wallet: Uuid,
}

/// GetUserBalances' input: whose balances; the caller's when not given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetUserBalances {
    pub user: Option<Uuid>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Subscription {
    pub id: Uuid,
    pub user: Uuid,
    pub tier: Tier,
    pub status: SubscriptionStatus,
    pub price_micros: i64,
    pub currency: Currency,
    pub start_at: DateTime<Utc>,
    pub periods_invoiced: i32,
    pub current_period_end: DateTime<Utc>,
    pub request_id: String,
    #[serde(skip)]
    pub fingerprint: String,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub cancelled_by: Option<Uuid>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancel_reason: Option<String>,
}

impl Subscription {
    /// A subscription as created: active, with no period invoiced yet.
    pub fn started(
        new: NewSubscription,
        price_micros: i64,
        request_id: &RequestId,
        fingerprint: String,
        created_by: Uuid,
        now: DateTime<Utc>,
    ) -> Self {
        let NewSubscription {
            user,
            tier,
            currency,
            start,
        } = new;
        let start_at = start.unwrap_or(now);
        Self {
            id: Uuid::now_v7(),
            user,
            tier,
            status: SubscriptionStatus::Active,
            price_micros,
            currency,
            start_at,
            periods_invoiced: 0,
            current_period_end: start_at,
            request_id: request_id.as_str().to_owned(),
            fingerprint,
            created_by,
            created_at: now,
            cancelled_by: None,
            cancelled_at: None,
            cancel_reason: None,
        }
    }

    pub fn current_period_start(&self) -> DateTime<Utc> {
        period(self.start_at, (self.periods_invoiced - 1).max(0) as u32)
            .map_or(self.start_at, |(begins, _)| begins)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Invoice {
    pub id: Uuid,
    pub subscription: Uuid,
    pub user: Uuid,
    pub period_index: i32,
    pub amount_micros: i64,
    pub currency: Currency,
    pub status: InvoiceStatus,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    pub paid_by: Option<Uuid>,
    pub wallet: Option<Uuid>,
    pub transaction: Option<Uuid>,
}

impl Invoice {
    /// Marks the invoice paid by `by` from `wallet` through the ledger
    /// transfer `transaction`, committed at `at`.
    pub fn mark_paid(&mut self, by: Uuid, wallet: Uuid, transaction: Uuid, at: DateTime<Utc>) {
        self.status = InvoiceStatus::Paid;
        self.paid_at = Some(at);
        self.paid_by = Some(by);
        self.wallet = Some(wallet);
        self.transaction = Some(transaction);
    }

    pub fn is_overdue(&self, now: DateTime<Utc>) -> bool {
        self.status == InvoiceStatus::Open && self.due_at < now
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscriptionFilter {
    pub user: Option<Uuid>,
    pub status: Option<SubscriptionStatus>,
}

impl SubscriptionFilter {
    pub fn fingerprint(&self) -> String {
        format!("subscriptions|{self:?}")
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InvoiceFilter {
    pub user: Option<Uuid>,
    pub subscription: Option<Uuid>,
    pub status: Option<InvoiceStatus>,
}

impl InvoiceFilter {
    pub fn fingerprint(&self) -> String {
        format!("invoices|{self:?}")
    }
}

/// A user's holdings over all of their wallets, and what they owe.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserBalances {
    pub wallet_count: i64,
    pub available_micros: i64,
    pub pending_micros: i64,
    pub staked_micros: i64,
    pub open_invoice_count: i64,
    pub open_invoice_micros: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn periods_are_calendar_months_from_the_start() {
        let start = at("2026-01-31T10:00:00Z");
        assert_eq!(
            period(start, 0),
            Some((at("2026-01-31T10:00:00Z"), at("2026-02-28T10:00:00Z")))
        );
        assert_eq!(
            period(start, 1),
            Some((at("2026-02-28T10:00:00Z"), at("2026-03-31T10:00:00Z")))
        );
        assert_eq!(
            period(start, 2),
            Some((at("2026-03-31T10:00:00Z"), at("2026-04-30T10:00:00Z")))
        );
    }

    #[test]
    fn periods_begun_counts_the_first_and_each_month_reached() {
        let start = at("2026-01-15T00:00:00Z");
        assert_eq!(periods_begun(start, start), 1);
        assert_eq!(periods_begun(start, at("2026-02-14T23:59:59Z")), 1);
        assert_eq!(periods_begun(start, at("2026-02-15T00:00:00Z")), 2);
        assert_eq!(periods_begun(start, at("2026-04-20T00:00:00Z")), 4);
    }
}
