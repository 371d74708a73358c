//! A fresh database per test or benchmark run: a new PostgreSQL database or
//! a new SQLite file.

use std::path::PathBuf;

use anyhow::Context as _;
use sea_orm::ConnectionTrait;

/// The two backends every suite runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// PostgreSQL server for tests (`AZORA_TEST_POSTGRES_URL`); each test
/// creates its own database on it.
pub fn postgres_server_url() -> String {
    std::env::var("AZORA_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A database no one else uses. A SQLite file is removed on drop; a
/// PostgreSQL database stays (CI drops `azora_test_*` before a run) unless
/// [`TestDatabase::remove`] is called.
pub struct TestDatabase {
    pub url: String,
    pub backend: Backend,
    pub postgres_name: Option<String>,
    /// The server the PostgreSQL database is on.
    postgres_server: Option<String>,
    sqlite_file: Option<PathBuf>,
}

impl TestDatabase {
    /// A fresh database for a test: `azora_test_<uuid>` on
    /// [`postgres_server_url`], or a new SQLite file in the temporary
    /// directory.
    pub async fn create(backend: Backend) -> Self {
        match backend {
            Backend::Postgres => Self::create_postgres(&postgres_server_url(), "azora_test")
                .await
                .expect("PostgreSQL must be running for the tests (see README)"),
            Backend::Sqlite => Self::create_sqlite(),
        }
    }

    /// A new database `<prefix>_<uuid>` on the PostgreSQL server at
    /// `server_url`.
    pub async fn create_postgres(server_url: &str, prefix: &str) -> anyhow::Result<Self> {
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let admin = sea_orm::Database::connect(
            azora::db::with_explicit_ssl_mode(&format!("{server_url}/postgres")).into_owned(),
        )
        .await
        .context("connecting to PostgreSQL")?;
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .context("creating the database")?;
        admin.close().await.ok();
        Ok(Self {
            url: format!("{server_url}/{name}"),
            backend: Backend::Postgres,
            postgres_name: Some(name),
            postgres_server: Some(server_url.to_owned()),
            sqlite_file: None,
        })
    }

    /// A new SQLite file in the temporary directory.
    pub fn create_sqlite() -> Self {
        let unique = uuid::Uuid::new_v4().simple();
        let file = std::env::temp_dir().join(format!("azora_test_{unique}.db"));
        Self {
            url: format!("sqlite://{}?mode=rwc", file.display()),
            backend: Backend::Sqlite,
            postgres_name: None,
            postgres_server: None,
            sqlite_file: Some(file),
        }
    }

    /// The same database for a second server (a replica); dropping the copy
    /// leaves the database alone.
    pub fn shared(&self) -> Self {
        Self {
            url: self.url.clone(),
            backend: self.backend,
            postgres_name: self.postgres_name.clone(),
            postgres_server: self.postgres_server.clone(),
            sqlite_file: None,
        }
    }

    /// Drops the PostgreSQL database, closing whatever is still connected
    /// to it.
    pub async fn remove(&self) -> anyhow::Result<()> {
        let (Some(server_url), Some(name)) = (&self.postgres_server, &self.postgres_name) else {
            return Ok(());
        };
        let admin = sea_orm::Database::connect(
            azora::db::with_explicit_ssl_mode(&format!("{server_url}/postgres")).into_owned(),
        )
        .await
        .context("connecting to PostgreSQL")?;
        admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await?;
        admin.close().await.ok();
        Ok(())
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
