//! FounderCompensationService over gRPC. Each handler parses its request with a
//! `TryFrom` into the domain input type named after the RPC (collecting
//! every violation), calls one operation and converts the result back.

use tonic::{Request, Response, Status};

use super::domain::{
    ApproveFounderCompensation, CancelFounderCompensation, Compensation, CompensationFilter,
    CompensationStatus, CompensationType, CreateFounderCompensation, GetFounderCompensation,
    GetFounderCompensationSummary, ListFounderCompensations, Month, NewCompensation,
    PayFounderCompensation, Summary, Totals,
};
use super::operations::Compensations;
use crate::auth::principal;
use crate::error::{Error, FieldViolation};
use crate::proto::treasury::{
    self as pb, founder_compensation_service_server::FounderCompensationService,
};
use crate::transport::{
    Violations, amount, azr_decimal as decimal, optional, parse_id, reason, request_key, required,
    required_request_id, timestamp,
};

pub struct FounderCompensationApi {
    compensations: Compensations,
}

impl FounderCompensationApi {
    pub fn new(compensations: Compensations) -> Self {
        Self { compensations }
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
        r#type: kind.to_wire(),
        status: status.to_wire(),
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

fn summary_to_proto(summary: Summary) -> pb::GetFounderCompensationSummaryResponse {
    let Summary {
        rows,
        founders,
        totals,
    } = summary;
    pb::GetFounderCompensationSummaryResponse {
        rows: rows
            .into_iter()
            .map(
                |(founder, month, kind, totals)| pb::CompensationSummaryRow {
                    founder_id: founder.to_string(),
                    month,
                    r#type: kind.to_wire(),
                    totals: Some(totals_to_proto(totals)),
                },
            )
            .collect(),
        founders: founders
            .into_iter()
            .map(|(founder, totals)| pb::FounderCompensationTotals {
                founder_id: founder.to_string(),
                totals: Some(totals_to_proto(totals)),
            })
            .collect(),
        totals: Some(totals_to_proto(totals)),
    }
}

/// A reason that must say something: blank is "is required".
fn required_reason(field: &str, text: String) -> Result<String, FieldViolation> {
    reason(field, text).and_then(|text| {
        if text.trim().is_empty() {
            Err(FieldViolation::new(field, "is required"))
        } else {
            Ok(text)
        }
    })
}

impl TryFrom<pb::CreateFounderCompensationRequest> for CreateFounderCompensation {
    type Error = Error;
    fn try_from(message: pb::CreateFounderCompensationRequest) -> Result<Self, Error> {
        let pb::CreateFounderCompensationRequest {
            request_id,
            founder_id,
            wallet_id,
            month,
            r#type,
            amount: value,
            notes,
        } = message;
        let mut v = Violations::default();
        let request_id = required_request_id(&mut v, &request_id);
        let founder = v.check(parse_id("founder_id", &founder_id));
        let wallet = v.check(parse_id("wallet_id", &wallet_id));
        let month = v.check(Month::parse("month", &month));
        let kind = v.check(required(
            "type",
            CompensationType::from_wire("type", r#type),
        ));
        let value = v.check(amount("amount", value.as_ref()));
        let notes = v.check(reason("notes", notes));
        v.finish(|| {
            Some(CreateFounderCompensation {
                request_id: request_id?,
                compensation: NewCompensation {
                    founder: founder?,
                    wallet: wallet?,
                    month: month?,
                    kind: kind?,
                    amount: value?,
                    notes: notes?,
                },
            })
        })
    }
}

impl TryFrom<pb::ApproveFounderCompensationRequest> for ApproveFounderCompensation {
    type Error = Error;
    fn try_from(message: pb::ApproveFounderCompensationRequest) -> Result<Self, Error> {
        let pb::ApproveFounderCompensationRequest {
            compensation_id,
            request_id: _,
        } = message;
        let compensation = parse_id("compensation_id", &compensation_id)?;
        Ok(ApproveFounderCompensation { compensation })
    }
}

impl TryFrom<pb::PayFounderCompensationRequest> for PayFounderCompensation {
    type Error = Error;
    fn try_from(message: pb::PayFounderCompensationRequest) -> Result<Self, Error> {
        let pb::PayFounderCompensationRequest {
            compensation_id,
            request_id: _,
        } = message;
        let compensation = parse_id("compensation_id", &compensation_id)?;
        Ok(PayFounderCompensation { compensation })
    }
}

impl TryFrom<pb::CancelFounderCompensationRequest> for CancelFounderCompensation {
    type Error = Error;
    fn try_from(message: pb::CancelFounderCompensationRequest) -> Result<Self, Error> {
        let pb::CancelFounderCompensationRequest {
            compensation_id,
            reason: why,
            request_id: _,
        } = message;
        let mut v = Violations::default();
        let compensation = v.check(parse_id("compensation_id", &compensation_id));
        let why = v.check(required_reason("reason", why));
        v.finish(|| {
            Some(CancelFounderCompensation {
                compensation: compensation?,
                reason: why?,
            })
        })
    }
}

impl TryFrom<pb::GetFounderCompensationRequest> for GetFounderCompensation {
    type Error = Error;
    fn try_from(message: pb::GetFounderCompensationRequest) -> Result<Self, Error> {
        let pb::GetFounderCompensationRequest { compensation_id } = message;
        let compensation = parse_id("compensation_id", &compensation_id)?;
        Ok(GetFounderCompensation { compensation })
    }
}

impl TryFrom<pb::ListFounderCompensationsRequest> for ListFounderCompensations {
    type Error = Error;
    fn try_from(message: pb::ListFounderCompensationsRequest) -> Result<Self, Error> {
        let pb::ListFounderCompensationsRequest {
            page_size,
            page_token,
            founder_id,
            month,
            status,
            r#type,
        } = message;
        let mut v = Violations::default();
        let founder = v.check(optional(&founder_id, |text| parse_id("founder_id", text)));
        let month = v.check(optional(&month, |text| Month::parse("month", text)));
        let status = v.check(CompensationStatus::from_wire("status", status));
        let kind = v.check(CompensationType::from_wire("type", r#type));
        v.finish(|| {
            Some(ListFounderCompensations {
                filter: CompensationFilter {
                    founder: founder?,
                    month: month?,
                    status: status?,
                    kind: kind?,
                },
                page_size,
                page_token,
            })
        })
    }
}

impl TryFrom<pb::GetFounderCompensationSummaryRequest> for GetFounderCompensationSummary {
    type Error = Error;
    fn try_from(message: pb::GetFounderCompensationSummaryRequest) -> Result<Self, Error> {
        let pb::GetFounderCompensationSummaryRequest {
            founder_id,
            start_month,
            end_month,
        } = message;
        let mut v = Violations::default();
        let founder = v.check(optional(&founder_id, |text| parse_id("founder_id", text)));
        let start = v.check(optional(&start_month, |text| {
            Month::parse("start_month", text)
        }));
        let end = v.check(optional(&end_month, |text| Month::parse("end_month", text)));
        v.finish(|| {
            Some(GetFounderCompensationSummary {
                founder: founder?,
                start: start?,
                end: end?,
            })
        })
    }
}

#[tonic::async_trait]
impl FounderCompensationService for FounderCompensationApi {
    async fn create_founder_compensation(
        &self,
        request: Request<pb::CreateFounderCompensationRequest>,
    ) -> Result<Response<pb::CreateFounderCompensationResponse>, Status> {
        let caller = principal(&request)?;
        let create = CreateFounderCompensation::try_from(request.into_inner())?;
        let record = self.compensations.create(&caller, create).await?;
        Ok(Response::new(pb::CreateFounderCompensationResponse {
            compensation: Some(to_proto(record)),
        }))
    }

    async fn approve_founder_compensation(
        &self,
        request: Request<pb::ApproveFounderCompensationRequest>,
    ) -> Result<Response<pb::ApproveFounderCompensationResponse>, Status> {
        let caller = principal(&request)?;
        let message = request.into_inner();
        let key = request_key(&message, &message.request_id)?;
        let approve = ApproveFounderCompensation::try_from(message)?;
        let record = self.compensations.approve(&caller, key, approve).await?;
        Ok(Response::new(pb::ApproveFounderCompensationResponse {
            compensation: Some(to_proto(record)),
        }))
    }

    async fn pay_founder_compensation(
        &self,
        request: Request<pb::PayFounderCompensationRequest>,
    ) -> Result<Response<pb::PayFounderCompensationResponse>, Status> {
        let caller = principal(&request)?;
        let message = request.into_inner();
        let key = request_key(&message, &message.request_id)?;
        let pay = PayFounderCompensation::try_from(message)?;
        let record = self.compensations.pay(&caller, key, pay).await?;
        Ok(Response::new(pb::PayFounderCompensationResponse {
            compensation: Some(to_proto(record)),
        }))
    }

    async fn cancel_founder_compensation(
        &self,
        request: Request<pb::CancelFounderCompensationRequest>,
    ) -> Result<Response<pb::CancelFounderCompensationResponse>, Status> {
        let caller = principal(&request)?;
        let message = request.into_inner();
        let key = request_key(&message, &message.request_id)?;
        let cancel = CancelFounderCompensation::try_from(message)?;
        let record = self.compensations.cancel(&caller, key, cancel).await?;
        Ok(Response::new(pb::CancelFounderCompensationResponse {
            compensation: Some(to_proto(record)),
        }))
    }

    async fn get_founder_compensation(
        &self,
        request: Request<pb::GetFounderCompensationRequest>,
    ) -> Result<Response<pb::GetFounderCompensationResponse>, Status> {
        let caller = principal(&request)?;
        let get = GetFounderCompensation::try_from(request.into_inner())?;
        let record = self.compensations.get(&caller, get).await?;
        Ok(Response::new(pb::GetFounderCompensationResponse {
            compensation: Some(to_proto(record)),
        }))
    }

    async fn list_founder_compensations(
        &self,
        request: Request<pb::ListFounderCompensationsRequest>,
    ) -> Result<Response<pb::ListFounderCompensationsResponse>, Status> {
        let caller = principal(&request)?;
        let list = ListFounderCompensations::try_from(request.into_inner())?;
        let page = self.compensations.list(&caller, list).await?;
        Ok(Response::new(pb::ListFounderCompensationsResponse {
            compensations: page.items.into_iter().map(to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn get_founder_compensation_summary(
        &self,
        request: Request<pb::GetFounderCompensationSummaryRequest>,
    ) -> Result<Response<pb::GetFounderCompensationSummaryResponse>, Status> {
        let caller = principal(&request)?;
        let get = GetFounderCompensationSummary::try_from(request.into_inner())?;
        let summary = self.compensations.summary(&caller, get).await?;
        Ok(Response::new(summary_to_proto(summary)))
    }
}
