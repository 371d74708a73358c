//! Compliance types: the audit trail as an auditor reads it, reports and
//! their checks, alerts, and the inputs of each RPC, parsed at the edge.

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use uuid::Uuid;

use crate::money::RequestId;
use crate::proto::compliance as pb;

wire_enum!(Severity as pb::Severity, "severity" {
    Info => "info",
    Warning => "warning",
    Critical => "critical",
});

wire_enum!(ReportType as pb::ReportType, "report type" {
    Daily => "daily",
    Monthly => "monthly",
    AdHoc => "ad_hoc",
});

wire_enum!(ReportStatus as pb::ReportStatus, "report status" {
    Compliant => "compliant",
    Warning => "warning",
    NonCompliant => "non_compliant",
});

wire_enum!(AuditOutcome as pb::AuditOutcome, "audit outcome" {
    Ok => "ok",
    PermissionDenied => "permission_denied",
    Unauthenticated => "unauthenticated",
});

impl ReportType {
    /// Whether `[start, end)` is a period of this type.
    pub fn fits(self, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
        let midnight = |at: DateTime<Utc>| {
            at == at
                .date_naive()
                .and_hms_opt(0, 0, 0)
                .map(|naive| naive.and_utc())
                .unwrap_or(at)
        };
        match self {
            ReportType::AdHoc => start < end,
            ReportType::Daily => midnight(start) && end - start == Duration::days(1),
            ReportType::Monthly => {
                let next = if start.month() == 12 {
                    Utc.with_ymd_and_hms(start.year() + 1, 1, 1, 0, 0, 0)
                } else {
                    Utc.with_ymd_and_hms(start.year(), start.month() + 1, 1, 0, 0, 0)
                };
                midnight(start) && start.day() == 1 && next.single() == Some(end)
            }
        }
    }
}

/// An event's place in the hash chain, once the chainer has linked it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainLink {
    pub sequence: i64,
    pub hash: String,
    pub previous_hash: String,
}

/// An audit event as an auditor reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    pub id: Uuid,
    pub recorded_at: DateTime<Utc>,
    pub actor_user: Option<Uuid>,
    pub actor_key: Option<Uuid>,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    /// JSON text, as recorded.
    pub old_values: Option<String>,
    pub new_values: Option<String>,
    pub peer_address: String,
    pub user_agent: String,
    pub request_id: String,
    pub outcome: AuditOutcome,
    /// None until the event is chained.
    pub link: Option<ChainLink>,
}

/// Which audit events to list; every field narrows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub actor: Option<Uuid>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub action: Option<String>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

impl AuditFilter {
    /// What a page token of this listing is bound to.
    pub fn fingerprint(&self) -> String {
        format!("audit|{self:?}")
    }
}

/// The part of the chain a VerifyAuditLog call checks: `[from, to]`, to the
/// head when `to` is None.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditRange {
    pub from: i64,
    pub to: Option<i64>,
}

/// A GenerateComplianceReport call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportRequest {
    pub request_id: Option<RequestId>,
    pub kind: ReportType,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// One invariant checked over a report's period. Stored as JSON in the
/// report: the field names and the severity's text are the stored format.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    /// How serious a failure is: `warning` or `critical`.
    pub severity: Severity,
    pub findings: Vec<String>,
}

/// Findings listed per check at most.
pub const MAX_FINDINGS: usize = 100;

impl Check {
    /// A check that passed when it found nothing; findings past
    /// [`MAX_FINDINGS`] are dropped.
    pub fn new(name: &str, severity: Severity, mut findings: Vec<String>) -> Self {
        findings.truncate(MAX_FINDINGS);
        Self {
            name: name.to_owned(),
            passed: findings.is_empty(),
            severity,
            findings,
        }
    }

    pub fn failed(&self) -> bool {
        !self.passed
    }
}

impl ReportStatus {
    /// Non-compliant when a critical check failed, warning when only
    /// warnings did, compliant otherwise.
    pub fn of(checks: &[Check]) -> Self {
        let failed = |severity: Severity| {
            checks
                .iter()
                .any(|check| check.failed() && check.severity == severity)
        };
        if failed(Severity::Critical) {
            ReportStatus::NonCompliant
        } else if failed(Severity::Warning) {
            ReportStatus::Warning
        } else {
            ReportStatus::Compliant
        }
    }
}

/// A compliance report over `[period_start, period_end)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub id: Uuid,
    pub kind: ReportType,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub status: ReportStatus,
    pub total_transactions: i64,
    pub volume_azr_micros: i64,
    pub volume_usd_micros: i64,
    /// The treasury reserve at the period's end, from the entries.
    pub treasury_balance_micros: i64,
    pub checks: Vec<Check>,
    pub recommendations: Vec<String>,
    pub generated_by: Uuid,
    pub generated_at: DateTime<Utc>,
    /// The caller's idempotency key; none on reports from before request
    /// ids.
    pub request_id: Option<String>,
    /// Mining claims pending at the period's end, and their AZR.
    pub pending_claims: i64,
    pub pending_claims_micros: i64,
}

/// Something an operator should look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    pub id: Uuid,
    pub severity: Severity,
    pub source: String,
    pub message: String,
    pub created_at: DateTime<Utc>,
    pub acknowledged_by: Option<Uuid>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// Position in commit order; what WatchAlerts resumes from.
    pub sequence: i64,
}

impl Alert {
    /// Who acknowledged it and when, as audited.
    pub fn acknowledgement(&self) -> serde_json::Value {
        serde_json::json!({
            "acknowledged_by": self.acknowledged_by,
            "acknowledged_at": self.acknowledged_at,
        })
    }
}

/// Which alerts to list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AlertFilter {
    pub unacknowledged_only: bool,
}

impl AlertFilter {
    /// What a page token of this listing is bound to.
    pub fn fingerprint(&self) -> String {
        format!("alerts|{}", self.unacknowledged_only)
    }
}

/// A WatchAlerts call: resume after this sequence, or from now when None.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlertWatch {
    pub after: Option<i64>,
}
