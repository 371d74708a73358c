//! GetMiningPerformance answered from the hourly rollups of samples
//! (migration 000019), on PostgreSQL and SQLite: the figures of any window
//! are those its samples say, the compliance report recomputes the rollups
//! and flags one changed behind Mining's back, and the migration's backfill
//! builds the same rows as RecordStatistics does.
//!
//! A session takes samples only from its start, and a test cannot wait
//! hours: each test moves its sessions' start four hours back in the
//! database, then streams samples over those hours through the API.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, DurationRound, Utc};
use sea_orm::{ConnectionTrait, EntityTrait, Value};

use crate::common::money::micros;
use crate::common::{Backend, TestApp, authed, compliance, mining};
use azora::mining::entities::rollup;
use azora::proto::compliance as cpb;
use azora::proto::mining as pb;
use azora::proto::types::Decimal;
use migration::MigratorTrait;

on_both_backends!(
    performance_over_any_window_is_what_its_samples_say,
    the_compliance_report_recomputes_the_rollups_and_flags_a_changed_one,
    the_migration_backfills_the_rollups_that_recording_builds,
);

/// One sample as it was sent, with what it is grouped by.
#[derive(Clone)]
struct Sent {
    session: String,
    miner: String,
    algorithm: &'static str,
    pool: &'static str,
    at: DateTime<Utc>,
    hashrate: f64,
    power: f64,
    accepted: i64,
    rejected: i64,
    earnings_micros: i64,
}

/// A performance row as the API reports it.
type Figures = (String, i64, i64, f64, f64, f64, i64);

/// A session of a miner (key, id, wallet) started at `base`, with samples
/// every `every` from `offset` after that start until now, and at `extra`,
/// streamed in several RecordStatistics calls so that rollup rows are both
/// inserted and added to. Measurements are small multiples of 1/2, so
/// every sum of them is exact in any order.
#[allow(clippy::too_many_arguments)]
async fn session_with_samples(
    app: &TestApp,
    (key, miner_id, wallet): (&str, &str, &str),
    algorithm: &'static str,
    pool: &'static str,
    base: DateTime<Utc>,
    offset: Duration,
    every: Duration,
    extra: &[DateTime<Utc>],
) -> Vec<Sent> {
    let session = mining(app)
        .await
        .start_session(authed(
            key,
            pb::StartSessionRequest {
                wallet_id: wallet.into(),
                algorithm: algorithm.into(),
                pool_name: pool.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("start session")
        .into_inner()
        .session
        .unwrap();
    move_start(app, &session.id, base).await;
    let now = Utc::now();
    let mut times: Vec<DateTime<Utc>> = (0..)
        .map(|i| base + offset + every * i)
        .take_while(|at| *at < now)
        .chain(extra.iter().copied())
        .collect();
    times.sort();
    let sent: Vec<Sent> = times
        .into_iter()
        .enumerate()
        .map(|(i, at)| Sent {
            session: session.id.clone(),
            miner: miner_id.to_owned(),
            algorithm,
            pool,
            at,
            hashrate: 90.0 + (i % 8) as f64 * 0.5,
            power: 1000.0 + (i % 4) as f64 * 250.0,
            accepted: (i % 5) as i64,
            rejected: (i % 2) as i64,
            earnings_micros: (i % 7 + 1) as i64 * 3,
        })
        .collect();
    for stream in sent.chunks(9) {
        let samples = stream
            .iter()
            .map(|sent| pb::Sample {
                sample_time: Some(crate::common::timestamp(sent.at)),
                hashrate_mhs: sent.hashrate,
                power_watts: sent.power,
                temperature_celsius: 60.0,
                shares_accepted: sent.accepted,
                shares_rejected: sent.rejected,
                difficulty: 1.0e12,
                network_hashrate_mhs: 4.0e11,
                earnings_usd: Some(Decimal {
                    value: format!("0.{:06}", sent.earnings_micros),
                }),
                ..Default::default()
            })
            .collect();
        mining(app)
            .await
            .record_statistics(authed(
                key,
                tokio_stream::iter([pb::RecordStatisticsRequest {
                    session_id: session.id.clone(),
                    samples,
                    ..Default::default()
                }]),
            ))
            .await
            .expect("record statistics");
    }
    sent
}

/// Runs `sql` with `?` placeholders on the test's database.
async fn execute(app: &TestApp, sql: &str, values: Vec<Value>) {
    app.db
        .execute_raw(azora::db::statement(&app.db, sql, values))
        .await
        .expect(sql);
}

async fn move_start(app: &TestApp, session: &str, started_at: DateTime<Utc>) {
    let id = uuid::Uuid::parse_str(session).unwrap();
    execute(
        app,
        "UPDATE mining_sessions SET started_at = ? WHERE id = ?",
        vec![started_at.into(), id.into()],
    )
    .await;
}

/// Four hours before the start of this hour.
fn four_hours_ago() -> DateTime<Utc> {
    Utc::now().duration_trunc(Duration::hours(1)).unwrap() - Duration::hours(4)
}

/// What GetMiningPerformance must answer for `[start, end)`, from the
/// samples sent: per key (algorithm or pool, as `key` picks), in key order.
fn expected(
    sent: &[Sent],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    miner: Option<&str>,
    key: fn(&Sent) -> &'static str,
) -> Vec<Figures> {
    #[derive(Default)]
    struct Group {
        sessions: BTreeSet<String>,
        samples: i64,
        hashrate: f64,
        power: f64,
        accepted: i64,
        rejected: i64,
        earnings: i64,
    }
    let mut groups: BTreeMap<&str, Group> = BTreeMap::new();
    for sample in sent
        .iter()
        .filter(|sample| sample.at >= start && sample.at < end)
        .filter(|sample| miner.is_none_or(|miner| sample.miner == miner))
    {
        let group = groups.entry(key(sample)).or_default();
        group.sessions.insert(sample.session.clone());
        group.samples += 1;
        group.hashrate += sample.hashrate;
        group.power += sample.power;
        group.accepted += sample.accepted;
        group.rejected += sample.rejected;
        group.earnings += sample.earnings_micros;
    }
    groups
        .into_iter()
        .map(|(key, group)| {
            let (hashrate, power) = (
                group.hashrate / group.samples as f64,
                group.power / group.samples as f64,
            );
            let shares = group.accepted + group.rejected;
            let acceptance = if shares == 0 {
                0.0
            } else {
                group.accepted as f64 / shares as f64
            };
            let per_watt = if power > 0.0 { hashrate / power } else { 0.0 };
            (
                key.to_owned(),
                group.sessions.len() as i64,
                group.samples,
                hashrate,
                acceptance,
                per_watt,
                group.earnings,
            )
        })
        .collect()
}

fn figures(rows: &[pb::Performance]) -> Vec<Figures> {
    rows.iter()
        .map(|row| {
            (
                row.key.clone(),
                row.session_count,
                row.sample_count,
                row.average_hashrate_mhs,
                row.acceptance_rate,
                row.hashrate_per_watt,
                micros(&row.earnings_usd.clone().unwrap().value),
            )
        })
        .collect()
}

async fn performance(
    app: &TestApp,
    key: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> pb::GetMiningPerformanceResponse {
    mining(app)
        .await
        .get_mining_performance(authed(
            key,
            pb::GetMiningPerformanceRequest {
                start_time: Some(crate::common::timestamp(start)),
                end_time: Some(crate::common::timestamp(end)),
                miner_id: String::new(),
            },
        ))
        .await
        .expect("performance")
        .into_inner()
}

/// Three sessions of one miner and one of another, over the last four
/// hours (one of them started 85 minutes later), with samples on and just
/// before hour boundaries.
async fn four_hours_of_samples(app: &TestApp) -> (Vec<Sent>, String, String, DateTime<Utc>) {
    let (alice_id, alice, alice_wallet) = app.member_with_wallet("alice").await;
    let (bob_id, bob, bob_wallet) = app.member_with_wallet("bob").await;
    let base = four_hours_ago();
    let alice_rig = (alice.as_str(), alice_id.as_str(), alice_wallet.as_str());
    let on_the_hour = [
        base + Duration::hours(1),
        base + Duration::hours(2) - Duration::microseconds(1),
        base + Duration::hours(2),
        base + Duration::hours(3) - Duration::microseconds(1),
    ];
    let mut sent = session_with_samples(
        app,
        alice_rig,
        "sha256",
        "alpha",
        base,
        Duration::zero(),
        Duration::minutes(7),
        &on_the_hour,
    )
    .await;
    sent.extend(
        session_with_samples(
            app,
            alice_rig,
            "ethash",
            "alpha",
            base,
            Duration::minutes(3),
            Duration::minutes(11),
            &[],
        )
        .await,
    );
    // Started later: a window from before its start holds it whole.
    sent.extend(
        session_with_samples(
            app,
            alice_rig,
            "sha256",
            "beta",
            base + Duration::minutes(85),
            Duration::minutes(5),
            Duration::minutes(13),
            &on_the_hour[1..3],
        )
        .await,
    );
    sent.extend(
        session_with_samples(
            app,
            (bob.as_str(), bob_id.as_str(), bob_wallet.as_str()),
            "sha256",
            "alpha",
            base,
            Duration::seconds(30),
            Duration::minutes(17),
            &[],
        )
        .await,
    );
    (sent, alice, alice_id, base)
}

async fn performance_over_any_window_is_what_its_samples_say(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (sent, alice, alice_id, base) = four_hours_of_samples(&app).await;
    let at = |minutes: i64| base + Duration::minutes(minutes);
    let windows = [
        ("aligned", at(60), at(180)),
        ("off the hour at both ends", at(10), at(200)),
        ("inside one hour", at(65), at(110)),
        ("cut through one hour boundary", at(90), at(150)),
        (
            "around a boundary, to the microsecond",
            at(120) - Duration::microseconds(1),
            at(120) + Duration::microseconds(1),
        ),
        (
            "one session whole, the others across its start",
            at(80),
            at(300),
        ),
        ("every session whole", at(-60), at(300)),
    ];
    for (name, start, end) in windows {
        for (caller, miner) in [(&app.admin_key, None), (&alice, Some(alice_id.as_str()))] {
            let response = performance(&app, caller, start, end).await;
            assert_eq!(
                figures(&response.by_algorithm),
                expected(&sent, start, end, miner, |sample| sample.algorithm),
                "{name}, by algorithm, miner {miner:?}"
            );
            assert_eq!(
                figures(&response.by_pool),
                expected(&sent, start, end, miner, |sample| sample.pool),
                "{name}, by pool, miner {miner:?}"
            );
        }
    }
    // The windows above are not empty by accident.
    let aligned = performance(&app, &app.admin_key, at(60), at(180)).await;
    assert_eq!(aligned.by_algorithm.len(), 2);
    assert_eq!(aligned.by_pool.len(), 2);
    let edge = performance(
        &app,
        &app.admin_key,
        at(120) - Duration::microseconds(1),
        at(120) + Duration::microseconds(1),
    )
    .await;
    assert_eq!(
        edge.by_pool.iter().map(|row| row.sample_count).sum::<i64>(),
        4
    );
}

/// The mining check of an ad hoc compliance report over the last five hours.
async fn rollup_check(app: &TestApp, base: DateTime<Utc>) -> cpb::Check {
    let report = compliance(app)
        .await
        .generate_compliance_report(authed(
            &app.admin_key,
            cpb::GenerateComplianceReportRequest {
                report_type: cpb::ReportType::AdHoc as i32,
                period_start: Some(crate::common::timestamp(base - Duration::hours(1))),
                period_end: Some(crate::common::timestamp(Utc::now() + Duration::minutes(1))),
                request_id: uuid::Uuid::new_v4().to_string(),
            },
        ))
        .await
        .expect("report")
        .into_inner()
        .report
        .unwrap();
    report
        .checks
        .into_iter()
        .find(|check| check.name == "mining_rollups_match_samples")
        .expect("the report checks the mining rollups")
}

async fn the_compliance_report_recomputes_the_rollups_and_flags_a_changed_one(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (sent, _, _, base) = four_hours_of_samples(&app).await;
    let check = rollup_check(&app, base).await;
    assert!(check.passed, "{check:?}");

    // A rollup changed behind Mining's back: one session's second hour
    // earns a micro-USD more than its samples.
    let session = uuid::Uuid::parse_str(&sent[0].session).unwrap();
    let hour = azora::mining::domain::hour_of(base) + 1;
    execute(
        &app,
        "UPDATE mining_sample_rollups SET earnings_micros = earnings_micros + 1 \
         WHERE session_id = ? AND hour = ?",
        vec![session.into(), hour.into()],
    )
    .await;
    let check = rollup_check(&app, base).await;
    assert!(!check.passed);
    // The row differs from its samples, and the session's totals from its
    // rows.
    assert_eq!(check.findings.len(), 2, "{:?}", check.findings);
    let hour_start = (base + Duration::hours(1)).to_rfc3339();
    assert!(
        check.findings[0].contains(&session.to_string()) && check.findings[0].contains(&hour_start),
        "{:?}",
        check.findings
    );
    assert!(
        check.findings[1].contains(&session.to_string())
            && check.findings[1].contains("its running totals say"),
        "{:?}",
        check.findings
    );

    // A row gone: its samples add up to something, the rollup to nothing.
    execute(
        &app,
        "DELETE FROM mining_sample_rollups WHERE session_id = ? AND hour = ?",
        vec![session.into(), (hour + 1).into()],
    )
    .await;
    let check = rollup_check(&app, base).await;
    assert_eq!(check.findings.len(), 3, "{:?}", check.findings);
    assert!(
        check
            .findings
            .iter()
            .any(|finding| finding.contains("the rollup holds nothing")),
        "{:?}",
        check.findings
    );

    // Another session's running totals changed: a window holding it whole
    // reads them.
    let other = sent
        .iter()
        .map(|sample| uuid::Uuid::parse_str(&sample.session).unwrap())
        .find(|other| *other != session)
        .unwrap();
    execute(
        &app,
        "UPDATE mining_sessions SET sample_count = sample_count + 1 WHERE id = ?",
        vec![other.into()],
    )
    .await;
    let check = rollup_check(&app, base).await;
    assert_eq!(check.findings.len(), 4, "{:?}", check.findings);
    assert!(
        check
            .findings
            .iter()
            .any(|finding| finding
                .contains(&format!("mining session {other}: its running totals say"))),
        "{:?}",
        check.findings
    );
}

async fn the_migration_backfills_the_rollups_that_recording_builds(backend: Backend) {
    let app = TestApp::spawn_with(backend, |settings| settings.redis_url = None).await;
    let (sent, _, _, base) = four_hours_of_samples(&app).await;
    let recorded = rollup::Entity::find().all(&app.db).await.unwrap();
    let (start, end) = (base - Duration::hours(1), Utc::now() + Duration::hours(1));
    let before = performance(&app, &app.admin_key, start, end).await;

    // Back to before migration 000019 (it drops the table), and up again
    // (it backfills the table from the samples).
    let migrations: Vec<String> = migration::Migrator::migrations()
        .iter()
        .map(|migration| migration.name().to_owned())
        .collect();
    let position = migrations
        .iter()
        .position(|name| name == "m20261201_000019_mining_rollups")
        .expect("migration 000019");
    let steps = (migrations.len() - position) as u32;
    migration::Migrator::down(&app.db, Some(steps))
        .await
        .unwrap();
    assert!(
        rollup::Entity::find().all(&app.db).await.is_err(),
        "down drops the table"
    );
    migration::Migrator::up(&app.db, None).await.unwrap();

    let backfilled = rollup::Entity::find().all(&app.db).await.unwrap();
    let by_key = |rows: Vec<rollup::Model>| {
        rows.into_iter()
            .map(|row| ((row.session_id, row.hour), row))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(by_key(backfilled), by_key(recorded));
    let sessions: BTreeSet<&str> = sent.iter().map(|sample| sample.session.as_str()).collect();
    assert_eq!(sessions.len(), 4);
    assert_eq!(performance(&app, &app.admin_key, start, end).await, before);
    assert!(rollup_check(&app, base).await.passed);
}
