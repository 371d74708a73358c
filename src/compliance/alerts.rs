//! What the rest of the crate may ask Compliance to write: an alert for the
//! operators (the health monitor, the authentication layer) and a health
//! snapshot. WatchAlerts streams pick raised alerts up from the table.

use sea_orm::{ConnectionTrait, DatabaseConnection};

use super::store;
use crate::db::{begin_write, classify};
use crate::error::Error;

pub use super::domain::{Alert, Severity};

/// Raises an alert in its own transaction.
pub async fn raise(
    db: &DatabaseConnection,
    severity: Severity,
    source: &str,
    message: &str,
) -> Result<Alert, Error> {
    let transaction = begin_write(db).await?;
    let raised = store::raise_alert_in(&transaction, severity, source, message).await?;
    transaction.commit().await.map_err(classify)?;
    Ok(raised)
}

/// Records whether `component` answered, and how fast.
pub async fn record_health(
    db: &impl ConnectionTrait,
    component: &str,
    up: bool,
    latency_micros: Option<i64>,
) -> Result<(), Error> {
    store::record_health(db, component, up, latency_micros).await
}
