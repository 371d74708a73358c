//! Compliance use cases: who may read the trail, how a report is computed,
//! alerts and their acknowledgement.

use chrono::{DateTime, Datelike, Duration, SubsecRound, TimeZone, Utc};
use sea_orm::{DatabaseConnection, DatabaseTransaction};
use uuid::Uuid;

use super::entities::{alert, report};
use super::store::{self, AuditFilter, Severity};
// Compliance caches nothing, so its units of work invalidate nothing.
use crate::audit::entities::audit_event;
use crate::audit::{self, Audited, Begun, Change, Verification};
use crate::auth::{Principal, Role};
use crate::cache::Cache;
use crate::db::{begin_snapshot, classify};
use crate::error::Error;
use crate::idempotency::RequestKey;
use crate::money::{RequestId, format_azr};
use crate::pagination::Page;
use crate::pagination::PageRequest;

type Result<T> = std::result::Result<T, Error>;

const OVERSEERS: &[Role] = &[Role::Admin, Role::Auditor];
/// Findings listed per check at most.
const MAX_FINDINGS: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportType {
    Daily,
    Monthly,
    AdHoc,
}

impl ReportType {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportType::Daily => "daily",
            ReportType::Monthly => "monthly",
            ReportType::AdHoc => "ad_hoc",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [ReportType::Daily, ReportType::Monthly, ReportType::AdHoc]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }

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

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub passed: bool,
    /// `warning` or `critical`: how serious a failure is.
    pub severity: String,
    pub findings: Vec<String>,
}

impl CheckResult {
    fn new(name: &str, severity: Severity, mut findings: Vec<String>) -> Self {
        findings.truncate(MAX_FINDINGS);
        Self {
            name: name.to_owned(),
            passed: findings.is_empty(),
            severity: severity.as_str().to_owned(),
            findings,
        }
    }
}

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

    pub fn database(&self) -> &DatabaseConnection {
        &self.db
    }

    pub async fn list_audit_events(
        &self,
        caller: &Principal,
        mut filter: AuditFilter,
        page_size: i32,
        page_token: &str,
    ) -> Result<Page<audit_event::Model>> {
        if !OVERSEERS.contains(&caller.role) {
            match filter.actor {
                Some(actor) if actor != caller.user_id => return Err(Error::PermissionDenied),
                _ => filter.actor = Some(caller.user_id),
            }
        }
        let page = PageRequest::parse(page_size, page_token, &format!("audit|{filter:?}"))?;
        let mut events = store::list_audit_events(&self.db, &filter, &page).await?;
        let next_page_token = page.finish(&mut events, |event| event.id);
        Ok(Page {
            items: events,
            next_page_token,
        })
    }

    pub async fn get_audit_event(
        &self,
        caller: &Principal,
        id: Uuid,
    ) -> Result<audit_event::Model> {
        let overseer = OVERSEERS.contains(&caller.role);
        match store::find_audit_event(&self.db, id).await? {
            Some(event) if overseer || event.actor_user_id == Some(caller.user_id) => Ok(event),
            None if overseer => Err(Error::not_found("audit event", id)),
            _ => Err(Error::PermissionDenied),
        }
    }

    pub async fn verify(
        &self,
        caller: &Principal,
        from: i64,
        to: Option<i64>,
    ) -> Result<Verification> {
        caller.require_role(OVERSEERS)?;
        let verification = audit::verify(&self.db, from, to).await?;
        if let Some(sequence) = verification.first_broken_sequence {
            let message = format!("the audit chain is broken at sequence {sequence}");
            store::raise_alert(&self.db, Severity::Critical, "audit", &message).await?;
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
        request_id: Option<RequestId>,
        kind: ReportType,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<report::Model> {
        caller.require_role(OVERSEERS)?;
        // Stored timestamps keep microseconds: compare retries at that
        // precision, or a retry with nanoseconds would look different.
        let (start, end) = (start.trunc_subsecs(6), end.trunc_subsecs(6));
        if !kind.fits(start, end) {
            return Err(Error::invalid(
                "period_end",
                format!("the period does not fit a {} report", kind.as_str()),
            ));
        }
        let db = &self.db;
        if let Some(request_id) = &request_id
            && let Some(original) =
                store::find_report_by_request(db, caller.user_id, request_id.as_str()).await?
        {
            return self
                .replay(caller, request_id, original, kind, start, end)
                .await;
        }
        let snapshot = begin_snapshot(db).await?;
        let (row, checks) = self
            .compute_report(&snapshot, caller, request_id.as_ref(), kind, start, end)
            .await?;
        snapshot.commit().await.map_err(classify)?;

        let transaction = Audited::begin(db, &Cache::disabled()).await?;
        if !store::insert_report(&*transaction, row.clone()).await? {
            // A concurrent call with the same request id stored first.
            transaction.rollback().await?;
            let request_id = request_id
                .ok_or_else(|| Error::internal("a report without a request id conflicted"))?;
            let original = store::find_report_by_request(db, caller.user_id, request_id.as_str())
                .await?
                .ok_or_else(|| Error::internal("a conflicting report request vanished"))?;
            return self
                .replay(caller, &request_id, original, kind, start, end)
                .await;
        }
        for check in checks.iter().filter(|check| !check.passed) {
            let severity = Severity::parse(&check.severity).unwrap_or(Severity::Warning);
            let message = format!(
                "compliance check {} failed for {} .. {}: {}",
                check.name,
                start.to_rfc3339(),
                end.to_rfc3339(),
                check.findings.first().cloned().unwrap_or_default()
            );
            store::raise_alert_in(&transaction, severity, "compliance", &message).await?;
        }
        let mut change = Change::new("compliance_report", row.id)
            .new_values(serde_json::json!({ "status": row.status, "report_type": kind.as_str(), "period_start": start, "period_end": end }));
        if let Some(request_id) = &request_id {
            change = change.request_id(request_id.as_str());
        }
        transaction.commit(caller, change).await?;
        Ok(row)
    }

    /// A retried report request: the original when it asked for the same
    /// report, INVALID_ARGUMENT otherwise. The retry is audited like any
    /// call, and changes nothing else.
    async fn replay(
        &self,
        caller: &Principal,
        request_id: &RequestId,
        original: report::Model,
        kind: ReportType,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<report::Model> {
        if original.report_type != kind.as_str()
            || original.period_start != start
            || original.period_end != end
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
        request_id: Option<&RequestId>,
        kind: ReportType,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<(report::Model, Vec<CheckResult>)> {
        let (total_transactions, volume_azr, volume_usd) =
            store::period_totals(db, start, end).await?;
        let (pending_claims, pending_claims_micros) = store::pending_claims_at(db, end).await?;

        let peg =
            store::transactions_where(db, "amount_usd_micros <> amount_azr_micros", start, end)
                .await?;
        let allocation = store::transactions_where(
            db,
            "kind = 'mint' AND (allocation_policy_version IS NULL OR alloc_treasury_micros IS NULL OR alloc_founder_micros IS NULL \
             OR alloc_burn_micros IS NULL OR alloc_circulation_micros IS NULL OR alloc_treasury_micros + alloc_founder_micros \
             + alloc_burn_micros + alloc_circulation_micros <> amount_azr_micros)",
            start,
            end,
        )
        .await?;

        let from_entries = store::balances_from_entries(db, None).await?;
        let on_record = store::balances_on_record(db).await?;
        let mut mismatches = Vec::new();
        for (account, balance) in &on_record {
            let expected = from_entries.get(account).copied().unwrap_or_default();
            if *balance != expected {
                mismatches.push(format!(
                    "{} {}: balance {} AZR, entries say {} AZR",
                    account.0,
                    account.1,
                    format_azr(*balance),
                    format_azr(expected)
                ));
            }
        }
        let total: i64 = on_record.values().sum();
        let system = |code: &str| {
            on_record
                .get(&(code.to_owned(), "available".to_owned()))
                .copied()
                .unwrap_or_default()
        };
        let (minted, burned, bridged) =
            (-system("issuance"), system("burned"), -system("external"));
        let holding: i64 = total - system("issuance") - system("external") - system("burned");
        let mut conservation = Vec::new();
        if total != 0 || minted - burned + bridged != holding {
            conservation.push(format!(
                "minted {} - burned {} + bridged {} = {} AZR, but accounts hold {} AZR (all balances sum to {} AZR, not 0)",
                format_azr(minted),
                format_azr(burned),
                format_azr(bridged),
                format_azr(minted - burned + bridged),
                format_azr(holding),
                format_azr(total)
            ));
        }
        let negatives: Vec<String> = on_record
            .iter()
            .filter(|((account, _), balance)| {
                **balance < 0 && account != "issuance" && account != "external"
            })
            .map(|((account, bucket), balance)| {
                format!("{account} {bucket}: {} AZR", format_azr(*balance))
            })
            .collect();
        let reserve = system("treasury_reserve");
        let wallets: i64 = on_record
            .iter()
            .filter(|((account, _), _)| Uuid::parse_str(account).is_ok())
            .map(|(_, balance)| balance)
            .sum();
        let circulating = wallets + system("circulation_pool");
        let coverage = if reserve < circulating {
            vec![format!(
                "the treasury reserve holds {} AZR, less than the circulating supply of {} AZR",
                format_azr(reserve),
                format_azr(circulating)
            )]
        } else {
            Vec::new()
        };
        let chain = audit::verify(db, 1, None).await?;
        let chain_findings = match chain.first_broken_sequence {
            Some(sequence) => vec![format!("the audit chain is broken at sequence {sequence}")],
            None => Vec::new(),
        };
        let kyc: Vec<String> =
            store::unverified_large_transfers(db, self.kyc_threshold_micros, start, end)
                .await?
                .into_iter()
                .map(|(id, amount, username, kyc)| {
                    format!(
                        "transfer {id} of {} AZR by {username}, whose KYC is {kyc}",
                        format_azr(amount)
                    )
                })
                .collect();
        let settlements: Vec<String> = store::settlements_not_matching_ledger(db)
            .await?
            .into_iter()
            .map(|(what, id)| format!("{what} {id}: its ledger transfer does not match it"))
            .collect();
        let treasury_balance = store::balances_from_entries(db, Some(end))
            .await?
            .get(&("treasury_reserve".to_owned(), "available".to_owned()))
            .copied()
            .unwrap_or_default();

        let checks = vec![
            CheckResult::new(
                "peg",
                Severity::Critical,
                peg.into_iter()
                    .map(|id| format!("transaction {id}: amount_usd differs from amount_azr"))
                    .collect(),
            ),
            CheckResult::new(
                "allocation_sums",
                Severity::Critical,
                allocation
                    .into_iter()
                    .map(|id| format!("mint {id}: allocations do not sum to its amount"))
                    .collect(),
            ),
            CheckResult::new("balances_match_entries", Severity::Critical, mismatches),
            CheckResult::new("supply_conservation", Severity::Critical, conservation),
            CheckResult::new("no_negative_balances", Severity::Critical, negatives),
            CheckResult::new("reserve_coverage", Severity::Warning, coverage),
            CheckResult::new("audit_chain", Severity::Critical, chain_findings),
            CheckResult::new("kyc_large_transfers", Severity::Warning, kyc),
            CheckResult::new("settlements_match_ledger", Severity::Critical, settlements),
        ];
        let failed = |severity: Severity| {
            checks
                .iter()
                .any(|check| !check.passed && check.severity == severity.as_str())
        };
        let status = if failed(Severity::Critical) {
            "non_compliant"
        } else if failed(Severity::Warning) {
            "warning"
        } else {
            "compliant"
        };
        let recommendations: Vec<String> = checks
            .iter()
            .filter(|check| !check.passed)
            .map(|check| recommendation(&check.name).to_owned())
            .collect();
        let row = report::Model {
            id: Uuid::now_v7(),
            report_type: kind.as_str().to_owned(),
            period_start: start,
            period_end: end,
            status: status.to_owned(),
            total_transactions,
            volume_azr_micros: volume_azr,
            volume_usd_micros: volume_usd,
            treasury_balance_micros: treasury_balance,
            checks: serde_json::to_string(&checks).map_err(Error::internal)?,
            recommendations: serde_json::to_string(&recommendations).map_err(Error::internal)?,
            generated_by: caller.user_id,
            generated_at: Utc::now().trunc_subsecs(6),
            request_id: request_id.map(|id| id.as_str().to_owned()),
            pending_claims,
            pending_claims_micros,
        };
        Ok((row, checks))
    }

    pub async fn get_report(&self, caller: &Principal, id: Uuid) -> Result<report::Model> {
        caller.require_role(OVERSEERS)?;
        store::find_report(&self.db, id)
            .await?
            .ok_or_else(|| Error::not_found("compliance report", id))
    }

    pub async fn list_reports(
        &self,
        caller: &Principal,
        page_size: i32,
        page_token: &str,
    ) -> Result<Page<report::Model>> {
        caller.require_role(OVERSEERS)?;
        let page = PageRequest::parse(page_size, page_token, "reports")?;
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
        unacknowledged_only: bool,
        page_size: i32,
        page_token: &str,
    ) -> Result<Page<alert::Model>> {
        caller.require_role(OVERSEERS)?;
        let page = PageRequest::parse(
            page_size,
            page_token,
            &format!("alerts|{unacknowledged_only}"),
        )?;
        let mut alerts = store::list_alerts(&self.db, unacknowledged_only, &page).await?;
        let next_page_token = page.finish(&mut alerts, |alert| alert.id);
        Ok(Page {
            items: alerts,
            next_page_token,
        })
    }

    pub async fn acknowledge_alert(
        &self,
        caller: &Principal,
        key: Option<RequestKey>,
        id: Uuid,
    ) -> Result<alert::Model> {
        caller.require_role(OVERSEERS)?;
        let transaction = match Audited::begin_once(
            &self.db,
            &Cache::disabled(),
            caller,
            key.as_ref(),
        )
        .await?
        {
            Begun::Fresh(transaction) => transaction,
            Begun::Replay(replay) => {
                let alert = store::find_alert(replay.transaction(), replay.resource_id()?)
                    .await?
                    .ok_or_else(|| Error::internal("a replayed alert is gone"))?;
                let acknowledged = serde_json::json!({ "acknowledged_by": alert.acknowledged_by, "acknowledged_at": alert.acknowledged_at });
                replay.answer(caller, "alert", acknowledged).await?;
                return Ok(alert);
            }
        };
        let before = store::find_alert(&*transaction, id)
            .await?
            .ok_or_else(|| Error::not_found("alert", id))?;
        store::acknowledge_alert(
            &*transaction,
            id,
            caller.user_id,
            Utc::now().trunc_subsecs(6),
        )
        .await?;
        let after = store::find_alert(&*transaction, id)
            .await?
            .ok_or_else(|| Error::not_found("alert", id))?;
        let change = Change::new("alert", id)
            .old(serde_json::json!({ "acknowledged_by": before.acknowledged_by, "acknowledged_at": before.acknowledged_at }))
            .new_values(serde_json::json!({ "acknowledged_by": after.acknowledged_by, "acknowledged_at": after.acknowledged_at }));
        transaction.commit(caller, change).await?;
        Ok(after)
    }

    pub fn require_overseer(&self, caller: &Principal) -> Result<()> {
        caller.require_role(OVERSEERS)
    }
}

fn recommendation(check: &str) -> &'static str {
    match check {
        "peg" => {
            "Investigate the transactions whose USD amount differs from their AZR amount; the peg constraint may have been removed."
        }
        "allocation_sums" => {
            "Investigate mints whose allocation does not sum to their amount; restore the allocation constraint."
        }
        "balances_match_entries" => {
            "Freeze writes and reconcile the listed balances against the ledger entries; a balance was changed outside the ledger."
        }
        "supply_conservation" => {
            "Supply does not reconcile: reconcile balances with entries, then review recent direct database changes."
        }
        "no_negative_balances" => {
            "Restore the non-negative balance constraints and reconcile the listed accounts."
        }
        "reserve_coverage" => {
            "Raise the treasury reserve (mint to the reserve or burn circulating supply) until it covers circulating supply."
        }
        "audit_chain" => {
            "Treat the audit trail as tampered with: compare with backups from before the broken sequence and investigate access."
        }
        "kyc_large_transfers" => {
            "Complete KYC for the listed senders or review the transfers with the compliance officer."
        }
        "settlements_match_ledger" => {
            "Freeze payouts and reconcile the listed compensations, rewards or invoices with their ledger transfers; a transfer was changed outside the ledger."
        }
        _ => "Investigate the findings.",
    }
}
