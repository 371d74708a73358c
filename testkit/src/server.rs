//! The server, started the way `azora serve` starts it, on port 0, in this
//! process. This is the one place that knows how `Settings` and
//! `Application` are made; the tests and the benchmark only adjust settings.

use std::net::SocketAddr;

use anyhow::Context as _;
use azora::config::Settings;
use azora::identity::Identity;
use azora::startup::Application;
use sea_orm::DatabaseConnection;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Who is admin on a server that is starting.
pub enum Admin {
    /// Bootstrap a new admin of this username (a fresh database).
    Bootstrap(&'static str),
    /// The admin of another server on the same database (a replica).
    Existing { key: String, id: String },
}

/// A server serving on its own port until told to stop.
pub struct RunningServer {
    pub address: SocketAddr,
    /// The plaintext health-only listener's, when configured.
    pub health_address: Option<SocketAddr>,
    /// The metrics listener's, when configured.
    pub metrics_address: Option<SocketAddr>,
    /// The server's own connection pool.
    pub db: DatabaseConnection,
    pub admin_key: String,
    pub admin_id: String,
    /// Sending (or dropping) it stops the server, as SIGTERM would.
    pub shutdown: oneshot::Sender<()>,
    /// Ends when the server has drained.
    pub serving: JoinHandle<anyhow::Result<()>>,
}

impl RunningServer {
    /// Builds the server on `database_url` (migrating it) with the compiled
    /// defaults adjusted by `configure`, listens on port 0 and serves in a
    /// task of the current runtime.
    pub async fn start(
        database_url: &str,
        admin: Admin,
        configure: impl FnOnce(&mut Settings),
    ) -> anyhow::Result<Self> {
        let mut settings = Settings::with_database(database_url);
        configure(&mut settings);
        let application = Application::build(settings, true)
            .await
            .context("building the server")?;
        let address = application.local_addr();
        let health_address = application.health_addr();
        let metrics_address = application.metrics_addr();
        let db = application.database().clone();
        let (admin_key, admin_id) = match admin {
            Admin::Existing { key, id } => (key, id),
            Admin::Bootstrap(username) => {
                let (user, issued) = Identity::new(db.clone())
                    .bootstrap_admin(username, None)
                    .await
                    .context("bootstrapping the admin")?;
                (issued.secret, user.id.to_string())
            }
        };
        let (shutdown, stopped) = oneshot::channel();
        let serving = tokio::spawn(application.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Ok(Self {
            address,
            health_address,
            metrics_address,
            db,
            admin_key,
            admin_id,
            shutdown,
            serving,
        })
    }

    /// The admin, for a replica on the same database.
    pub fn admin(&self) -> Admin {
        Admin::Existing {
            key: self.admin_key.clone(),
            id: self.admin_id.clone(),
        }
    }

    /// Stops the server and waits until it has drained.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(());
        self.serving.await?
    }
}
