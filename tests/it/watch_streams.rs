//! The watch streams (`WatchAlerts`, `WatchSession`) over a real gRPC
//! channel, on PostgreSQL and SQLite: a stream lives no longer than its key,
//! a key holds a bounded number of them, and a client that reconnects with
//! its cursor misses nothing and sees nothing twice.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::common::{Backend, TestApp, authed, compliance, mining};
use azora::compliance::alerts::{Severity, raise as raise_alert};
use azora::proto::compliance as pb;
use azora::proto::identity as ipb;
use azora::proto::mining as mpb;
use azora::proto::types::Decimal;
use sea_orm::EntityTrait;
use tonic::{Code, Streaming};

on_both_backends!(
    a_revoked_key_ends_open_watch_streams_within_the_key_cache_ttl,
    an_expired_key_ends_an_open_watch_stream_within_the_key_cache_ttl,
    a_key_holds_at_most_its_cap_of_watch_streams_and_a_closed_one_frees_its_slot,
    an_alert_watcher_that_resumes_from_its_cursor_misses_nothing_and_sees_nothing_twice,
    a_session_watcher_that_resumes_from_its_cursor_misses_no_sample,
);

/// The key-cache TTL of these tests: streams must end within it.
const TTL: Duration = Duration::from_millis(1000);

async fn watch_alerts(
    app: &TestApp,
    key: &str,
    after_sequence: Option<i64>,
) -> Result<Streaming<pb::WatchAlertsResponse>, tonic::Status> {
    compliance(app)
        .await
        .watch_alerts(authed(key, pb::WatchAlertsRequest { after_sequence }))
        .await
        .map(tonic::Response::into_inner)
}

async fn watch_session(
    app: &TestApp,
    key: &str,
    session_id: &str,
    after_sequence: i64,
) -> Result<Streaming<mpb::WatchSessionResponse>, tonic::Status> {
    mining(app)
        .await
        .watch_session(authed(
            key,
            mpb::WatchSessionRequest {
                session_id: session_id.into(),
                after_sequence,
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// A member's session on their own wallet: (member key, session id).
async fn session(app: &TestApp, username: &str) -> (String, String) {
    let (_, key, wallet) = app.member_with_wallet(username).await;
    let session = mining(app)
        .await
        .start_session(authed(
            &key,
            mpb::StartSessionRequest {
                wallet_id: wallet,
                algorithm: "sha256".into(),
                pool_name: "pool".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("start a session")
        .into_inner()
        .session
        .unwrap();
    (key, session.id)
}

/// Records `count` samples in one stream.
async fn record(app: &TestApp, key: &str, session_id: &str, count: usize) {
    let now = chrono::Utc::now();
    let samples = (0..count)
        .map(|_| mpb::Sample {
            sample_time: Some(prost_types::Timestamp {
                seconds: now.timestamp(),
                nanos: now.timestamp_subsec_nanos() as i32,
            }),
            hashrate_mhs: 100.0,
            power_watts: 1000.0,
            temperature_celsius: 60.0,
            earnings_usd: Some(Decimal {
                value: "0.000001".into(),
            }),
            ..Default::default()
        })
        .collect();
    mining(app)
        .await
        .record_statistics(authed(
            key,
            tokio_stream::iter(vec![mpb::RecordStatisticsRequest {
                session_id: session_id.into(),
                samples,
                ..Default::default()
            }]),
        ))
        .await
        .expect("record samples");
}

/// A key for a new user of `role`.
async fn key_for(app: &TestApp, username: &str, role: ipb::Role) -> (String, String, String) {
    let (user_id, secret) = app.user_with_role(username, role).await;
    let keys = app
        .identity()
        .await
        .list_api_keys(authed(
            &app.admin_key,
            ipb::ListApiKeysRequest {
                user_id: user_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .api_keys;
    assert_eq!(keys.len(), 1);
    (user_id, secret, keys[0].id.clone())
}

/// Waits for the stream to end and returns how it ended and when.
async fn ending<T>(stream: &mut Streaming<T>, within: Duration) -> (Instant, Option<Code>) {
    let deadline = Instant::now() + within;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, stream.message()).await {
            Err(_) => panic!("the stream did not end within {within:?}"),
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) => return (Instant::now(), None),
            Ok(Err(status)) => return (Instant::now(), Some(status.code())),
        }
    }
}

async fn a_revoked_key_ends_open_watch_streams_within_the_key_cache_ttl(backend: Backend) {
    let app = TestApp::spawn_with(backend, |settings| {
        settings.auth_cache_ms = TTL.as_millis() as u64
    })
    .await;
    let (_, auditor, auditor_key_id) = key_for(&app, "auditor", ipb::Role::Auditor).await;
    let (_, session_id) = session(&app, "miner").await;
    let mut alerts = watch_alerts(&app, &auditor, None).await.unwrap();
    let mut samples = watch_session(&app, &auditor, &session_id, 0).await.unwrap();
    // Both streams are open and healthy for a while before the revocation.
    tokio::time::sleep(TTL + Duration::from_millis(300)).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(50), alerts.message())
            .await
            .is_err(),
        "nothing ended the alert stream yet"
    );

    let revoked_at = Instant::now();
    app.identity()
        .await
        .revoke_api_key(authed(
            &app.admin_key,
            ipb::RevokeApiKeyRequest {
                api_key_id: auditor_key_id,
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    for (name, (ended_at, code)) in [
        ("WatchAlerts", ending(&mut alerts, TTL * 3).await),
        ("WatchSession", ending(&mut samples, TTL * 3).await),
    ] {
        let took = ended_at - revoked_at;
        eprintln!("{backend:?}: {name} ended {took:?} after the revocation");
        assert_eq!(code, Some(Code::Unauthenticated), "{name}");
        assert!(took <= TTL, "{name} ended {took:?} after the revocation");
    }
    let reopened = watch_alerts(&app, &auditor, None).await.unwrap_err();
    assert_eq!(reopened.code(), Code::Unauthenticated);

    // Each ended stream is in the audit trail as a refused call.
    use azora::audit::entities::audit_event;
    use sea_orm::{ColumnTrait, QueryFilter};
    let mut ended: Vec<String> = audit_event::Entity::find()
        .filter(audit_event::Column::Outcome.eq("unauthenticated"))
        .all(&app.db)
        .await
        .unwrap()
        .into_iter()
        .map(|event| event.action)
        .collect();
    ended.sort();
    assert_eq!(
        ended,
        [
            "/azora.compliance.v1.ComplianceService/WatchAlerts",
            "/azora.compliance.v1.ComplianceService/WatchAlerts",
            "/azora.mining.v1.MiningService/WatchSession",
        ],
        "two ended streams and the refused reopening"
    );
}

async fn an_expired_key_ends_an_open_watch_stream_within_the_key_cache_ttl(backend: Backend) {
    let app = TestApp::spawn_with(backend, |settings| {
        settings.auth_cache_ms = TTL.as_millis() as u64
    })
    .await;
    let (auditor_id, _) = app.user_with_role("auditor", ipb::Role::Auditor).await;
    let expires = chrono::Utc::now() + chrono::Duration::seconds(2);
    let short_lived = app
        .identity()
        .await
        .create_api_key(authed(
            &app.admin_key,
            ipb::CreateApiKeyRequest {
                user_id: auditor_id,
                role: ipb::Role::Auditor as i32,
                expire_time: Some(prost_types::Timestamp {
                    seconds: expires.timestamp(),
                    nanos: expires.timestamp_subsec_nanos() as i32,
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .secret;
    let mut alerts = watch_alerts(&app, &short_lived, None).await.unwrap();
    let (ended_at, code) = ending(&mut alerts, Duration::from_secs(10)).await;
    let ended = chrono::Utc::now() - (Instant::now() - ended_at);
    let late = (ended - expires).to_std().unwrap_or_default();
    eprintln!("{backend:?}: WatchAlerts ended {late:?} after the key expired");
    assert_eq!(code, Some(Code::Unauthenticated));
    assert!(ended >= expires, "not before the key expired");
    assert!(late <= TTL, "ended {late:?} after the key expired");
}

async fn a_key_holds_at_most_its_cap_of_watch_streams_and_a_closed_one_frees_its_slot(
    backend: Backend,
) {
    const CAP: usize = 3;
    let app = TestApp::spawn_with(backend, |settings| settings.streams_per_key = CAP).await;
    let (_, auditor) = app.user_with_role("auditor", ipb::Role::Auditor).await;
    let (_, other_auditor) = app.user_with_role("other", ipb::Role::Auditor).await;
    let (miner, session_id) = session(&app, "miner").await;

    // Both watch RPCs count against one cap.
    let mut open = vec![
        watch_alerts(&app, &auditor, None).await.unwrap(),
        watch_alerts(&app, &auditor, None).await.unwrap(),
    ];
    let session_stream = watch_session(&app, &auditor, &session_id, 0).await.unwrap();
    for status in [
        watch_alerts(&app, &auditor, None).await.unwrap_err(),
        watch_session(&app, &auditor, &session_id, 0)
            .await
            .unwrap_err(),
    ] {
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    }
    // Another key is not affected.
    let others = watch_alerts(&app, &other_auditor, None).await.unwrap();

    // A client that goes away frees its slot (within a poll).
    drop(open.pop());
    let freed = Instant::now();
    let reopened = loop {
        match watch_alerts(&app, &auditor, None).await {
            Ok(stream) => break stream,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted);
                assert!(
                    freed.elapsed() < Duration::from_secs(3),
                    "a closed stream's slot was never freed"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    eprintln!(
        "{backend:?}: a disconnected stream's slot was free again after {:?}",
        freed.elapsed()
    );
    open.push(reopened);
    assert_eq!(
        watch_alerts(&app, &auditor, None).await.unwrap_err().code(),
        Code::ResourceExhausted,
        "at the cap again"
    );

    // A stream that ends by itself (its session ended) frees its slot too.
    mining(&app)
        .await
        .end_session(authed(
            &miner,
            mpb::EndSessionRequest {
                session_id: session_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let mut session_stream = session_stream;
    let (_, code) = ending(&mut session_stream, Duration::from_secs(5)).await;
    assert_eq!(code, None, "an ended session ends its watch cleanly");
    let started = Instant::now();
    loop {
        match watch_alerts(&app, &auditor, None).await {
            Ok(stream) => {
                open.push(stream);
                break;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted);
                assert!(started.elapsed() < Duration::from_secs(3));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(others);
}

/// Receives `count` alerts from `stream`.
async fn receive_alerts(
    stream: &mut Streaming<pb::WatchAlertsResponse>,
    count: usize,
) -> Vec<pb::Alert> {
    let mut alerts = Vec::new();
    while alerts.len() < count {
        let message = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("alerts keep coming")
            .expect("the stream stays healthy")
            .expect("the stream stays open");
        alerts.push(message.alert.unwrap());
    }
    alerts
}

async fn an_alert_watcher_that_resumes_from_its_cursor_misses_nothing_and_sees_nothing_twice(
    backend: Backend,
) {
    const WRITERS: usize = 4;
    const PER_WRITER: usize = 25;
    let app = TestApp::spawn(backend).await;
    let (_, auditor) = app.user_with_role("auditor", ipb::Role::Auditor).await;
    let mut stream = watch_alerts(&app, &auditor, None).await.unwrap();

    // Writers raise alerts concurrently (as replicas and report runs do)
    // while the watcher reads, drops its stream, and reconnects with the
    // last sequence it saw.
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let db = app.db.clone();
        writers.push(tokio::spawn(async move {
            for index in 0..PER_WRITER {
                raise_alert(
                    &db,
                    Severity::Warning,
                    "test",
                    &format!("writer {writer} alert {index}"),
                )
                .await
                .unwrap();
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        }));
    }
    let mut received = receive_alerts(&mut stream, 30).await;
    drop(stream);
    // Alerts keep being raised while the watcher is away.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cursor = received.last().unwrap().sequence;
    let mut resumed = watch_alerts(&app, &auditor, Some(cursor)).await.unwrap();
    received.extend(receive_alerts(&mut resumed, WRITERS * PER_WRITER - 30).await);
    for writer in writers {
        writer.await.unwrap();
    }

    let sequences: Vec<i64> = received.iter().map(|alert| alert.sequence).collect();
    assert!(
        sequences.windows(2).all(|pair| pair[0] < pair[1]),
        "in sequence order, nothing twice: {sequences:?}"
    );
    let ids: BTreeSet<String> = received.iter().map(|alert| alert.id.clone()).collect();
    let stored: BTreeSet<String> = azora::compliance::entities::alert::Entity::find()
        .all(&app.db)
        .await
        .unwrap()
        .into_iter()
        .map(|alert| alert.id.to_string())
        .collect();
    assert_eq!(ids.len(), WRITERS * PER_WRITER);
    assert_eq!(ids, stored, "every alert raised was received");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), resumed.message())
            .await
            .is_err(),
        "and nothing more"
    );

    // 0 replays every alert; a cursor beyond the newest, or negative, is refused.
    let mut everything = watch_alerts(&app, &auditor, Some(0)).await.unwrap();
    let replayed = receive_alerts(&mut everything, 10).await;
    assert_eq!(replayed[0].sequence, sequences[0]);
    let newest = *sequences.last().unwrap();
    let beyond = watch_alerts(&app, &auditor, Some(newest + 1))
        .await
        .unwrap_err();
    assert_eq!(beyond.code(), Code::OutOfRange);
    let negative = watch_alerts(&app, &auditor, Some(-1)).await.unwrap_err();
    assert_eq!(
        crate::common::violated_fields(&negative),
        ["after_sequence"]
    );
}

/// Receives samples from `stream` until it has `count`.
async fn receive_samples(
    stream: &mut Streaming<mpb::WatchSessionResponse>,
    count: usize,
) -> Vec<i64> {
    let mut sequences = Vec::new();
    while sequences.len() < count {
        let message = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("samples keep coming")
            .expect("the stream stays healthy")
            .expect("the stream stays open");
        sequences.extend(message.samples.iter().map(|sample| sample.sequence));
    }
    sequences
}

async fn a_session_watcher_that_resumes_from_its_cursor_misses_no_sample(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (miner, session_id) = session(&app, "miner").await;
    record(&app, &miner, &session_id, 5).await;
    let mut stream = watch_session(&app, &miner, &session_id, 0).await.unwrap();
    let mut seen = receive_samples(&mut stream, 5).await;
    assert_eq!(seen.len(), 5);
    drop(stream);

    // Samples recorded while the watcher is away.
    record(&app, &miner, &session_id, 7).await;
    let cursor = *seen.last().unwrap();
    let mut resumed = watch_session(&app, &miner, &session_id, cursor)
        .await
        .unwrap();
    let missed = receive_samples(&mut resumed, 7).await;
    assert_eq!(missed.len(), 7, "exactly the samples after the cursor");
    assert!(missed.iter().all(|sequence| *sequence > cursor));
    seen.extend(missed);
    assert!(seen.windows(2).all(|pair| pair[0] < pair[1]), "{seen:?}");
    record(&app, &miner, &session_id, 2).await;
    assert_eq!(receive_samples(&mut resumed, 2).await.len(), 2);

    let negative = watch_session(&app, &miner, &session_id, -1)
        .await
        .unwrap_err();
    assert_eq!(
        crate::common::violated_fields(&negative),
        ["after_sequence"]
    );
}
