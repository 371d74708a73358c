//! What every benchmark sets up before it measures: the server in-process,
//! users with keys and funded wallets, connections.

use std::net::SocketAddr;

use azora::config::Settings;
use azora::proto::identity as ipb;
use azora::proto::identity::identity_service_client::IdentityServiceClient;
use azora::proto::treasury::treasury_service_client::TreasuryServiceClient;
use azora_testkit::{Admin, RunningServer, setup};
use tonic::transport::Channel;

/// Starts the server in-process on `database_url`, logging only warnings;
/// the first server on a database bootstraps `bench-admin`.
pub(crate) async fn start_server(
    database_url: &str,
    admin: Option<Admin>,
    configure: impl FnOnce(&mut Settings),
) -> anyhow::Result<RunningServer> {
    let admin = admin.unwrap_or(Admin::Bootstrap("bench-admin"));
    RunningServer::start(database_url, admin, |settings| {
        settings.log = "warn".into();
        configure(settings);
    })
    .await
}

/// A student with a key of `role` and one wallet: (key, wallet id).
pub(crate) async fn create_holder(
    identity: &mut IdentityServiceClient<Channel>,
    admin_key: &str,
    username: &str,
    role: ipb::Role,
    index: usize,
) -> anyhow::Result<(String, String)> {
    let user = setup::create_user(identity, admin_key, username, ipb::UserType::Student).await?;
    let key = setup::create_api_key(identity, admin_key, &user.id, role).await?;
    // Unique on the database as the username is, run after run.
    let tag = {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        username.hash(&mut hasher);
        hasher.finish()
    };
    let address = format!("0x{tag:016x}{:024x}", index + 1);
    let wallet = setup::create_wallet(identity, admin_key, &user.id, address).await?;
    Ok((key, wallet))
}

/// `count` members `<prefix>00000`…, each with a member key and a wallet
/// funded with `amount` AZR: (key, wallet id).
pub(crate) async fn funded_members(
    server: &RunningServer,
    prefix: &str,
    count: usize,
    amount: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    funded_members_at(server.address, &server.admin_key, prefix, count, amount).await
}

/// [`funded_members`] on any server, in this process or not, given its
/// admin's key. `prefix` must be new on that server's database.
pub(crate) async fn funded_members_at(
    address: SocketAddr,
    admin_key: &str,
    prefix: &str,
    count: usize,
    amount: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let channel = azora_testkit::connect(address).await?;
    let mut identity = IdentityServiceClient::new(channel.clone());
    let mut treasury = TreasuryServiceClient::new(channel);
    let mut accounts = Vec::with_capacity(count);
    for index in 0..count {
        let username = format!("{prefix}{index:05}");
        let (key, wallet) = create_holder(
            &mut identity,
            admin_key,
            &username,
            ipb::Role::Member,
            index,
        )
        .await?;
        let request_id = format!("fund-{username}");
        setup::deposit(&mut treasury, admin_key, request_id, &wallet, amount).await?;
        accounts.push((key, wallet));
    }
    Ok(accounts)
}

/// `count` (at least one) connections to the server at `address`.
pub(crate) async fn connect_channels(
    address: SocketAddr,
    count: usize,
) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::new();
    for _ in 0..count.max(1) {
        channels.push(azora_testkit::connect(address).await?);
    }
    Ok(channels)
}
