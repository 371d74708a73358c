//! Compliance results that can be trusted: audit verification never reports
//! a break on an intact chain, reports read one snapshot of the books, and a
//! retried report is the original one. Over a real gRPC channel, on
//! PostgreSQL and SQLite.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::money::azr;
use crate::common::{Backend, TestApp, authed, compliance};
use azora::proto::compliance as pb;
use azora::proto::treasury as tpb;

on_both_backends!(
    verifying_a_range_beyond_the_head_or_reversed_is_refused_and_raises_no_alert,
    reports_generated_while_sixteen_clients_transfer_have_no_false_finding,
    a_retried_report_request_returns_the_original_report_and_stores_nothing_new,
    concurrent_retries_of_one_report_request_store_one_report,
);

fn timestamp(at: chrono::DateTime<chrono::Utc>) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: 0,
    })
}

/// An ad hoc report over the last hour and the next minute.
fn ad_hoc_report(request_id: &str) -> pb::GenerateComplianceReportRequest {
    let now = chrono::Utc::now();
    pb::GenerateComplianceReportRequest {
        report_type: pb::ReportType::AdHoc as i32,
        period_start: timestamp(now - chrono::Duration::hours(1)),
        period_end: timestamp(now + chrono::Duration::minutes(1)),
        request_id: request_id.into(),
    }
}

async fn alert_count(app: &TestApp) -> u64 {
    use azora::compliance::entities::alert;
    use sea_orm::{EntityTrait, PaginatorTrait};
    alert::Entity::find().count(&app.db).await.unwrap()
}

async fn report_count(app: &TestApp) -> u64 {
    use azora::compliance::entities::report;
    use sea_orm::{EntityTrait, PaginatorTrait};
    report::Entity::find().count(&app.db).await.unwrap()
}

/// Verifies the whole chain once the chainer has caught up.
async fn settled_chain(app: &TestApp) -> pb::VerifyAuditLogResponse {
    let mut client = compliance(app).await;
    for _ in 0..100 {
        let result = client
            .verify_audit_log(authed(&app.admin_key, pb::VerifyAuditLogRequest::default()))
            .await
            .unwrap()
            .into_inner();
        if result.unchained_count == 0 {
            return result;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the chainer did not catch up");
}

/// The field a refusal's BadRequest details name.
fn refused_field(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    let fields: Vec<String> = status
        .get_details_bad_request()
        .expect("BadRequest details")
        .field_violations
        .into_iter()
        .map(|violation| violation.field)
        .collect();
    assert_eq!(fields.len(), 1, "{status:?}");
    fields[0].clone()
}

async fn verifying_a_range_beyond_the_head_or_reversed_is_refused_and_raises_no_alert(
    backend: Backend,
) {
    use tonic::Code;
    let app = TestApp::spawn(backend).await;
    for index in 0..4 {
        app.user_with_role(
            &format!("user{index}"),
            azora::proto::identity::Role::Member,
        )
        .await;
    }
    let chain = settled_chain(&app).await;
    let head = chain.head_sequence;
    assert!(chain.intact && head >= 8, "{chain:?}");
    let alerts_before = alert_count(&app).await;
    let mut client = compliance(&app).await;

    // Unset is 0 in proto3; 1 is the start; head, one past it, and the
    // largest value there is.
    let points = [0, 1, head, head + 1, i64::MAX];
    let mut combinations = 0;
    for from in points {
        for to in points {
            let answer = client
                .verify_audit_log(authed(
                    &app.admin_key,
                    pb::VerifyAuditLogRequest {
                        from_sequence: from,
                        to_sequence: to,
                    },
                ))
                .await;
            let case = format!("from {from}, to {to} (head {head})");
            if to != 0 && to < from {
                let status = answer.expect_err(&case);
                assert_eq!(status.code(), Code::InvalidArgument, "{case}: {status:?}");
                assert_eq!(refused_field(&status), "to_sequence", "{case}");
            } else if from > head {
                let status = answer.expect_err(&case);
                assert_eq!(status.code(), Code::OutOfRange, "{case}: {status:?}");
                assert_eq!(refused_field(&status), "from_sequence", "{case}");
            } else if to > head {
                let status = answer.expect_err(&case);
                assert_eq!(status.code(), Code::OutOfRange, "{case}: {status:?}");
                assert_eq!(refused_field(&status), "to_sequence", "{case}");
            } else {
                let result = answer.expect(&case).into_inner();
                let last = if to == 0 { head } else { to };
                assert!(result.intact, "{case}: {result:?}");
                assert_eq!(result.first_broken_sequence, 0, "{case}");
                assert_eq!(result.checked_count, last - from.max(1) + 1, "{case}");
                assert_eq!(result.head_sequence, head, "{case}");
            }
            combinations += 1;
        }
    }
    assert_eq!(combinations, 25);
    for (from, to, field) in [
        (-1, 0, "from_sequence"),
        (0, -1, "to_sequence"),
        (i64::MIN, i64::MIN, "from_sequence"),
    ] {
        let status = client
            .verify_audit_log(authed(
                &app.admin_key,
                pb::VerifyAuditLogRequest {
                    from_sequence: from,
                    to_sequence: to,
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{from}, {to}");
        assert!(
            crate::common::violated_fields(&status).contains(&field.to_owned()),
            "{from}, {to}: {status:?}"
        );
    }
    assert_eq!(
        alert_count(&app).await,
        alerts_before,
        "no refused range raised an alert"
    );
    assert!(settled_chain(&app).await.intact);
}

const CLIENTS: usize = 16;
const REPORTS: usize = 20;

async fn reports_generated_while_sixteen_clients_transfer_have_no_false_finding(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // Wallets funded by deposits, and a mint large enough that the reserve
    // covers every wallet and the circulation pool: on these books every
    // check passes, so any failed check is a report disagreeing with itself.
    let mut wallets = Vec::new();
    for index in 0..CLIENTS {
        let (_, key, wallet) = app.member_with_wallet(&format!("trader{index}")).await;
        app.fund(&wallet, "1000").await;
        wallets.push((key, wallet));
    }
    app.mint("100000").await;

    let stop = Arc::new(AtomicBool::new(false));
    let transfers = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for index in 0..CLIENTS {
        let (key, from) = wallets[index].clone();
        let to = wallets[(index + 1) % CLIENTS].1.clone();
        let mut treasury = app.treasury().await;
        let (stop, transfers) = (stop.clone(), transfers.clone());
        clients.push(tokio::spawn(async move {
            let mut sequence = 0u64;
            while !stop.load(Ordering::Relaxed) {
                sequence += 1;
                // Each wallet sends to the next one in a ring, so every
                // wallet also receives and none runs dry.
                treasury
                    .transfer(authed(
                        &key,
                        tpb::TransferRequest {
                            request_id: format!("load-{index}-{sequence}"),
                            from_wallet_id: from.clone(),
                            to_wallet_id: to.clone(),
                            amount: azr("0.01"),
                            ..Default::default()
                        },
                    ))
                    .await
                    .expect("a transfer between funded wallets succeeds");
                transfers.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    let mut client = compliance(&app).await;
    let started = Instant::now();
    let mut failures = Vec::new();
    for _ in 0..REPORTS {
        let before = transfers.load(Ordering::Relaxed);
        let report = client
            .generate_compliance_report(authed(
                &app.admin_key,
                ad_hoc_report(&uuid::Uuid::new_v4().to_string()),
            ))
            .await
            .expect("a report")
            .into_inner()
            .report
            .unwrap();
        let failed: Vec<String> = report
            .checks
            .iter()
            .filter(|check| !check.passed)
            .map(|check| format!("{}: {:?}", check.name, check.findings))
            .collect();
        if !failed.is_empty() || report.status != pb::ReportStatus::Compliant as i32 {
            failures.push(failed);
        }
        // Make sure traffic really ran during this report.
        while transfers.load(Ordering::Relaxed) == before {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let moved = transfers.load(Ordering::Relaxed);
    eprintln!(
        "{backend:?}: {REPORTS} reports in {elapsed:?} while {CLIENTS} clients made {moved} transfers"
    );
    assert!(
        moved >= REPORTS as u64,
        "the load ran alongside the reports"
    );
    assert!(
        failures.is_empty(),
        "{} of {REPORTS} reports had a false finding: {failures:?}",
        failures.len()
    );
    crate::common::money::assert_books_balance(&app).await;
}

/// Books on which one check fails (a 20 AZR transfer by a sender without
/// KYC, above a threshold of 10): every report raises exactly one alert.
async fn app_with_one_warning(backend: Backend) -> TestApp {
    let app = TestApp::spawn_with(backend, |settings| {
        settings.kyc_transfer_threshold = "10".into()
    })
    .await;
    let (_, alice, a) = app.member_with_wallet("alice").await;
    let (_, _, b) = app.member_with_wallet("bob").await;
    app.fund(&a, "100").await;
    // The reserve's 700 AZR cover the wallets and the circulation pool.
    app.mint("1000").await;
    app.treasury()
        .await
        .transfer(authed(
            &alice,
            tpb::TransferRequest {
                request_id: "large".into(),
                from_wallet_id: a,
                to_wallet_id: b,
                amount: azr("20"),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    app
}

async fn a_retried_report_request_returns_the_original_report_and_stores_nothing_new(
    backend: Backend,
) {
    use tonic::Code;
    let app = app_with_one_warning(backend).await;
    let (_, auditor) = app
        .user_with_role("auditor", azora::proto::identity::Role::Auditor)
        .await;
    let client = compliance(&app).await;
    let mut request = ad_hoc_report("report-1");
    // Nanoseconds are kept to the microsecond, in the first call and the retry alike.
    if let Some(start) = request.period_start.as_mut() {
        start.nanos = 123_456_789;
    }
    let generate = |key: &str, request: pb::GenerateComplianceReportRequest| {
        let mut client = client.clone();
        let key = key.to_owned();
        async move {
            client
                .generate_compliance_report(authed(&key, request))
                .await
                .map(|response| response.into_inner().report.unwrap())
        }
    };

    let first = generate(&app.admin_key, request.clone()).await.unwrap();
    assert_eq!(first.status, pb::ReportStatus::Warning as i32);
    let (reports, alerts) = (report_count(&app).await, alert_count(&app).await);
    assert_eq!((reports, alerts), (1, 1), "one report, one alert");

    let retried = generate(&app.admin_key, request.clone()).await.unwrap();
    assert_eq!(retried, first, "a retry returns the original report");
    assert_eq!(
        (report_count(&app).await, alert_count(&app).await),
        (reports, alerts),
        "a retry stores no report and raises no alert"
    );

    let mut other_period = request.clone();
    other_period.period_end.as_mut().unwrap().seconds += 60;
    let mut other_type = request.clone();
    other_type.report_type = pb::ReportType::Daily as i32;
    other_type.period_start = timestamp(
        chrono::Utc::now()
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            - chrono::Duration::days(1),
    );
    other_type.period_end = timestamp(
        chrono::Utc::now()
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc(),
    );
    for different in [other_period, other_type] {
        let status = generate(&app.admin_key, different).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(crate::common::violated_fields(&status), ["request_id"]);
    }
    assert_eq!(report_count(&app).await, reports);

    // Ids belong to their caller: another user's "report-1" is a new report.
    let auditors = generate(&auditor, request.clone()).await.unwrap();
    assert_ne!(auditors.id, first.id);

    // A refused request leaves its id unused.
    let mut refused = ad_hoc_report("report-2");
    refused.report_type = pb::ReportType::Monthly as i32;
    let status = generate(&app.admin_key, refused).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let (_, member) = app
        .user_with_role("member", azora::proto::identity::Role::Member)
        .await;
    let denied = generate(&member, ad_hoc_report("report-3"))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let fresh = generate(&app.admin_key, ad_hoc_report("report-2"))
        .await
        .unwrap();
    assert_ne!(fresh.id, first.id, "the refused id was still free");

    let status = generate(&app.admin_key, ad_hoc_report("has space"))
        .await
        .unwrap_err();
    assert_eq!(crate::common::violated_fields(&status), ["request_id"]);
    assert_eq!(report_count(&app).await, 3);
    // Without an id a request is not recognised as a retry: two reports.
    generate(&app.admin_key, ad_hoc_report("")).await.unwrap();
    generate(&app.admin_key, ad_hoc_report("")).await.unwrap();
    assert_eq!(report_count(&app).await, 5);

    // Every successful call, the retry included, is audited once.
    let audited = crate::common::money::audited_calls(&app, "compliance_report").await;
    assert_eq!(audited.len(), 6, "{audited:?}");
}

async fn concurrent_retries_of_one_report_request_store_one_report(backend: Backend) {
    let app = app_with_one_warning(backend).await;
    let request = ad_hoc_report("raced");
    let mut calls = Vec::new();
    for _ in 0..8 {
        let mut client = compliance(&app).await;
        let (key, request) = (app.admin_key.clone(), request.clone());
        calls.push(tokio::spawn(async move {
            client
                .generate_compliance_report(authed(&key, request))
                .await
                .expect("every retry succeeds")
                .into_inner()
                .report
                .unwrap()
        }));
    }
    let mut reports = Vec::new();
    for call in calls {
        reports.push(call.await.unwrap());
    }
    assert!(
        reports.iter().all(|report| *report == reports[0]),
        "every caller got the one report"
    );
    assert_eq!(report_count(&app).await, 1);
    assert_eq!(alert_count(&app).await, 1, "its alert was raised once");
}
