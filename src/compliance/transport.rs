//! ComplianceService over gRPC.

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::entities::{alert, report};
use super::operations::{CheckResult, Compliance, ReportType};
use super::store::{self, AuditFilter, Severity};
use crate::audit::entities::{audit_event, chain};
use crate::auth::principal;
use crate::error::{Error, FieldViolation};
use crate::money::RequestId;
use crate::proto::compliance::{self as pb, compliance_service_server::ComplianceService};
use crate::streams::Watchers;
use crate::transport::parse_id;
use crate::transport::{
    Polled, Violations, azr_decimal as decimal, datetime_from, optional, polling_stream,
    request_key, timestamp,
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

fn severity_to(text: &str) -> pb::Severity {
    match Severity::parse(text) {
        Some(Severity::Info) => pb::Severity::Info,
        Some(Severity::Warning) => pb::Severity::Warning,
        Some(Severity::Critical) => pb::Severity::Critical,
        None => pb::Severity::Unspecified,
    }
}

fn event_to_proto(event: audit_event::Model, link: Option<&chain::Model>) -> pb::AuditEvent {
    let audit_event::Model {
        id,
        recorded_at,
        actor_user_id,
        actor_key_id,
        action,
        resource_type,
        resource_id,
        old_values,
        new_values,
        peer_address,
        user_agent,
        request_id,
        outcome,
    } = event;
    pb::AuditEvent {
        id: id.to_string(),
        sequence: link.map(|link| link.sequence).unwrap_or_default(),
        record_time: Some(timestamp(recorded_at)),
        actor_user_id: actor_user_id.map(|id| id.to_string()).unwrap_or_default(),
        actor_api_key_id: actor_key_id.map(|id| id.to_string()).unwrap_or_default(),
        action,
        resource_type,
        resource_id,
        old_values: old_values.unwrap_or_default(),
        new_values: new_values.unwrap_or_default(),
        peer_address,
        user_agent,
        request_id,
        outcome: match outcome.as_str() {
            "ok" => pb::AuditOutcome::Ok,
            "permission_denied" => pb::AuditOutcome::PermissionDenied,
            "unauthenticated" => pb::AuditOutcome::Unauthenticated,
            _ => pb::AuditOutcome::Unspecified,
        } as i32,
        hash: link.map(|link| link.hash.clone()).unwrap_or_default(),
        previous_hash: link
            .map(|link| link.previous_hash.clone())
            .unwrap_or_default(),
    }
}

fn report_to_proto(report: report::Model) -> Result<pb::ComplianceReport, Error> {
    let checks: Vec<CheckResult> = serde_json::from_str(&report.checks).map_err(Error::internal)?;
    let recommendations: Vec<String> =
        serde_json::from_str(&report.recommendations).map_err(Error::internal)?;
    Ok(pb::ComplianceReport {
        id: report.id.to_string(),
        report_type: match ReportType::parse(&report.report_type) {
            Some(ReportType::Daily) => pb::ReportType::Daily,
            Some(ReportType::Monthly) => pb::ReportType::Monthly,
            Some(ReportType::AdHoc) => pb::ReportType::AdHoc,
            None => pb::ReportType::Unspecified,
        } as i32,
        period_start: Some(timestamp(report.period_start)),
        period_end: Some(timestamp(report.period_end)),
        status: match report.status.as_str() {
            "compliant" => pb::ReportStatus::Compliant,
            "warning" => pb::ReportStatus::Warning,
            "non_compliant" => pb::ReportStatus::NonCompliant,
            _ => pb::ReportStatus::Unspecified,
        } as i32,
        total_transactions: report.total_transactions,
        volume_azr: decimal(report.volume_azr_micros),
        volume_usd: decimal(report.volume_usd_micros),
        treasury_balance: decimal(report.treasury_balance_micros),
        checks: checks
            .into_iter()
            .map(|check| pb::Check {
                severity: severity_to(&check.severity) as i32,
                name: check.name,
                passed: check.passed,
                findings: check.findings,
            })
            .collect(),
        recommendations,
        generated_by: report.generated_by.to_string(),
        generate_time: Some(timestamp(report.generated_at)),
        pending_claims: report.pending_claims,
        pending_claims_azr: decimal(report.pending_claims_micros),
    })
}

fn alert_to_proto(alert: alert::Model) -> pb::Alert {
    let alert::Model {
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
        severity: severity_to(&severity) as i32,
        source,
        message,
        create_time: Some(timestamp(created_at)),
        acknowledged_by: acknowledged_by.map(|id| id.to_string()).unwrap_or_default(),
        acknowledge_time: acknowledged_at.map(timestamp),
        sequence,
    }
}

fn text(field: &str, value: &str) -> Result<String, FieldViolation> {
    if value.len() > 256 {
        Err(FieldViolation::new(field, "must be at most 256 characters"))
    } else {
        Ok(value.to_owned())
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
        let pb::ListAuditEventsRequest {
            page_size,
            page_token,
            actor_user_id,
            resource_type,
            resource_id,
            action,
            start_time,
            end_time,
        } = request.into_inner();
        let mut v = Violations::default();
        let actor = v.check(optional(&actor_user_id, |value| {
            parse_id("actor_user_id", value)
        }));
        let resource_type = v.check(optional(&resource_type, |value| {
            text("resource_type", value)
        }));
        let resource_id = v.check(optional(&resource_id, |value| text("resource_id", value)));
        let action = v.check(optional(&action, |value| text("action", value)));
        let start = v.check(
            start_time
                .as_ref()
                .map(|at| datetime_from("start_time", at))
                .transpose(),
        );
        let end = v.check(
            end_time
                .as_ref()
                .map(|at| datetime_from("end_time", at))
                .transpose(),
        );
        let filter = v.finish(|| {
            Some(AuditFilter {
                actor: actor?,
                resource_type: resource_type?,
                resource_id: resource_id?,
                action: action?,
                start: start?,
                end: end?,
            })
        })?;
        let page = self
            .compliance
            .list_audit_events(&caller, filter, page_size, &page_token)
            .await?;
        let ids: Vec<_> = page.items.iter().map(|event| event.id).collect();
        let links = crate::audit::links_of(self.compliance.database(), &ids).await?;
        Ok(Response::new(pb::ListAuditEventsResponse {
            events: page
                .items
                .into_iter()
                .map(|event| {
                    let link = links.get(&event.id);
                    event_to_proto(event, link)
                })
                .collect(),
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
        let links = crate::audit::links_of(self.compliance.database(), &[event.id]).await?;
        let link = links.get(&event.id);
        Ok(Response::new(pb::GetAuditEventResponse {
            event: Some(event_to_proto(event, link)),
        }))
    }

    async fn verify_audit_log(
        &self,
        request: Request<pb::VerifyAuditLogRequest>,
    ) -> Result<Response<pb::VerifyAuditLogResponse>, Status> {
        let caller = principal(&request)?;
        let pb::VerifyAuditLogRequest {
            from_sequence,
            to_sequence,
        } = request.into_inner();
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
        v.finish(|| Some(()))?;
        let result = self
            .compliance
            .verify(
                &caller,
                from_sequence.max(1),
                (to_sequence > 0).then_some(to_sequence),
            )
            .await?;
        Ok(Response::new(pb::VerifyAuditLogResponse {
            intact: result.intact,
            first_broken_sequence: result.first_broken_sequence.unwrap_or_default(),
            checked_count: result.checked,
            head_sequence: result.head_sequence,
            head_hash: result.head_hash,
            unchained_count: result.unchained,
        }))
    }

    async fn generate_compliance_report(
        &self,
        request: Request<pb::GenerateComplianceReportRequest>,
    ) -> Result<Response<pb::GenerateComplianceReportResponse>, Status> {
        let caller = principal(&request)?;
        let pb::GenerateComplianceReportRequest {
            report_type,
            period_start,
            period_end,
            request_id,
        } = request.into_inner();
        let mut v = Violations::default();
        let request_id = v.check(optional(&request_id, |text| {
            RequestId::parse("request_id", text)
        }));
        let kind = v.check(match pb::ReportType::try_from(report_type) {
            Ok(pb::ReportType::Daily) => Ok(ReportType::Daily),
            Ok(pb::ReportType::Monthly) => Ok(ReportType::Monthly),
            Ok(pb::ReportType::AdHoc) => Ok(ReportType::AdHoc),
            _ => Err(FieldViolation::new(
                "report_type",
                "must be daily, monthly or ad hoc",
            )),
        });
        let start = v.check(match &period_start {
            Some(at) => datetime_from("period_start", at),
            None => Err(FieldViolation::new("period_start", "is required")),
        });
        let end = v.check(match &period_end {
            Some(at) => datetime_from("period_end", at),
            None => Err(FieldViolation::new("period_end", "is required")),
        });
        if let (Some(start), Some(end)) = (start, end) {
            if start >= end {
                v.0.push(FieldViolation::new(
                    "period_end",
                    "must be after period_start",
                ));
            }
            if end > chrono::Utc::now() + chrono::Duration::days(1) {
                v.0.push(FieldViolation::new(
                    "period_end",
                    "must not be more than a day in the future",
                ));
            }
        }
        let (request_id, kind, start, end) =
            v.finish(|| Some((request_id?, kind?, start?, end?)))?;
        let report = self
            .compliance
            .generate_report(&caller, request_id, kind, start, end)
            .await?;
        Ok(Response::new(pb::GenerateComplianceReportResponse {
            report: Some(report_to_proto(report)?),
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
            report: Some(report_to_proto(report)?),
        }))
    }

    async fn list_compliance_reports(
        &self,
        request: Request<pb::ListComplianceReportsRequest>,
    ) -> Result<Response<pb::ListComplianceReportsResponse>, Status> {
        let caller = principal(&request)?;
        let pb::ListComplianceReportsRequest {
            page_size,
            page_token,
        } = request.into_inner();
        let page = self
            .compliance
            .list_reports(&caller, page_size, &page_token)
            .await?;
        Ok(Response::new(pb::ListComplianceReportsResponse {
            reports: page
                .items
                .into_iter()
                .map(report_to_proto)
                .collect::<Result<_, _>>()?,
            next_page_token: page.next_page_token,
        }))
    }

    async fn list_alerts(
        &self,
        request: Request<pb::ListAlertsRequest>,
    ) -> Result<Response<pb::ListAlertsResponse>, Status> {
        let caller = principal(&request)?;
        let pb::ListAlertsRequest {
            page_size,
            page_token,
            unacknowledged_only,
        } = request.into_inner();
        let page = self
            .compliance
            .list_alerts(&caller, unacknowledged_only, page_size, &page_token)
            .await?;
        Ok(Response::new(pb::ListAlertsResponse {
            alerts: page.items.into_iter().map(alert_to_proto).collect(),
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
        let pb::AcknowledgeAlertRequest {
            alert_id,
            request_id: _,
        } = message;
        let id = parse_id("alert_id", &alert_id).map_err(Error::from)?;
        let alert = self.compliance.acknowledge_alert(&caller, key, id).await?;
        Ok(Response::new(pb::AcknowledgeAlertResponse {
            alert: Some(alert_to_proto(alert)),
        }))
    }

    type WatchAlertsStream = AlertStream;

    async fn watch_alerts(
        &self,
        request: Request<pb::WatchAlertsRequest>,
    ) -> Result<Response<Self::WatchAlertsStream>, Status> {
        let caller = principal(&request)?;
        let pb::WatchAlertsRequest { after_sequence } = request.into_inner();
        if after_sequence.is_some_and(|after| after < 0) {
            return Err(Error::invalid("after_sequence", "must not be negative").into());
        }
        self.compliance.require_overseer(&caller)?;
        let db = self.compliance.database().clone();
        let newest = store::newest_alert_sequence(&db).await?;
        let after = match after_sequence {
            None => newest,
            Some(after) if after > newest => {
                return Err(Error::OutOfRange {
                    field: "after_sequence",
                    message: format!("{after} is beyond the newest alert, {newest}"),
                }
                .into());
            }
            Some(after) => after,
        };
        let permit = self.watchers.open(&caller)?;
        // Polling the table lets a watcher see alerts raised on any replica;
        // sequences follow commit order, so the cursor never skips one.
        let stream = polling_stream(
            WATCH_POLL,
            self.shutdown.clone(),
            permit,
            after,
            move |after| {
                let db = db.clone();
                async move {
                    match store::alerts_after(&db, after).await {
                        Ok(alerts) if !alerts.is_empty() => {
                            let last = alerts.last().map_or(after, |alert| alert.sequence);
                            let messages = alerts
                                .into_iter()
                                .map(|alert| pb::WatchAlertsResponse {
                                    alert: Some(alert_to_proto(alert)),
                                })
                                .collect();
                            Ok((last, Polled::Messages(messages)))
                        }
                        Ok(_) => Ok((after, Polled::Nothing)),
                        // Alerts matter most when the database struggles: keep
                        // the stream open and try again.
                        Err(error) => {
                            tracing::warn!(%error, "watching alerts: the database did not answer; retrying");
                            Ok((after, Polled::Nothing))
                        }
                    }
                }
            },
        );
        Ok(Response::new(stream))
    }
}
