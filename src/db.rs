//! The database connection: both backends, short timeouts, and the
//! classification of database errors into [`Error`] where queries run.

use std::time::Duration;

use sea_orm::sqlx;
use sea_orm::{
    AccessMode, ConnectOptions, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    DbBackend, DbErr, IsolationLevel, RuntimeErr, SqlErr, SqliteTransactionMode, Statement,
    TransactionOptions, TransactionTrait, Value,
};

use crate::config::Settings;
use crate::error::Error;

/// Opens the pool. SQLite files are created when missing and run in WAL mode
/// with foreign keys on; both backends fail fast when the database is away.
pub async fn connect(settings: &Settings) -> Result<DatabaseConnection, DbErr> {
    let timeout = settings.database_timeout();
    let url = with_explicit_ssl_mode(settings.database_url.expose());
    let mut options = ConnectOptions::new(url.as_ref());
    options
        .max_connections(settings.database_max_connections)
        .min_connections(0)
        .acquire_timeout(timeout)
        .connect_timeout(timeout)
        .idle_timeout(Duration::from_secs(300))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(move |sqlite| {
            sqlite
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(timeout)
        });
    sea_orm::Database::connect(options).await
}

/// A PostgreSQL URL with `sslmode=disable` when neither it nor `PGSSLMODE`
/// chooses a mode.
///
/// Without one, sqlx (like libpq) uses `prefer`: TLS when the server offers
/// it, unverified, else plaintext. That protects against nothing that the
/// verifying modes do not, and it is slow here: sqlx 0.9 sets no TCP_NODELAY
/// and writes a TLS record per write, so a statement larger than one
/// record (the ledger's batch write) waits for the server's delayed ACK
/// (strace: the records go out 0.14 ms apart, the answer ~44 ms later);
/// measured, the transfer rate fell from ~2,400/s to ~300/s against a local
/// PostgreSQL that offers TLS (Debian's does). So TLS is what the URL asks
/// for (`require`, `verify-ca`, `verify-full`), and only that.
pub fn with_explicit_ssl_mode(url: &str) -> std::borrow::Cow<'_, str> {
    let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let chosen = url.contains("sslmode=") || std::env::var_os("PGSSLMODE").is_some();
    if !postgres || chosen {
        return url.into();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}sslmode=disable").into()
}

/// The name of the backend, as the health service reports it.
pub fn backend_name(db: &DatabaseConnection) -> &'static str {
    match db.get_database_backend() {
        DbBackend::Postgres => "postgres",
        DbBackend::Sqlite => "sqlite",
        _ => "database",
    }
}

/// The backend of any connection or transaction, as OpenTelemetry's
/// `db.system` names it.
pub fn backend_name_of(db: &impl ConnectionTrait) -> &'static str {
    match db.get_database_backend() {
        DbBackend::Postgres => "postgresql",
        DbBackend::Sqlite => "sqlite",
        _ => "other_sql",
    }
}

/// How many of the pool's connections are lent out, idle, and at most.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolState {
    pub in_use: i64,
    pub idle: i64,
    pub max: i64,
}

pub fn pool_state(db: &DatabaseConnection) -> PoolState {
    fn of<D: sqlx::Database>(pool: &sqlx::Pool<D>) -> PoolState {
        let (size, idle) = (i64::from(pool.size()), pool.num_idle() as i64);
        PoolState {
            in_use: (size - idle).max(0),
            idle,
            max: i64::from(pool.options().get_max_connections()),
        }
    }
    match db.get_database_backend() {
        DbBackend::Postgres => of(db.get_postgres_connection_pool()),
        DbBackend::Sqlite => of(db.get_sqlite_connection_pool()),
        _ => PoolState::default(),
    }
}

/// Begins a transaction that will write. On SQLite it takes the write lock
/// at BEGIN (IMMEDIATE): a deferred transaction that reads first and writes
/// later fails with "database is locked" under concurrency instead of waiting.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, Error> {
    let sqlite_transaction_mode = match db.get_database_backend() {
        DbBackend::Sqlite => Some(SqliteTransactionMode::Immediate),
        _ => None,
    };
    let options = TransactionOptions {
        isolation_level: None,
        access_mode: None,
        sqlite_transaction_mode,
    };
    db.begin_with_options(options).await.map_err(classify)
}

/// Begins a read-only transaction in which every statement sees the same
/// snapshot of the database, so that several reads can be compared with one
/// another (a report's balances against its entries) even while writers
/// commit. PostgreSQL: REPEATABLE READ, READ ONLY (the snapshot is taken at
/// the first statement). SQLite in WAL mode: a deferred transaction is
/// already a snapshot from its first read until it ends, and writers do not
/// wait for it; SQLite accepts no isolation or access mode, so none is set.
pub async fn begin_snapshot(db: &DatabaseConnection) -> Result<DatabaseTransaction, Error> {
    let (isolation_level, access_mode) = match db.get_database_backend() {
        DbBackend::Postgres => (
            Some(IsolationLevel::RepeatableRead),
            Some(AccessMode::ReadOnly),
        ),
        _ => (None, None),
    };
    db.begin_with_config(isolation_level, access_mode)
        .await
        .map_err(classify)
}

/// A statement written with `?` placeholders, numbered `$1…` for PostgreSQL.
pub fn statement(db: &impl ConnectionTrait, sql: &str, values: Vec<Value>) -> Statement {
    let backend = db.get_database_backend();
    let mut text = String::with_capacity(sql.len());
    let mut index = 0;
    for (position, piece) in sql.split('?').enumerate() {
        if position > 0 {
            index += 1;
            match backend {
                DbBackend::Postgres => text.push_str(&format!("${index}")),
                _ => text.push('?'),
            }
        }
        text.push_str(piece);
    }
    Statement::from_sql_and_values(backend, text, values)
}

/// Turns a database error into the service error: connection trouble is
/// UNAVAILABLE, a unique violation is ALREADY_EXISTS (naming the column), a
/// foreign-key violation is NOT_FOUND (the row the request refers to does
/// not exist) or FAILED_PRECONDITION (a row still referenced cannot go),
/// everything else is INTERNAL and logged.
///
/// CHECK constraints and triggers stay INTERNAL here on purpose: they guard
/// invariants the service keeps itself, so one that fires is a bug, not the
/// caller's input; caller input is refused at the edge before it gets there.
pub fn classify(error: DbErr) -> Error {
    match error.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(message)) => {
            let (entity, field) = unique_violation_target(&message);
            return Error::AlreadyExists { entity, field };
        }
        Some(SqlErr::ForeignKeyConstraintViolation(message)) => {
            return foreign_key_violation(&message, postgres_detail(&error).as_deref());
        }
        // `SqlErr` is non-exhaustive; anything else is classified below.
        _ => {}
    }
    if is_unavailable(&error) {
        return Error::Unavailable(error.to_string());
    }
    Error::Internal(error.to_string())
}

/// PostgreSQL's DETAIL line of a database error, which names the key of a
/// foreign-key violation (SQLite says only "FOREIGN KEY constraint failed").
fn postgres_detail(error: &DbErr) -> Option<String> {
    let (DbErr::Exec(RuntimeErr::SqlxError(sqlx_error))
    | DbErr::Query(RuntimeErr::SqlxError(sqlx_error))) = error
    else {
        return None;
    };
    let sqlx::Error::Database(database) = sqlx_error.as_ref() else {
        return None;
    };
    database
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .and_then(|postgres| postgres.detail())
        .map(str::to_owned)
}

/// A foreign-key violation as the caller sees it. PostgreSQL says which key
/// (`Key (owner_id)=(…) is not present in table "users".`, or `… is still
/// referenced from table "wallets".` when a referenced row would go); SQLite
/// does not, and azora deletes no referenced rows, so there it is a
/// reference to a row that does not exist.
fn foreign_key_violation(message: &str, detail: Option<&str>) -> Error {
    let detail = detail.unwrap_or_default();
    if detail.contains("is still referenced") || message.starts_with("update or delete") {
        return Error::FailedPrecondition {
            reason: "STILL_REFERENCED",
            message: "the record is still referenced by other records".into(),
        };
    }
    let quoted = |text: &str| text.split('"').nth(1).map(str::to_owned);
    let table = detail
        .split("present in table ")
        .nth(1)
        .and_then(quoted)
        .unwrap_or_default();
    let id = detail
        .split(")=(")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .map(str::to_owned);
    match (entity_of(&table), id) {
        (entity, Some(id)) if entity != "record" => Error::NotFound { entity, id },
        _ => Error::NotFound {
            entity: "record",
            id: "referenced by the request".into(),
        },
    }
}

fn is_unavailable(error: &DbErr) -> bool {
    let runtime = match error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => return true,
        DbErr::Exec(runtime) | DbErr::Query(runtime) => runtime,
        _ => return false,
    };
    let RuntimeErr::SqlxError(sqlx_error) = runtime else {
        return false;
    };
    match sqlx_error.as_ref() {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(database) => database.code().is_some_and(|code| {
            // PostgreSQL: class 08 connection exception, 57P01-57P03 shutdown
            // and cannot-connect-now; SQLite: 5 (SQLITE_BUSY) after the busy
            // timeout ran out.
            code.starts_with("08") || code.starts_with("57P") || code == "5"
        }),
        _ => false,
    }
}

/// The entity and column of a unique violation, from the index name
/// (PostgreSQL: `duplicate key ... "users_email_key"`, our naming rule
/// `<table>_<column>_key`) or the column list (SQLite:
/// `UNIQUE constraint failed: users.email`).
fn unique_violation_target(message: &str) -> (&'static str, String) {
    let (table, column) = if let Some(columns) = message.split("failed: ").nth(1) {
        let first = columns.split(',').next().unwrap_or_default().trim();
        let (table, column) = first.split_once('.').unwrap_or(("", first));
        (table.to_owned(), column.to_owned())
    } else if let Some(index) = message.split('"').nth(1) {
        let name = index.strip_suffix("_key").unwrap_or(index);
        match TABLES
            .iter()
            .find(|table| name.starts_with(&format!("{table}_")))
        {
            Some(table) => (table.to_string(), name[table.len() + 1..].to_owned()),
            None => (String::new(), name.to_owned()),
        }
    } else {
        (String::new(), String::new())
    };
    (entity_of(&table), column)
}

/// The entity a table holds, as errors name it.
fn entity_of(table: &str) -> &'static str {
    match table {
        "users" => "user",
        "wallets" => "wallet",
        "api_keys" => "api key",
        "ledger_transactions" => "transaction",
        "idempotency_keys" => "request",
        "mining_sessions" => "mining session",
        "founder_compensations" => "founder compensation",
        "proofs_of_knowledge" => "proof of knowledge",
        "student_earnings" => "student earning",
        "subscriptions" => "subscription",
        "invoices" => "invoice",
        "alerts" => "alert",
        "compliance_reports" => "compliance report",
        "subscription_tiers" => "subscription tier",
        "system_accounts" => "system account",
        _ => "record",
    }
}

const TABLES: &[&str] = &[
    "users",
    "wallets",
    "api_keys",
    "ledger_transactions",
    "idempotency_keys",
    "mining_sessions",
    "founder_compensations",
    "proofs_of_knowledge",
    "student_earnings",
    "subscriptions",
    "invoices",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_to_postgres_is_what_the_url_asks_for() {
        // (PGSSLMODE is not set where the tests run.)
        assert_eq!(
            with_explicit_ssl_mode("postgres://u@db/azora"),
            "postgres://u@db/azora?sslmode=disable"
        );
        assert_eq!(
            with_explicit_ssl_mode("postgres://u@db/azora?application_name=a"),
            "postgres://u@db/azora?application_name=a&sslmode=disable"
        );
        assert_eq!(
            with_explicit_ssl_mode("postgresql://u@db/azora?sslmode=verify-full"),
            "postgresql://u@db/azora?sslmode=verify-full"
        );
        assert_eq!(
            with_explicit_ssl_mode("sqlite://azora.db?mode=rwc"),
            "sqlite://azora.db?mode=rwc"
        );
    }

    #[test]
    fn unique_violations_name_the_entity_and_column_on_both_backends() {
        assert_eq!(
            unique_violation_target(
                r#"duplicate key value violates unique constraint "users_email_key""#
            ),
            ("user", "email".to_owned())
        );
        assert_eq!(
            unique_violation_target("UNIQUE constraint failed: wallets.address"),
            ("wallet", "address".to_owned())
        );
        assert_eq!(
            unique_violation_target(
                r#"duplicate key value violates unique constraint "users_wallet_address_key""#
            ),
            ("user", "wallet_address".to_owned())
        );
        assert_eq!(
            unique_violation_target(
                r#"duplicate key value violates unique constraint "ledger_transactions_tx_hash_key""#
            ),
            ("transaction", "tx_hash".to_owned())
        );
    }

    #[test]
    fn foreign_key_violations_name_the_missing_row_and_are_never_internal() {
        let missing = foreign_key_violation(
            r#"insert or update on table "wallets" violates foreign key constraint "wallets_owner_id_fkey""#,
            Some(
                r#"Key (owner_id)=(0190a5f0-0000-7000-8000-000000000000) is not present in table "users"."#,
            ),
        );
        assert!(
            matches!(&missing, Error::NotFound { entity: "user", id } if id == "0190a5f0-0000-7000-8000-000000000000"),
            "{missing:?}"
        );
        let sqlite = foreign_key_violation("FOREIGN KEY constraint failed", None);
        assert!(
            matches!(
                sqlite,
                Error::NotFound {
                    entity: "record",
                    ..
                }
            ),
            "{sqlite:?}"
        );
        let referenced = foreign_key_violation(
            r#"update or delete on table "users" violates foreign key constraint "wallets_owner_id_fkey" on table "wallets""#,
            Some(
                r#"Key (id)=(0190a5f0-0000-7000-8000-000000000000) is still referenced from table "wallets"."#,
            ),
        );
        assert!(
            matches!(
                referenced,
                Error::FailedPrecondition {
                    reason: "STILL_REFERENCED",
                    ..
                }
            ),
            "{referenced:?}"
        );
    }
}
