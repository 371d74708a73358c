//! ComplianceService over gRPC: each handler parses the request into domain
//! types, calls one operation and converts the result back.

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::domain::{
    Alert, AlertFilter, AlertWatch, AuditEvent, AuditFilter, AuditRange, Check, Report,
    ReportRequest, ReportType,
};
use super::operations::Compliance;
use crate::audit::Verification;
use crate::auth::principal;
use crate::error::{Error, FieldViolation};
use crate::money::RequestId;
use crate::pagination::PageQuery;
use crate::proto::compliance::{self as pb, compliance_service_server::ComplianceService};
use crate::streams::Watchers;
use crate::transport::{
    Violations, azr_decimal as decimal, datetime_from, optional, optional_time, parse_id,
    polling_stream, request_key, timestamp,
};

/// How often a WatchAlerts stream looks for new alerts.
const WATCH_POLL: Duration = Duration::from_millis(200);

pub struct ComplianceApi {
    compliance: Compliance,
    watchers: Watchers,
    shutdown: CancellationToken,
}

impl ComplianceApi {
    /// `watchers` bounds and re-checks WatchAlerts streams; `shutdown` ends
    /// them when the server drains.
    pub fn new(compliance: Compliance, watchers: Watchers, shutdown: CancellationToken) -> Self {
        Self {
            compliance,
            watchers,
            shutdown,
        }
    }
}

/// Free text a filter may carry: at most 256 bytes.
fn text(field: &str, value: &str) -> Result<String, FieldViolation> {
    if value.len() > 256 {
        Err(FieldViolation::new(field, "must be at most 256 characters"))
    } else {
        Ok(value.to_owned())
    }
}

fn required_time(
    field: &str,
    value: Option<&prost_types::Timestamp>,
) -> Result<chrono::DateTime<chrono::Utc>, FieldViolation> {
    match value {
        Some(at) => datetime_from(field, at),
        None => Err(FieldViolation::new(field, "is required")),
    }
}

impl TryFrom<pb::ListAuditEventsRequest> for PageQuery<AuditFilter> {
    type Error = Error;
    fn try_from(request: pb::ListAuditEventsRequest) -> Result<Self, Error> {
        let pb::ListAuditEventsRequest {
            page_size,
            page_token,
            actor_user_id,
            resource_type,
            resource_id,
            action,
            start_time,
            end_time,
        } = request;
        let mut v = Violations::default();
        let actor = v.check(optional(&actor_user_id, |value| {
            parse_id("actor_user_id", value)
        }));
        let resource_type = v.check(optional(&resource_type, |value| {
            text("resource_type", value)
        }));
        let resource_id = v.check(optional(&resource_id, |value| text("resource_id", value)));
        let action = v.check(optional(&action, |value| text("action", value)));
        let start = v.check(optional_time("start_time", start_time.as_ref()));
        let end = v.check(optional_time("end_time", end_time.as_ref()));
        v.finish(|| {
            Some(PageQuery {
                filter: AuditFilter {
                    actor: actor?,
                    resource_type: resource_type?,
                    resource_id: resource_id?,
                    action: action?,
                    start: start?,
                    end: end?,
                },
                page_size,
                page_token,
            })
        })
    }
}

impl TryFrom<pb::VerifyAuditLogRequest> for AuditRange {
    type Error = Error;
    fn try_from(request: pb::VerifyAuditLogRequest) -> Result<Self, Error> {
        let pb::VerifyAuditLogRequest {
            from_sequence,
            to_sequence,
        } = request;
        let mut v = Violations::default();
        if from_sequence < 0 {
            v.0.push(FieldViolation::new("from_sequence", "must not be negative"));
        }
        // Reversed is wrong whatever the chain holds: INVALID_ARGUMENT here.
        // Beyond the head depends on the chain: OUT_OF_RANGE, from the verifier.
        if to_sequence < 0 || (to_sequence > 0 && to_sequence < from_sequence) {
            v.0.push(FieldViolation::new(
                "to_sequence",
                "must be 0 (the head) or at least from_sequence",
            ));
        }
        v.finish(|| {
            Some(AuditRange {
                from: from_sequence.max(1),
                to: (to_sequence > 0).then_some(to_sequence),
            })
        })
    }
}

impl TryFrom<pb::GenerateComplianceReportRequest> for ReportRequest {
    type Error = Error;
    fn try_from(request: pb::GenerateComplianceReportRequest) -> Result<Self, Error> {
        let pb::GenerateComplianceReportRequest {
            report_type,
            period_start,
            period_end,
            request_id,
        } = request;
        let mut v = Violations::default();
        let request_id = v.check(optional(&request_id, |text| {
            RequestId::parse("request_id", text)
        }));
        let kind = v.check(
            ReportType::from_wire("report_type", report_type)
                .ok()
                .flatten()
                .ok_or_else(|| {
                    FieldViolation::new("report_type", "must be daily, monthly or ad hoc")
                }),
        );
        let start = v.check(required_time("period_start", period_start.as_ref()));
        let end = v.check(required_time("period_end", period_end.as_ref()));
        if let (Some(start), Some(end)) = (start, end) {
            v.0.extend(period_violations(start, end));
        }
        v.finish(|| {
            Some(ReportRequest {
                request_id: request_id?,
                kind: kind?,
                start: start?,
                end: end?,
            })
        })
    }
}

/// What is wrong with a report's period whatever its type.
fn period_violations(
    start: chrono::DateTime<chrono::Utc>,
    end: chrono::DateTime<chrono::Utc>,
) -> Vec<FieldViolation> {
    let mut violations = Vec::new();
    if start >= end {
        violations.push(FieldViolation::new(
            "period_end",
            "must be after period_start",
        ));
    }
    if end > chrono::Utc::now() + chrono::Duration::days(1) {
        violations.push(FieldViolation::new(
            "period_end",
            "must not be more than a day in the future",
        ));
    }
    violations
}

impl From<pb::ListComplianceReportsRequest> for PageQuery<()> {
    fn from(request: pb::ListComplianceReportsRequest) -> Self {
        let pb::ListComplianceReportsRequest {
            page_size,
            page_token,
        } = request;
        PageQuery {
            filter: (),
            page_size,
            page_token,
        }
    }
}

impl From<pb::ListAlertsRequest> for PageQuery<AlertFilter> {
    fn from(request: pb::ListAlertsRequest) -> Self {
        let pb::ListAlertsRequest {
            page_size,
            page_token,
            unacknowledged_only,
        } = request;
        PageQuery {
            filter: AlertFilter {
                unacknowledged_only,
            },
            page_size,
            page_token,
        }
    }
}

impl TryFrom<pb::WatchAlertsRequest> for AlertWatch {
    type Error = Error;
    fn try_from(request: pb::WatchAlertsRequest) -> Result<Self, Error> {
        let pb::WatchAlertsRequest { after_sequence } = request;
        if after_sequence.is_some_and(|after| after < 0) {
            return Err(Error::invalid("after_sequence", "must not be negative"));
        }
        Ok(AlertWatch {
            after: after_sequence,
        })
    }
}

impl From<AuditEvent> for pb::AuditEvent {
    fn from(event: AuditEvent) -> Self {
        let AuditEvent {
            id,
            recorded_at,
            actor_user,
            actor_key,
            action,
            resource_type,
            resource_id,
            old_values,
            new_values,
            peer_address,
            user_agent,
            request_id,
            outcome,
            link,
        } = event;
        let link = link.unwrap_or_default();
        pb::AuditEvent {
            id: id.to_string(),
            sequence: link.sequence,
            record_time: Some(timestamp(recorded_at)),
            actor_user_id: actor_user.map(|id| id.to_string()).unwrap_or_default(),
            actor_api_key_id: actor_key.map(|id| id.to_string()).unwrap_or_default(),
            action,
            resource_type,
            resource_id,
            old_values: old_values.unwrap_or_default(),
            new_values: new_values.unwrap_or_default(),
            peer_address,
            user_agent,
            request_id,
            outcome: outcome.to_wire(),
            hash: link.hash,
            previous_hash: link.previous_hash,
        }
    }
}

impl From<Check> for pb::Check {
    fn from(check: Check) -> Self {
        let Check {
            name,
            passed,
            severity,
            findings,
        } = check;
        pb::Check {
            name,
            passed,
            severity: severity.to_wire(),
            findings,
        }
    }
}

impl From<Report> for pb::ComplianceReport {
    fn from(report: Report) -> Self {
        let Report {
            id,
            kind,
            period_start,
            period_end,
            status,
            total_transactions,
            volume_azr_micros,
            volume_usd_micros,
            treasury_balance_micros,
            checks,
            recommendations,
            generated_by,
            generated_at,
            request_id: _,
            pending_claims,
            pending_claims_micros,
        } = report;
        pb::ComplianceReport {
            id: id.to_string(),
            report_type: kind.to_wire(),
            period_start: Some(timestamp(period_start)),
            period_end: Some(timestamp(period_end)),
            status: status.to_wire(),
            total_transactions,
            volume_azr: decimal(volume_azr_micros),
            volume_usd: decimal(volume_usd_micros),
            treasury_balance: decimal(treasury_balance_micros),
            checks: checks.into_iter().map(Into::into).collect(),
            recommendations,
            generated_by: generated_by.to_string(),
            generate_time: Some(timestamp(generated_at)),
            pending_claims,
            pending_claims_azr: decimal(pending_claims_micros),
        }
    }
}

impl From<Alert> for pb::Alert {
    fn from(alert: Alert) -> Self {
        let Alert {
            id,
            severity,
            source,
            message,
            created_at,
            acknowledged_by,
            acknowledged_at,
            sequence,
        } = alert;
        pb::Alert {
            id: id.to_string(),
            severity: severity.to_wire(),
            source,
            message,
            create_time: Some(timestamp(created_at)),
            acknowledged_by: acknowledged_by.map(|id| id.to_string()).unwrap_or_default(),
            acknowledge_time: acknowledged_at.map(timestamp),
            sequence,
        }
    }
}

impl From<Verification> for pb::VerifyAuditLogResponse {
    fn from(verification: Verification) -> Self {
        let Verification {
            intact,
            first_broken_sequence,
            checked,
            head_sequence,
            head_hash,
            unchained,
        } = verification;
        pb::VerifyAuditLogResponse {
            intact,
            first_broken_sequence: first_broken_sequence.unwrap_or_default(),
            checked_count: checked,
            head_sequence,
            head_hash,
            unchained_count: unchained,
        }
    }
}

fn watched_alert(alert: Alert) -> pb::WatchAlertsResponse {
    pb::WatchAlertsResponse {
        alert: Some(alert.into()),
    }
}

type AlertStream = Pin<Box<dyn Stream<Item = Result<pb::WatchAlertsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ComplianceService for ComplianceApi {
    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let caller = principal(&request)?;
        let query = PageQuery::try_from(request.into_inner())?;
        let page = self.compliance.list_audit_events(&caller, query).await?;
        Ok(Response::new(pb::ListAuditEventsResponse {
            events: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn get_audit_event(
        &self,
        request: Request<pb::GetAuditEventRequest>,
    ) -> Result<Response<pb::GetAuditEventResponse>, Status> {
        let caller = principal(&request)?;
        let pb::GetAuditEventRequest { event_id } = request.into_inner();
        let id = parse_id("event_id", &event_id).map_err(Error::from)?;
        let event = self.compliance.get_audit_event(&caller, id).await?;
        Ok(Response::new(pb::GetAuditEventResponse {
            event: Some(event.into()),
        }))
    }

    async fn verify_audit_log(
        &self,
        request: Request<pb::VerifyAuditLogRequest>,
    ) -> Result<Response<pb::VerifyAuditLogResponse>, Status> {
        let caller = principal(&request)?;
        let range = AuditRange::try_from(request.into_inner())?;
        let verification = self.compliance.verify(&caller, range).await?;
        Ok(Response::new(verification.into()))
    }

    async fn generate_compliance_report(
        &self,
        request: Request<pb::GenerateComplianceReportRequest>,
    ) -> Result<Response<pb::GenerateComplianceReportResponse>, Status> {
        let caller = principal(&request)?;
        let report_request = ReportRequest::try_from(request.into_inner())?;
        let report = self
            .compliance
            .generate_report(&caller, report_request)
            .await?;
        Ok(Response::new(pb::GenerateComplianceReportResponse {
            report: Some(report.into()),
        }))
    }

    async fn get_compliance_report(
        &self,
        request: Request<pb::GetComplianceReportRequest>,
    ) -> Result<Response<pb::GetComplianceReportResponse>, Status> {
        let caller = principal(&request)?;
        let pb::GetComplianceReportRequest { report_id } = request.into_inner();
        let id = parse_id("report_id", &report_id).map_err(Error::from)?;
        let report = self.compliance.get_report(&caller, id).await?;
        Ok(Response::new(pb::GetComplianceReportResponse {
            report: Some(report.into()),
        }))
    }

    async fn list_compliance_reports(
        &self,
        request: Request<pb::ListComplianceReportsRequest>,
    ) -> Result<Response<pb::ListComplianceReportsResponse>, Status> {
        let caller = principal(&request)?;
        let query = PageQuery::from(request.into_inner());
        let page = self.compliance.list_reports(&caller, query).await?;
        Ok(Response::new(pb::ListComplianceReportsResponse {
            reports: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn list_alerts(
        &self,
        request: Request<pb::ListAlertsRequest>,
    ) -> Result<Response<pb::ListAlertsResponse>, Status> {
        let caller = principal(&request)?;
        let query = PageQuery::from(request.into_inner());
        let page = self.compliance.list_alerts(&caller, query).await?;
        Ok(Response::new(pb::ListAlertsResponse {
            alerts: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn acknowledge_alert(
        &self,
        request: Request<pb::AcknowledgeAlertRequest>,
    ) -> Result<Response<pb::AcknowledgeAlertResponse>, Status> {
        let caller = principal(&request)?;
        let message = request.into_inner();
        let key = request_key(&message, &message.request_id)?;
        let id = parse_id("alert_id", &message.alert_id).map_err(Error::from)?;
        let alert = self.compliance.acknowledge_alert(&caller, key, id).await?;
        Ok(Response::new(pb::AcknowledgeAlertResponse {
            alert: Some(alert.into()),
        }))
    }

    type WatchAlertsStream = AlertStream;

    /// Polls the table, so a watcher sees alerts raised on any replica.
    async fn watch_alerts(
        &self,
        request: Request<pb::WatchAlertsRequest>,
    ) -> Result<Response<Self::WatchAlertsStream>, Status> {
        let caller = principal(&request)?;
        let watch = AlertWatch::try_from(request.into_inner())?;
        let after = self
            .compliance
            .start_watching_alerts(&caller, watch)
            .await?;
        let permit = self.watchers.open(&caller)?;
        let compliance = self.compliance.clone();
        let poll = move |after| {
            let compliance = compliance.clone();
            async move {
                let (after, polled) = compliance.poll_alerts(after).await;
                Ok((after, polled.map(watched_alert)))
            }
        };
        let stream = polling_stream(WATCH_POLL, self.shutdown.clone(), permit, after, poll);
        Ok(Response::new(stream))
    }
}
