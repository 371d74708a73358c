//! TreasuryService over gRPC: parse, call one operation, convert back.

use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::domain::{
    Account, Balance, BalanceQuery, BatchMode, Bucket, BurnSource, Command, ItemResult, LedgerCall,
    MAX_BATCH_TRANSFERS, MAX_PAYMENTS, Note, Posted, Summary, SystemAccount, Transaction,
    TransactionFilter, TransactionKind, TransactionStatus, TransferBatch,
};
use super::operations::Treasury;
use crate::address::Address;
use crate::auth::principal;
use crate::error::{Error, FieldViolation};
use crate::pagination::PageQuery;
use crate::proto::treasury::{self as pb, treasury_service_server::TreasuryService};
use crate::transport::{
    Violations, amount, azr_decimal as decimal, json_object, optional, optional_time, parse_id,
    reason, required_request_id, struct_from_json, timestamp,
};

pub struct TreasuryApi {
    treasury: Treasury,
}

impl TreasuryApi {
    pub fn new(treasury: Treasury) -> Self {
        Self { treasury }
    }
}

fn note(
    v: &mut Violations,
    reason_text: String,
    metadata: Option<prost_types::Struct>,
) -> Option<Note> {
    let reason_text = v.check(reason("reason", reason_text));
    let metadata = v.check(json_object("metadata", metadata));
    Some(Note {
        reason: reason_text?,
        metadata: metadata?,
    })
}

fn system_account_from(field: &str, value: i32) -> Result<Option<SystemAccount>, FieldViolation> {
    match pb::SystemAccount::try_from(value) {
        Ok(pb::SystemAccount::Unspecified) => Ok(None),
        Ok(pb::SystemAccount::TreasuryReserve) => Ok(Some(SystemAccount::TreasuryReserve)),
        Ok(pb::SystemAccount::FounderPool) => Ok(Some(SystemAccount::FounderPool)),
        Ok(pb::SystemAccount::CirculationPool) => Ok(Some(SystemAccount::CirculationPool)),
        Err(_) => Err(FieldViolation::new(field, "is not a known system account")),
    }
}

fn system_account_to(value: SystemAccount) -> pb::SystemAccount {
    match value {
        SystemAccount::TreasuryReserve => pb::SystemAccount::TreasuryReserve,
        SystemAccount::FounderPool => pb::SystemAccount::FounderPool,
        SystemAccount::CirculationPool => pb::SystemAccount::CirculationPool,
        // Never the source of a transaction; not part of the contract.
        SystemAccount::Issuance | SystemAccount::External | SystemAccount::Burned => {
            pb::SystemAccount::Unspecified
        }
    }
}

fn transaction_to_proto(transaction: Transaction) -> pb::Transaction {
    let Transaction {
        id,
        kind,
        status,
        tx_hash,
        amount_micros,
        allocation,
        from_wallet,
        to_wallet,
        from_system,
        to_system,
        destination_address,
        gas_used,
        gas_price_wei,
        reason,
        metadata,
        request_id,
        requested_by,
        created_at,
        confirmed_at,
        processed_at,
        mining_session,
        backing_reference,
        reverses,
        reversed_by,
    } = transaction;
    pb::Transaction {
        id: id.to_string(),
        r#type: kind.to_wire(),
        status: status.to_wire(),
        tx_hash,
        amount_azr: decimal(amount_micros),
        amount_usd: decimal(amount_micros),
        allocation: allocation.map(|allocation| pb::Allocation {
            policy_version: allocation.policy_version as u32,
            treasury: decimal(allocation.treasury),
            founder: decimal(allocation.founder),
            burn: decimal(allocation.burn),
            circulation: decimal(allocation.circulation),
        }),
        from_wallet_id: from_wallet.map(|id| id.to_string()).unwrap_or_default(),
        to_wallet_id: to_wallet.map(|id| id.to_string()).unwrap_or_default(),
        from_system_account: from_system.map_or(pb::SystemAccount::Unspecified, system_account_to)
            as i32,
        to_system_account: to_system.map_or(pb::SystemAccount::Unspecified, system_account_to)
            as i32,
        destination_address: destination_address
            .as_deref()
            .map(crate::address::display_address)
            .unwrap_or_default(),
        gas_used: gas_used.unwrap_or_default(),
        gas_price_wei: gas_price_wei.map(|wei| wei.to_string()).unwrap_or_default(),
        reason,
        metadata: Some(struct_from_json(metadata)),
        request_id,
        requested_by: requested_by.to_string(),
        create_time: Some(timestamp(created_at)),
        confirm_time: confirmed_at.map(timestamp),
        process_time: processed_at.map(timestamp),
        mining_session_id: mining_session.map(|id| id.to_string()).unwrap_or_default(),
        backing_reference: backing_reference.unwrap_or_default(),
        reverses_transaction_id: reverses.map(|id| id.to_string()).unwrap_or_default(),
        reversed_by_transaction_id: reversed_by.map(|id| id.to_string()).unwrap_or_default(),
        legs: Vec::new(),
    }
}

/// A transaction with its legs: each entry as the debit of its source and
/// the credit of its destination.
fn posted_to_proto((transaction, legs): Posted) -> pb::Transaction {
    let posting = |(account, bucket): (Account, Bucket), micros: i64| {
        let (wallet_id, system_account) = match account {
            Account::Wallet(id) => (id.to_string(), String::new()),
            Account::System(system) => (String::new(), system.as_str().to_owned()),
        };
        pb::Posting {
            wallet_id,
            system_account,
            bucket: match bucket {
                Bucket::Available => pb::Bucket::Available,
                Bucket::Pending => pb::Bucket::Pending,
                Bucket::Staked => pb::Bucket::Staked,
            } as i32,
            amount: decimal(micros),
        }
    };
    pb::Transaction {
        legs: legs
            .into_iter()
            .flat_map(|leg| [posting(leg.from, -leg.micros), posting(leg.to, leg.micros)])
            .collect(),
        ..transaction_to_proto(transaction)
    }
}

fn balance_to_proto(
    wallet: Uuid,
    balance: Balance,
    at: chrono::DateTime<chrono::Utc>,
) -> pb::GetBalanceResponse {
    let Balance {
        available,
        pending,
        staked,
    } = balance;
    pb::GetBalanceResponse {
        wallet_id: wallet.to_string(),
        available: decimal(available),
        pending: decimal(pending),
        staked: decimal(staked),
        total: decimal(available + pending + staked),
        as_of_time: Some(timestamp(at)),
    }
}

fn summary_to_proto(summary: Summary) -> pb::GetTreasurySummaryResponse {
    let Summary {
        system,
        held_in_wallets,
        staked_in_wallets,
        by_kind,
        policy_version,
    } = summary;
    let balance = |account: SystemAccount| system.get(&account).copied().unwrap_or_default();
    let minted = -balance(SystemAccount::Issuance);
    let burned = balance(SystemAccount::Burned);
    let net_bridged = -balance(SystemAccount::External);
    let circulation_pool = balance(SystemAccount::CirculationPool);
    pb::GetTreasurySummaryResponse {
        total_minted: decimal(minted),
        total_burned: decimal(burned),
        net_bridged: decimal(net_bridged),
        total_supply: decimal(minted - burned + net_bridged),
        treasury_reserve: decimal(balance(SystemAccount::TreasuryReserve)),
        founder_pool: decimal(balance(SystemAccount::FounderPool)),
        circulation_pool: decimal(circulation_pool),
        held_in_wallets: decimal(held_in_wallets),
        circulating_supply: decimal(held_in_wallets + circulation_pool),
        by_type: by_kind
            .into_iter()
            .map(|(kind, totals)| pb::TypeSummary {
                r#type: kind.to_wire(),
                confirmed_count: totals.confirmed_count,
                confirmed_volume: decimal(totals.confirmed_micros),
                pending_count: totals.pending_count,
                pending_volume: decimal(totals.pending_micros),
                failed_count: totals.failed_count,
            })
            .collect(),
        allocation_policy_version: policy_version as u32,
        total_staked: decimal(staked_in_wallets),
    }
}

/// A chain transaction hash: `0x` and 64 hex digits, stored lowercase.
fn chain_hash(field: &str, text: &str) -> Result<String, FieldViolation> {
    let hex = text.strip_prefix("0x").unwrap_or_default();
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(FieldViolation::new(
            field,
            "must be 0x followed by 64 hexadecimal digits",
        ))
    }
}

fn gas_price(field: &str, text: &str) -> Result<i64, FieldViolation> {
    if text.is_empty() {
        return Ok(0);
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FieldViolation::new(
            field,
            "must be a non-negative whole number of wei",
        ));
    }
    text.parse()
        .map_err(|_| FieldViolation::new(field, format!("must be at most {}", i64::MAX)))
}

impl TryFrom<pb::MintRequest> for LedgerCall {
    type Error = Error;

    fn try_from(request: pb::MintRequest) -> Result<Self, Error> {
        let pb::MintRequest {
            request_id,
            amount: value,
            to_wallet_id,
            reason,
            metadata,
        } = request;
        let mut v = Violations::default();
        let id = required_request_id(&mut v, &request_id);
        let value = v.check(amount("amount", value.as_ref()));
        let to_wallet = v.check(optional(&to_wallet_id, |text| {
            parse_id("to_wallet_id", text)
        }));
        let note = note(&mut v, reason, metadata);
        let (request_id, command) = v.finish(|| {
            Some((
                id?,
                Command::Mint {
                    amount: value?,
                    to_wallet: to_wallet?,
                    note: note?,
                    mining_session: None,
                    pending: false,
                    backing_reference: None,
                },
            ))
        })?;
        Ok(LedgerCall {
            request_id,
            command,
        })
    }
}

impl TryFrom<pb::BurnRequest> for LedgerCall {
    type Error = Error;

    fn try_from(request: pb::BurnRequest) -> Result<Self, Error> {
        let pb::BurnRequest {
            request_id,
            amount: value,
            from_wallet_id,
            from_system_account,
            reason,
            metadata,
        } = request;
        let mut v = Violations::default();
        let id = required_request_id(&mut v, &request_id);
        let value = v.check(amount("amount", value.as_ref()));
        let wallet = v.check(optional(&from_wallet_id, |text| {
            parse_id("from_wallet_id", text)
        }));
        let system = v.check(system_account_from(
            "from_system_account",
            from_system_account,
        ));
        let source = match (wallet.flatten(), system.flatten()) {
            (Some(wallet), None) => Some(BurnSource::Wallet(wallet)),
            (None, Some(system)) => Some(BurnSource::System(system)),
            _ => {
                v.0.push(FieldViolation::new(
                    "from_wallet_id",
                    "exactly one of from_wallet_id and from_system_account is required",
                ));
                None
            }
        };
        let note = note(&mut v, reason, metadata);
        let (request_id, command) = v.finish(|| {
            Some((
                id?,
                Command::Burn {
                    amount: value?,
                    source: source?,
                    note: note?,
                },
            ))
        })?;
        Ok(LedgerCall {
            request_id,
            command,
        })
    }
}

impl TryFrom<pb::TransferRequest> for LedgerCall {
    type Error = Error;

    fn try_from(request: pb::TransferRequest) -> Result<Self, Error> {
        let pb::TransferRequest {
            request_id,
            from_wallet_id,
            to_wallet_id,
            amount: value,
            reason,
            metadata,
        } = request;
        let mut v = Violations::default();
        let id = required_request_id(&mut v, &request_id);
        let from = v.check(parse_id("from_wallet_id", &from_wallet_id));
        let to = v.check(parse_id("to_wallet_id", &to_wallet_id));
        if from.is_some() && from == to {
            v.0.push(FieldViolation::new(
                "to_wallet_id",
                "must differ from from_wallet_id",
            ));
        }
        let value = v.check(amount("amount", value.as_ref()));
        let note = note(&mut v, reason, metadata);
        let (request_id, command) = v.finish(|| {
            Some((
                id?,
                Command::Transfer {
                    from_wallet: from?,
                    to_wallet: to?,
                    amount: value?,
                    note: note?,
                },
            ))
        })?;
        Ok(LedgerCall {
            request_id,
            command,
        })
    }
}

impl TryFrom<pb::DepositRequest> for LedgerCall {
    type Error = Error;

    fn try_from(request: pb::DepositRequest) -> Result<Self, Error> {
        let pb::DepositRequest {
            request_id,
            to_wallet_id,
            amount: value,
            tx_hash,
            pending,
            reason,
            metadata,
        } = request;
        let mut v = Violations::default();
        let id = required_request_id(&mut v, &request_id);
        let to = v.check(parse_id("to_wallet_id", &to_wallet_id));
        let value = v.check(amount("amount", value.as_ref()));
        let hash = v.check(optional(&tx_hash, |text| chain_hash("tx_hash", text)));
        let note = note(&mut v, reason, metadata);
        let (request_id, command) = v.finish(|| {
            Some((
                id?,
                Command::Deposit {
                    to_wallet: to?,
                    amount: value?,
                    tx_hash: hash?,
                    pending,
                    note: note?,
                },
            ))
        })?;
        Ok(LedgerCall {
            request_id,
            command,
        })
    }
}

impl TryFrom<pb::WithdrawRequest> for LedgerCall {
    type Error = Error;

    fn try_from(request: pb::WithdrawRequest) -> Result<Self, Error> {
        let pb::WithdrawRequest {
            request_id,
            from_wallet_id,
            amount: value,
            destination_address,
            reason,
            metadata,
        } = request;
        let mut v = Violations::default();
        let id = required_request_id(&mut v, &request_id);
        let from = v.check(parse_id("from_wallet_id", &from_wallet_id));
        let value = v.check(amount("amount", value.as_ref()));
        let destination = v.check(Address::parse("destination_address", &destination_address));
        let note = note(&mut v, reason, metadata);
        let (request_id, command) = v.finish(|| {
            Some((
                id?,
                Command::Withdraw {
                    from_wallet: from?,
                    amount: value?,
                    destination_address: destination?.as_str().to_owned(),
                    note: note?,
                },
            ))
        })?;
        Ok(LedgerCall {
            request_id,
            command,
        })
    }
}

impl TryFrom<pb::ConfirmTransactionRequest> for LedgerCall {
    type Error = Error;

    fn try_from(request: pb::ConfirmTransactionRequest) -> Result<Self, Error> {
        let pb::ConfirmTransactionRequest {
            request_id,
            transaction_id,
            gas_used,
            gas_price_wei,
            confirm_time,
            backing_reference,
        } = request;
        let mut v = Violations::default();
        let id = required_request_id(&mut v, &request_id);
        let transaction = v.check(parse_id("transaction_id", &transaction_id));
        if gas_used < 0 {
            v.0.push(FieldViolation::new("gas_used", "must not be negative"));
        }
        let price = v.check(gas_price("gas_price_wei", &gas_price_wei));
        let confirmed_at = v.check(optional_time("confirm_time", confirm_time.as_ref()));
        if confirmed_at
            .flatten()
            .is_some_and(|at| at > chrono::Utc::now())
        {
            v.0.push(FieldViolation::new(
                "confirm_time",
                "must not be in the future",
            ));
        }
        let backing_reference = v.check(optional(&backing_reference, |text| {
            crate::treasury::domain::backing_reference("backing_reference", text)
        }));
        let (request_id, command) = v.finish(|| {
            Some((
                id?,
                Command::Confirm {
                    transaction_id: transaction?,
                    gas_used,
                    gas_price_wei: price?,
                    confirmed_at: confirmed_at?,
                    backing_reference: backing_reference?,
                },
            ))
        })?;
        Ok(LedgerCall {
            request_id,
            command,
        })
    }
}

impl TryFrom<pb::FailTransactionRequest> for LedgerCall {
    type Error = Error;

    fn try_from(request: pb::FailTransactionRequest) -> Result<Self, Error> {
        let pb::FailTransactionRequest {
            request_id,
            transaction_id,
            reason: why,
        } = request;
        let mut v = Violations::default();
        let id = required_request_id(&mut v, &request_id);
        let transaction = v.check(parse_id("transaction_id", &transaction_id));
        if why.trim().is_empty() {
            v.0.push(FieldViolation::new("reason", "is required"));
        }
        let why = v.check(reason("reason", why));
        let (request_id, command) = v.finish(|| {
            Some((
                id?,
                Command::Fail {
                    transaction_id: transaction?,
                    reason: why?,
                },
            ))
        })?;
        Ok(LedgerCall {
            request_id,
            command,
        })
    }
}

impl TryFrom<pb::ReverseTransactionRequest> for LedgerCall {
    type Error = Error;

    fn try_from(request: pb::ReverseTransactionRequest) -> Result<Self, Error> {
        let pb::ReverseTransactionRequest {
            request_id,
            transaction_id,
            reason,
            metadata,
        } = request;
        let mut v = Violations::default();
        let id = required_request_id(&mut v, &request_id);
        let transaction = v.check(parse_id("transaction_id", &transaction_id));
        let note = note(&mut v, reason, metadata);
        let (request_id, command) = v.finish(|| {
            Some((
                id?,
                Command::Reverse {
                    transaction_id: transaction?,
                    note: note?,
                },
            ))
        })?;
        Ok(LedgerCall {
            request_id,
            command,
        })
    }
}

/// The fields Stake and Unstake share: (request id, wallet, amount, note).
fn staking_call(
    request_id: &str,
    wallet_id: &str,
    value: Option<&crate::proto::types::Decimal>,
    reason: String,
    metadata: Option<prost_types::Struct>,
) -> Result<(crate::money::RequestId, Uuid, crate::money::Amount, Note), Error> {
    let mut v = Violations::default();
    let id = required_request_id(&mut v, request_id);
    let wallet = v.check(parse_id("wallet_id", wallet_id));
    let value = v.check(amount("amount", value));
    let note = note(&mut v, reason, metadata);
    v.finish(|| Some((id?, wallet?, value?, note?)))
}

impl TryFrom<pb::StakeRequest> for LedgerCall {
    type Error = Error;

    fn try_from(request: pb::StakeRequest) -> Result<Self, Error> {
        let pb::StakeRequest {
            request_id,
            wallet_id,
            amount: value,
            reason,
            metadata,
        } = request;
        let (request_id, wallet, amount, note) =
            staking_call(&request_id, &wallet_id, value.as_ref(), reason, metadata)?;
        Ok(LedgerCall {
            request_id,
            command: Command::Stake {
                wallet,
                amount,
                note,
            },
        })
    }
}

impl TryFrom<pb::UnstakeRequest> for LedgerCall {
    type Error = Error;

    fn try_from(request: pb::UnstakeRequest) -> Result<Self, Error> {
        let pb::UnstakeRequest {
            request_id,
            wallet_id,
            amount: value,
            reason,
            metadata,
        } = request;
        let (request_id, wallet, amount, note) =
            staking_call(&request_id, &wallet_id, value.as_ref(), reason, metadata)?;
        Ok(LedgerCall {
            request_id,
            command: Command::Unstake {
                wallet,
                amount,
                note,
            },
        })
    }
}

/// Metadata pairs a listing must match: at most this many.
const MAX_METADATA_PAIRS: usize = 10;
const MAX_METADATA_KEY_CHARS: usize = 128;
const MAX_METADATA_VALUE_CHARS: usize = 512;

/// The metadata filter of ListTransactions: at most 10 pairs, keys 1 to 128
/// characters, values at most 512, no NUL (PostgreSQL cannot hold one, so
/// it could never match there).
fn metadata_filter(
    field: &str,
    pairs: std::collections::HashMap<String, String>,
) -> Result<std::collections::BTreeMap<String, String>, FieldViolation> {
    if pairs.len() > MAX_METADATA_PAIRS {
        return Err(FieldViolation::new(
            field,
            format!("must have at most {MAX_METADATA_PAIRS} pairs"),
        ));
    }
    for (key, value) in &pairs {
        if key.is_empty() || key.chars().count() > MAX_METADATA_KEY_CHARS {
            return Err(FieldViolation::new(
                field,
                format!("keys must be 1 to {MAX_METADATA_KEY_CHARS} characters"),
            ));
        }
        if value.chars().count() > MAX_METADATA_VALUE_CHARS {
            return Err(FieldViolation::new(
                field,
                format!("values must be at most {MAX_METADATA_VALUE_CHARS} characters"),
            ));
        }
        if key.contains('\0') || value.contains('\0') {
            return Err(FieldViolation::new(field, "must not contain NUL (U+0000)"));
        }
    }
    Ok(pairs.into_iter().collect())
}

impl TryFrom<pb::ListTransactionsRequest> for PageQuery<TransactionFilter> {
    type Error = Error;

    fn try_from(request: pb::ListTransactionsRequest) -> Result<Self, Error> {
        let pb::ListTransactionsRequest {
            page_size,
            page_token,
            wallet_id,
            r#type,
            status,
            start_time,
            end_time,
            metadata,
        } = request;
        let mut v = Violations::default();
        let wallet = v.check(optional(&wallet_id, |text| parse_id("wallet_id", text)));
        let kind = v.check(TransactionKind::from_wire("type", r#type));
        let status = v.check(TransactionStatus::from_wire("status", status));
        let start = v.check(optional_time("start_time", start_time.as_ref()));
        let end = v.check(optional_time("end_time", end_time.as_ref()));
        let metadata = v.check(metadata_filter("metadata", metadata));
        if let (Some(Some(start)), Some(Some(end))) = (start, end)
            && start >= end
        {
            v.0.push(FieldViolation::new("end_time", "must be after start_time"));
        }
        let filter = v.finish(|| {
            Some(TransactionFilter {
                wallet: wallet?,
                kind: kind?,
                status: status?,
                start: start?,
                end: end?,
                owner: None,
                metadata: metadata?,
            })
        })?;
        Ok(PageQuery {
            filter,
            page_size,
            page_token,
        })
    }
}

impl TryFrom<pb::GetBalanceRequest> for BalanceQuery {
    type Error = Error;

    fn try_from(request: pb::GetBalanceRequest) -> Result<Self, Error> {
        let mut v = Violations::default();
        let wallet = v.check(parse_id("wallet_id", &request.wallet_id));
        let as_of = v.check(optional_time("as_of_time", request.as_of_time.as_ref()));
        v.finish(|| {
            Some(BalanceQuery {
                wallet: wallet?,
                as_of: as_of?,
            })
        })
    }
}

impl TryFrom<pb::MultiTransferRequest> for LedgerCall {
    type Error = Error;

    fn try_from(request: pb::MultiTransferRequest) -> Result<Self, Error> {
        let pb::MultiTransferRequest {
            request_id,
            from_wallet_id,
            payments,
            fee,
            reason,
            metadata,
        } = request;
        let mut v = Violations::default();
        let id = required_request_id(&mut v, &request_id);
        let from = v.check(parse_id("from_wallet_id", &from_wallet_id));
        if payments.is_empty() || payments.len() > MAX_PAYMENTS {
            v.0.push(FieldViolation::new(
                "payments",
                format!("must hold 1 to {MAX_PAYMENTS} payments"),
            ));
        }
        let mut parsed = Vec::with_capacity(payments.len().min(MAX_PAYMENTS));
        let mut seen = std::collections::HashSet::new();
        for (index, payment) in payments.into_iter().take(MAX_PAYMENTS).enumerate() {
            let pb::Payment {
                to_wallet_id,
                amount: value,
            } = payment;
            let to = v.check(parse_id(
                &format!("payments[{index}].to_wallet_id"),
                &to_wallet_id,
            ));
            if let Some(to) = to {
                if from == Some(to) {
                    v.0.push(FieldViolation::new(
                        format!("payments[{index}].to_wallet_id"),
                        "must differ from from_wallet_id",
                    ));
                } else if !seen.insert(to) {
                    v.0.push(FieldViolation::new(
                        format!("payments[{index}].to_wallet_id"),
                        "names a payee already paid in this transfer",
                    ));
                }
            }
            let value = v.check(amount(&format!("payments[{index}].amount"), value.as_ref()));
            if let (Some(to), Some(value)) = (to, value) {
                parsed.push((to, value));
            }
        }
        let fee = v.check(match fee.as_ref() {
            Some(_) => amount("fee", fee.as_ref()).map(Some),
            None => Ok(None),
        });
        let total = parsed
            .iter()
            .map(|(_, value)| value.micros())
            .chain(fee.flatten().map(|fee| fee.micros()))
            .try_fold(0i64, i64::checked_add);
        if total.is_none_or(|total| total > crate::money::MAX_AMOUNT_MICROS) {
            v.0.push(FieldViolation::new(
                "payments",
                "the payments and the fee must sum to at most 1000000000",
            ));
        }
        let note = note(&mut v, reason, metadata);
        let (request_id, command) = v.finish(|| {
            Some((
                id?,
                Command::MultiTransfer {
                    from_wallet: from?,
                    payments: parsed,
                    fee: fee?,
                    note: note?,
                },
            ))
        })?;
        Ok(LedgerCall {
            request_id,
            command,
        })
    }
}

/// Most field violations one refusal of a batch names: error details travel
/// in HTTP/2 headers, which a thousand of them would overflow.
const MAX_BATCH_VIOLATIONS: usize = 20;

impl TryFrom<pb::CreateTransfersRequest> for TransferBatch {
    type Error = Error;

    fn try_from(request: pb::CreateTransfersRequest) -> Result<Self, Error> {
        let pb::CreateTransfersRequest {
            request_id,
            mode,
            transfers,
        } = request;
        let mut v = Violations::default();
        let id = required_request_id(&mut v, &request_id);
        let mode = v.check(BatchMode::require_wire("mode", mode));
        if transfers.is_empty() || transfers.len() > MAX_BATCH_TRANSFERS {
            v.0.push(FieldViolation::new(
                "transfers",
                format!("must hold 1 to {MAX_BATCH_TRANSFERS} transfers"),
            ));
        }
        let mut calls = Vec::with_capacity(transfers.len().min(MAX_BATCH_TRANSFERS));
        let mut seen = std::collections::HashMap::new();
        for (index, transfer) in transfers.into_iter().take(MAX_BATCH_TRANSFERS).enumerate() {
            if let Some(first) = seen.insert(transfer.request_id.clone(), index)
                && !transfer.request_id.is_empty()
            {
                v.0.push(FieldViolation::new(
                    format!("transfers[{index}].request_id"),
                    format!("repeats transfers[{first}].request_id"),
                ));
            }
            match LedgerCall::try_from(transfer) {
                Ok(call) => calls.push(call),
                Err(Error::InvalidArgument(violations)) => {
                    v.0.extend(violations.into_iter().map(|violation| {
                        FieldViolation::new(
                            format!("transfers[{index}].{}", violation.field),
                            violation.description,
                        )
                    }))
                }
                Err(other) => return Err(other),
            }
        }
        v.0.truncate(MAX_BATCH_VIOLATIONS);
        v.finish(|| {
            Some(TransferBatch {
                request_id: id?,
                mode: mode?,
                transfers: calls,
            })
        })
    }
}

fn item_result_to_proto(result: ItemResult) -> pb::TransferResult {
    use pb::transfer_result::Outcome;
    pb::TransferResult {
        outcome: Some(match result {
            Ok(transaction) => Outcome::Transaction(transaction_to_proto(transaction)),
            Err(failure) => Outcome::Error(pb::ItemError {
                code: failure.code,
                reason: failure.reason,
                message: failure.message,
            }),
        }),
    }
}

#[tonic::async_trait]
impl TreasuryService for TreasuryApi {
    async fn mint(
        &self,
        request: Request<pb::MintRequest>,
    ) -> Result<Response<pb::MintResponse>, Status> {
        let caller = principal(&request)?;
        let call = LedgerCall::try_from(request.into_inner())?;
        let transaction = self.treasury.execute(&caller, call).await?;
        Ok(Response::new(pb::MintResponse {
            transaction: Some(transaction_to_proto(transaction)),
        }))
    }

    async fn burn(
        &self,
        request: Request<pb::BurnRequest>,
    ) -> Result<Response<pb::BurnResponse>, Status> {
        let caller = principal(&request)?;
        let call = LedgerCall::try_from(request.into_inner())?;
        let transaction = self.treasury.execute(&caller, call).await?;
        Ok(Response::new(pb::BurnResponse {
            transaction: Some(transaction_to_proto(transaction)),
        }))
    }

    async fn transfer(
        &self,
        request: Request<pb::TransferRequest>,
    ) -> Result<Response<pb::TransferResponse>, Status> {
        let caller = principal(&request)?;
        let call = LedgerCall::try_from(request.into_inner())?;
        let transaction = self.treasury.execute(&caller, call).await?;
        Ok(Response::new(pb::TransferResponse {
            transaction: Some(transaction_to_proto(transaction)),
        }))
    }

    async fn deposit(
        &self,
        request: Request<pb::DepositRequest>,
    ) -> Result<Response<pb::DepositResponse>, Status> {
        let caller = principal(&request)?;
        let call = LedgerCall::try_from(request.into_inner())?;
        let transaction = self.treasury.execute(&caller, call).await?;
        Ok(Response::new(pb::DepositResponse {
            transaction: Some(transaction_to_proto(transaction)),
        }))
    }

    async fn withdraw(
        &self,
        request: Request<pb::WithdrawRequest>,
    ) -> Result<Response<pb::WithdrawResponse>, Status> {
        let caller = principal(&request)?;
        let call = LedgerCall::try_from(request.into_inner())?;
        let transaction = self.treasury.execute(&caller, call).await?;
        Ok(Response::new(pb::WithdrawResponse {
            transaction: Some(transaction_to_proto(transaction)),
        }))
    }

    async fn confirm_transaction(
        &self,
        request: Request<pb::ConfirmTransactionRequest>,
    ) -> Result<Response<pb::ConfirmTransactionResponse>, Status> {
        let caller = principal(&request)?;
        let call = LedgerCall::try_from(request.into_inner())?;
        let transaction = self.treasury.execute(&caller, call).await?;
        Ok(Response::new(pb::ConfirmTransactionResponse {
            transaction: Some(transaction_to_proto(transaction)),
        }))
    }

    async fn fail_transaction(
        &self,
        request: Request<pb::FailTransactionRequest>,
    ) -> Result<Response<pb::FailTransactionResponse>, Status> {
        let caller = principal(&request)?;
        let call = LedgerCall::try_from(request.into_inner())?;
        let transaction = self.treasury.execute(&caller, call).await?;
        Ok(Response::new(pb::FailTransactionResponse {
            transaction: Some(transaction_to_proto(transaction)),
        }))
    }

    async fn reverse_transaction(
        &self,
        request: Request<pb::ReverseTransactionRequest>,
    ) -> Result<Response<pb::ReverseTransactionResponse>, Status> {
        let caller = principal(&request)?;
        let call = LedgerCall::try_from(request.into_inner())?;
        let transaction = self.treasury.execute(&caller, call).await?;
        Ok(Response::new(pb::ReverseTransactionResponse {
            transaction: Some(transaction_to_proto(transaction)),
        }))
    }

    async fn stake(
        &self,
        request: Request<pb::StakeRequest>,
    ) -> Result<Response<pb::StakeResponse>, Status> {
        let caller = principal(&request)?;
        let call = LedgerCall::try_from(request.into_inner())?;
        let transaction = self.treasury.execute(&caller, call).await?;
        Ok(Response::new(pb::StakeResponse {
            transaction: Some(transaction_to_proto(transaction)),
        }))
    }

    async fn unstake(
        &self,
        request: Request<pb::UnstakeRequest>,
    ) -> Result<Response<pb::UnstakeResponse>, Status> {
        let caller = principal(&request)?;
        let call = LedgerCall::try_from(request.into_inner())?;
        let transaction = self.treasury.execute(&caller, call).await?;
        Ok(Response::new(pb::UnstakeResponse {
            transaction: Some(transaction_to_proto(transaction)),
        }))
    }

    async fn get_transaction(
        &self,
        request: Request<pb::GetTransactionRequest>,
    ) -> Result<Response<pb::GetTransactionResponse>, Status> {
        let caller = principal(&request)?;
        let id = parse_id("transaction_id", &request.into_inner().transaction_id)
            .map_err(Error::from)?;
        let posted = self.treasury.get_transaction(&caller, id).await?;
        Ok(Response::new(pb::GetTransactionResponse {
            transaction: Some(posted_to_proto(posted)),
        }))
    }

    async fn list_transactions(
        &self,
        request: Request<pb::ListTransactionsRequest>,
    ) -> Result<Response<pb::ListTransactionsResponse>, Status> {
        let caller = principal(&request)?;
        let query = PageQuery::try_from(request.into_inner())?;
        let page = self.treasury.list_transactions(&caller, query).await?;
        Ok(Response::new(pb::ListTransactionsResponse {
            transactions: page.items.into_iter().map(posted_to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn get_balance(
        &self,
        request: Request<pb::GetBalanceRequest>,
    ) -> Result<Response<pb::GetBalanceResponse>, Status> {
        let caller = principal(&request)?;
        let query = BalanceQuery::try_from(request.into_inner())?;
        let (balance, at) = self.treasury.get_balance(&caller, query).await?;
        Ok(Response::new(balance_to_proto(query.wallet, balance, at)))
    }

    async fn get_treasury_summary(
        &self,
        request: Request<pb::GetTreasurySummaryRequest>,
    ) -> Result<Response<pb::GetTreasurySummaryResponse>, Status> {
        let caller = principal(&request)?;
        let pb::GetTreasurySummaryRequest {} = request.into_inner();
        let summary = self.treasury.summary(&caller).await?;
        Ok(Response::new(summary_to_proto(summary)))
    }

    async fn multi_transfer(
        &self,
        request: Request<pb::MultiTransferRequest>,
    ) -> Result<Response<pb::MultiTransferResponse>, Status> {
        let caller = principal(&request)?;
        let call = LedgerCall::try_from(request.into_inner())?;
        let posted = self.treasury.execute_posted(&caller, call).await?;
        Ok(Response::new(pb::MultiTransferResponse {
            transaction: Some(posted_to_proto(posted)),
        }))
    }

    async fn create_transfers(
        &self,
        request: Request<pb::CreateTransfersRequest>,
    ) -> Result<Response<pb::CreateTransfersResponse>, Status> {
        let caller = principal(&request)?;
        let batch = TransferBatch::try_from(request.into_inner())?;
        let results = self.treasury.create_transfers(&caller, batch).await?;
        Ok(Response::new(pb::CreateTransfersResponse {
            results: results.into_iter().map(item_result_to_proto).collect(),
        }))
    }
}
