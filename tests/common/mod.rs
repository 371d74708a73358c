//! The test harness: the real server, started by the same `Application` that
//! `azora serve` runs, on port 0, against a fresh database per test —
//! a new PostgreSQL database or a new SQLite file.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

use azora::config::{Secret, Settings};
use azora::identity::Identity;
use azora::proto::identity as pb;
use azora::proto::identity::identity_service_client::IdentityServiceClient;
use azora::startup::Application;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Runs each named `async fn(Backend)` once on PostgreSQL and once on SQLite.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
            )*
        }
    };
}

/// PostgreSQL server for tests; each test creates its own database on it.
pub fn postgres_server_url() -> String {
    std::env::var("AZORA_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

pub struct TestDatabase {
    pub url: String,
    pub backend: Backend,
    pub postgres_name: Option<String>,
    sqlite_file: Option<PathBuf>,
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> Self {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        match backend {
            Backend::Postgres => {
                let name = format!("azora_test_{unique}");
                let admin =
                    sea_orm::Database::connect(format!("{}/postgres", postgres_server_url()))
                        .await
                        .expect("PostgreSQL must be running for the tests (see README)");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                admin.close().await.ok();
                Self {
                    url: format!("{}/{name}", postgres_server_url()),
                    backend,
                    postgres_name: Some(name),
                    sqlite_file: None,
                }
            }
            Backend::Sqlite => {
                let file = std::env::temp_dir().join(format!("azora_test_{unique}.db"));
                Self {
                    url: format!("sqlite://{}?mode=rwc", file.display()),
                    backend,
                    postgres_name: None,
                    sqlite_file: Some(file),
                }
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(file) = &self.sqlite_file {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
            }
        }
    }
}

pub struct TestApp {
    pub address: SocketAddr,
    pub db: DatabaseConnection,
    pub admin_key: String,
    pub admin_id: String,
    pub database: TestDatabase,
    shutdown: Option<oneshot::Sender<()>>,
    pub server: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, configure: impl FnOnce(&mut Settings)) -> Self {
        let database = TestDatabase::create(backend).await;
        let mut settings = Settings::with_database(database.url.clone());
        configure(&mut settings);
        let application = Application::build(settings, true)
            .await
            .expect("build the server");
        let address = application.local_addr();
        let db = application.database().clone();
        let (user, issued) = Identity::new(db.clone())
            .bootstrap_admin("admin", None)
            .await
            .expect("bootstrap the admin");
        let (shutdown, stopped) = oneshot::channel();
        let server = tokio::spawn(application.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Self {
            address,
            db,
            admin_key: issued.secret,
            admin_id: user.id.to_string(),
            database,
            shutdown: Some(shutdown),
            server: Some(server),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .unwrap()
            .connect()
            .await
            .expect("connect to the server")
    }

    pub async fn identity(&self) -> IdentityServiceClient<Channel> {
        IdentityServiceClient::new(self.channel().await)
    }

    /// Asks the server to stop, as SIGTERM would.
    pub fn begin_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Creates a user with the given role and returns its id and a key.
    pub async fn user_with_role(&self, username: &str, role: pb::Role) -> (String, String) {
        self.user_of_type(username, pb::UserType::Student, role)
            .await
    }

    /// Creates a user of a type (student, teacher, founder, …) with a role,
    /// and returns its id and a key.
    pub async fn user_of_type(
        &self,
        username: &str,
        user_type: pb::UserType,
        role: pb::Role,
    ) -> (String, String) {
        let mut identity = self.identity().await;
        let user = identity
            .create_user(authed(
                &self.admin_key,
                pb::CreateUserRequest {
                    username: username.into(),
                    user_type: user_type as i32,
                    ..Default::default()
                },
            ))
            .await
            .expect("create user")
            .into_inner()
            .user
            .unwrap();
        if role != pb::Role::Member {
            identity
                .set_user_role(authed(
                    &self.admin_key,
                    pb::SetUserRoleRequest {
                        user_id: user.id.clone(),
                        role: role as i32,
                    },
                ))
                .await
                .expect("set role");
        }
        let key = identity
            .create_api_key(authed(
                &self.admin_key,
                pb::CreateApiKeyRequest {
                    user_id: user.id.clone(),
                    role: role as i32,
                    ..Default::default()
                },
            ))
            .await
            .expect("create key")
            .into_inner()
            .secret;
        (user.id, key)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
}

/// A request carrying `authorization: Bearer <key>`.
pub fn authed<T>(key: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    request
}

/// The fields named by an INVALID_ARGUMENT status's BadRequest details.
pub fn violated_fields(status: &Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let bad_request = status
        .get_details_bad_request()
        .expect("BadRequest details");
    bad_request
        .field_violations
        .into_iter()
        .map(|violation| violation.field)
        .collect()
}

pub fn secret_for_tests(url: &str) -> Secret {
    Secret::new(url)
}

/// Treasury helpers: users with wallets, and money in them.
pub mod money {
    use super::*;
    use azora::proto::treasury as tpb;
    use azora::proto::treasury::treasury_service_client::TreasuryServiceClient;
    use std::collections::BTreeMap;

    use azora::identity::entities::wallet;
    use azora::proto::types::Decimal;
    use azora::treasury::entities::{ledger_entry, ledger_transaction, system_account};
    use sea_orm::EntityTrait;

    pub fn azr(value: &str) -> Option<Decimal> {
        Some(Decimal {
            value: value.into(),
        })
    }

    /// A random, valid (lowercase) address.
    pub fn address() -> String {
        format!(
            "0x{}",
            &uuid::Uuid::new_v4().simple().to_string()[..20].repeat(2)
        )
    }

    impl TestApp {
        pub async fn treasury(&self) -> TreasuryServiceClient<Channel> {
            TreasuryServiceClient::new(self.channel().await)
        }

        /// A member with a key and one wallet: (user id, key, wallet id).
        pub async fn member_with_wallet(&self, username: &str) -> (String, String, String) {
            let (user_id, key) = self.user_with_role(username, pb::Role::Member).await;
            let wallet = self.wallet_for(&user_id).await;
            (user_id, key, wallet)
        }

        pub async fn wallet_for(&self, owner_id: &str) -> String {
            self.identity()
                .await
                .create_wallet(authed(
                    &self.admin_key,
                    pb::CreateWalletRequest {
                        owner_id: owner_id.into(),
                        address: address(),
                        label: String::new(),
                    },
                ))
                .await
                .expect("create wallet")
                .into_inner()
                .wallet
                .unwrap()
                .id
        }

        /// Gives a wallet exactly `amount` AZR, by a confirmed deposit.
        pub async fn fund(&self, wallet: &str, amount: &str) -> tpb::Transaction {
            self.treasury()
                .await
                .deposit(authed(
                    &self.admin_key,
                    tpb::DepositRequest {
                        request_id: uuid::Uuid::new_v4().to_string(),
                        to_wallet_id: wallet.into(),
                        amount: azr(amount),
                        ..Default::default()
                    },
                ))
                .await
                .expect("deposit")
                .into_inner()
                .transaction
                .unwrap()
        }

        /// Mints `amount` AZR with no recipient wallet: the policy's shares
        /// go to the reserve, the founder pool, burned supply and the
        /// circulation pool.
        pub async fn mint(&self, amount: &str) -> tpb::Transaction {
            self.treasury()
                .await
                .mint(authed(
                    &self.admin_key,
                    tpb::MintRequest {
                        request_id: uuid::Uuid::new_v4().to_string(),
                        amount: azr(amount),
                        ..Default::default()
                    },
                ))
                .await
                .expect("mint")
                .into_inner()
                .transaction
                .unwrap()
        }

        /// A system account's balance, as the treasury summary reports it.
        pub async fn pool(&self, account: tpb::SystemAccount) -> String {
            let summary = self.summary().await;
            let value = match account {
                tpb::SystemAccount::FounderPool => summary.founder_pool,
                tpb::SystemAccount::CirculationPool => summary.circulation_pool,
                tpb::SystemAccount::TreasuryReserve => summary.treasury_reserve,
                other => panic!("no summary field for {other:?}"),
            };
            value.unwrap().value
        }

        pub async fn available(&self, wallet: &str) -> String {
            self.balance(wallet).await.available.unwrap().value
        }

        pub async fn balance(&self, wallet: &str) -> tpb::GetBalanceResponse {
            self.treasury()
                .await
                .get_balance(authed(
                    &self.admin_key,
                    tpb::GetBalanceRequest {
                        wallet_id: wallet.into(),
                        as_of_time: None,
                    },
                ))
                .await
                .expect("balance")
                .into_inner()
        }

        pub async fn summary(&self) -> tpb::GetTreasurySummaryResponse {
            self.treasury()
                .await
                .get_treasury_summary(authed(&self.admin_key, tpb::GetTreasurySummaryRequest {}))
                .await
                .expect("summary")
                .into_inner()
        }
    }

    /// Micro-AZR from a canonical decimal string.
    pub fn micros(value: &str) -> i64 {
        let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
        let negative = whole.starts_with('-');
        let units = whole.trim_start_matches('-').parse::<i64>().unwrap() * 1_000_000
            + format!("{fraction:0<6}").parse::<i64>().unwrap();
        if negative { -units } else { units }
    }

    /// The books balance: wallets plus system accounts sum to zero (issuance and
    /// external are the contra accounts), no holding account is negative, and
    /// every balance equals what its entries say.
    pub async fn assert_books_balance(app: &TestApp) {
        let wallets = wallet::Entity::find().all(&app.db).await.unwrap();
        let systems = system_account::Entity::find().all(&app.db).await.unwrap();
        let entries = ledger_entry::Entity::find().all(&app.db).await.unwrap();
        let mut from_entries: BTreeMap<(String, String), i64> = BTreeMap::new();
        for entry in &entries {
            let source = entry
                .source_wallet_id
                .map(|id| id.to_string())
                .or(entry.source_system.clone())
                .unwrap();
            let destination = entry
                .destination_wallet_id
                .map(|id| id.to_string())
                .or(entry.destination_system.clone())
                .unwrap();
            *from_entries
                .entry((source, entry.source_bucket.clone()))
                .or_default() -= entry.amount_micros;
            *from_entries
                .entry((destination, entry.destination_bucket.clone()))
                .or_default() += entry.amount_micros;
        }
        let mut total = 0i64;
        for row in &wallets {
            for (bucket, value) in [
                ("available", row.available_micros),
                ("pending", row.pending_micros),
                ("staked", row.staked_micros),
            ] {
                assert!(value >= 0, "wallet {} {bucket} is negative", row.id);
                let expected = from_entries
                    .get(&(row.id.to_string(), bucket.to_owned()))
                    .copied()
                    .unwrap_or_default();
                assert_eq!(
                    value, expected,
                    "wallet {} {bucket} disagrees with its entries",
                    row.id
                );
                total += value;
            }
        }
        for row in &systems {
            if row.code != "issuance" && row.code != "external" {
                assert!(row.balance_micros >= 0, "{} is negative", row.code);
            }
            let expected = from_entries
                .get(&(row.code.clone(), "available".to_owned()))
                .copied()
                .unwrap_or_default();
            assert_eq!(
                row.balance_micros, expected,
                "{} disagrees with its entries",
                row.code
            );
            total += row.balance_micros;
        }
        assert_eq!(
            total, 0,
            "all balances, contra accounts included, must sum to zero"
        );
        let transactions = ledger_transaction::Entity::find()
            .all(&app.db)
            .await
            .unwrap();
        for transaction in transactions {
            assert_eq!(
                transaction.amount_usd_micros, transaction.amount_azr_micros,
                "peg"
            );
        }
    }

    /// The audit events recorded for a resource type, oldest first, as
    /// (method, actor user id); and no call went unaudited (the auth layer
    /// raises an `audit` alert for a mutating call that recorded nothing).
    pub async fn audited_calls(app: &TestApp, resource_type: &str) -> Vec<(String, String)> {
        use azora::audit::entities::audit_event;
        use azora::compliance::entities::alert;
        use sea_orm::{ColumnTrait, QueryFilter, QueryOrder};
        let unaudited = alert::Entity::find()
            .filter(alert::Column::Source.eq("audit"))
            .all(&app.db)
            .await
            .unwrap();
        assert!(unaudited.is_empty(), "{unaudited:?}");
        audit_event::Entity::find()
            .filter(audit_event::Column::ResourceType.eq(resource_type))
            .order_by_asc(audit_event::Column::Id)
            .all(&app.db)
            .await
            .unwrap()
            .into_iter()
            .map(|event| {
                let method = event
                    .action
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                (
                    method,
                    event
                        .actor_user_id
                        .map(|id| id.to_string())
                        .unwrap_or_default(),
                )
            })
            .collect()
    }
}
