//! TreasuryService over gRPC: parse, call one operation, convert back.

use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::domain::{
    Balance, BurnSource, Command, Note, Summary, SystemAccount, Transaction, TransactionFilter,
    TransactionKind, TransactionStatus,
};
use super::operations::Treasury;
use crate::address::Address;
use crate::auth::principal;
use crate::error::{Error, FieldViolation};
use crate::proto::treasury::{self as pb, treasury_service_server::TreasuryService};
use crate::transport::{
    Violations, amount, azr_decimal as decimal, datetime_from, json_object, optional, parse_id,
    reason, request, struct_from_json, timestamp,
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

fn kind_from(field: &str, value: i32) -> Result<Option<TransactionKind>, FieldViolation> {
    match pb::TransactionType::try_from(value) {
        Ok(pb::TransactionType::Unspecified) => Ok(None),
        Ok(pb::TransactionType::Mint) => Ok(Some(TransactionKind::Mint)),
        Ok(pb::TransactionType::Burn) => Ok(Some(TransactionKind::Burn)),
        Ok(pb::TransactionType::Transfer) => Ok(Some(TransactionKind::Transfer)),
        Ok(pb::TransactionType::Deposit) => Ok(Some(TransactionKind::Deposit)),
        Ok(pb::TransactionType::Withdrawal) => Ok(Some(TransactionKind::Withdrawal)),
        Err(_) => Err(FieldViolation::new(
            field,
            "is not a known transaction type",
        )),
    }
}

fn kind_to(value: TransactionKind) -> pb::TransactionType {
    match value {
        TransactionKind::Mint => pb::TransactionType::Mint,
        TransactionKind::Burn => pb::TransactionType::Burn,
        TransactionKind::Transfer => pb::TransactionType::Transfer,
        TransactionKind::Deposit => pb::TransactionType::Deposit,
        TransactionKind::Withdrawal => pb::TransactionType::Withdrawal,
    }
}

fn status_from(field: &str, value: i32) -> Result<Option<TransactionStatus>, FieldViolation> {
    match pb::TransactionStatus::try_from(value) {
        Ok(pb::TransactionStatus::Unspecified) => Ok(None),
        Ok(pb::TransactionStatus::Pending) => Ok(Some(TransactionStatus::Pending)),
        Ok(pb::TransactionStatus::Confirmed) => Ok(Some(TransactionStatus::Confirmed)),
        Ok(pb::TransactionStatus::Failed) => Ok(Some(TransactionStatus::Failed)),
        Err(_) => Err(FieldViolation::new(
            field,
            "is not a known transaction status",
        )),
    }
}

fn status_to(value: TransactionStatus) -> pb::TransactionStatus {
    match value {
        TransactionStatus::Pending => pb::TransactionStatus::Pending,
        TransactionStatus::Confirmed => pb::TransactionStatus::Confirmed,
        TransactionStatus::Failed => pb::TransactionStatus::Failed,
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
    } = transaction;
    pb::Transaction {
        id: id.to_string(),
        r#type: kind_to(kind) as i32,
        status: status_to(status) as i32,
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
                r#type: kind_to(kind) as i32,
                confirmed_count: totals.confirmed_count,
                confirmed_volume: decimal(totals.confirmed_micros),
                pending_count: totals.pending_count,
                pending_volume: decimal(totals.pending_micros),
                failed_count: totals.failed_count,
            })
            .collect(),
        allocation_policy_version: policy_version as u32,
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

fn respond<T>(
    result: Result<Transaction, Error>,
    wrap: impl FnOnce(Option<pb::Transaction>) -> T,
) -> Result<Response<T>, Status> {
    Ok(Response::new(wrap(Some(transaction_to_proto(result?)))))
}

#[tonic::async_trait]
impl TreasuryService for TreasuryApi {
    async fn mint(
        &self,
        request_message: Request<pb::MintRequest>,
    ) -> Result<Response<pb::MintResponse>, Status> {
        let caller = principal(&request_message)?;
        let pb::MintRequest {
            request_id,
            amount: value,
            to_wallet_id,
            reason,
            metadata,
        } = request_message.into_inner();
        let mut v = Violations::default();
        let id = request(&mut v, &request_id);
        let value = v.check(amount("amount", value.as_ref()));
        let to_wallet = v.check(optional(&to_wallet_id, |text| {
            parse_id("to_wallet_id", text)
        }));
        let note = note(&mut v, reason, metadata);
        let (id, command) = v.finish(|| {
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
        respond(
            self.treasury.execute(&caller, id, command).await,
            |transaction| pb::MintResponse { transaction },
        )
    }

    async fn burn(
        &self,
        request_message: Request<pb::BurnRequest>,
    ) -> Result<Response<pb::BurnResponse>, Status> {
        let caller = principal(&request_message)?;
        let pb::BurnRequest {
            request_id,
            amount: value,
            from_wallet_id,
            from_system_account,
            reason,
            metadata,
        } = request_message.into_inner();
        let mut v = Violations::default();
        let id = request(&mut v, &request_id);
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
        let (id, command) = v.finish(|| {
            Some((
                id?,
                Command::Burn {
                    amount: value?,
                    source: source?,
                    note: note?,
                },
            ))
        })?;
        respond(
            self.treasury.execute(&caller, id, command).await,
            |transaction| pb::BurnResponse { transaction },
        )
    }

    async fn transfer(
        &self,
        request_message: Request<pb::TransferRequest>,
    ) -> Result<Response<pb::TransferResponse>, Status> {
        let caller = principal(&request_message)?;
        let pb::TransferRequest {
            request_id,
            from_wallet_id,
            to_wallet_id,
            amount: value,
            reason,
            metadata,
        } = request_message.into_inner();
        let mut v = Violations::default();
        let id = request(&mut v, &request_id);
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
        let (id, command) = v.finish(|| {
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
        respond(
            self.treasury.execute(&caller, id, command).await,
            |transaction| pb::TransferResponse { transaction },
        )
    }

    async fn deposit(
        &self,
        request_message: Request<pb::DepositRequest>,
    ) -> Result<Response<pb::DepositResponse>, Status> {
        let caller = principal(&request_message)?;
        let pb::DepositRequest {
            request_id,
            to_wallet_id,
            amount: value,
            tx_hash,
            pending,
            reason,
            metadata,
        } = request_message.into_inner();
        let mut v = Violations::default();
        let id = request(&mut v, &request_id);
        let to = v.check(parse_id("to_wallet_id", &to_wallet_id));
        let value = v.check(amount("amount", value.as_ref()));
        let hash = v.check(optional(&tx_hash, |text| chain_hash("tx_hash", text)));
        let note = note(&mut v, reason, metadata);
        let (id, command) = v.finish(|| {
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
        respond(
            self.treasury.execute(&caller, id, command).await,
            |transaction| pb::DepositResponse { transaction },
        )
    }

    async fn withdraw(
        &self,
        request_message: Request<pb::WithdrawRequest>,
    ) -> Result<Response<pb::WithdrawResponse>, Status> {
        let caller = principal(&request_message)?;
        let pb::WithdrawRequest {
            request_id,
            from_wallet_id,
            amount: value,
            destination_address,
            reason,
            metadata,
        } = request_message.into_inner();
        let mut v = Violations::default();
        let id = request(&mut v, &request_id);
        let from = v.check(parse_id("from_wallet_id", &from_wallet_id));
        let value = v.check(amount("amount", value.as_ref()));
        let destination = v.check(Address::parse("destination_address", &destination_address));
        let note = note(&mut v, reason, metadata);
        let (id, command) = v.finish(|| {
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
        respond(
            self.treasury.execute(&caller, id, command).await,
            |transaction| pb::WithdrawResponse { transaction },
        )
    }

    async fn confirm_transaction(
        &self,
        request_message: Request<pb::ConfirmTransactionRequest>,
    ) -> Result<Response<pb::ConfirmTransactionResponse>, Status> {
        let caller = principal(&request_message)?;
        let pb::ConfirmTransactionRequest {
            request_id,
            transaction_id,
            gas_used,
            gas_price_wei,
            confirm_time,
            backing_reference,
        } = request_message.into_inner();
        let mut v = Violations::default();
        let id = request(&mut v, &request_id);
        let transaction = v.check(parse_id("transaction_id", &transaction_id));
        if gas_used < 0 {
            v.0.push(FieldViolation::new("gas_used", "must not be negative"));
        }
        let price = v.check(gas_price("gas_price_wei", &gas_price_wei));
        let confirmed_at = v.check(
            confirm_time
                .as_ref()
                .map(|at| datetime_from("confirm_time", at))
                .transpose(),
        );
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
        let (id, command) = v.finish(|| {
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
        respond(
            self.treasury.execute(&caller, id, command).await,
            |transaction| pb::ConfirmTransactionResponse { transaction },
        )
    }

    async fn fail_transaction(
        &self,
        request_message: Request<pb::FailTransactionRequest>,
    ) -> Result<Response<pb::FailTransactionResponse>, Status> {
        let caller = principal(&request_message)?;
        let pb::FailTransactionRequest {
            request_id,
            transaction_id,
            reason: why,
        } = request_message.into_inner();
        let mut v = Violations::default();
        let id = request(&mut v, &request_id);
        let transaction = v.check(parse_id("transaction_id", &transaction_id));
        if why.trim().is_empty() {
            v.0.push(FieldViolation::new("reason", "is required"));
        }
        let why = v.check(reason("reason", why));
        let (id, command) = v.finish(|| {
            Some((
                id?,
                Command::Fail {
                    transaction_id: transaction?,
                    reason: why?,
                },
            ))
        })?;
        respond(
            self.treasury.execute(&caller, id, command).await,
            |transaction| pb::FailTransactionResponse { transaction },
        )
    }

    async fn get_transaction(
        &self,
        request_message: Request<pb::GetTransactionRequest>,
    ) -> Result<Response<pb::GetTransactionResponse>, Status> {
        let caller = principal(&request_message)?;
        let pb::GetTransactionRequest { transaction_id } = request_message.into_inner();
        let id = parse_id("transaction_id", &transaction_id).map_err(Error::from)?;
        respond(
            self.treasury.get_transaction(&caller, id).await,
            |transaction| pb::GetTransactionResponse { transaction },
        )
    }

    async fn list_transactions(
        &self,
        request_message: Request<pb::ListTransactionsRequest>,
    ) -> Result<Response<pb::ListTransactionsResponse>, Status> {
        let caller = principal(&request_message)?;
        let pb::ListTransactionsRequest {
            page_size,
            page_token,
            wallet_id,
            r#type,
            status,
            start_time,
            end_time,
        } = request_message.into_inner();
        let mut v = Violations::default();
        let wallet = v.check(optional(&wallet_id, |text| parse_id("wallet_id", text)));
        let kind = v.check(kind_from("type", r#type));
        let status = v.check(status_from("status", status));
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
            })
        })?;
        let page = self
            .treasury
            .list_transactions(&caller, filter, page_size, &page_token)
            .await?;
        Ok(Response::new(pb::ListTransactionsResponse {
            transactions: page.items.into_iter().map(transaction_to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn get_balance(
        &self,
        request_message: Request<pb::GetBalanceRequest>,
    ) -> Result<Response<pb::GetBalanceResponse>, Status> {
        let caller = principal(&request_message)?;
        let pb::GetBalanceRequest {
            wallet_id,
            as_of_time,
        } = request_message.into_inner();
        let mut v = Violations::default();
        let wallet = v.check(parse_id("wallet_id", &wallet_id));
        let as_of = v.check(
            as_of_time
                .as_ref()
                .map(|at| datetime_from("as_of_time", at))
                .transpose(),
        );
        let (wallet, as_of) = v.finish(|| Some((wallet?, as_of?)))?;
        let (balance, at) = self.treasury.get_balance(&caller, wallet, as_of).await?;
        Ok(Response::new(balance_to_proto(wallet, balance, at)))
    }

    async fn get_treasury_summary(
        &self,
        request_message: Request<pb::GetTreasurySummaryRequest>,
    ) -> Result<Response<pb::GetTreasurySummaryResponse>, Status> {
        let caller = principal(&request_message)?;
        let pb::GetTreasurySummaryRequest {} = request_message.into_inner();
        let summary = self.treasury.summary(&caller).await?;
        Ok(Response::new(summary_to_proto(summary)))
    }
}
