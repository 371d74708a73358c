//! Knowledge reward use cases: who may verify, and each proof recorded and
//! paid in one audited database transaction.

use chrono::{SubsecRound, Utc};
use sea_orm::DatabaseConnection;

use sea_orm::ConnectionTrait;

use super::domain::{
    Earning, GetKnowledgeReward, ListProofsOfKnowledge, ListStudentEarnings, NewProof, Proof,
    RecordProofOfKnowledge,
};
use super::store;
use crate::audit::{Audited, Change};
use crate::auth::{Principal, Role};
use crate::cache::Cache;
use crate::error::Error;
use crate::identity::directory;
use crate::identity::domain::UserType;
use crate::money::{Amount, RequestId, format_azr};
use crate::pagination::Page;
use crate::pagination::PageRequest;
use crate::treasury::domain::{AllocationPolicy, Command, Note, SystemAccount};
use crate::treasury::ledger;

type Result<T> = std::result::Result<T, Error>;

const RESOURCE: &str = "proof_of_knowledge";

#[derive(Clone)]
pub struct Rewards {
    db: DatabaseConnection,
    policy: AllocationPolicy,
    max_reward: Amount,
    cache: Cache,
}

/// A recorded proof, and whether this call only replayed it.
pub struct Recorded {
    pub proof: Proof,
    pub replayed: bool,
}

/// A page of a student's rewards, with every reward's count and sum.
pub struct Earnings {
    pub page: Page<Earning>,
    pub reward_count: i64,
    pub total_micros: i64,
}

/// Answers a proof sent again under its source id: the proof recorded the
/// first time, unchanged, and audited as a call; a different proof under
/// that id is refused.
async fn replay_proof(
    transaction: Audited,
    caller: &Principal,
    source: &RequestId,
    fingerprint: &str,
    existing: Proof,
) -> Result<Recorded> {
    if existing.fingerprint != fingerprint {
        return Err(Error::AlreadyExists {
            entity: "proof of knowledge",
            field: "source_transaction_id".into(),
        });
    }
    let change = Change::new(RESOURCE, existing.id)
        .old(&existing)
        .new_values(&existing)
        .request_id(source.as_str());
    transaction.commit(caller, change).await?;
    Ok(Recorded {
        proof: existing,
        replayed: true,
    })
}

/// What a new proof must name: a user who is a student, and one of their
/// wallets to pay.
async fn check_student_and_wallet(db: &impl ConnectionTrait, new: &NewProof) -> Result<()> {
    let student = directory::find_user(db, new.student)
        .await?
        .ok_or_else(|| Error::not_found("user", new.student))?;
    if student.user_type != UserType::Student {
        return Err(Error::FailedPrecondition {
            reason: "NOT_A_STUDENT",
            message: format!(
                "user {} is a {}, not a student",
                student.id,
                student.user_type.as_str()
            ),
        });
    }
    let wallet = directory::find_wallet(db, new.wallet)
        .await?
        .ok_or_else(|| Error::not_found("wallet", new.wallet))?;
    if wallet.owner_id != student.id {
        return Err(Error::invalid(
            "wallet_id",
            "must be a wallet of the student's",
        ));
    }
    Ok(())
}

/// The ledger command that pays `proof`'s reward from the circulation pool,
/// with its ledger request id (one per proof, so it is paid once).
fn reward_payout(proof: &Proof, new: &NewProof) -> Result<(RequestId, Command)> {
    let mut metadata = serde_json::Map::new();
    metadata.insert("proof_of_knowledge_id".into(), proof.id.to_string().into());
    metadata.insert(
        "source_transaction_id".into(),
        proof.source_transaction_id.clone().into(),
    );
    let command = Command::PoolPayout {
        pool: SystemAccount::CirculationPool,
        to_wallet: new.wallet,
        amount: new.reward,
        note: Note {
            reason: format!("knowledge reward: {} {}", new.kind.as_str(), new.subject),
            metadata,
        },
    };
    let request_id = RequestId::parse(
        "source_transaction_id",
        &format!("azora:knowledge-reward:{}", proof.id),
    )?;
    Ok((request_id, command))
}

impl Rewards {
    pub fn new(
        db: DatabaseConnection,
        policy: AllocationPolicy,
        max_reward: Amount,
        cache: Cache,
    ) -> Self {
        Self {
            db,
            policy,
            max_reward,
            cache,
        }
    }

    /// Admins, machine accounts (users an admin gave the `service` role,
    /// such as a learning platform) and teachers verify, with any of their
    /// keys. A service key verifies for its user, so only if the user may: a
    /// member's own service key verifies nothing.
    async fn require_verifier(&self, caller: &Principal) -> Result<()> {
        if matches!(caller.user_role, Role::Admin | Role::Service) {
            return Ok(());
        }
        match directory::find_user(&self.db, caller.user_id).await? {
            Some(user) if user.user_type == UserType::Teacher => Ok(()),
            _ => Err(Error::PermissionDenied),
        }
    }

    pub async fn record(
        &self,
        caller: &Principal,
        record: RecordProofOfKnowledge,
    ) -> Result<Recorded> {
        let RecordProofOfKnowledge { source, proof: new } = record;
        self.require_verifier(caller).await?;
        if caller.user_id == new.student {
            return Err(Error::PermissionDenied);
        }
        if new.reward > self.max_reward {
            return Err(Error::invalid(
                "reward_amount",
                format!(
                    "must be at most {} AZR",
                    format_azr(self.max_reward.micros())
                ),
            ));
        }
        // Two concurrent calls with one source id: on PostgreSQL the second
        // insert waits for the first transaction and then hits the unique
        // index; its retry finds the committed proof and replays it.
        match self.try_record(caller, &source, &new).await {
            Err(Error::AlreadyExists { .. }) => self.try_record(caller, &source, &new).await,
            other => other,
        }
    }

    async fn try_record(
        &self,
        caller: &Principal,
        source: &RequestId,
        new: &NewProof,
    ) -> Result<Recorded> {
        let fingerprint = new.fingerprint();
        let mut transaction = Audited::begin(&self.db, &self.cache).await?;
        if let Some(existing) = store::find_by_source(&*transaction, source.as_str()).await? {
            return replay_proof(transaction, caller, source, &fingerprint, existing).await;
        }
        check_student_and_wallet(&*transaction, new).await?;
        let now = Utc::now().trunc_subsecs(6);
        let mut proof = Proof::verified(new, source, fingerprint, caller.user_id, now);
        // The proof first: its unique source id is what makes a concurrent
        // twin wait here, before any money moves.
        store::insert_proof(&*transaction, &proof).await?;
        let (ledger_request, command) = reward_payout(&proof, new)?;
        let paid = ledger::apply_one(
            &mut transaction,
            &self.policy,
            caller,
            ledger_request,
            command,
        )
        .await?;
        let earning = Earning::for_proof(&proof, new.wallet, new.reward, paid.id, now);
        store::insert_earning(&*transaction, &earning).await?;
        proof.reward = Some(earning);
        let change = Change::new(RESOURCE, proof.id)
            .new_values(&proof)
            .request_id(source.as_str());
        transaction.commit(caller, change).await?;
        Ok(Recorded {
            proof,
            replayed: false,
        })
    }

    pub async fn get_by_source(
        &self,
        caller: &Principal,
        get: GetKnowledgeReward,
    ) -> Result<Proof> {
        let source = get.source;
        caller.readable(
            store::find_by_source(&self.db, source.as_str()).await?,
            |proof| proof.student,
            || Error::not_found("knowledge reward", source.as_str()),
        )
    }

    pub async fn list_proofs(
        &self,
        caller: &Principal,
        list: ListProofsOfKnowledge,
    ) -> Result<Page<Proof>> {
        let ListProofsOfKnowledge {
            mut filter,
            page_size,
            page_token,
        } = list;
        filter.student = caller.visible_owner(filter.student)?;
        let page = PageRequest::parse(page_size, &page_token, &filter.fingerprint())?;
        let mut items = store::list_proofs(&self.db, &filter, &page).await?;
        let next_page_token = page.finish(&mut items, |proof| proof.id);
        Ok(Page {
            items,
            next_page_token,
        })
    }

    pub async fn list_earnings(
        &self,
        caller: &Principal,
        list: ListStudentEarnings,
    ) -> Result<Earnings> {
        let ListStudentEarnings {
            student,
            page_size,
            page_token,
        } = list;
        // Staff name a student; without one, everyone reads their own.
        let student = caller.visible_owner(student)?.unwrap_or(caller.user_id);
        let page = PageRequest::parse(
            page_size,
            &page_token,
            &format!("student_earnings|{student}"),
        )?;
        let mut items = store::list_earnings(&self.db, student, &page).await?;
        let next_page_token = page.finish(&mut items, |earning| earning.id);
        let (reward_count, total_micros) = store::total_earned(&self.db, student).await?;
        Ok(Earnings {
            page: Page {
                items,
                next_page_token,
            },
            reward_count,
            total_micros,
        })
    }
}
