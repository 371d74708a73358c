//! Groups: commands submitted as one (`CreateTransfers`), settled in the same
//! batch, one after the other. An atomic group posts all its commands or
//! none: settling checkpoints the batch before the group and restores it when
//! one command fails. An independent group keeps what succeeded and records
//! why the rest were refused. Either way the group's results are stored under
//! its own key (caller, batch request id), so its retry answers the same.

use serde::{Deserialize, Serialize};
use tonic_types::StatusExt;
use uuid::Uuid;

use crate::audit::Change;
use crate::error::Error;
use crate::money::RequestId;
use crate::treasury::domain::{BatchMode, Command, ItemFailure, ItemResult, Transaction};

/// Most commands of all the groups and single commands settled in one
/// database transaction: the batch's multi-row inserts stay well within the
/// bind parameters a PostgreSQL statement may carry (65,535).
pub(super) const MAX_ITEMS_PER_TRANSACTION: usize = 1024;

/// A group as the ledger receives it.
#[derive(Clone, Debug)]
pub struct Group {
    pub request_id: RequestId,
    pub mode: BatchMode,
    /// Of the whole request (see `TransferBatch::fingerprint`).
    pub fingerprint: String,
    pub items: Vec<(RequestId, Command)>,
}

/// Where a group sits among a batch's requests.
#[derive(Clone, Debug)]
pub(super) struct GroupSpan {
    pub(super) start: usize,
    pub(super) len: usize,
    pub(super) mode: BatchMode,
    /// (caller, batch request id).
    pub(super) key: (Uuid, String),
    pub(super) fingerprint: String,
}

/// One item's result as stored with its group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum StoredItem {
    Applied(Uuid),
    Refused(ItemFailure),
}

/// What settling decided for a group.
#[derive(Debug)]
pub(super) enum GroupSettled {
    /// Applied now or earlier (a retry): each item's result. The applied
    /// items' transactions are the outcomes of their requests.
    Results(Vec<StoredItem>),
    /// Atomic, and the item at `index` failed: nothing of the group is
    /// written.
    Aborted { index: usize, error: Error },
    /// The batch request id was used before for another request.
    Refused(Error),
}

/// What an item refused alone is told: the code, reason and message of the
/// status the one mapping in `error.rs` gives it.
pub(super) fn failure_of(error: Error) -> ItemFailure {
    let status = tonic::Status::from(error);
    let reason = status
        .get_details_error_info()
        .map_or_else(|| format!("{:?}", status.code()), |info| info.reason);
    ItemFailure {
        code: status.code() as i32,
        reason,
        message: status.message().to_owned(),
    }
}

/// The field of a transfer that a ledger refusal is about.
fn item_field(error: &Error) -> Option<&'static str> {
    match error {
        Error::FailedPrecondition {
            reason: "INSUFFICIENT_FUNDS" | "BALANCE_OUT_OF_RANGE",
            ..
        } => Some("amount"),
        Error::PermissionDenied => Some("from_wallet_id"),
        Error::NotFound { .. } => Some("to_wallet_id"),
        _ => None,
    }
}

/// The answer to a group's caller, from its items' outcomes and what
/// settling decided.
pub(super) fn answer(
    outcomes: Vec<Result<Transaction, Error>>,
    settled: GroupSettled,
) -> Result<Vec<ItemResult>, Error> {
    match settled {
        GroupSettled::Results(results) => Ok(results
            .into_iter()
            .zip(outcomes)
            .map(|(result, outcome)| match (result, outcome) {
                (StoredItem::Applied(_), Ok(transaction)) => Ok(transaction),
                (StoredItem::Applied(_), Err(error)) => Err(failure_of(error)),
                (StoredItem::Refused(failure), _) => Err(failure),
            })
            .collect()),
        GroupSettled::Aborted { index, error } => Err(Error::InBatch {
            list: "transfers",
            index,
            field: item_field(&error),
            source: Box::new(error),
        }),
        GroupSettled::Refused(error) => Err(error),
    }
}

/// The group's own audit event, besides one per applied item: the call as
/// a whole, with its refusals, which no item event records (an independent
/// batch whose every item was refused is still a call that succeeded).
pub(super) fn audit_change(span: &GroupSpan, results: &[StoredItem]) -> Change {
    let applied = results
        .iter()
        .filter(|result| matches!(result, StoredItem::Applied(_)))
        .count();
    let refused: Vec<serde_json::Value> = results
        .iter()
        .enumerate()
        .filter_map(|(index, result)| match result {
            StoredItem::Refused(failure) => {
                Some(serde_json::json!({ "index": index, "reason": failure.reason }))
            }
            StoredItem::Applied(_) => None,
        })
        .collect();
    Change::new("transfer_batch", &span.key.1)
        .new_values(serde_json::json!({
            "mode": span.mode.as_str(),
            "transfers": span.len,
            "applied": applied,
            "refused": refused,
        }))
        .request_id(span.key.1.clone())
}

/// A stand-in outcome for an item whose answer comes from its group.
pub(super) fn answered_by_group() -> Error {
    Error::FailedPrecondition {
        reason: "ANSWERED_BY_BATCH",
        message: "answered by its batch".into(),
    }
}
