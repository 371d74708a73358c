//! Mining use cases: who may touch which session, all-or-nothing streams, and
//! ending a session together with the mint of its earnings.

use chrono::{Duration, SubsecRound, Utc};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use super::domain::{
    ALLOWED_CLOCK_SKEW_SECONDS, HourTotals, NewSession, Performance, PerformanceWindow,
    RecordedSamples, Sample, Session, SessionFilter, SessionStatus, SessionWatch, Statistics,
};
use super::store;
use crate::audit::{Audited, Begun, Change, Replay};
use crate::auth::{Principal, Role};
use crate::cache::{Cache, Entry, Generation, Invalidation};
use crate::error::{Error, FieldViolation};
use crate::idempotency::RequestKey;
use crate::identity::directory;
use crate::money::{Amount, RequestId};
use crate::pagination::{Page, PageQuery, PageRequest};
use crate::transport::Polled;
use crate::treasury::domain::{AllocationPolicy, Command, Note};
use crate::treasury::ledger;

type Result<T> = std::result::Result<T, Error>;

/// Roles that mine (for themselves); auditors only read.
const MINERS: &[Role] = &[Role::Admin, Role::Treasurer, Role::Member, Role::Service];
/// Samples per WatchSession message at most.
const WATCH_BATCH: u64 = 500;
/// Samples outside their session's time named per refusal at most.
const MAX_TIME_VIOLATIONS: usize = 10;

/// What a `RecordStatistics` stream did.
pub struct Recorded {
    pub session: Session,
    pub stored: i64,
    /// Numbered samples the session already held.
    pub skipped: i64,
    /// A resent stream: nothing was stored now.
    pub replayed: bool,
}

#[derive(Clone)]
pub struct Mining {
    db: DatabaseConnection,
    policy: AllocationPolicy,
    cache: Cache,
    /// Earnings up to this are minted at once; above it, or always when
    /// `None`, they wait as a pending claim for a treasurer.
    auto_confirm_limit: Option<Amount>,
}

/// The cached performance figures a session's samples feed.
fn performance_changed(miner: Uuid) -> Invalidation {
    Invalidation::of([Generation::Miner(miner), Generation::Mining])
}

impl Mining {
    pub fn new(
        db: DatabaseConnection,
        policy: AllocationPolicy,
        cache: Cache,
        auto_confirm_limit: Option<Amount>,
    ) -> Self {
        Self {
            db,
            policy,
            cache,
            auto_confirm_limit,
        }
    }

    /// Answers a retry with the session as it is now, and invalidates what
    /// the first call may have committed without invalidating (it may have
    /// died in between): the miner's figures and the session's wallet.
    async fn replay_session(&self, mut replay: Replay, caller: &Principal) -> Result<Session> {
        let session = store::find_session(replay.transaction(), replay.resource_id()?)
            .await?
            .ok_or_else(|| Error::internal("a replayed mining session is gone"))?;
        let mut invalidation = performance_changed(session.miner);
        invalidation.add(Generation::Wallet(session.wallet));
        invalidation.add(Generation::Ledger);
        replay.invalidate(invalidation);
        replay.answer(caller, "mining_session", session).await
    }

    pub async fn start_session(
        &self,
        caller: &Principal,
        key: Option<RequestKey>,
        new: NewSession,
    ) -> Result<Session> {
        caller.require_role(MINERS)?;
        let miner = new.miner.unwrap_or(caller.user_id);
        if miner != caller.user_id && !caller.is_admin() {
            return Err(Error::PermissionDenied);
        }
        match directory::find_wallet(&self.db, new.wallet).await? {
            Some(wallet) if wallet.owner_id == miner => {}
            Some(_) if caller.is_admin() => {
                return Err(Error::invalid("wallet_id", "must be a wallet of the miner"));
            }
            None if caller.is_admin() => return Err(Error::not_found("wallet", new.wallet)),
            _ => return Err(Error::PermissionDenied),
        }
        let session = Session {
            id: Uuid::now_v7(),
            miner,
            wallet: new.wallet,
            algorithm: new.algorithm,
            pool_name: new.pool_name,
            pool_url: new.pool_url,
            worker_name: new.worker_name,
            status: SessionStatus::Active,
            started_at: Utc::now().trunc_subsecs(6),
            ended_at: None,
            last_sample_at: None,
            last_rig_sequence: None,
            sample_count: 0,
            hashrate_sum: 0.0,
            power_sum: 0.0,
            shares_accepted: 0,
            shares_rejected: 0,
            earnings_micros: 0,
            mint_transaction: None,
        };
        let transaction =
            match Audited::begin_once(&self.db, &self.cache, caller, key.as_ref()).await? {
                Begun::Fresh(transaction) => transaction,
                Begun::Replay(replay) => return self.replay_session(replay, caller).await,
            };
        store::insert_session(&*transaction, &session).await?;
        transaction
            .commit(
                caller,
                Change::new("mining_session", session.id).new_values(&session),
            )
            .await?;
        Ok(session)
    }

    /// Only the miner (or an admin) writes to a session; anyone else learns
    /// nothing about it, not even whether it exists.
    fn check_writer(caller: &Principal, found: Option<Session>, id: Uuid) -> Result<Session> {
        match found {
            Some(session) if session.miner == caller.user_id || caller.is_admin() => Ok(session),
            None if caller.role.reads_everything() => Err(Error::not_found("mining session", id)),
            _ => Err(Error::PermissionDenied),
        }
    }

    /// Stores a stream's samples, all or none, and adds them to the
    /// session's totals and to its hourly rollups in the same transaction;
    /// numbered samples the session already holds are skipped, and a resent
    /// stream (same request id) stores nothing.
    pub async fn record_statistics(
        &self,
        caller: &Principal,
        key: Option<RequestKey>,
        statistics: Statistics,
    ) -> Result<Recorded> {
        caller.require_role(MINERS)?;
        let Statistics {
            session: id,
            samples,
        } = statistics;
        let sent = samples.len() as i64;
        let mut transaction =
            match Audited::begin_once(&self.db, &self.cache, caller, key.as_ref()).await? {
                Begun::Fresh(transaction) => transaction,
                Begun::Replay(replay) => {
                    // The same stream again: it was stored whole the first time.
                    let session = self.replay_session(replay, caller).await?;
                    return Ok(Recorded {
                        session,
                        stored: sent,
                        skipped: 0,
                        replayed: true,
                    });
                }
            };
        let mut session =
            Self::check_writer(caller, store::lock_session(&*transaction, id).await?, id)?;
        check_takes_samples(&session, &samples)?;
        let before = serde_json::json!({ "sample_count": session.sample_count, "earnings_micros": session.earnings_micros });
        let samples = session
            .new_samples(samples)
            .and_then(|samples| session.absorb(&samples).map(|()| samples))
            .map_err(|violation| Error::InvalidArgument(vec![violation]))?;
        let skipped = sent - samples.len() as i64;
        store::insert_samples(&*transaction, id, &samples).await?;
        store::add_to_rollups(&*transaction, id, &HourTotals::of_samples(&samples)).await?;
        store::update_session(&*transaction, &session).await?;
        // The totals, not every sample: the samples themselves are the record.
        let after = serde_json::json!({
            "sample_count": session.sample_count,
            "earnings_micros": session.earnings_micros,
            "samples_stored": samples.len(),
            "samples_skipped": skipped,
        });
        transaction.invalidate(performance_changed(session.miner));
        let change = Change::new("mining_session", id)
            .old(before)
            .new_values(after);
        transaction.commit(caller, change).await?;
        Ok(Recorded {
            session,
            stored: samples.len() as i64,
            skipped,
            replayed: false,
        })
    }

    /// Closes the session and records the claim to its earnings in one
    /// database transaction; an ended session is returned as it is.
    ///
    /// A rig's figures are its own word: nothing backs that AZR with USD
    /// until the pool pays out. So the mint is created *pending* (no
    /// entries, not spendable) and a treasurer confirms it with the payout's
    /// reference or rejects it (`ConfirmTransaction` / `FailTransaction`).
    /// Only earnings within the operator's auto-confirm limit are minted at
    /// once.
    pub async fn end_session(
        &self,
        caller: &Principal,
        key: Option<RequestKey>,
        id: Uuid,
    ) -> Result<Session> {
        caller.require_role(MINERS)?;
        let mut transaction =
            match Audited::begin_once(&self.db, &self.cache, caller, key.as_ref()).await? {
                Begun::Fresh(transaction) => transaction,
                Begun::Replay(replay) => return self.replay_session(replay, caller).await,
            };
        let mut session =
            Self::check_writer(caller, store::lock_session(&*transaction, id).await?, id)?;
        let before = session.clone();
        if session.status == SessionStatus::Ended {
            let change = Change::new("mining_session", id)
                .old(&before)
                .new_values(&session);
            transaction.commit(caller, change).await?;
            return Ok(session);
        }
        let now = Utc::now().trunc_subsecs(6);
        transaction.invalidate(performance_changed(session.miner));
        session.status = SessionStatus::Ended;
        session.ended_at = Some(now);
        if session.earnings_micros > 0 {
            let command = self.earnings_mint(&session)?;
            let request_id = RequestId::parse("request_id", &format!("azora:mining-session:{id}"))?;
            let miner = Principal {
                user_id: session.miner,
                ..caller.clone()
            };
            let minted =
                ledger::apply_one(&mut transaction, &self.policy, &miner, request_id, command)
                    .await?;
            session.mint_transaction = Some(minted.id);
        }
        store::update_session(&*transaction, &session).await?;
        transaction
            .commit(
                caller,
                Change::new("mining_session", id)
                    .old(&before)
                    .new_values(&session),
            )
            .await?;
        Ok(session)
    }

    /// The mint of an ended session's earnings: pending for a treasurer to
    /// confirm, unless within the auto-confirm limit.
    fn earnings_mint(&self, session: &Session) -> Result<Command> {
        let id = session.id;
        let amount = Amount::from_micros(session.earnings_micros).ok_or_else(|| {
            Error::FailedPrecondition {
                reason: "EARNINGS_TOO_LARGE",
                message: "the session's earnings exceed the largest single mint".into(),
            }
        })?;
        let mut metadata = serde_json::Map::new();
        metadata.insert(
            "mining_session_id".into(),
            serde_json::Value::String(id.to_string()),
        );
        let trusted = self.auto_confirm_limit.is_some_and(|limit| amount <= limit);
        Ok(Command::Mint {
            amount,
            to_wallet: Some(session.wallet),
            note: Note {
                reason: format!("earnings of mining session {id}"),
                metadata,
            },
            mining_session: Some(id),
            pending: !trusted,
            backing_reference: trusted.then(|| format!("auto-confirm:{id}")),
        })
    }

    pub async fn get_session(&self, caller: &Principal, id: Uuid) -> Result<Session> {
        caller.readable(
            store::find_session(&self.db, id).await?,
            |session| session.miner,
            || Error::not_found("mining session", id),
        )
    }

    pub async fn list_sessions(
        &self,
        caller: &Principal,
        query: PageQuery<SessionFilter>,
    ) -> Result<Page<Session>> {
        let PageQuery {
            mut filter,
            page_size,
            page_token,
        } = query;
        filter.miner = caller.visible_owner(filter.miner)?;
        let page = PageRequest::parse(page_size, &page_token, &filter.fingerprint())?;
        let mut sessions = store::list_sessions(&self.db, &filter, &page).await?;
        let next_page_token = page.finish(&mut sessions, |session| session.id);
        Ok(Page {
            items: sessions,
            next_page_token,
        })
    }

    /// Performance by algorithm and by pool over the window (cached).
    pub async fn performance(
        &self,
        caller: &Principal,
        window: PerformanceWindow,
    ) -> Result<(Vec<Performance>, Vec<Performance>)> {
        let PerformanceWindow { start, end, miner } = window;
        let miner = caller.visible_owner(miner)?;
        let entry = Entry::MiningPerformance { miner, start, end };
        self.cache
            .get_or_load(entry, || async {
                Ok(Some(store::performance(&self.db, start, end, miner).await?))
            })
            .await?
            .ok_or_else(|| Error::internal("no performance"))
    }

    /// A caller may watch the sessions they may read.
    pub async fn start_watching_session(
        &self,
        caller: &Principal,
        watch: SessionWatch,
    ) -> Result<()> {
        self.get_session(caller, watch.session).await.map(drop)
    }

    /// One poll of a WatchSession stream: the session's samples after
    /// sequence `after` (at most [`WATCH_BATCH`]) and the cursor past them.
    /// A session's samples are inserted under its row lock, so their
    /// sequence (row id) order is their commit order and the cursor skips
    /// none. With nothing new, the stream is finished once the session has
    /// ended (its samples were committed before it ended).
    pub async fn poll_session(
        &self,
        id: Uuid,
        after: i64,
    ) -> Result<(i64, Polled<RecordedSamples>)> {
        let batch = store::samples_after(&self.db, id, after, WATCH_BATCH).await?;
        if let Some((last, _)) = batch.last() {
            return Ok((*last, Polled::Messages(vec![batch])));
        }
        let ended = store::find_session(&self.db, id)
            .await?
            .is_some_and(|session| session.status == SessionStatus::Ended);
        let drained = ended
            && store::samples_after(&self.db, id, after, 1)
                .await?
                .is_empty();
        Ok((
            after,
            if drained {
                Polled::Finished
            } else {
                Polled::Nothing
            },
        ))
    }
}

/// A session takes samples while active, each within its time: not before
/// its start, not in the future (beyond a rig's clock skew).
fn check_takes_samples(session: &Session, samples: &[Sample]) -> Result<()> {
    if session.status == SessionStatus::Ended {
        return Err(Error::FailedPrecondition {
            reason: "SESSION_ENDED",
            message: format!(
                "mining session {} has ended and takes no more samples",
                session.id
            ),
        });
    }
    let latest = Utc::now() + Duration::seconds(ALLOWED_CLOCK_SKEW_SECONDS);
    let outside: Vec<FieldViolation> = samples
        .iter()
        .enumerate()
        .filter(|(_, sample)| sample.at < session.started_at || sample.at > latest)
        .take(MAX_TIME_VIOLATIONS)
        .map(|(index, _)| {
            FieldViolation::new(
                format!("samples[{index}].sample_time"),
                "must be within the session: not before its start, not in the future",
            )
        })
        .collect();
    if outside.is_empty() {
        Ok(())
    } else {
        Err(Error::InvalidArgument(outside))
    }
}
