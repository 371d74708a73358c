//! Treasury use cases: who may do what; writes go to the ledger writer,
//! reads straight to the store.

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use super::domain::{
    Account, AllocationPolicy, Balance, BalanceQuery, Command, ItemResult, LedgerCall, Posted,
    Summary, Transaction, TransactionFilter, TransferBatch,
};
use super::ledger::{Group, Ledger};
use super::store;
use crate::auth::{Principal, Role};
use crate::cache::{Cache, Entry};
use crate::db::begin_write;
use crate::error::Error;
use crate::pagination::{Page, PageQuery, PageRequest};

type Result<T> = std::result::Result<T, Error>;

const MONEY_MOVERS: &[Role] = &[Role::Admin, Role::Treasurer];
const WALLET_HOLDERS: &[Role] = &[Role::Admin, Role::Treasurer, Role::Member, Role::Service];
const STAFF: &[Role] = &[Role::Admin, Role::Treasurer, Role::Auditor];

#[derive(Clone)]
pub struct Treasury {
    db: DatabaseConnection,
    ledger: Ledger,
    policy: AllocationPolicy,
    cache: Cache,
}

/// What `GetBalance` needs of a wallet, as cached: who may read it, its
/// balance now, and since when it exists.
#[derive(serde::Serialize, serde::Deserialize)]
struct WalletBalance {
    owner: Uuid,
    balance: Balance,
    created_at: DateTime<Utc>,
}

/// Makes the configured basis points the policy in force: the newest stored
/// version if it matches, otherwise a new version.
pub async fn ensure_policy(
    db: &DatabaseConnection,
    basis_points: [i32; 4],
) -> Result<AllocationPolicy> {
    for _ in 0..2 {
        let transaction = begin_write(db).await?;
        let latest = store::latest_policy(&transaction).await?;
        if let Some(policy) = latest.filter(|policy| policy.basis_points() == basis_points) {
            return Ok(policy);
        }
        let [treasury_bp, founder_bp, burn_bp, circulation_bp] = basis_points;
        let policy = AllocationPolicy {
            version: latest.map_or(1, |policy| policy.version + 1),
            treasury_bp,
            founder_bp,
            burn_bp,
            circulation_bp,
        };
        // Another replica may store the same new version at the same time;
        // then the loop reads it back.
        if store::insert_policy(&transaction, policy).await.is_ok()
            && transaction.commit().await.is_ok()
        {
            tracing::info!(
                version = policy.version,
                ?basis_points,
                "stored a new allocation policy"
            );
            return Ok(policy);
        }
    }
    Err(Error::internal("could not store the allocation policy"))
}

impl Treasury {
    /// `writers`: concurrent ledger writers (see [`Ledger::start`]), which
    /// invalidate `cache` after each commit; a write that takes longer than
    /// `deadline` fails UNAVAILABLE.
    pub fn new(
        db: DatabaseConnection,
        policy: AllocationPolicy,
        writers: usize,
        cache: Cache,
        deadline: std::time::Duration,
        metrics: crate::metrics::LedgerMetrics,
    ) -> Self {
        let ledger = Ledger::start(
            db.clone(),
            policy,
            writers,
            cache.clone(),
            deadline,
            metrics,
        );
        Self {
            db,
            ledger,
            policy,
            cache,
        }
    }

    /// Applies a ledger command after checking the caller's role; ownership
    /// of source wallets is checked by the ledger writer under lock.
    pub async fn execute(
        &self,
        caller: &Principal,
        LedgerCall {
            request_id,
            command,
        }: LedgerCall,
    ) -> Result<Transaction> {
        let roles = match command {
            Command::Transfer { .. }
            | Command::Withdraw { .. }
            | Command::Stake { .. }
            | Command::Unstake { .. }
            | Command::MultiTransfer { .. } => WALLET_HOLDERS,
            Command::Mint { .. }
            | Command::Burn { .. }
            | Command::PoolPayout { .. }
            | Command::PoolPayment { .. }
            | Command::Deposit { .. }
            | Command::Confirm { .. }
            | Command::Fail { .. }
            | Command::Reverse { .. } => MONEY_MOVERS,
        };
        caller.require_role(roles)?;
        self.ledger.submit(caller, request_id, command).await
    }

    /// Applies a batch of transfers (`CreateTransfers`) as one group: the
    /// roles of Transfer; ownership of each source wallet is checked by the
    /// ledger writer under lock, item by item.
    pub async fn create_transfers(
        &self,
        caller: &Principal,
        batch: TransferBatch,
    ) -> Result<Vec<ItemResult>> {
        caller.require_role(WALLET_HOLDERS)?;
        let group = Group {
            fingerprint: batch.fingerprint(),
            request_id: batch.request_id,
            mode: batch.mode,
            items: batch
                .transfers
                .into_iter()
                .map(|call| (call.request_id, call.command))
                .collect(),
        };
        self.ledger.submit_group(caller, group).await
    }

    /// A ledger command whose answer shows its legs (MultiTransfer).
    pub async fn execute_posted(&self, caller: &Principal, call: LedgerCall) -> Result<Posted> {
        let transaction = self.execute(caller, call).await?;
        let legs = store::entries_of(&self.db, &[transaction.id])
            .await?
            .remove(&transaction.id)
            .unwrap_or_default();
        Ok((transaction, legs))
    }

    /// May the caller read this wallet? Staff read every wallet; others only
    /// their own, and a missing wallet looks like someone else's to them.
    async fn readable_wallet(
        &self,
        caller: &Principal,
        wallet: Uuid,
    ) -> Result<(Balance, DateTime<Utc>)> {
        // The cached row carries the owner: the same check runs on it.
        let found = self
            .cache
            .get_or_load(Entry::WalletBalance(wallet), || async {
                Ok(store::find_wallet_owner_and_balance(&self.db, wallet)
                    .await?
                    .map(|(owner, balance, created_at)| WalletBalance {
                        owner,
                        balance,
                        created_at,
                    }))
            })
            .await?;
        let readable = caller.readable(
            found,
            |found| found.owner,
            || Error::not_found("wallet", wallet),
        )?;
        Ok((readable.balance, readable.created_at))
    }

    async fn owns(&self, caller: &Principal, wallet: Option<Uuid>) -> Result<bool> {
        Ok(match wallet {
            Some(wallet) => store::find_wallet_owner_and_balance(&self.db, wallet)
                .await?
                .is_some_and(|(owner, _, _)| owner == caller.user_id),
            None => false,
        })
    }

    /// A transaction with its legs. Members read those touching a wallet of
    /// theirs (a multi-transfer's payees are in its legs).
    pub async fn get_transaction(&self, caller: &Principal, id: Uuid) -> Result<Posted> {
        let found = store::find_transaction(&self.db, id).await?;
        let legs = match &found {
            Some(_) => store::entries_of(&self.db, &[id])
                .await?
                .remove(&id)
                .unwrap_or_default(),
            None => Vec::new(),
        };
        if caller.role.reads_everything() {
            return found
                .map(|transaction| (transaction, legs))
                .ok_or_else(|| Error::not_found("transaction", id));
        }
        let Some(transaction) = found else {
            return Err(Error::PermissionDenied);
        };
        let paid_to = legs.iter().filter_map(|leg| match leg.to.0 {
            Account::Wallet(wallet) => Some(wallet),
            Account::System(_) => None,
        });
        let touched: std::collections::BTreeSet<Uuid> =
            [transaction.from_wallet, transaction.to_wallet]
                .into_iter()
                .flatten()
                .chain(paid_to)
                .collect();
        for wallet in touched {
            if self.owns(caller, Some(wallet)).await? {
                return Ok((transaction, legs));
            }
        }
        Err(Error::PermissionDenied)
    }

    pub async fn list_transactions(
        &self,
        caller: &Principal,
        PageQuery {
            mut filter,
            page_size,
            page_token,
        }: PageQuery<TransactionFilter>,
    ) -> Result<Page<Posted>> {
        if !caller.role.reads_everything() {
            match filter.wallet {
                Some(wallet) => {
                    self.readable_wallet(caller, wallet).await?;
                }
                None => filter.owner = Some(caller.user_id),
            }
        }
        let page = PageRequest::parse(page_size, &page_token, &filter.fingerprint())?;
        let mut transactions = store::list_transactions(&self.db, &filter, &page).await?;
        let next_page_token = page.finish(&mut transactions, |transaction| transaction.id);
        let ids: Vec<Uuid> = transactions
            .iter()
            .map(|transaction| transaction.id)
            .collect();
        let mut legs = store::entries_of(&self.db, &ids).await?;
        Ok(Page {
            items: transactions
                .into_iter()
                .map(|transaction| {
                    let posted = legs.remove(&transaction.id).unwrap_or_default();
                    (transaction, posted)
                })
                .collect(),
            next_page_token,
        })
    }

    /// The balance now, or as of a past time from the entries.
    pub async fn get_balance(
        &self,
        caller: &Principal,
        BalanceQuery { wallet, as_of }: BalanceQuery,
    ) -> Result<(Balance, DateTime<Utc>)> {
        let now = Utc::now();
        let (current, created_at) = self.readable_wallet(caller, wallet).await?;
        let Some(at) = as_of else {
            return Ok((current, now));
        };
        if at > now {
            return Err(Error::invalid("as_of_time", "must not be in the future"));
        }
        if at < created_at {
            return Err(Error::OutOfRange {
                field: "as_of_time",
                message: format!(
                    "is before the wallet existed (created {})",
                    created_at.to_rfc3339()
                ),
            });
        }
        Ok((store::wallet_balance_as_of(&self.db, wallet, at).await?, at))
    }

    pub async fn summary(&self, caller: &Principal) -> Result<Summary> {
        caller.require_role(STAFF)?;
        let version = self.policy.version;
        let entry = Entry::TreasurySummary {
            policy_version: version,
        };
        self.cache
            .get_or_load(entry, || async {
                store::summary(&self.db, version).await.map(Some)
            })
            .await?
            .ok_or_else(|| Error::internal("no summary"))
    }
}
