//! FounderCompensationService over gRPC: parse, call one operation, convert.

use tonic::{Request, Response, Status};

use super::domain::{
    Compensation, CompensationFilter, CompensationStatus, CompensationType, Month, NewCompensation,
    Totals,
};
use super::operations::Compensations;
use crate::auth::principal;
use crate::error::{Error, FieldViolation};
use crate::proto::treasury::{
    self as pb, founder_compensation_service_server::FounderCompensationService,
};
use crate::transport::parse_id;
use crate::transport::{Violations, azr_decimal as decimal, optional, request_key, timestamp};
use crate::transport::{amount, reason, required_request_id};

pub struct FounderCompensationApi {
    compensations: Compensations,
}

impl FounderCompensationApi {
    pub fn new(compensations: Compensations) -> Self {
        Self { compensations }
    }
}

fn type_from(field: &str, value: i32) -> Result<Option<CompensationType>, FieldViolation> {
    match pb::CompensationType::try_from(value) {
        Ok(pb::CompensationType::Unspecified) => Ok(None),
        Ok(pb::CompensationType::Salary) => Ok(Some(CompensationType::Salary)),
        Ok(pb::CompensationType::Bonus) => Ok(Some(CompensationType::Bonus)),
        Ok(pb::CompensationType::TokenGrant) => Ok(Some(CompensationType::TokenGrant)),
        Ok(pb::CompensationType::Reimbursement) => Ok(Some(CompensationType::Reimbursement)),
        Err(_) => Err(FieldViolation::new(
            field,
            "is not a known compensation type",
        )),
    }
}

fn type_to(value: CompensationType) -> pb::CompensationType {
    match value {
        CompensationType::Salary => pb::CompensationType::Salary,
        CompensationType::Bonus => pb::CompensationType::Bonus,
        CompensationType::TokenGrant => pb::CompensationType::TokenGrant,
        CompensationType::Reimbursement => pb::CompensationType::Reimbursement,
    }
}

fn status_from(field: &str, value: i32) -> Result<Option<CompensationStatus>, FieldViolation> {
    match pb::CompensationStatus::try_from(value) {
        Ok(pb::CompensationStatus::Unspecified) => Ok(None),
        Ok(pb::CompensationStatus::Pending) => Ok(Some(CompensationStatus::Pending)),
        Ok(pb::CompensationStatus::Approved) => Ok(Some(CompensationStatus::Approved)),
        Ok(pb::CompensationStatus::Paid) => Ok(Some(CompensationStatus::Paid)),
        Ok(pb::CompensationStatus::Cancelled) => Ok(Some(CompensationStatus::Cancelled)),
        Err(_) => Err(FieldViolation::new(field, "is not a known status")),
    }
}

fn status_to(value: CompensationStatus) -> pb::CompensationStatus {
    match value {
        CompensationStatus::Pending => pb::CompensationStatus::Pending,
        CompensationStatus::Approved => pb::CompensationStatus::Approved,
        CompensationStatus::Paid => pb::CompensationStatus::Paid,
        CompensationStatus::Cancelled => pb::CompensationStatus::Cancelled,
    }
}

fn id_text(id: Option<uuid::Uuid>) -> String {
    id.map(|id| id.to_string()).unwrap_or_default()
}

fn to_proto(record: Compensation) -> pb::FounderCompensation {
    let Compensation {
        id,
        founder,
        wallet,
        month,
        kind,
        status,
        amount_micros,
        notes,
        request_id: _,
        fingerprint: _,
        created_by,
        created_at,
        approved_by,
        approved_at,
        paid_by,
        transaction,
        tx_hash,
        paid_at,
        cancelled_by,
        cancelled_at,
        cancel_reason,
    } = record;
    pb::FounderCompensation {
        id: id.to_string(),
        founder_id: founder.to_string(),
        wallet_id: wallet.to_string(),
        month,
        r#type: type_to(kind) as i32,
        status: status_to(status) as i32,
        amount_azr: decimal(amount_micros),
        amount_usd: decimal(amount_micros),
        notes,
        transaction_id: id_text(transaction),
        tx_hash: tx_hash.unwrap_or_default(),
        payment_time: paid_at.map(timestamp),
        created_by: created_by.to_string(),
        approved_by: id_text(approved_by),
        paid_by: id_text(paid_by),
        cancelled_by: id_text(cancelled_by),
        cancel_reason: cancel_reason.unwrap_or_default(),
        create_time: Some(timestamp(created_at)),
        approve_time: approved_at.map(timestamp),
        cancel_time: cancelled_at.map(timestamp),
    }
}

fn totals_to_proto(totals: Totals) -> pb::CompensationTotals {
    let Totals {
        pending_count,
        pending_micros,
        approved_count,
        approved_micros,
        paid_count,
        paid_micros,
        cancelled_count,
    } = totals;
    pb::CompensationTotals {
        pending_count,
        pending_azr: decimal(pending_micros),
        approved_count,
        approved_azr: decimal(approved_micros),
        paid_count,
        paid_azr: decimal(paid_micros),
        cancelled_count,
        total_azr: decimal(totals.total_micros()),
    }
}

fn compensation_id(text: &str) -> Result<uuid::Uuid, Error> {
    Ok(parse_id("compensation_id", text)?)
}

#[tonic::async_trait]
impl FounderCompensationService for FounderCompensationApi {
    async fn create_founder_compensation(
        &self,
        request_message: Request<pb::CreateFounderCompensationRequest>,
    ) -> Result<Response<pb::CreateFounderCompensationResponse>, Status> {
        let caller = principal(&request_message)?;
        let pb::CreateFounderCompensationRequest {
            request_id,
            founder_id,
            wallet_id,
            month,
            r#type,
            amount: value,
            notes,
        } = request_message.into_inner();
        let mut v = Violations::default();
        let request_id = required_request_id(&mut v, &request_id);
        let founder = v.check(parse_id("founder_id", &founder_id));
        let wallet = v.check(parse_id("wallet_id", &wallet_id));
        let month = v.check(Month::parse("month", &month));
        let kind = v.check(
            type_from("type", r#type)
                .and_then(|kind| kind.ok_or_else(|| FieldViolation::new("type", "is required"))),
        );
        let value = v.check(amount("amount", value.as_ref()));
        let notes = v.check(reason("notes", notes));
        let (request_id, new) = v.finish(|| {
            Some((
                request_id?,
                NewCompensation {
                    founder: founder?,
                    wallet: wallet?,
                    month: month?,
                    kind: kind?,
                    amount: value?,
                    notes: notes?,
                },
            ))
        })?;
        let record = self.compensations.create(&caller, request_id, new).await?;
        Ok(Response::new(pb::CreateFounderCompensationResponse {
            compensation: Some(to_proto(record)),
        }))
    }

    async fn approve_founder_compensation(
        &self,
        request_message: Request<pb::ApproveFounderCompensationRequest>,
    ) -> Result<Response<pb::ApproveFounderCompensationResponse>, Status> {
        let caller = principal(&request_message)?;
        let message = request_message.into_inner();
        let key = request_key(&message, &message.request_id)?;
        let pb::ApproveFounderCompensationRequest {
            compensation_id: id,
            request_id: _,
        } = message;
        let record = self
            .compensations
            .approve(&caller, key, compensation_id(&id)?)
            .await?;
        Ok(Response::new(pb::ApproveFounderCompensationResponse {
            compensation: Some(to_proto(record)),
        }))
    }

    async fn pay_founder_compensation(
        &self,
        request_message: Request<pb::PayFounderCompensationRequest>,
    ) -> Result<Response<pb::PayFounderCompensationResponse>, Status> {
        let caller = principal(&request_message)?;
        let message = request_message.into_inner();
        let key = request_key(&message, &message.request_id)?;
        let pb::PayFounderCompensationRequest {
            compensation_id: id,
            request_id: _,
        } = message;
        let record = self
            .compensations
            .pay(&caller, key, compensation_id(&id)?)
            .await?;
        Ok(Response::new(pb::PayFounderCompensationResponse {
            compensation: Some(to_proto(record)),
        }))
    }

    async fn cancel_founder_compensation(
        &self,
        request_message: Request<pb::CancelFounderCompensationRequest>,
    ) -> Result<Response<pb::CancelFounderCompensationResponse>, Status> {
        let caller = principal(&request_message)?;
        let message = request_message.into_inner();
        let key = request_key(&message, &message.request_id)?;
        let pb::CancelFounderCompensationRequest {
            compensation_id: id,
            reason: why,
            request_id: _,
        } = message;
        let mut v = Violations::default();
        let id = v.check(parse_id("compensation_id", &id));
        let why = v.check(reason("reason", why).and_then(|why| {
            if why.trim().is_empty() {
                Err(FieldViolation::new("reason", "is required"))
            } else {
                Ok(why)
            }
        }));
        let (id, why) = v.finish(|| Some((id?, why?)))?;
        let record = self.compensations.cancel(&caller, key, id, why).await?;
        Ok(Response::new(pb::CancelFounderCompensationResponse {
            compensation: Some(to_proto(record)),
        }))
    }

    async fn get_founder_compensation(
        &self,
        request_message: Request<pb::GetFounderCompensationRequest>,
    ) -> Result<Response<pb::GetFounderCompensationResponse>, Status> {
        let caller = principal(&request_message)?;
        let pb::GetFounderCompensationRequest {
            compensation_id: id,
        } = request_message.into_inner();
        let record = self
            .compensations
            .get(&caller, compensation_id(&id)?)
            .await?;
        Ok(Response::new(pb::GetFounderCompensationResponse {
            compensation: Some(to_proto(record)),
        }))
    }

    async fn list_founder_compensations(
        &self,
        request_message: Request<pb::ListFounderCompensationsRequest>,
    ) -> Result<Response<pb::ListFounderCompensationsResponse>, Status> {
        let caller = principal(&request_message)?;
        let pb::ListFounderCompensationsRequest {
            page_size,
            page_token,
            founder_id,
            month,
            status,
            r#type,
        } = request_message.into_inner();
        let mut v = Violations::default();
        let founder = v.check(optional(&founder_id, |text| parse_id("founder_id", text)));
        let month = v.check(optional(&month, |text| Month::parse("month", text)));
        let status = v.check(status_from("status", status));
        let kind = v.check(type_from("type", r#type));
        let filter = v.finish(|| {
            Some(CompensationFilter {
                founder: founder?,
                month: month?,
                status: status?,
                kind: kind?,
            })
        })?;
        let page = self
            .compensations
            .list(&caller, filter, page_size, &page_token)
            .await?;
        Ok(Response::new(pb::ListFounderCompensationsResponse {
            compensations: page.items.into_iter().map(to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn get_founder_compensation_summary(
        &self,
        request_message: Request<pb::GetFounderCompensationSummaryRequest>,
    ) -> Result<Response<pb::GetFounderCompensationSummaryResponse>, Status> {
        let caller = principal(&request_message)?;
        let pb::GetFounderCompensationSummaryRequest {
            founder_id,
            start_month,
            end_month,
        } = request_message.into_inner();
        let mut v = Violations::default();
        let founder = v.check(optional(&founder_id, |text| parse_id("founder_id", text)));
        let start = v.check(optional(&start_month, |text| {
            Month::parse("start_month", text)
        }));
        let end = v.check(optional(&end_month, |text| Month::parse("end_month", text)));
        let (founder, start, end) = v.finish(|| Some((founder?, start?, end?)))?;
        let summary = self
            .compensations
            .summary(&caller, founder, start, end)
            .await?;
        Ok(Response::new(pb::GetFounderCompensationSummaryResponse {
            rows: summary
                .rows
                .into_iter()
                .map(
                    |(founder, month, kind, totals)| pb::CompensationSummaryRow {
                        founder_id: founder.to_string(),
                        month,
                        r#type: type_to(kind) as i32,
                        totals: Some(totals_to_proto(totals)),
                    },
                )
                .collect(),
            founders: summary
                .founders
                .into_iter()
                .map(|(founder, totals)| pb::FounderCompensationTotals {
                    founder_id: founder.to_string(),
                    totals: Some(totals_to_proto(totals)),
                })
                .collect(),
            totals: Some(totals_to_proto(summary.totals)),
        }))
    }
}
