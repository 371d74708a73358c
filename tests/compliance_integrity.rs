//! Compliance results that can be trusted: audit verification never reports
//! a break on an intact chain. Over a real gRPC channel, on PostgreSQL and
//! SQLite.

mod common;

use std::time::Duration;

use azora::proto::compliance as pb;
use azora::proto::compliance::compliance_service_client::ComplianceServiceClient;
use common::{Backend, TestApp, authed};
use tonic::transport::Channel;

on_both_backends!(verifying_a_range_beyond_the_head_or_reversed_is_refused_and_raises_no_alert,);

async fn compliance(app: &TestApp) -> ComplianceServiceClient<Channel> {
    ComplianceServiceClient::new(app.channel().await)
}

async fn alert_count(app: &TestApp) -> u64 {
    use azora::compliance::entities::alert;
    use sea_orm::{EntityTrait, PaginatorTrait};
    alert::Entity::find().count(&app.db).await.unwrap()
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
            common::violated_fields(&status).contains(&field.to_owned()),
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
