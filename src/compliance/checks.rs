//! The checks of a compliance report, one function per invariant, in the
//! order a report lists them. Each reads what it needs from one snapshot of
//! the books (the Treasury's [`reports`], Identity's [`directory`], the audit
//! chain) and lists what it found; a check with no findings passed.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use sea_orm::DatabaseTransaction;
use uuid::Uuid;

use super::domain::{Check, MAX_FINDINGS, Severity};
use crate::audit;
use crate::error::Error;
use crate::identity::directory::{self, WalletHolder};
use crate::identity::domain::KycStatus;
use crate::mining::domain::HourTotals;
use crate::mining::reports::{self as mining_reports, RollupMismatch};
use crate::money::format_azr;
use crate::treasury::reports::{self, AccountBucket, Balances, WalletTransfer};

type Result<T> = std::result::Result<T, Error>;

/// Transfers read per page while looking for unverified senders.
const TRANSFERS_PER_PAGE: u64 = 500;

/// Every check over `[start, end)`.
pub(super) async fn run_all(
    db: &DatabaseTransaction,
    kyc_threshold_micros: i64,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<Check>> {
    let from_entries = reports::balances_from_entries(db, None).await?;
    let on_record = reports::balances_on_record(db).await?;
    Ok(vec![
        peg(db, start, end).await?,
        allocation_sums(db, start, end).await?,
        balances_match_entries(&on_record, &from_entries),
        supply_conservation(&on_record),
        no_negative_balances(&on_record),
        reserve_coverage(&on_record),
        audit_chain(db).await?,
        kyc_large_transfers(db, kyc_threshold_micros, start, end).await?,
        settlements_match_ledger(db).await?,
        reversals_mirror_originals(db, start, end).await?,
        running_balances_match_entries(db).await?,
        kept_totals_match_ledger(db).await?,
        mining_rollups_match_samples(db, start, end).await?,
    ])
}

/// What a failed check asks the operators to do.
pub(super) fn recommendation(check: &str) -> &'static str {
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
        "reversals_mirror_originals" => {
            "Freeze reversals and reconcile the listed reversals with the transactions they name; an entry was changed outside the ledger."
        }
        "running_balances_match_entries" => {
            "Point-in-time balances of the listed wallets are wrong: reconcile their entries' running balances with the entries; an entry was changed outside the ledger."
        }
        "kept_totals_match_ledger" => {
            "The summary's totals differ from the ledger: recompute ledger_kind_totals and ledger_wallet_totals from the rows, then find the write that bypassed the ledger."
        }
        "mining_rollups_match_samples" => {
            "Mining performance figures are off for the listed hours: rebuild their rollups from the samples and review recent direct database changes."
        }
        _ => "Investigate the findings.",
    }
}

/// The treasury reserve at `end`, from the entries posted before it.
pub(super) async fn reserve_at(db: &DatabaseTransaction, end: DateTime<Utc>) -> Result<i64> {
    Ok(reports::balances_from_entries(db, Some(end))
        .await?
        .get(&AccountBucket::system("treasury_reserve"))
        .copied()
        .unwrap_or_default())
}

fn system(balances: &Balances, code: &str) -> i64 {
    balances
        .get(&AccountBucket::system(code))
        .copied()
        .unwrap_or_default()
}

/// Every transaction moves as many USD as AZR.
async fn peg(db: &DatabaseTransaction, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Check> {
    let findings = reports::transactions_off_peg(db, start, end)
        .await?
        .into_iter()
        .map(|id| format!("transaction {id}: amount_usd differs from amount_azr"))
        .collect();
    Ok(Check::new("peg", Severity::Critical, findings))
}

/// Every mint's allocation sums to its amount.
async fn allocation_sums(
    db: &DatabaseTransaction,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Check> {
    let findings = reports::mints_with_bad_allocation(db, start, end)
        .await?
        .into_iter()
        .map(|id| format!("mint {id}: allocations do not sum to its amount"))
        .collect();
    Ok(Check::new("allocation_sums", Severity::Critical, findings))
}

/// Every balance column equals what the entries say.
fn balances_match_entries(on_record: &Balances, from_entries: &Balances) -> Check {
    let findings = on_record
        .iter()
        .filter_map(|(account, balance)| {
            let expected = from_entries.get(account).copied().unwrap_or_default();
            (*balance != expected).then(|| {
                format!(
                    "{} {}: balance {} AZR, entries say {} AZR",
                    account.account,
                    account.bucket,
                    format_azr(*balance),
                    format_azr(expected)
                )
            })
        })
        .collect();
    Check::new("balances_match_entries", Severity::Critical, findings)
}

/// minted - burned + bridged = what the holding accounts hold, and all
/// balances (the issuance, external and burned accounts included) sum to 0.
fn supply_conservation(on_record: &Balances) -> Check {
    let total: i64 = on_record.values().sum();
    let (minted, burned, bridged) = (
        -system(on_record, "issuance"),
        system(on_record, "burned"),
        -system(on_record, "external"),
    );
    let holding = total
        - system(on_record, "issuance")
        - system(on_record, "external")
        - system(on_record, "burned");
    let mut findings = Vec::new();
    if total != 0 || minted - burned + bridged != holding {
        findings.push(format!(
            "minted {} - burned {} + bridged {} = {} AZR, but accounts hold {} AZR (all balances sum to {} AZR, not 0)",
            format_azr(minted),
            format_azr(burned),
            format_azr(bridged),
            format_azr(minted - burned + bridged),
            format_azr(holding),
            format_azr(total)
        ));
    }
    Check::new("supply_conservation", Severity::Critical, findings)
}

/// No account but the issuance and external counterparts is below zero.
fn no_negative_balances(on_record: &Balances) -> Check {
    let findings = on_record
        .iter()
        .filter(|(account, balance)| {
            **balance < 0 && account.account != "issuance" && account.account != "external"
        })
        .map(|(account, balance)| {
            format!(
                "{} {}: {} AZR",
                account.account,
                account.bucket,
                format_azr(*balance)
            )
        })
        .collect();
    Check::new("no_negative_balances", Severity::Critical, findings)
}

/// The treasury reserve covers the circulating supply (wallets and the
/// circulation pool).
fn reserve_coverage(on_record: &Balances) -> Check {
    let reserve = system(on_record, "treasury_reserve");
    let wallets: i64 = on_record
        .iter()
        .filter(|(account, _)| account.is_wallet())
        .map(|(_, balance)| balance)
        .sum();
    let circulating = wallets + system(on_record, "circulation_pool");
    let mut findings = Vec::new();
    if reserve < circulating {
        findings.push(format!(
            "the treasury reserve holds {} AZR, less than the circulating supply of {} AZR",
            format_azr(reserve),
            format_azr(circulating)
        ));
    }
    Check::new("reserve_coverage", Severity::Warning, findings)
}

/// The audit chain verifies from its start to its head.
async fn audit_chain(db: &DatabaseTransaction) -> Result<Check> {
    let chain = audit::verify(db, 1, None).await?;
    let findings = chain
        .first_broken_sequence
        .map(|sequence| format!("the audit chain is broken at sequence {sequence}"))
        .into_iter()
        .collect();
    Ok(Check::new("audit_chain", Severity::Critical, findings))
}

/// No confirmed transfer above the threshold in the period was sent by a
/// user whose KYC is not verified. The Treasury lists the transfers (in id
/// order, page by page) and Identity says who sent them, until enough
/// findings are listed.
async fn kyc_large_transfers(
    db: &DatabaseTransaction,
    threshold_micros: i64,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Check> {
    let mut findings = Vec::new();
    let mut after = None;
    while findings.len() < MAX_FINDINGS {
        let transfers = reports::wallet_transfers_above(
            db,
            threshold_micros,
            start,
            end,
            after,
            TRANSFERS_PER_PAGE,
        )
        .await?;
        let Some(last) = transfers.last() else { break };
        after = Some(last.id);
        findings.extend(unverified_senders(db, &transfers).await?);
        if (transfers.len() as u64) < TRANSFERS_PER_PAGE {
            break;
        }
    }
    Ok(Check::new(
        "kyc_large_transfers",
        Severity::Warning,
        findings,
    ))
}

/// The findings among `transfers` whose sender's KYC is not verified.
async fn unverified_senders(
    db: &DatabaseTransaction,
    transfers: &[WalletTransfer],
) -> Result<Vec<String>> {
    let wallets: Vec<Uuid> = transfers
        .iter()
        .map(|transfer| transfer.from_wallet)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let holders: HashMap<Uuid, WalletHolder> = directory::wallet_holders(db, &wallets)
        .await?
        .into_iter()
        .map(|holder| (holder.wallet, holder))
        .collect();
    Ok(transfers
        .iter()
        .filter_map(|transfer| {
            let holder = holders
                .get(&transfer.from_wallet)
                .filter(|holder| holder.kyc_status != KycStatus::Verified)?;
            Some(format!(
                "transfer {} of {} AZR by {}, whose KYC is {}",
                transfer.id,
                format_azr(transfer.amount_micros),
                holder.username,
                holder.kyc_status.as_str()
            ))
        })
        .collect())
}

/// Every paid compensation, knowledge reward and paid invoice matches the
/// ledger transfer that settled it.
async fn settlements_match_ledger(db: &DatabaseTransaction) -> Result<Check> {
    let findings = reports::settlements_not_matching_ledger(db)
        .await?
        .into_iter()
        .map(|unmatched| {
            format!(
                "{} {}: its ledger transfer does not match it",
                unmatched.kind, unmatched.id
            )
        })
        .collect();
    Ok(Check::new(
        "settlements_match_ledger",
        Severity::Critical,
        findings,
    ))
}

/// Every reversal in the period posts exactly its original's entries
/// negated, of a confirmed transaction that is not itself a reversal, for
/// the same amount. (The balance checks see a reversed mint as unminted:
/// the entries return its shares to issuance, so supply, peg and coverage
/// hold as if the mint had not been.)
async fn reversals_mirror_originals(
    db: &DatabaseTransaction,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Check> {
    let findings = reports::reversals_not_mirroring(db, start, end)
        .await?
        .into_iter()
        .map(|id| format!("reversal {id}: does not post its original's entries negated"))
        .collect();
    Ok(Check::new(
        "reversals_mirror_originals",
        Severity::Critical,
        findings,
    ))
}

/// Every entry's running balances are the running sum of its wallet's
/// postings: what a balance as of a time reads.
async fn running_balances_match_entries(db: &DatabaseTransaction) -> Result<Check> {
    let findings = reports::running_balances_not_matching(db)
        .await?
        .into_iter()
        .map(|id| format!("wallet {id}: an entry's running balance is not the sum of its entries"))
        .collect();
    Ok(Check::new(
        "running_balances_match_entries",
        Severity::Critical,
        findings,
    ))
}

/// Every hourly rollup of mining samples that overlaps the period equals
/// its hour's samples, recomputed from scratch, and the running totals of
/// every session sampled in the period equal the sums of its rollups (both
/// answer performance figures). A warning, not critical: no money moves by
/// them; a session's earnings are minted from its samples' stream.
async fn mining_rollups_match_samples(
    db: &DatabaseTransaction,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Check> {
    let mut findings: Vec<String> = mining_reports::rollups_not_matching_samples(db, start, end)
        .await?
        .iter()
        .map(rollup_finding)
        .collect();
    findings.extend(
        mining_reports::session_totals_not_matching_rollups(db, start, end)
            .await?
            .iter()
            .map(|mismatch| {
                format!(
                    "mining session {}: its running totals say {}, its rollups add up to {}",
                    mismatch.session,
                    describe_totals(Some(mismatch.totals)),
                    describe_totals(Some(mismatch.rollups))
                )
            }),
    );
    Ok(Check::new(
        "mining_rollups_match_samples",
        Severity::Warning,
        findings,
    ))
}

/// The totals the batches keep for the summary, recomputed from scratch.
async fn kept_totals_match_ledger(db: &DatabaseTransaction) -> Result<Check> {
    let findings = reports::kept_totals_not_matching(db).await?;
    Ok(Check::new(
        "kept_totals_match_ledger",
        Severity::Critical,
        findings,
    ))
}

fn describe_totals(totals: Option<HourTotals>) -> String {
    match totals {
        Some(totals) => format!(
            "{} samples, {} accepted and {} rejected shares, {} USD earned, hashrate sum {}, power sum {}",
            totals.samples,
            totals.shares_accepted,
            totals.shares_rejected,
            format_azr(totals.earnings_micros),
            totals.hashrate_sum,
            totals.power_sum
        ),
        None => "nothing".to_owned(),
    }
}

fn rollup_finding(mismatch: &RollupMismatch) -> String {
    format!(
        "mining session {} in the hour from {}: the rollup holds {}, its samples add up to {}",
        mismatch.session,
        mismatch.hour_start.to_rfc3339(),
        describe_totals(mismatch.stored),
        describe_totals(mismatch.recomputed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn books(balances: &[(&str, &str, i64)]) -> Balances {
        balances
            .iter()
            .map(|(account, bucket, micros)| (AccountBucket::new(*account, *bucket), *micros))
            .collect()
    }

    const WALLET: &str = "0190a1b2-0000-7000-8000-000000000001";

    #[test]
    fn balanced_books_pass_every_balance_check() {
        let on_record = books(&[
            ("issuance", "available", -100),
            ("treasury_reserve", "available", 60),
            (WALLET, "available", 40),
        ]);
        for check in [
            balances_match_entries(&on_record, &on_record),
            supply_conservation(&on_record),
            no_negative_balances(&on_record),
            reserve_coverage(&on_record),
        ] {
            assert!(check.passed, "{check:?}");
        }
    }

    #[test]
    fn a_balance_changed_outside_the_ledger_fails_the_entries_and_supply_checks() {
        let from_entries = books(&[("issuance", "available", -100), (WALLET, "available", 100)]);
        let on_record = books(&[("issuance", "available", -100), (WALLET, "available", 150)]);
        let mismatch = balances_match_entries(&on_record, &from_entries);
        assert_eq!(
            mismatch.findings,
            [format!(
                "{WALLET} available: balance 0.000150 AZR, entries say 0.000100 AZR"
            )]
        );
        assert!(!supply_conservation(&on_record).passed);
    }

    #[test]
    fn negative_holding_accounts_are_findings_but_the_counterparts_are_not() {
        let on_record = books(&[
            ("issuance", "available", -10),
            ("external", "available", -5),
            (WALLET, "pending", -1),
        ]);
        let check = no_negative_balances(&on_record);
        assert_eq!(check.findings.len(), 1, "{check:?}");
        assert!(check.findings[0].starts_with(WALLET));
        assert_eq!(check.severity, Severity::Critical);
    }

    #[test]
    fn a_reserve_below_the_circulating_supply_is_a_warning() {
        let on_record = books(&[
            ("treasury_reserve", "available", 10),
            ("circulation_pool", "available", 5),
            (WALLET, "available", 6),
        ]);
        let check = reserve_coverage(&on_record);
        assert!(!check.passed);
        assert_eq!(check.severity, Severity::Warning);
    }
}
