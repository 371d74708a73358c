//! The audit trail and the ComplianceService over a real gRPC channel, on
//! PostgreSQL and SQLite.

use std::time::Duration;

use crate::common::money::azr;
use crate::common::{Backend, TestApp, authed, compliance};
use azora::audit::entities::audit_event;
use azora::proto::compliance as pb;
use azora::proto::compliance::compliance_service_client::ComplianceServiceClient;
use azora::proto::identity as ipb;
use azora::proto::identity::identity_service_client::IdentityServiceClient;
use azora::proto::mining as mpb;
use azora::proto::mining::mining_service_client::MiningServiceClient;
use azora::proto::treasury as tpb;
use azora::proto::treasury::treasury_service_client::TreasuryServiceClient;
use azora::proto::types::Decimal;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use tonic::Code;
use tonic::transport::Channel;

on_both_backends!(
    every_mutating_call_is_audited_once_with_actor_values_peer_and_agent,
    editing_deleting_or_reordering_audit_rows_is_detected,
    a_report_has_exact_totals_and_flags_a_broken_invariant_with_a_streamed_alert,
    only_auditors_and_admins_oversee_and_members_see_their_own_events,
);

const AGENT: &str = "azora-test-client/1.0";

async fn channel_with_agent(app: &TestApp) -> Channel {
    Channel::from_shared(app.url())
        .unwrap()
        .user_agent(AGENT)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Waits until the chainer has chained every committed event.
async fn chained(app: &TestApp) -> pb::VerifyAuditLogResponse {
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

async fn events_since(
    app: &TestApp,
    since: chrono::DateTime<chrono::Utc>,
) -> Vec<audit_event::Model> {
    let mut events = audit_event::Entity::find()
        .filter(audit_event::Column::RecordedAt.gte(since))
        .all(&app.db)
        .await
        .unwrap();
    events.sort_by_key(|event| event.id);
    events
}

async fn every_mutating_call_is_audited_once_with_actor_values_peer_and_agent(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (member_id, member, wallet) = app.member_with_wallet("alice").await;
    let other_wallet = app.wallet_for(&member_id).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let since = chrono::Utc::now();
    let channel = channel_with_agent(&app).await;
    let mut identity = IdentityServiceClient::new(channel.clone());
    let mut treasury = TreasuryServiceClient::new(channel.clone());
    let mut mining = MiningServiceClient::new(channel.clone());
    let id = || uuid::Uuid::new_v4().to_string();

    // 13 mutating calls that succeed.
    identity
        .update_user(authed(
            &member,
            ipb::UpdateUserRequest {
                user: Some(ipb::User {
                    id: member_id.clone(),
                    email: "alice@example.com".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["email".into()],
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    identity
        .set_kyc_status(authed(
            &app.admin_key,
            ipb::SetKycStatusRequest {
                user_id: member_id.clone(),
                kyc_status: ipb::KycStatus::Verified as i32,
                reason: String::new(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let third = identity
        .create_wallet(authed(
            &member,
            ipb::CreateWalletRequest {
                owner_id: member_id.clone(),
                address: crate::common::money::address(),
                label: String::new(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .wallet
        .unwrap();
    treasury
        .deposit(authed(
            &app.admin_key,
            tpb::DepositRequest {
                request_id: id(),
                to_wallet_id: wallet.clone(),
                amount: azr("100"),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let transfer = tpb::TransferRequest {
        request_id: "move-1".into(),
        from_wallet_id: wallet.clone(),
        to_wallet_id: other_wallet.clone(),
        amount: azr("10"),
        ..Default::default()
    };
    treasury
        .transfer(authed(&member, transfer.clone()))
        .await
        .unwrap();
    treasury
        .transfer(authed(&member, transfer))
        .await
        .expect("a retry is a call too");
    let withdrawal = treasury
        .withdraw(authed(
            &member,
            tpb::WithdrawRequest {
                request_id: id(),
                from_wallet_id: wallet.clone(),
                amount: azr("5"),
                destination_address: crate::common::money::address(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .transaction
        .unwrap();
    treasury
        .confirm_transaction(authed(
            &app.admin_key,
            tpb::ConfirmTransactionRequest {
                request_id: id(),
                transaction_id: withdrawal.id,
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let session = mining
        .start_session(authed(
            &member,
            mpb::StartSessionRequest {
                wallet_id: third.id.clone(),
                algorithm: "sha256".into(),
                pool_name: "p".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    let at = chrono::Utc::now();
    let sample = mpb::Sample {
        sample_time: Some(prost_types::Timestamp {
            seconds: at.timestamp(),
            nanos: at.timestamp_subsec_nanos() as i32,
        }),
        hashrate_mhs: 1.0,
        power_watts: 1.0,
        temperature_celsius: 40.0,
        earnings_usd: Some(Decimal { value: "2".into() }),
        ..Default::default()
    };
    mining
        .record_statistics(authed(
            &member,
            tokio_stream::iter(vec![mpb::RecordStatisticsRequest {
                session_id: session.id.clone(),
                samples: vec![sample],
                ..Default::default()
            }]),
        ))
        .await
        .unwrap();
    mining
        .end_session(authed(
            &member,
            mpb::EndSessionRequest {
                session_id: session.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let service_key = identity
        .create_api_key(authed(
            &member,
            ipb::CreateApiKeyRequest {
                user_id: member_id.clone(),
                role: ipb::Role::Service as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    identity
        .revoke_api_key(authed(
            &member,
            ipb::RevokeApiKeyRequest {
                api_key_id: service_key.api_key.unwrap().id,
                ..Default::default()
            },
        ))
        .await
        .unwrap();

    // Refused calls: invalid input writes no event; a denial and a revoked
    // key do.
    let invalid = treasury
        .transfer(authed(
            &member,
            tpb::TransferRequest {
                request_id: id(),
                amount: azr("-1"),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    let denied = treasury
        .mint(authed(
            &member,
            tpb::MintRequest {
                request_id: id(),
                amount: azr("1"),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let revoked = identity
        .get_user(authed(
            &service_key.secret.clone(),
            ipb::GetUserRequest {
                user_id: member_id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(revoked.code(), Code::Unauthenticated);

    let events = events_since(&app, since).await;
    let ok: Vec<_> = events
        .iter()
        .filter(|event| event.outcome == "ok")
        .collect();
    let actions: Vec<&str> = ok
        .iter()
        .map(|event| event.action.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "UpdateUser",
            "SetKycStatus",
            "CreateWallet",
            "Deposit",
            "Transfer",
            "Transfer",
            "Withdraw",
            "ConfirmTransaction",
            "StartSession",
            "RecordStatistics",
            "EndSession",
            "CreateApiKey",
            "RevokeApiKey",
        ],
        "exactly one event per successful mutating call, in order"
    );
    let outcomes: Vec<&str> = events
        .iter()
        .filter(|event| event.outcome != "ok")
        .map(|event| event.outcome.as_str())
        .collect();
    assert_eq!(outcomes, ["permission_denied", "unauthenticated"]);
    let denied_event = events
        .iter()
        .find(|event| event.outcome == "permission_denied")
        .unwrap();
    assert_eq!(
        denied_event.action,
        "/azora.treasury.v1.TreasuryService/Mint"
    );
    assert_eq!(
        denied_event.actor_user_id.map(|id| id.to_string()),
        Some(member_id.clone())
    );

    let update = ok[0];
    assert_eq!(
        update.action,
        "/azora.identity.v1.IdentityService/UpdateUser"
    );
    assert_eq!(
        update.actor_user_id.map(|id| id.to_string()),
        Some(member_id.clone())
    );
    assert!(update.actor_key_id.is_some());
    assert_eq!(
        (update.resource_type.as_str(), update.resource_id.as_str()),
        ("user", member_id.as_str())
    );
    let old: serde_json::Value =
        serde_json::from_str(update.old_values.as_deref().unwrap()).unwrap();
    let new: serde_json::Value =
        serde_json::from_str(update.new_values.as_deref().unwrap()).unwrap();
    assert_eq!(
        (old["email"].clone(), new["email"].clone()),
        (
            serde_json::Value::Null,
            serde_json::json!("alice@example.com")
        )
    );
    assert!(
        update.peer_address.starts_with("127.0.0.1:"),
        "{}",
        update.peer_address
    );
    assert!(update.user_agent.contains(AGENT), "{}", update.user_agent);
    let transfer_event = ok[4];
    assert_eq!(transfer_event.request_id, "move-1");
    assert_eq!(transfer_event.resource_type, "transaction");
    let secret = service_key.secret.clone();
    assert!(
        events.iter().all(
            |event| !format!("{:?}{:?}", event.old_values, event.new_values).contains(&secret)
        ),
        "no secret in the trail"
    );

    let verification = chained(&app).await;
    assert!(verification.intact);
}

async fn editing_deleting_or_reordering_audit_rows_is_detected(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for index in 0..6 {
        app.user_with_role(&format!("user{index}"), ipb::Role::Member)
            .await;
    }
    let head = chained(&app).await;
    assert!(head.intact && head.head_sequence >= 12, "{head:?}");
    assert_eq!(head.checked_count, head.head_sequence);
    let mut client = compliance(&app).await;
    let verify = |client: &mut ComplianceServiceClient<Channel>| {
        let mut client = client.clone();
        let key = app.admin_key.clone();
        async move {
            client
                .verify_audit_log(authed(&key, pb::VerifyAuditLogRequest::default()))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let original: String = app
        .db
        .query_one_raw(sea_orm::Statement::from_string(
            app.db.get_database_backend(),
            "SELECT new_values FROM audit_events WHERE id = (SELECT event_id FROM audit_chain WHERE sequence = 5)",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "new_values")
        .unwrap();

    app.db
        .execute_unprepared(
            "UPDATE audit_events SET new_values = '{\"role\":\"admin\"}' WHERE id = (SELECT event_id FROM audit_chain WHERE sequence = 5)",
        )
        .await
        .unwrap();
    let edited = verify(&mut client).await;
    assert!(!edited.intact);
    assert_eq!(
        edited.first_broken_sequence, 5,
        "an edit is found where it was made"
    );
    app.db
        .execute_unprepared(&format!(
            "UPDATE audit_events SET new_values = '{}' WHERE id = (SELECT event_id FROM audit_chain WHERE sequence = 5)",
            original.replace('\'', "''")
        ))
        .await
        .unwrap();
    assert!(
        verify(&mut client).await.intact,
        "restored, the chain holds again"
    );

    for sql in [
        "UPDATE audit_chain SET sequence = 1000000 WHERE sequence = 3",
        "UPDATE audit_chain SET sequence = 3 WHERE sequence = 4",
        "UPDATE audit_chain SET sequence = 4 WHERE sequence = 1000000",
    ] {
        app.db.execute_unprepared(sql).await.unwrap();
    }
    let reordered = verify(&mut client).await;
    assert_eq!(
        (reordered.intact, reordered.first_broken_sequence),
        (false, 3),
        "a reorder breaks the links"
    );
    for sql in [
        "UPDATE audit_chain SET sequence = 1000000 WHERE sequence = 4",
        "UPDATE audit_chain SET sequence = 4 WHERE sequence = 3",
        "UPDATE audit_chain SET sequence = 3 WHERE sequence = 1000000",
    ] {
        app.db.execute_unprepared(sql).await.unwrap();
    }
    assert!(verify(&mut client).await.intact);

    // Deleting an event means deleting its link too (a foreign key holds them).
    let doomed: uuid::Uuid = app
        .db
        .query_one_raw(sea_orm::Statement::from_string(
            app.db.get_database_backend(),
            "SELECT event_id FROM audit_chain WHERE sequence = 7",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "event_id")
        .unwrap();
    app.db
        .execute_unprepared("DELETE FROM audit_chain WHERE sequence = 7")
        .await
        .unwrap();
    audit_event::Entity::delete_by_id(doomed)
        .exec(&app.db)
        .await
        .unwrap();
    let deleted = verify(&mut client).await;
    assert_eq!(
        (deleted.intact, deleted.first_broken_sequence),
        (false, 7),
        "a deletion leaves a gap"
    );
    let ranged = client
        .verify_audit_log(authed(
            &app.admin_key,
            pb::VerifyAuditLogRequest {
                from_sequence: 1,
                to_sequence: 6,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(ranged.intact, "the range before the gap still verifies");

    let alerts = client
        .list_alerts(authed(&app.admin_key, pb::ListAlertsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .alerts;
    assert!(
        alerts
            .iter()
            .any(|alert| alert.source == "audit" && alert.message.contains("sequence 7")),
        "{alerts:?}"
    );
}

async fn a_report_has_exact_totals_and_flags_a_broken_invariant_with_a_streamed_alert(
    backend: Backend,
) {
    let app = TestApp::spawn_with(backend, |settings| {
        settings.kyc_transfer_threshold = "10".into()
    })
    .await;
    let (_, alice, a) = app.member_with_wallet("alice").await;
    let (_, _, b) = app.member_with_wallet("bob").await;
    let start = chrono::Utc::now() - chrono::Duration::minutes(1);
    let mut treasury = app.treasury().await;
    treasury
        .mint(authed(
            &app.admin_key,
            tpb::MintRequest {
                request_id: "m".into(),
                amount: azr("1000"),
                to_wallet_id: a.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    treasury
        .transfer(authed(
            &alice,
            tpb::TransferRequest {
                request_id: "t".into(),
                from_wallet_id: a.clone(),
                to_wallet_id: b.clone(),
                amount: azr("20.5"),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    treasury
        .transfer(authed(
            &alice,
            tpb::TransferRequest {
                request_id: "small".into(),
                from_wallet_id: a.clone(),
                to_wallet_id: b.clone(),
                amount: azr("1"),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let end = chrono::Utc::now() + chrono::Duration::minutes(1);
    let period = |at: chrono::DateTime<chrono::Utc>| {
        Some(prost_types::Timestamp {
            seconds: at.timestamp(),
            nanos: 0,
        })
    };
    let request = || {
        authed(
            &app.admin_key,
            pb::GenerateComplianceReportRequest {
                report_type: pb::ReportType::AdHoc as i32,
                period_start: period(start),
                period_end: period(end),
                request_id: uuid::Uuid::new_v4().to_string(),
            },
        )
    };
    let mut client = compliance(&app).await;
    let report = client
        .generate_compliance_report(request())
        .await
        .unwrap()
        .into_inner()
        .report
        .unwrap();
    assert_eq!(report.total_transactions, 3);
    assert_eq!(report.volume_azr.clone().unwrap().value, "1021.500000");
    assert_eq!(report.volume_usd.clone().unwrap().value, "1021.500000");
    assert_eq!(report.treasury_balance.clone().unwrap().value, "700.000000");
    let failed: Vec<&str> = report
        .checks
        .iter()
        .filter(|check| !check.passed)
        .map(|check| check.name.as_str())
        .collect();
    assert_eq!(failed, ["kyc_large_transfers"], "{:?}", report.checks);
    let kyc = report
        .checks
        .iter()
        .find(|check| check.name == "kyc_large_transfers")
        .unwrap();
    assert_eq!(
        kyc.findings.len(),
        1,
        "only the 20.5 AZR transfer is above 10 AZR"
    );
    assert!(
        kyc.findings[0].contains("20.500000") && kyc.findings[0].contains("alice"),
        "{:?}",
        kyc.findings
    );
    assert_eq!(report.status, pb::ReportStatus::Warning as i32);
    assert_eq!(report.recommendations.len(), 1);
    assert_eq!(report.checks.len(), 13);
    let stored = client
        .get_compliance_report(authed(
            &app.admin_key,
            pb::GetComplianceReportRequest {
                report_id: report.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .report
        .unwrap();
    assert_eq!(stored, report);

    // A watcher, then a balance changed behind the ledger's back.
    let mut alerts = client
        .watch_alerts(authed(&app.admin_key, pb::WatchAlertsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    app.db.execute_unprepared("UPDATE wallets SET available_micros = available_micros + 5000000 WHERE label = '' AND available_micros > 0 AND available_micros < 200000000").await.unwrap();
    let broken = client
        .generate_compliance_report(request())
        .await
        .unwrap()
        .into_inner()
        .report
        .unwrap();
    assert_eq!(broken.status, pb::ReportStatus::NonCompliant as i32);
    let failed: Vec<&str> = broken
        .checks
        .iter()
        .filter(|check| !check.passed)
        .map(|check| check.name.as_str())
        .collect();
    assert!(
        failed.contains(&"balances_match_entries") && failed.contains(&"supply_conservation"),
        "{failed:?}"
    );
    let mut streamed = Vec::new();
    while streamed.len() < failed.len() {
        let message = tokio::time::timeout(Duration::from_secs(5), alerts.message())
            .await
            .expect("alerts are streamed")
            .unwrap()
            .unwrap();
        streamed.push(message.alert.unwrap());
    }
    assert!(
        streamed.iter().any(|alert| alert.source == "compliance"
            && alert.message.contains("balances_match_entries"))
    );
    assert!(
        streamed
            .iter()
            .all(|alert| alert.acknowledged_by.is_empty())
    );

    let acknowledged = client
        .acknowledge_alert(authed(
            &app.admin_key,
            pb::AcknowledgeAlertRequest {
                alert_id: streamed[0].id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .alert
        .unwrap();
    assert_eq!(acknowledged.acknowledged_by, app.admin_id);
    let again = client
        .acknowledge_alert(authed(
            &app.admin_key,
            pb::AcknowledgeAlertRequest {
                alert_id: streamed[0].id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .alert
        .unwrap();
    assert_eq!(again, acknowledged, "acknowledging twice changes nothing");
    let open = client
        .list_alerts(authed(
            &app.admin_key,
            pb::ListAlertsRequest {
                unacknowledged_only: true,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .alerts;
    assert!(open.iter().all(|alert| alert.id != acknowledged.id));

    let bad_daily = client
        .generate_compliance_report(authed(
            &app.admin_key,
            pb::GenerateComplianceReportRequest {
                report_type: pb::ReportType::Daily as i32,
                period_start: period(start),
                period_end: period(end),
                request_id: "daily".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_daily.code(), Code::InvalidArgument);
}

async fn only_auditors_and_admins_oversee_and_members_see_their_own_events(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (member_id, member, _) = app.member_with_wallet("alice").await;
    let (_, auditor) = app.user_with_role("auditor", ipb::Role::Auditor).await;
    let mut identity = app.identity().await;
    identity
        .update_user(authed(
            &member,
            ipb::UpdateUserRequest {
                user: Some(ipb::User {
                    id: member_id.clone(),
                    language: "de".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["language".into()],
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let mut client = compliance(&app).await;
    let own = client
        .list_audit_events(authed(&member, pb::ListAuditEventsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .events;
    assert!(!own.is_empty());
    assert!(own.iter().all(|event| event.actor_user_id == member_id));
    let others = client
        .list_audit_events(authed(
            &member,
            pb::ListAuditEventsRequest {
                actor_user_id: app.admin_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(others.code(), Code::PermissionDenied);
    let admin_event = client
        .list_audit_events(authed(
            &auditor,
            pb::ListAuditEventsRequest {
                actor_user_id: app.admin_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .events
        .remove(0);
    let peek = client
        .get_audit_event(authed(
            &member,
            pb::GetAuditEventRequest {
                event_id: admin_event.id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(peek.code(), Code::PermissionDenied);
    client
        .get_audit_event(authed(
            &auditor,
            pb::GetAuditEventRequest {
                event_id: admin_event.id,
            },
        ))
        .await
        .expect("auditors read all");
    for status in [
        client
            .verify_audit_log(authed(&member, pb::VerifyAuditLogRequest::default()))
            .await
            .unwrap_err(),
        client
            .list_alerts(authed(&member, pb::ListAlertsRequest::default()))
            .await
            .unwrap_err(),
        client
            .list_compliance_reports(authed(&member, pb::ListComplianceReportsRequest::default()))
            .await
            .unwrap_err(),
    ] {
        assert_eq!(status.code(), Code::PermissionDenied);
    }
    client
        .verify_audit_log(authed(&auditor, pb::VerifyAuditLogRequest::default()))
        .await
        .expect("auditors verify");
    let filtered = client
        .list_audit_events(authed(
            &auditor,
            pb::ListAuditEventsRequest {
                resource_type: "user".into(),
                resource_id: member_id.clone(),
                action: "/azora.identity.v1.IdentityService/UpdateUser".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(filtered.len(), 1);
}
