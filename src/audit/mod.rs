//! The audit trail: one event for every mutating call, written in the same
//! database transaction as the change, and a tamper-evident hash chain over
//! all events.
//!
//! By construction: a write goes through [`Audited`], whose only way to
//! commit takes the [`Change`] it made and writes the event first; the ledger
//! writer records one event per command it applies. The authentication layer
//! records denied calls (PERMISSION_DENIED, and keys that were recognised but
//! revoked or expired) in their own transaction, and flags any successful
//! mutating call that recorded no event.
//!
//! The chain: events are inserted without a sequence number, so business
//! writes never wait on one another for it. A chainer (one at a time across
//! replicas, serialised on `audit_chain_head`) assigns gap-free sequence
//! numbers and hashes `sha256(previous hash, canonical event)` shortly after
//! they commit. [`verify`] recomputes the chain and names the first broken
//! sequence number.

pub mod entities;

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set, Statement,
};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use self::entities::{audit_event, chain_head};
use crate::auth::Principal;
use crate::db::{begin_write, classify};
use crate::error::Error;

type Result<T> = std::result::Result<T, Error>;

/// The hash before the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Events chained per chainer transaction at most.
const CHAIN_BATCH: u64 = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    PermissionDenied,
    Unauthenticated,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::PermissionDenied => "permission_denied",
            Outcome::Unauthenticated => "unauthenticated",
        }
    }
}

/// What a call changed: the resource, and its values before and after
/// (JSON; never secrets).
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub resource_type: &'static str,
    pub resource_id: String,
    pub old: Option<serde_json::Value>,
    pub new: Option<serde_json::Value>,
    pub request_id: Option<String>,
}

impl Change {
    pub fn new(resource_type: &'static str, resource_id: impl ToString) -> Self {
        Self {
            resource_type,
            resource_id: resource_id.to_string(),
            old: None,
            new: None,
            request_id: None,
        }
    }

    pub fn old(mut self, value: impl serde::Serialize) -> Self {
        self.old = serde_json::to_value(value).ok();
        self
    }

    pub fn new_values(mut self, value: impl serde::Serialize) -> Self {
        self.new = serde_json::to_value(value).ok();
        self
    }

    pub fn request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }
}

/// A write transaction that can only commit together with its audit event.
pub struct Audited {
    transaction: DatabaseTransaction,
}

impl std::ops::Deref for Audited {
    type Target = DatabaseTransaction;
    fn deref(&self) -> &DatabaseTransaction {
        &self.transaction
    }
}

impl Audited {
    pub async fn begin(db: &DatabaseConnection) -> Result<Self> {
        Ok(Self {
            transaction: begin_write(db).await?,
        })
    }

    /// Writes the event for `change`, then commits both.
    pub async fn commit(self, caller: &Principal, change: Change) -> Result<()> {
        record(&self.transaction, caller, change, Outcome::Ok).await?;
        self.transaction.commit().await.map_err(classify)?;
        caller.context.audited.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn canonical_json(value: &Option<serde_json::Value>) -> Option<String> {
    // serde_json's map is ordered by key, so this text is canonical.
    value.as_ref().map(|value| value.to_string())
}

/// Inserts one event in `db` (a transaction the caller commits).
pub async fn record(
    db: &impl ConnectionTrait,
    caller: &Principal,
    change: Change,
    outcome: Outcome,
) -> Result<()> {
    let Change {
        resource_type,
        resource_id,
        old,
        new,
        request_id,
    } = change;
    let actor = (!caller.user_id.is_nil()).then_some(caller.user_id);
    let key = (!caller.api_key_id.is_nil()).then_some(caller.api_key_id);
    audit_event::Entity::insert(audit_event::ActiveModel {
        id: Set(Uuid::now_v7()),
        recorded_at: Set(Utc::now().trunc_subsecs(6)),
        actor_user_id: Set(actor),
        actor_key_id: Set(key),
        action: Set(caller.context.method.clone()),
        resource_type: Set(resource_type.to_owned()),
        resource_id: Set(resource_id),
        old_values: Set(canonical_json(&old)),
        new_values: Set(canonical_json(&new)),
        peer_address: Set(caller.context.peer.clone()),
        user_agent: Set(caller.context.user_agent.clone()),
        request_id: Set(request_id.unwrap_or_default()),
        outcome: Set(outcome.as_str().to_owned()),
        sequence: Set(None),
        previous_hash: Set(None),
        hash: Set(None),
    })
    .exec_without_returning(db)
    .await
    .map_err(classify)?;
    Ok(())
}

/// Records a denied call in its own transaction.
pub async fn record_denied(
    db: &DatabaseConnection,
    caller: &Principal,
    outcome: Outcome,
) -> Result<()> {
    let transaction = begin_write(db).await?;
    let change = Change::new("rpc", caller.context.method.clone());
    record(&transaction, caller, change, outcome).await?;
    transaction.commit().await.map_err(classify)
}

/// The text an event's hash covers: every field, in a fixed order.
pub fn canonical_event(event: &audit_event::Model, sequence: i64) -> String {
    serde_json::json!({
        "action": event.action,
        "actor_key_id": event.actor_key_id,
        "actor_user_id": event.actor_user_id,
        "id": event.id,
        "new_values": event.new_values,
        "old_values": event.old_values,
        "outcome": event.outcome,
        "peer_address": event.peer_address,
        "recorded_at": event.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "request_id": event.request_id,
        "resource_id": event.resource_id,
        "resource_type": event.resource_type,
        "sequence": sequence,
        "user_agent": event.user_agent,
    })
    .to_string()
}

pub fn chain_hash(previous: &str, event: &audit_event::Model, sequence: i64) -> String {
    let mut hasher = Sha256::new();
    hasher.update(previous.as_bytes());
    hasher.update(b"\n");
    hasher.update(canonical_event(event, sequence).as_bytes());
    hex::encode(hasher.finalize())
}

/// Chains what has committed since the last run. Returns how many events it
/// chained.
pub async fn chain_pending(db: &DatabaseConnection) -> Result<usize> {
    let transaction = begin_write(db).await?;
    let head = chain_head::Entity::find_by_id(1)
        .lock_exclusive()
        .one(&transaction)
        .await
        .map_err(classify)?
        .ok_or_else(|| Error::internal("the audit chain head is missing"))?;
    let pending = audit_event::Entity::find()
        .filter(audit_event::Column::Sequence.is_null())
        .order_by_asc(audit_event::Column::RecordedAt)
        .order_by_asc(audit_event::Column::Id)
        .limit(CHAIN_BATCH)
        .all(&transaction)
        .await
        .map_err(classify)?;
    if pending.is_empty() {
        return Ok(0);
    }
    let (mut sequence, mut previous) = (head.sequence, head.hash);
    let mut links = Vec::with_capacity(pending.len());
    for event in &pending {
        sequence += 1;
        let hash = chain_hash(&previous, event, sequence);
        links.push((event.id, sequence, previous.clone(), hash.clone()));
        previous = hash;
    }
    write_links(&transaction, &links).await?;
    chain_head::Entity::update_many()
        .col_expr(chain_head::Column::Sequence, Expr::value(sequence))
        .col_expr(chain_head::Column::Hash, Expr::value(previous))
        .filter(chain_head::Column::Id.eq(1))
        .exec(&transaction)
        .await
        .map_err(classify)?;
    transaction.commit().await.map_err(classify)?;
    Ok(links.len())
}

async fn write_links(
    db: &DatabaseTransaction,
    links: &[(Uuid, i64, String, String)],
) -> Result<()> {
    if db.get_database_backend() == DbBackend::Postgres {
        let ids: Vec<Uuid> = links.iter().map(|link| link.0).collect();
        let sequences: Vec<i64> = links.iter().map(|link| link.1).collect();
        let previous: Vec<String> = links.iter().map(|link| link.2.clone()).collect();
        let hashes: Vec<String> = links.iter().map(|link| link.3.clone()).collect();
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE audit_events AS e SET sequence = v.sequence, previous_hash = v.previous_hash, hash = v.hash \
             FROM UNNEST($1::uuid[], $2::bigint[], $3::text[], $4::text[]) AS v(id, sequence, previous_hash, hash) \
             WHERE e.id = v.id",
            [ids.into(), sequences.into(), previous.into(), hashes.into()],
        ))
        .await
        .map_err(classify)?;
        return Ok(());
    }
    for (id, sequence, previous, hash) in links {
        audit_event::Entity::update_many()
            .col_expr(audit_event::Column::Sequence, Expr::value(*sequence))
            .col_expr(
                audit_event::Column::PreviousHash,
                Expr::value(previous.clone()),
            )
            .col_expr(audit_event::Column::Hash, Expr::value(hash.clone()))
            .filter(audit_event::Column::Id.eq(*id))
            .exec(db)
            .await
            .map_err(classify)?;
    }
    Ok(())
}

/// Runs the chainer until `stop`: every `interval`, and at once again while
/// there is a backlog.
pub async fn run_chainer(db: DatabaseConnection, interval: Duration, stop: CancellationToken) {
    loop {
        let chained = match chain_pending(&db).await {
            Ok(count) => count,
            Err(error) => {
                tracing::warn!(%error, "audit chaining failed; will retry");
                0
            }
        };
        if chained as u64 == CHAIN_BATCH {
            continue;
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// The result of checking the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    pub intact: bool,
    pub first_broken_sequence: Option<i64>,
    pub checked: i64,
    pub head_sequence: i64,
    pub head_hash: String,
    pub unchained: i64,
}

/// Recomputes the chain over `[from, to]` (to the head when `to` is None):
/// a deleted event shows as a gap, an edited one as a hash that no longer
/// matches, a reordered one as a broken link.
pub async fn verify(db: &impl ConnectionTrait, from: i64, to: Option<i64>) -> Result<Verification> {
    let head = chain_head::Entity::find_by_id(1)
        .one(db)
        .await
        .map_err(classify)?
        .ok_or_else(|| Error::internal("the audit chain head is missing"))?;
    let unchained = audit_event::Entity::find()
        .filter(audit_event::Column::Sequence.is_null())
        .count(db)
        .await
        .map_err(classify)? as i64;
    let last = to.unwrap_or(head.sequence).min(head.sequence);
    let mut previous = if from <= 1 {
        GENESIS_HASH.to_owned()
    } else {
        match audit_event::Entity::find()
            .filter(audit_event::Column::Sequence.eq(from - 1))
            .one(db)
            .await
            .map_err(classify)?
        {
            Some(event) => event.hash.unwrap_or_default(),
            None => String::new(),
        }
    };
    let broken = |sequence: i64, checked: i64| Verification {
        intact: false,
        first_broken_sequence: Some(sequence),
        checked,
        head_sequence: head.sequence,
        head_hash: head.hash.clone(),
        unchained,
    };
    let mut expected = from.max(1);
    let mut checked = 0;
    while expected <= last {
        let events = audit_event::Entity::find()
            .filter(audit_event::Column::Sequence.gte(expected))
            .filter(audit_event::Column::Sequence.lte(last))
            .order_by_asc(audit_event::Column::Sequence)
            .limit(CHAIN_BATCH)
            .all(db)
            .await
            .map_err(classify)?;
        if events.is_empty() {
            return Ok(broken(expected, checked));
        }
        for event in events {
            let sequence = event.sequence.unwrap_or_default();
            if sequence != expected
                || event.previous_hash.as_deref() != Some(previous.as_str())
                || event.hash.as_deref() != Some(chain_hash(&previous, &event, sequence).as_str())
            {
                return Ok(broken(expected, checked));
            }
            previous = event.hash.unwrap_or_default();
            expected += 1;
            checked += 1;
        }
    }
    // The head must be the last link: deleting the newest events is a break too.
    if to.is_none() && previous != head.hash && head.sequence > 0 {
        return Ok(broken(head.sequence, checked));
    }
    Ok(Verification {
        intact: true,
        first_broken_sequence: None,
        checked,
        head_sequence: head.sequence,
        head_hash: head.hash.clone(),
        unchained,
    })
}
