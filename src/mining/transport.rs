//! MiningService over gRPC, including the client-streaming RecordStatistics
//! and the server-streaming WatchSession.

use std::pin::Pin;
use std::time::Duration as StdDuration;

use chrono::{Duration, Utc};
use futures::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use super::domain::{
    MAX_SAMPLES_PER_STREAM, NewSession, Performance, RawSample, Sample, Session, SessionFilter,
    SessionStatus, parse_algorithm, parse_text,
};
use super::operations::Mining;
use super::store;
use crate::auth::principal;
use crate::error::{Error, FieldViolation};
use crate::idempotency::Fingerprint;
use crate::proto::mining::{self as pb, mining_service_server::MiningService};
use crate::streams::Watchers;
use crate::transport::parse_id;
use crate::transport::{
    Polled, Violations, azr_decimal as decimal, datetime_from, optional, polling_stream,
    request_key, timestamp,
};

/// How often a WatchSession stream looks for new samples.
const WATCH_POLL: StdDuration = StdDuration::from_millis(200);
/// Samples per WatchSession message at most.
const WATCH_BATCH: u64 = 500;

pub struct MiningApi {
    mining: Mining,
    watchers: Watchers,
    shutdown: CancellationToken,
}

impl MiningApi {
    /// `watchers` bounds and re-checks WatchSession streams; `shutdown` ends
    /// them when the server drains.
    pub fn new(mining: Mining, watchers: Watchers, shutdown: CancellationToken) -> Self {
        Self {
            mining,
            watchers,
            shutdown,
        }
    }
}

fn status_to(status: SessionStatus) -> pb::SessionStatus {
    match status {
        SessionStatus::Active => pb::SessionStatus::Active,
        SessionStatus::Ended => pb::SessionStatus::Ended,
    }
}

fn session_to_proto(session: Session) -> pb::Session {
    let (average_hashrate_mhs, average_power_watts, energy_kwh) = (
        session.average_hashrate(),
        session.average_power(),
        session.energy_kwh(),
    );
    let minted = if session.mint_transaction.is_some() {
        session.earnings_micros
    } else {
        0
    };
    let Session {
        id,
        miner,
        wallet,
        algorithm,
        pool_name,
        pool_url,
        worker_name,
        status,
        started_at,
        ended_at,
        last_sample_at: _,
        sample_count,
        hashrate_sum: _,
        power_sum: _,
        shares_accepted,
        shares_rejected,
        earnings_micros,
        mint_transaction,
        last_rig_sequence,
    } = session;
    pb::Session {
        id: id.to_string(),
        miner_id: miner.to_string(),
        wallet_id: wallet.to_string(),
        algorithm,
        pool_name,
        pool_url,
        worker_name,
        status: status_to(status) as i32,
        start_time: Some(timestamp(started_at)),
        end_time: ended_at.map(timestamp),
        sample_count,
        average_hashrate_mhs,
        average_power_watts,
        energy_kwh,
        shares_accepted,
        shares_rejected,
        total_earnings_usd: decimal(earnings_micros),
        mint_transaction_id: mint_transaction
            .map(|id| id.to_string())
            .unwrap_or_default(),
        minted_azr: decimal(minted),
        last_rig_sequence: last_rig_sequence.unwrap_or_default(),
    }
}

fn sample_to_proto(sample: Sample) -> pb::Sample {
    let Sample {
        at,
        hashrate_mhs,
        power_watts,
        temperature_celsius,
        shares_accepted,
        shares_rejected,
        difficulty,
        network_hashrate_mhs,
        earnings_micros,
        rig_sequence,
    } = sample;
    pb::Sample {
        sample_time: Some(timestamp(at)),
        hashrate_mhs,
        power_watts,
        temperature_celsius,
        shares_accepted,
        shares_rejected,
        difficulty,
        network_hashrate_mhs,
        earnings_usd: decimal(earnings_micros),
        rig_sequence: rig_sequence.unwrap_or_default(),
    }
}

fn sample_from_proto(index: usize, sample: pb::Sample) -> Result<Sample, Vec<FieldViolation>> {
    let pb::Sample {
        sample_time,
        hashrate_mhs,
        power_watts,
        temperature_celsius,
        shares_accepted,
        shares_rejected,
        difficulty,
        network_hashrate_mhs,
        earnings_usd,
        rig_sequence,
    } = sample;
    let prefix = format!("samples[{index}]");
    let at = match sample_time
        .as_ref()
        .map(|at| datetime_from(&format!("{prefix}.sample_time"), at))
        .transpose()
    {
        Ok(at) => at,
        Err(violation) => return Err(vec![violation]),
    };
    let earnings = earnings_usd
        .map(|decimal| decimal.value)
        .unwrap_or_default();
    Sample::parse(
        &prefix,
        RawSample {
            at,
            hashrate_mhs,
            power_watts,
            temperature_celsius,
            shares_accepted,
            shares_rejected,
            difficulty,
            network_hashrate_mhs,
            earnings_usd: &earnings,
            rig_sequence,
        },
    )
}

fn performance_to_proto(performance: Performance) -> pb::Performance {
    pb::Performance {
        acceptance_rate: performance.acceptance_rate(),
        hashrate_per_watt: performance.hashrate_per_watt(),
        key: performance.key,
        session_count: performance.sessions,
        sample_count: performance.samples,
        average_hashrate_mhs: performance.average_hashrate,
        earnings_usd: Some(crate::proto::types::Decimal {
            value: crate::fixed::format_wide_units(
                performance.earnings_micros,
                crate::money::AZR_SCALE,
            ),
        }),
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchSessionResponse, Status>> + Send>>;

#[tonic::async_trait]
impl MiningService for MiningApi {
    async fn start_session(
        &self,
        request: Request<pb::StartSessionRequest>,
    ) -> Result<Response<pb::StartSessionResponse>, Status> {
        let caller = principal(&request)?;
        let message = request.into_inner();
        let key = request_key(&message, &message.request_id)?;
        let pb::StartSessionRequest {
            miner_id,
            wallet_id,
            algorithm,
            pool_name,
            pool_url,
            worker_name,
            request_id: _,
        } = message;
        let mut v = Violations::default();
        let miner = v.check(optional(&miner_id, |text| parse_id("miner_id", text)));
        let wallet = v.check(parse_id("wallet_id", &wallet_id));
        let algorithm = v.check(parse_algorithm("algorithm", &algorithm));
        let pool_name = v.check(parse_text("pool_name", &pool_name, true, 64));
        let pool_url = v.check(parse_text("pool_url", &pool_url, false, 256));
        let worker_name = v.check(parse_text("worker_name", &worker_name, false, 64));
        let new = v.finish(|| {
            Some(NewSession {
                miner: miner?,
                wallet: wallet?,
                algorithm: algorithm?,
                pool_name: pool_name?,
                pool_url: pool_url?,
                worker_name: worker_name?,
            })
        })?;
        let session = self.mining.start_session(&caller, key, new).await?;
        Ok(Response::new(pb::StartSessionResponse {
            session: Some(session_to_proto(session)),
        }))
    }

    async fn record_statistics(
        &self,
        request: Request<Streaming<pb::RecordStatisticsRequest>>,
    ) -> Result<Response<pb::RecordStatisticsResponse>, Status> {
        let caller = principal(&request)?;
        let mut stream = request.into_inner();
        let mut session_id: Option<String> = None;
        let mut request_id = String::new();
        // A resent stream is recognised by all of its messages.
        let mut fingerprint = Fingerprint::default();
        let mut first = true;
        let mut samples = Vec::new();
        let mut violations = Vec::new();
        // Every sample of the stream counts, valid or not, so errors name
        // the right one.
        let mut position = 0usize;
        // Read the whole stream first: nothing is stored unless every sample
        // is valid.
        while let Some(message) = stream.message().await? {
            if !message.request_id.is_empty() {
                if request_id.is_empty() && first {
                    request_id = message.request_id.clone();
                } else if message.request_id != request_id {
                    return Err(Error::invalid(
                        "request_id",
                        "must be set in the first message and the same or empty in later ones",
                    )
                    .into());
                }
            }
            first = false;
            // Only a stream with an id can be recognised as resent: without
            // one, re-encoding every sample would be wasted work.
            if !request_id.is_empty() {
                fingerprint.add(&message);
            }
            let pb::RecordStatisticsRequest {
                session_id: id,
                samples: batch,
                request_id: _,
            } = message;
            match &session_id {
                None => session_id = Some(id),
                Some(first) if *first != id => {
                    return Err(Error::invalid(
                        "session_id",
                        "must be the same in every message of a stream",
                    )
                    .into());
                }
                Some(_) => {}
            }
            if position + batch.len() > MAX_SAMPLES_PER_STREAM {
                return Err(Error::invalid(
                    "samples",
                    format!("at most {MAX_SAMPLES_PER_STREAM} samples per stream"),
                )
                .into());
            }
            for sample in batch {
                match sample_from_proto(position, sample) {
                    Ok(sample) => samples.push(sample),
                    Err(found) => violations.extend(found),
                }
                position += 1;
                if violations.len() >= 10 {
                    return Err(Error::InvalidArgument(violations).into());
                }
            }
        }
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations).into());
        }
        let id = parse_id("session_id", session_id.as_deref().unwrap_or_default())
            .map_err(Error::from)?;
        if samples.is_empty() {
            return Err(
                Error::invalid("samples", "a stream must carry at least one sample").into(),
            );
        }
        let key = fingerprint
            .key("request_id", &request_id)
            .map_err(Error::from)?;
        let recorded = self
            .mining
            .record_statistics(&caller, key, id, samples)
            .await?;
        Ok(Response::new(pb::RecordStatisticsResponse {
            session: Some(session_to_proto(recorded.session)),
            samples_stored: recorded.stored,
            samples_skipped: recorded.skipped,
            replayed: recorded.replayed,
        }))
    }

    async fn end_session(
        &self,
        request: Request<pb::EndSessionRequest>,
    ) -> Result<Response<pb::EndSessionResponse>, Status> {
        let caller = principal(&request)?;
        let message = request.into_inner();
        let key = request_key(&message, &message.request_id)?;
        let pb::EndSessionRequest {
            session_id,
            request_id: _,
        } = message;
        let id = parse_id("session_id", &session_id).map_err(Error::from)?;
        let session = self.mining.end_session(&caller, key, id).await?;
        Ok(Response::new(pb::EndSessionResponse {
            session: Some(session_to_proto(session)),
        }))
    }

    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::GetSessionResponse>, Status> {
        let caller = principal(&request)?;
        let pb::GetSessionRequest { session_id } = request.into_inner();
        let id = parse_id("session_id", &session_id).map_err(Error::from)?;
        let session = self.mining.get_session(&caller, id).await?;
        Ok(Response::new(pb::GetSessionResponse {
            session: Some(session_to_proto(session)),
        }))
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let caller = principal(&request)?;
        let pb::ListSessionsRequest {
            page_size,
            page_token,
            miner_id,
            status,
            algorithm,
            start_time,
            end_time,
        } = request.into_inner();
        let mut v = Violations::default();
        let miner = v.check(optional(&miner_id, |text| parse_id("miner_id", text)));
        let status = v.check(match pb::SessionStatus::try_from(status) {
            Ok(pb::SessionStatus::Unspecified) => Ok(None),
            Ok(pb::SessionStatus::Active) => Ok(Some(SessionStatus::Active)),
            Ok(pb::SessionStatus::Ended) => Ok(Some(SessionStatus::Ended)),
            Err(_) => Err(FieldViolation::new(
                "status",
                "is not a known session status",
            )),
        });
        let algorithm = v.check(optional(&algorithm, |text| {
            parse_algorithm("algorithm", text)
        }));
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
        let filter = v.finish(|| {
            Some(SessionFilter {
                miner: miner?,
                status: status?,
                algorithm: algorithm?,
                start: start?,
                end: end?,
            })
        })?;
        let page = self
            .mining
            .list_sessions(&caller, filter, page_size, &page_token)
            .await?;
        Ok(Response::new(pb::ListSessionsResponse {
            sessions: page.items.into_iter().map(session_to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn get_mining_performance(
        &self,
        request: Request<pb::GetMiningPerformanceRequest>,
    ) -> Result<Response<pb::GetMiningPerformanceResponse>, Status> {
        let caller = principal(&request)?;
        let pb::GetMiningPerformanceRequest {
            start_time,
            end_time,
            miner_id,
        } = request.into_inner();
        let mut v = Violations::default();
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
        let miner = v.check(optional(&miner_id, |text| parse_id("miner_id", text)));
        let (start, end, miner) = v.finish(|| Some((start?, end?, miner?)))?;
        let end = end.unwrap_or_else(Utc::now);
        let start = start.unwrap_or(end - Duration::hours(24));
        if start >= end {
            return Err(Error::invalid("end_time", "must be after start_time").into());
        }
        let (by_algorithm, by_pool) = self.mining.performance(&caller, start, end, miner).await?;
        Ok(Response::new(pb::GetMiningPerformanceResponse {
            by_algorithm: by_algorithm.into_iter().map(performance_to_proto).collect(),
            by_pool: by_pool.into_iter().map(performance_to_proto).collect(),
            start_time: Some(timestamp(start)),
            end_time: Some(timestamp(end)),
        }))
    }

    type WatchSessionStream = WatchStream;

    async fn watch_session(
        &self,
        request: Request<pb::WatchSessionRequest>,
    ) -> Result<Response<Self::WatchSessionStream>, Status> {
        let caller = principal(&request)?;
        let pb::WatchSessionRequest {
            session_id,
            after_sequence,
        } = request.into_inner();
        let mut v = Violations::default();
        let id = v.check(parse_id("session_id", &session_id));
        if after_sequence < 0 {
            v.0.push(FieldViolation::new(
                "after_sequence",
                "must not be negative",
            ));
        }
        let id: Uuid = v.finish(|| id)?;
        self.mining.get_session(&caller, id).await?;
        let permit = self.watchers.open(&caller)?;
        let db = self.mining.database().clone();
        // Polling the database (not an in-process channel) lets a watcher on
        // one replica see samples recorded through another. A session's
        // samples are inserted under its row lock, so their sequence (row id)
        // order is their commit order and a cursor can skip none.
        let shutdown = self.shutdown.clone();
        let stream = polling_stream(WATCH_POLL, shutdown, permit, after_sequence, move |after| {
            let db = db.clone();
            async move {
                let batch = store::samples_after(&db, id, after, WATCH_BATCH).await?;
                if let Some((last, _)) = batch.last() {
                    let last = *last;
                    let message = pb::WatchSessionResponse {
                        samples: batch
                            .into_iter()
                            .map(|(sequence, sample)| pb::RecordedSample {
                                sequence,
                                sample: Some(sample_to_proto(sample)),
                            })
                            .collect(),
                    };
                    return Ok((last, Polled::Messages(vec![message])));
                }
                // Nothing new: the stream ends once the session has ended
                // (its samples were committed before it ended).
                let ended = store::find_session(&db, id)
                    .await?
                    .is_some_and(|session| session.status == SessionStatus::Ended);
                let drained = ended && store::samples_after(&db, id, after, 1).await?.is_empty();
                Ok((
                    after,
                    if drained {
                        Polled::Finished
                    } else {
                        Polled::Nothing
                    },
                ))
            }
        });
        Ok(Response::new(stream))
    }
}
