//! The Redis cache, outages of Redis and PostgreSQL, two replicas, rate
//! limits and overload — against real servers, a private `redis-server` and
//! a TCP proxy in front of PostgreSQL that the tests cut.
//!
//! Timings are printed (`cargo test --test it resilience:: -- --nocapture`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::infra::{RedisServer, TcpProxy};
use crate::common::money::{azr, micros};
use crate::common::{Backend, TestApp, authed, secret_for_tests};
use azora::proto::identity as ipb;
use azora::proto::identity::identity_service_client::IdentityServiceClient;
use azora::proto::treasury as tpb;
use azora::proto::treasury::treasury_service_client::TreasuryServiceClient;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt;

on_both_backends!(
    a_read_after_a_committed_write_never_returns_the_old_value,
    mining_performance_and_minted_earnings_are_fresh_after_each_write,
    reads_stay_correct_while_redis_is_down_and_health_follows_it,
    founder_pay_rewards_and_invoice_payments_are_fresh_in_cached_reads,
);

async fn status(channel: Channel, service: &str) -> ServingStatus {
    let mut health = HealthClient::new(channel);
    let response = health
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("health answers");
    ServingStatus::try_from(response.into_inner().status).unwrap()
}

/// Polls health every 20 ms until `service` reports `wanted`; how long it
/// took. Panics after `limit`.
async fn wait_for(
    channel: Channel,
    service: &str,
    wanted: ServingStatus,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    while status(channel.clone(), service).await != wanted {
        assert!(
            started.elapsed() < limit,
            "{service:?} not {wanted:?} after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

async fn balance_via(channel: Channel, key: &str, wallet: &str) -> Result<String, tonic::Status> {
    TreasuryServiceClient::new(channel)
        .get_balance(authed(
            key,
            tpb::GetBalanceRequest {
                wallet_id: wallet.into(),
                as_of_time: None,
            },
        ))
        .await
        .map(|response| response.into_inner().available.unwrap().value)
}

async fn transfer_via(
    channel: Channel,
    key: &str,
    request_id: &str,
    from: &str,
    to: &str,
    amount: &str,
) -> Result<tpb::Transaction, tonic::Status> {
    TreasuryServiceClient::new(channel)
        .transfer(authed(
            key,
            tpb::TransferRequest {
                request_id: request_id.into(),
                from_wallet_id: from.into(),
                to_wallet_id: to.into(),
                amount: azr(amount),
                ..Default::default()
            },
        ))
        .await
        .map(|response| response.into_inner().transaction.unwrap())
}

async fn kyc_via(channel: Channel, key: &str, user: &str) -> Result<ipb::User, tonic::Status> {
    IdentityServiceClient::new(channel)
        .get_user(authed(
            key,
            ipb::GetUserRequest {
                user_id: user.into(),
            },
        ))
        .await
        .map(|response| response.into_inner().user.unwrap())
}

async fn set_kyc(app: &TestApp, user: &str, kyc_status: ipb::KycStatus) {
    app.identity()
        .await
        .set_kyc_status(authed(
            &app.admin_key,
            ipb::SetKycStatusRequest {
                user_id: user.into(),
                kyc_status: kyc_status as i32,
                reason: "checked by the test".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("set kyc");
}

async fn a_read_after_a_committed_write_never_returns_the_old_value(backend: Backend) {
    let redis = RedisServer::start();
    let app = TestApp::spawn_with(backend, |settings| {
        settings.redis_url = Some(secret_for_tests(&redis.url()));
    })
    .await;
    let channel = app.channel().await;
    let (alice, alice_key, alice_wallet) = app.member_with_wallet("alice").await;
    let (_, bob_key, bob_wallet) = app.member_with_wallet("bob").await;
    app.fund(&alice_wallet, "100").await;

    // Balances: every read after a transfer shows it, cached or not.
    let mut expected = micros("100");
    for round in 0..5 {
        for _ in 0..3 {
            let seen = balance_via(channel.clone(), &alice_key, &alice_wallet)
                .await
                .unwrap();
            assert_eq!(micros(&seen), expected, "round {round}");
        }
        transfer_via(
            channel.clone(),
            &alice_key,
            &format!("t{round}"),
            &alice_wallet,
            &bob_wallet,
            "1.5",
        )
        .await
        .unwrap();
        expected -= micros("1.5");
    }
    // Balances are cached (a loaded machine may time a few Redis calls out,
    // and those reads go to the database instead).
    let started = Instant::now();
    while redis.count_keys("azora:c:balance:*") == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "balances are never cached"
        );
        balance_via(channel.clone(), &alice_key, &alice_wallet)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The cached wallet and balance are still checked against the caller.
    let denied = balance_via(channel.clone(), &bob_key, &alice_wallet)
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let denied = IdentityServiceClient::new(channel.clone())
        .get_wallet(authed(
            &bob_key,
            ipb::GetWalletRequest {
                wallet_id: alice_wallet.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    // GetWallet carries balances too.
    let wallet = IdentityServiceClient::new(channel.clone())
        .get_wallet(authed(
            &alice_key,
            ipb::GetWalletRequest {
                wallet_id: bob_wallet.clone(),
            },
        ))
        .await;
    assert_eq!(wallet.unwrap_err().code(), Code::PermissionDenied);
    let wallet_of = |wallet: String| {
        let channel = channel.clone();
        let key = app.admin_key.clone();
        async move {
            IdentityServiceClient::new(channel)
                .get_wallet(authed(&key, ipb::GetWalletRequest { wallet_id: wallet }))
                .await
                .unwrap()
                .into_inner()
                .wallet
                .unwrap()
        }
    };
    let before = wallet_of(bob_wallet.clone()).await;
    app.fund(&bob_wallet, "2").await;
    let after = wallet_of(bob_wallet.clone()).await;
    assert_ne!(before, after, "GetWallet shows the deposit at once");

    // Users: a KYC change shows at once.
    for kyc in [ipb::KycStatus::Verified, ipb::KycStatus::Rejected] {
        kyc_via(channel.clone(), &alice_key, &alice).await.unwrap();
        set_kyc(&app, &alice, kyc).await;
        let user = kyc_via(channel.clone(), &alice_key, &alice).await.unwrap();
        assert_eq!(user.kyc_status, kyc as i32);
    }

    // The treasury summary follows mints.
    let supply = |summary: tpb::GetTreasurySummaryResponse| summary.total_supply.unwrap().value;
    let first = supply(app.summary().await);
    assert_eq!(first, supply(app.summary().await));
    app.fund(&alice_wallet, "10").await;
    let second = supply(app.summary().await);
    assert_eq!(micros(&second), micros(&first) + micros("10"));
}

async fn reads_stay_correct_while_redis_is_down_and_health_follows_it(backend: Backend) {
    let mut redis = RedisServer::start();
    let app = TestApp::spawn_with(backend, |settings| {
        settings.redis_url = Some(secret_for_tests(&redis.url()));
    })
    .await;
    let channel = app.channel().await;
    let (_, key, wallet) = app.member_with_wallet("carol").await;
    let (_, _, other) = app.member_with_wallet("dave").await;
    app.fund(&wallet, "50").await;
    assert_eq!(
        status(channel.clone(), "redis").await,
        ServingStatus::Serving
    );
    assert_eq!(
        micros(&balance_via(channel.clone(), &key, &wallet).await.unwrap()),
        micros("50")
    );

    // Redis crashes.
    redis.kill();
    let health = tokio::spawn(wait_for(
        channel.clone(),
        "redis",
        ServingStatus::NotServing,
        Duration::from_secs(2),
    ));
    let mut slowest = Duration::ZERO;
    for round in 0..10 {
        let started = Instant::now();
        transfer_via(
            channel.clone(),
            &key,
            &format!("down{round}"),
            &wallet,
            &other,
            "1",
        )
        .await
        .expect("writes succeed without redis");
        let seen = balance_via(channel.clone(), &key, &wallet).await.unwrap();
        slowest = slowest.max(started.elapsed());
        assert_eq!(micros(&seen), micros("50") - (round + 1) * micros("1"));
    }
    let not_serving = health.await.unwrap();
    assert_eq!(
        status(channel.clone(), "readiness").await,
        ServingStatus::Serving
    );
    assert!(
        slowest < Duration::from_millis(1000),
        "a transfer and a read took {slowest:?} without redis"
    );

    // Redis comes back, empty.
    redis.restart();
    let serving = wait_for(
        channel.clone(),
        "redis",
        ServingStatus::Serving,
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(
        micros(&balance_via(channel.clone(), &key, &wallet).await.unwrap()),
        micros("40")
    );
    // The client reconnected: reads fill the cache again.
    let filled = Instant::now();
    while redis.count_keys("azora:c:balance:*") == 0 {
        assert!(
            filled.elapsed() < Duration::from_secs(3),
            "the cache is not used again"
        );
        balance_via(channel.clone(), &key, &wallet).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Redis freezes with its data (a write's invalidation times out), then
    // continues: the replica no longer trusts what it cached before.
    redis.pause();
    let started = Instant::now();
    transfer_via(channel.clone(), &key, "frozen", &wallet, &other, "5")
        .await
        .unwrap();
    let frozen_write = started.elapsed();
    redis.resume();
    // Right away, and again once the circuit breaker has closed and Redis
    // (still holding the old entry) answers lookups.
    for round in 0..10 {
        assert_eq!(
            micros(&balance_via(channel.clone(), &key, &wallet).await.unwrap()),
            micros("35"),
            "round {round}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "redis killed: NOT_SERVING after {not_serving:?}; slowest transfer+read while down {slowest:?}; \
         restarted: SERVING after {serving:?}; a transfer while redis was frozen took {frozen_write:?}"
    );
}

/// PostgreSQL behind a proxy that the test cuts: existing connections drop
/// and new ones hang, as when the database host becomes unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_fails_calls_unavailable_within_three_seconds_and_recovers() {
    let postgres: SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let proxy = TcpProxy::start(postgres).await;
    let proxied = format!("postgres://postgres@{}", proxy.address);
    let app = TestApp::spawn_with(Backend::Postgres, |settings| {
        let url = settings
            .database_url
            .expose()
            .replace(&crate::common::postgres_server_url(), &proxied);
        settings.database_url = secret_for_tests(&url);
    })
    .await;
    let channel = app.channel().await;
    let (_, key, wallet) = app.member_with_wallet("erin").await;
    let (_, _, other) = app.member_with_wallet("frank").await;
    app.fund(&wallet, "20").await;

    proxy.cut();
    let readiness = tokio::spawn(wait_for(
        channel.clone(),
        "readiness",
        ServingStatus::NotServing,
        Duration::from_secs(3),
    ));
    let mut attempts = Vec::new();
    for round in 0..3 {
        let started = Instant::now();
        let outcome = transfer_via(channel.clone(), &key, "during", &wallet, &other, "1").await;
        let failed = outcome.expect_err("no transfer while the database is away");
        assert_eq!(
            failed.code(),
            Code::Unavailable,
            "round {round}: {failed:?}"
        );
        attempts.push(started.elapsed());
    }
    let started = Instant::now();
    let listed = IdentityServiceClient::new(channel.clone())
        .list_users(authed(&app.admin_key, ipb::ListUsersRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(listed.code(), Code::Unavailable, "{listed:?}");
    attempts.push(started.elapsed());
    let slowest = attempts.iter().max().copied().unwrap();
    assert!(
        slowest < Duration::from_millis(3500),
        "UNAVAILABLE must come within ~3 s, took {attempts:?}"
    );
    let readiness_down = readiness.await.unwrap();
    assert_eq!(
        status(channel.clone(), "postgres").await,
        ServingStatus::NotServing
    );
    assert_eq!(
        status(channel.clone(), "liveness").await,
        ServingStatus::Serving
    );

    proxy.restore();
    let restored_at = Instant::now();
    let serving = wait_for(
        channel.clone(),
        "readiness",
        ServingStatus::Serving,
        Duration::from_secs(5),
    )
    .await;
    let recovered = loop {
        match transfer_via(channel.clone(), &key, "during", &wallet, &other, "1").await {
            Ok(transaction) => break transaction,
            Err(status) => {
                assert!(
                    restored_at.elapsed() < Duration::from_secs(10),
                    "{status:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let recovered_after = restored_at.elapsed();
    // The retried request id applies once: nothing was half-applied.
    assert_eq!(micros(&recovered.amount_azr.unwrap().value), micros("1"));
    assert_eq!(micros(&app.available(&wallet).await), micros("19"));
    assert_eq!(micros(&app.available(&other).await), micros("1"));
    eprintln!(
        "database cut: calls failed UNAVAILABLE after {attempts:?}; readiness NOT_SERVING by {readiness_down:?}; \
         restored: readiness SERVING after {serving:?}, a transfer succeeded after {recovered_after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_conserve_money_share_idempotency_and_never_serve_stale_reads() {
    let redis = RedisServer::start();
    let app = TestApp::spawn_with(Backend::Postgres, |settings| {
        settings.redis_url = Some(secret_for_tests(&redis.url()));
    })
    .await;
    // A second server on the same PostgreSQL and Redis. In-process: the
    // shared target directory's `azora` binary may be another worktree's.
    let replica = app
        .replica(|settings| {
            settings.redis_url = Some(secret_for_tests(&redis.url()));
        })
        .await;
    let replicas = [app.channel().await, replica.channel().await];

    let mut holders = Vec::new();
    for index in 0..6 {
        let (_, key, wallet) = app.member_with_wallet(&format!("holder{index}")).await;
        app.fund(&wallet, "100").await;
        holders.push((key, wallet));
    }
    let total = micros("600");

    // Concurrent transfers through both replicas; every third one is retried
    // with the same request id on the other replica.
    let mut tasks = Vec::new();
    for task in 0..8usize {
        let replicas = replicas.clone();
        let holders = holders.clone();
        tasks.push(tokio::spawn(async move {
            let mut retried = 0;
            for round in 0..20usize {
                let from = (task + round) % holders.len();
                let to = (from + 1 + round % (holders.len() - 1)) % holders.len();
                let (key, from_wallet) = &holders[from];
                let to_wallet = &holders[to].1;
                let request_id = format!("{task}-{round}");
                let first = (task + round) % 2;
                let amount = format!("0.{:02}", 1 + round);
                let outcome = transfer_via(
                    replicas[first].clone(),
                    key,
                    &request_id,
                    from_wallet,
                    to_wallet,
                    &amount,
                )
                .await;
                if round % 3 == 0 {
                    let again = transfer_via(
                        replicas[1 - first].clone(),
                        key,
                        &request_id,
                        from_wallet,
                        to_wallet,
                        &amount,
                    )
                    .await;
                    match (&outcome, &again) {
                        (Ok(one), Ok(other)) => assert_eq!(one.id, other.id, "one effect per id"),
                        (Err(one), Err(other)) => assert_eq!(one.code(), other.code()),
                        _ => {
                            panic!("a retry on the other replica disagreed: {outcome:?} {again:?}")
                        }
                    }
                    retried += 1;
                }
                if let Err(status) = outcome {
                    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
                }
            }
            retried
        }));
    }
    let mut retried = 0;
    for task in tasks {
        retried += task.await.unwrap();
    }
    assert!(retried > 0);

    // Conservation, read through each replica (cached or not).
    for channel in &replicas {
        let mut sum = 0;
        for (key, wallet) in &holders {
            sum += micros(&balance_via(channel.clone(), key, wallet).await.unwrap());
        }
        assert_eq!(sum, total, "money is conserved");
    }

    // Read-after-write across replicas, with both caches warm.
    let (key, from) = holders[0].clone();
    let to = holders[1].1.clone();
    let mut expected = micros(&balance_via(replicas[0].clone(), &key, &from).await.unwrap());
    let mut slowest_visibility = Duration::ZERO;
    for round in 0..20 {
        let (writer, reader) = (round % 2, 1 - round % 2);
        balance_via(replicas[reader].clone(), &key, &from)
            .await
            .unwrap();
        let written = Instant::now();
        transfer_via(
            replicas[writer].clone(),
            &key,
            &format!("raw{round}"),
            &from,
            &to,
            "0.01",
        )
        .await
        .unwrap();
        expected -= micros("0.01");
        let seen = balance_via(replicas[reader].clone(), &key, &from)
            .await
            .unwrap();
        slowest_visibility = slowest_visibility.max(written.elapsed());
        assert_eq!(
            micros(&seen),
            expected,
            "round {round}: the other replica read a stale balance"
        );
    }
    eprintln!(
        "two replicas: {retried} retries crossed replicas; conservation held; 20 cross-replica reads after writes were fresh (slowest write+read {slowest_visibility:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_holds_across_two_replicas_and_spares_other_keys() {
    let mut redis = RedisServer::start();
    let limits = "admin=0,member=10";
    let app = TestApp::spawn_with(Backend::Postgres, |settings| {
        settings.redis_url = Some(secret_for_tests(&redis.url()));
        settings.rate_limit = limits.into();
    })
    .await;
    let replica = app
        .replica(|settings| {
            settings.redis_url = Some(secret_for_tests(&redis.url()));
            settings.rate_limit = limits.into();
        })
        .await;
    let replicas = [app.channel().await, replica.channel().await];
    let (busy, busy_key) = app.user_with_role("busy", ipb::Role::Member).await;
    let (quiet, quiet_key) = app.user_with_role("quiet", ipb::Role::Member).await;

    // 30 calls alternating between the replicas, from the start of a
    // one-second window. A Redis call that times out on a loaded machine
    // falls back to a local limit, so up to three windows are tried: one
    // must allow exactly the limit.
    let mut windows = Vec::new();
    let (allowed, refused, elapsed) = loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1010 - u64::from(now.subsec_millis()))).await;
        let started = Instant::now();
        let mut allowed = 0;
        let mut refused = Vec::new();
        for call in 0..30 {
            match kyc_via(replicas[call % 2].clone(), &busy_key, &busy).await {
                Ok(_) => allowed += 1,
                Err(status) => refused.push(status),
            }
        }
        let elapsed = started.elapsed();
        windows.push((allowed, elapsed));
        if (allowed == 10 && elapsed < Duration::from_millis(950)) || windows.len() == 3 {
            break (allowed, refused, elapsed);
        }
    };
    assert_eq!(
        allowed, 10,
        "10 per second across both replicas: {windows:?}"
    );
    let status = refused.first().expect("some calls are refused");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let delay = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .expect("RetryInfo with a delay");
    assert!(delay <= Duration::from_secs(1), "{delay:?}");
    assert!(
        refused
            .iter()
            .all(|status| status.code() == Code::ResourceExhausted)
    );
    // Another key is unaffected, on either replica.
    for channel in &replicas {
        kyc_via(channel.clone(), &quiet_key, &quiet)
            .await
            .expect("other keys are not limited");
    }
    // After the delay the key may call again.
    tokio::time::sleep(delay).await;
    kyc_via(replicas[0].clone(), &busy_key, &busy)
        .await
        .expect("allowed again in the next window");

    // Without Redis each replica limits on its own: neither unlimited nor
    // closed.
    redis.kill();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut allowed_locally = 0;
    let started = Instant::now();
    for _ in 0..30 {
        if kyc_via(replicas[0].clone(), &busy_key, &busy).await.is_ok() {
            allowed_locally += 1;
        }
    }
    let local_elapsed = started.elapsed();
    let most = 10 + (local_elapsed.as_secs_f64() * 10.0).ceil() as usize;
    assert!(
        (5..=most).contains(&allowed_locally) && allowed_locally < 30,
        "{allowed_locally} of 30 allowed in {local_elapsed:?} without redis"
    );
    eprintln!(
        "rate limit 10/s: {allowed} of 30 calls allowed across two replicas in {elapsed:?}, retry delay {delay:?}; \
         redis down: {allowed_locally} of 30 allowed by the local fallback in {local_elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_refused_at_once_and_throughput_recovers() {
    let app = TestApp::spawn_with(Backend::Postgres, |settings| {
        settings.max_concurrent_requests = 4;
    })
    .await;
    let channel = app.channel().await;
    let (user, key) = app.user_with_role("grace", ipb::Role::Member).await;

    // Four client streams that never finish hold every slot.
    use azora::proto::mining as mpb;
    use azora::proto::mining::mining_service_client::MiningServiceClient;
    let mut holders = Vec::new();
    let mut releases = Vec::new();
    for _ in 0..4 {
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        releases.push(release);
        let messages = futures::stream::once(async move {
            let _ = released.await;
            mpb::RecordStatisticsRequest::default()
        });
        let mut mining = MiningServiceClient::new(channel.clone());
        let key = key.clone();
        holders.push(tokio::spawn(async move {
            mining.record_statistics(authed(&key, messages)).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let refused = kyc_via(channel.clone(), &key, &user).await.unwrap_err();
    let refused_after = started.elapsed();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused_after < Duration::from_millis(200),
        "{refused_after:?}"
    );

    // A burst while full: every call is answered at once, none hangs.
    let started = Instant::now();
    let burst: Vec<_> = (0..50)
        .map(|_| {
            let channel = channel.clone();
            let key = key.clone();
            let user = user.clone();
            tokio::spawn(async move { kyc_via(channel, &key, &user).await })
        })
        .collect();
    for call in burst {
        let outcome = call.await.unwrap();
        assert_eq!(outcome.unwrap_err().code(), Code::ResourceExhausted);
    }
    let burst_took = started.elapsed();
    assert!(burst_took < Duration::from_secs(2), "{burst_took:?}");

    // The load drops: calls succeed again.
    drop(releases);
    for holder in holders {
        let _ = holder.await.unwrap();
    }
    let started = Instant::now();
    for _ in 0..50 {
        kyc_via(channel.clone(), &key, &user)
            .await
            .expect("served again once the load dropped");
    }
    eprintln!(
        "overload: refused RESOURCE_EXHAUSTED after {refused_after:?}; 50 calls refused in {burst_took:?}; \
         then 50 calls served in {:?}",
        started.elapsed()
    );
}

async fn mining_performance_and_minted_earnings_are_fresh_after_each_write(backend: Backend) {
    use azora::proto::mining as mpb;
    use azora::proto::mining::mining_service_client::MiningServiceClient;
    use azora::proto::types::Decimal;

    let redis = RedisServer::start();
    let app = TestApp::spawn_with(backend, |settings| {
        settings.redis_url = Some(secret_for_tests(&redis.url()));
    })
    .await;
    let channel = app.channel().await;
    let mut mining = MiningServiceClient::new(channel.clone());
    let (_, miner, wallet) = app.member_with_wallet("miner").await;
    let session = mining
        .start_session(authed(
            &miner,
            mpb::StartSessionRequest {
                wallet_id: wallet.clone(),
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
    let now = chrono::Utc::now();
    let timestamp = |at: chrono::DateTime<chrono::Utc>| prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    };
    let window = mpb::GetMiningPerformanceRequest {
        start_time: Some(timestamp(now - chrono::Duration::hours(1))),
        end_time: Some(timestamp(now + chrono::Duration::hours(1))),
        miner_id: String::new(),
    };
    let reader = mining.clone();
    let samples_seen = |key: String| {
        let mut mining = reader.clone();
        let window = window.clone();
        async move {
            let report = mining
                .get_mining_performance(authed(&key, window))
                .await
                .unwrap()
                .into_inner();
            report
                .by_algorithm
                .iter()
                .map(|performance| performance.sample_count)
                .sum::<i64>()
        }
    };
    let mut recorded = 0;
    for round in 0..3 {
        // Both a miner's own figures and everyone's (staff) are cached.
        assert_eq!(samples_seen(miner.clone()).await, recorded, "round {round}");
        assert_eq!(samples_seen(app.admin_key.clone()).await, recorded);
        let samples: Vec<mpb::Sample> = (0..5)
            .map(|index| mpb::Sample {
                sample_time: Some(timestamp(
                    chrono::Utc::now() + chrono::Duration::milliseconds(index),
                )),
                hashrate_mhs: 100.0,
                power_watts: 1000.0,
                temperature_celsius: 60.0,
                shares_accepted: 1,
                earnings_usd: Some(Decimal {
                    value: "0.5".into(),
                }),
                ..Default::default()
            })
            .collect();
        mining
            .record_statistics(authed(
                &miner,
                tokio_stream::iter([mpb::RecordStatisticsRequest {
                    session_id: session.id.clone(),
                    samples,
                    ..Default::default()
                }]),
            ))
            .await
            .unwrap();
        recorded += 5;
    }
    assert_eq!(samples_seen(miner.clone()).await, recorded);

    // Ending the session mints through ledger::apply_in inside the mining
    // transaction: the cached balance must follow.
    assert_eq!(
        micros(&balance_via(channel.clone(), &miner, &wallet).await.unwrap()),
        0
    );
    let ended = mining
        .end_session(authed(
            &miner,
            mpb::EndSessionRequest {
                session_id: session.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    // The earnings are a pending claim until a treasurer confirms them
    // (ledger::apply_in again, from the treasury's writer).
    assert_eq!(
        micros(&balance_via(channel.clone(), &miner, &wallet).await.unwrap()),
        0
    );
    app.treasury()
        .await
        .confirm_transaction(authed(
            &app.admin_key,
            tpb::ConfirmTransactionRequest {
                request_id: "confirm-claim".into(),
                transaction_id: ended.mint_transaction_id,
                backing_reference: "payout-1".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let after = micros(&balance_via(channel.clone(), &miner, &wallet).await.unwrap());
    assert!(after > 0, "the minted earnings show at once");
}

/// The harder outage: the network to PostgreSQL goes silent (no resets), in
/// the middle of traffic. Calls must still fail UNAVAILABLE within ~3 s, not
/// hang behind the connections that were in use, and recover afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_database_network_fails_calls_unavailable_within_three_seconds() {
    let postgres: SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let proxy = TcpProxy::start(postgres).await;
    let proxied = format!("postgres://postgres@{}", proxy.address);
    let app = TestApp::spawn_with(Backend::Postgres, |settings| {
        let url = settings
            .database_url
            .expose()
            .replace(&crate::common::postgres_server_url(), &proxied);
        settings.database_url = secret_for_tests(&url);
    })
    .await;
    let channel = app.channel().await;
    let (_, key, wallet) = app.member_with_wallet("ivan").await;
    let (_, _, other) = app.member_with_wallet("judy").await;
    app.fund(&wallet, "100").await;

    // Eight clients transfer back to back; the network goes silent under
    // them, with statements in flight on open connections.
    let calls: Vec<_> = (0..8)
        .map(|client| {
            let channel = channel.clone();
            let key = key.clone();
            let (wallet, other) = (wallet.clone(), other.clone());
            tokio::spawn(async move {
                let mut round = 0;
                loop {
                    let request_id = format!("silent{client}-{round}");
                    let outcome =
                        transfer_via(channel.clone(), &key, &request_id, &wallet, &other, "0.01")
                            .await;
                    if let Err(status) = outcome {
                        return (Instant::now(), status.code());
                    }
                    round += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.blackhole();
    let silent_at = Instant::now();
    let readiness = tokio::spawn(wait_for(
        channel.clone(),
        "readiness",
        ServingStatus::NotServing,
        Duration::from_secs(3),
    ));
    let mut timings = Vec::new();
    for call in calls {
        let (ended, code) = tokio::time::timeout(Duration::from_secs(20), call)
            .await
            .expect("a call hung for 20 s")
            .unwrap();
        let took = ended.duration_since(silent_at);
        assert_eq!(code, Code::Unavailable, "after {took:?}");
        timings.push(took);
    }
    let slowest = timings.iter().max().copied().unwrap();
    assert!(
        slowest < Duration::from_millis(4000),
        "UNAVAILABLE must come within ~3 s, not hang: {timings:?}"
    );
    let readiness_down = readiness.await.unwrap();
    assert_eq!(
        status(channel.clone(), "liveness").await,
        ServingStatus::Serving
    );

    proxy.restore();
    let restored_at = Instant::now();
    loop {
        match transfer_via(channel.clone(), &key, "after-silence", &wallet, &other, "1").await {
            Ok(_) => break,
            Err(status) => {
                assert!(
                    restored_at.elapsed() < Duration::from_secs(10),
                    "{status:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let recovered_after = restored_at.elapsed();
    // Each request id applied at most once, and money is conserved.
    let (left, right) = (
        micros(&app.available(&wallet).await),
        micros(&app.available(&other).await),
    );
    assert_eq!(left + right, micros("100"));
    eprintln!(
        "database network silent: 8 clients' transfers failed UNAVAILABLE {timings:?} after it went silent; \
         readiness NOT_SERVING after {readiness_down:?}; restored: a transfer succeeded after {recovered_after:?}"
    );
}

/// The services that pay through `ledger::apply_in` invalidate what they
/// change: balances and the treasury summary read (and cached) just before
/// are fresh just after each payment.
async fn founder_pay_rewards_and_invoice_payments_are_fresh_in_cached_reads(backend: Backend) {
    use azora::proto::treasury::billing_service_client::BillingServiceClient;
    use azora::proto::treasury::founder_compensation_service_client::FounderCompensationServiceClient;
    use azora::proto::treasury::knowledge_reward_service_client::KnowledgeRewardServiceClient;
    use azora::proto::types::Decimal;

    let redis = RedisServer::start();
    let app = TestApp::spawn_with(backend, |settings| {
        settings.redis_url = Some(secret_for_tests(&redis.url()));
    })
    .await;
    app.mint("10000").await;
    let (founder, _) = app
        .user_of_type("fay", ipb::UserType::Founder, ipb::Role::Member)
        .await;
    let founder_wallet = app.wallet_for(&founder).await;
    let (student, _) = app
        .user_of_type("stu", ipb::UserType::Student, ipb::Role::Member)
        .await;
    let student_wallet = app.wallet_for(&student).await;
    let (member, member_key, member_wallet) = app.member_with_wallet("sam").await;
    app.fund(&member_wallet, "50").await;
    // Warm the cache: each read twice, the second from Redis.
    let warm = |wallet: String| {
        let app = &app;
        async move {
            app.available(&wallet).await;
            app.available(&wallet).await
        }
    };
    assert_eq!(warm(founder_wallet.clone()).await, "0.000000");
    assert_eq!(warm(student_wallet.clone()).await, "0.000000");
    assert_eq!(warm(member_wallet.clone()).await, "50.000000");
    app.summary().await;
    assert_eq!(
        app.pool(tpb::SystemAccount::FounderPool).await,
        "1100.000000"
    );

    let mut compensation = FounderCompensationServiceClient::new(app.channel().await);
    let record = compensation
        .create_founder_compensation(authed(
            &app.admin_key,
            tpb::CreateFounderCompensationRequest {
                request_id: "fresh-1".into(),
                founder_id: founder.clone(),
                wallet_id: founder_wallet.clone(),
                month: "2026-11".into(),
                r#type: tpb::CompensationType::Salary as i32,
                amount: azr("100"),
                notes: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .compensation
        .unwrap();
    compensation
        .approve_founder_compensation(authed(
            &app.admin_key,
            tpb::ApproveFounderCompensationRequest {
                compensation_id: record.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    compensation
        .pay_founder_compensation(authed(
            &app.admin_key,
            tpb::PayFounderCompensationRequest {
                compensation_id: record.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    assert_eq!(app.available(&founder_wallet).await, "100.000000");
    assert_eq!(
        app.pool(tpb::SystemAccount::FounderPool).await,
        "1000.000000"
    );

    let (_, teacher) = app
        .user_of_type("tea", ipb::UserType::Teacher, ipb::Role::Member)
        .await;
    app.pool(tpb::SystemAccount::CirculationPool).await;
    KnowledgeRewardServiceClient::new(app.channel().await)
        .record_proof_of_knowledge(authed(
            &teacher,
            tpb::RecordProofOfKnowledgeRequest {
                source_transaction_id: "fresh-proof".into(),
                student_id: student.clone(),
                wallet_id: student_wallet.clone(),
                kind: tpb::ProofKind::Course as i32,
                subject: "caching".into(),
                score: Some(Decimal { value: "99".into() }),
                evidence_hash: "cd".repeat(32),
                reward_amount: azr("2.5"),
            },
        ))
        .await
        .unwrap();
    assert_eq!(app.available(&student_wallet).await, "2.500000");
    assert_eq!(
        app.pool(tpb::SystemAccount::CirculationPool).await,
        "1397.500000"
    );

    let mut billing = BillingServiceClient::new(app.channel().await);
    let invoice = billing
        .create_subscription(authed(
            &member_key,
            tpb::CreateSubscriptionRequest {
                request_id: "fresh-sub".into(),
                user_id: member.clone(),
                tier: tpb::SubscriptionTier::Basic as i32,
                currency: tpb::Currency::Azr as i32,
                start_time: None,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .invoices[0]
        .id
        .clone();
    app.pool(tpb::SystemAccount::TreasuryReserve).await;
    billing
        .pay_invoice(authed(
            &member_key,
            tpb::PayInvoiceRequest {
                invoice_id: invoice,
                wallet_id: member_wallet.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    assert_eq!(app.available(&member_wallet).await, "40.010000");
    assert_eq!(
        app.pool(tpb::SystemAccount::TreasuryReserve).await,
        "7009.990000"
    );
}

/// A process killed between a ledger commit and its invalidation reaching
/// Redis: once a process starts again, no replica serves the old balance.
/// The killed server is the real binary (SIGKILL); its Redis traffic runs
/// through a proxy that swallows the invalidation and is then cut, so
/// nothing of it ever reaches Redis.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_commit_and_invalidation_leaves_no_stale_read_after_a_restart() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let redis = RedisServer::start();
    let redis_url = redis.url();
    let app = TestApp::spawn_with(Backend::Postgres, |settings| {
        settings.redis_url = Some(secret_for_tests(&redis_url));
        settings.auth_cache_ms = 0;
    })
    .await;
    let (_, alice, wallet) = app.member_with_wallet("alice").await;
    let (_, _, bob_wallet) = app.member_with_wallet("bob").await;
    app.fund(&wallet, "100").await;

    let redis_address: SocketAddr = format!("127.0.0.1:{}", redis.port).parse().unwrap();
    let proxy = TcpProxy::start(redis_address).await;
    let port = crate::common::infra::free_port();
    let mut doomed = tokio::process::Command::new(env!("CARGO_BIN_EXE_azora"))
        .arg("serve")
        .env("AZORA_DATABASE_URL", &app.database.url)
        .env("AZORA_REDIS_URL", format!("redis://{}", proxy.address))
        .env("AZORA_LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("AZORA_NO_MIGRATE", "true")
        .env("AZORA_RATE_LIMIT", "admin=0,member=0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start azora");
    let mut lines = BufReader::new(doomed.stderr.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(30), async {
        let mut said = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("serving") {
                return;
            }
            said.push(line);
        }
        panic!("the server exited before serving: {said:#?}");
    })
    .await
    .expect("the binary serves within 30 s");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let doomed_channel = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();

    // Both replicas have the balance cached (once the starting one trusts
    // its cache: it moves the epoch first).
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_secs(2) {
        assert_eq!(
            balance_via(doomed_channel.clone(), &alice, &wallet)
                .await
                .unwrap(),
            "100.000000"
        );
        assert_eq!(
            balance_via(app.channel().await, &alice, &wallet)
                .await
                .unwrap(),
            "100.000000"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The doomed replica commits a transfer; its invalidation goes nowhere.
    proxy.blackhole();
    let moved = transfer_via(
        doomed_channel,
        &alice,
        "crash-1",
        &wallet,
        &bob_wallet,
        "40",
    )
    .await;
    assert!(moved.is_ok(), "{moved:?}");
    doomed.start_kill().unwrap();
    doomed.wait().await.unwrap();
    proxy.cut();

    // A process starts again (here, a replica in this test process).
    let restarted = app
        .replica(|settings| {
            settings.redis_url = Some(secret_for_tests(&redis_url));
            settings.auth_cache_ms = 0;
        })
        .await;
    assert_eq!(
        balance_via(restarted.channel().await, &alice, &wallet)
            .await
            .unwrap(),
        "60.000000",
        "the restarted process reads fresh"
    );
    // It moved the epoch on before trusting the cache, so the replica that
    // kept running is fresh too.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let seen = balance_via(app.channel().await, &alice, &wallet)
            .await
            .unwrap();
        if seen == "60.000000" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the surviving replica still serves {seen} after the restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The retry of a non-ledger write whose invalidation was lost (the first
/// call committed, then its generation increment never reached Redis)
/// invalidates again: the replay refreshes every replica's cached read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_invoice_payment_invalidates_what_its_first_call_may_not_have() {
    use azora::proto::treasury::billing_service_client::BillingServiceClient;
    let redis = RedisServer::start();
    let redis_url = redis.url();
    let app = TestApp::spawn_with(Backend::Postgres, |settings| {
        settings.redis_url = Some(secret_for_tests(&redis_url));
    })
    .await;
    let (user, key, wallet) = app.member_with_wallet("payer").await;
    app.fund(&wallet, "100").await;
    let mut billing = BillingServiceClient::new(app.channel().await);
    let invoice = billing
        .create_subscription(authed(
            &key,
            tpb::CreateSubscriptionRequest {
                request_id: "signup".into(),
                user_id: user,
                tier: tpb::SubscriptionTier::Basic as i32,
                currency: tpb::Currency::Azr as i32,
                start_time: None,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .invoices
        .remove(0);
    // Cache the balance (once the starting process trusts its cache).
    let generation = format!("azora:g:wallet:{wallet}");
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_secs(2) {
        assert_eq!(
            balance_via(app.channel().await, &key, &wallet)
                .await
                .unwrap(),
            "100.000000"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = redis
        .cli(&["GET", &generation])
        .unwrap_or_else(|| "0".into());
    let pay = tpb::PayInvoiceRequest {
        invoice_id: invoice.id.clone(),
        wallet_id: wallet.clone(),
        request_id: "pay-1".into(),
    };
    billing
        .pay_invoice(authed(&key, pay.clone()))
        .await
        .unwrap();
    // As if the increment had never reached Redis: the old entry is a hit.
    if before == "0" {
        redis.cli(&["DEL", &generation]);
    } else {
        redis.cli(&["SET", &generation, &before]);
    }
    assert_eq!(
        balance_via(app.channel().await, &key, &wallet)
            .await
            .unwrap(),
        "100.000000",
        "the lost invalidation leaves the old value (the case this test is about)"
    );
    let replayed = billing.pay_invoice(authed(&key, pay)).await.unwrap();
    assert_eq!(
        replayed.into_inner().invoice.unwrap().status,
        tpb::InvoiceStatus::Paid as i32
    );
    assert_eq!(
        balance_via(app.channel().await, &key, &wallet)
            .await
            .unwrap(),
        "90.010000",
        "the retry invalidated again"
    );
}
