//! TreasuryService over a real gRPC channel, on PostgreSQL and SQLite: the
//! ledger's arithmetic, its invariants under concurrency, idempotency, the
//! two-phase chain flows, history, authorization and bad input.

use std::collections::HashSet;

use crate::common::money::{assert_books_balance, azr, micros};
use crate::common::{Backend, TestApp, authed, request_id, violated_fields};
use azora::proto::identity as ipb;
use azora::proto::treasury as pb;
use sea_orm::ConnectionTrait;
use tokio::task::JoinSet;
use tonic::Code;

on_both_backends!(
    a_mint_is_split_by_the_policy_and_the_summary_adds_up,
    a_transfer_moves_money_and_one_larger_than_the_balance_is_rejected,
    bad_input_gets_a_clear_error_and_writes_nothing,
    a_retried_request_returns_the_original_and_changes_nothing,
    the_same_request_id_sent_ten_times_concurrently_has_one_effect,
    thirty_two_clients_on_hot_wallets_conserve_every_micro_azr,
    fifty_concurrent_transfers_of_the_whole_balance_let_exactly_one_through,
    withdrawals_hold_then_post_or_release_and_resolve_once,
    pending_deposits_credit_only_when_confirmed_and_chain_hashes_are_unique,
    balances_as_of_a_past_time_come_from_the_entries,
    each_role_moves_and_reads_only_what_it_may,
    transactions_list_newest_first_with_filters_and_pages,
    the_database_itself_refuses_to_break_the_invariants,
    the_ledger_touches_the_wallets_it_moves_and_set_unique_columns_stay_unique,
);

async fn a_mint_is_split_by_the_policy_and_the_summary_adds_up(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, _, wallet) = app.member_with_wallet("mia").await;
    let mut treasury = app.treasury().await;
    let mint = treasury
        .mint(authed(
            &app.admin_key,
            pb::MintRequest {
                request_id: request_id(),
                amount: azr("100.000003"),
                to_wallet_id: wallet.clone(),
                reason: "mining payout".into(),
                metadata: None,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .transaction
        .unwrap();
    let allocation = mint.allocation.clone().unwrap();
    assert_eq!(allocation.policy_version, 1);
    // 70 / 11 / 5 % rounded down to the micro-AZR; circulation takes the rest.
    assert_eq!(allocation.treasury.unwrap().value, "70.000002");
    assert_eq!(allocation.founder.unwrap().value, "11.000000");
    assert_eq!(allocation.burn.unwrap().value, "5.000000");
    assert_eq!(allocation.circulation.unwrap().value, "14.000001");
    assert_eq!(mint.amount_azr, mint.amount_usd);
    assert_eq!(mint.status, pb::TransactionStatus::Confirmed as i32);
    assert_eq!(app.available(&wallet).await, "14.000001");

    // Without a wallet the circulation share stays in the circulation pool.
    treasury
        .mint(authed(
            &app.admin_key,
            pb::MintRequest {
                request_id: request_id(),
                amount: azr("10"),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let summary = app.summary().await;
    assert_eq!(summary.total_minted.unwrap().value, "110.000003");
    assert_eq!(summary.total_burned.unwrap().value, "5.500000");
    assert_eq!(summary.total_supply.unwrap().value, "104.500003");
    assert_eq!(summary.treasury_reserve.unwrap().value, "77.000002");
    assert_eq!(summary.founder_pool.unwrap().value, "12.100000");
    assert_eq!(summary.circulation_pool.unwrap().value, "1.400000");
    assert_eq!(summary.held_in_wallets.unwrap().value, "14.000001");
    assert_eq!(summary.circulating_supply.unwrap().value, "15.400001");
    let mints = summary
        .by_type
        .iter()
        .find(|t| t.r#type == pb::TransactionType::Mint as i32)
        .unwrap();
    assert_eq!(mints.confirmed_count, 2);
    assert_eq!(mints.confirmed_volume.clone().unwrap().value, "110.000003");

    // Burning from the reserve reduces supply.
    treasury
        .burn(authed(
            &app.admin_key,
            pb::BurnRequest {
                request_id: request_id(),
                amount: azr("7"),
                from_system_account: pb::SystemAccount::TreasuryReserve as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let summary = app.summary().await;
    assert_eq!(summary.total_supply.unwrap().value, "97.500003");
    assert_eq!(summary.treasury_reserve.unwrap().value, "70.000002");
    assert_books_balance(&app).await;
}

async fn a_transfer_moves_money_and_one_larger_than_the_balance_is_rejected(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, alice, from) = app.member_with_wallet("alice").await;
    let (_, _, to) = app.member_with_wallet("bob").await;
    app.fund(&from, "50").await;
    let mut treasury = app.treasury().await;
    let transfer = |amount: &str, id: String| {
        authed(
            &alice,
            pb::TransferRequest {
                request_id: id,
                from_wallet_id: from.clone(),
                to_wallet_id: to.clone(),
                amount: azr(amount),
                reason: "rent".into(),
                metadata: None,
            },
        )
    };
    let done = treasury
        .transfer(transfer("20.5", request_id()))
        .await
        .unwrap()
        .into_inner()
        .transaction
        .unwrap();
    assert_eq!(done.r#type, pb::TransactionType::Transfer as i32);
    assert_eq!(done.from_wallet_id, from);
    assert_eq!(done.to_wallet_id, to);
    assert_eq!(app.available(&from).await, "29.500000");
    assert_eq!(app.available(&to).await, "20.500000");

    let too_much = treasury
        .transfer(transfer("29.500001", request_id()))
        .await
        .unwrap_err();
    assert_eq!(too_much.code(), Code::FailedPrecondition);
    assert_eq!(
        tonic_types::StatusExt::get_details_error_info(&too_much)
            .unwrap()
            .reason,
        "INSUFFICIENT_FUNDS"
    );
    assert_eq!(app.available(&from).await, "29.500000");
    assert_eq!(app.available(&to).await, "20.500000");
    treasury
        .transfer(transfer("29.5", request_id()))
        .await
        .expect("the whole balance may move");
    assert_eq!(app.available(&from).await, "0.000000");
    assert_books_balance(&app).await;
}

async fn bad_input_gets_a_clear_error_and_writes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, alice, from) = app.member_with_wallet("alice").await;
    let (_, _, other) = app.member_with_wallet("bob").await;
    app.fund(&from, "10").await;
    app.fund(&other, "10").await;
    let before = app.summary().await;
    let mut treasury = app.treasury().await;
    let transfer = |from: &str, to: &str, amount: Option<&str>| {
        authed(
            &alice,
            pb::TransferRequest {
                request_id: request_id(),
                from_wallet_id: from.into(),
                to_wallet_id: to.into(),
                amount: amount.and_then(azr),
                ..Default::default()
            },
        )
    };
    let long = "9".repeat(400);
    let amounts: Vec<Option<&str>> = vec![
        None,
        Some(""),
        Some("-1"),
        Some("0"),
        Some("0.000000"),
        Some("NaN"),
        Some("1e400"),
        Some("1,5"),
        Some("1.0000001"),
        Some("1000000000.000001"),
        Some(" 1"),
        Some("+1"),
        Some(&long),
    ];
    for amount in amounts {
        let status = treasury
            .transfer(transfer(&from, &other, amount))
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&status), ["amount"], "{amount:?}");
    }
    let same = treasury
        .transfer(transfer(&from, &from, Some("1")))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&same), ["to_wallet_id"]);
    let malformed = treasury
        .transfer(transfer("nope", &other, Some("1")))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&malformed), ["from_wallet_id"]);
    let unknown_destination = treasury
        .transfer(transfer(
            &from,
            &uuid::Uuid::now_v7().to_string(),
            Some("1"),
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown_destination.code(), Code::NotFound);
    let unknown_source = treasury
        .transfer(transfer(
            &uuid::Uuid::now_v7().to_string(),
            &other,
            Some("1"),
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown_source.code(), Code::PermissionDenied);
    let foreign = treasury
        .transfer(transfer(&other, &from, Some("1")))
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), Code::PermissionDenied);
    let insufficient = treasury
        .transfer(transfer(&from, &other, Some("10.000001")))
        .await
        .unwrap_err();
    assert_eq!(insufficient.code(), Code::FailedPrecondition);
    let no_request_id = treasury
        .transfer(authed(
            &alice,
            pb::TransferRequest {
                request_id: String::new(),
                from_wallet_id: from.clone(),
                to_wallet_id: other.clone(),
                amount: azr("1"),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&no_request_id), ["request_id"]);

    let after = app.summary().await;
    assert_eq!(before, after, "rejected requests wrote nothing");
    assert_eq!(app.available(&from).await, "10.000000");
    assert_eq!(app.available(&other).await, "10.000000");
    assert_books_balance(&app).await;
}

async fn a_retried_request_returns_the_original_and_changes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, alice, from) = app.member_with_wallet("alice").await;
    let (_, _, to) = app.member_with_wallet("bob").await;
    app.fund(&from, "5").await;
    let mut treasury = app.treasury().await;
    let transfer = |id: &str, amount: &str| {
        authed(
            &alice,
            pb::TransferRequest {
                request_id: id.into(),
                from_wallet_id: from.clone(),
                to_wallet_id: to.clone(),
                amount: azr(amount),
                ..Default::default()
            },
        )
    };
    let first = treasury
        .transfer(transfer("pay-1", "2"))
        .await
        .unwrap()
        .into_inner()
        .transaction
        .unwrap();
    let again = treasury
        .transfer(transfer("pay-1", "2"))
        .await
        .unwrap()
        .into_inner()
        .transaction
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(app.available(&from).await, "3.000000");
    let different = treasury.transfer(transfer("pay-1", "3")).await.unwrap_err();
    assert_eq!(violated_fields(&different), ["request_id"]);

    // A rejected request does not use up its id.
    let rejected = treasury.transfer(transfer("pay-2", "4")).await.unwrap_err();
    assert_eq!(rejected.code(), Code::FailedPrecondition);
    app.fund(&from, "1").await;
    treasury
        .transfer(transfer("pay-2", "4"))
        .await
        .expect("the id is still free");
    assert_eq!(app.available(&from).await, "0.000000");
    assert_eq!(app.available(&to).await, "6.000000");
    assert_books_balance(&app).await;
}

async fn the_same_request_id_sent_ten_times_concurrently_has_one_effect(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, alice, from) = app.member_with_wallet("alice").await;
    let (_, _, to) = app.member_with_wallet("bob").await;
    app.fund(&from, "100").await;
    let mut tasks = JoinSet::new();
    for _ in 0..10 {
        let mut treasury = app.treasury().await;
        let request = authed(
            &alice,
            pb::TransferRequest {
                request_id: "once".into(),
                from_wallet_id: from.clone(),
                to_wallet_id: to.clone(),
                amount: azr("7"),
                ..Default::default()
            },
        );
        tasks.spawn(async move {
            treasury
                .transfer(request)
                .await
                .map(|r| r.into_inner().transaction.unwrap().id)
        });
    }
    let ids: HashSet<String> = tasks
        .join_all()
        .await
        .into_iter()
        .map(|result| result.expect("every retry succeeds"))
        .collect();
    assert_eq!(ids.len(), 1, "all ten got the same transaction");
    assert_eq!(app.available(&from).await, "93.000000");
    assert_eq!(app.available(&to).await, "7.000000");
    assert_books_balance(&app).await;
}

async fn thirty_two_clients_on_hot_wallets_conserve_every_micro_azr(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut wallets = Vec::new();
    for index in 0..5 {
        let (_, key, wallet) = app.member_with_wallet(&format!("hot{index}")).await;
        app.fund(&wallet, "1000").await;
        wallets.push((key, wallet));
    }
    let mut tasks = JoinSet::new();
    for client in 0..32usize {
        let channel = app.channel().await;
        let wallets = wallets.clone();
        tasks.spawn(async move {
            let mut treasury = pb::treasury_service_client::TreasuryServiceClient::new(channel);
            let mut outcomes = (0, 0);
            for round in 0..25usize {
                // Opposing pairs: client 2k sends a→b while 2k+1 sends b→a.
                let a = (client / 2 + round) % wallets.len();
                let b = (a + 1 + round % (wallets.len() - 1)) % wallets.len();
                let (from, to) = if client % 2 == 0 { (a, b) } else { (b, a) };
                let amount = format!(
                    "{}.{:06}",
                    (client * 7 + round * 13) % 300,
                    (client * 31 + round) % 1_000_000
                );
                let result = treasury
                    .transfer(authed(
                        &wallets[from].0,
                        pb::TransferRequest {
                            request_id: uuid::Uuid::new_v4().to_string(),
                            from_wallet_id: wallets[from].1.clone(),
                            to_wallet_id: wallets[to].1.clone(),
                            amount: azr(&amount),
                            ..Default::default()
                        },
                    ))
                    .await;
                match result {
                    Ok(_) => outcomes.0 += 1,
                    Err(status) if status.code() == Code::FailedPrecondition => outcomes.1 += 1,
                    Err(status)
                        if status.code() == Code::InvalidArgument
                            && amount.starts_with("0.000000") => {}
                    Err(status) => panic!("a client saw {status:?}"),
                }
            }
            outcomes
        });
    }
    let outcomes = tasks.join_all().await;
    let succeeded: usize = outcomes.iter().map(|o| o.0).sum();
    assert!(
        succeeded > 400,
        "most transfers succeed ({succeeded} of 800)"
    );
    let mut total = 0;
    for (_, wallet) in &wallets {
        total += micros(&app.available(wallet).await);
    }
    assert_eq!(total, 5_000 * 1_000_000, "conservation, to the micro-AZR");
    assert_books_balance(&app).await;
}

async fn fifty_concurrent_transfers_of_the_whole_balance_let_exactly_one_through(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, alice, from) = app.member_with_wallet("alice").await;
    let (_, _, to) = app.member_with_wallet("bob").await;
    app.fund(&from, "123.456789").await;
    let mut tasks = JoinSet::new();
    for _ in 0..50 {
        let mut treasury = app.treasury().await;
        let request = authed(
            &alice,
            pb::TransferRequest {
                request_id: request_id(),
                from_wallet_id: from.clone(),
                to_wallet_id: to.clone(),
                amount: azr("123.456789"),
                ..Default::default()
            },
        );
        tasks.spawn(async move {
            treasury
                .transfer(request)
                .await
                .map_err(|status| status.code())
        });
    }
    let results = tasks.join_all().await;
    assert_eq!(results.iter().filter(|result| result.is_ok()).count(), 1);
    assert!(
        results
            .iter()
            .filter_map(|result| result.as_ref().err())
            .all(|code| *code == Code::FailedPrecondition)
    );
    assert_eq!(app.available(&from).await, "0.000000");
    assert_eq!(app.available(&to).await, "123.456789");
    assert_books_balance(&app).await;
}

async fn withdrawals_hold_then_post_or_release_and_resolve_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, alice, wallet) = app.member_with_wallet("alice").await;
    app.fund(&wallet, "100").await;
    let mut treasury = app.treasury().await;
    let withdraw = |amount: &str| {
        authed(
            &alice,
            pb::WithdrawRequest {
                request_id: request_id(),
                from_wallet_id: wallet.clone(),
                amount: azr(amount),
                destination_address: "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed".into(),
                ..Default::default()
            },
        )
    };
    let first = treasury
        .withdraw(withdraw("30"))
        .await
        .unwrap()
        .into_inner()
        .transaction
        .unwrap();
    assert_eq!(first.status, pb::TransactionStatus::Pending as i32);
    assert_eq!(
        first.destination_address,
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    );
    let held = app.balance(&wallet).await;
    assert_eq!(
        (held.available.unwrap().value, held.pending.unwrap().value),
        ("70.000000".into(), "30.000000".into())
    );
    assert_eq!(held.total.unwrap().value, "100.000000");

    let confirm = |id: &str| {
        authed(
            &app.admin_key,
            pb::ConfirmTransactionRequest {
                request_id: request_id(),
                transaction_id: id.into(),
                gas_used: 21_000,
                gas_price_wei: "30000000000".into(),
                confirm_time: None,
                ..Default::default()
            },
        )
    };
    let fail = |id: &str| {
        authed(
            &app.admin_key,
            pb::FailTransactionRequest {
                request_id: request_id(),
                transaction_id: id.into(),
                reason: "chain rejected it".into(),
            },
        )
    };
    let member_confirm = treasury
        .confirm_transaction(authed(
            &alice,
            pb::ConfirmTransactionRequest {
                request_id: request_id(),
                transaction_id: first.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(member_confirm.code(), Code::PermissionDenied);
    let confirmed = treasury
        .confirm_transaction(confirm(&first.id))
        .await
        .unwrap()
        .into_inner()
        .transaction
        .unwrap();
    assert_eq!(confirmed.status, pb::TransactionStatus::Confirmed as i32);
    assert_eq!(
        (confirmed.gas_used, confirmed.gas_price_wei.as_str()),
        (21_000, "30000000000")
    );
    assert!(confirmed.confirm_time.is_some() && confirmed.process_time.is_some());
    let after = app.balance(&wallet).await;
    assert_eq!(
        (after.available.unwrap().value, after.pending.unwrap().value),
        ("70.000000".into(), "0.000000".into())
    );
    for status in [
        treasury
            .confirm_transaction(confirm(&first.id))
            .await
            .unwrap_err(),
        treasury
            .fail_transaction(fail(&first.id))
            .await
            .unwrap_err(),
    ] {
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    }

    let second = treasury
        .withdraw(withdraw("70"))
        .await
        .unwrap()
        .into_inner()
        .transaction
        .unwrap();
    let over = treasury.withdraw(withdraw("0.000001")).await.unwrap_err();
    assert_eq!(
        over.code(),
        Code::FailedPrecondition,
        "held funds are not available"
    );
    let failed = treasury
        .fail_transaction(fail(&second.id))
        .await
        .unwrap()
        .into_inner()
        .transaction
        .unwrap();
    assert_eq!(failed.status, pb::TransactionStatus::Failed as i32);
    assert_eq!(failed.reason, "chain rejected it");
    assert_eq!(
        app.available(&wallet).await,
        "70.000000",
        "the hold is released"
    );
    assert_eq!(
        treasury
            .confirm_transaction(confirm(&second.id))
            .await
            .unwrap_err()
            .code(),
        Code::FailedPrecondition
    );
    let missing = treasury
        .confirm_transaction(confirm(&uuid::Uuid::now_v7().to_string()))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    let summary = app.summary().await;
    assert_eq!(
        summary.net_bridged.unwrap().value,
        "70.000000",
        "100 in, 30 out"
    );
    assert_eq!(summary.total_supply.unwrap().value, "70.000000");
    assert_books_balance(&app).await;
}

async fn pending_deposits_credit_only_when_confirmed_and_chain_hashes_are_unique(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, _, wallet) = app.member_with_wallet("alice").await;
    let mut treasury = app.treasury().await;
    let hash = format!("0x{}", "ab".repeat(32));
    let deposit = |hash: &str, pending: bool| {
        authed(
            &app.admin_key,
            pb::DepositRequest {
                request_id: request_id(),
                to_wallet_id: wallet.clone(),
                amount: azr("12.5"),
                tx_hash: hash.into(),
                pending,
                ..Default::default()
            },
        )
    };
    let pending = treasury
        .deposit(deposit(&hash, true))
        .await
        .unwrap()
        .into_inner()
        .transaction
        .unwrap();
    assert_eq!(pending.status, pb::TransactionStatus::Pending as i32);
    assert_eq!(pending.tx_hash, hash);
    assert_eq!(app.available(&wallet).await, "0.000000");
    let duplicate = treasury
        .deposit(deposit(&hash.to_uppercase().replace("0X", "0x"), false))
        .await
        .unwrap_err();
    assert_eq!(
        duplicate.code(),
        Code::AlreadyExists,
        "a chain deposit is credited once"
    );
    let bad_hash = treasury
        .deposit(deposit("0x1234", false))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad_hash), ["tx_hash"]);

    treasury
        .confirm_transaction(authed(
            &app.admin_key,
            pb::ConfirmTransactionRequest {
                request_id: request_id(),
                transaction_id: pending.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    assert_eq!(app.available(&wallet).await, "12.500000");
    assert_books_balance(&app).await;
}

async fn balances_as_of_a_past_time_come_from_the_entries(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, alice, wallet) = app.member_with_wallet("alice").await;
    let (_, _, other) = app.member_with_wallet("bob").await;
    let funded = app.fund(&wallet, "40").await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let between = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    app.treasury()
        .await
        .transfer(authed(
            &alice,
            pb::TransferRequest {
                request_id: request_id(),
                from_wallet_id: wallet.clone(),
                to_wallet_id: other.clone(),
                amount: azr("15"),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let as_of = |at: chrono::DateTime<chrono::Utc>| {
        authed(
            &alice,
            pb::GetBalanceRequest {
                wallet_id: wallet.clone(),
                as_of_time: Some(prost_types::Timestamp {
                    seconds: at.timestamp(),
                    nanos: at.timestamp_subsec_nanos() as i32,
                }),
            },
        )
    };
    let mut treasury = app.treasury().await;
    let then = treasury
        .get_balance(as_of(between))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(then.available.unwrap().value, "40.000000");
    let now = treasury
        .get_balance(as_of(chrono::Utc::now()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now.available.unwrap().value, "25.000000");
    let created = funded.create_time.unwrap();
    let before = chrono::DateTime::from_timestamp(created.seconds - 3600, 0).unwrap();
    let uncovered = treasury.get_balance(as_of(before)).await.unwrap_err();
    assert_eq!(uncovered.code(), Code::OutOfRange, "not an empty answer");
    let future = treasury
        .get_balance(as_of(chrono::Utc::now() + chrono::Duration::hours(1)))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&future), ["as_of_time"]);
}

async fn each_role_moves_and_reads_only_what_it_may(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, alice, mine) = app.member_with_wallet("alice").await;
    let (bob_id, bob, theirs) = app.member_with_wallet("bob").await;
    let (_, auditor) = app.user_with_role("auditor", ipb::Role::Auditor).await;
    let (treasurer_id, treasurer) = app.user_with_role("treasurer", ipb::Role::Treasurer).await;
    let service = app
        .identity()
        .await
        .create_api_key(authed(
            &bob,
            ipb::CreateApiKeyRequest {
                user_id: bob_id.clone(),
                role: ipb::Role::Service as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .secret;
    let mut treasury = app.treasury().await;
    let mint = |key: &str| {
        authed(
            key,
            pb::MintRequest {
                request_id: request_id(),
                amount: azr("100"),
                to_wallet_id: theirs.clone(),
                ..Default::default()
            },
        )
    };
    for (name, key) in [
        ("member", &alice),
        ("auditor", &auditor),
        ("service", &service),
    ] {
        assert_eq!(
            treasury.mint(mint(key)).await.unwrap_err().code(),
            Code::PermissionDenied,
            "{name} minting"
        );
    }
    treasury
        .mint(mint(&treasurer))
        .await
        .expect("treasurers mint");
    let _ = treasurer_id;

    // A service key moves its user's money; nobody moves another's.
    let transfer = |key: &str, from: &str, to: &str| {
        authed(
            key,
            pb::TransferRequest {
                request_id: request_id(),
                from_wallet_id: from.into(),
                to_wallet_id: to.into(),
                amount: azr("1"),
                ..Default::default()
            },
        )
    };
    let moved = treasury
        .transfer(transfer(&service, &theirs, &mine))
        .await
        .unwrap()
        .into_inner()
        .transaction
        .unwrap();
    for (name, key) in [
        ("member", &alice),
        ("admin", &app.admin_key),
        ("auditor", &auditor),
    ] {
        let status = treasury
            .transfer(transfer(key, &theirs, &mine))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "{name} moving bob's money"
        );
    }

    // Reads: members see their own wallets' balances and transactions.
    let balance = |key: &str, wallet: &str| {
        authed(
            key,
            pb::GetBalanceRequest {
                wallet_id: wallet.into(),
                as_of_time: None,
            },
        )
    };
    treasury
        .get_balance(balance(&alice, &mine))
        .await
        .expect("own balance");
    assert_eq!(
        treasury
            .get_balance(balance(&alice, &theirs))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let missing = uuid::Uuid::now_v7().to_string();
    assert_eq!(
        treasury
            .get_balance(balance(&alice, &missing))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        treasury
            .get_balance(balance(&auditor, &missing))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    treasury
        .get_balance(balance(&auditor, &theirs))
        .await
        .expect("auditors read everything");
    let get = |key: &str, id: &str| {
        authed(
            key,
            pb::GetTransactionRequest {
                transaction_id: id.into(),
            },
        )
    };
    treasury
        .get_transaction(get(&alice, &moved.id))
        .await
        .expect("alice received it");
    let mint_id = treasury
        .list_transactions(authed(
            &auditor,
            pb::ListTransactionsRequest {
                r#type: pb::TransactionType::Mint as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .transactions[0]
        .id
        .clone();
    assert_eq!(
        treasury
            .get_transaction(get(&alice, &mint_id))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let alices = treasury
        .list_transactions(authed(&alice, pb::ListTransactionsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .transactions;
    assert_eq!(
        alices.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        [moved.id.as_str()]
    );
    let foreign_list = treasury
        .list_transactions(authed(
            &alice,
            pb::ListTransactionsRequest {
                wallet_id: theirs.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(foreign_list.code(), Code::PermissionDenied);
    assert_eq!(
        treasury
            .get_treasury_summary(authed(&alice, pb::GetTreasurySummaryRequest {}))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    treasury
        .get_treasury_summary(authed(&auditor, pb::GetTreasurySummaryRequest {}))
        .await
        .expect("auditors see the summary");
}

async fn transactions_list_newest_first_with_filters_and_pages(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, alice, wallet) = app.member_with_wallet("alice").await;
    let (_, _, other) = app.member_with_wallet("bob").await;
    let mut ids = vec![app.fund(&wallet, "100").await.id];
    let mut treasury = app.treasury().await;
    for _ in 0..11 {
        let transfer = treasury
            .transfer(authed(
                &alice,
                pb::TransferRequest {
                    request_id: request_id(),
                    from_wallet_id: wallet.clone(),
                    to_wallet_id: other.clone(),
                    amount: azr("1"),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .transaction
            .unwrap();
        ids.push(transfer.id);
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = treasury
            .list_transactions(authed(
                &alice,
                pb::ListTransactionsRequest {
                    page_size: 5,
                    page_token: token.clone(),
                    wallet_id: wallet.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.transactions.into_iter().map(|t| t.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ids, "newest first, every transaction once");
    let deposits = treasury
        .list_transactions(authed(
            &app.admin_key,
            pb::ListTransactionsRequest {
                r#type: pb::TransactionType::Deposit as i32,
                status: pb::TransactionStatus::Confirmed as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .transactions;
    assert_eq!(deposits.len(), 1);
    let future = chrono::Utc::now() + chrono::Duration::hours(1);
    let none = treasury
        .list_transactions(authed(
            &app.admin_key,
            pb::ListTransactionsRequest {
                start_time: Some(prost_types::Timestamp {
                    seconds: future.timestamp(),
                    nanos: 0,
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .transactions;
    assert!(none.is_empty());
}

async fn the_database_itself_refuses_to_break_the_invariants(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, _, wallet) = app.member_with_wallet("alice").await;
    app.fund(&wallet, "10").await;
    let id_literal = |db: &sea_orm::DatabaseConnection| match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => format!("'{}'", uuid::Uuid::now_v7()),
        _ => format!("X'{}'", uuid::Uuid::now_v7().simple()),
    };
    let admin = match backend {
        Backend::Postgres => format!("'{}'", app.admin_id),
        Backend::Sqlite => format!("X'{}'", app.admin_id.replace('-', "")),
    };
    let insert = |kind: &str, azr_micros: i64, usd_micros: i64, allocation: &str| {
        format!(
            "INSERT INTO ledger_transactions (id, kind, status, tx_hash, amount_azr_micros, amount_usd_micros, \
             allocation_policy_version, alloc_treasury_micros, alloc_founder_micros, alloc_burn_micros, alloc_circulation_micros, \
             request_id, requested_by, created_at, processed_at) \
             VALUES ({}, '{kind}', 'confirmed', '{}', {azr_micros}, {usd_micros}, {allocation}, 'x', {admin}, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
            id_literal(&app.db),
            uuid::Uuid::new_v4()
        )
    };
    let broken_peg = insert("mint", 100, 101, "1, 70, 11, 5, 14");
    let broken_allocation = insert("mint", 100, 100, "1, 70, 11, 5, 15");
    let allocation_on_transfer = insert("transfer", 100, 100, "1, 70, 11, 5, 14");
    let negative_wallet =
        "UPDATE wallets SET available_micros = available_micros - 10000001".to_owned();
    let negative_reserve =
        "UPDATE system_accounts SET balance_micros = -1 WHERE code = 'treasury_reserve'".to_owned();
    let bad_policy = "INSERT INTO allocation_policies (version, treasury_bp, founder_bp, burn_bp, circulation_bp) VALUES (9, 7000, 1100, 500, 2390)".to_owned();
    for (what, sql) in [
        ("the peg", broken_peg),
        ("the allocation sum", broken_allocation),
        ("allocations only on mints", allocation_on_transfer),
        ("no negative wallet", negative_wallet),
        ("no negative holding account", negative_reserve),
        ("policies sum to 100 %", bad_policy),
    ] {
        assert!(
            app.db.execute_unprepared(&sql).await.is_err(),
            "the database accepted a broken {what}"
        );
    }
    assert_eq!(app.available(&wallet).await, "10.000000");
    assert_books_balance(&app).await;
}

/// What migration 000017 changed on PostgreSQL holds on both backends: a
/// balance the ledger moves still moves the wallet's `updated_at` (the
/// ledger sets it; the trigger covers every other update), and the unique
/// columns most transactions leave empty still refuse a second equal value.
async fn the_ledger_touches_the_wallets_it_moves_and_set_unique_columns_stay_unique(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let (_, _, wallet) = app.member_with_wallet("alice").await;
    let wallet_literal = match backend {
        Backend::Postgres => format!("'{wallet}'"),
        Backend::Sqlite => format!("X'{}'", wallet.replace('-', "")),
    };
    let updated_at = || async {
        let row = app
            .db
            .query_one_raw(sea_orm::Statement::from_string(
                app.db.get_database_backend(),
                format!("SELECT CAST(updated_at AS TEXT) FROM wallets WHERE id = {wallet_literal}"),
            ))
            .await
            .unwrap()
            .expect("the wallet");
        row.try_get_by_index::<String>(0).unwrap()
    };
    let before = updated_at().await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    app.fund(&wallet, "5").await;
    let after = updated_at().await;
    assert_ne!(
        before, after,
        "a ledger write moves the wallet's updated_at"
    );

    app.mint("1").await;
    app.mint("2").await;
    let duplicate =
        "UPDATE ledger_transactions SET backing_reference = 'one-inflow' WHERE kind = 'mint'";
    assert!(
        app.db.execute_unprepared(duplicate).await.is_err(),
        "two mints were given the same backing reference"
    );
    let single = "UPDATE ledger_transactions SET backing_reference = 'one-inflow' \
                  WHERE id = (SELECT id FROM ledger_transactions WHERE kind = 'mint' ORDER BY id DESC LIMIT 1)";
    app.db
        .execute_unprepared(single)
        .await
        .expect("one mint may carry it");
    assert_books_balance(&app).await;
}
