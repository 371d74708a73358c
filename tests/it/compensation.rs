//! FounderCompensationService over a real gRPC channel, on PostgreSQL and
//! SQLite: the state machine, four eyes, paying through the ledger once,
//! exact summaries and who may see what.

use crate::common::money::{assert_books_balance, audited_calls, azr, micros};
use crate::common::{Backend, TestApp, authed, request_id, violated_fields};
use azora::proto::identity as ipb;
use azora::proto::treasury as pb;
use azora::proto::treasury::founder_compensation_service_client::FounderCompensationServiceClient;
use sea_orm::ConnectionTrait;
use tokio::task::JoinSet;
use tonic::Code;
use tonic::transport::Channel;

on_both_backends!(
    compensation_moves_pending_approved_paid_and_pays_from_the_founder_pool,
    every_illegal_transition_is_refused_by_the_service_and_the_database,
    the_founder_never_approves_or_pays_themselves_and_roles_are_enforced,
    one_live_record_per_founder_month_and_type_and_creates_are_idempotent,
    paying_from_a_pool_too_small_changes_nothing,
    ten_concurrent_payments_of_one_record_pay_once,
    the_summary_totals_exactly_per_founder_month_and_type,
    bad_input_names_every_field_and_writes_nothing,
    a_compliance_report_finds_a_payment_whose_ledger_transfer_was_changed,
);

async fn client(app: &TestApp) -> FounderCompensationServiceClient<Channel> {
    FounderCompensationServiceClient::new(app.channel().await)
}

/// A founder (a member key) with a wallet: (user id, key, wallet id).
async fn founder(app: &TestApp, name: &str) -> (String, String, String) {
    let (id, key) = app
        .user_of_type(name, ipb::UserType::Founder, ipb::Role::Member)
        .await;
    let wallet = app.wallet_for(&id).await;
    (id, key, wallet)
}

async fn create(
    app: &TestApp,
    key: &str,
    founder: &str,
    wallet: &str,
    month: &str,
    kind: pb::CompensationType,
    amount: &str,
) -> Result<pb::FounderCompensation, tonic::Status> {
    client(app)
        .await
        .create_founder_compensation(authed(
            key,
            pb::CreateFounderCompensationRequest {
                request_id: request_id(),
                founder_id: founder.into(),
                wallet_id: wallet.into(),
                month: month.into(),
                r#type: kind as i32,
                amount: azr(amount),
                notes: "monthly".into(),
            },
        ))
        .await
        .map(|response| response.into_inner().compensation.unwrap())
}

async fn approve(
    app: &TestApp,
    key: &str,
    id: &str,
) -> Result<pb::FounderCompensation, tonic::Status> {
    client(app)
        .await
        .approve_founder_compensation(authed(
            key,
            pb::ApproveFounderCompensationRequest {
                compensation_id: id.into(),
                ..Default::default()
            },
        ))
        .await
        .map(|response| response.into_inner().compensation.unwrap())
}

async fn pay(app: &TestApp, key: &str, id: &str) -> Result<pb::FounderCompensation, tonic::Status> {
    client(app)
        .await
        .pay_founder_compensation(authed(
            key,
            pb::PayFounderCompensationRequest {
                compensation_id: id.into(),
                ..Default::default()
            },
        ))
        .await
        .map(|response| response.into_inner().compensation.unwrap())
}

async fn cancel(
    app: &TestApp,
    key: &str,
    id: &str,
) -> Result<pb::FounderCompensation, tonic::Status> {
    client(app)
        .await
        .cancel_founder_compensation(authed(
            key,
            pb::CancelFounderCompensationRequest {
                compensation_id: id.into(),
                reason: "agreed otherwise".into(),
                ..Default::default()
            },
        ))
        .await
        .map(|response| response.into_inner().compensation.unwrap())
}

fn status(record: &pb::FounderCompensation) -> pb::CompensationStatus {
    pb::CompensationStatus::try_from(record.status).unwrap()
}

fn value(decimal: &Option<azora::proto::types::Decimal>) -> &str {
    &decimal.as_ref().unwrap().value
}

async fn compensation_moves_pending_approved_paid_and_pays_from_the_founder_pool(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (founder_id, _, wallet) = founder(&app, "ada").await;
    let (_, treasurer) = app.user_with_role("tess", ipb::Role::Treasurer).await;
    // 11 % of a 10,000 AZR mint: 1,100 AZR in the founder pool.
    app.mint("10000").await;
    assert_eq!(
        app.pool(pb::SystemAccount::FounderPool).await,
        "1100.000000"
    );

    let created = create(
        &app,
        &treasurer,
        &founder_id,
        &wallet,
        "2026-10",
        pb::CompensationType::Salary,
        "500.25",
    )
    .await
    .unwrap();
    assert_eq!(status(&created), pb::CompensationStatus::Pending);
    assert_eq!(value(&created.amount_azr), "500.250000");
    assert_eq!(value(&created.amount_usd), "500.250000");
    assert!(created.approved_by.is_empty() && created.transaction_id.is_empty());

    let approved = approve(&app, &treasurer, &created.id).await.unwrap();
    assert_eq!(status(&approved), pb::CompensationStatus::Approved);
    assert!(approved.approve_time.is_some());
    // Approving again is a safe retry: unchanged.
    assert_eq!(
        approve(&app, &treasurer, &created.id).await.unwrap(),
        approved
    );

    let paid = pay(&app, &app.admin_key, &created.id).await.unwrap();
    assert_eq!(status(&paid), pb::CompensationStatus::Paid);
    assert_eq!(paid.paid_by, app.admin_id);
    assert!(paid.payment_time.is_some());
    assert!(paid.tx_hash.starts_with("0x"));
    assert_eq!(app.available(&wallet).await, "500.250000");
    assert_eq!(app.pool(pb::SystemAccount::FounderPool).await, "599.750000");

    // The ledger transfer: from the founder pool to the founder's wallet.
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
    assert_eq!(transfer.r#type, pb::TransactionType::Transfer as i32);
    assert_eq!(
        transfer.from_system_account,
        pb::SystemAccount::FounderPool as i32
    );
    assert_eq!(transfer.to_wallet_id, wallet);
    assert_eq!(value(&transfer.amount_azr), "500.250000");
    assert_eq!(transfer.tx_hash, paid.tx_hash);

    // Paying twice pays once.
    assert_eq!(pay(&app, &treasurer, &created.id).await.unwrap(), paid);
    assert_eq!(app.available(&wallet).await, "500.250000");
    let got = client(&app)
        .await
        .get_founder_compensation(authed(
            &app.admin_key,
            pb::GetFounderCompensationRequest {
                compensation_id: created.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .compensation
        .unwrap();
    assert_eq!(got, paid);
    assert_books_balance(&app).await;
    // Every call, retries included, is one audit event by its caller.
    let admin = app.admin_id.clone();
    let treasurer_id = approved.approved_by.clone();
    assert_eq!(
        audited_calls(&app, "founder_compensation").await,
        [
            ("CreateFounderCompensation".to_owned(), treasurer_id.clone()),
            (
                "ApproveFounderCompensation".to_owned(),
                treasurer_id.clone()
            ),
            (
                "ApproveFounderCompensation".to_owned(),
                treasurer_id.clone()
            ),
            ("PayFounderCompensation".to_owned(), admin),
            ("PayFounderCompensation".to_owned(), treasurer_id),
        ]
    );
}

async fn every_illegal_transition_is_refused_by_the_service_and_the_database(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (founder_id, _, wallet) = founder(&app, "ada").await;
    let admin = app.admin_key.clone();
    app.mint("10000").await;
    let month = |m: u32| format!("2026-{m:02}");
    let salary = pb::CompensationType::Salary;
    let illegal = |result: Result<pb::FounderCompensation, tonic::Status>| {
        let error = result.unwrap_err();
        assert_eq!(error.code(), Code::FailedPrecondition, "{error:?}");
        assert!(error.message().contains("cannot be"), "{error:?}");
    };

    // pending: cannot be paid.
    let pending = create(&app, &admin, &founder_id, &wallet, &month(1), salary, "10")
        .await
        .unwrap();
    illegal(pay(&app, &admin, &pending.id).await);
    // paid: cannot be approved or cancelled.
    let paid = create(&app, &admin, &founder_id, &wallet, &month(2), salary, "10")
        .await
        .unwrap();
    approve(&app, &admin, &paid.id).await.unwrap();
    pay(&app, &admin, &paid.id).await.unwrap();
    illegal(approve(&app, &admin, &paid.id).await);
    illegal(cancel(&app, &admin, &paid.id).await);
    // cancelled from pending and from approved: cannot be approved or paid.
    let cancelled = create(&app, &admin, &founder_id, &wallet, &month(3), salary, "10")
        .await
        .unwrap();
    let record = cancel(&app, &admin, &cancelled.id).await.unwrap();
    assert_eq!(status(&record), pb::CompensationStatus::Cancelled);
    assert_eq!(record.cancel_reason, "agreed otherwise");
    assert_eq!(cancel(&app, &admin, &cancelled.id).await.unwrap(), record);
    illegal(approve(&app, &admin, &cancelled.id).await);
    illegal(pay(&app, &admin, &cancelled.id).await);
    let approved_then_cancelled =
        create(&app, &admin, &founder_id, &wallet, &month(4), salary, "10")
            .await
            .unwrap();
    approve(&app, &admin, &approved_then_cancelled.id)
        .await
        .unwrap();
    cancel(&app, &admin, &approved_then_cancelled.id)
        .await
        .unwrap();
    illegal(pay(&app, &admin, &approved_then_cancelled.id).await);
    // Only the one paid record moved money.
    assert_eq!(app.available(&wallet).await, "10.000000");
    let missing = uuid::Uuid::now_v7().to_string();
    assert_eq!(
        approve(&app, &admin, &missing).await.unwrap_err().code(),
        Code::NotFound
    );

    // The database refuses illegal moves and edits by itself.
    let (paid_id, pending_id) = match backend {
        Backend::Postgres => (format!("'{}'", paid.id), format!("'{}'", pending.id)),
        Backend::Sqlite => (
            format!("x'{}'", paid.id.replace('-', "")),
            format!("x'{}'", pending.id.replace('-', "")),
        ),
    };
    for statement in [
        format!("UPDATE founder_compensations SET status = 'pending' WHERE id = {paid_id}"),
        format!("UPDATE founder_compensations SET notes = 'edited' WHERE id = {paid_id}"),
        format!("UPDATE founder_compensations SET status = 'paid' WHERE id = {pending_id}"),
        format!(
            "UPDATE founder_compensations SET amount_azr_micros = 1, amount_usd_micros = 1 WHERE id = {pending_id}"
        ),
        format!(
            "UPDATE founder_compensations SET amount_usd_micros = 11000000 WHERE id = {pending_id}"
        ),
    ] {
        assert!(
            app.db.execute_unprepared(&statement).await.is_err(),
            "the database accepted {statement}"
        );
    }
    assert_books_balance(&app).await;
}

async fn the_founder_never_approves_or_pays_themselves_and_roles_are_enforced(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // A founder who is also a treasurer: may run payroll, but not for themselves.
    let (founder_id, founder_key) = app
        .user_of_type("ada", ipb::UserType::Founder, ipb::Role::Treasurer)
        .await;
    let wallet = app.wallet_for(&founder_id).await;
    let (other_founder, other_key, other_wallet) = founder(&app, "grace").await;
    let (_, member) = app.user_with_role("mia", ipb::Role::Member).await;
    let (_, auditor) = app.user_with_role("audra", ipb::Role::Auditor).await;
    app.mint("10000").await;
    let salary = pb::CompensationType::Salary;

    let own = create(
        &app,
        &founder_key,
        &founder_id,
        &wallet,
        "2026-10",
        salary,
        "100",
    )
    .await
    .unwrap();
    assert_eq!(
        approve(&app, &founder_key, &own.id)
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    approve(&app, &app.admin_key, &own.id).await.unwrap();
    assert_eq!(
        pay(&app, &founder_key, &own.id).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    pay(&app, &app.admin_key, &own.id).await.unwrap();

    // Members and auditors run no payroll.
    for key in [&member, &auditor, &other_key] {
        let refused = create(
            &app,
            key,
            &other_founder,
            &other_wallet,
            "2026-10",
            salary,
            "1",
        )
        .await;
        assert_eq!(refused.unwrap_err().code(), Code::PermissionDenied);
        assert_eq!(
            approve(&app, key, &own.id).await.unwrap_err().code(),
            Code::PermissionDenied
        );
        assert_eq!(
            cancel(&app, key, &own.id).await.unwrap_err().code(),
            Code::PermissionDenied
        );
    }
    // The founder's record belongs to a founder; others are refused.
    let student = app.user_with_role("stu", ipb::Role::Member).await.0;
    let student_wallet = app.wallet_for(&student).await;
    let not_founder = create(
        &app,
        &app.admin_key,
        &student,
        &student_wallet,
        "2026-10",
        salary,
        "1",
    )
    .await
    .unwrap_err();
    assert_eq!(not_founder.code(), Code::FailedPrecondition);
    let foreign_wallet = create(
        &app,
        &app.admin_key,
        &other_founder,
        &wallet,
        "2026-10",
        salary,
        "1",
    )
    .await
    .unwrap_err();
    assert_eq!(violated_fields(&foreign_wallet), ["wallet_id"]);

    // Reading: founders their own, staff everything.
    let theirs = create(
        &app,
        &app.admin_key,
        &other_founder,
        &other_wallet,
        "2026-10",
        salary,
        "7",
    )
    .await
    .unwrap();
    let get = |key: String, id: String| {
        let app = &app;
        async move {
            client(app)
                .await
                .get_founder_compensation(authed(
                    &key,
                    pb::GetFounderCompensationRequest {
                        compensation_id: id,
                    },
                ))
                .await
        }
    };
    assert!(get(other_key.clone(), theirs.id.clone()).await.is_ok());
    assert_eq!(
        get(other_key.clone(), own.id.clone())
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        get(member.clone(), theirs.id.clone())
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert!(get(auditor.clone(), theirs.id.clone()).await.is_ok());
    let list = |key: String, founder_id: String| {
        let app = &app;
        async move {
            client(app)
                .await
                .list_founder_compensations(authed(
                    &key,
                    pb::ListFounderCompensationsRequest {
                        founder_id,
                        ..Default::default()
                    },
                ))
                .await
        }
    };
    let mine = list(other_key.clone(), String::new())
        .await
        .unwrap()
        .into_inner()
        .compensations;
    assert_eq!(
        mine.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        [theirs.id.as_str()]
    );
    assert_eq!(
        list(other_key.clone(), founder_id.clone())
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        list(auditor.clone(), String::new())
            .await
            .unwrap()
            .into_inner()
            .compensations
            .len(),
        2
    );
    let summary = client(&app)
        .await
        .get_founder_compensation_summary(authed(
            &other_key,
            pb::GetFounderCompensationSummaryRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.founders.len(), 1);
    assert_eq!(summary.founders[0].founder_id, other_founder);
}

async fn one_live_record_per_founder_month_and_type_and_creates_are_idempotent(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (founder_id, _, wallet) = founder(&app, "ada").await;
    let admin = app.admin_key.clone();
    let first = create(
        &app,
        &admin,
        &founder_id,
        &wallet,
        "2026-10",
        pb::CompensationType::Bonus,
        "10",
    )
    .await
    .unwrap();
    let again = create(
        &app,
        &admin,
        &founder_id,
        &wallet,
        "2026-10",
        pb::CompensationType::Bonus,
        "20",
    )
    .await
    .unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists, "{again:?}");
    // Another type or month is another record.
    create(
        &app,
        &admin,
        &founder_id,
        &wallet,
        "2026-10",
        pb::CompensationType::Salary,
        "20",
    )
    .await
    .unwrap();
    create(
        &app,
        &admin,
        &founder_id,
        &wallet,
        "2026-11",
        pb::CompensationType::Bonus,
        "20",
    )
    .await
    .unwrap();
    // Once cancelled, the month and type are free again.
    cancel(&app, &admin, &first.id).await.unwrap();
    create(
        &app,
        &admin,
        &founder_id,
        &wallet,
        "2026-10",
        pb::CompensationType::Bonus,
        "30",
    )
    .await
    .unwrap();

    // A retried create returns the original; the same id with other content is refused.
    let request = pb::CreateFounderCompensationRequest {
        request_id: "payroll-2026-12-ada".into(),
        founder_id: founder_id.clone(),
        wallet_id: wallet.clone(),
        month: "2026-12".into(),
        r#type: pb::CompensationType::TokenGrant as i32,
        amount: azr("1000"),
        notes: String::new(),
    };
    let mut compensation = client(&app).await;
    let original = compensation
        .create_founder_compensation(authed(&admin, request.clone()))
        .await
        .unwrap()
        .into_inner();
    let retried = compensation
        .create_founder_compensation(authed(&admin, request.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(original, retried);
    let changed = compensation
        .create_founder_compensation(authed(
            &admin,
            pb::CreateFounderCompensationRequest {
                amount: azr("1001"),
                ..request
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&changed), ["request_id"]);
    let all = compensation
        .list_founder_compensations(authed(
            &admin,
            pb::ListFounderCompensationsRequest {
                page_size: 2,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.compensations.len(), 2);
    let rest = compensation
        .list_founder_compensations(authed(
            &admin,
            pb::ListFounderCompensationsRequest {
                page_size: 10,
                page_token: all.next_page_token,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.compensations.len(), 3);
    assert!(rest.next_page_token.is_empty());
}

async fn paying_from_a_pool_too_small_changes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (founder_id, _, wallet) = founder(&app, "ada").await;
    app.mint("100").await; // 11 AZR in the founder pool
    let record = create(
        &app,
        &app.admin_key,
        &founder_id,
        &wallet,
        "2026-10",
        pb::CompensationType::Salary,
        "11.000001",
    )
    .await
    .unwrap();
    approve(&app, &app.admin_key, &record.id).await.unwrap();
    let refused = pay(&app, &app.admin_key, &record.id).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("founder_pool"), "{refused:?}");
    assert_eq!(app.pool(pb::SystemAccount::FounderPool).await, "11.000000");
    assert_eq!(app.available(&wallet).await, "0.000000");
    let after = client(&app)
        .await
        .get_founder_compensation(authed(
            &app.admin_key,
            pb::GetFounderCompensationRequest {
                compensation_id: record.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .compensation
        .unwrap();
    assert_eq!(status(&after), pb::CompensationStatus::Approved);
    // Once the pool holds enough, the same record pays.
    app.mint("1").await;
    pay(&app, &app.admin_key, &record.id).await.unwrap();
    assert_eq!(app.available(&wallet).await, "11.000001");
    assert_books_balance(&app).await;
}

async fn ten_concurrent_payments_of_one_record_pay_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (founder_id, _, wallet) = founder(&app, "ada").await;
    let (_, treasurer) = app.user_with_role("tess", ipb::Role::Treasurer).await;
    app.mint("10000").await;
    let record = create(
        &app,
        &app.admin_key,
        &founder_id,
        &wallet,
        "2026-10",
        pb::CompensationType::Salary,
        "250",
    )
    .await
    .unwrap();
    approve(&app, &app.admin_key, &record.id).await.unwrap();
    let mut payers = JoinSet::new();
    for attempt in 0..10 {
        let channel = app.channel().await;
        let key = if attempt % 2 == 0 {
            treasurer.clone()
        } else {
            app.admin_key.clone()
        };
        let id = record.id.clone();
        payers.spawn(async move {
            FounderCompensationServiceClient::new(channel)
                .pay_founder_compensation(authed(
                    &key,
                    pb::PayFounderCompensationRequest {
                        compensation_id: id,
                        ..Default::default()
                    },
                ))
                .await
                .map(|response| response.into_inner().compensation.unwrap().transaction_id)
        });
    }
    let mut transactions = std::collections::HashSet::new();
    while let Some(result) = payers.join_next().await {
        transactions.insert(result.unwrap().expect("every retry succeeds"));
    }
    assert_eq!(transactions.len(), 1, "one ledger transfer for all ten");
    assert_eq!(app.available(&wallet).await, "250.000000");
    assert_eq!(app.pool(pb::SystemAccount::FounderPool).await, "850.000000");
    assert_books_balance(&app).await;
}

async fn the_summary_totals_exactly_per_founder_month_and_type(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (ada, _, ada_wallet) = founder(&app, "ada").await;
    let (bob, _, bob_wallet) = founder(&app, "bob").await;
    let admin = app.admin_key.clone();
    app.mint("100000").await;
    let salary = pb::CompensationType::Salary;
    let bonus = pb::CompensationType::Bonus;
    // ada: Oct salary paid 1000.000001, Oct bonus approved 0.5, Nov salary pending 999.999999,
    // Sep salary cancelled 5; bob: Oct salary paid 2000.
    let a1 = create(
        &app,
        &admin,
        &ada,
        &ada_wallet,
        "2026-10",
        salary,
        "1000.000001",
    )
    .await
    .unwrap();
    approve(&app, &admin, &a1.id).await.unwrap();
    pay(&app, &admin, &a1.id).await.unwrap();
    let a2 = create(&app, &admin, &ada, &ada_wallet, "2026-10", bonus, "0.5")
        .await
        .unwrap();
    approve(&app, &admin, &a2.id).await.unwrap();
    create(
        &app,
        &admin,
        &ada,
        &ada_wallet,
        "2026-11",
        salary,
        "999.999999",
    )
    .await
    .unwrap();
    let a4 = create(&app, &admin, &ada, &ada_wallet, "2026-09", salary, "5")
        .await
        .unwrap();
    cancel(&app, &admin, &a4.id).await.unwrap();
    let b1 = create(&app, &admin, &bob, &bob_wallet, "2026-10", salary, "2000")
        .await
        .unwrap();
    approve(&app, &admin, &b1.id).await.unwrap();
    pay(&app, &admin, &b1.id).await.unwrap();

    let summary = |founder_id: &str, start: &str, end: &str| {
        let app = &app;
        let request = pb::GetFounderCompensationSummaryRequest {
            founder_id: founder_id.into(),
            start_month: start.into(),
            end_month: end.into(),
        };
        async move {
            client(app)
                .await
                .get_founder_compensation_summary(authed(&app.admin_key, request))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let totals = |t: &Option<pb::CompensationTotals>| {
        let t = t.clone().unwrap();
        (
            t.pending_count,
            t.pending_azr.unwrap().value,
            t.approved_count,
            t.approved_azr.unwrap().value,
            t.paid_count,
            t.paid_azr.unwrap().value,
            t.cancelled_count,
            t.total_azr.unwrap().value,
        )
    };
    let all = summary("", "", "").await;
    assert_eq!(
        totals(&all.totals),
        (
            1,
            "999.999999".into(),
            1,
            "0.500000".into(),
            2,
            "3000.000001".into(),
            1,
            "4000.500000".into()
        )
    );
    let rows: Vec<(String, String, i32, String)> = all
        .rows
        .iter()
        .map(|row| {
            (
                row.founder_id.clone(),
                row.month.clone(),
                row.r#type,
                row.totals.clone().unwrap().total_azr.unwrap().value,
            )
        })
        .collect();
    let mut expected = vec![
        (
            ada.clone(),
            "2026-09".to_owned(),
            salary as i32,
            "0.000000".to_owned(),
        ),
        (
            ada.clone(),
            "2026-10".to_owned(),
            salary as i32,
            "1000.000001".to_owned(),
        ),
        (
            ada.clone(),
            "2026-10".to_owned(),
            bonus as i32,
            "0.500000".to_owned(),
        ),
        (
            ada.clone(),
            "2026-11".to_owned(),
            salary as i32,
            "999.999999".to_owned(),
        ),
        (
            bob.clone(),
            "2026-10".to_owned(),
            salary as i32,
            "2000.000000".to_owned(),
        ),
    ];
    // Rows come by founder, then month, then type (in the enum's order).
    expected.sort();
    assert_eq!(rows, expected);
    let ada_total = all.founders.iter().find(|f| f.founder_id == ada).unwrap();
    assert_eq!(totals(&ada_total.totals).7, "2000.500000");
    assert_eq!(
        micros("2000.500000") + micros("2000.000000"),
        micros("4000.500000")
    );

    // A founder and a range of months.
    let october = summary(&ada, "2026-10", "2026-10").await;
    assert_eq!(
        totals(&october.totals),
        (
            0,
            "0.000000".into(),
            1,
            "0.500000".into(),
            1,
            "1000.000001".into(),
            0,
            "1000.500001".into()
        )
    );
    let backwards = client(&app)
        .await
        .get_founder_compensation_summary(authed(
            &admin,
            pb::GetFounderCompensationSummaryRequest {
                founder_id: String::new(),
                start_month: "2026-11".into(),
                end_month: "2026-10".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&backwards), ["end_month"]);
    // Paid amounts are what the wallets received.
    assert_eq!(app.available(&ada_wallet).await, "1000.000001");
    assert_eq!(app.available(&bob_wallet).await, "2000.000000");
}

async fn bad_input_names_every_field_and_writes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (founder_id, _, wallet) = founder(&app, "ada").await;
    let mut compensation = client(&app).await;
    let error = compensation
        .create_founder_compensation(authed(
            &app.admin_key,
            pb::CreateFounderCompensationRequest {
                request_id: "has space".into(),
                founder_id: "not-a-uuid".into(),
                wallet_id: String::new(),
                month: "2026-13".into(),
                r#type: 0,
                amount: azr("1.0000001"),
                notes: "n".repeat(501),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&error),
        [
            "request_id",
            "founder_id",
            "wallet_id",
            "month",
            "type",
            "amount",
            "notes"
        ]
    );
    for (month, amount) in [
        ("2026-1", "1"),
        ("2026-10", "0"),
        ("2026-10", "-1"),
        ("2026-10", "1e3"),
    ] {
        let error = compensation
            .create_founder_compensation(authed(
                &app.admin_key,
                pb::CreateFounderCompensationRequest {
                    request_id: request_id(),
                    founder_id: founder_id.clone(),
                    wallet_id: wallet.clone(),
                    month: month.into(),
                    r#type: pb::CompensationType::Salary as i32,
                    amount: azr(amount),
                    notes: String::new(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument, "{month} {amount}");
    }
    let cancel_without_reason = compensation
        .cancel_founder_compensation(authed(
            &app.admin_key,
            pb::CancelFounderCompensationRequest {
                compensation_id: "x".into(),
                reason: " ".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&cancel_without_reason),
        ["compensation_id", "reason"]
    );
    let listed = compensation
        .list_founder_compensations(authed(
            &app.admin_key,
            pb::ListFounderCompensationsRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.compensations.is_empty());
}

async fn a_compliance_report_finds_a_payment_whose_ledger_transfer_was_changed(backend: Backend) {
    use azora::proto::compliance as cpb;
    use azora::proto::compliance::compliance_service_client::ComplianceServiceClient;
    let app = TestApp::spawn(backend).await;
    let (founder_id, _, wallet) = founder(&app, "ada").await;
    app.mint("10000").await;
    let record = create(
        &app,
        &app.admin_key,
        &founder_id,
        &wallet,
        "2026-10",
        pb::CompensationType::Salary,
        "100",
    )
    .await
    .unwrap();
    approve(&app, &app.admin_key, &record.id).await.unwrap();
    let paid = pay(&app, &app.admin_key, &record.id).await.unwrap();
    let report = || async {
        let start = chrono::Utc::now() - chrono::Duration::hours(1);
        let end = chrono::Utc::now();
        let at = |t: chrono::DateTime<chrono::Utc>| {
            Some(prost_types::Timestamp {
                seconds: t.timestamp(),
                nanos: 0,
            })
        };
        ComplianceServiceClient::new(app.channel().await)
            .generate_compliance_report(authed(
                &app.admin_key,
                cpb::GenerateComplianceReportRequest {
                    report_type: cpb::ReportType::AdHoc as i32,
                    period_start: at(start),
                    period_end: at(end),
                    request_id: uuid::Uuid::new_v4().to_string(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .report
            .unwrap()
            .checks
            .into_iter()
            .find(|check| check.name == "settlements_match_ledger")
            .unwrap()
    };
    let clean = report().await;
    assert!(clean.passed, "{clean:?}");
    // Someone edits the payment's amount in the database, outside the ledger.
    let transaction = match backend {
        Backend::Postgres => format!("'{}'", paid.transaction_id),
        Backend::Sqlite => format!("x'{}'", paid.transaction_id.replace('-', "")),
    };
    app.db
        .execute_unprepared(&format!(
            "UPDATE ledger_transactions SET amount_azr_micros = 1000000, amount_usd_micros = 1000000 WHERE id = {transaction}"
        ))
        .await
        .unwrap();
    let tampered = report().await;
    assert!(!tampered.passed);
    assert_eq!(
        tampered.findings,
        [format!(
            "founder compensation {}: its ledger transfer does not match it",
            record.id
        )]
    );
}
