//! A key never does more than its user: every RPC in the descriptor set is
//! called with a member's own key and with that member's service key, and
//! the service key is never allowed anything the member is not. On
//! PostgreSQL and SQLite, over a real channel.

use std::collections::BTreeMap;

use crate::common::money::{address, azr};
use crate::common::{Backend, TestApp, authed};
use azora::proto::compliance as cpb;
use azora::proto::compliance::compliance_service_client::ComplianceServiceClient;
use azora::proto::identity as ipb;
use azora::proto::mining as mpb;
use azora::proto::mining::mining_service_client::MiningServiceClient;
use azora::proto::treasury as tpb;
use azora::proto::treasury::billing_service_client::BillingServiceClient;
use azora::proto::treasury::founder_compensation_service_client::FounderCompensationServiceClient;
use azora::proto::treasury::knowledge_reward_service_client::KnowledgeRewardServiceClient;
use azora::proto::types::Decimal;
use prost::Message;
use tonic::Code;
use tonic::transport::Channel;

on_both_backends!(a_service_key_is_never_allowed_what_its_member_is_not);

/// Every `package.Service/Method` of azora's own services.
fn every_rpc() -> Vec<String> {
    let set = prost_types::FileDescriptorSet::decode(azora::proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut methods = Vec::new();
    for file in set.file {
        let package = file.package().to_owned();
        if !package.starts_with("azora.") {
            continue;
        }
        for service in file.service {
            for method in &service.method {
                methods.push(format!("{package}.{}/{}", service.name(), method.name()));
            }
        }
    }
    methods.sort();
    methods
}

/// What the two runs (0: the member's key, 1: the service key) act on.
struct Fixture {
    channel: Channel,
    user: String,
    wallet: String,
    other_user: String,
    other_wallet: String,
    /// Sessions to record into (one per run) and to end (two more).
    sessions: [String; 4],
    /// A spare key of the member's per run, to revoke.
    spare_keys: [String; 2],
    subscription: String,
    invoice: String,
    compensation: String,
    withdrawal: String,
}

fn decimal(value: &str) -> Option<Decimal> {
    azr(value)
}

fn timestamp(at: chrono::DateTime<chrono::Utc>) -> Option<prost_types::Timestamp> {
    Some(crate::common::timestamp(at))
}

fn sample() -> mpb::Sample {
    mpb::Sample {
        sample_time: timestamp(chrono::Utc::now()),
        hashrate_mhs: 10.0,
        power_watts: 100.0,
        temperature_celsius: 50.0,
        earnings_usd: decimal("0.5"),
        ..Default::default()
    }
}

async fn fixture(app: &TestApp) -> (Fixture, String, String) {
    let (user, member_key, wallet) = app.member_with_wallet("member").await;
    app.fund(&wallet, "100").await;
    let (other_user, _, other_wallet) = app.member_with_wallet("other").await;
    let mut identity = app.identity().await;
    let key = |role: ipb::Role, name: &str| ipb::CreateApiKeyRequest {
        user_id: user.clone(),
        name: name.into(),
        role: role as i32,
        ..Default::default()
    };
    let mut issue = async |request: ipb::CreateApiKeyRequest| {
        identity
            .create_api_key(authed(&member_key, request))
            .await
            .unwrap()
            .into_inner()
    };
    let service_key = issue(key(ipb::Role::Service, "rig")).await.secret;
    let spare_keys = [
        issue(key(ipb::Role::Member, "spare-0"))
            .await
            .api_key
            .unwrap()
            .id,
        issue(key(ipb::Role::Service, "spare-1"))
            .await
            .api_key
            .unwrap()
            .id,
    ];
    let channel = app.channel().await;
    let mut mining = MiningServiceClient::new(channel.clone());
    let mut sessions = Vec::new();
    for _ in 0..4 {
        let session = mining
            .start_session(authed(
                &member_key,
                mpb::StartSessionRequest {
                    wallet_id: wallet.clone(),
                    algorithm: "sha256".into(),
                    pool_name: "alpha".into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .session
            .unwrap();
        sessions.push(session.id);
    }
    let created = BillingServiceClient::new(channel.clone())
        .create_subscription(authed(
            &member_key,
            tpb::CreateSubscriptionRequest {
                request_id: "sub-1".into(),
                user_id: user.clone(),
                tier: tpb::SubscriptionTier::Basic as i32,
                currency: tpb::Currency::Azr as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let (founder, _) = app
        .user_of_type("founder", ipb::UserType::Founder, ipb::Role::Member)
        .await;
    let founder_wallet = app.wallet_for(&founder).await;
    let compensation = FounderCompensationServiceClient::new(channel.clone())
        .create_founder_compensation(authed(
            &app.admin_key,
            tpb::CreateFounderCompensationRequest {
                request_id: "comp-1".into(),
                founder_id: founder,
                wallet_id: founder_wallet,
                month: "2026-11".into(),
                r#type: tpb::CompensationType::Salary as i32,
                amount: decimal("10"),
                notes: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .compensation
        .unwrap()
        .id;
    let withdrawal = app
        .treasury()
        .await
        .withdraw(authed(
            &member_key,
            tpb::WithdrawRequest {
                request_id: "hold-1".into(),
                from_wallet_id: wallet.clone(),
                amount: decimal("1"),
                destination_address: address(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .transaction
        .unwrap()
        .id;
    let fixture = Fixture {
        channel,
        user,
        wallet,
        other_user,
        other_wallet,
        sessions: sessions.try_into().unwrap(),
        spare_keys,
        subscription: created.subscription.unwrap().id,
        invoice: created.invoices[0].id.clone(),
        compensation,
        withdrawal,
    };
    (fixture, member_key, service_key)
}

/// Calls `method` with `key` as a member would use it on their own things,
/// with a valid request; `run` keeps the two runs' request ids apart.
async fn call(fx: &Fixture, method: &str, key: &str, run: usize) -> Result<(), tonic::Status> {
    let id = |name: &str| format!("{name}-{run}");
    let unknown = uuid::Uuid::now_v7().to_string();
    let c = fx.channel.clone();
    let mut identity = ipb::identity_service_client::IdentityServiceClient::new(c.clone());
    let mut treasury = tpb::treasury_service_client::TreasuryServiceClient::new(c.clone());
    let mut mining = MiningServiceClient::new(c.clone());
    let mut compliance = ComplianceServiceClient::new(c.clone());
    let mut billing = BillingServiceClient::new(c.clone());
    let mut payroll = FounderCompensationServiceClient::new(c.clone());
    let mut rewards = KnowledgeRewardServiceClient::new(c.clone());
    let name = method.rsplit('/').next().unwrap();
    macro_rules! done {
        ($call:expr) => {
            $call.await.map(|_| ())
        };
    }
    match name {
        // Identity
        "CreateUser" => done!(identity.create_user(authed(
            key,
            ipb::CreateUserRequest {
                username: id("new-user"),
                user_type: ipb::UserType::Student as i32,
                ..Default::default()
            }
        ))),
        "GetUser" => done!(identity.get_user(authed(
            key,
            ipb::GetUserRequest {
                user_id: fx.user.clone()
            }
        ))),
        "ListUsers" => done!(identity.list_users(authed(key, ipb::ListUsersRequest::default()))),
        "UpdateUser" => done!(identity.update_user(authed(
            key,
            ipb::UpdateUserRequest {
                user: Some(ipb::User {
                    id: fx.user.clone(),
                    email: format!("member{run}@example.com"),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["email".into()],
                }),
                ..Default::default()
            }
        ))),
        "SetUserRole" => done!(identity.set_user_role(authed(
            key,
            ipb::SetUserRoleRequest {
                user_id: fx.other_user.clone(),
                role: ipb::Role::Treasurer as i32,
                ..Default::default()
            }
        ))),
        "SetKycStatus" => done!(identity.set_kyc_status(authed(
            key,
            ipb::SetKycStatusRequest {
                user_id: fx.user.clone(),
                kyc_status: ipb::KycStatus::Verified as i32,
                ..Default::default()
            }
        ))),
        "CreateWallet" => done!(identity.create_wallet(authed(
            key,
            ipb::CreateWalletRequest {
                owner_id: fx.user.clone(),
                address: address(),
                ..Default::default()
            }
        ))),
        "GetWallet" => done!(identity.get_wallet(authed(
            key,
            ipb::GetWalletRequest {
                wallet_id: fx.wallet.clone()
            }
        ))),
        "ListWallets" => {
            done!(identity.list_wallets(authed(key, ipb::ListWalletsRequest::default())))
        }
        "CreateApiKey" => done!(identity.create_api_key(authed(
            key,
            ipb::CreateApiKeyRequest {
                user_id: fx.user.clone(),
                role: ipb::Role::Service as i32,
                ..Default::default()
            }
        ))),
        "ListApiKeys" => {
            done!(identity.list_api_keys(authed(key, ipb::ListApiKeysRequest::default())))
        }
        "RevokeApiKey" => done!(identity.revoke_api_key(authed(
            key,
            ipb::RevokeApiKeyRequest {
                api_key_id: fx.spare_keys[run].clone(),
                ..Default::default()
            }
        ))),
        // Treasury
        "Mint" => done!(treasury.mint(authed(
            key,
            tpb::MintRequest {
                request_id: id("mint"),
                amount: decimal("5"),
                to_wallet_id: fx.wallet.clone(),
                ..Default::default()
            }
        ))),
        "Burn" => done!(treasury.burn(authed(
            key,
            tpb::BurnRequest {
                request_id: id("burn"),
                amount: decimal("1"),
                from_wallet_id: fx.wallet.clone(),
                ..Default::default()
            }
        ))),
        "Transfer" => done!(treasury.transfer(authed(
            key,
            tpb::TransferRequest {
                request_id: id("transfer"),
                from_wallet_id: fx.wallet.clone(),
                to_wallet_id: fx.other_wallet.clone(),
                amount: decimal("1"),
                ..Default::default()
            }
        ))),
        "CreateTransfers" => done!(treasury.create_transfers(authed(
            key,
            tpb::CreateTransfersRequest {
                request_id: id("batch"),
                mode: tpb::BatchMode::Atomic as i32,
                transfers: vec![tpb::TransferRequest {
                    request_id: id("batch-item"),
                    from_wallet_id: fx.wallet.clone(),
                    to_wallet_id: fx.other_wallet.clone(),
                    amount: decimal("1"),
                    ..Default::default()
                }],
            }
        ))),
        "MultiTransfer" => done!(treasury.multi_transfer(authed(
            key,
            tpb::MultiTransferRequest {
                request_id: id("multi"),
                from_wallet_id: fx.wallet.clone(),
                payments: vec![tpb::Payment {
                    to_wallet_id: fx.other_wallet.clone(),
                    amount: decimal("1"),
                }],
                ..Default::default()
            }
        ))),
        "Deposit" => done!(treasury.deposit(authed(
            key,
            tpb::DepositRequest {
                request_id: id("deposit"),
                to_wallet_id: fx.wallet.clone(),
                amount: decimal("5"),
                ..Default::default()
            }
        ))),
        "Withdraw" => done!(treasury.withdraw(authed(
            key,
            tpb::WithdrawRequest {
                request_id: id("withdraw"),
                from_wallet_id: fx.wallet.clone(),
                amount: decimal("1"),
                destination_address: address(),
                ..Default::default()
            }
        ))),
        "ConfirmTransaction" => {
            done!(treasury.confirm_transaction(authed(
                key,
                tpb::ConfirmTransactionRequest {
                    request_id: id("confirm"),
                    transaction_id: fx.withdrawal.clone(),
                    ..Default::default()
                }
            )))
        }
        "FailTransaction" => done!(treasury.fail_transaction(authed(
            key,
            tpb::FailTransactionRequest {
                request_id: id("fail"),
                transaction_id: fx.withdrawal.clone(),
                reason: "no".into(),
            }
        ))),
        "GetTransaction" => done!(treasury.get_transaction(authed(
            key,
            tpb::GetTransactionRequest {
                transaction_id: fx.withdrawal.clone()
            }
        ))),
        "ListTransactions" => {
            done!(treasury.list_transactions(authed(key, tpb::ListTransactionsRequest::default())))
        }
        "GetBalance" => done!(treasury.get_balance(authed(
            key,
            tpb::GetBalanceRequest {
                wallet_id: fx.wallet.clone(),
                as_of_time: None,
            }
        ))),
        "GetTreasurySummary" => {
            done!(treasury.get_treasury_summary(authed(key, tpb::GetTreasurySummaryRequest {})))
        }
        "ReverseTransaction" => done!(treasury.reverse_transaction(authed(
            key,
            tpb::ReverseTransactionRequest {
                request_id: id("reverse"),
                transaction_id: fx.withdrawal.clone(),
                ..Default::default()
            }
        ))),
        "Stake" => done!(treasury.stake(authed(
            key,
            tpb::StakeRequest {
                request_id: id("stake"),
                wallet_id: fx.wallet.clone(),
                amount: decimal("1"),
                ..Default::default()
            }
        ))),
        "Unstake" => done!(treasury.unstake(authed(
            key,
            tpb::UnstakeRequest {
                request_id: id("unstake"),
                wallet_id: fx.wallet.clone(),
                amount: decimal("1"),
                ..Default::default()
            }
        ))),
        // Mining
        "StartSession" => done!(mining.start_session(authed(
            key,
            mpb::StartSessionRequest {
                wallet_id: fx.wallet.clone(),
                algorithm: "sha256".into(),
                pool_name: "alpha".into(),
                ..Default::default()
            }
        ))),
        "RecordStatistics" => {
            done!(mining.record_statistics(authed(
                key,
                tokio_stream::iter([mpb::RecordStatisticsRequest {
                    session_id: fx.sessions[run].clone(),
                    samples: vec![sample()],
                    ..Default::default()
                }])
            )))
        }
        "EndSession" => done!(mining.end_session(authed(
            key,
            mpb::EndSessionRequest {
                session_id: fx.sessions[2 + run].clone(),
                ..Default::default()
            }
        ))),
        "GetSession" => done!(mining.get_session(authed(
            key,
            mpb::GetSessionRequest {
                session_id: fx.sessions[0].clone()
            }
        ))),
        "ListSessions" => {
            done!(mining.list_sessions(authed(key, mpb::ListSessionsRequest::default())))
        }
        "GetMiningPerformance" => done!(mining.get_mining_performance(authed(
            key,
            mpb::GetMiningPerformanceRequest {
                start_time: timestamp(chrono::Utc::now() - chrono::Duration::hours(1)),
                end_time: timestamp(chrono::Utc::now()),
                ..Default::default()
            }
        ))),
        "WatchSession" => done!(mining.watch_session(authed(
            key,
            mpb::WatchSessionRequest {
                session_id: fx.sessions[1 - run].clone(),
                ..Default::default()
            }
        ))),
        // Compliance
        "ListAuditEvents" => {
            done!(compliance.list_audit_events(authed(key, cpb::ListAuditEventsRequest::default())))
        }
        "GetAuditEvent" => {
            done!(
                compliance
                    .get_audit_event(authed(key, cpb::GetAuditEventRequest { event_id: unknown }))
            )
        }
        "VerifyAuditLog" => {
            done!(compliance.verify_audit_log(authed(key, cpb::VerifyAuditLogRequest::default())))
        }
        "GenerateComplianceReport" => done!(compliance.generate_compliance_report(authed(
            key,
            cpb::GenerateComplianceReportRequest {
                report_type: cpb::ReportType::AdHoc as i32,
                period_start: timestamp(chrono::Utc::now() - chrono::Duration::hours(1)),
                period_end: timestamp(chrono::Utc::now()),
                ..Default::default()
            }
        ))),
        "GetComplianceReport" => {
            done!(compliance.get_compliance_report(authed(
                key,
                cpb::GetComplianceReportRequest { report_id: unknown }
            )))
        }
        "ListComplianceReports" => done!(
            compliance
                .list_compliance_reports(authed(key, cpb::ListComplianceReportsRequest::default()))
        ),
        "ListAlerts" => {
            done!(compliance.list_alerts(authed(key, cpb::ListAlertsRequest::default())))
        }
        "AcknowledgeAlert" => done!(compliance.acknowledge_alert(authed(
            key,
            cpb::AcknowledgeAlertRequest {
                alert_id: unknown,
                ..Default::default()
            }
        ))),
        "WatchAlerts" => {
            done!(compliance.watch_alerts(authed(key, cpb::WatchAlertsRequest::default())))
        }
        // Billing
        "CreateSubscription" => done!(billing.create_subscription(authed(
            key,
            tpb::CreateSubscriptionRequest {
                request_id: id("subscribe"),
                user_id: fx.user.clone(),
                tier: tpb::SubscriptionTier::Pro as i32,
                currency: tpb::Currency::Azr as i32,
                ..Default::default()
            }
        ))),
        "CancelSubscription" => done!(billing.cancel_subscription(authed(
            key,
            tpb::CancelSubscriptionRequest {
                subscription_id: fx.subscription.clone(),
                ..Default::default()
            }
        ))),
        "ListSubscriptions" => {
            done!(billing.list_subscriptions(authed(key, tpb::ListSubscriptionsRequest::default())))
        }
        "ListInvoices" => {
            done!(billing.list_invoices(authed(key, tpb::ListInvoicesRequest::default())))
        }
        "PayInvoice" => done!(billing.pay_invoice(authed(
            key,
            tpb::PayInvoiceRequest {
                invoice_id: fx.invoice.clone(),
                wallet_id: fx.wallet.clone(),
                ..Default::default()
            }
        ))),
        "GetUserBalances" => {
            done!(billing.get_user_balances(authed(key, tpb::GetUserBalancesRequest::default())))
        }
        // Founder compensation
        "CreateFounderCompensation" => done!(payroll.create_founder_compensation(authed(
            key,
            tpb::CreateFounderCompensationRequest {
                request_id: id("comp"),
                founder_id: fx.user.clone(),
                wallet_id: fx.wallet.clone(),
                month: "2026-10".into(),
                r#type: tpb::CompensationType::Bonus as i32,
                amount: decimal("1"),
                notes: String::new(),
            }
        ))),
        "ApproveFounderCompensation" => done!(payroll.approve_founder_compensation(authed(
            key,
            tpb::ApproveFounderCompensationRequest {
                compensation_id: fx.compensation.clone(),
                ..Default::default()
            }
        ))),
        "PayFounderCompensation" => done!(payroll.pay_founder_compensation(authed(
            key,
            tpb::PayFounderCompensationRequest {
                compensation_id: fx.compensation.clone(),
                ..Default::default()
            }
        ))),
        "CancelFounderCompensation" => done!(payroll.cancel_founder_compensation(authed(
            key,
            tpb::CancelFounderCompensationRequest {
                compensation_id: fx.compensation.clone(),
                reason: "no".into(),
                ..Default::default()
            }
        ))),
        "GetFounderCompensation" => done!(payroll.get_founder_compensation(authed(
            key,
            tpb::GetFounderCompensationRequest {
                compensation_id: fx.compensation.clone()
            }
        ))),
        "ListFounderCompensations" => done!(payroll.list_founder_compensations(authed(
            key,
            tpb::ListFounderCompensationsRequest::default()
        ))),
        "GetFounderCompensationSummary" => done!(payroll.get_founder_compensation_summary(authed(
            key,
            tpb::GetFounderCompensationSummaryRequest::default()
        ))),
        // Knowledge rewards
        "RecordProofOfKnowledge" => done!(rewards.record_proof_of_knowledge(authed(
            key,
            tpb::RecordProofOfKnowledgeRequest {
                source_transaction_id: id("lms"),
                student_id: fx.other_user.clone(),
                wallet_id: fx.other_wallet.clone(),
                kind: tpb::ProofKind::Course as i32,
                subject: "rust-101".into(),
                score: decimal("90"),
                evidence_hash: format!("{:064x}", run + 1),
                reward_amount: decimal("5"),
            }
        ))),
        "GetKnowledgeReward" => done!(rewards.get_knowledge_reward(authed(
            key,
            tpb::GetKnowledgeRewardRequest {
                source_transaction_id: "lms-0".into()
            }
        ))),
        "ListProofsOfKnowledge" => {
            done!(rewards.list_proofs_of_knowledge(authed(
                key,
                tpb::ListProofsOfKnowledgeRequest::default()
            )))
        }
        "ListStudentEarnings" => {
            done!(
                rewards
                    .list_student_earnings(authed(key, tpb::ListStudentEarningsRequest::default()))
            )
        }
        other => panic!("no request for {other}: every RPC must be in this matrix"),
    }
}

fn denied(code: Code) -> bool {
    matches!(code, Code::PermissionDenied | Code::Unauthenticated)
}

async fn a_service_key_is_never_allowed_what_its_member_is_not(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (fixture, member_key, service_key) = fixture(&app).await;
    let mut matrix: BTreeMap<String, [Code; 2]> = BTreeMap::new();
    for method in every_rpc() {
        let mut codes = [Code::Ok; 2];
        for (run, key) in [&member_key, &service_key].into_iter().enumerate() {
            codes[run] = match call(&fixture, &method, key, run).await {
                Ok(()) => Code::Ok,
                Err(status) => {
                    assert_ne!(
                        status.code(),
                        Code::InvalidArgument,
                        "{method}: the matrix's request must be valid: {status:?}"
                    );
                    assert!(
                        !matches!(status.code(), Code::Internal | Code::Unknown),
                        "{method}: {status:?}"
                    );
                    status.code()
                }
            };
        }
        matrix.insert(method, codes);
    }
    println!("{:<60} {:<20} service key", "RPC", "member key");
    for (method, [member, service]) in &matrix {
        println!("{method:<60} {:<20} {:?}", format!("{member:?}"), service);
    }
    let widened: Vec<&String> = matrix
        .iter()
        .filter(|(_, [member, service])| denied(*member) && !denied(*service))
        .map(|(method, _)| method)
        .collect();
    assert!(
        widened.is_empty(),
        "a service key may do more than its member: {widened:?}"
    );
    assert_eq!(matrix.len(), every_rpc().len());
    // The holes this matrix closes stay closed.
    for method in [
        "RecordProofOfKnowledge",
        "Mint",
        "ReverseTransaction",
        "CreateApiKey",
        "ConfirmTransaction",
    ] {
        let (_, [_, service]) = matrix
            .iter()
            .find(|(name, _)| name.ends_with(&format!("/{method}")))
            .unwrap();
        assert!(denied(*service), "{method}: {service:?}");
    }
    // And the member may still do what members do.
    for method in [
        "Transfer",
        "Stake",
        "Unstake",
        "StartSession",
        "RecordStatistics",
        "EndSession",
        "GetBalance",
    ] {
        let (_, [member, service]) = matrix
            .iter()
            .find(|(name, _)| name.ends_with(&format!("/{method}")))
            .unwrap();
        assert_eq!((*member, *service), (Code::Ok, Code::Ok), "{method}");
    }
}
