//! Stake and Unstake over gRPC on both backends: AZR moves exactly between
//! a wallet's available and staked balances, only by its owner, and staked
//! AZR cannot be transferred or withdrawn.

use crate::common::money::{address, assert_books_balance, azr};
use crate::common::{Backend, TestApp, authed, request_id, violated_fields};
use azora::proto::treasury as pb;
use tonic::Code;

on_both_backends!(
    staking_moves_exactly_and_staked_azr_cannot_be_spent,
    staking_is_idempotent_and_only_the_owner_stakes_and_bad_input_is_named,
);

fn stake(wallet: &str, amount: &str, request_id: &str) -> pb::StakeRequest {
    pb::StakeRequest {
        request_id: request_id.into(),
        wallet_id: wallet.into(),
        amount: azr(amount),
        ..Default::default()
    }
}

fn unstake(wallet: &str, amount: &str, request_id: &str) -> pb::UnstakeRequest {
    pb::UnstakeRequest {
        request_id: request_id.into(),
        wallet_id: wallet.into(),
        amount: azr(amount),
        ..Default::default()
    }
}

async fn staking_moves_exactly_and_staked_azr_cannot_be_spent(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, alice, wallet) = app.member_with_wallet("alice").await;
    let (_, _, other) = app.member_with_wallet("bob").await;
    app.fund(&wallet, "100").await;
    let mut treasury = app.treasury().await;
    let staked = treasury
        .stake(authed(&alice, stake(&wallet, "60.000001", &request_id())))
        .await
        .unwrap()
        .into_inner()
        .transaction
        .unwrap();
    assert_eq!(staked.r#type, pb::TransactionType::Stake as i32);
    let balance = app.balance(&wallet).await;
    assert_eq!(balance.available.unwrap().value, "39.999999");
    assert_eq!(balance.staked.unwrap().value, "60.000001");
    assert_eq!(balance.total.unwrap().value, "100.000000");
    let summary = app.summary().await;
    assert_eq!(summary.total_staked.unwrap().value, "60.000001");
    assert_eq!(summary.held_in_wallets.unwrap().value, "100.000000");
    let transfer = treasury
        .transfer(authed(
            &alice,
            pb::TransferRequest {
                request_id: request_id(),
                from_wallet_id: wallet.clone(),
                to_wallet_id: other.clone(),
                amount: azr("40"),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(transfer.code(), Code::FailedPrecondition, "{transfer:?}");
    let withdrawal = treasury
        .withdraw(authed(
            &alice,
            pb::WithdrawRequest {
                request_id: request_id(),
                from_wallet_id: wallet.clone(),
                amount: azr("40"),
                destination_address: address(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        withdrawal.code(),
        Code::FailedPrecondition,
        "{withdrawal:?}"
    );
    let too_much = treasury
        .unstake(authed(&alice, unstake(&wallet, "60.000002", &request_id())))
        .await
        .unwrap_err();
    assert_eq!(too_much.code(), Code::FailedPrecondition, "{too_much:?}");
    treasury
        .unstake(authed(&alice, unstake(&wallet, "0.000001", &request_id())))
        .await
        .unwrap();
    let balance = app.balance(&wallet).await;
    assert_eq!(balance.available.unwrap().value, "40.000000");
    assert_eq!(balance.staked.unwrap().value, "60.000000");
    // What is available now moves; the staked part stays.
    treasury
        .transfer(authed(
            &alice,
            pb::TransferRequest {
                request_id: request_id(),
                from_wallet_id: wallet.clone(),
                to_wallet_id: other.clone(),
                amount: azr("40"),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    assert_eq!(
        app.balance(&wallet).await.staked.unwrap().value,
        "60.000000"
    );
    assert_books_balance(&app).await;
}

async fn staking_is_idempotent_and_only_the_owner_stakes_and_bad_input_is_named(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, alice, wallet) = app.member_with_wallet("alice").await;
    let (_, mallory, _) = app.member_with_wallet("mallory").await;
    app.fund(&wallet, "10").await;
    let mut treasury = app.treasury().await;
    let first = treasury
        .stake(authed(&alice, stake(&wallet, "3", "stake-once")))
        .await
        .unwrap()
        .into_inner()
        .transaction
        .unwrap();
    let again = treasury
        .stake(authed(&alice, stake(&wallet, "3", "stake-once")))
        .await
        .unwrap()
        .into_inner()
        .transaction
        .unwrap();
    assert_eq!(first.id, again.id);
    let reused = treasury
        .stake(authed(&alice, stake(&wallet, "4", "stake-once")))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&reused), ["request_id"]);
    assert_eq!(app.balance(&wallet).await.staked.unwrap().value, "3.000000");
    let foreign = treasury
        .unstake(authed(&mallory, unstake(&wallet, "1", &request_id())))
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), Code::PermissionDenied, "{foreign:?}");
    let bad = treasury
        .stake(authed(
            &alice,
            pb::StakeRequest {
                request_id: String::new(),
                wallet_id: "nope".into(),
                amount: azr("0"),
                reason: "x".repeat(501),
                metadata: None,
            },
        ))
        .await
        .unwrap_err();
    let mut fields = violated_fields(&bad);
    fields.sort();
    assert_eq!(fields, ["amount", "reason", "request_id", "wallet_id"]);
    assert_eq!(app.balance(&wallet).await.staked.unwrap().value, "3.000000");
    assert_books_balance(&app).await;
}
