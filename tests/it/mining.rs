//! MiningService over a real gRPC channel, on PostgreSQL and SQLite.

use std::time::Duration;

use crate::common::money::micros;
use crate::common::{Backend, TestApp, authed, mining, violated_fields};
use azora::proto::identity as ipb;
use azora::proto::mining as pb;
use azora::proto::treasury as tpb;
use azora::proto::types::Decimal;
use tonic::Code;

on_both_backends!(
    a_session_streams_thousands_of_samples_and_ending_it_mints_its_earnings_once,
    one_invalid_sample_rejects_the_whole_stream_and_names_it,
    a_watcher_sees_samples_recorded_by_another_client_until_the_session_ends,
    miners_touch_only_their_own_sessions,
    performance_is_reported_per_algorithm_and_per_pool,
    a_mining_claim_is_confirmed_once_with_its_backing_by_someone_else,
    a_rejected_claim_mints_nothing_and_stays_rejected,
    earnings_within_the_auto_confirm_limit_are_minted_at_once,
    totals_that_would_overflow_are_refused_and_the_session_still_ends,
);

async fn confirm_claim(
    app: &TestApp,
    key: &str,
    transaction_id: &str,
    reference: &str,
) -> Result<tpb::Transaction, tonic::Status> {
    app.treasury()
        .await
        .confirm_transaction(authed(
            key,
            tpb::ConfirmTransactionRequest {
                request_id: format!("confirm-{transaction_id}-{reference}"),
                transaction_id: transaction_id.into(),
                backing_reference: reference.into(),
                ..Default::default()
            },
        ))
        .await
        .map(|response| response.into_inner().transaction.unwrap())
}

/// Ends a session, as `key`.
async fn end(app: &TestApp, key: &str, session: &str) -> pb::Session {
    mining(app)
        .await
        .end_session(authed(
            key,
            pb::EndSessionRequest {
                session_id: session.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap()
}

/// A member's session with `earnings` streamed in one sample, ended: its
/// (pending, unless auto-confirmed) mint.
async fn ended_claim(app: &TestApp, miner: &str, wallet: &str, earnings: &str) -> pb::Session {
    let session = start(app, miner, wallet, "sha256", "alpha").await;
    record(
        app,
        miner,
        batches(
            &session.id,
            vec![sample(chrono::Utc::now(), 1.0, earnings)],
            1,
        ),
    )
    .await
    .unwrap();
    end(app, miner, &session.id).await
}

async fn a_mining_claim_is_confirmed_once_with_its_backing_by_someone_else(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, miner, wallet) = app.member_with_wallet("miner").await;
    let claimed = ended_claim(&app, &miner, &wallet, "1000000").await;
    assert_eq!(
        app.available(&wallet).await,
        "0.000000",
        "a rig's claim of 1,000,000 USD mints nothing by itself"
    );
    let id = claimed.mint_transaction_id.clone();
    let report = |request_id: &'static str| {
        let channel = app.channel();
        let key = app.admin_key.clone();
        async move {
            let now = chrono::Utc::now() + chrono::Duration::seconds(1);
            let timestamp = |at: chrono::DateTime<chrono::Utc>| prost_types::Timestamp {
                seconds: at.timestamp(),
                nanos: 0,
            };
            azora::proto::compliance::compliance_service_client::ComplianceServiceClient::new(
                channel.await,
            )
            .generate_compliance_report(authed(
                &key,
                azora::proto::compliance::GenerateComplianceReportRequest {
                    report_type: azora::proto::compliance::ReportType::AdHoc as i32,
                    period_start: Some(timestamp(now - chrono::Duration::hours(1))),
                    period_end: Some(timestamp(now)),
                    request_id: request_id.into(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .report
            .unwrap()
        }
    };
    let open = report("report-open").await;
    assert_eq!(
        (open.pending_claims, open.pending_claims_azr.unwrap().value),
        (1, "1000000.000000".into()),
        "a report counts the claim as pending"
    );
    assert_eq!(
        open.volume_azr.unwrap().value,
        "0.000000",
        "and not in the confirmed volume"
    );

    let by_member = confirm_claim(&app, &miner, &id, "payout-a")
        .await
        .unwrap_err();
    assert_eq!(by_member.code(), Code::PermissionDenied, "{by_member:?}");
    let without = confirm_claim(&app, &app.admin_key, &id, "")
        .await
        .unwrap_err();
    assert_eq!(without.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&without), ["backing_reference"]);

    // A treasurer who mines cannot confirm their own claim (four eyes).
    let (treasurer_id, treasurer) = app.user_with_role("treasurer", ipb::Role::Treasurer).await;
    let treasurer_wallet = app.wallet_for(&treasurer_id).await;
    let own = ended_claim(&app, &treasurer, &treasurer_wallet, "5").await;
    let refused = confirm_claim(&app, &treasurer, &own.mint_transaction_id, "payout-t")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    let confirmed = confirm_claim(&app, &treasurer, &id, "payout-a")
        .await
        .unwrap();
    assert_eq!(confirmed.status, tpb::TransactionStatus::Confirmed as i32);
    assert_eq!(app.available(&wallet).await, "140000.000000", "14 % of it");
    let again = confirm_claim(&app, &treasurer, &id, "payout-b")
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "confirmed once");

    // One payout backs one mint.
    let reused = confirm_claim(&app, &app.admin_key, &own.mint_transaction_id, "payout-a")
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::AlreadyExists, "{reused:?}");
    assert_eq!(app.available(&treasurer_wallet).await, "0.000000");
    let later = report("report-later").await;
    assert_eq!(
        later.pending_claims, 1,
        "the treasurer's own claim is still open"
    );
    crate::common::money::assert_books_balance(&app).await;
}

async fn a_rejected_claim_mints_nothing_and_stays_rejected(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, miner, wallet) = app.member_with_wallet("miner").await;
    let claimed = ended_claim(&app, &miner, &wallet, "250").await;
    let failed = app
        .treasury()
        .await
        .fail_transaction(authed(
            &app.admin_key,
            tpb::FailTransactionRequest {
                request_id: "reject-1".into(),
                transaction_id: claimed.mint_transaction_id.clone(),
                reason: "the pool paid nothing".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .transaction
        .unwrap();
    assert_eq!(failed.status, tpb::TransactionStatus::Failed as i32);
    let late = confirm_claim(&app, &app.admin_key, &claimed.mint_transaction_id, "payout")
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);
    assert_eq!(app.available(&wallet).await, "0.000000");
    let summary = app.summary().await;
    assert_eq!(summary.total_minted.unwrap().value, "0.000000");
    crate::common::money::assert_books_balance(&app).await;
}

async fn earnings_within_the_auto_confirm_limit_are_minted_at_once(backend: Backend) {
    let app = TestApp::spawn_with(backend, |settings| {
        settings.mining_auto_confirm_limit = Some("10".into());
    })
    .await;
    let (_, miner, wallet) = app.member_with_wallet("miner").await;
    let small = ended_claim(&app, &miner, &wallet, "10").await;
    let large = ended_claim(&app, &miner, &wallet, "10.000001").await;
    let treasury = app.treasury().await;
    let get = |id: String| {
        let mut treasury = treasury.clone();
        let key = app.admin_key.clone();
        async move {
            treasury
                .get_transaction(authed(
                    &key,
                    tpb::GetTransactionRequest { transaction_id: id },
                ))
                .await
                .unwrap()
                .into_inner()
                .transaction
                .unwrap()
        }
    };
    let small = get(small.mint_transaction_id).await;
    assert_eq!(small.status, tpb::TransactionStatus::Confirmed as i32);
    assert!(small.backing_reference.starts_with("auto-confirm:"));
    let large = get(large.mint_transaction_id).await;
    assert_eq!(large.status, tpb::TransactionStatus::Pending as i32);
    assert_eq!(app.available(&wallet).await, "1.400000");
}

async fn totals_that_would_overflow_are_refused_and_the_session_still_ends(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, miner, wallet) = app.member_with_wallet("miner").await;
    let session = start(&app, &miner, &wallet, "sha256", "alpha").await;
    let mut huge = sample(chrono::Utc::now(), 1.0, "1");
    huge.shares_accepted = i64::MAX;
    record(&app, &miner, batches(&session.id, vec![huge.clone()], 1))
        .await
        .unwrap();
    let overflow = record(&app, &miner, batches(&session.id, vec![huge], 1))
        .await
        .unwrap_err();
    assert_eq!(overflow.code(), Code::InvalidArgument, "{overflow:?}");
    assert_eq!(violated_fields(&overflow), ["samples[0].shares_accepted"]);
    // Earnings may not pass the largest single mint, so ending always works.
    let rich: Vec<_> = (0..2)
        .map(|_| pb::Sample {
            shares_accepted: 0,
            ..sample(chrono::Utc::now(), 1.0, "600000000")
        })
        .collect();
    let too_rich = record(&app, &miner, batches(&session.id, rich, 2))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&too_rich), ["samples[1].earnings_usd"]);
    let ended = end(&app, &miner, &session.id).await;
    assert_eq!(ended.status, pb::SessionStatus::Ended as i32);
    assert_eq!(ended.total_earnings_usd.unwrap().value, "1.000000");

    // Sessions at their limits add up past an i64 across sessions: the
    // aggregate still answers, exactly.
    for _ in 0..2 {
        let full = start(&app, &miner, &wallet, "sha256", "alpha").await;
        let at_limit = pb::Sample {
            shares_accepted: i64::MAX,
            shares_rejected: i64::MAX,
            ..sample(chrono::Utc::now(), 1.0, "1000000000")
        };
        record(&app, &miner, batches(&full.id, vec![at_limit], 1))
            .await
            .unwrap();
    }
    let now = chrono::Utc::now();
    let timestamp = |at: chrono::DateTime<chrono::Utc>| prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: 0,
    };
    let performance = mining(&app)
        .await
        .get_mining_performance(authed(
            &app.admin_key,
            pb::GetMiningPerformanceRequest {
                start_time: Some(timestamp(now - chrono::Duration::hours(1))),
                end_time: Some(timestamp(now + chrono::Duration::seconds(5))),
                ..Default::default()
            },
        ))
        .await
        .expect("aggregates past an i64 still answer")
        .into_inner();
    let sha = &performance.by_algorithm[0];
    assert_eq!(sha.session_count, 3);
    assert_eq!(sha.earnings_usd.clone().unwrap().value, "2000000001.000000");
    // Accepted: 3 × i64::MAX; rejected: 1 + 2 × i64::MAX.
    assert!(
        (sha.acceptance_rate - 0.6).abs() < 1e-9,
        "{}",
        sha.acceptance_rate
    );
}

fn sample(at: chrono::DateTime<chrono::Utc>, hashrate: f64, earnings: &str) -> pb::Sample {
    pb::Sample {
        sample_time: Some(prost_types::Timestamp {
            seconds: at.timestamp(),
            nanos: at.timestamp_subsec_nanos() as i32,
        }),
        hashrate_mhs: hashrate,
        power_watts: 1200.0,
        temperature_celsius: 65.5,
        shares_accepted: 9,
        shares_rejected: 1,
        difficulty: 1.5e12,
        network_hashrate_mhs: 4.2e11,
        earnings_usd: Some(Decimal {
            value: earnings.into(),
        }),
        ..Default::default()
    }
}

async fn start(app: &TestApp, key: &str, wallet: &str, algorithm: &str, pool: &str) -> pb::Session {
    mining(app)
        .await
        .start_session(authed(
            key,
            pb::StartSessionRequest {
                wallet_id: wallet.into(),
                algorithm: algorithm.into(),
                pool_name: pool.into(),
                pool_url: "stratum+tcp://pool.example:3333".into(),
                worker_name: "rig-1".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("start session")
        .into_inner()
        .session
        .unwrap()
}

async fn record(
    app: &TestApp,
    key: &str,
    messages: Vec<pb::RecordStatisticsRequest>,
) -> Result<pb::RecordStatisticsResponse, tonic::Status> {
    mining(app)
        .await
        .record_statistics(authed(key, tokio_stream::iter(messages)))
        .await
        .map(|response| response.into_inner())
}

fn batches(
    session: &str,
    samples: Vec<pb::Sample>,
    per_message: usize,
) -> Vec<pb::RecordStatisticsRequest> {
    samples
        .chunks(per_message)
        .map(|chunk| pb::RecordStatisticsRequest {
            session_id: session.into(),
            samples: chunk.to_vec(),
            ..Default::default()
        })
        .collect()
}

async fn a_session_streams_thousands_of_samples_and_ending_it_mints_its_earnings_once(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let (_, miner, wallet) = app.member_with_wallet("miner").await;
    let session = start(&app, &miner, &wallet, "sha256", "alpha").await;
    assert_eq!(session.status, pb::SessionStatus::Active as i32);
    let begun = chrono::Utc::now();
    let samples: Vec<_> = (0..5000)
        .map(|index| {
            sample(
                begun + chrono::Duration::milliseconds(index),
                100.0 + (index % 10) as f64,
                "0.001234",
            )
        })
        .collect();
    let recorded = record(&app, &miner, batches(&session.id, samples, 250))
        .await
        .unwrap();
    assert_eq!(recorded.samples_stored, 5000);
    let totals = recorded.session.unwrap();
    assert_eq!(totals.sample_count, 5000);
    assert_eq!(
        totals.total_earnings_usd.unwrap().value,
        "6.170000",
        "5000 × 0.001234, exact"
    );
    assert_eq!(
        (totals.shares_accepted, totals.shares_rejected),
        (45_000, 5_000)
    );
    assert!((totals.average_hashrate_mhs - 104.5).abs() < 1e-9);

    let before = micros(&app.available(&wallet).await);
    let ended = end(&app, &miner, &session.id).await;
    assert_eq!(ended.status, pb::SessionStatus::Ended as i32);
    assert!(ended.end_time.is_some());
    assert_eq!(ended.minted_azr.clone().unwrap().value, "6.170000");
    assert!(ended.energy_kwh > 0.0);
    let mint = app
        .treasury()
        .await
        .get_transaction(authed(
            &app.admin_key,
            tpb::GetTransactionRequest {
                transaction_id: ended.mint_transaction_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .transaction
        .unwrap();
    assert_eq!(mint.r#type, tpb::TransactionType::Mint as i32);
    assert_eq!(
        mint.mining_session_id, session.id,
        "the mint names its session"
    );
    assert_eq!(mint.amount_azr.unwrap().value, "6.170000");
    assert_eq!(mint.amount_usd.unwrap().value, "6.170000");
    assert_eq!(mint.to_wallet_id, wallet);
    assert_eq!(
        mint.status,
        tpb::TransactionStatus::Pending as i32,
        "earnings are a claim until the USD arrives"
    );
    assert_eq!(
        micros(&app.available(&wallet).await),
        before,
        "a pending claim is not spendable"
    );
    let pending = app.summary().await;
    assert_eq!(pending.total_minted.unwrap().value, "0.000000");
    let mints = pending
        .by_type
        .iter()
        .find(|totals| totals.r#type == tpb::TransactionType::Mint as i32)
        .unwrap();
    assert_eq!(
        (
            mints.pending_count,
            mints.pending_volume.clone().unwrap().value
        ),
        (1, "6.170000".into()),
        "the summary counts the claim as pending"
    );
    let confirmed = confirm_claim(&app, &app.admin_key, &mint.id, "payout-1")
        .await
        .unwrap();
    assert_eq!(confirmed.status, tpb::TransactionStatus::Confirmed as i32);
    assert_eq!(confirmed.backing_reference, "payout-1");
    let circulation = confirmed.allocation.unwrap().circulation.unwrap().value;
    assert_eq!(
        micros(&app.available(&wallet).await) - before,
        micros(&circulation)
    );

    // Ending again changes nothing and returns the same session.
    let again = end(&app, &app.admin_key, &session.id).await;
    assert_eq!(again, ended);
    let summary = app.summary().await;
    assert_eq!(
        summary.total_minted.unwrap().value,
        "6.170000",
        "minted once"
    );

    let late = record(
        &app,
        &miner,
        batches(&session.id, vec![sample(chrono::Utc::now(), 1.0, "1")], 1),
    )
    .await
    .unwrap_err();
    assert_eq!(
        late.code(),
        Code::FailedPrecondition,
        "an ended session takes no samples"
    );
}

async fn one_invalid_sample_rejects_the_whole_stream_and_names_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, miner, wallet) = app.member_with_wallet("miner").await;
    let session = start(&app, &miner, &wallet, "ethash", "beta").await;
    let now = chrono::Utc::now();
    let good = |index: i64| sample(now + chrono::Duration::milliseconds(index), 50.0, "0.5");
    type Corruption = Box<dyn Fn(&mut pb::Sample)>;
    let cases: Vec<(usize, Corruption, &str)> = vec![
        (
            57,
            Box::new(|s: &mut pb::Sample| s.temperature_celsius = 500.0),
            "samples[57].temperature_celsius",
        ),
        (
            3,
            Box::new(|s: &mut pb::Sample| s.hashrate_mhs = -1.0),
            "samples[3].hashrate_mhs",
        ),
        (
            120,
            Box::new(|s: &mut pb::Sample| s.hashrate_mhs = f64::NAN),
            "samples[120].hashrate_mhs",
        ),
        (
            0,
            Box::new(|s: &mut pb::Sample| {
                s.earnings_usd = Some(Decimal {
                    value: "0.0000001".into(),
                })
            }),
            "samples[0].earnings_usd",
        ),
        (
            199,
            Box::new(|s: &mut pb::Sample| s.shares_rejected = -2),
            "samples[199].shares_rejected",
        ),
        (
            42,
            Box::new(|s: &mut pb::Sample| {
                s.sample_time = Some(prost_types::Timestamp {
                    seconds: 1_000_000,
                    nanos: 0,
                })
            }),
            "samples[42].sample_time",
        ),
        (
            77,
            Box::new(move |s: &mut pb::Sample| {
                s.sample_time = Some(prost_types::Timestamp {
                    seconds: now.timestamp() + 3600,
                    nanos: 0,
                })
            }),
            "samples[77].sample_time",
        ),
    ];
    for (index, corrupt, field) in cases {
        let mut samples: Vec<_> = (0..200).map(good).collect();
        corrupt(&mut samples[index]);
        let status = record(&app, &miner, batches(&session.id, samples, 30))
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&status), [field]);
    }
    let unchanged = mining(&app)
        .await
        .get_session(authed(
            &miner,
            pb::GetSessionRequest {
                session_id: session.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(
        unchanged.sample_count, 0,
        "nothing from a rejected stream is stored"
    );

    let (_, other, _) = app.member_with_wallet("other").await;
    let foreign = record(&app, &other, batches(&session.id, vec![good(0)], 1))
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), Code::PermissionDenied);
    let mixed = record(
        &app,
        &miner,
        vec![
            pb::RecordStatisticsRequest {
                session_id: session.id.clone(),
                samples: vec![good(0)],
                ..Default::default()
            },
            pb::RecordStatisticsRequest {
                session_id: uuid::Uuid::now_v7().to_string(),
                samples: vec![good(1)],
                ..Default::default()
            },
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(violated_fields(&mixed), ["session_id"]);
    let empty = record(
        &app,
        &miner,
        vec![pb::RecordStatisticsRequest {
            session_id: session.id.clone(),
            samples: vec![],
            ..Default::default()
        }],
    )
    .await
    .unwrap_err();
    assert_eq!(violated_fields(&empty), ["samples"]);
}

async fn a_watcher_sees_samples_recorded_by_another_client_until_the_session_ends(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let (_, miner, wallet) = app.member_with_wallet("miner").await;
    let (_, auditor) = app.user_with_role("auditor", ipb::Role::Auditor).await;
    let session = start(&app, &miner, &wallet, "randomx", "gamma").await;
    let mut watch = mining(&app)
        .await
        .watch_session(authed(
            &auditor,
            pb::WatchSessionRequest {
                session_id: session.id.clone(),
                after_sequence: 0,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let now = chrono::Utc::now();
    for round in 0..3 {
        let samples = (0..40)
            .map(|i| {
                sample(
                    now + chrono::Duration::milliseconds(round * 100 + i),
                    10.0,
                    "0.01",
                )
            })
            .collect();
        record(&app, &miner, batches(&session.id, samples, 40))
            .await
            .unwrap();
    }
    let mut received = Vec::new();
    while received.len() < 120 {
        let message = tokio::time::timeout(Duration::from_secs(5), watch.message())
            .await
            .expect("samples arrive")
            .unwrap()
            .unwrap();
        received.extend(message.samples);
    }
    assert!(
        received
            .windows(2)
            .all(|pair| pair[0].sequence < pair[1].sequence),
        "in order"
    );
    mining(&app)
        .await
        .end_session(authed(
            &miner,
            pb::EndSessionRequest {
                session_id: session.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("the stream ends")
        .unwrap();
    assert!(end.is_none(), "the stream ends when the session ends");
    assert_eq!(received.len(), 120);
}

async fn miners_touch_only_their_own_sessions(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (miner_id, miner, wallet) = app.member_with_wallet("miner").await;
    let (_, other, other_wallet) = app.member_with_wallet("other").await;
    let (_, auditor) = app.user_with_role("auditor", ipb::Role::Auditor).await;
    let rig = app
        .identity()
        .await
        .create_api_key(authed(
            &miner,
            ipb::CreateApiKeyRequest {
                user_id: miner_id.clone(),
                role: ipb::Role::Service as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .secret;
    let session = start(&app, &rig, &wallet, "sha256", "alpha").await;
    assert_eq!(
        session.miner_id, miner_id,
        "a service key mines for its user"
    );
    record(
        &app,
        &rig,
        batches(&session.id, vec![sample(chrono::Utc::now(), 5.0, "1")], 1),
    )
    .await
    .unwrap();

    let mut client = mining(&app).await;
    let get = |key: &str, id: &str| {
        authed(
            key,
            pb::GetSessionRequest {
                session_id: id.into(),
            },
        )
    };
    assert_eq!(
        client
            .get_session(get(&other, &session.id))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let missing = uuid::Uuid::now_v7().to_string();
    assert_eq!(
        client
            .get_session(get(&other, &missing))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        client
            .get_session(get(&auditor, &missing))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    client
        .get_session(get(&auditor, &session.id))
        .await
        .expect("auditors read all");
    let end = client
        .end_session(authed(
            &other,
            pb::EndSessionRequest {
                session_id: session.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(end.code(), Code::PermissionDenied);
    let auditor_end = client
        .end_session(authed(
            &auditor,
            pb::EndSessionRequest {
                session_id: session.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        auditor_end.code(),
        Code::PermissionDenied,
        "auditors only read"
    );
    let with_foreign_wallet = client
        .start_session(authed(
            &miner,
            pb::StartSessionRequest {
                wallet_id: other_wallet.clone(),
                algorithm: "sha256".into(),
                pool_name: "alpha".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(with_foreign_wallet.code(), Code::PermissionDenied);
    let bad = client
        .start_session(authed(
            &miner,
            pb::StartSessionRequest {
                wallet_id: wallet.clone(),
                algorithm: "SHA 256".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad), ["algorithm", "pool_name"]);

    start(&app, &other, &other_wallet, "ethash", "beta").await;
    let mine = client
        .list_sessions(authed(&miner, pb::ListSessionsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(
        mine.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        [session.id.as_str()]
    );
    let all = client
        .list_sessions(authed(&auditor, pb::ListSessionsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(all.len(), 2);
    let ethash = client
        .list_sessions(authed(
            &auditor,
            pb::ListSessionsRequest {
                algorithm: "ethash".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(ethash.len(), 1);
}

async fn performance_is_reported_per_algorithm_and_per_pool(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, miner, wallet) = app.member_with_wallet("miner").await;
    let first = start(&app, &miner, &wallet, "sha256", "alpha").await;
    let second = start(&app, &miner, &wallet, "ethash", "alpha").await;
    let now = chrono::Utc::now();
    let samples = |hashrate: f64| {
        (0..10)
            .map(|i| sample(now + chrono::Duration::milliseconds(i), hashrate, "0.25"))
            .collect::<Vec<_>>()
    };
    record(&app, &miner, batches(&first.id, samples(100.0), 10))
        .await
        .unwrap();
    record(&app, &miner, batches(&second.id, samples(300.0), 10))
        .await
        .unwrap();
    let report = mining(&app)
        .await
        .get_mining_performance(authed(
            &miner,
            pb::GetMiningPerformanceRequest {
                end_time: Some(prost_types::Timestamp {
                    seconds: now.timestamp() + 3600,
                    nanos: 0,
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let by_algorithm: Vec<_> = report
        .by_algorithm
        .iter()
        .map(|p| (p.key.as_str(), p.average_hashrate_mhs, p.sample_count))
        .collect();
    assert_eq!(by_algorithm, [("ethash", 300.0, 10), ("sha256", 100.0, 10)]);
    assert_eq!(report.by_pool.len(), 1);
    let pool = &report.by_pool[0];
    assert_eq!(
        (pool.key.as_str(), pool.session_count, pool.sample_count),
        ("alpha", 2, 20)
    );
    assert_eq!(pool.earnings_usd.clone().unwrap().value, "5.000000");
    assert!((pool.acceptance_rate - 0.9).abs() < 1e-9);
    assert!((pool.hashrate_per_watt - 200.0 / 1200.0).abs() < 1e-9);
}
