//! Every mutating RPC is safe to retry: a `request_id` replays the original
//! result, a reused id for another request is INVALID_ARGUMENT, a rejected
//! request leaves its id unused; a resent mining stream or sample never
//! counts twice. On PostgreSQL and SQLite, over a real channel.

use crate::common::money::{address, audited_calls};
use crate::common::{Backend, TestApp, authed, violated_fields};
use azora::proto::identity as ipb;
use azora::proto::mining as mpb;
use azora::proto::mining::mining_service_client::MiningServiceClient;
use azora::proto::types::Decimal;
use tokio::task::JoinSet;
use tonic::Code;

on_both_backends!(
    a_retried_create_user_returns_the_same_user_and_a_reused_id_is_refused,
    concurrent_identical_create_wallets_make_one_wallet,
    a_retried_create_api_key_returns_the_record_without_the_secret,
    a_rejected_request_leaves_its_id_unused,
    a_retried_start_and_end_session_change_nothing,
    a_resent_statistics_stream_is_stored_once,
    resent_numbered_samples_are_skipped,
);

fn create_user(username: &str, request_id: &str) -> ipb::CreateUserRequest {
    ipb::CreateUserRequest {
        username: username.into(),
        user_type: ipb::UserType::Student as i32,
        request_id: request_id.into(),
        ..Default::default()
    }
}

async fn a_retried_create_user_returns_the_same_user_and_a_reused_id_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut identity = app.identity().await;
    let first = identity
        .create_user(authed(&app.admin_key, create_user("alice", "u-1")))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    let again = identity
        .create_user(authed(&app.admin_key, create_user("alice", "u-1")))
        .await
        .expect("a retry is not ALREADY_EXISTS")
        .into_inner()
        .user
        .unwrap();
    assert_eq!(again, first);
    let reused = identity
        .create_user(authed(&app.admin_key, create_user("bob", "u-1")))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&reused), ["request_id"]);
    // The same id on another method is another request too.
    let elsewhere = identity
        .set_kyc_status(authed(
            &app.admin_key,
            ipb::SetKycStatusRequest {
                user_id: first.id.clone(),
                kyc_status: ipb::KycStatus::Verified as i32,
                request_id: "u-1".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&elsewhere), ["request_id"]);
    let users = audited_calls(&app, "user").await;
    assert_eq!(
        users
            .iter()
            .filter(|(method, _)| method == "CreateUser")
            .count(),
        2,
        "alice and her replay, each call audited once: {users:?}"
    );
}

async fn concurrent_identical_create_wallets_make_one_wallet(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (owner, key) = app.user_with_role("owner", ipb::Role::Member).await;
    let request = ipb::CreateWalletRequest {
        owner_id: owner.clone(),
        address: address(),
        label: "main".into(),
        request_id: "w-1".into(),
    };
    let mut calls = JoinSet::new();
    for _ in 0..8 {
        let channel = app.channel().await;
        let (key, request) = (key.clone(), request.clone());
        calls.spawn(async move {
            ipb::identity_service_client::IdentityServiceClient::new(channel)
                .create_wallet(authed(&key, request))
                .await
                .map(|response| response.into_inner().wallet.unwrap().id)
        });
    }
    let mut ids = std::collections::HashSet::new();
    while let Some(result) = calls.join_next().await {
        ids.insert(result.unwrap().expect("every retry succeeds"));
    }
    assert_eq!(ids.len(), 1, "one wallet: {ids:?}");
    let wallets = app
        .identity()
        .await
        .list_wallets(authed(
            &key,
            ipb::ListWalletsRequest {
                owner_id: owner,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .wallets;
    assert_eq!(wallets.len(), 1);
}

async fn a_retried_create_api_key_returns_the_record_without_the_secret(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (owner, key) = app.user_with_role("owner", ipb::Role::Member).await;
    let request = ipb::CreateApiKeyRequest {
        user_id: owner.clone(),
        name: "rig".into(),
        role: ipb::Role::Service as i32,
        request_id: "k-1".into(),
        ..Default::default()
    };
    let mut identity = app.identity().await;
    let first = identity
        .create_api_key(authed(&key, request.clone()))
        .await
        .unwrap()
        .into_inner();
    assert!(!first.secret.is_empty() && !first.replayed);
    let again = identity
        .create_api_key(authed(&key, request))
        .await
        .unwrap()
        .into_inner();
    assert!(again.replayed);
    assert_eq!(again.secret, "", "only the hash was stored");
    assert_eq!(again.api_key, first.api_key);
    let keys = identity
        .list_api_keys(authed(&key, ipb::ListApiKeysRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .api_keys;
    assert_eq!(keys.len(), 2, "the member's own key and one service key");
}

async fn a_rejected_request_leaves_its_id_unused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut identity = app.identity().await;
    identity
        .create_user(authed(&app.admin_key, create_user("taken", "")))
        .await
        .unwrap();
    let refused = identity
        .create_user(authed(&app.admin_key, create_user("taken", "u-2")))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::AlreadyExists);
    identity
        .create_user(authed(&app.admin_key, create_user("free", "u-2")))
        .await
        .expect("the refused call did not use up its id");
}

fn sample(earnings: &str, rig_sequence: i64) -> mpb::Sample {
    let now = chrono::Utc::now();
    mpb::Sample {
        sample_time: Some(prost_types::Timestamp {
            seconds: now.timestamp(),
            nanos: now.timestamp_subsec_nanos() as i32,
        }),
        hashrate_mhs: 100.0,
        power_watts: 1000.0,
        temperature_celsius: 60.0,
        shares_accepted: 1,
        earnings_usd: Some(Decimal {
            value: earnings.into(),
        }),
        rig_sequence,
        ..Default::default()
    }
}

async fn started(
    app: &TestApp,
) -> (
    String,
    MiningServiceClient<tonic::transport::Channel>,
    String,
) {
    let (_, miner, wallet) = app.member_with_wallet("miner").await;
    let mut mining = MiningServiceClient::new(app.channel().await);
    let session = mining
        .start_session(authed(
            &miner,
            mpb::StartSessionRequest {
                wallet_id: wallet,
                algorithm: "sha256".into(),
                pool_name: "alpha".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    (miner, mining, session.id)
}

async fn a_retried_start_and_end_session_change_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, miner, wallet) = app.member_with_wallet("miner").await;
    let mut mining = MiningServiceClient::new(app.channel().await);
    let start = mpb::StartSessionRequest {
        wallet_id: wallet,
        algorithm: "sha256".into(),
        pool_name: "alpha".into(),
        request_id: "s-1".into(),
        ..Default::default()
    };
    let first = mining
        .start_session(authed(&miner, start.clone()))
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    let again = mining
        .start_session(authed(&miner, start))
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(again, first);
    let sessions = mining
        .list_sessions(authed(&miner, mpb::ListSessionsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(sessions.len(), 1);
    let end = mpb::EndSessionRequest {
        session_id: first.id.clone(),
        request_id: "e-1".into(),
    };
    let ended = mining
        .end_session(authed(&miner, end.clone()))
        .await
        .unwrap();
    let replayed = mining.end_session(authed(&miner, end)).await.unwrap();
    assert_eq!(ended.into_inner(), replayed.into_inner());
    let calls = audited_calls(&app, "mining_session").await;
    assert_eq!(calls.len(), 4, "four calls, each audited once: {calls:?}");
}

async fn a_resent_statistics_stream_is_stored_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (miner, mut mining, session) = started(&app).await;
    let stream = |request_id: &str| {
        vec![
            mpb::RecordStatisticsRequest {
                session_id: session.clone(),
                samples: vec![sample("1.5", 0), sample("0.25", 0)],
                request_id: request_id.into(),
            },
            mpb::RecordStatisticsRequest {
                session_id: session.clone(),
                samples: vec![sample("2", 0)],
                request_id: String::new(),
            },
        ]
    };
    let first = mining
        .record_statistics(authed(&miner, tokio_stream::iter(stream("stream-1"))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((first.samples_stored, first.replayed), (3, false));
    // The same stream, resent after a lost answer. Its samples carry new
    // times, so the same id now names a different stream…
    let different = mining
        .record_statistics(authed(&miner, tokio_stream::iter(stream("stream-1"))))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&different), ["request_id"]);
    // …while the very same messages replay.
    let exact = vec![mpb::RecordStatisticsRequest {
        session_id: session.clone(),
        samples: vec![sample("4", 0)],
        request_id: "stream-2".into(),
    }];
    let stored = mining
        .record_statistics(authed(&miner, tokio_stream::iter(exact.clone())))
        .await
        .unwrap()
        .into_inner();
    let resent = mining
        .record_statistics(authed(&miner, tokio_stream::iter(exact)))
        .await
        .unwrap()
        .into_inner();
    assert!(resent.replayed);
    assert_eq!(resent.samples_stored, 1);
    assert_eq!(resent.session, stored.session);
    let totals = resent.session.unwrap();
    assert_eq!(totals.sample_count, 4);
    assert_eq!(totals.total_earnings_usd.unwrap().value, "7.750000");
}

async fn resent_numbered_samples_are_skipped(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (miner, mut mining, session) = started(&app).await;
    let numbered = |numbers: std::ops::RangeInclusive<i64>| {
        vec![mpb::RecordStatisticsRequest {
            session_id: session.clone(),
            samples: numbers.map(|number| sample("1", number)).collect(),
            ..Default::default()
        }]
    };
    let first = mining
        .record_statistics(authed(&miner, tokio_stream::iter(numbered(1..=5))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((first.samples_stored, first.samples_skipped), (5, 0));
    let overlap = mining
        .record_statistics(authed(&miner, tokio_stream::iter(numbered(3..=8))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((overlap.samples_stored, overlap.samples_skipped), (3, 3));
    let totals = overlap.session.unwrap();
    assert_eq!(totals.sample_count, 8);
    assert_eq!(totals.total_earnings_usd.unwrap().value, "8.000000");
    assert_eq!(totals.last_rig_sequence, 8);
    let all_old = mining
        .record_statistics(authed(&miner, tokio_stream::iter(numbered(1..=8))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((all_old.samples_stored, all_old.samples_skipped), (0, 8));

    let mut unordered = numbered(9..=10);
    unordered[0].samples.reverse();
    let refused = mining
        .record_statistics(authed(&miner, tokio_stream::iter(unordered)))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&refused), ["samples[1].rig_sequence"]);
    let mut mixed = numbered(9..=10);
    mixed[0].samples[1].rig_sequence = 0;
    let refused = mining
        .record_statistics(authed(&miner, tokio_stream::iter(mixed)))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&refused), ["samples[1].rig_sequence"]);
}
