//! ReverseTransaction over gRPC on both backends: a confirmed transaction is
//! reversed once and only once however many callers race for it, a reversal
//! the balances no longer allow writes nothing, and a reversed mint leaves
//! the compliance report clean.

use std::collections::HashSet;

use crate::common::money::{assert_books_balance, audited_calls, azr};
use crate::common::{Backend, TestApp, authed, compliance, request_id, violated_fields};
use azora::proto::compliance as cpb;
use azora::proto::treasury as pb;
use sea_orm::{ConnectionTrait, Statement};
use tokio::task::JoinSet;
use tonic::Code;

on_both_backends!(
    a_transfer_is_reversed_once_under_ten_concurrent_retries_of_one_request,
    ten_different_requests_to_reverse_one_transfer_make_exactly_one_reversal,
    a_reversal_is_refused_when_the_funds_are_gone_and_writes_nothing,
    a_reversed_mint_keeps_the_compliance_report_clean_and_the_summary_true,
    what_cannot_be_reversed_is_refused_and_bad_input_is_named,
);

fn reverse_request(transaction_id: &str, request_id: &str) -> pb::ReverseTransactionRequest {
    pb::ReverseTransactionRequest {
        request_id: request_id.into(),
        transaction_id: transaction_id.into(),
        reason: "sent to the wrong wallet".into(),
        metadata: None,
    }
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let backend = app.db.get_database_backend();
    app.db
        .query_one_raw(Statement::from_string(backend, sql))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap()
}

/// A transfer of 30 from alice's 100 to bob: (app, transfer id, from, to).
async fn paid(backend: Backend) -> (TestApp, String, String, String) {
    let app = TestApp::spawn(backend).await;
    let (_, alice, from) = app.member_with_wallet("alice").await;
    let (_, _, to) = app.member_with_wallet("bob").await;
    app.fund(&from, "100").await;
    let transfer = app
        .treasury()
        .await
        .transfer(authed(
            &alice,
            pb::TransferRequest {
                request_id: request_id(),
                from_wallet_id: from.clone(),
                to_wallet_id: to.clone(),
                amount: azr("30"),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .transaction
        .unwrap();
    (app, transfer.id, from, to)
}

/// Ten concurrent ReverseTransaction calls: each with `request_id(i)`.
async fn race(
    app: &TestApp,
    original: &str,
    request_id: impl Fn(usize) -> String,
) -> Vec<Result<pb::Transaction, tonic::Status>> {
    let mut calls = JoinSet::new();
    for i in 0..10 {
        let mut treasury = app.treasury().await;
        let request = authed(&app.admin_key, reverse_request(original, &request_id(i)));
        calls.spawn(async move {
            treasury
                .reverse_transaction(request)
                .await
                .map(|response| response.into_inner().transaction.unwrap())
        });
    }
    calls.join_all().await
}

async fn a_transfer_is_reversed_once_under_ten_concurrent_retries_of_one_request(backend: Backend) {
    let (app, original, from, to) = paid(backend).await;
    let outcomes = race(&app, &original, |_| "undo-once".into()).await;
    let ids: HashSet<String> = outcomes
        .into_iter()
        .map(|outcome| outcome.expect("every retry gets the reversal").id)
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let reversal = ids.into_iter().next().unwrap();
    assert_eq!(app.available(&from).await, "100.000000");
    assert_eq!(app.available(&to).await, "0.000000");
    let mut treasury = app.treasury().await;
    let shown = treasury
        .get_transaction(authed(
            &app.admin_key,
            pb::GetTransactionRequest {
                transaction_id: original.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .transaction
        .unwrap();
    assert_eq!(shown.reversed_by_transaction_id, reversal);
    let listed = treasury
        .list_transactions(authed(
            &app.admin_key,
            pb::ListTransactionsRequest {
                wallet_id: to.clone(),
                r#type: pb::TransactionType::Reversal as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .transactions;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, reversal);
    assert_eq!(listed[0].reverses_transaction_id, original);
    assert_eq!(listed[0].from_wallet_id, to);
    assert_eq!(listed[0].to_wallet_id, from);
    assert_eq!(listed[0].status, pb::TransactionStatus::Confirmed as i32);
    let reversals = audited_calls(&app, "transaction")
        .await
        .into_iter()
        .filter(|(method, _)| method == "ReverseTransaction")
        .count();
    assert_eq!(reversals, 10, "each call audited once");
    assert_books_balance(&app).await;
}

async fn ten_different_requests_to_reverse_one_transfer_make_exactly_one_reversal(
    backend: Backend,
) {
    let (app, original, from, to) = paid(backend).await;
    let outcomes = race(&app, &original, |i| format!("undo-{i}")).await;
    let (done, refused): (Vec<_>, Vec<_>) = outcomes.into_iter().partition(Result::is_ok);
    assert_eq!(done.len(), 1, "{refused:?}");
    for status in refused.into_iter().map(Result::unwrap_err) {
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    }
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM ledger_transactions WHERE kind = 'reversal'"
        )
        .await,
        1
    );
    assert_eq!(app.available(&from).await, "100.000000");
    assert_eq!(app.available(&to).await, "0.000000");
    // The database itself refuses a second reversal of the same original.
    let new_id = match backend {
        Backend::Postgres => "gen_random_uuid()",
        Backend::Sqlite => "randomblob(16)",
    };
    let duplicate = format!(
        "INSERT INTO ledger_transactions (id, kind, status, tx_hash, amount_azr_micros, amount_usd_micros, \
         from_wallet_id, to_wallet_id, reason, metadata, request_id, requested_by, created_at, confirmed_at, \
         processed_at, reverses_transaction_id) SELECT {new_id}, kind, status, tx_hash || 'x', amount_azr_micros, \
         amount_usd_micros, from_wallet_id, to_wallet_id, reason, metadata, 'again', requested_by, created_at, \
         confirmed_at, processed_at, reverses_transaction_id FROM ledger_transactions WHERE kind = 'reversal'"
    );
    let backend_kind = app.db.get_database_backend();
    let refused = app
        .db
        .execute_raw(Statement::from_string(backend_kind, duplicate))
        .await;
    assert!(refused.is_err(), "a second reversal row was accepted");
    assert_books_balance(&app).await;
}

async fn a_reversal_is_refused_when_the_funds_are_gone_and_writes_nothing(backend: Backend) {
    let (app, original, from, to) = paid(backend).await;
    // One micro-AZR of Bob's 30 is gone (burned by a treasurer).
    app.treasury()
        .await
        .burn(authed(
            &app.admin_key,
            pb::BurnRequest {
                request_id: request_id(),
                amount: azr("0.000001"),
                from_wallet_id: to.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let before = (
        count(&app, "SELECT count(*) FROM ledger_transactions").await,
        count(&app, "SELECT count(*) FROM ledger_entries").await,
        count(&app, "SELECT count(*) FROM idempotency_keys").await,
    );
    let status = app
        .treasury()
        .await
        .reverse_transaction(authed(
            &app.admin_key,
            reverse_request(&original, "too-late"),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("AZR"), "{status:?}");
    let after = (
        count(&app, "SELECT count(*) FROM ledger_transactions").await,
        count(&app, "SELECT count(*) FROM ledger_entries").await,
        count(&app, "SELECT count(*) FROM idempotency_keys").await,
    );
    assert_eq!(before, after, "nothing written");
    assert_eq!(app.available(&from).await, "70.000000");
    assert_eq!(app.available(&to).await, "29.999999");
    // The request id was not used up: once the AZR is back, it reverses.
    app.fund(&to, "0.000001").await;
    app.treasury()
        .await
        .reverse_transaction(authed(
            &app.admin_key,
            reverse_request(&original, "too-late"),
        ))
        .await
        .expect("the same request id applies once the funds allow it");
    assert_eq!(app.available(&from).await, "100.000000");
    assert_books_balance(&app).await;
}

async fn a_reversed_mint_keeps_the_compliance_report_clean_and_the_summary_true(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let start = chrono::Utc::now() - chrono::Duration::minutes(1);
    let (_, _, wallet) = app.member_with_wallet("alice").await;
    let mut treasury = app.treasury().await;
    let mint = |amount: &str, to: &str| {
        authed(
            &app.admin_key,
            pb::MintRequest {
                request_id: request_id(),
                amount: azr(amount),
                to_wallet_id: to.into(),
                ..Default::default()
            },
        )
    };
    treasury.mint(mint("1000", "")).await.unwrap();
    let wrong = treasury
        .mint(mint("100", &wallet))
        .await
        .unwrap()
        .into_inner()
        .transaction
        .unwrap();
    let reversal = treasury
        .reverse_transaction(authed(&app.admin_key, reverse_request(&wrong.id, "unmint")))
        .await
        .unwrap()
        .into_inner()
        .transaction
        .unwrap();
    assert_eq!(reversal.r#type, pb::TransactionType::Reversal as i32);
    assert_eq!(reversal.amount_azr, reversal.amount_usd, "the peg");
    assert_eq!(app.available(&wallet).await, "0.000000");
    // Minted then unminted: the totals are those of the one remaining mint.
    let summary = app.summary().await;
    assert_eq!(summary.total_minted.unwrap().value, "1000.000000");
    assert_eq!(summary.total_burned.unwrap().value, "50.000000");
    assert_eq!(summary.total_supply.unwrap().value, "950.000000");
    assert_eq!(summary.treasury_reserve.unwrap().value, "700.000000");
    let end = chrono::Utc::now() + chrono::Duration::minutes(1);
    let at = |at: chrono::DateTime<chrono::Utc>| {
        Some(prost_types::Timestamp {
            seconds: at.timestamp(),
            nanos: 0,
        })
    };
    let report = compliance(&app)
        .await
        .generate_compliance_report(authed(
            &app.admin_key,
            cpb::GenerateComplianceReportRequest {
                report_type: cpb::ReportType::AdHoc as i32,
                period_start: at(start),
                period_end: at(end),
                request_id: request_id(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .report
        .unwrap();
    let failed: Vec<_> = report.checks.iter().filter(|check| !check.passed).collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert!(
        report
            .checks
            .iter()
            .any(|check| check.name == "reversals_mirror_originals")
    );
    assert_books_balance(&app).await;
}

async fn what_cannot_be_reversed_is_refused_and_bad_input_is_named(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, alice, wallet) = app.member_with_wallet("alice").await;
    let deposit = app.fund(&wallet, "10").await;
    let mut treasury = app.treasury().await;
    let withdrawal = treasury
        .withdraw(authed(
            &alice,
            pb::WithdrawRequest {
                request_id: request_id(),
                from_wallet_id: wallet.clone(),
                amount: azr("1"),
                destination_address: crate::common::money::address(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .transaction
        .unwrap();
    for (original, why) in [(&withdrawal.id, "pending"), (&deposit.id, "chain")] {
        let status = treasury
            .reverse_transaction(authed(
                &app.admin_key,
                reverse_request(original, &request_id()),
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "{why}: {status:?}");
    }
    let unknown = treasury
        .reverse_transaction(authed(
            &app.admin_key,
            reverse_request(&uuid::Uuid::now_v7().to_string(), &request_id()),
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    let member = treasury
        .reverse_transaction(authed(&alice, reverse_request(&deposit.id, &request_id())))
        .await
        .unwrap_err();
    assert_eq!(member.code(), Code::PermissionDenied, "{member:?}");
    let bad = treasury
        .reverse_transaction(authed(
            &app.admin_key,
            pb::ReverseTransactionRequest {
                request_id: String::new(),
                transaction_id: "not-a-uuid".into(),
                reason: "x".repeat(501),
                metadata: None,
            },
        ))
        .await
        .unwrap_err();
    let mut fields = violated_fields(&bad);
    fields.sort();
    assert_eq!(fields, ["reason", "request_id", "transaction_id"]);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM ledger_transactions WHERE kind = 'reversal'"
        )
        .await,
        0
    );
}
