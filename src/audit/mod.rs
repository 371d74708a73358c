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
//! The chain: events are inserted with a row in `audit_pending` and no
//! sequence number, so business writes never wait on one another for it. A
//! chainer (one at a time across replicas, serialised on `audit_chain_head`)
//! gives them gap-free sequence numbers in `audit_chain`, each link hashing
//! `sha256(previous hash, canonical event)`, shortly after they commit. [`verify`] recomputes the chain and names the first broken
//! sequence number.

pub mod entities;

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    DbBackend, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set, Statement,
};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use self::entities::{audit_event, chain, chain_head, pending};
use crate::auth::Principal;
use crate::cache::{Cache, Invalidation};
use crate::db::{begin_write, classify};
use crate::error::Error;
use crate::idempotency::{self, Claim, RequestKey};

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

/// The unit of work of every mutating path: a write transaction that can
/// only commit together with its audit event (and, for a call with a request
/// id, with that id's key), and that invalidates the cached reads it changed
/// once — and only once — the commit has succeeded.
///
/// What to invalidate is declared as the work goes ([`Audited::invalidate`];
/// the ledger's in-transaction path adds its own), so no caller can commit a
/// change and forget the cache, or invalidate before the commit and let a
/// reader cache the old value again.
pub struct Audited {
    transaction: DatabaseTransaction,
    key: Option<(Uuid, RequestKey)>,
    cache: Cache,
    invalidation: Invalidation,
}

/// How a retry-safe call begins ([`Audited::begin_once`]).
pub enum Begun {
    /// First use of the request id (or none was sent): do the work.
    Fresh(Audited),
    /// A retry: answer with what the first call produced.
    Replay(Replay),
}

/// A retry of a call that already succeeded: the resource it produced, and
/// a transaction to audit this call in (every call is audited once).
pub struct Replay {
    transaction: Audited,
    resource_id: String,
}

impl Replay {
    /// The id of the resource the first call produced.
    pub fn resource_id(&self) -> Result<Uuid> {
        Uuid::parse_str(&self.resource_id).map_err(|_| {
            Error::internal(format!(
                "request key names resource {:?}, not an id",
                self.resource_id
            ))
        })
    }

    pub fn transaction(&self) -> &DatabaseTransaction {
        &self.transaction
    }

    /// Audits this call as a replay of `resource` (unchanged) and returns it.
    pub async fn answer<T: serde::Serialize>(
        self,
        caller: &Principal,
        resource_type: &'static str,
        resource: T,
    ) -> Result<T> {
        let change = Change::new(resource_type, &self.resource_id)
            .old(&resource)
            .new_values(&resource);
        self.transaction.commit(caller, change).await?;
        Ok(resource)
    }

    /// What to invalidate after the replay commits: the first call may have
    /// died between its commit and its own invalidation.
    pub fn invalidate(&mut self, invalidation: Invalidation) {
        self.transaction.invalidate(invalidation);
    }
}

impl std::ops::Deref for Audited {
    type Target = DatabaseTransaction;
    fn deref(&self) -> &DatabaseTransaction {
        &self.transaction
    }
}

impl Audited {
    pub async fn begin(db: &DatabaseConnection, cache: &Cache) -> Result<Self> {
        Ok(Self {
            transaction: begin_write(db).await?,
            key: None,
            cache: cache.clone(),
            invalidation: Invalidation::default(),
        })
    }

    /// Cached reads this work changes, invalidated after it commits.
    pub fn invalidate(&mut self, invalidation: Invalidation) {
        self.invalidation.merge(invalidation);
    }

    /// Begins a call that is safe to retry: with a request key, claims it
    /// first (see [`crate::idempotency`]); a retry of a call that succeeded
    /// gets [`Begun::Replay`], a reuse for another request INVALID_ARGUMENT.
    pub async fn begin_once(
        db: &DatabaseConnection,
        cache: &Cache,
        caller: &Principal,
        key: Option<&RequestKey>,
    ) -> Result<Begun> {
        let mut transaction = Self::begin(db, cache).await?;
        let Some(key) = key else {
            return Ok(Begun::Fresh(transaction));
        };
        let claimed =
            idempotency::claim(&*transaction, caller.user_id, &caller.context.method, key).await?;
        Ok(match claimed {
            Claim::Fresh => {
                transaction.key = Some((caller.user_id, key.clone()));
                Begun::Fresh(transaction)
            }
            Claim::Replay { resource_id } => Begun::Replay(Replay {
                transaction,
                resource_id,
            }),
        })
    }

    /// Writes the event for `change` (and settles the request key on what
    /// it produced), commits both, then invalidates what the work changed.
    pub async fn commit(self, caller: &Principal, mut change: Change) -> Result<()> {
        if let Some((user, key)) = &self.key {
            idempotency::settle(
                &self.transaction,
                *user,
                key,
                change.resource_type,
                &change.resource_id,
            )
            .await?;
            change
                .request_id
                .get_or_insert_with(|| key.request_id().to_owned());
        }
        record(&self.transaction, caller, change, Outcome::Ok).await?;
        self.transaction.commit().await.map_err(classify)?;
        caller.context.audited.fetch_add(1, Ordering::SeqCst);
        self.cache.invalidate(self.invalidation).await;
        Ok(())
    }

    /// Commits a batch of changes made for many callers (the ledger writer's
    /// group commit): one event each, one commit, one invalidation.
    pub async fn commit_all(self, events: Vec<(&Principal, Change)>) -> Result<()> {
        debug_assert!(self.key.is_none(), "a batch settles no single request key");
        let callers: Vec<&Principal> = events.iter().map(|(caller, _)| *caller).collect();
        let events = events
            .into_iter()
            .map(|(caller, change)| (caller, change, Outcome::Ok))
            .collect();
        record_many(&self.transaction, events).await?;
        self.transaction.commit().await.map_err(classify)?;
        for caller in callers {
            caller.context.audited.fetch_add(1, Ordering::SeqCst);
        }
        self.cache.invalidate(self.invalidation).await;
        Ok(())
    }

    /// Gives up the change: nothing is written, no event recorded.
    pub async fn rollback(self) -> Result<()> {
        self.transaction.rollback().await.map_err(classify)
    }
}

fn canonical_json(value: &Option<serde_json::Value>) -> Option<String> {
    // serde_json's map is ordered by key, so this text is canonical.
    value.as_ref().map(|value| value.to_string())
}

fn event_row(
    caller: &Principal,
    change: Change,
    outcome: Outcome,
    at: chrono::DateTime<Utc>,
) -> audit_event::Model {
    let Change {
        resource_type,
        resource_id,
        old,
        new,
        request_id,
    } = change;
    if let Some(request_id) = &request_id {
        caller.context.note.set_request_id(request_id);
    }
    let actor = (!caller.user_id.is_nil()).then_some(caller.user_id);
    let key = (!caller.api_key_id.is_nil()).then_some(caller.api_key_id);
    audit_event::Model {
        id: Uuid::now_v7(),
        recorded_at: at,
        actor_user_id: actor,
        actor_key_id: key,
        action: caller.context.method.clone(),
        resource_type: resource_type.to_owned(),
        resource_id,
        old_values: canonical_json(&old),
        new_values: canonical_json(&new),
        peer_address: caller.context.peer.clone(),
        user_agent: caller.context.user_agent.clone(),
        request_id: request_id.unwrap_or_default(),
        outcome: outcome.as_str().to_owned(),
    }
}

/// Inserts one event in `db` (a transaction the caller commits).
pub async fn record(
    db: &impl ConnectionTrait,
    caller: &Principal,
    change: Change,
    outcome: Outcome,
) -> Result<()> {
    record_many(db, vec![(caller, change, outcome)]).await
}

/// Inserts many events in one statement (the ledger writer's batches).
pub async fn record_many(
    db: &impl ConnectionTrait,
    events: Vec<(&Principal, Change, Outcome)>,
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let at = Utc::now().trunc_subsecs(6);
    let rows: Vec<audit_event::Model> = events
        .into_iter()
        .map(|(caller, change, outcome)| event_row(caller, change, outcome, at))
        .collect();
    if db.get_database_backend() == DbBackend::Postgres {
        let span = tracing::info_span!(
            target: crate::telemetry::TARGET,
            "db.audit_events",
            db.system = "postgresql",
            events = rows.len(),
        );
        return tracing::Instrument::instrument(record_many_postgres(db, &rows), span).await;
    }
    let queued: Vec<pending::ActiveModel> = rows
        .iter()
        .map(|row| pending::ActiveModel {
            event_id: Set(row.id),
            recorded_at: Set(at),
        })
        .collect();
    let rows = rows
        .into_iter()
        .map(|row| audit_event::ActiveModel::from(row).reset_all());
    audit_event::Entity::insert_many(rows)
        .exec_without_returning(db)
        .await
        .map_err(classify)?;
    pending::Entity::insert_many(queued)
        .exec_without_returning(db)
        .await
        .map_err(classify)?;
    Ok(())
}

/// The events and their places in the chain's queue in one statement
/// whatever their count: a round trip and a plan per count were a good part
/// of a ledger batch's time. The rows travel as one JSON array read back
/// into the table's own row type.
async fn record_many_postgres(
    db: &impl ConnectionTrait,
    rows: &[audit_event::Model],
) -> Result<()> {
    let json = serde_json::to_string(rows)
        .map_err(|error| Error::internal(format!("encoding audit events: {error}")))?;
    let inserted = db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "WITH events AS ( \
                 INSERT INTO audit_events \
                 SELECT * FROM json_populate_recordset(NULL::audit_events, $1::json) \
                 RETURNING id, recorded_at) \
             INSERT INTO audit_pending (event_id, recorded_at) SELECT id, recorded_at FROM events",
            [json.into()],
        ))
        .await
        .map_err(classify)?
        .rows_affected();
    if inserted != rows.len() as u64 {
        return Err(Error::internal(format!(
            "{inserted} of {} audit events were queued",
            rows.len()
        )));
    }
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
    let queued: Vec<Uuid> = pending::Entity::find()
        .select_only()
        .column(pending::Column::EventId)
        .order_by_asc(pending::Column::RecordedAt)
        .order_by_asc(pending::Column::EventId)
        .limit(CHAIN_BATCH)
        .into_tuple()
        .all(&transaction)
        .await
        .map_err(classify)?;
    if queued.is_empty() {
        return Ok(0);
    }
    let mut events = audit_event::Entity::find()
        .filter(audit_event::Column::Id.is_in(queued.iter().copied()))
        .all(&transaction)
        .await
        .map_err(classify)?;
    events.sort_by_key(|event| (event.recorded_at, event.id));
    let (mut sequence, mut previous) = (head.sequence, head.hash);
    let mut links = Vec::with_capacity(events.len());
    for event in &events {
        sequence += 1;
        let hash = chain_hash(&previous, event, sequence);
        links.push(chain::ActiveModel {
            sequence: Set(sequence),
            event_id: Set(event.id),
            previous_hash: Set(previous.clone()),
            hash: Set(hash.clone()),
        });
        previous = hash;
    }
    let chained = links.len();
    chain::Entity::insert_many(links)
        .exec_without_returning(&transaction)
        .await
        .map_err(classify)?;
    pending::Entity::delete_many()
        .filter(pending::Column::EventId.is_in(queued))
        .exec(&transaction)
        .await
        .map_err(classify)?;
    chain_head::Entity::update_many()
        .col_expr(chain_head::Column::Sequence, Expr::value(sequence))
        .col_expr(chain_head::Column::Hash, Expr::value(previous))
        .filter(chain_head::Column::Id.eq(1))
        .exec(&transaction)
        .await
        .map_err(classify)?;
    transaction.commit().await.map_err(classify)?;
    Ok(chained)
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

/// Events recorded and not yet chained.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backlog {
    pub events: i64,
    /// When the oldest of them was recorded.
    pub oldest: Option<chrono::DateTime<Utc>>,
}

pub async fn backlog(db: &impl ConnectionTrait) -> Result<Backlog> {
    let events = pending::Entity::find().count(db).await.map_err(classify)? as i64;
    let oldest = pending::Entity::find()
        .order_by_asc(pending::Column::RecordedAt)
        .one(db)
        .await
        .map_err(classify)?
        .map(|row| row.recorded_at);
    Ok(Backlog { events, oldest })
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

/// Recomputes the chain over `[from, to]` (to the head when `to` is None;
/// `from` 1 or less is the start): a deleted event or link shows as a gap,
/// an edited event as a hash that no longer matches, a reordered one as a
/// broken link.
///
/// Only a range that exists is verified, so a break always means tampering:
/// `to` before `from` is INVALID_ARGUMENT, and `from` or `to` beyond the head
/// is OUT_OF_RANGE. (Verifying past the head once looked for links that were
/// never written and reported an intact chain as broken at its head.)
pub async fn verify(db: &impl ConnectionTrait, from: i64, to: Option<i64>) -> Result<Verification> {
    let head = chain_head::Entity::find_by_id(1)
        .one(db)
        .await
        .map_err(classify)?
        .ok_or_else(|| Error::internal("the audit chain head is missing"))?;
    check_range(from, to, head.sequence)?;
    let unchained = pending::Entity::find().count(db).await.map_err(classify)? as i64;
    let walk = walk_links(db, from, to.unwrap_or(head.sequence)).await?;
    // The head must be the last link: deleting the newest links is a break too.
    let broken_at = walk.broken_at.or_else(|| {
        (to.is_none() && head.sequence > 0 && walk.previous != head.hash).then_some(head.sequence)
    });
    Ok(Verification {
        intact: broken_at.is_none(),
        first_broken_sequence: broken_at,
        checked: walk.checked,
        head_sequence: head.sequence,
        head_hash: head.hash,
        unchained,
    })
}

/// A range to verify must exist (see [`verify`]).
fn check_range(from: i64, to: Option<i64>, head: i64) -> Result<()> {
    if let Some(to) = to.filter(|to| *to < from) {
        return Err(Error::invalid(
            "to_sequence",
            format!("{to} is before from_sequence {from}"),
        ));
    }
    if from > 1 && from > head {
        return Err(Error::OutOfRange {
            field: "from_sequence",
            message: format!("{from} is beyond the chain head {head}"),
        });
    }
    if let Some(to) = to.filter(|to| *to > head) {
        return Err(Error::OutOfRange {
            field: "to_sequence",
            message: format!("{to} is beyond the chain head {head}"),
        });
    }
    Ok(())
}

/// How far a walk along the chain got.
struct Walk {
    /// Links that were intact.
    checked: i64,
    /// The hash of the last intact link (or of the link before `from`).
    previous: String,
    /// The first sequence number that is missing or does not hash.
    broken_at: Option<i64>,
}

/// Recomputes links `from..=last`, a batch at a time, stopping at the first
/// that is missing or does not hash.
async fn walk_links(db: &impl ConnectionTrait, from: i64, last: i64) -> Result<Walk> {
    let mut walk = Walk {
        checked: 0,
        previous: hash_before(db, from).await?,
        broken_at: None,
    };
    let mut expected = from.max(1);
    while expected <= last {
        let links = chain::Entity::find()
            .filter(chain::Column::Sequence.gte(expected))
            .filter(chain::Column::Sequence.lte(last))
            .order_by_asc(chain::Column::Sequence)
            .limit(CHAIN_BATCH)
            .all(db)
            .await
            .map_err(classify)?;
        if links.is_empty() {
            walk.broken_at = Some(expected);
            return Ok(walk);
        }
        let events = events_by_id(db, links.iter().map(|link| link.event_id)).await?;
        for link in links {
            let intact = link.sequence == expected
                && link.previous_hash == walk.previous
                && events.get(&link.event_id).is_some_and(|event| {
                    chain_hash(&walk.previous, event, link.sequence) == link.hash
                });
            if !intact {
                walk.broken_at = Some(expected);
                return Ok(walk);
            }
            walk.previous = link.hash;
            expected += 1;
            walk.checked += 1;
        }
    }
    Ok(walk)
}

/// The hash a walk starting at `from` must find as its first link's
/// previous hash.
async fn hash_before(db: &impl ConnectionTrait, from: i64) -> Result<String> {
    if from <= 1 {
        return Ok(GENESIS_HASH.to_owned());
    }
    Ok(chain::Entity::find_by_id(from - 1)
        .one(db)
        .await
        .map_err(classify)?
        .map(|link| link.hash)
        .unwrap_or_default())
}

async fn events_by_id(
    db: &impl ConnectionTrait,
    ids: impl Iterator<Item = Uuid>,
) -> Result<std::collections::HashMap<Uuid, audit_event::Model>> {
    Ok(audit_event::Entity::find()
        .filter(audit_event::Column::Id.is_in(ids))
        .all(db)
        .await
        .map_err(classify)?
        .into_iter()
        .map(|event| (event.id, event))
        .collect())
}

/// The chain links of some events, by event id.
pub async fn links_of(
    db: &impl ConnectionTrait,
    events: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, chain::Model>> {
    if events.is_empty() {
        return Ok(Default::default());
    }
    Ok(chain::Entity::find()
        .filter(chain::Column::EventId.is_in(events.iter().copied()))
        .all(db)
        .await
        .map_err(classify)?
        .into_iter()
        .map(|link| (link.event_id, link))
        .collect())
}
