//! BillingService over gRPC: parse, call one operation, convert.

use chrono::Utc;
use tonic::{Request, Response, Status};

use super::domain::{
    Currency, Invoice, InvoiceFilter, InvoiceStatus, NewSubscription, Subscription,
    SubscriptionFilter, SubscriptionStatus, Tier,
};
use super::operations::Billing;
use crate::auth::principal;
use crate::error::{Error, FieldViolation};
use crate::proto::treasury::{self as pb, billing_service_server::BillingService};
use crate::transport::parse_id;
use crate::transport::{
    Violations, azr_decimal as decimal, datetime_from, optional, request_key, timestamp,
};
use crate::transport::{reason, required_request_id};

pub struct BillingApi {
    billing: Billing,
}

impl BillingApi {
    pub fn new(billing: Billing) -> Self {
        Self { billing }
    }
}

fn required<T>(field: &str, value: Result<Option<T>, FieldViolation>) -> Result<T, FieldViolation> {
    value.and_then(|value| value.ok_or_else(|| FieldViolation::new(field, "is required")))
}

fn subscription_to_proto(subscription: Subscription) -> pb::Subscription {
    let current_period_start = subscription.current_period_start();
    let Subscription {
        id,
        user,
        tier,
        status,
        price_micros,
        currency,
        start_at,
        periods_invoiced: _,
        current_period_end,
        request_id: _,
        fingerprint: _,
        created_by: _,
        created_at,
        cancelled_by: _,
        cancelled_at,
        cancel_reason,
    } = subscription;
    pb::Subscription {
        id: id.to_string(),
        user_id: user.to_string(),
        tier: tier.to_wire(),
        status: status.to_wire(),
        price: decimal(price_micros),
        currency: currency.to_wire(),
        start_time: Some(timestamp(start_at)),
        current_period_start: Some(timestamp(current_period_start)),
        current_period_end: Some(timestamp(current_period_end)),
        create_time: Some(timestamp(created_at)),
        cancel_time: cancelled_at.map(timestamp),
        cancel_reason: cancel_reason.unwrap_or_default(),
    }
}

fn invoice_to_proto(invoice: Invoice) -> pb::Invoice {
    let overdue = invoice.is_overdue(Utc::now());
    let Invoice {
        id,
        subscription,
        user,
        period_index: _,
        amount_micros,
        currency,
        status,
        period_start,
        period_end,
        due_at,
        created_at,
        paid_at,
        paid_by: _,
        wallet,
        transaction,
    } = invoice;
    pb::Invoice {
        id: id.to_string(),
        subscription_id: subscription.to_string(),
        user_id: user.to_string(),
        amount: decimal(amount_micros),
        currency: currency.to_wire(),
        status: status.to_wire(),
        period_start: Some(timestamp(period_start)),
        period_end: Some(timestamp(period_end)),
        due_time: Some(timestamp(due_at)),
        overdue,
        paid_time: paid_at.map(timestamp),
        transaction_id: transaction.map(|id| id.to_string()).unwrap_or_default(),
        wallet_id: wallet.map(|id| id.to_string()).unwrap_or_default(),
        create_time: Some(timestamp(created_at)),
    }
}

#[tonic::async_trait]
impl BillingService for BillingApi {
    async fn create_subscription(
        &self,
        request_message: Request<pb::CreateSubscriptionRequest>,
    ) -> Result<Response<pb::CreateSubscriptionResponse>, Status> {
        let caller = principal(&request_message)?;
        let pb::CreateSubscriptionRequest {
            request_id,
            user_id,
            tier,
            currency,
            start_time,
        } = request_message.into_inner();
        let mut v = Violations::default();
        let request_id = required_request_id(&mut v, &request_id);
        let user = v.check(optional(&user_id, |text| parse_id("user_id", text)));
        let tier = v.check(required("tier", Tier::from_wire("tier", tier)));
        let currency = v.check(required(
            "currency",
            Currency::from_wire("currency", currency),
        ));
        let start = v.check(
            start_time
                .as_ref()
                .map(|at| datetime_from("start_time", at))
                .transpose(),
        );
        let (request_id, new) = v.finish(|| {
            Some((
                request_id?,
                NewSubscription {
                    user: user?.unwrap_or(caller.user_id),
                    tier: tier?,
                    currency: currency?,
                    start: start?,
                },
            ))
        })?;
        let (subscription, invoices) = self
            .billing
            .create_subscription(&caller, request_id, new)
            .await?;
        Ok(Response::new(pb::CreateSubscriptionResponse {
            subscription: Some(subscription_to_proto(subscription)),
            invoices: invoices.into_iter().map(invoice_to_proto).collect(),
        }))
    }

    async fn cancel_subscription(
        &self,
        request_message: Request<pb::CancelSubscriptionRequest>,
    ) -> Result<Response<pb::CancelSubscriptionResponse>, Status> {
        let caller = principal(&request_message)?;
        let message = request_message.into_inner();
        let key = request_key(&message, &message.request_id)?;
        let pb::CancelSubscriptionRequest {
            subscription_id,
            reason: why,
            request_id: _,
        } = message;
        let mut v = Violations::default();
        let id = v.check(parse_id("subscription_id", &subscription_id));
        let why = v.check(reason("reason", why));
        let (id, why) = v.finish(|| Some((id?, why?)))?;
        let subscription = self
            .billing
            .cancel_subscription(&caller, key, id, why)
            .await?;
        Ok(Response::new(pb::CancelSubscriptionResponse {
            subscription: Some(subscription_to_proto(subscription)),
        }))
    }

    async fn list_subscriptions(
        &self,
        request_message: Request<pb::ListSubscriptionsRequest>,
    ) -> Result<Response<pb::ListSubscriptionsResponse>, Status> {
        let caller = principal(&request_message)?;
        let pb::ListSubscriptionsRequest {
            page_size,
            page_token,
            user_id,
            status,
        } = request_message.into_inner();
        let mut v = Violations::default();
        let user = v.check(optional(&user_id, |text| parse_id("user_id", text)));
        let status = v.check(SubscriptionStatus::from_wire("status", status));
        let filter = v.finish(|| {
            Some(SubscriptionFilter {
                user: user?,
                status: status?,
            })
        })?;
        let page = self
            .billing
            .list_subscriptions(&caller, filter, page_size, &page_token)
            .await?;
        Ok(Response::new(pb::ListSubscriptionsResponse {
            subscriptions: page.items.into_iter().map(subscription_to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn list_invoices(
        &self,
        request_message: Request<pb::ListInvoicesRequest>,
    ) -> Result<Response<pb::ListInvoicesResponse>, Status> {
        let caller = principal(&request_message)?;
        let pb::ListInvoicesRequest {
            page_size,
            page_token,
            user_id,
            subscription_id,
            status,
        } = request_message.into_inner();
        let mut v = Violations::default();
        let user = v.check(optional(&user_id, |text| parse_id("user_id", text)));
        let subscription = v.check(optional(&subscription_id, |text| {
            parse_id("subscription_id", text)
        }));
        let status = v.check(InvoiceStatus::from_wire("status", status));
        let filter = v.finish(|| {
            Some(InvoiceFilter {
                user: user?,
                subscription: subscription?,
                status: status?,
            })
        })?;
        let page = self
            .billing
            .list_invoices(&caller, filter, page_size, &page_token)
            .await?;
        Ok(Response::new(pb::ListInvoicesResponse {
            invoices: page.items.into_iter().map(invoice_to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn pay_invoice(
        &self,
        request_message: Request<pb::PayInvoiceRequest>,
    ) -> Result<Response<pb::PayInvoiceResponse>, Status> {
        let caller = principal(&request_message)?;
        let message = request_message.into_inner();
        let key = request_key(&message, &message.request_id)?;
        let pb::PayInvoiceRequest {
            invoice_id,
            wallet_id,
            request_id: _,
        } = message;
        let mut v = Violations::default();
        let id = v.check(parse_id("invoice_id", &invoice_id));
        let wallet = v.check(parse_id("wallet_id", &wallet_id));
        let (id, wallet) = v.finish(|| Some((id?, wallet?)))?;
        let invoice = self.billing.pay_invoice(&caller, key, id, wallet).await?;
        Ok(Response::new(pb::PayInvoiceResponse {
            invoice: Some(invoice_to_proto(invoice)),
        }))
    }

    async fn get_user_balances(
        &self,
        request_message: Request<pb::GetUserBalancesRequest>,
    ) -> Result<Response<pb::GetUserBalancesResponse>, Status> {
        let caller = principal(&request_message)?;
        let pb::GetUserBalancesRequest { user_id } = request_message.into_inner();
        let user = optional(&user_id, |text| parse_id("user_id", text)).map_err(Error::from)?;
        let (user, balances) = self.billing.user_balances(&caller, user).await?;
        let total = balances.available_micros + balances.pending_micros + balances.staked_micros;
        let in_currency = |currency: Currency| pb::CurrencyBalance {
            currency: currency.to_wire(),
            available: decimal(balances.available_micros),
            pending: decimal(balances.pending_micros),
            staked: decimal(balances.staked_micros),
            total: decimal(total),
        };
        Ok(Response::new(pb::GetUserBalancesResponse {
            user_id: user.to_string(),
            // USD is AZR at the 1:1 peg, so both read the same ledger sums.
            balances: vec![in_currency(Currency::Azr), in_currency(Currency::Usd)],
            wallet_count: balances.wallet_count,
            open_invoice_count: balances.open_invoice_count,
            open_invoice_total: decimal(balances.open_invoice_micros),
            as_of_time: Some(timestamp(Utc::now())),
        }))
    }
}
