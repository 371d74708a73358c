//! CreateTransfers over a real gRPC channel, on PostgreSQL and SQLite: an
//! atomic batch posts all its transfers or none and names the item that
//! failed; an independent batch answers each item alone; a retried batch
//! answers what it answered first; concurrent batches on hot wallets
//! conserve every micro-AZR; bad input is named item by item.

use crate::common::money::{assert_books_balance, azr, micros};
use crate::common::{Backend, TestApp, authed, request_id, violated_fields};
use azora::proto::treasury as pb;
use pb::transfer_result::Outcome;
use sea_orm::{ConnectionTrait, Statement};
use tokio::task::JoinSet;
use tonic::Code;
use tonic_types::StatusExt;

on_both_backends!(
    an_atomic_batch_with_one_failing_item_writes_nothing_and_names_the_item,
    an_independent_batch_answers_each_item_alone,
    a_retried_batch_returns_its_original_results,
    concurrent_batches_on_hot_wallets_conserve_every_micro_azr,
    bad_batch_input_is_named_item_by_item_and_writes_nothing,
);

fn transfer(from: &str, to: &str, amount: &str) -> pb::TransferRequest {
    pb::TransferRequest {
        request_id: request_id(),
        from_wallet_id: from.into(),
        to_wallet_id: to.into(),
        amount: azr(amount),
        ..Default::default()
    }
}

fn batch(mode: pb::BatchMode, transfers: Vec<pb::TransferRequest>) -> pb::CreateTransfersRequest {
    pb::CreateTransfersRequest {
        request_id: request_id(),
        mode: mode as i32,
        transfers,
    }
}

async fn rows(app: &TestApp, table: &str) -> i64 {
    let row = app
        .db
        .query_one_raw(Statement::from_string(
            app.db.get_database_backend(),
            format!("SELECT CAST(COUNT(*) AS BIGINT) AS n FROM {table}"),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

fn transaction(result: &pb::TransferResult) -> &pb::Transaction {
    match &result.outcome {
        Some(Outcome::Transaction(transaction)) => transaction,
        other => panic!("expected a transaction, got {other:?}"),
    }
}

fn item_error(result: &pb::TransferResult) -> &pb::ItemError {
    match &result.outcome {
        Some(Outcome::Error(error)) => error,
        other => panic!("expected an error, got {other:?}"),
    }
}

async fn an_atomic_batch_with_one_failing_item_writes_nothing_and_names_the_item(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, key, alice) = app.member_with_wallet("alice").await;
    let (_, _, bob) = app.member_with_wallet("bob").await;
    let (_, _, carol) = app.member_with_wallet("carol").await;
    app.fund(&alice, "10").await;
    let mut treasury = app.treasury().await;
    let before = (
        rows(&app, "ledger_transactions").await,
        rows(&app, "ledger_entries").await,
    );
    // Items 0 to 2 fit; item 3 would take alice below zero.
    let transfers = vec![
        transfer(&alice, &bob, "3"),
        transfer(&alice, &carol, "3"),
        transfer(&alice, &bob, "3"),
        transfer(&alice, &carol, "3"),
        transfer(&alice, &bob, "0.5"),
    ];
    let refused = treasury
        .create_transfers(authed(
            &key,
            batch(pb::BatchMode::Atomic, transfers.clone()),
        ))
        .await
        .expect_err("the batch is refused whole");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let fields: Vec<String> = refused
        .get_details_bad_request()
        .expect("the item is named")
        .field_violations
        .into_iter()
        .map(|violation| violation.field)
        .collect();
    assert_eq!(fields, ["transfers[3].amount"]);
    let info = refused.get_details_error_info().expect("error info");
    assert_eq!(info.reason, "INSUFFICIENT_FUNDS");
    assert_eq!(info.metadata.get("index").map(String::as_str), Some("3"));
    assert!(
        refused.message().starts_with("transfers[3]: "),
        "{}",
        refused.message()
    );
    assert_eq!(app.available(&alice).await, "10.000000");
    assert_eq!(app.available(&bob).await, "0.000000");
    let after = (
        rows(&app, "ledger_transactions").await,
        rows(&app, "ledger_entries").await,
    );
    assert_eq!(before, after, "nothing of the batch was written");
    assert_eq!(rows(&app, "transfer_batches").await, 0);

    // A source wallet the caller does not own fails the batch, named too.
    let mut foreign = transfers[..2].to_vec();
    foreign.push(transfer(&bob, &carol, "1"));
    let refused = treasury
        .create_transfers(authed(&key, batch(pb::BatchMode::Atomic, foreign)))
        .await
        .expect_err("a foreign source fails the batch");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert_eq!(
        refused.get_details_bad_request().unwrap().field_violations[0].field,
        "transfers[2].from_wallet_id"
    );

    // The same items that failed with the batch left their ids unused: the
    // batch without its bad item applies, under the same item ids.
    let mut good = transfers;
    good.truncate(3);
    let applied = treasury
        .create_transfers(authed(&key, batch(pb::BatchMode::Atomic, good.clone())))
        .await
        .expect("the good items apply")
        .into_inner();
    assert_eq!(applied.results.len(), 3);
    for (result, sent) in applied.results.iter().zip(&good) {
        let transaction = transaction(result);
        assert_eq!(transaction.request_id, sent.request_id);
        assert_eq!(transaction.r#type, pb::TransactionType::Transfer as i32);
    }
    assert_eq!(app.available(&alice).await, "1.000000");
    assert_eq!(app.available(&bob).await, "6.000000");
    assert_eq!(app.available(&carol).await, "3.000000");
    assert_books_balance(&app).await;
}

async fn an_independent_batch_answers_each_item_alone(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, key, alice) = app.member_with_wallet("alice").await;
    let (_, _, bob) = app.member_with_wallet("bob").await;
    app.fund(&alice, "5").await;
    let mut treasury = app.treasury().await;
    let missing = uuid::Uuid::now_v7().to_string();
    let transfers = vec![
        transfer(&alice, &bob, "2"),
        transfer(&alice, &bob, "4"),
        transfer(&alice, &missing, "1"),
        transfer(&bob, &alice, "1"),
        transfer(&alice, &bob, "3"),
    ];
    let answered = treasury
        .create_transfers(authed(&key, batch(pb::BatchMode::Independent, transfers)))
        .await
        .expect("an independent batch answers")
        .into_inner()
        .results;
    assert_eq!(answered.len(), 5);
    assert_eq!(
        transaction(&answered[0]).amount_azr.as_ref().unwrap().value,
        "2.000000"
    );
    let short = item_error(&answered[1]);
    assert_eq!(
        (short.code, short.reason.as_str()),
        (Code::FailedPrecondition as i32, "INSUFFICIENT_FUNDS")
    );
    assert_eq!(item_error(&answered[2]).code, Code::NotFound as i32);
    assert_eq!(item_error(&answered[3]).code, Code::PermissionDenied as i32);
    // Later items see what earlier ones left: 5 - 2 = 3 is enough for 3.
    assert_eq!(
        transaction(&answered[4]).amount_azr.as_ref().unwrap().value,
        "3.000000"
    );
    assert_eq!(app.available(&alice).await, "0.000000");
    assert_eq!(app.available(&bob).await, "5.000000");
    assert_books_balance(&app).await;
}

async fn a_retried_batch_returns_its_original_results(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, key, alice) = app.member_with_wallet("alice").await;
    let (_, _, bob) = app.member_with_wallet("bob").await;
    app.fund(&alice, "5").await;
    let mut treasury = app.treasury().await;
    let request = batch(
        pb::BatchMode::Independent,
        vec![transfer(&alice, &bob, "4"), transfer(&alice, &bob, "4")],
    );
    let first = treasury
        .create_transfers(authed(&key, request.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(item_error(&first.results[1]).reason, "INSUFFICIENT_FUNDS");
    // Enough money now for the second item: the retry still answers as the
    // first call did, and moves nothing.
    app.fund(&alice, "10").await;
    let retried = treasury
        .create_transfers(authed(&key, request.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried, first);
    assert_eq!(app.available(&alice).await, "11.000000");
    assert_eq!(app.available(&bob).await, "4.000000");

    // The same batch id for another batch is refused, naming it.
    let mut other = request.clone();
    other.transfers[0].amount = azr("1");
    let refused = treasury
        .create_transfers(authed(&key, other))
        .await
        .expect_err("another batch under a used id");
    assert_eq!(violated_fields(&refused), ["request_id"]);

    // An item repeating a used item id: replayed with the same content,
    // refused with other content (atomic: the whole batch).
    let used = request.transfers[0].clone();
    let replay = treasury
        .create_transfers(authed(
            &key,
            batch(pb::BatchMode::Atomic, vec![used.clone()]),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        transaction(&replay.results[0]).id,
        transaction(&first.results[0]).id
    );
    let mut changed = used;
    changed.amount = azr("2");
    let refused = treasury
        .create_transfers(authed(
            &key,
            batch(
                pb::BatchMode::Atomic,
                vec![transfer(&alice, &bob, "1"), changed],
            ),
        ))
        .await
        .expect_err("an item id reused for another transfer");
    assert_eq!(violated_fields(&refused), ["transfers[1].request_id"]);
    // A retried atomic batch that succeeded answers the same transactions.
    let atomic = batch(
        pb::BatchMode::Atomic,
        vec![transfer(&alice, &bob, "1"), transfer(&alice, &bob, "1")],
    );
    let first = treasury
        .create_transfers(authed(&key, atomic.clone()))
        .await
        .unwrap()
        .into_inner();
    let again = treasury
        .create_transfers(authed(&key, atomic))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, again);
    assert_eq!(app.available(&bob).await, "6.000000");
    assert_books_balance(&app).await;
}

async fn concurrent_batches_on_hot_wallets_conserve_every_micro_azr(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut wallets = Vec::new();
    for index in 0..4 {
        let (_, key, wallet) = app.member_with_wallet(&format!("hot{index}")).await;
        app.fund(&wallet, "100").await;
        wallets.push((key, wallet));
    }
    let mut tasks = JoinSet::new();
    for client in 0..8usize {
        let channel = app.channel().await;
        let wallets = wallets.clone();
        tasks.spawn(async move {
            let mut treasury = pb::treasury_service_client::TreasuryServiceClient::new(channel);
            let (key, from) = &wallets[client % wallets.len()];
            let mode = if client % 2 == 0 {
                pb::BatchMode::Atomic
            } else {
                pb::BatchMode::Independent
            };
            let mut applied = 0usize;
            for round in 0..10usize {
                let transfers = (0..20usize)
                    .map(|item| {
                        let to = &wallets[(client + 1 + item % 3) % wallets.len()].1;
                        let amount = format!(
                            "{}.{:06}",
                            (client + round + item) % 7,
                            (client * 31 + item) % 1_000_000 + 1
                        );
                        transfer(from, to, &amount)
                    })
                    .collect();
                match treasury
                    .create_transfers(authed(key, batch(mode, transfers)))
                    .await
                {
                    Ok(answer) => {
                        applied += answer
                            .into_inner()
                            .results
                            .iter()
                            .filter(|result| {
                                matches!(result.outcome, Some(Outcome::Transaction(_)))
                            })
                            .count();
                    }
                    Err(status) if status.code() == Code::FailedPrecondition => {}
                    Err(status) => panic!("a client saw {status:?}"),
                }
            }
            applied
        });
    }
    let applied: usize = tasks.join_all().await.into_iter().sum();
    assert!(applied > 0, "some transfers applied");
    let mut total = 0;
    for (_, wallet) in &wallets {
        total += micros(&app.available(wallet).await);
    }
    assert_eq!(total, 400 * 1_000_000, "conservation, to the micro-AZR");
    assert_eq!(rows(&app, "ledger_transactions").await, 4 + applied as i64);
    assert_books_balance(&app).await;
}

async fn bad_batch_input_is_named_item_by_item_and_writes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, key, alice) = app.member_with_wallet("alice").await;
    let (_, _, bob) = app.member_with_wallet("bob").await;
    app.fund(&alice, "5").await;
    let mut treasury = app.treasury().await;
    let before = rows(&app, "ledger_transactions").await;
    let call = |request: pb::CreateTransfersRequest| {
        let key = key.clone();
        let mut treasury = treasury.clone();
        async move {
            treasury
                .create_transfers(authed(&key, request))
                .await
                .expect_err("bad input is refused")
        }
    };
    let mut zero = transfer(&alice, &bob, "1");
    zero.amount = azr("0");
    let mut same = transfer(&alice, &alice, "1");
    same.request_id = String::new();
    let refused = call(batch(
        pb::BatchMode::Atomic,
        vec![transfer(&alice, &bob, "1"), zero, same],
    ))
    .await;
    assert_eq!(
        violated_fields(&refused),
        [
            "transfers[1].amount",
            "transfers[2].request_id",
            "transfers[2].to_wallet_id"
        ]
    );
    let refused = call(batch(pb::BatchMode::Unspecified, vec![])).await;
    assert_eq!(violated_fields(&refused), ["mode", "transfers"]);
    let too_many = (0..1001)
        .map(|_| transfer(&alice, &bob, "0.000001"))
        .collect();
    let refused = call(batch(pb::BatchMode::Independent, too_many)).await;
    assert_eq!(violated_fields(&refused), ["transfers"]);
    let twice = transfer(&alice, &bob, "1");
    let refused = call(batch(
        pb::BatchMode::Independent,
        vec![twice.clone(), twice],
    ))
    .await;
    assert_eq!(violated_fields(&refused), ["transfers[1].request_id"]);
    let mut unnamed = batch(pb::BatchMode::Atomic, vec![transfer(&alice, &bob, "1")]);
    unnamed.request_id = String::new();
    assert_eq!(violated_fields(&call(unnamed).await), ["request_id"]);
    assert_eq!(rows(&app, "ledger_transactions").await, before);
    // An auditor moves no money, in batches either.
    let (_, auditor) = app
        .user_with_role("audra", azora::proto::identity::Role::Auditor)
        .await;
    let denied = treasury
        .create_transfers(authed(
            &auditor,
            batch(pb::BatchMode::Atomic, vec![transfer(&alice, &bob, "1")]),
        ))
        .await
        .expect_err("auditors move no money");
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(app.available(&alice).await, "5.000000");
}
