//! KnowledgeRewardService over gRPC. Each handler parses its request with a
//! `TryFrom` into the domain input type named after the RPC (collecting
//! every violation), calls one operation and converts the result back.

use tonic::{Request, Response, Status};

use super::domain::{
    Earning, GetKnowledgeReward, ListProofsOfKnowledge, ListStudentEarnings, NewProof, Proof,
    ProofFilter, ProofKind, RecordProofOfKnowledge, format_score, parse_evidence_hash, parse_score,
    parse_subject,
};
use super::operations::{Earnings, Rewards};
use crate::auth::principal;
use crate::error::Error;
use crate::money::RequestId;
use crate::proto::treasury::{self as pb, knowledge_reward_service_server::KnowledgeRewardService};
use crate::proto::types::Decimal;
use crate::transport::{
    Violations, amount, azr_decimal as decimal, optional, parse_id, required, timestamp,
};

pub struct KnowledgeRewardApi {
    rewards: Rewards,
}

impl KnowledgeRewardApi {
    pub fn new(rewards: Rewards) -> Self {
        Self { rewards }
    }
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
        kind: kind.to_wire(),
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

fn earnings_to_proto(earnings: Earnings) -> pb::ListStudentEarningsResponse {
    let Earnings {
        page,
        reward_count,
        total_micros,
    } = earnings;
    pb::ListStudentEarningsResponse {
        earnings: page.items.into_iter().map(earning_to_proto).collect(),
        next_page_token: page.next_page_token,
        total_earned_azr: decimal(total_micros),
        total_earned_usd: decimal(total_micros),
        reward_count,
    }
}

impl TryFrom<pb::RecordProofOfKnowledgeRequest> for RecordProofOfKnowledge {
    type Error = Error;
    fn try_from(message: pb::RecordProofOfKnowledgeRequest) -> Result<Self, Error> {
        let pb::RecordProofOfKnowledgeRequest {
            source_transaction_id,
            student_id,
            wallet_id,
            kind,
            subject,
            score,
            evidence_hash,
            reward_amount,
        } = message;
        let mut v = Violations::default();
        let source = v.check(RequestId::parse(
            "source_transaction_id",
            &source_transaction_id,
        ));
        let student = v.check(parse_id("student_id", &student_id));
        let wallet = v.check(parse_id("wallet_id", &wallet_id));
        let kind = v.check(required("kind", ProofKind::from_wire("kind", kind)));
        let subject = v.check(parse_subject("subject", &subject));
        let score = v.check(parse_score(
            "score",
            score.as_ref().map(|d| d.value.as_str()).unwrap_or_default(),
        ));
        let evidence_hash = v.check(parse_evidence_hash("evidence_hash", &evidence_hash));
        let reward = v.check(amount("reward_amount", reward_amount.as_ref()));
        v.finish(|| {
            Some(RecordProofOfKnowledge {
                source: source?,
                proof: NewProof {
                    student: student?,
                    wallet: wallet?,
                    kind: kind?,
                    subject: subject?,
                    score_hundredths: score?,
                    evidence_hash: evidence_hash?,
                    reward: reward?,
                },
            })
        })
    }
}

impl TryFrom<pb::GetKnowledgeRewardRequest> for GetKnowledgeReward {
    type Error = Error;
    fn try_from(message: pb::GetKnowledgeRewardRequest) -> Result<Self, Error> {
        let pb::GetKnowledgeRewardRequest {
            source_transaction_id,
        } = message;
        let source = RequestId::parse("source_transaction_id", &source_transaction_id)?;
        Ok(GetKnowledgeReward { source })
    }
}

impl TryFrom<pb::ListProofsOfKnowledgeRequest> for ListProofsOfKnowledge {
    type Error = Error;
    fn try_from(message: pb::ListProofsOfKnowledgeRequest) -> Result<Self, Error> {
        let pb::ListProofsOfKnowledgeRequest {
            page_size,
            page_token,
            student_id,
            kind,
        } = message;
        let mut v = Violations::default();
        let student = v.check(optional(&student_id, |text| parse_id("student_id", text)));
        let kind = v.check(ProofKind::from_wire("kind", kind));
        v.finish(|| {
            Some(ListProofsOfKnowledge {
                filter: ProofFilter {
                    student: student?,
                    kind: kind?,
                },
                page_size,
                page_token,
            })
        })
    }
}

impl TryFrom<pb::ListStudentEarningsRequest> for ListStudentEarnings {
    type Error = Error;
    fn try_from(message: pb::ListStudentEarningsRequest) -> Result<Self, Error> {
        let pb::ListStudentEarningsRequest {
            page_size,
            page_token,
            student_id,
        } = message;
        let student = optional(&student_id, |text| parse_id("student_id", text))?;
        Ok(ListStudentEarnings {
            student,
            page_size,
            page_token,
        })
    }
}

#[tonic::async_trait]
impl KnowledgeRewardService for KnowledgeRewardApi {
    async fn record_proof_of_knowledge(
        &self,
        request: Request<pb::RecordProofOfKnowledgeRequest>,
    ) -> Result<Response<pb::RecordProofOfKnowledgeResponse>, Status> {
        let caller = principal(&request)?;
        let record = RecordProofOfKnowledge::try_from(request.into_inner())?;
        let recorded = self.rewards.record(&caller, record).await?;
        Ok(Response::new(pb::RecordProofOfKnowledgeResponse {
            proof: Some(proof_to_proto(recorded.proof)),
            replayed: recorded.replayed,
        }))
    }

    async fn get_knowledge_reward(
        &self,
        request: Request<pb::GetKnowledgeRewardRequest>,
    ) -> Result<Response<pb::GetKnowledgeRewardResponse>, Status> {
        let caller = principal(&request)?;
        let get = GetKnowledgeReward::try_from(request.into_inner())?;
        let proof = self.rewards.get_by_source(&caller, get).await?;
        Ok(Response::new(pb::GetKnowledgeRewardResponse {
            proof: Some(proof_to_proto(proof)),
        }))
    }

    async fn list_proofs_of_knowledge(
        &self,
        request: Request<pb::ListProofsOfKnowledgeRequest>,
    ) -> Result<Response<pb::ListProofsOfKnowledgeResponse>, Status> {
        let caller = principal(&request)?;
        let list = ListProofsOfKnowledge::try_from(request.into_inner())?;
        let page = self.rewards.list_proofs(&caller, list).await?;
        Ok(Response::new(pb::ListProofsOfKnowledgeResponse {
            proofs: page.items.into_iter().map(proof_to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn list_student_earnings(
        &self,
        request: Request<pb::ListStudentEarningsRequest>,
    ) -> Result<Response<pb::ListStudentEarningsResponse>, Status> {
        let caller = principal(&request)?;
        let list = ListStudentEarnings::try_from(request.into_inner())?;
        let earnings = self.rewards.list_earnings(&caller, list).await?;
        Ok(Response::new(earnings_to_proto(earnings)))
    }
}
