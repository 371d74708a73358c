//! Treasury domain types: exact amounts, accounts, commands, transactions and
//! the allocation policy.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::FieldViolation;
use crate::money::{Amount, RequestId};

wire_enum!(TransactionKind as crate::proto::treasury::TransactionType, "transaction type" {
    Mint => "mint",
    Burn => "burn",
    Transfer => "transfer",
    Deposit => "deposit",
    Withdrawal => "withdrawal",
    Reversal => "reversal",
    Stake => "stake",
    Unstake => "unstake",
    MultiTransfer => "multi_transfer",
});

wire_enum!(TransactionStatus as crate::proto::treasury::TransactionStatus, "transaction status" {
    Pending => "pending",
    Confirmed => "confirmed",
    Failed => "failed",
});

text_enum!(SystemAccount {
    Issuance => "issuance",
    External => "external",
    Burned => "burned",
    TreasuryReserve => "treasury_reserve",
    FounderPool => "founder_pool",
    CirculationPool => "circulation_pool",
});

impl SystemAccount {
    /// Contra accounts stand for AZR outside the books (not yet minted, or
    /// on the chain) and may go negative; every other account may not.
    pub fn may_go_negative(self) -> bool {
        matches!(self, SystemAccount::Issuance | SystemAccount::External)
    }
}

text_enum!(Bucket {
    Available => "available",
    Pending => "pending",
    Staked => "staked",
});

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Account {
    Wallet(Uuid),
    System(SystemAccount),
}

/// One balanced entry: `amount` leaves `from` and arrives at `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leg {
    pub from: (Account, Bucket),
    pub to: (Account, Bucket),
    pub micros: i64,
}

/// Basis points of each mint for each destination; they sum to 10,000.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocationPolicy {
    pub version: i32,
    pub treasury_bp: i32,
    pub founder_bp: i32,
    pub burn_bp: i32,
    pub circulation_bp: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Allocation {
    pub policy_version: i32,
    pub treasury: i64,
    pub founder: i64,
    pub burn: i64,
    pub circulation: i64,
}

impl AllocationPolicy {
    /// Parses `treasury,founder,burn,circulation` basis points.
    pub fn parse_basis_points(text: &str) -> Result<[i32; 4], String> {
        let parts: Vec<i32> = text
            .split(',')
            .map(|part| {
                part.trim()
                    .parse::<i32>()
                    .map_err(|_| format!("{part:?} is not a whole number of basis points"))
            })
            .collect::<Result<_, _>>()?;
        let [treasury, founder, burn, circulation] = parts[..] else {
            return Err("give four basis points: treasury,founder,burn,circulation".into());
        };
        if parts.iter().any(|bp| *bp < 0) {
            return Err("basis points must not be negative".into());
        }
        if parts.iter().sum::<i32>() != 10_000 {
            return Err(format!(
                "basis points must sum to 10000 (100 %), not {}",
                parts.iter().sum::<i32>()
            ));
        }
        Ok([treasury, founder, burn, circulation])
    }

    pub fn basis_points(&self) -> [i32; 4] {
        [
            self.treasury_bp,
            self.founder_bp,
            self.burn_bp,
            self.circulation_bp,
        ]
    }

    /// Splits an amount: treasury, founder and burn shares are rounded down
    /// to the micro-AZR, and circulation takes the rest, so the four always
    /// sum exactly to the amount.
    pub fn split(&self, amount: Amount) -> Allocation {
        let share = |bp: i32| (i128::from(amount.micros()) * i128::from(bp) / 10_000) as i64;
        let treasury = share(self.treasury_bp);
        let founder = share(self.founder_bp);
        let burn = share(self.burn_bp);
        Allocation {
            policy_version: self.version,
            treasury,
            founder,
            burn,
            circulation: amount.micros() - treasury - founder - burn,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum BurnSource {
    Wallet(Uuid),
    System(SystemAccount),
}

/// Free text and JSON that travel with a transaction.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Note {
    pub reason: String,
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// The reference of an inflow backing a mint: 1 to 200 printable
/// characters, no control characters.
pub fn backing_reference(field: &str, text: &str) -> Result<String, FieldViolation> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed.chars().count() > 200 {
        return Err(FieldViolation::new(field, "must be 1 to 200 characters"));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(FieldViolation::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(trimmed.to_owned())
}

/// Everything that changes the ledger.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Mint {
        amount: Amount,
        to_wallet: Option<Uuid>,
        note: Note,
        /// Set when ending a mining session mints its earnings.
        mining_session: Option<Uuid>,
        /// A claim awaiting its backing: created `pending`, with no entries,
        /// until a treasurer confirms it. Only mining claims may be pending.
        pending: bool,
        /// The inflow that backs the AZR (auto-confirmed mining claims).
        backing_reference: Option<String>,
    },
    Burn {
        amount: Amount,
        source: BurnSource,
        note: Note,
    },
    Transfer {
        from_wallet: Uuid,
        to_wallet: Uuid,
        amount: Amount,
        note: Note,
    },
    Deposit {
        to_wallet: Uuid,
        amount: Amount,
        tx_hash: Option<String>,
        pending: bool,
        note: Note,
    },
    Withdraw {
        from_wallet: Uuid,
        amount: Amount,
        destination_address: String,
        note: Note,
    },
    /// Pays from a system pool into a wallet (founder pay from the founder
    /// pool, knowledge rewards from circulation): a `transfer` whose source
    /// is the pool. Only other services issue it, through `ledger::apply_in`.
    PoolPayout {
        pool: SystemAccount,
        to_wallet: Uuid,
        amount: Amount,
        note: Note,
    },
    /// Pays from a wallet the caller owns into a system account (an invoice
    /// into the treasury reserve): a `transfer` whose destination is the
    /// account. Only other services issue it, through `ledger::apply_in`.
    PoolPayment {
        from_wallet: Uuid,
        pool: SystemAccount,
        amount: Amount,
        note: Note,
    },
    Confirm {
        transaction_id: Uuid,
        gas_used: i64,
        gas_price_wei: i64,
        confirmed_at: Option<DateTime<Utc>>,
        /// Required to confirm a pending mint: the reference of the USD
        /// inflow (the pool payout) that backs it; refused on anything else.
        backing_reference: Option<String>,
    },
    Fail {
        transaction_id: Uuid,
        reason: String,
    },
    /// Posts a confirmed transaction's entries negated, once.
    Reverse { transaction_id: Uuid, note: Note },
    /// Available → staked, inside one wallet the caller owns.
    Stake {
        wallet: Uuid,
        amount: Amount,
        note: Note,
    },
    /// Staked → available, inside one wallet the caller owns.
    Unstake {
        wallet: Uuid,
        amount: Amount,
        note: Note,
    },
    /// Pays several wallets (and optionally a fee to the treasury reserve)
    /// from one wallet the caller owns, as one transaction.
    MultiTransfer {
        from_wallet: Uuid,
        /// Distinct payees, none the source; at most [`MAX_PAYMENTS`].
        payments: Vec<(Uuid, Amount)>,
        fee: Option<Amount>,
        note: Note,
    },
}

/// Most payees of one MultiTransfer.
pub const MAX_PAYMENTS: usize = 16;

impl Command {
    pub fn operation(&self) -> &'static str {
        match self {
            Command::Mint { .. } => "mint",
            Command::Burn { .. } => "burn",
            Command::Transfer { .. } => "transfer",
            Command::Deposit { .. } => "deposit",
            Command::Withdraw { .. } => "withdraw",
            Command::PoolPayout { .. } => "pool_payout",
            Command::PoolPayment { .. } => "pool_payment",
            Command::Confirm { .. } => "confirm",
            Command::Fail { .. } => "fail",
            Command::Reverse { .. } => "reverse",
            Command::Stake { .. } => "stake",
            Command::Unstake { .. } => "unstake",
            Command::MultiTransfer { .. } => "multi_transfer",
        }
    }

    /// What identifies "the same request" for idempotency: the operation and
    /// every field. `Debug` is deterministic here (JSON objects are sorted
    /// maps), and a default such as "now" is resolved only after this.
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(format!("{self:?}").as_bytes()))
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Transaction {
    pub id: Uuid,
    pub kind: TransactionKind,
    pub status: TransactionStatus,
    pub tx_hash: String,
    pub amount_micros: i64,
    pub allocation: Option<Allocation>,
    pub from_wallet: Option<Uuid>,
    pub to_wallet: Option<Uuid>,
    pub from_system: Option<SystemAccount>,
    /// Set on a transfer into a system account (an invoice payment).
    pub to_system: Option<SystemAccount>,
    pub destination_address: Option<String>,
    pub gas_used: Option<i64>,
    pub gas_price_wei: Option<i64>,
    pub reason: String,
    pub metadata: serde_json::Value,
    pub request_id: String,
    pub requested_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub processed_at: Option<DateTime<Utc>>,
    /// The mining session whose earnings this mint paid.
    pub mining_session: Option<Uuid>,
    /// What backs a mining mint: the confirmed inflow's reference.
    pub backing_reference: Option<String>,
    /// Reversals: the transaction this one reverses.
    pub reverses: Option<Uuid>,
    /// Set once reversed: the reversal (read from the reversal's link).
    pub reversed_by: Option<Uuid>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Balance {
    pub available: i64,
    pub pending: i64,
    pub staked: i64,
}

/// One ledger command and the idempotency key it is applied under: what
/// every mutating Treasury RPC parses into.
#[derive(Clone, Debug, PartialEq)]
pub struct LedgerCall {
    pub request_id: RequestId,
    pub command: Command,
}

/// A wallet's balance now, or as of a past time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BalanceQuery {
    pub wallet: Uuid,
    pub as_of: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransactionFilter {
    pub wallet: Option<Uuid>,
    pub kind: Option<TransactionKind>,
    pub status: Option<TransactionStatus>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    /// Set by authorization: only transactions touching this user's wallets.
    pub owner: Option<Uuid>,
    /// Only transactions whose metadata holds each key with this JSON
    /// string value.
    pub metadata: std::collections::BTreeMap<String, String>,
}

impl TransactionFilter {
    pub fn fingerprint(&self) -> String {
        format!("transactions|{self:?}")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct KindTotals {
    pub confirmed_count: i64,
    pub confirmed_micros: i64,
    pub pending_count: i64,
    /// Pending volume: holds of withdrawals, unconfirmed deposits and
    /// mining claims awaiting their backing (not spendable).
    #[serde(default)]
    pub pending_micros: i64,
    pub failed_count: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    pub system: std::collections::BTreeMap<SystemAccount, i64>,
    pub held_in_wallets: i64,
    /// Part of `held_in_wallets`. Absent from summaries cached before
    /// staking existed, when nothing could be staked.
    #[serde(default)]
    pub staked_in_wallets: i64,
    pub by_kind: std::collections::BTreeMap<TransactionKind, KindTotals>,
    pub policy_version: i32,
}

wire_enum!(BatchMode as crate::proto::treasury::BatchMode, "batch mode" {
    Atomic => "atomic",
    Independent => "independent",
});

/// Most transfers in one `CreateTransfers` call.
pub const MAX_BATCH_TRANSFERS: usize = 1000;

/// A batch of transfers (`CreateTransfers`), parsed: its own idempotency
/// key, its mode, and each transfer with its own key.
#[derive(Clone, Debug, PartialEq)]
pub struct TransferBatch {
    pub request_id: RequestId,
    pub mode: BatchMode,
    pub transfers: Vec<LedgerCall>,
}

impl TransferBatch {
    /// What identifies "the same batch": the mode and every item's key and
    /// fingerprint, in order.
    pub fn fingerprint(&self) -> String {
        let mut digest = Sha256::new();
        digest.update(self.mode.as_str().as_bytes());
        for call in &self.transfers {
            digest.update([0]);
            digest.update(call.request_id.as_str().as_bytes());
            digest.update([0]);
            digest.update(call.command.fingerprint().as_bytes());
        }
        hex::encode(digest.finalize())
    }
}

/// Why one item of a batch was refused: the gRPC code, the stable reason
/// and the message it would have got alone.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ItemFailure {
    pub code: i32,
    pub reason: String,
    pub message: String,
}

/// The outcome of one item of a batch.
pub type ItemResult = Result<Transaction, ItemFailure>;

/// A transaction with what it posted (its ledger entries), as the reads
/// show it.
pub type Posted = (Transaction, Vec<Leg>);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::MAX_AMOUNT_MICROS;

    #[test]
    fn allocation_sums_exactly_and_circulation_takes_the_remainder() {
        let policy = AllocationPolicy {
            version: 1,
            treasury_bp: 7000,
            founder_bp: 1100,
            burn_bp: 500,
            circulation_bp: 1400,
        };
        for micros in [1, 3, 7, 99, 1_000_001, 123_456_789, MAX_AMOUNT_MICROS] {
            let split = policy.split(Amount::from_micros(micros).unwrap());
            assert_eq!(
                split.treasury + split.founder + split.burn + split.circulation,
                micros
            );
            assert!(split.circulation >= micros * 1400 / 10_000);
        }
        let split = policy.split(Amount::parse("a", "100").unwrap());
        assert_eq!(
            (split.treasury, split.founder, split.burn, split.circulation),
            (70_000_000, 11_000_000, 5_000_000, 14_000_000)
        );
        let tiny = policy.split(Amount::from_micros(1).unwrap());
        assert_eq!(
            (tiny.treasury, tiny.founder, tiny.burn, tiny.circulation),
            (0, 0, 0, 1)
        );
    }

    #[test]
    fn basis_points_must_sum_to_one_hundred_percent() {
        assert_eq!(
            AllocationPolicy::parse_basis_points("7000,1100,500,1400"),
            Ok([7000, 1100, 500, 1400])
        );
        assert!(AllocationPolicy::parse_basis_points("7000,1100,500,2390").is_err());
        assert!(AllocationPolicy::parse_basis_points("7000,1100,500").is_err());
        assert!(AllocationPolicy::parse_basis_points("11000,-1000,0,0").is_err());
    }

    #[test]
    fn amounts_are_positive_and_bounded() {
        assert!(Amount::parse("a", "0").is_err());
        assert!(Amount::parse("a", "0.000000").is_err());
        assert_eq!(Amount::parse("a", "0.000001").unwrap().micros(), 1);
        assert!(Amount::parse("a", "1000000000.000001").is_err());
    }
}
