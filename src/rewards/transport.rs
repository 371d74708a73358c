//! KnowledgeRewardService over gRPC: parse, call one operation, convert.

use tonic::{Request, Response, Status};

use super::domain::{
    Earning, NewProof, Proof, ProofFilter, ProofKind, format_score, parse_evidence_hash,
    parse_score, parse_subject,
};
use super::operations::Rewards;
use crate::auth::principal;
use crate::error::{Error, FieldViolation};
use crate::money::RequestId;
use crate::proto::treasury::{self as pb, knowledge_reward_service_server::KnowledgeRewardService};
use crate::proto::types::Decimal;
use crate::transport::amount;
use crate::transport::parse_id;
use crate::transport::{Violations, azr_decimal as decimal, optional, timestamp};

pub struct KnowledgeRewardApi {
    rewards: Rewards,
}

impl KnowledgeRewardApi {
    pub fn new(rewards: Rewards) -> Self {
        Self { rewards }
    }
}

fn kind_from(field: &str, value: i32) -> Result<Option<ProofKind>, FieldViolation> {
    match pb::ProofKind::try_from(value) {
        Ok(pb::ProofKind::Unspecified) => Ok(None),
        Ok(pb::ProofKind::Course) => Ok(Some(ProofKind::Course)),
        Ok(pb::ProofKind::Achievement) => Ok(Some(ProofKind::Achievement)),
        Err(_) => Err(FieldViolation::new(field, "is not a known proof kind")),
    }
}

fn kind_to(value: ProofKind) -> pb::ProofKind {
    match value {
        ProofKind::Course => pb::ProofKind::Course,
        ProofKind::Achievement => pb::ProofKind::Achievement,
    }
}

fn source_id(field: &str, text: &str) -> Result<RequestId, FieldViolation> {
    RequestId::parse(field, text)
}

fn earning_to_proto(earning: Earning) -> pb::StudentEarning {
    let Earning {
        id,
        student,
        proof,
        source_transaction_id,
        wallet,
        amount_micros,
        transaction,
        created_at,
    } = earning;
    pb::StudentEarning {
        id: id.to_string(),
        student_id: student.to_string(),
        proof_id: proof.to_string(),
        source_transaction_id,
        wallet_id: wallet.to_string(),
        amount_azr: decimal(amount_micros),
        amount_usd: decimal(amount_micros),
        transaction_id: transaction.to_string(),
        create_time: Some(timestamp(created_at)),
    }
}

fn proof_to_proto(proof: Proof) -> pb::ProofOfKnowledge {
    let Proof {
        id,
        student,
        kind,
        subject,
        score_hundredths,
        evidence_hash,
        verified_by,
        verified_at,
        source_transaction_id,
        fingerprint: _,
        reward,
    } = proof;
    pb::ProofOfKnowledge {
        id: id.to_string(),
        student_id: student.to_string(),
        kind: kind_to(kind) as i32,
        subject,
        score: Some(Decimal {
            value: format_score(score_hundredths),
        }),
        evidence_hash,
        verified_by: verified_by.to_string(),
        source_transaction_id,
        verify_time: Some(timestamp(verified_at)),
        reward: reward.map(earning_to_proto),
    }
}

#[tonic::async_trait]
impl KnowledgeRewardService for KnowledgeRewardApi {
    async fn record_proof_of_knowledge(
        &self,
        request_message: Request<pb::RecordProofOfKnowledgeRequest>,
    ) -> Result<Response<pb::RecordProofOfKnowledgeResponse>, Status> {
        let caller = principal(&request_message)?;
        let pb::RecordProofOfKnowledgeRequest {
            source_transaction_id,
            student_id,
            wallet_id,
            kind,
            subject,
            score,
            evidence_hash,
            reward_amount,
        } = request_message.into_inner();
        let mut v = Violations::default();
        let source = v.check(source_id("source_transaction_id", &source_transaction_id));
        let student = v.check(parse_id("student_id", &student_id));
        let wallet = v.check(parse_id("wallet_id", &wallet_id));
        let kind = v.check(
            kind_from("kind", kind)
                .and_then(|kind| kind.ok_or_else(|| FieldViolation::new("kind", "is required"))),
        );
        let subject = v.check(parse_subject("subject", &subject));
        let score = v.check(parse_score(
            "score",
            score.as_ref().map(|d| d.value.as_str()).unwrap_or_default(),
        ));
        let evidence_hash = v.check(parse_evidence_hash("evidence_hash", &evidence_hash));
        let reward = v.check(amount("reward_amount", reward_amount.as_ref()));
        let (source, new) = v.finish(|| {
            Some((
                source?,
                NewProof {
                    student: student?,
                    wallet: wallet?,
                    kind: kind?,
                    subject: subject?,
                    score_hundredths: score?,
                    evidence_hash: evidence_hash?,
                    reward: reward?,
                },
            ))
        })?;
        let recorded = self.rewards.record(&caller, source, new).await?;
        Ok(Response::new(pb::RecordProofOfKnowledgeResponse {
            proof: Some(proof_to_proto(recorded.proof)),
            replayed: recorded.replayed,
        }))
    }

    async fn get_knowledge_reward(
        &self,
        request_message: Request<pb::GetKnowledgeRewardRequest>,
    ) -> Result<Response<pb::GetKnowledgeRewardResponse>, Status> {
        let caller = principal(&request_message)?;
        let pb::GetKnowledgeRewardRequest {
            source_transaction_id,
        } = request_message.into_inner();
        let source =
            source_id("source_transaction_id", &source_transaction_id).map_err(Error::from)?;
        let proof = self.rewards.get_by_source(&caller, source.as_str()).await?;
        Ok(Response::new(pb::GetKnowledgeRewardResponse {
            proof: Some(proof_to_proto(proof)),
        }))
    }

    async fn list_proofs_of_knowledge(
        &self,
        request_message: Request<pb::ListProofsOfKnowledgeRequest>,
    ) -> Result<Response<pb::ListProofsOfKnowledgeResponse>, Status> {
        let caller = principal(&request_message)?;
        let pb::ListProofsOfKnowledgeRequest {
            page_size,
            page_token,
            student_id,
            kind,
        } = request_message.into_inner();
        let mut v = Violations::default();
        let student = v.check(optional(&student_id, |text| parse_id("student_id", text)));
        let kind = v.check(kind_from("kind", kind));
        let filter = v.finish(|| {
            Some(ProofFilter {
                student: student?,
                kind: kind?,
            })
        })?;
        let page = self
            .rewards
            .list_proofs(&caller, filter, page_size, &page_token)
            .await?;
        Ok(Response::new(pb::ListProofsOfKnowledgeResponse {
            proofs: page.items.into_iter().map(proof_to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn list_student_earnings(
        &self,
        request_message: Request<pb::ListStudentEarningsRequest>,
    ) -> Result<Response<pb::ListStudentEarningsResponse>, Status> {
        let caller = principal(&request_message)?;
        let pb::ListStudentEarningsRequest {
            page_size,
            page_token,
            student_id,
        } = request_message.into_inner();
        let student =
            optional(&student_id, |text| parse_id("student_id", text)).map_err(Error::from)?;
        let earnings = self
            .rewards
            .list_earnings(&caller, student, page_size, &page_token)
            .await?;
        Ok(Response::new(pb::ListStudentEarningsResponse {
            earnings: earnings
                .page
                .items
                .into_iter()
                .map(earning_to_proto)
                .collect(),
            next_page_token: earnings.page.next_page_token,
            total_earned_azr: decimal(earnings.total_micros),
            total_earned_usd: decimal(earnings.total_micros),
            reward_count: earnings.reward_count,
        }))
    }
}
