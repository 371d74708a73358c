//! BillingService over a real gRPC channel, on PostgreSQL and SQLite:
//! monthly invoices, paying them through the ledger once, balances read from
//! the ledger, authorization, and supply conserved under a mixed workload of
//! every money-moving service.

use std::time::Duration;

use crate::common::money::{assert_books_balance, audited_calls, azr, micros};
use crate::common::{Backend, TestApp, authed, timestamp, violated_fields};
use azora::proto::identity as ipb;
use azora::proto::treasury as pb;
use azora::proto::treasury::billing_service_client::BillingServiceClient;
use azora::proto::treasury::founder_compensation_service_client::FounderCompensationServiceClient;
use azora::proto::treasury::knowledge_reward_service_client::KnowledgeRewardServiceClient;
use azora::proto::types::Decimal;
use chrono::{Months, Utc};
use tokio::task::JoinSet;
use tonic::Code;
use tonic::transport::Channel;

on_both_backends!(
    a_backdated_subscription_invoices_each_month_and_paying_moves_money_to_the_reserve,
    an_invoice_the_wallet_cannot_cover_stays_open_and_nothing_moves,
    ten_concurrent_payments_of_one_invoice_pay_once,
    the_issuer_invoices_a_period_when_it_begins_and_not_after_cancelling,
    members_bill_only_themselves_and_pay_only_from_their_own_wallets,
    a_mixed_workload_of_every_money_moving_service_conserves_supply,
);

async fn client(app: &TestApp) -> BillingServiceClient<Channel> {
    BillingServiceClient::new(app.channel().await)
}

async fn subscribe(
    app: &TestApp,
    key: &str,
    user: &str,
    tier: pb::SubscriptionTier,
    start: Option<chrono::DateTime<Utc>>,
) -> Result<pb::CreateSubscriptionResponse, tonic::Status> {
    client(app)
        .await
        .create_subscription(authed(
            key,
            pb::CreateSubscriptionRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                user_id: user.into(),
                tier: tier as i32,
                currency: pb::Currency::Usd as i32,
                start_time: start.map(timestamp),
            },
        ))
        .await
        .map(|response| response.into_inner())
}

async fn pay(
    app: &TestApp,
    key: &str,
    invoice: &str,
    wallet: &str,
) -> Result<pb::Invoice, tonic::Status> {
    client(app)
        .await
        .pay_invoice(authed(
            key,
            pb::PayInvoiceRequest {
                invoice_id: invoice.into(),
                wallet_id: wallet.into(),
                ..Default::default()
            },
        ))
        .await
        .map(|response| response.into_inner().invoice.unwrap())
}

async fn invoices(
    app: &TestApp,
    key: &str,
    filter: pb::ListInvoicesRequest,
) -> Result<Vec<pb::Invoice>, tonic::Status> {
    client(app)
        .await
        .list_invoices(authed(key, filter))
        .await
        .map(|response| response.into_inner().invoices)
}

async fn balances(
    app: &TestApp,
    key: &str,
    user: &str,
) -> Result<pb::GetUserBalancesResponse, tonic::Status> {
    client(app)
        .await
        .get_user_balances(authed(
            key,
            pb::GetUserBalancesRequest {
                user_id: user.into(),
            },
        ))
        .await
        .map(|response| response.into_inner())
}

fn value(decimal: &Option<Decimal>) -> String {
    decimal.as_ref().unwrap().value.clone()
}

async fn a_backdated_subscription_invoices_each_month_and_paying_moves_money_to_the_reserve(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let (user, key, wallet) = app.member_with_wallet("sam").await;
    let second_wallet = app.wallet_for(&user).await;
    app.fund(&wallet, "25").await;
    app.fund(&second_wallet, "1.5").await;
    let reserve_before = micros(&app.pool(pb::SystemAccount::TreasuryReserve).await);

    // Started two months and a day ago: three periods have begun.
    let start = Utc::now().checked_sub_months(Months::new(2)).unwrap() - chrono::Duration::days(1);
    let created = subscribe(
        &app,
        &app.admin_key,
        &user,
        pb::SubscriptionTier::Basic,
        Some(start),
    )
    .await
    .unwrap();
    let subscription = created.subscription.unwrap();
    assert_eq!(subscription.status, pb::SubscriptionStatus::Active as i32);
    assert_eq!(value(&subscription.price), "9.990000");
    assert_eq!(created.invoices.len(), 3);
    let mut periods: Vec<_> = created
        .invoices
        .iter()
        .map(|i| {
            (
                i.period_start.unwrap().seconds,
                i.period_end.unwrap().seconds,
            )
        })
        .collect();
    periods.sort();
    assert_eq!(periods[0].0, start.timestamp());
    assert_eq!(periods[0].1, periods[1].0, "periods are contiguous");
    assert_eq!(periods[1].1, periods[2].0);
    assert_eq!(
        subscription.current_period_start.unwrap().seconds,
        periods[2].0
    );
    assert_eq!(
        subscription.current_period_end.unwrap().seconds,
        periods[2].1
    );
    let mut listed = invoices(&app, &key, pb::ListInvoicesRequest::default())
        .await
        .unwrap();
    assert_eq!(listed.len(), 3);
    listed.sort_by_key(|invoice| invoice.period_start.unwrap().seconds);
    assert!(
        listed[0].overdue && listed[1].overdue,
        "due 14 days after their periods began"
    );
    assert!(!listed[2].overdue);
    assert!(
        listed
            .iter()
            .all(|i| value(&i.amount) == "9.990000" && i.currency == pb::Currency::Usd as i32)
    );

    let owed = balances(&app, &key, "").await.unwrap();
    assert_eq!(owed.open_invoice_count, 3);
    assert_eq!(value(&owed.open_invoice_total), "29.970000");
    assert_eq!(owed.wallet_count, 2);
    let azr_balance = owed
        .balances
        .iter()
        .find(|b| b.currency == pb::Currency::Azr as i32)
        .unwrap();
    let usd_balance = owed
        .balances
        .iter()
        .find(|b| b.currency == pb::Currency::Usd as i32)
        .unwrap();
    assert_eq!(value(&azr_balance.available), "26.500000");
    assert_eq!(value(&usd_balance.total), "26.500000");

    let paid = pay(&app, &key, &listed[0].id, &wallet).await.unwrap();
    assert_eq!(paid.status, pb::InvoiceStatus::Paid as i32);
    assert!(!paid.overdue && paid.paid_time.is_some());
    assert_eq!(paid.wallet_id, wallet);
    assert_eq!(app.available(&wallet).await, "15.010000");
    assert_eq!(
        micros(&app.pool(pb::SystemAccount::TreasuryReserve).await) - reserve_before,
        9_990_000
    );
    let transfer = app
        .treasury()
        .await
        .get_transaction(authed(
            &app.admin_key,
            pb::GetTransactionRequest {
                transaction_id: paid.transaction_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .transaction
        .unwrap();
    assert_eq!(transfer.from_wallet_id, wallet);
    assert_eq!(
        transfer.to_system_account,
        pb::SystemAccount::TreasuryReserve as i32
    );
    // Paying a paid invoice, even from another wallet, pays nothing.
    assert_eq!(
        pay(&app, &key, &listed[0].id, &second_wallet)
            .await
            .unwrap(),
        paid
    );
    assert_eq!(app.available(&wallet).await, "15.010000");
    assert_eq!(app.available(&second_wallet).await, "1.500000");
    let after = balances(&app, &app.admin_key, &user).await.unwrap();
    assert_eq!(after.open_invoice_count, 2);
    assert_eq!(value(&after.open_invoice_total), "19.980000");
    let open = invoices(
        &app,
        &key,
        pb::ListInvoicesRequest {
            status: pb::InvoiceStatus::Open as i32,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(open.len(), 2);
    assert_books_balance(&app).await;
    assert_eq!(
        audited_calls(&app, "invoice").await,
        [
            ("PayInvoice".to_owned(), user.clone()),
            ("PayInvoice".to_owned(), user.clone())
        ]
    );
    assert_eq!(
        audited_calls(&app, "subscription").await,
        [("CreateSubscription".to_owned(), app.admin_id.clone())]
    );
    // The database keeps a paid invoice as it is.
    let paid_id = match backend {
        Backend::Postgres => format!("'{}'", paid.id),
        Backend::Sqlite => format!("x'{}'", paid.id.replace('-', "")),
    };
    for statement in [
        format!("UPDATE invoices SET status = 'open' WHERE id = {paid_id}"),
        format!("UPDATE invoices SET amount_micros = 1 WHERE id = {paid_id}"),
        "UPDATE invoices SET status = 'paid' WHERE status = 'open'".to_owned(),
    ] {
        assert!(
            sea_orm::ConnectionTrait::execute_unprepared(&app.db, &statement)
                .await
                .is_err(),
            "the database accepted {statement}"
        );
    }
}

async fn an_invoice_the_wallet_cannot_cover_stays_open_and_nothing_moves(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (user, key, wallet) = app.member_with_wallet("sam").await;
    app.fund(&wallet, "29.989999").await;
    let created = subscribe(&app, &key, &user, pb::SubscriptionTier::Pro, None)
        .await
        .unwrap();
    assert_eq!(created.invoices.len(), 1);
    let invoice = &created.invoices[0];
    assert_eq!(value(&invoice.amount), "29.990000");
    let refused = pay(&app, &key, &invoice.id, &wallet).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert_eq!(app.available(&wallet).await, "29.989999");
    let still = invoices(&app, &key, pb::ListInvoicesRequest::default())
        .await
        .unwrap();
    assert_eq!(still[0].status, pb::InvoiceStatus::Open as i32);
    app.fund(&wallet, "0.000001").await;
    pay(&app, &key, &invoice.id, &wallet).await.unwrap();
    assert_eq!(app.available(&wallet).await, "0.000000");
    assert_books_balance(&app).await;
}

async fn ten_concurrent_payments_of_one_invoice_pay_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (user, key, wallet) = app.member_with_wallet("sam").await;
    app.fund(&wallet, "1000").await;
    let created = subscribe(&app, &key, &user, pb::SubscriptionTier::Enterprise, None)
        .await
        .unwrap();
    let invoice = created.invoices[0].id.clone();
    let mut payers = JoinSet::new();
    for _ in 0..10 {
        let channel = app.channel().await;
        let (key, invoice, wallet) = (key.clone(), invoice.clone(), wallet.clone());
        payers.spawn(async move {
            BillingServiceClient::new(channel)
                .pay_invoice(authed(
                    &key,
                    pb::PayInvoiceRequest {
                        invoice_id: invoice,
                        wallet_id: wallet,
                        ..Default::default()
                    },
                ))
                .await
                .map(|response| response.into_inner().invoice.unwrap().transaction_id)
        });
    }
    let mut transactions = std::collections::HashSet::new();
    while let Some(result) = payers.join_next().await {
        transactions.insert(result.unwrap().expect("every retry succeeds"));
    }
    assert_eq!(transactions.len(), 1);
    assert_eq!(app.available(&wallet).await, "900.010000");
    assert_books_balance(&app).await;
}

async fn the_issuer_invoices_a_period_when_it_begins_and_not_after_cancelling(backend: Backend) {
    let app = TestApp::spawn_with(backend, |settings| settings.billing_interval_ms = 100).await;
    let (user, key, _) = app.member_with_wallet("sam").await;
    let (other, other_key, _) = app.member_with_wallet("kim").await;
    // The second period of each begins two seconds from now.
    let start =
        Utc::now().checked_sub_months(Months::new(1)).unwrap() + chrono::Duration::seconds(2);
    let ours = subscribe(
        &app,
        &app.admin_key,
        &user,
        pb::SubscriptionTier::Basic,
        Some(start),
    )
    .await
    .unwrap();
    assert_eq!(ours.invoices.len(), 1);
    let theirs = subscribe(
        &app,
        &app.admin_key,
        &other,
        pb::SubscriptionTier::Basic,
        Some(start),
    )
    .await
    .unwrap();
    let cancelled = client(&app)
        .await
        .cancel_subscription(authed(
            &other_key,
            pb::CancelSubscriptionRequest {
                subscription_id: theirs.subscription.unwrap().id,
                reason: "too expensive".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .subscription
        .unwrap();
    assert_eq!(cancelled.status, pb::SubscriptionStatus::Cancelled as i32);
    assert!(cancelled.cancel_time.is_some());

    let began = std::time::Instant::now();
    let issued = loop {
        let listed = invoices(&app, &key, pb::ListInvoicesRequest::default())
            .await
            .unwrap();
        if listed.len() == 2 {
            break listed;
        }
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "the second invoice never came"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let newest = &issued[0];
    assert_eq!(
        newest.period_start.unwrap().seconds,
        start
            .checked_add_months(Months::new(1))
            .unwrap()
            .timestamp()
    );
    // Several more issuer rounds change nothing: each period is invoiced once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        invoices(&app, &key, pb::ListInvoicesRequest::default())
            .await
            .unwrap()
            .len(),
        2
    );
    // The cancelled subscription got no second invoice; its first stays payable.
    let theirs = invoices(&app, &other_key, pb::ListInvoicesRequest::default())
        .await
        .unwrap();
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].status, pb::InvoiceStatus::Open as i32);
    let subscriptions = client(&app)
        .await
        .list_subscriptions(authed(
            &app.admin_key,
            pb::ListSubscriptionsRequest {
                status: pb::SubscriptionStatus::Active as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .subscriptions;
    assert_eq!(subscriptions.len(), 1);
    assert_eq!(
        subscriptions[0].current_period_start.unwrap().seconds,
        newest.period_start.unwrap().seconds
    );
}

async fn members_bill_only_themselves_and_pay_only_from_their_own_wallets(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (user, key, wallet) = app.member_with_wallet("sam").await;
    let (other, other_key, other_wallet) = app.member_with_wallet("kim").await;
    let (_, auditor) = app.user_with_role("audra", ipb::Role::Auditor).await;
    app.fund(&wallet, "100").await;
    app.fund(&other_wallet, "100").await;

    // Members subscribe themselves, now; not others, and not backdated.
    assert_eq!(
        subscribe(&app, &key, &other, pb::SubscriptionTier::Basic, None)
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let backdated = Utc::now() - chrono::Duration::days(3);
    assert_eq!(
        subscribe(
            &app,
            &key,
            &user,
            pb::SubscriptionTier::Basic,
            Some(backdated)
        )
        .await
        .unwrap_err()
        .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        subscribe(&app, &auditor, &user, pb::SubscriptionTier::Basic, None)
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let future = subscribe(
        &app,
        &app.admin_key,
        &user,
        pb::SubscriptionTier::Basic,
        Some(Utc::now() + chrono::Duration::days(1)),
    )
    .await
    .unwrap_err();
    assert_eq!(violated_fields(&future), ["start_time"]);
    let ancient = subscribe(
        &app,
        &app.admin_key,
        &user,
        pb::SubscriptionTier::Basic,
        Some(Utc::now() - chrono::Duration::days(800)),
    )
    .await
    .unwrap_err();
    assert_eq!(ancient.code(), Code::OutOfRange);
    let mine = subscribe(&app, &key, "", pb::SubscriptionTier::Basic, None)
        .await
        .unwrap();
    let invoice = mine.invoices[0].id.clone();

    // Only the invoice's user pays it, and only from their own wallet.
    assert_eq!(
        pay(&app, &other_key, &invoice, &other_wallet)
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        pay(&app, &app.admin_key, &invoice, &wallet)
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        pay(&app, &key, &invoice, &other_wallet)
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(app.available(&other_wallet).await, "100.000000");
    pay(&app, &key, &invoice, &wallet).await.unwrap();

    // Reading: members their own, staff everyone's.
    assert_eq!(
        invoices(&app, &other_key, pb::ListInvoicesRequest::default())
            .await
            .unwrap()
            .len(),
        0
    );
    let foreign = invoices(
        &app,
        &other_key,
        pb::ListInvoicesRequest {
            user_id: user.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(foreign.code(), Code::PermissionDenied);
    assert_eq!(
        invoices(&app, &auditor, pb::ListInvoicesRequest::default())
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        balances(&app, &other_key, &user).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    assert_eq!(
        balances(&app, &auditor, &user)
            .await
            .unwrap()
            .open_invoice_count,
        0
    );
    let missing = balances(&app, &auditor, &uuid::Uuid::now_v7().to_string())
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    // Cancelling: the subscriber or billing staff, not another member.
    let id = mine.subscription.unwrap().id;
    let cancel = |key: String| {
        let app = &app;
        let id = id.clone();
        async move {
            client(app)
                .await
                .cancel_subscription(authed(
                    &key,
                    pb::CancelSubscriptionRequest {
                        subscription_id: id,
                        reason: String::new(),
                        ..Default::default()
                    },
                ))
                .await
        }
    };
    assert_eq!(
        cancel(other_key.clone()).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let first = cancel(key.clone()).await.unwrap().into_inner();
    assert_eq!(
        cancel(app.admin_key.clone()).await.unwrap().into_inner(),
        first,
        "cancelling twice changes nothing"
    );

    // A retried create returns the original subscription.
    let request = pb::CreateSubscriptionRequest {
        request_id: "signup-1".into(),
        user_id: String::new(),
        tier: pb::SubscriptionTier::Pro as i32,
        currency: pb::Currency::Azr as i32,
        start_time: None,
    };
    let mut billing = client(&app).await;
    let original = billing
        .create_subscription(authed(&key, request.clone()))
        .await
        .unwrap()
        .into_inner();
    let retried = billing
        .create_subscription(authed(&key, request.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(original.subscription, retried.subscription);
    let changed = billing
        .create_subscription(authed(
            &key,
            pb::CreateSubscriptionRequest {
                tier: pb::SubscriptionTier::Basic as i32,
                ..request
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&changed), ["request_id"]);
    let bad = billing
        .create_subscription(authed(&key, pb::CreateSubscriptionRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad), ["request_id", "tier", "currency"]);
}

/// Transfers, founder pay, rewards and invoice payments all at once, from
/// many clients: afterwards the books balance to the micro-AZR and each
/// pool holds exactly what went in less what went out.
async fn a_mixed_workload_of_every_money_moving_service_conserves_supply(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.mint("100000").await; // founder pool 11,000; circulation 14,000
    let (founder, _) = app
        .user_of_type("fay", ipb::UserType::Founder, ipb::Role::Member)
        .await;
    let founder_wallet = app.wallet_for(&founder).await;
    let (student, _) = app
        .user_of_type("stu", ipb::UserType::Student, ipb::Role::Member)
        .await;
    let student_wallet = app.wallet_for(&student).await;
    let (_, teacher) = app
        .user_of_type("tea", ipb::UserType::Teacher, ipb::Role::Member)
        .await;
    let mut members = Vec::new();
    for index in 0..4 {
        let (user, key, wallet) = app.member_with_wallet(&format!("member{index}")).await;
        app.fund(&wallet, "100").await;
        let invoice = subscribe(&app, &key, &user, pb::SubscriptionTier::Basic, None)
            .await
            .unwrap()
            .invoices[0]
            .id
            .clone();
        members.push((key, wallet, invoice));
    }
    let mut compensations = Vec::new();
    for month in 1..=6 {
        let record = FounderCompensationServiceClient::new(app.channel().await)
            .create_founder_compensation(authed(
                &app.admin_key,
                pb::CreateFounderCompensationRequest {
                    request_id: format!("payroll-{month}"),
                    founder_id: founder.clone(),
                    wallet_id: founder_wallet.clone(),
                    month: format!("2026-{month:02}"),
                    r#type: pb::CompensationType::Salary as i32,
                    amount: azr("1000.000001"),
                    notes: String::new(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .compensation
            .unwrap();
        FounderCompensationServiceClient::new(app.channel().await)
            .approve_founder_compensation(authed(
                &app.admin_key,
                pb::ApproveFounderCompensationRequest {
                    compensation_id: record.id.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap();
        compensations.push(record.id);
    }

    let mut work = JoinSet::new();
    for id in compensations {
        for _ in 0..2 {
            let (channel, key, id) = (app.channel().await, app.admin_key.clone(), id.clone());
            work.spawn(async move {
                FounderCompensationServiceClient::new(channel)
                    .pay_founder_compensation(authed(
                        &key,
                        pb::PayFounderCompensationRequest {
                            compensation_id: id,
                            ..Default::default()
                        },
                    ))
                    .await
                    .map(|_| ())
            });
        }
    }
    for index in 0..8 {
        for _ in 0..2 {
            let channel = app.channel().await;
            let key = teacher.clone();
            let request = pb::RecordProofOfKnowledgeRequest {
                source_transaction_id: format!("mixed-{index}"),
                student_id: student.clone(),
                wallet_id: student_wallet.clone(),
                kind: pb::ProofKind::Course as i32,
                subject: format!("course-{index}"),
                score: Some(Decimal { value: "90".into() }),
                evidence_hash: "ab".repeat(32),
                reward_amount: azr("2.5"),
            };
            work.spawn(async move {
                KnowledgeRewardServiceClient::new(channel)
                    .record_proof_of_knowledge(authed(&key, request))
                    .await
                    .map(|_| ())
            });
        }
    }
    for (index, (key, wallet, invoice)) in members.iter().enumerate() {
        let channel = app.channel().await;
        let (key, wallet, invoice) = (key.clone(), wallet.clone(), invoice.clone());
        work.spawn(async move {
            BillingServiceClient::new(channel)
                .pay_invoice(authed(
                    &key,
                    pb::PayInvoiceRequest {
                        invoice_id: invoice,
                        wallet_id: wallet,
                        ..Default::default()
                    },
                ))
                .await
                .map(|_| ())
        });
        let next_wallet = members[(index + 1) % members.len()].1.clone();
        for round in 0..5 {
            let channel = app.channel().await;
            let (key, from, to) = (
                members[index].0.clone(),
                members[index].1.clone(),
                next_wallet.clone(),
            );
            work.spawn(async move {
                azora::proto::treasury::treasury_service_client::TreasuryServiceClient::new(channel)
                    .transfer(authed(
                        &key,
                        pb::TransferRequest {
                            request_id: format!("mixed-transfer-{round}-{from}"),
                            from_wallet_id: from,
                            to_wallet_id: to,
                            amount: azr("3.333333"),
                            ..Default::default()
                        },
                    ))
                    .await
                    .map(|_| ())
            });
        }
    }
    while let Some(result) = work.join_next().await {
        result
            .unwrap()
            .expect("every call of the mixed workload succeeds");
    }

    assert_books_balance(&app).await;
    // Each pool: what the mint put in, less exactly what was paid once.
    assert_eq!(
        app.pool(pb::SystemAccount::FounderPool).await,
        "4999.999994"
    ); // 11000 - 6 × 1000.000001
    assert_eq!(
        app.pool(pb::SystemAccount::CirculationPool).await,
        "13980.000000"
    ); // 14000 - 8 × 2.5
    assert_eq!(app.available(&founder_wallet).await, "6000.000006");
    assert_eq!(app.available(&student_wallet).await, "20.000000");
    // Each member paid 9.99 and sent as much as they received (a ring).
    for (_, wallet, _) in &members {
        assert_eq!(app.available(wallet).await, "90.010000");
    }
    let summary = app.summary().await;
    // Supply is minted − burned + bridged: 100,000 − 5,000 (the burn share) + 400;
    // none of the payments create or destroy AZR.
    assert_eq!(value(&summary.total_supply), "95400.000000");
    // The reserve got its 70 % share and the four invoices.
    assert_eq!(value(&summary.treasury_reserve), "70039.960000");
}
