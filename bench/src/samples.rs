//! `azora-bench samples`: mining samples streamed by concurrent rigs
//! (RecordStatistics), each with its own session and connection; first,
//! with `--preload-samples`, GetMiningPerformance over a long history
//! ([`mining_history`]).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use azora::proto::identity as ipb;
use azora::proto::identity::identity_service_client::IdentityServiceClient;
use azora::proto::mining as mpb;
use azora::proto::mining::mining_service_client::MiningServiceClient;
use azora_testkit::{RunningServer, authed, azr, timestamp};
use sea_orm::sqlx::postgres::PgPoolOptions;
use tonic::transport::Channel;

use crate::mining_history;
use crate::phase::{ClientTally, merge};
use crate::setup::{create_holder, start_server};

/// The holders the preloaded sessions belong to, round robin.
const HISTORY_MINERS: usize = 20;

pub(crate) struct Options {
    pub rigs: usize,
    pub duration: Duration,
    pub stream_size: usize,
    pub batch: usize,
    pub preload_samples: u64,
    pub preload_sessions: usize,
}

pub(crate) async fn run(options: Options, database_url: &str) -> anyhow::Result<()> {
    let Options {
        rigs,
        duration,
        stream_size,
        batch,
        preload_samples,
        preload_sessions,
    } = options;
    // No Redis: every GetMiningPerformance reads the database.
    let server = start_server(database_url, None, |settings| settings.ledger_writers = 2).await?;
    let history = if preload_samples > 0 {
        Some(history(&server, database_url, preload_samples, preload_sessions).await?)
    } else {
        None
    };
    let sessions = start_rigs(&server, rigs).await?;
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for (key, session) in sessions {
        let channel = azora_testkit::connect(server.address).await?;
        tasks.spawn(rig(channel, key, session, deadline, stream_size, batch));
    }
    let phase = merge(tasks.join_all().await, started.elapsed());
    server.stop().await?;
    println!(
        "azora-bench samples: {rigs} rigs, streams of {stream_size} samples in messages of {batch}, PostgreSQL"
    );
    println!(
        "RecordStatistics {:>9} samples in {:>5.1} s = {:>8.0} samples/s (target >= 20000); per stream p50 {:.1} ms, p99 {:.1} ms; failed streams {}",
        phase.completed,
        phase.elapsed.as_secs_f64(),
        phase.rate(),
        phase.percentile_ms(0.50),
        phase.percentile_ms(0.99),
        phase.errors
    );
    if let Some(timed) = &history {
        for window in timed {
            println!(
                "after {preload_samples} samples over {preload_sessions} sessions: GetMiningPerformance {:<24} ({:>7} samples) p50 {:>7.2} ms   p99 {:>7.2} ms;   former statements on the samples p50 {:>8.2} ms   p99 {:>8.2} ms",
                window.name,
                window.samples_in_window,
                window.rollups.0,
                window.rollups.1,
                window.raw.0,
                window.raw.1
            );
        }
    }
    let preloading = if preload_samples > 0 {
        format!(" --preload-samples {preload_samples} --preload-sessions {preload_sessions}")
    } else {
        String::new()
    };
    println!(
        "command: cargo run --release -p azora-bench -- samples --rigs {rigs} --duration {}s --stream {stream_size} --batch {batch}{preloading}",
        duration.as_secs()
    );
    Ok(())
}

/// Loads the history through a pool of its own, and times the reads over it.
async fn history(
    server: &RunningServer,
    database_url: &str,
    samples: u64,
    sessions: usize,
) -> anyhow::Result<Vec<mining_history::Timed>> {
    let channel = azora_testkit::connect(server.address).await?;
    let mut identity = IdentityServiceClient::new(channel.clone());
    let mut wallets = Vec::new();
    for index in 0..HISTORY_MINERS.min(sessions) {
        let username = format!("history{index:04}");
        let (_, wallet) = create_holder(
            &mut identity,
            &server.admin_key,
            &username,
            ipb::Role::Member,
            index,
        )
        .await?;
        wallets.push(uuid::Uuid::parse_str(&wallet)?);
    }
    let pool = PgPoolOptions::new()
        .max_connections(2)
        // As the server connects: TLS only when the URL asks for it.
        .connect(&azora::db::with_explicit_ssl_mode(database_url))
        .await?;
    eprintln!("loading {samples} historical samples over {sessions} sessions…");
    mining_history::preload(&pool, &wallets, sessions, samples).await?;
    let timed = mining_history::performance_latencies(&channel, &pool, &server.admin_key).await;
    pool.close().await;
    timed
}

/// `rigs` holders of a service key, each with a started session:
/// (key, session id).
async fn start_rigs(server: &RunningServer, rigs: usize) -> anyhow::Result<Vec<(String, String)>> {
    let channel = azora_testkit::connect(server.address).await?;
    let mut identity = IdentityServiceClient::new(channel.clone());
    let mut mining = MiningServiceClient::new(channel);
    let mut sessions = Vec::new();
    for index in 0..rigs {
        let username = format!("rig{index:04}");
        let (key, wallet) = create_holder(
            &mut identity,
            &server.admin_key,
            &username,
            ipb::Role::Service,
            index,
        )
        .await?;
        let session = mining
            .start_session(authed(
                &key,
                mpb::StartSessionRequest {
                    wallet_id: wallet,
                    algorithm: "sha256".into(),
                    pool_name: "bench".into(),
                    ..Default::default()
                },
            ))
            .await?
            .into_inner()
            .session
            .context("session")?;
        sessions.push((key, session.id));
    }
    Ok(sessions)
}

/// One rig: streams of `stream_size` samples, in messages of `batch`, one
/// after another until `deadline`. Counts samples stored and failed streams.
async fn rig(
    channel: Channel,
    key: String,
    session: String,
    deadline: Instant,
    stream_size: usize,
    batch: usize,
) -> ClientTally {
    let mut mining = MiningServiceClient::new(channel);
    let (mut stored, mut errors, mut latencies) = (0usize, 0usize, Vec::new());
    while Instant::now() < deadline {
        let messages = statistics(&session, stream_size, batch);
        let sent = Instant::now();
        match mining
            .record_statistics(authed(&key, tokio_stream::iter(messages)))
            .await
        {
            Ok(response) => {
                stored += response.into_inner().samples_stored as usize;
                latencies.push(sent.elapsed().as_micros() as u32);
            }
            Err(_) => errors += 1,
        }
    }
    (stored, errors, latencies)
}

/// One stream's messages: `stream_size` samples a microsecond apart from
/// now, `batch` to a message.
fn statistics(
    session: &str,
    stream_size: usize,
    batch: usize,
) -> Vec<mpb::RecordStatisticsRequest> {
    let now = chrono::Utc::now();
    (0..stream_size)
        .collect::<Vec<_>>()
        .chunks(batch.max(1))
        .map(|chunk| mpb::RecordStatisticsRequest {
            session_id: session.to_owned(),
            samples: chunk
                .iter()
                .map(|index| mpb::Sample {
                    sample_time: Some(timestamp(
                        now + chrono::Duration::microseconds(*index as i64),
                    )),
                    hashrate_mhs: 95.0 + (*index % 10) as f64,
                    power_watts: 1250.0,
                    temperature_celsius: 64.0,
                    shares_accepted: 3,
                    shares_rejected: 0,
                    difficulty: 1.2e12,
                    network_hashrate_mhs: 4.0e11,
                    earnings_usd: azr("0.000125"),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .collect()
}
