//! MiningService over gRPC, including the client-streaming RecordStatistics
//! and the server-streaming WatchSession: each handler parses the request
//! into domain types, calls one operation and converts the result back.

use std::pin::Pin;
use std::time::Duration as StdDuration;

use chrono::{Duration, Utc};
use futures::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::domain::{
    MAX_SAMPLES_PER_STREAM, NewSession, Performance, PerformanceWindow, RawSample, RecordedSamples,
    Sample, Session, SessionFilter, SessionStatus, SessionWatch, Statistics, parse_algorithm,
    parse_text,
};
use super::operations::{Mining, Recorded};
use crate::auth::principal;
use crate::error::{Error, FieldViolation};
use crate::idempotency::{Fingerprint, RequestKey};
use crate::pagination::PageQuery;
use crate::proto::mining::{self as pb, mining_service_server::MiningService};
use crate::streams::Watchers;
use crate::transport::{
    Violations, azr_decimal as decimal, optional, optional_time, parse_id, polling_stream,
    request_key, timestamp,
};

/// How often a WatchSession stream looks for new samples.
const WATCH_POLL: StdDuration = StdDuration::from_millis(200);
/// Violations a RecordStatistics stream collects before it is refused.
const MAX_STREAM_VIOLATIONS: usize = 10;

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

impl From<Session> for pb::Session {
    fn from(session: Session) -> Self {
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
            status: status.to_wire(),
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
}

impl From<Sample> for pb::Sample {
    fn from(sample: Sample) -> Self {
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
}

/// Sample `index` of a stream (counting every sample, valid or not, so that
/// violations name the right one).
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
    let at = optional_time(&format!("{prefix}.sample_time"), sample_time.as_ref())
        .map_err(|violation| vec![violation])?;
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

impl From<Performance> for pb::Performance {
    fn from(performance: Performance) -> Self {
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
}

impl From<Recorded> for pb::RecordStatisticsResponse {
    fn from(recorded: Recorded) -> Self {
        let Recorded {
            session,
            stored,
            skipped,
            replayed,
        } = recorded;
        pb::RecordStatisticsResponse {
            session: Some(session.into()),
            samples_stored: stored,
            samples_skipped: skipped,
            replayed,
        }
    }
}

impl TryFrom<pb::StartSessionRequest> for NewSession {
    type Error = Error;
    fn try_from(request: pb::StartSessionRequest) -> Result<Self, Error> {
        let pb::StartSessionRequest {
            miner_id,
            wallet_id,
            algorithm,
            pool_name,
            pool_url,
            worker_name,
            request_id: _,
        } = request;
        let mut v = Violations::default();
        let miner = v.check(optional(&miner_id, |text| parse_id("miner_id", text)));
        let wallet = v.check(parse_id("wallet_id", &wallet_id));
        let algorithm = v.check(parse_algorithm("algorithm", &algorithm));
        let pool_name = v.check(parse_text("pool_name", &pool_name, true, 64));
        let pool_url = v.check(parse_text("pool_url", &pool_url, false, 256));
        let worker_name = v.check(parse_text("worker_name", &worker_name, false, 64));
        v.finish(|| {
            Some(NewSession {
                miner: miner?,
                wallet: wallet?,
                algorithm: algorithm?,
                pool_name: pool_name?,
                pool_url: pool_url?,
                worker_name: worker_name?,
            })
        })
    }
}

impl TryFrom<pb::ListSessionsRequest> for PageQuery<SessionFilter> {
    type Error = Error;
    fn try_from(request: pb::ListSessionsRequest) -> Result<Self, Error> {
        let pb::ListSessionsRequest {
            page_size,
            page_token,
            miner_id,
            status,
            algorithm,
            start_time,
            end_time,
        } = request;
        let mut v = Violations::default();
        let miner = v.check(optional(&miner_id, |text| parse_id("miner_id", text)));
        let status = v.check(SessionStatus::from_wire("status", status));
        let algorithm = v.check(optional(&algorithm, |text| {
            parse_algorithm("algorithm", text)
        }));
        let start = v.check(optional_time("start_time", start_time.as_ref()));
        let end = v.check(optional_time("end_time", end_time.as_ref()));
        v.finish(|| {
            Some(PageQuery {
                filter: SessionFilter {
                    miner: miner?,
                    status: status?,
                    algorithm: algorithm?,
                    start: start?,
                    end: end?,
                },
                page_size,
                page_token,
            })
        })
    }
}

impl TryFrom<pb::GetMiningPerformanceRequest> for PerformanceWindow {
    type Error = Error;
    /// The window defaults to the 24 hours before its end, which defaults
    /// to now.
    fn try_from(request: pb::GetMiningPerformanceRequest) -> Result<Self, Error> {
        let pb::GetMiningPerformanceRequest {
            start_time,
            end_time,
            miner_id,
        } = request;
        let mut v = Violations::default();
        let start = v.check(optional_time("start_time", start_time.as_ref()));
        let end = v.check(optional_time("end_time", end_time.as_ref()));
        let miner = v.check(optional(&miner_id, |text| parse_id("miner_id", text)));
        let (start, end, miner) = v.finish(|| Some((start?, end?, miner?)))?;
        let end = end.unwrap_or_else(Utc::now);
        let start = start.unwrap_or(end - Duration::hours(24));
        if start >= end {
            return Err(Error::invalid("end_time", "must be after start_time"));
        }
        Ok(PerformanceWindow { start, end, miner })
    }
}

impl TryFrom<pb::WatchSessionRequest> for SessionWatch {
    type Error = Error;
    fn try_from(request: pb::WatchSessionRequest) -> Result<Self, Error> {
        let pb::WatchSessionRequest {
            session_id,
            after_sequence,
        } = request;
        let mut v = Violations::default();
        let session = v.check(parse_id("session_id", &session_id));
        if after_sequence < 0 {
            v.0.push(FieldViolation::new(
                "after_sequence",
                "must not be negative",
            ));
        }
        v.finish(|| {
            Some(SessionWatch {
                session: session?,
                after: after_sequence,
            })
        })
    }
}

/// A RecordStatistics stream as it is read: every message is checked as it
/// arrives, and nothing is stored unless the whole stream is valid.
#[derive(Default)]
struct StatisticsReader {
    session_id: Option<String>,
    request_id: String,
    /// A resent stream is recognised by all of its messages.
    fingerprint: Fingerprint,
    messages: usize,
    samples: Vec<Sample>,
    violations: Vec<FieldViolation>,
    /// Samples seen, valid or not.
    position: usize,
}

impl StatisticsReader {
    /// Reads the whole stream: its retry key and its samples.
    async fn read(
        mut stream: Streaming<pb::RecordStatisticsRequest>,
    ) -> Result<(Option<RequestKey>, Statistics), Status> {
        let mut reader = Self::default();
        while let Some(message) = stream.message().await? {
            reader.add(message)?;
        }
        Ok(reader.finish()?)
    }

    fn add(&mut self, message: pb::RecordStatisticsRequest) -> Result<(), Error> {
        self.take_request_id(&message.request_id)?;
        self.messages += 1;
        // Only a stream with an id can be recognised as resent: without one,
        // re-encoding every sample would be wasted work.
        if !self.request_id.is_empty() {
            self.fingerprint.add(&message);
        }
        let pb::RecordStatisticsRequest {
            session_id,
            samples,
            request_id: _,
        } = message;
        self.take_session_id(session_id)?;
        self.add_samples(samples)
    }

    fn take_request_id(&mut self, request_id: &str) -> Result<(), Error> {
        if request_id.is_empty() {
            return Ok(());
        }
        if self.request_id.is_empty() && self.messages == 0 {
            self.request_id = request_id.to_owned();
            return Ok(());
        }
        if request_id != self.request_id {
            return Err(Error::invalid(
                "request_id",
                "must be set in the first message and the same or empty in later ones",
            ));
        }
        Ok(())
    }

    fn take_session_id(&mut self, session_id: String) -> Result<(), Error> {
        match &self.session_id {
            None => self.session_id = Some(session_id),
            Some(first) if *first != session_id => {
                return Err(Error::invalid(
                    "session_id",
                    "must be the same in every message of a stream",
                ));
            }
            Some(_) => {}
        }
        Ok(())
    }

    fn add_samples(&mut self, samples: Vec<pb::Sample>) -> Result<(), Error> {
        if self.position + samples.len() > MAX_SAMPLES_PER_STREAM {
            return Err(Error::invalid(
                "samples",
                format!("at most {MAX_SAMPLES_PER_STREAM} samples per stream"),
            ));
        }
        for sample in samples {
            match sample_from_proto(self.position, sample) {
                Ok(sample) => self.samples.push(sample),
                Err(found) => self.violations.extend(found),
            }
            self.position += 1;
            if self.violations.len() >= MAX_STREAM_VIOLATIONS {
                return Err(Error::InvalidArgument(std::mem::take(&mut self.violations)));
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<(Option<RequestKey>, Statistics), Error> {
        if !self.violations.is_empty() {
            return Err(Error::InvalidArgument(self.violations));
        }
        let session = parse_id("session_id", self.session_id.as_deref().unwrap_or_default())?;
        if self.samples.is_empty() {
            return Err(Error::invalid(
                "samples",
                "a stream must carry at least one sample",
            ));
        }
        let key = self.fingerprint.key("request_id", &self.request_id)?;
        let samples = self.samples;
        Ok((key, Statistics { session, samples }))
    }
}

fn watched_samples(samples: RecordedSamples) -> pb::WatchSessionResponse {
    pb::WatchSessionResponse {
        samples: samples
            .into_iter()
            .map(|(sequence, sample)| pb::RecordedSample {
                sequence,
                sample: Some(sample.into()),
            })
            .collect(),
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
        let new = NewSession::try_from(message)?;
        let session = self.mining.start_session(&caller, key, new).await?;
        Ok(Response::new(pb::StartSessionResponse {
            session: Some(session.into()),
        }))
    }

    async fn record_statistics(
        &self,
        request: Request<Streaming<pb::RecordStatisticsRequest>>,
    ) -> Result<Response<pb::RecordStatisticsResponse>, Status> {
        let caller = principal(&request)?;
        let (key, statistics) = StatisticsReader::read(request.into_inner()).await?;
        let recorded = self
            .mining
            .record_statistics(&caller, key, statistics)
            .await?;
        Ok(Response::new(recorded.into()))
    }

    async fn end_session(
        &self,
        request: Request<pb::EndSessionRequest>,
    ) -> Result<Response<pb::EndSessionResponse>, Status> {
        let caller = principal(&request)?;
        let message = request.into_inner();
        let key = request_key(&message, &message.request_id)?;
        let id = parse_id("session_id", &message.session_id).map_err(Error::from)?;
        let session = self.mining.end_session(&caller, key, id).await?;
        Ok(Response::new(pb::EndSessionResponse {
            session: Some(session.into()),
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
            session: Some(session.into()),
        }))
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let caller = principal(&request)?;
        let query = PageQuery::try_from(request.into_inner())?;
        let page = self.mining.list_sessions(&caller, query).await?;
        Ok(Response::new(pb::ListSessionsResponse {
            sessions: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn get_mining_performance(
        &self,
        request: Request<pb::GetMiningPerformanceRequest>,
    ) -> Result<Response<pb::GetMiningPerformanceResponse>, Status> {
        let caller = principal(&request)?;
        let window = PerformanceWindow::try_from(request.into_inner())?;
        let (by_algorithm, by_pool) = self.mining.performance(&caller, window).await?;
        Ok(Response::new(pb::GetMiningPerformanceResponse {
            by_algorithm: by_algorithm.into_iter().map(Into::into).collect(),
            by_pool: by_pool.into_iter().map(Into::into).collect(),
            start_time: Some(timestamp(window.start)),
            end_time: Some(timestamp(window.end)),
        }))
    }

    type WatchSessionStream = WatchStream;

    /// Polls the database (not an in-process channel), so a watcher on one
    /// replica sees samples recorded through another.
    async fn watch_session(
        &self,
        request: Request<pb::WatchSessionRequest>,
    ) -> Result<Response<Self::WatchSessionStream>, Status> {
        let caller = principal(&request)?;
        let watch = SessionWatch::try_from(request.into_inner())?;
        self.mining.start_watching_session(&caller, watch).await?;
        let permit = self.watchers.open(&caller)?;
        let mining = self.mining.clone();
        let poll = move |after| {
            let mining = mining.clone();
            async move {
                let (after, polled) = mining.poll_session(watch.session, after).await?;
                Ok((after, polled.map(watched_samples)))
            }
        };
        let stream = polling_stream(WATCH_POLL, self.shutdown.clone(), permit, watch.after, poll);
        Ok(Response::new(stream))
    }
}
