//! Founder compensation use cases: who may do what, and each change in one
//! audited database transaction; paying also moves the money there.

use chrono::{SubsecRound, Utc};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use super::domain::{
    Compensation, CompensationFilter, CompensationStatus, Month, NewCompensation, Summary,
};
use super::store;
use crate::audit::{Audited, Begun, Change};
use crate::auth::{Principal, Role};
use crate::cache::{Cache, Generation, Invalidation};
use crate::error::Error;
use crate::idempotency::RequestKey;
use crate::identity::directory;
use crate::identity::domain::UserType;
use crate::money::{Amount, RequestId};
use crate::pagination::Page;
use crate::pagination::PageRequest;
use crate::treasury::domain::{AllocationPolicy, Command, Note, SystemAccount};
use crate::treasury::ledger;

type Result<T> = std::result::Result<T, Error>;

const PAYROLL: &[Role] = &[Role::Admin, Role::Treasurer];
const RESOURCE: &str = "founder_compensation";

#[derive(Clone)]
pub struct Compensations {
    db: DatabaseConnection,
    policy: AllocationPolicy,
    cache: Cache,
}

fn illegal(record: &Compensation, action: &str) -> Error {
    Error::FailedPrecondition {
        reason: "ILLEGAL_TRANSITION",
        message: format!(
            "founder compensation {} is {} and cannot be {action}",
            record.id,
            record.status.as_str()
        ),
    }
}

/// Four eyes: the founder being paid neither approves nor pays.
fn not_the_founder(caller: &Principal, record: &Compensation) -> Result<()> {
    if caller.user_id == record.founder {
        Err(Error::PermissionDenied)
    } else {
        Ok(())
    }
}

impl Compensations {
    pub fn new(db: DatabaseConnection, policy: AllocationPolicy, cache: Cache) -> Self {
        Self { db, policy, cache }
    }

    pub async fn create(
        &self,
        caller: &Principal,
        request_id: RequestId,
        new: NewCompensation,
    ) -> Result<Compensation> {
        caller.require_role(PAYROLL)?;
        let fingerprint = new.fingerprint();
        let transaction = Audited::begin(&self.db, &self.cache).await?;
        if let Some(existing) =
            store::find_by_request(&*transaction, caller.user_id, request_id.as_str()).await?
        {
            if existing.fingerprint != fingerprint {
                return Err(Error::invalid(
                    "request_id",
                    "was already used for a different request",
                ));
            }
            // A retry: answered with the original, and audited as a call.
            let change = Change::new(RESOURCE, existing.id)
                .old(&existing)
                .new_values(&existing)
                .request_id(request_id.as_str());
            transaction.commit(caller, change).await?;
            return Ok(existing);
        }
        let founder = directory::find_user(&*transaction, new.founder)
            .await?
            .ok_or_else(|| Error::not_found("user", new.founder))?;
        if founder.user_type != UserType::Founder {
            return Err(Error::FailedPrecondition {
                reason: "NOT_A_FOUNDER",
                message: format!(
                    "user {} is a {}, not a founder",
                    founder.id,
                    founder.user_type.as_str()
                ),
            });
        }
        let wallet = directory::find_wallet(&*transaction, new.wallet)
            .await?
            .ok_or_else(|| Error::not_found("wallet", new.wallet))?;
        if wallet.owner_id != founder.id {
            return Err(Error::invalid(
                "wallet_id",
                "must be a wallet of the founder's",
            ));
        }
        if store::find_live(&*transaction, new.founder, &new.month, new.kind)
            .await?
            .is_some()
        {
            return Err(Error::AlreadyExists {
                entity: "founder compensation",
                field: "month".into(),
            });
        }
        let record = Compensation {
            id: Uuid::now_v7(),
            founder: new.founder,
            wallet: new.wallet,
            month: new.month.as_str().to_owned(),
            kind: new.kind,
            status: CompensationStatus::Pending,
            amount_micros: new.amount.micros(),
            notes: new.notes,
            request_id: request_id.as_str().to_owned(),
            fingerprint,
            created_by: caller.user_id,
            created_at: Utc::now().trunc_subsecs(6),
            approved_by: None,
            approved_at: None,
            paid_by: None,
            transaction: None,
            tx_hash: None,
            paid_at: None,
            cancelled_by: None,
            cancelled_at: None,
            cancel_reason: None,
        };
        store::insert(&*transaction, &record).await?;
        let change = Change::new(RESOURCE, record.id)
            .new_values(&record)
            .request_id(request_id.as_str());
        transaction.commit(caller, change).await?;
        Ok(record)
    }

    /// Locks the record and applies `step` to it. The step answers whether
    /// it changed the record (`false`: already there, returned unchanged);
    /// what a payment changes in cached reads the ledger adds to the unit of
    /// work, which invalidates it after the commit.
    async fn transition(
        &self,
        caller: &Principal,
        key: Option<RequestKey>,
        id: Uuid,
        step: impl AsyncFnOnce(&mut Audited, &mut Compensation) -> Result<bool>,
    ) -> Result<Compensation> {
        caller.require_role(PAYROLL)?;
        let mut transaction =
            match Audited::begin_once(&self.db, &self.cache, caller, key.as_ref()).await? {
                Begun::Fresh(transaction) => transaction,
                Begun::Replay(mut replay) => {
                    let record = store::find(replay.transaction(), replay.resource_id()?)
                        .await?
                        .ok_or_else(|| Error::internal("a replayed compensation is gone"))?;
                    // The first call may have paid and died before invalidating.
                    replay.invalidate(Invalidation::of([
                        Generation::Wallet(record.wallet),
                        Generation::Ledger,
                    ]));
                    return replay.answer(caller, RESOURCE, record).await;
                }
            };
        let mut record = store::lock(&*transaction, id)
            .await?
            .ok_or_else(|| Error::not_found("founder compensation", id))?;
        let before = record.clone();
        if step(&mut transaction, &mut record).await? {
            store::update(&*transaction, &record).await?;
        }
        let change = Change::new(RESOURCE, id).old(&before).new_values(&record);
        transaction.commit(caller, change).await?;
        Ok(record)
    }

    pub async fn approve(
        &self,
        caller: &Principal,
        key: Option<RequestKey>,
        id: Uuid,
    ) -> Result<Compensation> {
        self.transition(caller, key, id, async |_, record| {
            not_the_founder(caller, record)?;
            match record.status {
                CompensationStatus::Approved => Ok(false),
                CompensationStatus::Pending => {
                    record.status = CompensationStatus::Approved;
                    record.approved_by = Some(caller.user_id);
                    record.approved_at = Some(Utc::now().trunc_subsecs(6));
                    Ok(true)
                }
                CompensationStatus::Paid | CompensationStatus::Cancelled => {
                    Err(illegal(record, "approved"))
                }
            }
        })
        .await
    }

    /// Pays an approved record: the ledger transfer from the founder pool
    /// and the status change commit together, or neither does.
    pub async fn pay(
        &self,
        caller: &Principal,
        key: Option<RequestKey>,
        id: Uuid,
    ) -> Result<Compensation> {
        let policy = self.policy;
        self.transition(caller, key, id, async |transaction, record| {
            not_the_founder(caller, record)?;
            match record.status {
                CompensationStatus::Paid => return Ok(false),
                CompensationStatus::Approved => {}
                CompensationStatus::Pending | CompensationStatus::Cancelled => {
                    return Err(illegal(record, "paid"));
                }
            }
            let amount = Amount::from_micros(record.amount_micros)
                .ok_or_else(|| Error::internal("a stored compensation amount is out of range"))?;
            let mut metadata = serde_json::Map::new();
            metadata.insert(
                "founder_compensation_id".into(),
                record.id.to_string().into(),
            );
            let command = Command::PoolPayout {
                pool: SystemAccount::FounderPool,
                to_wallet: record.wallet,
                amount,
                note: Note {
                    reason: format!(
                        "founder compensation {} for {}",
                        record.kind.as_str(),
                        record.month
                    ),
                    metadata,
                },
            };
            let request_id = RequestId::parse(
                "compensation_id",
                &format!("azora:founder-compensation:{}", record.id),
            )?;
            let mut outcomes = ledger::apply_in(
                transaction,
                &policy,
                &[(caller.clone(), request_id, command)],
            )
            .await?;
            let paid = outcomes
                .pop()
                .unwrap_or_else(|| Err(Error::internal("the ledger gave no outcome")))?;
            record.status = CompensationStatus::Paid;
            record.paid_by = Some(caller.user_id);
            record.transaction = Some(paid.id);
            record.tx_hash = Some(paid.tx_hash);
            record.paid_at = Some(paid.created_at);
            Ok(true)
        })
        .await
    }

    pub async fn cancel(
        &self,
        caller: &Principal,
        key: Option<RequestKey>,
        id: Uuid,
        reason: String,
    ) -> Result<Compensation> {
        self.transition(caller, key, id, async |_, record| match record.status {
            CompensationStatus::Cancelled => Ok(false),
            CompensationStatus::Pending | CompensationStatus::Approved => {
                record.status = CompensationStatus::Cancelled;
                record.cancelled_by = Some(caller.user_id);
                record.cancelled_at = Some(Utc::now().trunc_subsecs(6));
                record.cancel_reason = Some(reason);
                Ok(true)
            }
            CompensationStatus::Paid => Err(illegal(record, "cancelled")),
        })
        .await
    }

    pub async fn get(&self, caller: &Principal, id: Uuid) -> Result<Compensation> {
        caller.readable(
            store::find(&self.db, id).await?,
            |record| record.founder,
            || Error::not_found("founder compensation", id),
        )
    }

    pub async fn list(
        &self,
        caller: &Principal,
        mut filter: CompensationFilter,
        page_size: i32,
        page_token: &str,
    ) -> Result<Page<Compensation>> {
        filter.founder = caller.visible_owner(filter.founder)?;
        let page = PageRequest::parse(page_size, page_token, &filter.fingerprint())?;
        let mut items = store::list(&self.db, &filter, &page).await?;
        let next_page_token = page.finish(&mut items, |record| record.id);
        Ok(Page {
            items,
            next_page_token,
        })
    }

    pub async fn summary(
        &self,
        caller: &Principal,
        founder: Option<Uuid>,
        start: Option<Month>,
        end: Option<Month>,
    ) -> Result<Summary> {
        let founder = caller.visible_owner(founder)?;
        if let (Some(start), Some(end)) = (&start, &end)
            && start > end
        {
            return Err(Error::invalid(
                "end_month",
                "must not be before start_month",
            ));
        }
        store::summary(&self.db, founder, start.as_ref(), end.as_ref()).await
    }
}
