//! Health, shutdown and database outages, against the real server.

use std::time::{Duration, Instant};

use crate::common::{Backend, TestApp};
use sea_orm::ConnectionTrait;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

on_both_backends!(
    health_reports_every_entry_without_credentials,
    shutdown_flips_health_to_not_serving_and_ends_watch_streams,
    redis_is_reported_when_configured,
);

async fn check(app: &TestApp, service: &str) -> Result<ServingStatus, Code> {
    let mut health = HealthClient::new(app.channel().await);
    health
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .map(|response| ServingStatus::try_from(response.into_inner().status).unwrap())
        .map_err(|status| status.code())
}

async fn health_reports_every_entry_without_credentials(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let database = match backend {
        Backend::Postgres => "postgres",
        Backend::Sqlite => "sqlite",
    };
    for entry in [
        "",
        "readiness",
        "liveness",
        database,
        "azora.identity.v1.IdentityService",
    ] {
        assert_eq!(
            check(&app, entry).await,
            Ok(ServingStatus::Serving),
            "{entry:?}"
        );
    }
    assert_eq!(
        check(&app, "redis").await,
        Err(Code::NotFound),
        "no redis configured, no entry"
    );
    assert_eq!(check(&app, "nonsense").await, Err(Code::NotFound));
}

async fn shutdown_flips_health_to_not_serving_and_ends_watch_streams(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let mut health = HealthClient::new(app.channel().await);
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);

    let started = Instant::now();
    app.begin_shutdown();
    let mut statuses = Vec::new();
    while let Ok(Some(message)) = watch.message().await {
        statuses.push(message.status);
    }
    assert_eq!(
        statuses.last(),
        Some(&(ServingStatus::NotServing as i32)),
        "{statuses:?}"
    );
    let server = app.server.take().unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("an open Watch stream must not hold the drain for the whole grace period")
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
}

async fn redis_is_reported_when_configured(backend: Backend) {
    let up = TestApp::spawn_with(backend, |settings| {
        settings.redis_url = Some(crate::common::secret_for_tests("redis://127.0.0.1:6379"));
    })
    .await;
    assert_eq!(check(&up, "redis").await, Ok(ServingStatus::Serving));

    // Nothing listens on port 1: the server still starts, reports Redis down
    // and stays ready, since Redis is only a cache.
    let down = TestApp::spawn_with(backend, |settings| {
        settings.redis_url = Some(crate::common::secret_for_tests("redis://127.0.0.1:1"));
    })
    .await;
    assert_eq!(check(&down, "redis").await, Ok(ServingStatus::NotServing));
    assert_eq!(check(&down, "readiness").await, Ok(ServingStatus::Serving));

    // The prober raised an alert and recorded snapshots of each dependency.
    use azora::compliance::entities::{alert, system_health};
    use sea_orm::EntityTrait;
    let alerts = alert::Entity::find().all(&down.db).await.unwrap();
    assert!(
        alerts
            .iter()
            .any(|alert| alert.source == "redis" && alert.severity == "warning"),
        "{alerts:?}"
    );
    let snapshots = system_health::Entity::find().all(&down.db).await.unwrap();
    let components: Vec<(&str, &str)> = snapshots
        .iter()
        .map(|row| (row.component.as_str(), row.status.as_str()))
        .collect();
    assert!(components.contains(&("redis", "down")), "{components:?}");
    assert!(
        components
            .iter()
            .any(
                |(component, status)| (*component == "postgres" || *component == "sqlite")
                    && *status == "up"
            )
    );
    let healthy = alert::Entity::find().all(&up.db).await.unwrap();
    assert!(
        healthy.iter().all(|alert| alert.source != "redis"),
        "no alert while redis answers"
    );
}

/// A real outage of the server's PostgreSQL database: connections to it are
/// refused and the open ones terminated, then allowed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_flips_readiness_within_three_seconds_and_recovers() {
    let app = TestApp::spawn_with(Backend::Postgres, |settings| {
        settings.database_timeout_ms = 500;
    })
    .await;
    let name = app.database.postgres_name.clone().unwrap();
    let admin =
        sea_orm::Database::connect(format!("{}/postgres", crate::common::postgres_server_url()))
            .await
            .unwrap();
    let mut identity = app.identity().await;
    let mut health = HealthClient::new(app.channel().await);
    let status = |health: &mut HealthClient<_>, service: &'static str| {
        let mut health = health.clone();
        async move {
            health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .map(|response| response.into_inner().status)
                .unwrap()
        }
    };
    assert_eq!(
        status(&mut health, "readiness").await,
        ServingStatus::Serving as i32
    );

    admin
        .execute_unprepared(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .await
        .unwrap();
    admin
        .execute_unprepared(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        ))
        .await
        .unwrap();
    let down_at = Instant::now();
    while status(&mut health, "readiness").await != ServingStatus::NotServing as i32 {
        assert!(
            down_at.elapsed() < Duration::from_secs(3),
            "readiness still SERVING after 3 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let flipped_after = down_at.elapsed();
    assert_eq!(
        status(&mut health, "liveness").await,
        ServingStatus::Serving as i32
    );
    assert_eq!(
        status(&mut health, "postgres").await,
        ServingStatus::NotServing as i32
    );

    let call_started = Instant::now();
    let failed = identity
        .list_users(crate::common::authed(
            &app.admin_key,
            azora::proto::identity::ListUsersRequest::default(),
        ))
        .await
        .unwrap_err();
    assert_eq!(failed.code(), Code::Unavailable, "{failed:?}");
    let failed_after = call_started.elapsed();
    assert!(
        failed_after < Duration::from_secs(3),
        "UNAVAILABLE must be fast, took {failed_after:?}"
    );

    admin
        .execute_unprepared(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .await
        .unwrap();
    let up_at = Instant::now();
    while status(&mut health, "readiness").await != ServingStatus::Serving as i32 {
        assert!(
            up_at.elapsed() < Duration::from_secs(5),
            "readiness did not recover"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "readiness NOT_SERVING after {flipped_after:?}; a call failed UNAVAILABLE after {failed_after:?}; SERVING again after {:?}",
        up_at.elapsed()
    );
    identity
        .list_users(crate::common::authed(
            &app.admin_key,
            azora::proto::identity::ListUsersRequest::default(),
        ))
        .await
        .expect("calls succeed again after recovery, without a restart");
}
