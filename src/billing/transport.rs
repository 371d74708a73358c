//! BillingService over gRPC. Each handler parses its request with a
//! `TryFrom` into the domain input type named after the RPC (collecting
//! every violation), calls one operation and converts the result back.

use chrono::Utc;
use tonic::{Request, Response, Status};

use uuid::Uuid;

use super::domain::{
    CancelSubscription, CreateSubscription, Currency, GetUserBalances, Invoice, InvoiceFilter,
    InvoiceStatus, ListInvoices, ListSubscriptions, PayInvoice, Subscription, SubscriptionFilter,
    SubscriptionStatus, Tier, UserBalances,
};
use super::operations::Billing;
use crate::auth::principal;
use crate::error::Error;
use crate::proto::treasury::{self as pb, billing_service_server::BillingService};
use crate::transport::{
    Violations, azr_decimal as decimal, datetime_from, optional, parse_id, reason, request_key,
    required, required_request_id, timestamp,
};

pub struct BillingApi {
    billing: Billing,
}

impl BillingApi {
    pub fn new(billing: Billing) -> Self {
        Self { billing }
    }
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

fn balances_to_proto(user: Uuid, balances: UserBalances) -> pb::GetUserBalancesResponse {
    let UserBalances {
        wallet_count,
        available_micros,
        pending_micros,
        staked_micros,
        open_invoice_count,
        open_invoice_micros,
    } = balances;
    let total = available_micros + pending_micros + staked_micros;
    let in_currency = |currency: Currency| pb::CurrencyBalance {
        currency: currency.to_wire(),
        available: decimal(available_micros),
        pending: decimal(pending_micros),
        staked: decimal(staked_micros),
        total: decimal(total),
    };
    pb::GetUserBalancesResponse {
        user_id: user.to_string(),
        // USD is AZR at the 1:1 peg, so both read the same ledger sums.
        balances: vec![in_currency(Currency::Azr), in_currency(Currency::Usd)],
        wallet_count,
        open_invoice_count,
        open_invoice_total: decimal(open_invoice_micros),
        as_of_time: Some(timestamp(Utc::now())),
    }
}

impl TryFrom<pb::CreateSubscriptionRequest> for CreateSubscription {
    type Error = Error;
    fn try_from(message: pb::CreateSubscriptionRequest) -> Result<Self, Error> {
        let pb::CreateSubscriptionRequest {
            request_id,
            user_id,
            tier,
            currency,
            start_time,
        } = message;
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
        v.finish(|| {
            Some(CreateSubscription {
                request_id: request_id?,
                user: user?,
                tier: tier?,
                currency: currency?,
                start: start?,
            })
        })
    }
}

impl TryFrom<pb::CancelSubscriptionRequest> for CancelSubscription {
    type Error = Error;
    fn try_from(message: pb::CancelSubscriptionRequest) -> Result<Self, Error> {
        let pb::CancelSubscriptionRequest {
            subscription_id,
            reason: why,
            request_id: _,
        } = message;
        let mut v = Violations::default();
        let subscription = v.check(parse_id("subscription_id", &subscription_id));
        let why = v.check(reason("reason", why));
        v.finish(|| {
            Some(CancelSubscription {
                subscription: subscription?,
                reason: why?,
            })
        })
    }
}

impl TryFrom<pb::ListSubscriptionsRequest> for ListSubscriptions {
    type Error = Error;
    fn try_from(message: pb::ListSubscriptionsRequest) -> Result<Self, Error> {
        let pb::ListSubscriptionsRequest {
            page_size,
            page_token,
            user_id,
            status,
        } = message;
        let mut v = Violations::default();
        let user = v.check(optional(&user_id, |text| parse_id("user_id", text)));
        let status = v.check(SubscriptionStatus::from_wire("status", status));
        v.finish(|| {
            Some(ListSubscriptions {
                filter: SubscriptionFilter {
                    user: user?,
                    status: status?,
                },
                page_size,
                page_token,
            })
        })
    }
}

impl TryFrom<pb::ListInvoicesRequest> for ListInvoices {
    type Error = Error;
    fn try_from(message: pb::ListInvoicesRequest) -> Result<Self, Error> {
        let pb::ListInvoicesRequest {
            page_size,
            page_token,
            user_id,
            subscription_id,
            status,
        } = message;
        let mut v = Violations::default();
        let user = v.check(optional(&user_id, |text| parse_id("user_id", text)));
        let subscription = v.check(optional(&subscription_id, |text| {
            parse_id("subscription_id", text)
        }));
        let status = v.check(InvoiceStatus::from_wire("status", status));
        v.finish(|| {
            Some(ListInvoices {
                filter: InvoiceFilter {
                    user: user?,
                    subscription: subscription?,
                    status: status?,
                },
                page_size,
                page_token,
            })
        })
    }
}

impl TryFrom<pb::PayInvoiceRequest> for PayInvoice {
    type Error = Error;
    fn try_from(message: pb::PayInvoiceRequest) -> Result<Self, Error> {
        let pb::PayInvoiceRequest {
            invoice_id,
            wallet_id,
            request_id: _,
        } = message;
        let mut v = Violations::default();
        let invoice = v.check(parse_id("invoice_id", &invoice_id));
        let wallet = v.check(parse_id("wallet_id", &wallet_id));
        v.finish(|| {
            Some(PayInvoice {
                invoice: invoice?,
                wallet: wallet?,
            })
        })
    }
}

impl TryFrom<pb::GetUserBalancesRequest> for GetUserBalances {
    type Error = Error;
    fn try_from(message: pb::GetUserBalancesRequest) -> Result<Self, Error> {
        let pb::GetUserBalancesRequest { user_id } = message;
        let user = optional(&user_id, |text| parse_id("user_id", text))?;
        Ok(GetUserBalances { user })
    }
}

#[tonic::async_trait]
impl BillingService for BillingApi {
    async fn create_subscription(
        &self,
        request: Request<pb::CreateSubscriptionRequest>,
    ) -> Result<Response<pb::CreateSubscriptionResponse>, Status> {
        let caller = principal(&request)?;
        let create = CreateSubscription::try_from(request.into_inner())?;
        let (subscription, invoices) = self.billing.create_subscription(&caller, create).await?;
        Ok(Response::new(pb::CreateSubscriptionResponse {
            subscription: Some(subscription_to_proto(subscription)),
            invoices: invoices.into_iter().map(invoice_to_proto).collect(),
        }))
    }

    async fn cancel_subscription(
        &self,
        request: Request<pb::CancelSubscriptionRequest>,
    ) -> Result<Response<pb::CancelSubscriptionResponse>, Status> {
        let caller = principal(&request)?;
        let message = request.into_inner();
        let key = request_key(&message, &message.request_id)?;
        let cancel = CancelSubscription::try_from(message)?;
        let subscription = self
            .billing
            .cancel_subscription(&caller, key, cancel)
            .await?;
        Ok(Response::new(pb::CancelSubscriptionResponse {
            subscription: Some(subscription_to_proto(subscription)),
        }))
    }

    async fn list_subscriptions(
        &self,
        request: Request<pb::ListSubscriptionsRequest>,
    ) -> Result<Response<pb::ListSubscriptionsResponse>, Status> {
        let caller = principal(&request)?;
        let list = ListSubscriptions::try_from(request.into_inner())?;
        let page = self.billing.list_subscriptions(&caller, list).await?;
        Ok(Response::new(pb::ListSubscriptionsResponse {
            subscriptions: page.items.into_iter().map(subscription_to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn list_invoices(
        &self,
        request: Request<pb::ListInvoicesRequest>,
    ) -> Result<Response<pb::ListInvoicesResponse>, Status> {
        let caller = principal(&request)?;
        let list = ListInvoices::try_from(request.into_inner())?;
        let page = self.billing.list_invoices(&caller, list).await?;
        Ok(Response::new(pb::ListInvoicesResponse {
            invoices: page.items.into_iter().map(invoice_to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn pay_invoice(
        &self,
        request: Request<pb::PayInvoiceRequest>,
    ) -> Result<Response<pb::PayInvoiceResponse>, Status> {
        let caller = principal(&request)?;
        let message = request.into_inner();
        let key = request_key(&message, &message.request_id)?;
        let pay = PayInvoice::try_from(message)?;
        let invoice = self.billing.pay_invoice(&caller, key, pay).await?;
        Ok(Response::new(pb::PayInvoiceResponse {
            invoice: Some(invoice_to_proto(invoice)),
        }))
    }

    async fn get_user_balances(
        &self,
        request: Request<pb::GetUserBalancesRequest>,
    ) -> Result<Response<pb::GetUserBalancesResponse>, Status> {
        let caller = principal(&request)?;
        let get = GetUserBalances::try_from(request.into_inner())?;
        let (user, balances) = self.billing.user_balances(&caller, get).await?;
        Ok(Response::new(balances_to_proto(user, balances)))
    }
}
