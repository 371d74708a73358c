//! KnowledgeRewardService over a real gRPC channel, on PostgreSQL and
//! SQLite: verified proofs pay students from circulation, once per source
//! transaction id however often and however concurrently it is sent.

use crate::common::money::{assert_books_balance, audited_calls, azr};
use crate::common::{Backend, TestApp, authed, violated_fields};
use azora::proto::identity as ipb;
use azora::proto::treasury as pb;
use azora::proto::treasury::knowledge_reward_service_client::KnowledgeRewardServiceClient;
use azora::proto::types::Decimal;
use tokio::task::JoinSet;
use tonic::Code;
use tonic::transport::Channel;

on_both_backends!(
    a_verified_proof_pays_the_student_from_circulation,
    one_source_id_pays_once_under_ten_concurrent_retries_and_refuses_another_proof,
    only_teachers_services_and_admins_verify_and_students_read_their_own,
    the_total_earned_is_exact_over_every_reward,
    a_reward_the_pool_cannot_cover_records_nothing,
    bad_input_names_every_field_and_writes_nothing,
);

async fn client(app: &TestApp) -> KnowledgeRewardServiceClient<Channel> {
    KnowledgeRewardServiceClient::new(app.channel().await)
}

fn evidence(seed: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(seed.as_bytes()))
}

fn proof_request(
    source: &str,
    student: &str,
    wallet: &str,
    reward: &str,
) -> pb::RecordProofOfKnowledgeRequest {
    pb::RecordProofOfKnowledgeRequest {
        source_transaction_id: source.into(),
        student_id: student.into(),
        wallet_id: wallet.into(),
        kind: pb::ProofKind::Course as i32,
        subject: "rust-101".into(),
        score: Some(Decimal {
            value: "87.5".into(),
        }),
        evidence_hash: evidence(source),
        reward_amount: azr(reward),
    }
}

/// A student with a wallet, and a teacher: (student id, student key, wallet, teacher key).
async fn classroom(app: &TestApp) -> (String, String, String, String) {
    let (student, student_key) = app
        .user_of_type("stu", ipb::UserType::Student, ipb::Role::Member)
        .await;
    let wallet = app.wallet_for(&student).await;
    let (_, teacher_key) = app
        .user_of_type("tea", ipb::UserType::Teacher, ipb::Role::Member)
        .await;
    (student, student_key, wallet, teacher_key)
}

async fn record(
    app: &TestApp,
    key: &str,
    request: pb::RecordProofOfKnowledgeRequest,
) -> Result<pb::RecordProofOfKnowledgeResponse, tonic::Status> {
    client(app)
        .await
        .record_proof_of_knowledge(authed(key, request))
        .await
        .map(|response| response.into_inner())
}

async fn earnings(
    app: &TestApp,
    key: &str,
    student: &str,
) -> Result<pb::ListStudentEarningsResponse, tonic::Status> {
    client(app)
        .await
        .list_student_earnings(authed(
            key,
            pb::ListStudentEarningsRequest {
                student_id: student.into(),
                ..Default::default()
            },
        ))
        .await
        .map(|response| response.into_inner())
}

async fn a_verified_proof_pays_the_student_from_circulation(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (student, student_key, wallet, teacher) = classroom(&app).await;
    app.mint("1000").await; // 140 AZR to circulation
    assert_eq!(
        app.pool(pb::SystemAccount::CirculationPool).await,
        "140.000000"
    );

    let recorded = record(
        &app,
        &teacher,
        proof_request("lms-tx-1", &student, &wallet, "12.5"),
    )
    .await
    .unwrap();
    assert!(!recorded.replayed);
    let proof = recorded.proof.unwrap();
    assert_eq!(proof.student_id, student);
    assert_eq!(proof.score.as_ref().unwrap().value, "87.50");
    assert_eq!(proof.evidence_hash, evidence("lms-tx-1"));
    assert_eq!(proof.source_transaction_id, "lms-tx-1");
    let reward = proof.reward.clone().unwrap();
    assert_eq!(reward.amount_azr.as_ref().unwrap().value, "12.500000");
    assert_eq!(reward.amount_usd.as_ref().unwrap().value, "12.500000");
    assert_eq!(reward.wallet_id, wallet);
    assert_eq!(app.available(&wallet).await, "12.500000");
    assert_eq!(
        app.pool(pb::SystemAccount::CirculationPool).await,
        "127.500000"
    );

    let transfer = app
        .treasury()
        .await
        .get_transaction(authed(
            &app.admin_key,
            pb::GetTransactionRequest {
                transaction_id: reward.transaction_id.clone(),
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
        pb::SystemAccount::CirculationPool as i32
    );
    assert_eq!(transfer.to_wallet_id, wallet);

    // The lookup by source id, for the student and for staff.
    for key in [&student_key, &app.admin_key] {
        let found = client(&app)
            .await
            .get_knowledge_reward(authed(
                key,
                pb::GetKnowledgeRewardRequest {
                    source_transaction_id: "lms-tx-1".into(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .proof
            .unwrap();
        assert_eq!(found, proof);
    }
    let missing = client(&app)
        .await
        .get_knowledge_reward(authed(
            &app.admin_key,
            pb::GetKnowledgeRewardRequest {
                source_transaction_id: "nope".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let listed = earnings(&app, &student_key, "").await.unwrap();
    assert_eq!(listed.earnings, [reward]);
    assert_eq!(listed.total_earned_azr.unwrap().value, "12.500000");
    assert_eq!(listed.reward_count, 1);
    let proofs = client(&app)
        .await
        .list_proofs_of_knowledge(authed(
            &student_key,
            pb::ListProofsOfKnowledgeRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner()
        .proofs;
    assert_eq!(proofs, std::slice::from_ref(&proof));
    assert_books_balance(&app).await;
    assert_eq!(
        audited_calls(&app, "proof_of_knowledge").await,
        [("RecordProofOfKnowledge".to_owned(), proof.verified_by)]
    );
}

async fn one_source_id_pays_once_under_ten_concurrent_retries_and_refuses_another_proof(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let (student, _, wallet, teacher) = classroom(&app).await;
    let (_, service) = app.user_with_role("lms", ipb::Role::Service).await;
    app.mint("1000").await;
    let mut senders = JoinSet::new();
    for attempt in 0..10 {
        let channel = app.channel().await;
        // Retries arrive through both of the LMS's keys: a teacher's and a service's.
        let key = if attempt % 2 == 0 {
            teacher.clone()
        } else {
            service.clone()
        };
        let request = proof_request("lms-tx-42", &student, &wallet, "7.000001");
        senders.spawn(async move {
            KnowledgeRewardServiceClient::new(channel)
                .record_proof_of_knowledge(authed(&key, request))
                .await
                .map(|response| response.into_inner())
        });
    }
    let mut proofs = std::collections::HashSet::new();
    let mut fresh = 0;
    while let Some(result) = senders.join_next().await {
        let response = result.unwrap().expect("every retry succeeds");
        fresh += usize::from(!response.replayed);
        let proof = response.proof.unwrap();
        proofs.insert((proof.id, proof.reward.unwrap().transaction_id));
    }
    assert_eq!(fresh, 1, "exactly one call paid");
    assert_eq!(
        proofs.len(),
        1,
        "all ten answers name the same proof and transfer"
    );
    assert_eq!(app.available(&wallet).await, "7.000001");
    assert_eq!(
        app.pool(pb::SystemAccount::CirculationPool).await,
        "132.999999"
    );

    // The same source id with another proof is refused and pays nothing.
    let mut other = proof_request("lms-tx-42", &student, &wallet, "8");
    let refused = record(&app, &teacher, other.clone()).await.unwrap_err();
    assert_eq!(refused.code(), Code::AlreadyExists, "{refused:?}");
    other.reward_amount = azr("7.000001");
    other.subject = "rust-102".into();
    assert_eq!(
        record(&app, &teacher, other).await.unwrap_err().code(),
        Code::AlreadyExists
    );
    assert_eq!(app.available(&wallet).await, "7.000001");
    assert_eq!(
        earnings(&app, &app.admin_key, &student)
            .await
            .unwrap()
            .reward_count,
        1
    );
    assert_books_balance(&app).await;
}

async fn only_teachers_services_and_admins_verify_and_students_read_their_own(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (student, student_key, wallet, teacher) = classroom(&app).await;
    let (other_student, other_key) = app
        .user_of_type("ann", ipb::UserType::Student, ipb::Role::Member)
        .await;
    let (_, treasurer) = app.user_with_role("tess", ipb::Role::Treasurer).await;
    let (founder, founder_key) = app
        .user_of_type("fay", ipb::UserType::Founder, ipb::Role::Member)
        .await;
    let founder_wallet = app.wallet_for(&founder).await;
    app.mint("1000").await;

    // Students and non-teacher staff do not verify.
    for key in [&student_key, &other_key, &treasurer, &founder_key] {
        let refused = record(
            &app,
            key,
            proof_request(&uuid::Uuid::new_v4().to_string(), &student, &wallet, "1"),
        )
        .await;
        assert_eq!(refused.unwrap_err().code(), Code::PermissionDenied);
    }
    // A service key of the student's own cannot reward the student.
    let own_service = app
        .identity()
        .await
        .create_api_key(authed(
            &app.admin_key,
            ipb::CreateApiKeyRequest {
                user_id: student.clone(),
                role: ipb::Role::Service as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .secret;
    let self_reward = record(
        &app,
        &own_service,
        proof_request("self", &student, &wallet, "1"),
    )
    .await;
    assert_eq!(self_reward.unwrap_err().code(), Code::PermissionDenied);
    // Only students are rewarded, into their own wallet, up to the limit.
    let not_student = record(
        &app,
        &teacher,
        proof_request("f", &founder, &founder_wallet, "1"),
    )
    .await
    .unwrap_err();
    assert_eq!(not_student.code(), Code::FailedPrecondition);
    let wrong_wallet = record(
        &app,
        &teacher,
        proof_request("w", &other_student, &wallet, "1"),
    )
    .await
    .unwrap_err();
    assert_eq!(violated_fields(&wrong_wallet), ["wallet_id"]);
    let too_much = record(
        &app,
        &app.admin_key,
        proof_request("big", &student, &wallet, "1000.000001"),
    )
    .await
    .unwrap_err();
    assert_eq!(violated_fields(&too_much), ["reward_amount"]);
    record(
        &app,
        &app.admin_key,
        proof_request("ok", &student, &wallet, "1000"),
    )
    .await
    .unwrap_err(); // pool holds 140
    record(&app, &teacher, proof_request("ok", &student, &wallet, "1"))
        .await
        .unwrap();

    // Reading: a student their own, staff everyone's.
    assert_eq!(
        earnings(&app, &other_key, &student)
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        earnings(&app, &other_key, "").await.unwrap().reward_count,
        0
    );
    assert_eq!(
        earnings(&app, &treasurer, &student)
            .await
            .unwrap()
            .reward_count,
        1
    );
    let lookup = client(&app)
        .await
        .get_knowledge_reward(authed(
            &other_key,
            pb::GetKnowledgeRewardRequest {
                source_transaction_id: "ok".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(lookup.code(), Code::PermissionDenied);
    let theirs = client(&app)
        .await
        .list_proofs_of_knowledge(authed(
            &other_key,
            pb::ListProofsOfKnowledgeRequest {
                student_id: student.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(theirs.code(), Code::PermissionDenied);
}

async fn the_total_earned_is_exact_over_every_reward(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (student, student_key, wallet, teacher) = classroom(&app).await;
    app.mint("10000").await;
    for (index, reward) in ["0.000001", "12.5", "100", "0.333333"].iter().enumerate() {
        let mut request = proof_request(&format!("src-{index}"), &student, &wallet, reward);
        request.kind = pb::ProofKind::Achievement as i32;
        record(&app, &teacher, request).await.unwrap();
    }
    // A page of two still reports the total over all four.
    let page = client(&app)
        .await
        .list_student_earnings(authed(
            &student_key,
            pb::ListStudentEarningsRequest {
                page_size: 2,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.earnings.len(), 2);
    assert_eq!(page.reward_count, 4);
    assert_eq!(page.total_earned_azr.unwrap().value, "112.833334");
    assert_eq!(page.total_earned_usd.unwrap().value, "112.833334");
    let rest = client(&app)
        .await
        .list_student_earnings(authed(
            &student_key,
            pb::ListStudentEarningsRequest {
                page_size: 2,
                page_token: page.next_page_token,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.earnings.len(), 2);
    assert!(rest.next_page_token.is_empty());
    assert_eq!(app.available(&wallet).await, "112.833334");
    let achievements = client(&app)
        .await
        .list_proofs_of_knowledge(authed(
            &app.admin_key,
            pb::ListProofsOfKnowledgeRequest {
                kind: pb::ProofKind::Achievement as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .proofs;
    assert_eq!(achievements.len(), 4);
}

async fn a_reward_the_pool_cannot_cover_records_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (student, _, wallet, teacher) = classroom(&app).await;
    app.mint("10").await; // 1.4 AZR to circulation
    let refused = record(
        &app,
        &teacher,
        proof_request("late", &student, &wallet, "1.400001"),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let lookup = client(&app)
        .await
        .get_knowledge_reward(authed(
            &app.admin_key,
            pb::GetKnowledgeRewardRequest {
                source_transaction_id: "late".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        lookup.code(),
        Code::NotFound,
        "the refused proof was not kept"
    );
    assert_eq!(app.available(&wallet).await, "0.000000");
    // The source id was not used up: once the pool is funded, it pays.
    app.mint("10").await;
    let paid = record(
        &app,
        &teacher,
        proof_request("late", &student, &wallet, "1.400001"),
    )
    .await
    .unwrap();
    assert!(!paid.replayed);
    assert_eq!(app.available(&wallet).await, "1.400001");
    assert_books_balance(&app).await;
}

async fn bad_input_names_every_field_and_writes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let error = client(&app)
        .await
        .record_proof_of_knowledge(authed(
            &app.admin_key,
            pb::RecordProofOfKnowledgeRequest {
                source_transaction_id: String::new(),
                student_id: "x".into(),
                wallet_id: String::new(),
                kind: 9,
                subject: " padded ".into(),
                score: Some(Decimal {
                    value: "100.5".into(),
                }),
                evidence_hash: "abc".into(),
                reward_amount: azr("0"),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&error),
        [
            "source_transaction_id",
            "student_id",
            "wallet_id",
            "kind",
            "subject",
            "score",
            "evidence_hash",
            "reward_amount"
        ]
    );
    let proofs = client(&app)
        .await
        .list_proofs_of_knowledge(authed(
            &app.admin_key,
            pb::ListProofsOfKnowledgeRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner()
        .proofs;
    assert!(proofs.is_empty());
}
