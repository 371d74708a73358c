//! Founder compensation types, parsed at the edge.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::FieldViolation;
use crate::money::{Amount, RequestId};

wire_enum!(CompensationType as crate::proto::treasury::CompensationType, "compensation type" {
    Salary => "salary",
    Bonus => "bonus",
    TokenGrant => "token_grant",
    Reimbursement => "reimbursement",
});

wire_enum!(CompensationStatus as crate::proto::treasury::CompensationStatus, "status" {
    Pending => "pending",
    Approved => "approved",
    Paid => "paid",
    Cancelled => "cancelled",
});

impl CompensationStatus {
    /// The moves the database trigger allows as well.
    pub fn can_become(self, next: Self) -> bool {
        use CompensationStatus::*;
        matches!(
            (self, next),
            (Pending, Approved) | (Pending, Cancelled) | (Approved, Paid) | (Approved, Cancelled)
        )
    }
}

/// A calendar month, `YYYY-MM`; the text sorts in time order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Month(String);

impl Month {
    pub fn parse(field: &str, text: &str) -> Result<Self, FieldViolation> {
        let valid = text.len() == 7
            && text.as_bytes()[4] == b'-'
            && text[..4].bytes().all(|b| b.is_ascii_digit())
            && text[5..].bytes().all(|b| b.is_ascii_digit())
            && matches!(text[5..].parse::<u32>(), Ok(1..=12));
        if valid {
            Ok(Self(text.to_owned()))
        } else {
            Err(FieldViolation::new(field, "must be a month as YYYY-MM"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCompensation {
    pub founder: Uuid,
    pub wallet: Uuid,
    pub month: Month,
    pub kind: CompensationType,
    pub amount: Amount,
    pub notes: String,
}

impl NewCompensation {
    /// Identifies "the same request" for a retried create.
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(format!("{self:?}").as_bytes()))
    }
}

/// CreateFounderCompensation's input. The request id is required: a retry
/// with it answers with the record the first call created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateFounderCompensation {
    pub request_id: RequestId,
    pub compensation: NewCompensation,
}

/// ApproveFounderCompensation's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApproveFounderCompensation {
    pub compensation: Uuid,
}

/// PayFounderCompensation's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayFounderCompensation {
    pub compensation: Uuid,
}

/// CancelFounderCompensation's input: the reason is required.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CancelFounderCompensation {
    pub compensation: Uuid,
    pub reason: String,
}

/// GetFounderCompensation's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GetFounderCompensation {
    pub compensation: Uuid,
}

/// ListFounderCompensations' input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListFounderCompensations {
    pub filter: CompensationFilter,
    pub page_size: i32,
    pub page_token: String,
}

/// GetFounderCompensationSummary's input: any founder (staff) and months,
/// both ends included, when not given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetFounderCompensationSummary {
    pub founder: Option<Uuid>,
    pub start: Option<Month>,
    pub end: Option<Month>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Compensation {
    pub id: Uuid,
    pub founder: Uuid,
    pub wallet: Uuid,
    pub month: String,
    pub kind: CompensationType,
    pub status: CompensationStatus,
    pub amount_micros: i64,
    pub notes: String,
    pub request_id: String,
    #[serde(skip)]
    pub fingerprint: String,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub approved_by: Option<Uuid>,
    pub approved_at: Option<DateTime<Utc>>,
    pub paid_by: Option<Uuid>,
    pub transaction: Option<Uuid>,
    pub tx_hash: Option<String>,
    pub paid_at: Option<DateTime<Utc>>,
    pub cancelled_by: Option<Uuid>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancel_reason: Option<String>,
}

impl Compensation {
    /// A record as created: pending, neither approved, paid nor cancelled.
    pub fn pending(
        new: NewCompensation,
        request_id: &RequestId,
        fingerprint: String,
        created_by: Uuid,
        created_at: DateTime<Utc>,
    ) -> Self {
        let NewCompensation {
            founder,
            wallet,
            month,
            kind,
            amount,
            notes,
        } = new;
        Self {
            id: Uuid::now_v7(),
            founder,
            wallet,
            month: month.as_str().to_owned(),
            kind,
            status: CompensationStatus::Pending,
            amount_micros: amount.micros(),
            notes,
            request_id: request_id.as_str().to_owned(),
            fingerprint,
            created_by,
            created_at,
            approved_by: None,
            approved_at: None,
            paid_by: None,
            transaction: None,
            tx_hash: None,
            paid_at: None,
            cancelled_by: None,
            cancelled_at: None,
            cancel_reason: None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompensationFilter {
    pub founder: Option<Uuid>,
    pub month: Option<Month>,
    pub status: Option<CompensationStatus>,
    pub kind: Option<CompensationType>,
}

impl CompensationFilter {
    pub fn fingerprint(&self) -> String {
        format!("founder_compensations|{self:?}")
    }
}

/// Counts and exact sums of a group of records, by status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub pending_count: i64,
    pub pending_micros: i64,
    pub approved_count: i64,
    pub approved_micros: i64,
    pub paid_count: i64,
    pub paid_micros: i64,
    pub cancelled_count: i64,
}

impl Totals {
    pub fn add(&mut self, status: CompensationStatus, count: i64, micros: i64) {
        match status {
            CompensationStatus::Pending => {
                self.pending_count += count;
                self.pending_micros += micros;
            }
            CompensationStatus::Approved => {
                self.approved_count += count;
                self.approved_micros += micros;
            }
            CompensationStatus::Paid => {
                self.paid_count += count;
                self.paid_micros += micros;
            }
            CompensationStatus::Cancelled => self.cancelled_count += count,
        }
    }

    /// Pending, approved and paid together; cancelled records owe nothing.
    pub fn total_micros(&self) -> i64 {
        self.pending_micros + self.approved_micros + self.paid_micros
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Per founder, month and type, in that order.
    pub rows: Vec<(Uuid, String, CompensationType, Totals)>,
    pub founders: Vec<(Uuid, Totals)>,
    pub totals: Totals,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_yyyy_mm() {
        assert!(Month::parse("m", "2026-11").is_ok());
        assert!(Month::parse("m", "2026-01").is_ok());
        for bad in [
            "2026-13",
            "2026-00",
            "2026-1",
            "26-11",
            "2026/11",
            "2026-11-01",
            "",
            "abcd-ef",
        ] {
            assert!(Month::parse("m", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_forward_transitions_are_legal() {
        use CompensationStatus::*;
        let legal: Vec<_> = ALL_PAIRS
            .iter()
            .filter(|(from, to)| from.can_become(*to))
            .collect();
        assert_eq!(
            legal,
            [
                &(Pending, Approved),
                &(Pending, Cancelled),
                &(Approved, Paid),
                &(Approved, Cancelled)
            ]
        );
    }

    const ALL_PAIRS: [(CompensationStatus, CompensationStatus); 16] = {
        use CompensationStatus::*;
        [
            (Pending, Pending),
            (Pending, Approved),
            (Pending, Paid),
            (Pending, Cancelled),
            (Approved, Pending),
            (Approved, Approved),
            (Approved, Paid),
            (Approved, Cancelled),
            (Paid, Pending),
            (Paid, Approved),
            (Paid, Paid),
            (Paid, Cancelled),
            (Cancelled, Pending),
            (Cancelled, Approved),
            (Cancelled, Paid),
            (Cancelled, Cancelled),
        ]
    };
}
