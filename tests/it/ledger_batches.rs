//! Identical concurrent ledger requests replay; they never fail a whole batch
//! into one-by-one retries. PostgreSQL (SQLite serialises its writers, so
//! two batches never race there). The writer logs every batch that failed
//! whole; this test listens to its server's log to count them.

use crate::common::capture::Captured;
use crate::common::money::azr;
use crate::common::{Backend, TestApp, authed};
use azora::proto::treasury as tpb;
use azora::proto::treasury::treasury_service_client::TreasuryServiceClient;
use tokio::task::JoinSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_concurrent_transfers_replay_without_failing_a_batch() {
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("azora=warn")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    crate::common::capture::with_subscriber(subscriber, twins_and_singles(log)).await;
}

async fn twins_and_singles(log: Captured) {
    let app = TestApp::spawn_with(Backend::Postgres, |settings| {
        settings.ledger_writers = 2;
    })
    .await;
    let (_, key, from) = app.member_with_wallet("payer").await;
    let (_, _, to) = app.member_with_wallet("payee").await;
    app.fund(&from, "1000").await;
    let channels = [app.channel().await, app.channel().await];
    for round in 0..40 {
        let mut calls = JoinSet::new();
        for copy in 0..8 {
            // Four identical requests and four distinct ones per round, on
            // two connections, so both writers get twins at once.
            let request_id = if copy % 2 == 0 {
                format!("twin-{round}")
            } else {
                format!("single-{round}-{copy}")
            };
            let request = tpb::TransferRequest {
                request_id,
                from_wallet_id: from.clone(),
                to_wallet_id: to.clone(),
                amount: azr("0.01"),
                ..Default::default()
            };
            let channel = channels[copy % 2].clone();
            let key = key.clone();
            calls.spawn(async move {
                TreasuryServiceClient::new(channel)
                    .transfer(authed(&key, request))
                    .await
                    .map(|response| response.into_inner().transaction.unwrap().id)
            });
        }
        while let Some(result) = calls.join_next().await {
            result.unwrap().expect("every transfer and replay succeeds");
        }
    }
    // 40 twins and 160 singles: 200 transfers of 0.01.
    assert_eq!(app.available(&to).await, "2.000000");
    crate::common::money::assert_books_balance(&app).await;
    let said = log.text();
    let failed = said.matches("ledger batch failed").count();
    assert_eq!(failed, 0, "batches failed whole:\n{said}");
}
