//! The optional Redis connection (fred). Configured to fail fast: with fred's
//! defaults a command hangs while Redis is down and never reconnects.

use std::time::Duration;

use fred::prelude::*;

use crate::config::Secret;

/// How long any Redis command may take before it counts as failed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_millis(100);

/// Builds a client that reconnects every 100 ms while Redis is away and starts
/// connecting in the background; a Redis that is down at start-up does not
/// stop the server.
pub fn connect(url: &Secret) -> Result<Client, Error> {
    let config = Config::from_url(url.expose())?;
    let client = Builder::from_config(config)
        .with_connection_config(|connection| {
            connection.connection_timeout = COMMAND_TIMEOUT;
            connection.internal_command_timeout = COMMAND_TIMEOUT;
            connection.max_command_attempts = 1;
        })
        .set_policy(ReconnectPolicy::new_constant(0, 100))
        .build()?;
    client.connect();
    Ok(client)
}

/// True when Redis answers PING within [`COMMAND_TIMEOUT`].
pub async fn ping(client: &Client) -> bool {
    matches!(
        tokio::time::timeout(COMMAND_TIMEOUT, client.ping::<String>(None)).await,
        Ok(Ok(_))
    )
}
