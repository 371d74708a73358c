//! Knowledge reward types, parsed at the edge.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::FieldViolation;
use crate::fixed;
use crate::money::{Amount, RequestId};

wire_enum!(ProofKind as crate::proto::treasury::ProofKind, "proof kind" {
    Course => "course",
    Achievement => "achievement",
});

/// Scores run from 0 to 100 with two fractional digits, kept in hundredths.
pub const SCORE_SCALE: u32 = 2;
const MAX_SCORE_HUNDREDTHS: i64 = 10_000;

pub fn parse_score(field: &str, text: &str) -> Result<i32, FieldViolation> {
    fixed::parse_units(field, text, SCORE_SCALE, MAX_SCORE_HUNDREDTHS).map(|units| units as i32)
}

pub fn format_score(hundredths: i32) -> String {
    fixed::format_units(i64::from(hundredths), SCORE_SCALE)
}

/// SHA-256 of the evidence: 64 hex digits, stored lowercase.
pub fn parse_evidence_hash(field: &str, text: &str) -> Result<String, FieldViolation> {
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(FieldViolation::new(
            field,
            "must be a SHA-256 hash: 64 hex digits",
        ))
    }
}

pub fn parse_subject(field: &str, text: &str) -> Result<String, FieldViolation> {
    let length = text.chars().count();
    if (1..=128).contains(&length) && text.trim() == text && !text.chars().any(char::is_control) {
        Ok(text.to_owned())
    } else {
        Err(FieldViolation::new(
            field,
            "must be 1 to 128 characters without surrounding spaces or control characters",
        ))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewProof {
    pub student: Uuid,
    pub wallet: Uuid,
    pub kind: ProofKind,
    pub subject: String,
    pub score_hundredths: i32,
    pub evidence_hash: String,
    pub reward: Amount,
}

impl NewProof {
    /// What "the same proof" means for a source id sent again.
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(format!("{self:?}").as_bytes()))
    }
}

/// RecordProofOfKnowledge's input: the proof, under the caller's source
/// transaction id (which makes sending it again safe).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordProofOfKnowledge {
    pub source: RequestId,
    pub proof: NewProof,
}

/// GetKnowledgeReward's input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetKnowledgeReward {
    pub source: RequestId,
}

/// ListProofsOfKnowledge's input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListProofsOfKnowledge {
    pub filter: ProofFilter,
    pub page_size: i32,
    pub page_token: String,
}

/// ListStudentEarnings' input: whose earnings; the caller's when not given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListStudentEarnings {
    pub student: Option<Uuid>,
    pub page_size: i32,
    pub page_token: String,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Earning {
    pub id: Uuid,
    pub student: Uuid,
    pub proof: Uuid,
    pub source_transaction_id: String,
    pub wallet: Uuid,
    pub amount_micros: i64,
    pub transaction: Uuid,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Proof {
    pub id: Uuid,
    pub student: Uuid,
    pub kind: ProofKind,
    pub subject: String,
    pub score_hundredths: i32,
    pub evidence_hash: String,
    pub verified_by: Uuid,
    pub verified_at: DateTime<Utc>,
    pub source_transaction_id: String,
    #[serde(skip)]
    pub fingerprint: String,
    pub reward: Option<Earning>,
}

impl Proof {
    /// A proof as `verified_by` records it, before its reward is paid.
    pub fn verified(
        new: &NewProof,
        source: &RequestId,
        fingerprint: String,
        verified_by: Uuid,
        verified_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            student: new.student,
            kind: new.kind,
            subject: new.subject.clone(),
            score_hundredths: new.score_hundredths,
            evidence_hash: new.evidence_hash.clone(),
            verified_by,
            verified_at,
            source_transaction_id: source.as_str().to_owned(),
            fingerprint,
            reward: None,
        }
    }
}

impl Earning {
    /// The reward for `proof`, paid into `wallet` by the ledger transfer
    /// `transaction`.
    pub fn for_proof(
        proof: &Proof,
        wallet: Uuid,
        amount: Amount,
        transaction: Uuid,
        created_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            student: proof.student,
            proof: proof.id,
            source_transaction_id: proof.source_transaction_id.clone(),
            wallet,
            amount_micros: amount.micros(),
            transaction,
            created_at,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProofFilter {
    pub student: Option<Uuid>,
    pub kind: Option<ProofKind>,
}

impl ProofFilter {
    pub fn fingerprint(&self) -> String {
        format!("proofs_of_knowledge|{self:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_are_exact_hundredths_from_0_to_100() {
        assert_eq!(parse_score("s", "87.5"), Ok(8750));
        assert_eq!(parse_score("s", "0"), Ok(0));
        assert_eq!(parse_score("s", "100.00"), Ok(10_000));
        assert_eq!(format_score(8750), "87.50");
        for bad in ["100.01", "87.555", "-1", "", "1e2", "NaN"] {
            assert!(parse_score("s", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn evidence_hashes_are_64_hex_digits() {
        let hash = "AB".repeat(32);
        assert_eq!(parse_evidence_hash("e", &hash).unwrap(), "ab".repeat(32));
        assert!(parse_evidence_hash("e", &"a".repeat(63)).is_err());
        assert!(parse_evidence_hash("e", &"g".repeat(64)).is_err());
    }
}
