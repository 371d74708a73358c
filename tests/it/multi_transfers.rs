//! MultiTransfer over a real gRPC channel, on PostgreSQL and SQLite: one
//! wallet pays several wallets and a fee in one transaction whose legs
//! balance and commit together; reads show it as one transaction with its
//! legs, to the payer and to each payee.

use crate::common::money::{assert_books_balance, azr, micros};
use crate::common::{Backend, TestApp, authed, request_id, violated_fields};
use azora::proto::treasury as pb;
use tonic::Code;

on_both_backends!(
    a_multi_transfer_pays_each_payee_and_the_fee_in_one_transaction_with_its_legs,
    a_multi_transfer_the_source_cannot_pay_moves_nothing,
    bad_multi_transfer_input_is_named_and_writes_nothing,
    a_reversed_multi_transfer_undoes_every_leg_in_one_transaction,
);

fn payment(to: &str, amount: &str) -> pb::Payment {
    pb::Payment {
        to_wallet_id: to.into(),
        amount: azr(amount),
    }
}

fn request(from: &str, payments: Vec<pb::Payment>, fee: Option<&str>) -> pb::MultiTransferRequest {
    pb::MultiTransferRequest {
        request_id: request_id(),
        from_wallet_id: from.into(),
        payments,
        fee: fee.and_then(azr),
        ..Default::default()
    }
}

/// (wallet or system account, bucket, signed micro-AZR) of each leg.
fn legs(transaction: &pb::Transaction) -> Vec<(String, i32, i64)> {
    transaction
        .legs
        .iter()
        .map(|posting| {
            let account = if posting.wallet_id.is_empty() {
                posting.system_account.clone()
            } else {
                posting.wallet_id.clone()
            };
            (
                account,
                posting.bucket,
                micros(&posting.amount.as_ref().unwrap().value),
            )
        })
        .collect()
}

async fn a_multi_transfer_pays_each_payee_and_the_fee_in_one_transaction_with_its_legs(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let (_, alice_key, alice) = app.member_with_wallet("alice").await;
    let (_, bob_key, bob) = app.member_with_wallet("bob").await;
    let (_, carol_key, carol) = app.member_with_wallet("carol").await;
    let (_, dave_key, _) = app.member_with_wallet("dave").await;
    app.fund(&alice, "100").await;
    let reserve_before = micros(&app.pool(pb::SystemAccount::TreasuryReserve).await);
    let mut treasury = app.treasury().await;
    let sent = request(
        &alice,
        vec![payment(&bob, "10"), payment(&carol, "20.5")],
        Some("0.5"),
    );
    let paid = treasury
        .multi_transfer(authed(&alice_key, sent.clone()))
        .await
        .expect("the multi-transfer applies")
        .into_inner()
        .transaction
        .unwrap();
    assert_eq!(paid.r#type, pb::TransactionType::MultiTransfer as i32);
    assert_eq!(paid.amount_azr.as_ref().unwrap().value, "31.000000");
    assert_eq!(paid.from_wallet_id, alice);
    let available = pb::Bucket::Available as i32;
    let shown = legs(&paid);
    assert_eq!(
        shown,
        [
            (alice.clone(), available, -10_000_000),
            (bob.clone(), available, 10_000_000),
            (alice.clone(), available, -20_500_000),
            (carol.clone(), available, 20_500_000),
            (alice.clone(), available, -500_000),
            ("treasury_reserve".to_owned(), available, 500_000),
        ]
    );
    assert_eq!(
        shown.iter().map(|(_, _, amount)| amount).sum::<i64>(),
        0,
        "the legs balance"
    );
    assert_eq!(app.available(&alice).await, "69.000000");
    assert_eq!(app.available(&bob).await, "10.000000");
    assert_eq!(app.available(&carol).await, "20.500000");
    assert_eq!(
        micros(&app.pool(pb::SystemAccount::TreasuryReserve).await) - reserve_before,
        500_000
    );

    // Every party reads it as one transaction with its legs; others do not.
    for key in [&alice_key, &bob_key, &carol_key] {
        let read = treasury
            .get_transaction(authed(
                key,
                pb::GetTransactionRequest {
                    transaction_id: paid.id.clone(),
                },
            ))
            .await
            .expect("a party reads it")
            .into_inner()
            .transaction
            .unwrap();
        assert_eq!(legs(&read), shown);
        let listed = treasury
            .list_transactions(authed(key, pb::ListTransactionsRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .transactions;
        let found = listed
            .iter()
            .find(|listed| listed.id == paid.id)
            .expect("listed for each party");
        assert_eq!(legs(found), shown);
    }
    let by_payee = treasury
        .list_transactions(authed(
            &app.admin_key,
            pb::ListTransactionsRequest {
                wallet_id: carol.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .transactions;
    assert_eq!(by_payee.len(), 1);
    let denied = treasury
        .get_transaction(authed(
            &dave_key,
            pb::GetTransactionRequest {
                transaction_id: paid.id.clone(),
            },
        ))
        .await
        .expect_err("a stranger reads nothing");
    assert_eq!(denied.code(), Code::PermissionDenied);

    // Other types show their legs too: the deposit that funded alice.
    let funding = treasury
        .list_transactions(authed(
            &app.admin_key,
            pb::ListTransactionsRequest {
                wallet_id: alice.clone(),
                r#type: pb::TransactionType::Deposit as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .transactions;
    assert_eq!(
        legs(&funding[0]),
        [
            ("external".to_owned(), available, -100_000_000),
            (alice.clone(), available, 100_000_000),
        ]
    );

    // A retry answers the original; the same id for another payment is refused.
    let again = treasury
        .multi_transfer(authed(&alice_key, sent.clone()))
        .await
        .unwrap()
        .into_inner()
        .transaction
        .unwrap();
    assert_eq!(again.id, paid.id);
    assert_eq!(legs(&again), shown);
    assert_eq!(app.available(&alice).await, "69.000000");
    let mut other = sent;
    other.fee = None;
    let refused = treasury
        .multi_transfer(authed(&alice_key, other))
        .await
        .expect_err("a used id");
    assert_eq!(violated_fields(&refused), ["request_id"]);
    assert_books_balance(&app).await;
}

async fn a_multi_transfer_the_source_cannot_pay_moves_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, alice_key, alice) = app.member_with_wallet("alice").await;
    let (_, bob_key, bob) = app.member_with_wallet("bob").await;
    let (_, _, carol) = app.member_with_wallet("carol").await;
    app.fund(&alice, "10").await;
    let mut treasury = app.treasury().await;
    let short = treasury
        .multi_transfer(authed(
            &alice_key,
            request(
                &alice,
                vec![payment(&bob, "6"), payment(&carol, "4")],
                Some("0.000001"),
            ),
        ))
        .await
        .expect_err("the sum exceeds the balance");
    assert_eq!(short.code(), Code::FailedPrecondition, "{short:?}");
    let foreign = treasury
        .multi_transfer(authed(
            &bob_key,
            request(&alice, vec![payment(&carol, "1")], None),
        ))
        .await
        .expect_err("only the owner pays");
    assert_eq!(foreign.code(), Code::PermissionDenied);
    let missing = uuid::Uuid::now_v7().to_string();
    let unknown = treasury
        .multi_transfer(authed(
            &alice_key,
            request(
                &alice,
                vec![payment(&bob, "1"), payment(&missing, "1")],
                None,
            ),
        ))
        .await
        .expect_err("a missing payee");
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(app.available(&alice).await, "10.000000");
    assert_eq!(app.available(&bob).await, "0.000000");
    assert_eq!(app.available(&carol).await, "0.000000");
    // Exactly the balance goes through.
    treasury
        .multi_transfer(authed(
            &alice_key,
            request(&alice, vec![payment(&bob, "6"), payment(&carol, "4")], None),
        ))
        .await
        .expect("the whole balance");
    assert_eq!(app.available(&alice).await, "0.000000");
    assert_books_balance(&app).await;
}

async fn bad_multi_transfer_input_is_named_and_writes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, key, alice) = app.member_with_wallet("alice").await;
    let (_, _, bob) = app.member_with_wallet("bob").await;
    app.fund(&alice, "10").await;
    let treasury = app.treasury().await;
    let refuse = |request: pb::MultiTransferRequest| {
        let key = key.clone();
        let mut treasury = treasury.clone();
        async move {
            let status = treasury
                .multi_transfer(authed(&key, request))
                .await
                .expect_err("bad input is refused");
            violated_fields(&status)
        }
    };
    assert_eq!(refuse(request(&alice, vec![], None)).await, ["payments"]);
    let many = (0..17).map(|_| payment(&bob, "1")).collect();
    assert_eq!(refuse(request(&alice, many, None)).await[0], "payments");
    assert_eq!(
        refuse(request(&alice, vec![payment(&alice, "1")], None)).await,
        ["payments[0].to_wallet_id"]
    );
    assert_eq!(
        refuse(request(
            &alice,
            vec![payment(&bob, "1"), payment(&bob, "2")],
            None
        ))
        .await,
        ["payments[1].to_wallet_id"]
    );
    assert_eq!(
        refuse(request(&alice, vec![payment(&bob, "0")], Some("0"))).await,
        ["payments[0].amount", "fee"]
    );
    assert_eq!(
        refuse(request(&alice, vec![payment("nope", "1")], None)).await,
        ["payments[0].to_wallet_id"]
    );
    let (_, _, carol) = app.member_with_wallet("carol").await;
    assert_eq!(
        refuse(request(
            &alice,
            vec![payment(&bob, "1000000000"), payment(&carol, "1")],
            None
        ))
        .await,
        ["payments"]
    );
    let mut unnamed = request(&alice, vec![payment(&bob, "1")], None);
    unnamed.request_id = String::new();
    assert_eq!(refuse(unnamed).await, ["request_id"]);
    assert_eq!(app.available(&alice).await, "10.000000");
    assert_eq!(app.available(&bob).await, "0.000000");
}

async fn a_reversed_multi_transfer_undoes_every_leg_in_one_transaction(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, alice_key, alice) = app.member_with_wallet("alice").await;
    let (_, _, bob) = app.member_with_wallet("bob").await;
    let (_, _, carol) = app.member_with_wallet("carol").await;
    app.fund(&alice, "100").await;
    let reserve_before = micros(&app.pool(pb::SystemAccount::TreasuryReserve).await);
    let mut treasury = app.treasury().await;
    let paid = treasury
        .multi_transfer(authed(
            &alice_key,
            request(
                &alice,
                vec![payment(&bob, "10"), payment(&carol, "20.5")],
                Some("0.5"),
            ),
        ))
        .await
        .expect("the multi-transfer applies")
        .into_inner()
        .transaction
        .unwrap();
    let reversal = treasury
        .reverse_transaction(authed(
            &app.admin_key,
            pb::ReverseTransactionRequest {
                request_id: request_id(),
                transaction_id: paid.id.clone(),
                reason: "paid in error".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("a posted multi-transfer is reversed")
        .into_inner()
        .transaction
        .unwrap();
    assert_eq!(reversal.r#type, pb::TransactionType::Reversal as i32);
    assert_eq!(reversal.reverses_transaction_id, paid.id);
    assert_eq!(reversal.amount_azr.as_ref().unwrap().value, "31.000000");
    // Back where every party was: the payees and the reserve pay back.
    assert_eq!(app.available(&alice).await, "100.000000");
    assert_eq!(app.available(&bob).await, "0.000000");
    assert_eq!(app.available(&carol).await, "0.000000");
    assert_eq!(
        micros(&app.pool(pb::SystemAccount::TreasuryReserve).await),
        reserve_before
    );
    let read = treasury
        .get_transaction(authed(
            &app.admin_key,
            pb::GetTransactionRequest {
                transaction_id: reversal.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .transaction
        .unwrap();
    let mut undone: Vec<_> = legs(&read)
        .into_iter()
        .map(|(account, bucket, amount)| (account, bucket, -amount))
        .collect();
    let mut original = legs(&paid);
    undone.sort();
    original.sort();
    assert_eq!(
        undone, original,
        "the reversal's legs are the original's negated"
    );
    assert_books_balance(&app).await;
}
