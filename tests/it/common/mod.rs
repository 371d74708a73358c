//! The test harness: the real server, started by the same `Application` that
//! `azora serve` runs, on port 0, against a fresh database per test —
//! a new PostgreSQL database or a new SQLite file. How the server is started
//! and how users, keys and wallets are set up is the `azora-testkit` crate,
//! which the benchmark shares; this module adds what only tests need:
//! panicking helpers, assertions about the books and the audit trail, and
//! infrastructure a test can break.

pub(crate) mod capture;
pub(crate) mod certificates;

use std::net::SocketAddr;

use azora::config::{Secret, Settings};
use azora::proto::compliance::compliance_service_client::ComplianceServiceClient;
use azora::proto::identity as pb;
use azora::proto::identity::identity_service_client::IdentityServiceClient;
use azora::proto::mining::mining_service_client::MiningServiceClient;
use azora_testkit::{Admin, RunningServer, setup};
pub(crate) use azora_testkit::{Backend, TestDatabase, authed, postgres_server_url, timestamp};
use sea_orm::DatabaseConnection;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// Runs each named `async fn(Backend)` once on PostgreSQL and once on SQLite.
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

pub(crate) struct TestApp {
    pub address: SocketAddr,
    pub health_address: Option<SocketAddr>,
    pub metrics_address: Option<SocketAddr>,
    pub db: DatabaseConnection,
    pub admin_key: String,
    pub admin_id: String,
    pub database: TestDatabase,
    shutdown: Option<oneshot::Sender<()>>,
    pub server: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    pub(crate) async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, |_| {}).await
    }

    pub(crate) async fn spawn_with(
        backend: Backend,
        configure: impl FnOnce(&mut Settings),
    ) -> Self {
        let database = TestDatabase::create(backend).await;
        Self::start(database, Admin::Bootstrap("admin"), configure).await
    }

    /// A second server on this one's database (a replica), with the same
    /// admin.
    pub(crate) async fn replica(&self, configure: impl FnOnce(&mut Settings)) -> Self {
        let admin = Admin::Existing {
            key: self.admin_key.clone(),
            id: self.admin_id.clone(),
        };
        Self::start(self.database.shared(), admin, configure).await
    }

    async fn start(
        database: TestDatabase,
        admin: Admin,
        configure: impl FnOnce(&mut Settings),
    ) -> Self {
        let RunningServer {
            address,
            health_address,
            metrics_address,
            db,
            admin_key,
            admin_id,
            shutdown,
            serving,
        } = RunningServer::start(&database.url, admin, |settings| {
            // Runs any suite with the Redis cache on (tests that need Redis
            // start their own and set it themselves).
            settings.redis_url = std::env::var("AZORA_TEST_REDIS_URL").ok().map(Secret::new);
            configure(settings);
        })
        .await
        .expect("start the server");
        Self {
            address,
            health_address,
            metrics_address,
            db,
            admin_key,
            admin_id,
            database,
            shutdown: Some(shutdown),
            server: Some(serving),
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub(crate) async fn channel(&self) -> Channel {
        azora_testkit::connect(self.address)
            .await
            .expect("connect to the server")
    }

    pub(crate) async fn identity(&self) -> IdentityServiceClient<Channel> {
        IdentityServiceClient::new(self.channel().await)
    }

    /// Asks the server to stop, as SIGTERM would.
    pub(crate) fn begin_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Creates a user with the given role and returns its id and a key.
    pub(crate) async fn user_with_role(&self, username: &str, role: pb::Role) -> (String, String) {
        self.user_of_type(username, pb::UserType::Student, role)
            .await
    }

    /// Creates a user of a type (student, teacher, founder, …) with a role,
    /// and returns its id and a key.
    pub(crate) async fn user_of_type(
        &self,
        username: &str,
        user_type: pb::UserType,
        role: pb::Role,
    ) -> (String, String) {
        let mut identity = self.identity().await;
        let user = setup::create_user(&mut identity, &self.admin_key, username, user_type)
            .await
            .expect("create user");
        if role != pb::Role::Member {
            setup::set_user_role(&mut identity, &self.admin_key, &user.id, role)
                .await
                .expect("set role");
        }
        let key = setup::create_api_key(&mut identity, &self.admin_key, &user.id, role)
            .await
            .expect("create key");
        (user.id, key)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
}

/// The fields named by an INVALID_ARGUMENT status's BadRequest details.
pub(crate) fn violated_fields(status: &Status) -> Vec<String> {
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

/// Starts the `azora serve` that `command` describes, on port 0 with JSON
/// logs, and waits for its "serving" line: the child, and the address it
/// serves on. Its log is read to the end, so it never blocks on a full pipe.
pub(crate) async fn serve_binary(
    mut command: tokio::process::Command,
) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut server = command
        .env("AZORA_LISTEN_ADDR", "127.0.0.1:0")
        .env("AZORA_LOG_FORMAT", "json")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start azora");
    let mut lines = tokio::io::BufReader::new(server.stderr.take().unwrap()).lines();
    let address = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let line: serde_json::Value = serde_json::from_str(&line).unwrap();
            if line["message"] == "serving" {
                return line["address"].as_str().unwrap().to_owned();
            }
        }
        panic!("the server stopped before serving");
    })
    .await
    .expect("serving within 30 s");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (server, address)
}

pub(crate) fn secret_for_tests(url: &str) -> Secret {
    Secret::new(url)
}

/// A fresh request id.
pub(crate) fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub(crate) async fn compliance(app: &TestApp) -> ComplianceServiceClient<Channel> {
    ComplianceServiceClient::new(app.channel().await)
}

pub(crate) async fn mining(app: &TestApp) -> MiningServiceClient<Channel> {
    MiningServiceClient::new(app.channel().await)
}

/// Treasury helpers: users with wallets, and money in them.
pub(crate) mod money {
    use super::*;
    use azora::proto::treasury as tpb;
    use azora::proto::treasury::treasury_service_client::TreasuryServiceClient;
    use std::collections::BTreeMap;

    use azora::identity::entities::wallet;
    use azora::treasury::entities::{ledger_entry, ledger_transaction, system_account};
    pub(crate) use azora_testkit::azr;
    use sea_orm::EntityTrait;

    /// A random, valid (lowercase) address.
    pub(crate) fn address() -> String {
        format!(
            "0x{}",
            &uuid::Uuid::new_v4().simple().to_string()[..20].repeat(2)
        )
    }

    impl TestApp {
        pub(crate) async fn treasury(&self) -> TreasuryServiceClient<Channel> {
            TreasuryServiceClient::new(self.channel().await)
        }

        /// A member with a key and one wallet: (user id, key, wallet id).
        pub(crate) async fn member_with_wallet(&self, username: &str) -> (String, String, String) {
            let (user_id, key) = self.user_with_role(username, pb::Role::Member).await;
            let wallet = self.wallet_for(&user_id).await;
            (user_id, key, wallet)
        }

        pub(crate) async fn wallet_for(&self, owner_id: &str) -> String {
            setup::create_wallet(
                &mut self.identity().await,
                &self.admin_key,
                owner_id,
                address(),
            )
            .await
            .expect("create wallet")
        }

        /// Gives a wallet exactly `amount` AZR, by a confirmed deposit.
        pub(crate) async fn fund(&self, wallet: &str, amount: &str) -> tpb::Transaction {
            let request_id = uuid::Uuid::new_v4().to_string();
            setup::deposit(
                &mut self.treasury().await,
                &self.admin_key,
                request_id,
                wallet,
                amount,
            )
            .await
            .expect("deposit")
        }

        /// Mints `amount` AZR with no recipient wallet: the policy's shares
        /// go to the reserve, the founder pool, burned supply and the
        /// circulation pool.
        pub(crate) async fn mint(&self, amount: &str) -> tpb::Transaction {
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
        pub(crate) async fn pool(&self, account: tpb::SystemAccount) -> String {
            let summary = self.summary().await;
            let value = match account {
                tpb::SystemAccount::FounderPool => summary.founder_pool,
                tpb::SystemAccount::CirculationPool => summary.circulation_pool,
                tpb::SystemAccount::TreasuryReserve => summary.treasury_reserve,
                other => panic!("no summary field for {other:?}"),
            };
            value.unwrap().value
        }

        pub(crate) async fn available(&self, wallet: &str) -> String {
            self.balance(wallet).await.available.unwrap().value
        }

        pub(crate) async fn balance(&self, wallet: &str) -> tpb::GetBalanceResponse {
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

        pub(crate) async fn summary(&self) -> tpb::GetTreasurySummaryResponse {
            self.treasury()
                .await
                .get_treasury_summary(authed(&self.admin_key, tpb::GetTreasurySummaryRequest {}))
                .await
                .expect("summary")
                .into_inner()
        }
    }

    /// Micro-AZR from a canonical decimal string.
    pub(crate) fn micros(value: &str) -> i64 {
        let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
        let negative = whole.starts_with('-');
        let units = whole.trim_start_matches('-').parse::<i64>().unwrap() * 1_000_000
            + format!("{fraction:0<6}").parse::<i64>().unwrap();
        if negative { -units } else { units }
    }

    /// The books balance: wallets plus system accounts sum to zero (issuance and
    /// external are the contra accounts), no holding account is negative, and
    /// every balance equals what its entries say.
    pub(crate) async fn assert_books_balance(app: &TestApp) {
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
        for transaction in &transactions {
            assert_eq!(
                transaction.amount_usd_micros, transaction.amount_azr_micros,
                "peg"
            );
        }
        assert_running_balances(&entries);
        assert_kept_totals(app, &transactions, &wallets).await;
    }

    /// Every entry carries the balances its wallets had once its posting
    /// (its transaction's entries of one batch, one posting time) applied:
    /// replayed here in entry order from zero.
    fn assert_running_balances(entries: &[ledger_entry::Model]) {
        type Buckets = (i64, i64, i64);
        let mut running: BTreeMap<uuid::Uuid, Buckets> = BTreeMap::new();
        let mut entries: Vec<&ledger_entry::Model> = entries.iter().collect();
        entries.sort_by_key(|entry| entry.id);
        let add = |buckets: &mut Buckets, bucket: &str, micros: i64| match bucket {
            "available" => buckets.0 += micros,
            "pending" => buckets.1 += micros,
            _ => buckets.2 += micros,
        };
        let mut start = 0;
        while start < entries.len() {
            let posting = (entries[start].transaction_id, entries[start].posted_at);
            let end = start
                + entries[start..]
                    .iter()
                    .take_while(|entry| (entry.transaction_id, entry.posted_at) == posting)
                    .count();
            for entry in &entries[start..end] {
                if let Some(wallet) = entry.source_wallet_id {
                    add(
                        running.entry(wallet).or_default(),
                        &entry.source_bucket,
                        -entry.amount_micros,
                    );
                }
                if let Some(wallet) = entry.destination_wallet_id {
                    add(
                        running.entry(wallet).or_default(),
                        &entry.destination_bucket,
                        entry.amount_micros,
                    );
                }
            }
            for entry in &entries[start..end] {
                let source = (
                    entry.source_available_after,
                    entry.source_pending_after,
                    entry.source_staked_after,
                );
                let destination = (
                    entry.destination_available_after,
                    entry.destination_pending_after,
                    entry.destination_staked_after,
                );
                for (wallet, after) in [
                    (entry.source_wallet_id, source),
                    (entry.destination_wallet_id, destination),
                ] {
                    let expected = wallet.map(|wallet| running[&wallet]);
                    let stored = match after {
                        (Some(a), Some(p), Some(s)) => Some((a, p, s)),
                        (None, None, None) => None,
                        partial => panic!(
                            "entry {} has partial running balances {partial:?}",
                            entry.id
                        ),
                    };
                    assert_eq!(stored, expected, "entry {}'s running balances", entry.id);
                }
            }
            start = end;
        }
    }

    /// The totals the summary reads, summed over their slots, are those the
    /// rows give.
    async fn assert_kept_totals(
        app: &TestApp,
        transactions: &[ledger_transaction::Model],
        wallets: &[wallet::Model],
    ) {
        use sea_orm::{ConnectionTrait, Statement};
        let backend = app.db.get_database_backend();
        let mut counted: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
        for transaction in transactions {
            let totals = counted
                .entry((transaction.kind.clone(), transaction.status.clone()))
                .or_default();
            totals.0 += 1;
            totals.1 += transaction.amount_azr_micros;
        }
        let mut kept: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
        for row in app
            .db
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT kind, status, transactions, micros FROM ledger_kind_totals",
            ))
            .await
            .unwrap()
        {
            let totals = kept
                .entry((
                    row.try_get("", "kind").unwrap(),
                    row.try_get("", "status").unwrap(),
                ))
                .or_default();
            totals.0 += row.try_get::<i64>("", "transactions").unwrap();
            totals.1 += row.try_get::<i64>("", "micros").unwrap();
        }
        kept.retain(|_, totals| *totals != (0, 0));
        assert_eq!(kept, counted, "kept totals per kind and status");
        let (mut held, mut staked) = (0i64, 0i64);
        for row in app
            .db
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT held_micros, staked_micros FROM ledger_wallet_totals",
            ))
            .await
            .unwrap()
        {
            held += row.try_get::<i64>("", "held_micros").unwrap();
            staked += row.try_get::<i64>("", "staked_micros").unwrap();
        }
        let counted_held: i64 = wallets
            .iter()
            .map(|row| row.available_micros + row.pending_micros + row.staked_micros)
            .sum();
        let counted_staked: i64 = wallets.iter().map(|row| row.staked_micros).sum();
        assert_eq!(
            (held, staked),
            (counted_held, counted_staked),
            "kept wallet totals"
        );
    }

    /// The audit events recorded for a resource type, oldest first, as
    /// (method, actor user id); and no call went unaudited (the auth layer
    /// raises an `audit` alert for a mutating call that recorded nothing).
    pub(crate) async fn audited_calls(app: &TestApp, resource_type: &str) -> Vec<(String, String)> {
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

/// Infrastructure a test owns: its own `redis-server`, and a TCP proxy in
/// front of PostgreSQL that the test can cut.
pub(crate) mod infra {
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    pub(crate) use azora_testkit::{RedisServer, free_port};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::task::AbortHandle;

    #[derive(Default)]
    struct ProxyState {
        cut: bool,
        connections: Vec<AbortHandle>,
    }

    /// Copies `from` to `to` while `frozen` is false; while it is true the
    /// bytes wait (the connection stays open and says nothing).
    async fn forward(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        mut frozen: tokio::sync::watch::Receiver<bool>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let read = match from.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => read,
            };
            while *frozen.borrow_and_update() {
                if frozen.changed().await.is_err() {
                    return;
                }
            }
            if to.write_all(&buffer[..read]).await.is_err() {
                return;
            }
        }
    }

    /// A TCP proxy to `target`. `cut` drops every proxied connection and
    /// from then on accepts connections but never answers (a black hole, the
    /// way an unreachable host behaves); `restore` forwards again.
    pub(crate) struct TcpProxy {
        pub address: SocketAddr,
        state: Arc<Mutex<ProxyState>>,
        frozen: tokio::sync::watch::Sender<bool>,
        accepting: AbortHandle,
    }

    impl TcpProxy {
        pub(crate) async fn start(target: SocketAddr) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            let state = Arc::new(Mutex::new(ProxyState::default()));
            let (frozen, frozen_receiver) = tokio::sync::watch::channel(false);
            let accepting_state = state.clone();
            let accepting = tokio::spawn(async move {
                loop {
                    let Ok((inbound, _)) = listener.accept().await else {
                        continue;
                    };
                    let mut state = accepting_state.lock().unwrap();
                    let held = state.cut || *frozen_receiver.borrow();
                    let frozen = frozen_receiver.clone();
                    let task = tokio::spawn(async move {
                        if held {
                            // Hold the socket and say nothing.
                            let _inbound = inbound;
                            std::future::pending::<()>().await;
                            return;
                        }
                        let Ok(outbound) = TcpStream::connect(target).await else {
                            return;
                        };
                        let (inbound_read, inbound_write) = inbound.into_split();
                        let (outbound_read, outbound_write) = outbound.into_split();
                        tokio::select! {
                            () = forward(inbound_read, outbound_write, frozen.clone()) => {}
                            () = forward(outbound_read, inbound_write, frozen) => {}
                        }
                    });
                    state.connections.push(task.abort_handle());
                }
            })
            .abort_handle();
            Self {
                address,
                state,
                frozen,
                accepting,
            }
        }

        /// The network stops delivering: open connections stay open but
        /// nothing passes, new ones are accepted and never answered — no
        /// reset anywhere, the hardest outage to notice.
        pub(crate) fn blackhole(&self) {
            let _ = self.frozen.send(true);
        }

        pub(crate) fn cut(&self) {
            let mut state = self.state.lock().unwrap();
            state.cut = true;
            for connection in state.connections.drain(..) {
                connection.abort();
            }
        }

        /// Forwards again; connections from before the outage are dropped
        /// (their peers gave up on them).
        pub(crate) fn restore(&self) {
            let mut state = self.state.lock().unwrap();
            state.cut = false;
            for connection in state.connections.drain(..) {
                connection.abort();
            }
            let _ = self.frozen.send(false);
        }
    }

    impl Drop for TcpProxy {
        fn drop(&mut self) {
            self.accepting.abort();
            self.cut();
        }
    }
}
