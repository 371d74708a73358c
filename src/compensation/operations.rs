//! Founder compensation use cases: who may do what, and each change in one
//! audited database transaction; paying also moves the money there.

use chrono::{SubsecRound, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use uuid::Uuid;

use super::domain::{
    ApproveFounderCompensation, CancelFounderCompensation, Compensation, CompensationStatus,
    CreateFounderCompensation, GetFounderCompensation, GetFounderCompensationSummary,
    ListFounderCompensations, NewCompensation, PayFounderCompensation, Summary,
};
use super::store;
use crate::audit::{Audited, Begun, Change, Replay};
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

/// Answers a CreateFounderCompensation sent again with its request id: the
/// record it created, unchanged, and audited as a call.
async fn replay_create(
    transaction: Audited,
    caller: &Principal,
    request_id: &RequestId,
    fingerprint: &str,
    existing: Compensation,
) -> Result<Compensation> {
    if existing.fingerprint != fingerprint {
        return Err(Error::invalid(
            "request_id",
            "was already used for a different request",
        ));
    }
    let change = Change::new(RESOURCE, existing.id)
        .old(&existing)
        .new_values(&existing)
        .request_id(request_id.as_str());
    transaction.commit(caller, change).await?;
    Ok(existing)
}

/// Answers an approve, pay or cancel retry with the record as it is now.
async fn replay_transition(mut replay: Replay, caller: &Principal) -> Result<Compensation> {
    let record = store::find(replay.transaction(), replay.resource_id()?)
        .await?
        .ok_or_else(|| Error::internal("a replayed compensation is gone"))?;
    // The first call may have paid and died before invalidating.
    replay.invalidate(Invalidation::of([
        Generation::Wallet(record.wallet),
        Generation::Ledger,
    ]));
    replay.answer(caller, RESOURCE, record).await
}

/// What a new record must name: a user who is a founder, one of their
/// wallets, and a founder, month and type with no live record yet.
async fn check_new(db: &impl ConnectionTrait, new: &NewCompensation) -> Result<()> {
    let founder = directory::find_user(db, new.founder)
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
    let wallet = directory::find_wallet(db, new.wallet)
        .await?
        .ok_or_else(|| Error::not_found("wallet", new.wallet))?;
    if wallet.owner_id != founder.id {
        return Err(Error::invalid(
            "wallet_id",
            "must be a wallet of the founder's",
        ));
    }
    if store::find_live(db, new.founder, &new.month, new.kind)
        .await?
        .is_some()
    {
        return Err(Error::AlreadyExists {
            entity: "founder compensation",
            field: "month".into(),
        });
    }
    Ok(())
}

/// The ledger command that pays `record` from the founder pool, with its
/// ledger request id (one per record, so paying twice pays once).
fn compensation_payout(record: &Compensation) -> Result<(RequestId, Command)> {
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
    Ok((request_id, command))
}

impl Compensations {
    pub fn new(db: DatabaseConnection, policy: AllocationPolicy, cache: Cache) -> Self {
        Self { db, policy, cache }
    }

    pub async fn create(
        &self,
        caller: &Principal,
        create: CreateFounderCompensation,
    ) -> Result<Compensation> {
        caller.require_role(PAYROLL)?;
        let CreateFounderCompensation {
            request_id,
            compensation: new,
        } = create;
        let fingerprint = new.fingerprint();
        let transaction = Audited::begin(&self.db, &self.cache).await?;
        if let Some(existing) =
            store::find_by_request(&*transaction, caller.user_id, request_id.as_str()).await?
        {
            return replay_create(transaction, caller, &request_id, &fingerprint, existing).await;
        }
        check_new(&*transaction, &new).await?;
        let now = Utc::now().trunc_subsecs(6);
        let record = Compensation::pending(new, &request_id, fingerprint, caller.user_id, now);
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
                Begun::Replay(replay) => return replay_transition(replay, caller).await,
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
        approve: ApproveFounderCompensation,
    ) -> Result<Compensation> {
        let id = approve.compensation;
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
        pay: PayFounderCompensation,
    ) -> Result<Compensation> {
        let id = pay.compensation;
        self.transition(caller, key, id, async |transaction, record| {
            not_the_founder(caller, record)?;
            match record.status {
                CompensationStatus::Paid => return Ok(false),
                CompensationStatus::Approved => {}
                CompensationStatus::Pending | CompensationStatus::Cancelled => {
                    return Err(illegal(record, "paid"));
                }
            }
            let (request_id, command) = compensation_payout(record)?;
            let paid =
                ledger::apply_one(transaction, &self.policy, caller, request_id, command).await?;
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
        cancel: CancelFounderCompensation,
    ) -> Result<Compensation> {
        let CancelFounderCompensation {
            compensation: id,
            reason,
        } = cancel;
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

    pub async fn get(
        &self,
        caller: &Principal,
        get: GetFounderCompensation,
    ) -> Result<Compensation> {
        let id = get.compensation;
        caller.readable(
            store::find(&self.db, id).await?,
            |record| record.founder,
            || Error::not_found("founder compensation", id),
        )
    }

    pub async fn list(
        &self,
        caller: &Principal,
        list: ListFounderCompensations,
    ) -> Result<Page<Compensation>> {
        let ListFounderCompensations {
            mut filter,
            page_size,
            page_token,
        } = list;
        filter.founder = caller.visible_owner(filter.founder)?;
        let page = PageRequest::parse(page_size, &page_token, &filter.fingerprint())?;
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
        get: GetFounderCompensationSummary,
    ) -> Result<Summary> {
        let GetFounderCompensationSummary {
            founder,
            start,
            end,
        } = get;
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
