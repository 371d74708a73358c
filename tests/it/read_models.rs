//! What the ledger keeps beside its rows so that reads stay flat at scale —
//! running balances on entries, the wallets a transaction moves besides the
//! two it names, the summary's totals — on both backends: point-in-time
//! balances are what the balance was then, the compliance report
//! recomputes each from the rows and fails when one is off, and the
//! migration that introduced them rebuilds them exactly from the rows.

use std::time::Duration;

use crate::common::money::{address, assert_books_balance, azr};
use crate::common::{Backend, TestApp, authed, compliance, request_id};
use azora::proto::compliance as cpb;
use azora::proto::treasury as pb;
use migration::MigratorTrait;
use sea_orm::{ConnectionTrait, Statement};

on_both_backends!(
    a_balance_as_of_any_moment_is_what_it_was_then,
    the_compliance_report_recomputes_running_balances_and_kept_totals,
    migrating_the_read_models_down_and_up_rebuilds_them_exactly,
);

/// A varied history on `wallet`: in, out, in from a multi-transfer, staked,
/// a pending withdrawal confirmed, a pending one failed. Returns, after
/// each step, the moment and the balance (available, pending, staked) then.
async fn history(app: &TestApp) -> (String, Vec<(chrono::DateTime<chrono::Utc>, [String; 3])>) {
    let (_, alice_key, alice) = app.member_with_wallet("alice").await;
    let (_, bob_key, bob) = app.member_with_wallet("bob").await;
    let (_, _, carol) = app.member_with_wallet("carol").await;
    let mut treasury = app.treasury().await;
    let mut seen = Vec::new();
    let step = async |app: &TestApp, seen: &mut Vec<_>| {
        // Distinct posting times on either side of each moment.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let balance = app.balance(&alice).await;
        seen.push((
            chrono::Utc::now(),
            [
                balance.available.unwrap().value,
                balance.pending.unwrap().value,
                balance.staked.unwrap().value,
            ],
        ));
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    step(app, &mut seen).await;
    app.fund(&alice, "100").await;
    app.fund(&bob, "50").await;
    step(app, &mut seen).await;
    treasury
        .transfer(authed(
            &alice_key,
            pb::TransferRequest {
                request_id: request_id(),
                from_wallet_id: alice.clone(),
                to_wallet_id: carol.clone(),
                amount: azr("30.5"),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    step(app, &mut seen).await;
    treasury
        .multi_transfer(authed(
            &bob_key,
            pb::MultiTransferRequest {
                request_id: request_id(),
                from_wallet_id: bob.clone(),
                payments: vec![
                    pb::Payment {
                        to_wallet_id: alice.clone(),
                        amount: azr("7.25"),
                    },
                    pb::Payment {
                        to_wallet_id: carol.clone(),
                        amount: azr("1"),
                    },
                ],
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    step(app, &mut seen).await;
    treasury
        .stake(authed(
            &alice_key,
            pb::StakeRequest {
                request_id: request_id(),
                wallet_id: alice.clone(),
                amount: azr("20"),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    step(app, &mut seen).await;
    let mut withdraw = async |amount: &str| {
        treasury
            .withdraw(authed(
                &alice_key,
                pb::WithdrawRequest {
                    request_id: request_id(),
                    from_wallet_id: alice.clone(),
                    amount: azr(amount),
                    destination_address: address(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .transaction
            .unwrap()
    };
    let confirmed = withdraw("10").await;
    let failed = withdraw("5").await;
    step(app, &mut seen).await;
    let mut treasury = app.treasury().await;
    treasury
        .confirm_transaction(authed(
            &app.admin_key,
            pb::ConfirmTransactionRequest {
                request_id: request_id(),
                transaction_id: confirmed.id,
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    step(app, &mut seen).await;
    treasury
        .fail_transaction(authed(
            &app.admin_key,
            pb::FailTransactionRequest {
                request_id: request_id(),
                transaction_id: failed.id,
                reason: "rejected by the chain".into(),
            },
        ))
        .await
        .unwrap();
    step(app, &mut seen).await;
    (alice, seen)
}

async fn a_balance_as_of_any_moment_is_what_it_was_then(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (wallet, seen) = history(&app).await;
    let expected: Vec<[&str; 3]> = vec![
        ["0.000000", "0.000000", "0.000000"],
        ["100.000000", "0.000000", "0.000000"],
        ["69.500000", "0.000000", "0.000000"],
        ["76.750000", "0.000000", "0.000000"],
        ["56.750000", "0.000000", "20.000000"],
        ["41.750000", "15.000000", "20.000000"],
        ["41.750000", "5.000000", "20.000000"],
        ["46.750000", "0.000000", "20.000000"],
    ];
    let observed: Vec<[&str; 3]> = seen
        .iter()
        .map(|(_, balance)| [0, 1, 2].map(|i| balance[i].as_str()))
        .collect();
    assert_eq!(observed, expected, "the history itself");
    let mut treasury = app.treasury().await;
    for (at, balance) in &seen[1..] {
        let then = treasury
            .get_balance(authed(
                &app.admin_key,
                pb::GetBalanceRequest {
                    wallet_id: wallet.clone(),
                    as_of_time: Some(prost_types::Timestamp {
                        seconds: at.timestamp(),
                        nanos: at.timestamp_subsec_nanos() as i32,
                    }),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            [
                then.available.unwrap().value,
                then.pending.unwrap().value,
                then.staked.unwrap().value,
            ],
            *balance,
            "as of {at}"
        );
    }
    // The payee sees the multi-transfer among its transactions.
    let listed = treasury
        .list_transactions(authed(
            &app.admin_key,
            pb::ListTransactionsRequest {
                wallet_id: wallet.clone(),
                r#type: pb::TransactionType::MultiTransfer as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.transactions.len(), 1, "{listed:?}");
    assert_books_balance(&app).await;
}

async fn report(app: &TestApp) -> Vec<(String, bool, Vec<String>)> {
    let start = chrono::Utc::now() - chrono::Duration::hours(1);
    let end = chrono::Utc::now() + chrono::Duration::minutes(1);
    let at = |at: chrono::DateTime<chrono::Utc>| {
        Some(prost_types::Timestamp {
            seconds: at.timestamp(),
            nanos: 0,
        })
    };
    compliance(app)
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
        .unwrap()
        .checks
        .into_iter()
        .filter(|check| {
            check.name == "running_balances_match_entries"
                || check.name == "kept_totals_match_ledger"
        })
        .map(|check| (check.name, check.passed, check.findings))
        .collect()
}

async fn execute(app: &TestApp, sql: &str) {
    app.db
        .execute_raw(Statement::from_string(app.db.get_database_backend(), sql))
        .await
        .unwrap();
}

async fn the_compliance_report_recomputes_running_balances_and_kept_totals(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (wallet, _) = history(&app).await;
    let passed = |checks: &[(String, bool, Vec<String>)]| {
        checks
            .iter()
            .map(|(name, passed, _)| (name.clone(), *passed))
            .collect::<Vec<_>>()
    };
    let both = |running: bool, totals: bool| {
        vec![
            ("running_balances_match_entries".to_owned(), running),
            ("kept_totals_match_ledger".to_owned(), totals),
        ]
    };
    assert_eq!(passed(&report(&app).await), both(true, true));

    // A total changed behind the ledger's back: the summary would lie.
    execute(
        &app,
        "UPDATE ledger_kind_totals SET transactions = transactions + 1 \
         WHERE kind = 'transfer' AND status = 'confirmed'",
    )
    .await;
    let checks = report(&app).await;
    assert_eq!(passed(&checks), both(true, false));
    assert!(
        checks[1]
            .2
            .iter()
            .any(|finding| finding.starts_with("transfer confirmed")),
        "{checks:?}"
    );
    execute(
        &app,
        "UPDATE ledger_kind_totals SET transactions = transactions - 1 \
         WHERE kind = 'transfer' AND status = 'confirmed'",
    )
    .await;

    // A running balance changed: a balance as of then would lie.
    let id = wallet.replace('-', "");
    let wallet_matches = match app.db.get_database_backend() {
        sea_orm::DbBackend::Postgres => format!("destination_wallet_id = '{wallet}'"),
        _ => format!("destination_wallet_id = x'{id}'"),
    };
    execute(
        &app,
        &format!(
            "UPDATE ledger_entries SET destination_available_after = destination_available_after + 1 \
             WHERE id = (SELECT MIN(id) FROM ledger_entries WHERE {wallet_matches})"
        ),
    )
    .await;
    let checks = report(&app).await;
    assert_eq!(passed(&checks), both(false, true));
    assert_eq!(
        checks[0].2,
        [format!(
            "wallet {wallet}: an entry's running balance is not the sum of its entries"
        )]
    );
}

/// Rows that the read models are made of, in a comparable form.
async fn read_models(app: &TestApp) -> Vec<String> {
    let backend = app.db.get_database_backend();
    let mut rows = Vec::new();
    for sql in [
        "SELECT id, source_available_after AS a, source_pending_after AS b, source_staked_after AS c, \
         destination_available_after AS d, destination_pending_after AS e, destination_staked_after AS f \
         FROM ledger_entries ORDER BY id",
        "SELECT kind, status, CAST(SUM(transactions) AS BIGINT) AS a, CAST(SUM(micros) AS BIGINT) AS b FROM ledger_kind_totals \
         GROUP BY kind, status HAVING SUM(transactions) <> 0 OR SUM(micros) <> 0 ORDER BY kind, status",
        "SELECT CAST(SUM(held_micros) AS BIGINT) AS a, CAST(SUM(staked_micros) AS BIGINT) AS b FROM ledger_wallet_totals",
        "SELECT CAST(COUNT(*) AS BIGINT) AS a FROM ledger_transaction_wallets",
    ] {
        for row in app
            .db
            .query_all_raw(Statement::from_string(backend, sql))
            .await
            .unwrap()
        {
            let value = |column: &str| {
                row.try_get::<Option<i64>>("", column)
                    .ok()
                    .flatten()
                    .map_or("null".to_owned(), |value| value.to_string())
            };
            let text = |column: &str| row.try_get::<String>("", column).unwrap_or_default();
            rows.push(format!(
                "{} {} {} {} {} {} {} {} {}",
                value("id"),
                text("kind"),
                text("status"),
                value("a"),
                value("b"),
                value("c"),
                value("d"),
                value("e"),
                value("f"),
            ));
        }
    }
    rows
}

async fn migrating_the_read_models_down_and_up_rebuilds_them_exactly(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    history(&app).await;
    let written = read_models(&app).await;
    assert!(written.len() > 10, "{written:?}");
    assert_eq!(
        written.last().map(String::as_str),
        Some("null   2 null null null null null"),
        "the multi-transfer's two payees are the only wallets moved besides those named"
    );
    // Down through migration 000018, whatever came after it.
    let migrations = migration::Migrator::migrations();
    let position = migrations
        .iter()
        .position(|migration| migration.name() == "m20261201_000018_ledger_read_models")
        .expect("migration 000018");
    let steps = u32::try_from(migrations.len() - position).unwrap();
    migration::Migrator::down(&app.db, Some(steps))
        .await
        .unwrap();
    let ledger_tables = app
        .db
        .query_one_raw(Statement::from_string(
            app.db.get_database_backend(),
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM ledger_kind_totals",
        ))
        .await;
    assert!(ledger_tables.is_err(), "000018 was undone");
    let gone = app
        .db
        .query_one_raw(Statement::from_string(
            app.db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM ledger_entries",
        ))
        .await
        .unwrap();
    assert!(gone.is_some(), "the ledger itself stays");
    migration::Migrator::up(&app.db, None).await.unwrap();
    assert_eq!(read_models(&app).await, written, "rebuilt from the rows");
    assert_books_balance(&app).await;
}
