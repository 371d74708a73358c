//! TLS to the dependencies: a private PostgreSQL cluster that takes TLS
//! connections only, and a private Redis on a TLS port, both with
//! certificates this test makes.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::certificates::{Authority, TempDir};
use azora::config::{Secret, Settings};
use azora::proto::identity as pb;
use azora::proto::identity::identity_service_client::IdentityServiceClient;
use azora_testkit::{Admin, ClusterFile, PostgresCluster, RunningServer, authed};
use sea_orm::{ConnectionTrait, Statement};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// A cluster that accepts TLS connections on 127.0.0.1 and nothing else.
fn tls_only_cluster(authority: &Authority) -> PostgresCluster {
    let leaf = authority.server();
    PostgresCluster::start(
        "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
        &[
            ClusterFile {
                name: "server.crt",
                contents: &leaf.cert,
            },
            ClusterFile {
                name: "server.key",
                contents: &leaf.key,
            },
        ],
    )
    .expect("start a private PostgreSQL with TLS")
}

async fn health(address: std::net::SocketAddr, entry: &str) -> i32 {
    let channel = azora_testkit::connect(address).await.unwrap();
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: entry.into(),
        })
        .await
        .map(|response| response.into_inner().status)
        .unwrap_or(-1)
}

async fn build_error(settings: Settings) -> String {
    azora::startup::Application::build(settings, true)
        .await
        .err()
        .map(|error| format!("{error:#}"))
        .expect("the server must not start")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_verified_tls_is_encrypted_and_a_failed_verification_stops_start_up() {
    let dir = TempDir::new("pg_tls");
    let authority = Authority::new("database CA");
    let cluster = tls_only_cluster(&authority);
    let ca = dir.write("ca.pem", &authority.pem);
    let url = |mode: &str, ca: &std::path::Path| {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode={mode}&sslrootcert={}",
            cluster.port,
            ca.display()
        )
    };

    let server = RunningServer::start(&url("verify-full", &ca), Admin::Bootstrap("admin"), |_| {})
        .await
        .unwrap_or_else(|error| panic!("{error:#}\n{}", cluster.log()));
    // The server's own pool: every connection of it is encrypted.
    let row = server
        .db
        .query_one_raw(Statement::from_string(
            server.db.get_database_backend(),
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ))
        .await
        .unwrap()
        .unwrap();
    assert!(row.try_get_by_index::<bool>(0).unwrap(), "not encrypted");
    let version: String = row.try_get_by_index(1).unwrap();
    assert!(version.starts_with("TLSv1."), "{version}");
    assert_eq!(
        health(server.address, "readiness").await,
        ServingStatus::Serving as i32
    );
    IdentityServiceClient::new(azora_testkit::connect(server.address).await.unwrap())
        .get_user(authed(
            &server.admin_key,
            pb::GetUserRequest {
                user_id: server.admin_id.clone(),
            },
        ))
        .await
        .unwrap();
    server.stop().await.unwrap();

    // A server certificate another CA signed: refused at start-up, saying
    // why.
    let stranger = dir.write("stranger.pem", &Authority::new("another CA").pem);
    let error = build_error(Settings::with_database(url("verify-full", &stranger))).await;
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    // Without TLS the cluster refuses the connection: it was encrypted
    // because it had to be.
    let plain = format!(
        "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
        cluster.port
    );
    let error = build_error(Settings::with_database(plain)).await;
    assert!(error.contains("no encryption"), "{error}");
}

/// A Redis serving TLS only, with `leaf` as its certificate.
struct TlsRedis {
    port: u16,
    child: Child,
}

impl TlsRedis {
    fn start(dir: &TempDir, authority: &Authority) -> Self {
        let leaf = authority.server();
        let (cert, key, ca) = (
            dir.write("redis.crt", &leaf.cert),
            dir.write("redis.key", &leaf.key),
            dir.write("redis-ca.pem", &authority.pem),
        );
        let port = azora_testkit::free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--tls-port", &port.to_string(), "--tls-auth-clients", "no"])
            .arg("--tls-cert-file")
            .arg(&cert)
            .arg("--tls-key-file")
            .arg(&key)
            .arg("--tls-ca-cert-file")
            .arg(&ca)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis with TLS did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { port, child }
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn redis_entry_becomes(address: std::net::SocketAddr, status: ServingStatus) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if health(address, "redis").await == status as i32 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_verified_tls_serves_the_cache() {
    let dir = TempDir::new("redis_tls");
    let authority = Authority::new("cache CA");
    let redis = TlsRedis::start(&dir, &authority);
    let database = azora_testkit::TestDatabase::create(azora_testkit::Backend::Sqlite).await;
    let start = |admin: Admin, url: String, ca: Option<std::path::PathBuf>| {
        RunningServer::start(&database.url, admin, move |settings| {
            settings.redis_url = Some(Secret::new(url));
            settings.redis_ca_cert = ca;
            settings.health_interval_ms = 100;
        })
    };

    let ca = dir.path("redis-ca.pem");
    let server = start(
        Admin::Bootstrap("admin"),
        format!("rediss://127.0.0.1:{}", redis.port),
        Some(ca.clone()),
    )
    .await
    .unwrap();
    assert!(
        redis_entry_becomes(server.address, ServingStatus::Serving).await,
        "redis over TLS never came up"
    );
    // A cached read lands in this Redis, over TLS.
    let mut identity =
        IdentityServiceClient::new(azora_testkit::connect(server.address).await.unwrap());
    for _ in 0..2 {
        identity
            .get_user(authed(
                &server.admin_key,
                pb::GetUserRequest {
                    user_id: server.admin_id.clone(),
                },
            ))
            .await
            .unwrap();
    }
    let keys = Command::new("redis-cli")
        .args(["--tls", "--cacert"])
        .arg(&ca)
        .args(["-h", "127.0.0.1", "-p", &redis.port.to_string(), "dbsize"])
        .output()
        .unwrap();
    let keys = String::from_utf8_lossy(&keys.stdout).trim().to_owned();
    assert!(
        keys.parse::<u64>().unwrap_or(0) > 0,
        "nothing cached: {keys:?}"
    );
    let admin = server.admin();
    server.stop().await.unwrap();

    // Redis is optional, so a failed verification does not stop the
    // server: its health entry says Redis is not there.
    let stranger = dir.write("stranger.pem", &Authority::new("another CA").pem);
    let unverified = start(
        admin,
        format!("rediss://127.0.0.1:{}", redis.port),
        Some(stranger),
    )
    .await
    .unwrap();
    assert!(
        redis_entry_becomes(unverified.address, ServingStatus::NotServing).await,
        "a Redis the CA did not sign was used"
    );
    unverified.stop().await.unwrap();
    // A CA file that does not load does stop it, naming the variable.
    let mut settings = Settings::with_database(&database.url);
    settings.redis_url = Some(Secret::new(format!("rediss://127.0.0.1:{}", redis.port)));
    settings.redis_ca_cert = Some(dir.path("missing.pem"));
    let error = build_error(settings).await;
    assert!(error.contains("AZORA_REDIS_CA_CERT"), "{error}");
}
