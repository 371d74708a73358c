//! Compliance use cases: who may read the trail, how a report is generated
//! and retried, alerts, their acknowledgement and their watchers.

use chrono::{SubsecRound, Utc};
use sea_orm::{DatabaseConnection, DatabaseTransaction};
use uuid::Uuid;

use super::alerts;
use super::checks;
use super::domain::{
    Alert, AlertFilter, AlertWatch, AuditEvent, AuditFilter, AuditRange, Report, ReportRequest,
    ReportStatus, Severity,
};
use super::store;
// Compliance caches nothing, so its units of work invalidate nothing.
use crate::audit::{self, Audited, Begun, Change, Verification};
use crate::auth::{Principal, Role};
use crate::cache::Cache;
use crate::db::{begin_snapshot, classify};
use crate::error::Error;
use crate::idempotency::RequestKey;
use crate::money::RequestId;
use crate::pagination::{Page, PageQuery, PageRequest};
use crate::transport::Polled;
use crate::treasury::reports;

type Result<T> = std::result::Result<T, Error>;

const OVERSEERS: &[Role] = &[Role::Admin, Role::Auditor];

#[derive(Clone)]
pub struct Compliance {
    db: DatabaseConnection,
    /// Transfers above this many micro-AZR by senders without verified KYC
    /// are findings.
    kyc_threshold_micros: i64,
}

impl Compliance {
    pub fn new(db: DatabaseConnection, kyc_threshold_micros: i64) -> Self {
        Self {
            db,
            kyc_threshold_micros,
        }
    }

    /// A caller may read the whole trail as an overseer, else only the
    /// events they caused.
    pub async fn list_audit_events(
        &self,
        caller: &Principal,
        query: PageQuery<AuditFilter>,
    ) -> Result<Page<AuditEvent>> {
        let PageQuery {
            mut filter,
            page_size,
            page_token,
        } = query;
        if !OVERSEERS.contains(&caller.role) {
            match filter.actor {
                Some(actor) if actor != caller.user_id => return Err(Error::PermissionDenied),
                _ => filter.actor = Some(caller.user_id),
            }
        }
        let page = PageRequest::parse(page_size, &page_token, &filter.fingerprint())?;
        let mut events = store::list_audit_events(&self.db, &filter, &page).await?;
        let next_page_token = page.finish(&mut events, |event| event.id);
        store::attach_links(&self.db, &mut events).await?;
        Ok(Page {
            items: events,
            next_page_token,
        })
    }

    pub async fn get_audit_event(&self, caller: &Principal, id: Uuid) -> Result<AuditEvent> {
        let overseer = OVERSEERS.contains(&caller.role);
        let mut event = match store::find_audit_event(&self.db, id).await? {
            Some(event) if overseer || event.actor_user == Some(caller.user_id) => event,
            None if overseer => return Err(Error::not_found("audit event", id)),
            _ => return Err(Error::PermissionDenied),
        };
        store::attach_links(&self.db, std::slice::from_mut(&mut event)).await?;
        Ok(event)
    }

    /// Verifies a range of the chain; a break raises a critical alert.
    pub async fn verify(&self, caller: &Principal, range: AuditRange) -> Result<Verification> {
        caller.require_role(OVERSEERS)?;
        let verification = audit::verify(&self.db, range.from, range.to).await?;
        if let Some(sequence) = verification.first_broken_sequence {
            let message = format!("the audit chain is broken at sequence {sequence}");
            alerts::raise(&self.db, Severity::Critical, "audit", &message).await?;
        }
        Ok(verification)
    }

    /// Runs every check over the period and stores the report; each failed
    /// check raises an alert.
    ///
    /// Every figure comes from one snapshot of the books (a read-only
    /// transaction, [`begin_snapshot`]): read statement by statement under
    /// live traffic, balances and the entries they are compared with could
    /// straddle a commit and report a false critical finding. The report is
    /// stored and its alerts raised afterwards, in a write transaction.
    ///
    /// Safe to retry with a `request_id` (optional, as for every mutating
    /// RPC outside the ledger): the same id (per caller) with the same type
    /// and period returns the original report and stores nothing new; with a
    /// different request it is INVALID_ARGUMENT. A refused request stores
    /// nothing, so its id stays unused.
    pub async fn generate_report(
        &self,
        caller: &Principal,
        mut request: ReportRequest,
    ) -> Result<Report> {
        caller.require_role(OVERSEERS)?;
        // Stored timestamps keep microseconds: compare retries at that
        // precision, or a retry with nanoseconds would look different.
        (request.start, request.end) =
            (request.start.trunc_subsecs(6), request.end.trunc_subsecs(6));
        if !request.kind.fits(request.start, request.end) {
            return Err(Error::invalid(
                "period_end",
                format!("the period does not fit a {} report", request.kind.as_str()),
            ));
        }
        if let Some(original) = self.report_of_request(caller, &request).await? {
            return self.replay(caller, &request, original).await;
        }
        let snapshot = begin_snapshot(&self.db).await?;
        let report = self.compute_report(&snapshot, caller, &request).await?;
        snapshot.commit().await.map_err(classify)?;
        self.store_report(caller, &request, report).await
    }

    /// The report stored earlier under the request's id, if any.
    async fn report_of_request(
        &self,
        caller: &Principal,
        request: &ReportRequest,
    ) -> Result<Option<Report>> {
        match &request.request_id {
            Some(request_id) => {
                store::find_report_by_request(&self.db, caller.user_id, request_id.as_str()).await
            }
            None => Ok(None),
        }
    }

    /// Stores a computed report with an alert per failed check, audited; a
    /// concurrent call with the same request id that stored first wins.
    async fn store_report(
        &self,
        caller: &Principal,
        request: &ReportRequest,
        report: Report,
    ) -> Result<Report> {
        let transaction = Audited::begin(&self.db, &Cache::disabled()).await?;
        if !store::insert_report(&*transaction, &report).await? {
            transaction.rollback().await?;
            if request.request_id.is_none() {
                return Err(Error::internal("a report without a request id conflicted"));
            }
            let original = self
                .report_of_request(caller, request)
                .await?
                .ok_or_else(|| Error::internal("a conflicting report request vanished"))?;
            return self.replay(caller, request, original).await;
        }
        raise_check_alerts(&transaction, &report).await?;
        let mut change =
            Change::new("compliance_report", report.id).new_values(serde_json::json!({
                "status": report.status,
                "report_type": report.kind,
                "period_start": report.period_start,
                "period_end": report.period_end,
            }));
        if let Some(request_id) = &request.request_id {
            change = change.request_id(request_id.as_str());
        }
        transaction.commit(caller, change).await?;
        Ok(report)
    }

    /// A retried report request: the original when it asked for the same
    /// report, INVALID_ARGUMENT otherwise. The retry is audited like any
    /// call, and changes nothing else.
    async fn replay(
        &self,
        caller: &Principal,
        request: &ReportRequest,
        original: Report,
    ) -> Result<Report> {
        let request_id: &RequestId = request
            .request_id
            .as_ref()
            .ok_or_else(|| Error::internal("a report replayed without a request id"))?;
        if original.kind != request.kind
            || original.period_start != request.start
            || original.period_end != request.end
        {
            return Err(Error::invalid(
                "request_id",
                "was already used for a report of another type or period",
            ));
        }
        let transaction = Audited::begin(&self.db, &Cache::disabled()).await?;
        let change = Change::new("compliance_report", original.id)
            .new_values(serde_json::json!({ "replayed": true }))
            .request_id(request_id.as_str());
        transaction.commit(caller, change).await?;
        Ok(original)
    }

    /// Every figure and check of a report, read from `db` (one snapshot).
    async fn compute_report(
        &self,
        db: &DatabaseTransaction,
        caller: &Principal,
        request: &ReportRequest,
    ) -> Result<Report> {
        let (start, end) = (request.start, request.end);
        let totals = reports::period_totals(db, start, end).await?;
        let pending = reports::pending_claims_at(db, end).await?;
        let treasury_balance_micros = checks::reserve_at(db, end).await?;
        let checks = checks::run_all(db, self.kyc_threshold_micros, start, end).await?;
        let recommendations = checks
            .iter()
            .filter(|check| check.failed())
            .map(|check| checks::recommendation(&check.name).to_owned())
            .collect();
        Ok(Report {
            id: Uuid::now_v7(),
            kind: request.kind,
            period_start: start,
            period_end: end,
            status: ReportStatus::of(&checks),
            total_transactions: totals.transactions,
            volume_azr_micros: totals.volume_azr_micros,
            volume_usd_micros: totals.volume_usd_micros,
            treasury_balance_micros,
            checks,
            recommendations,
            generated_by: caller.user_id,
            generated_at: Utc::now().trunc_subsecs(6),
            request_id: request.request_id.as_ref().map(|id| id.as_str().to_owned()),
            pending_claims: pending.count,
            pending_claims_micros: pending.azr_micros,
        })
    }

    pub async fn get_report(&self, caller: &Principal, id: Uuid) -> Result<Report> {
        caller.require_role(OVERSEERS)?;
        store::find_report(&self.db, id)
            .await?
            .ok_or_else(|| Error::not_found("compliance report", id))
    }

    pub async fn list_reports(
        &self,
        caller: &Principal,
        query: PageQuery<()>,
    ) -> Result<Page<Report>> {
        caller.require_role(OVERSEERS)?;
        let page = PageRequest::parse(query.page_size, &query.page_token, "reports")?;
        let mut reports = store::list_reports(&self.db, &page).await?;
        let next_page_token = page.finish(&mut reports, |report| report.id);
        Ok(Page {
            items: reports,
            next_page_token,
        })
    }

    pub async fn list_alerts(
        &self,
        caller: &Principal,
        query: PageQuery<AlertFilter>,
    ) -> Result<Page<Alert>> {
        caller.require_role(OVERSEERS)?;
        let PageQuery {
            filter,
            page_size,
            page_token,
        } = query;
        let page = PageRequest::parse(page_size, &page_token, &filter.fingerprint())?;
        let mut alerts = store::list_alerts(&self.db, filter.unacknowledged_only, &page).await?;
        let next_page_token = page.finish(&mut alerts, |alert| alert.id);
        Ok(Page {
            items: alerts,
            next_page_token,
        })
    }

    /// Acknowledges an alert once; acknowledging it again changes nothing.
    pub async fn acknowledge_alert(
        &self,
        caller: &Principal,
        key: Option<RequestKey>,
        id: Uuid,
    ) -> Result<Alert> {
        caller.require_role(OVERSEERS)?;
        let cache = Cache::disabled();
        let transaction = match Audited::begin_once(&self.db, &cache, caller, key.as_ref()).await? {
            Begun::Fresh(transaction) => transaction,
            Begun::Replay(replay) => {
                let alert = store::find_alert(replay.transaction(), replay.resource_id()?)
                    .await?
                    .ok_or_else(|| Error::internal("a replayed alert is gone"))?;
                replay
                    .answer(caller, "alert", alert.acknowledgement())
                    .await?;
                return Ok(alert);
            }
        };
        let found = |alert: Option<Alert>| alert.ok_or_else(|| Error::not_found("alert", id));
        let before = found(store::find_alert(&*transaction, id).await?)?;
        let now = Utc::now().trunc_subsecs(6);
        store::acknowledge_alert(&*transaction, id, caller.user_id, now).await?;
        let after = found(store::find_alert(&*transaction, id).await?)?;
        let change = Change::new("alert", id)
            .old(before.acknowledgement())
            .new_values(after.acknowledgement());
        transaction.commit(caller, change).await?;
        Ok(after)
    }

    /// Where a WatchAlerts stream starts: after the caller's sequence, or
    /// after the newest alert (only alerts raised from now on). A sequence
    /// beyond the newest alert is OUT_OF_RANGE.
    pub async fn start_watching_alerts(
        &self,
        caller: &Principal,
        watch: AlertWatch,
    ) -> Result<i64> {
        caller.require_role(OVERSEERS)?;
        let newest = store::newest_alert_sequence(&self.db).await?;
        match watch.after {
            None => Ok(newest),
            Some(after) if after > newest => Err(Error::OutOfRange {
                field: "after_sequence",
                message: format!("{after} is beyond the newest alert, {newest}"),
            }),
            Some(after) => Ok(after),
        }
    }

    /// One poll of a WatchAlerts stream: the alerts after `after` and the
    /// cursor past them. Sequences follow commit order, so the cursor never
    /// skips one. Alerts matter most when the database struggles, so a poll
    /// that fails finds nothing and the stream stays open to try again.
    pub async fn poll_alerts(&self, after: i64) -> (i64, Polled<Alert>) {
        match store::alerts_after(&self.db, after).await {
            Ok(alerts) if !alerts.is_empty() => {
                let last = alerts.last().map_or(after, |alert| alert.sequence);
                (last, Polled::Messages(alerts))
            }
            Ok(_) => (after, Polled::Nothing),
            Err(error) => {
                tracing::warn!(%error, "watching alerts: the database did not answer; retrying");
                (after, Polled::Nothing)
            }
        }
    }
}

/// An alert for each failed check of `report`, raised with it.
async fn raise_check_alerts(transaction: &DatabaseTransaction, report: &Report) -> Result<()> {
    for check in report.checks.iter().filter(|check| check.failed()) {
        let message = format!(
            "compliance check {} failed for {} .. {}: {}",
            check.name,
            report.period_start.to_rfc3339(),
            report.period_end.to_rfc3339(),
            check.findings.first().cloned().unwrap_or_default()
        );
        store::raise_alert_in(transaction, check.severity, "compliance", &message).await?;
    }
    Ok(())
}
