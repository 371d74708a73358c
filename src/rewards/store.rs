//! Knowledge rewards' SQL.

use std::collections::HashMap;

use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    Set,
};
use uuid::Uuid;

use super::domain::{Earning, Proof, ProofFilter, ProofKind};
use super::entities::{earning, proof};
use crate::db::{classify, statement};
use crate::error::Error;
use crate::pagination::PageRequest;

type Result<T> = std::result::Result<T, Error>;

fn earning_from_row(row: earning::Model) -> Earning {
    Earning {
        id: row.id,
        student: row.student_id,
        proof: row.proof_id,
        source_transaction_id: row.source_transaction_id,
        wallet: row.wallet_id,
        amount_micros: row.amount_azr_micros,
        transaction: row.transaction_id,
        created_at: row.created_at,
    }
}

fn proof_from_row(row: proof::Model, reward: Option<Earning>) -> Result<Proof> {
    Ok(Proof {
        kind: ProofKind::parse(&row.kind)
            .ok_or_else(|| Error::internal(format!("unexpected proof kind {:?}", row.kind)))?,
        id: row.id,
        student: row.student_id,
        subject: row.subject,
        score_hundredths: row.score_hundredths,
        evidence_hash: row.evidence_hash,
        verified_by: row.verified_by,
        verified_at: row.verified_at,
        source_transaction_id: row.source_transaction_id,
        fingerprint: row.fingerprint,
        reward,
    })
}

/// Attaches each proof's reward with one query.
async fn with_rewards(db: &impl ConnectionTrait, rows: Vec<proof::Model>) -> Result<Vec<Proof>> {
    let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
    let mut rewards: HashMap<Uuid, Earning> = if ids.is_empty() {
        HashMap::new()
    } else {
        earning::Entity::find()
            .filter(earning::Column::ProofId.is_in(ids))
            .all(db)
            .await
            .map_err(classify)?
            .into_iter()
            .map(|row| (row.proof_id, earning_from_row(row)))
            .collect()
    };
    rows.into_iter()
        .map(|row| {
            let reward = rewards.remove(&row.id);
            proof_from_row(row, reward)
        })
        .collect()
}

pub(super) async fn insert_proof(db: &impl ConnectionTrait, proof: &Proof) -> Result<()> {
    proof::Entity::insert(proof::ActiveModel {
        id: Set(proof.id),
        student_id: Set(proof.student),
        kind: Set(proof.kind.as_str().to_owned()),
        subject: Set(proof.subject.clone()),
        score_hundredths: Set(proof.score_hundredths),
        evidence_hash: Set(proof.evidence_hash.clone()),
        verified_by: Set(proof.verified_by),
        verified_at: Set(proof.verified_at),
        source_transaction_id: Set(proof.source_transaction_id.clone()),
        fingerprint: Set(proof.fingerprint.clone()),
    })
    .exec_without_returning(db)
    .await
    .map_err(classify)?;
    Ok(())
}

pub(super) async fn insert_earning(db: &impl ConnectionTrait, earning: &Earning) -> Result<()> {
    earning::Entity::insert(earning::ActiveModel {
        id: Set(earning.id),
        student_id: Set(earning.student),
        proof_id: Set(earning.proof),
        source_transaction_id: Set(earning.source_transaction_id.clone()),
        wallet_id: Set(earning.wallet),
        amount_azr_micros: Set(earning.amount_micros),
        // The peg: the database checks that both are equal.
        amount_usd_micros: Set(earning.amount_micros),
        transaction_id: Set(earning.transaction),
        created_at: Set(earning.created_at),
    })
    .exec_without_returning(db)
    .await
    .map_err(classify)?;
    Ok(())
}

pub(super) async fn find_by_source(
    db: &impl ConnectionTrait,
    source: &str,
) -> Result<Option<Proof>> {
    let rows = proof::Entity::find()
        .filter(proof::Column::SourceTransactionId.eq(source))
        .all(db)
        .await
        .map_err(classify)?;
    Ok(with_rewards(db, rows).await?.pop())
}

pub(super) async fn list_proofs(
    db: &impl ConnectionTrait,
    filter: &ProofFilter,
    page: &PageRequest,
) -> Result<Vec<Proof>> {
    let rows = proof::Entity::find()
        .apply_if(filter.student, |query, student| {
            query.filter(proof::Column::StudentId.eq(student))
        })
        .apply_if(filter.kind, |query, kind| {
            query.filter(proof::Column::Kind.eq(kind.as_str()))
        })
        .apply_if(page.after, |query, after| {
            query.filter(proof::Column::Id.lt(after))
        })
        .order_by_desc(proof::Column::Id)
        .limit(page.fetch_limit())
        .all(db)
        .await
        .map_err(classify)?;
    with_rewards(db, rows).await
}

pub(super) async fn list_earnings(
    db: &impl ConnectionTrait,
    student: Uuid,
    page: &PageRequest,
) -> Result<Vec<Earning>> {
    Ok(earning::Entity::find()
        .filter(earning::Column::StudentId.eq(student))
        .apply_if(page.after, |query, after| {
            query.filter(earning::Column::Id.lt(after))
        })
        .order_by_desc(earning::Column::Id)
        .limit(page.fetch_limit())
        .all(db)
        .await
        .map_err(classify)?
        .into_iter()
        .map(earning_from_row)
        .collect())
}

/// Every reward the student was ever paid: how many, and their exact sum.
pub(super) async fn total_earned(db: &impl ConnectionTrait, student: Uuid) -> Result<(i64, i64)> {
    let row = db
        .query_one_raw(statement(
            db,
            "SELECT CAST(COUNT(*) AS BIGINT) AS rewards, CAST(COALESCE(SUM(amount_azr_micros), 0) AS BIGINT) AS micros \
             FROM student_earnings WHERE student_id = ?",
            vec![student.into()],
        ))
        .await
        .map_err(classify)?;
    match row {
        Some(row) => Ok((
            row.try_get("", "rewards").map_err(classify)?,
            row.try_get("", "micros").map_err(classify)?,
        )),
        None => Ok((0, 0)),
    }
}
