//! Identity's domain types. Each is parsed from what a caller sent and is
//! valid once constructed; the transport parses proto messages into these and
//! nothing proto-shaped travels further in.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::validate;
use crate::address::Address;
use crate::auth::Role;
use crate::error::FieldViolation;
use crate::fixed;

wire_enum!(UserType as crate::proto::identity::UserType, "user type" {
    Student => "student",
    Teacher => "teacher",
    Founder => "founder",
    Partner => "partner",
    Investor => "investor",
    Staff => "staff",
});

wire_enum!(KycStatus as crate::proto::identity::KycStatus, "KYC status" {
    Pending => "pending",
    InReview => "in_review",
    Verified => "verified",
    Rejected => "rejected",
    Expired => "expired",
});

/// Lowercase, 3–32 of `a-z 0-9 _ . -`, starting with a letter or digit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(field: &str, text: &str) -> Result<Self, FieldViolation> {
        let lower = text.to_ascii_lowercase();
        let valid = (3..=32).contains(&lower.len())
            && lower
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
            && lower
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric());
        if valid {
            Ok(Self(lower))
        } else {
            Err(FieldViolation::new(
                field,
                "must be 3 to 32 characters of a-z, 0-9, '_', '.' or '-', starting with a letter or digit",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email address, lowercased. Only the shape is checked: one `@`, a
/// non-empty local part and a dotted domain, no spaces, at most 254 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(field: &str, text: &str) -> Result<Self, FieldViolation> {
        let lower = text.to_ascii_lowercase();
        let valid = lower.len() <= 254
            && !lower.chars().any(char::is_whitespace)
            && match lower.split_once('@') {
                Some((local, domain)) => {
                    !local.is_empty()
                        && !domain.contains('@')
                        && domain.split('.').count() >= 2
                        && domain.split('.').all(|label| !label.is_empty())
                }
                None => false,
            };
        if valid {
            Ok(Self(lower))
        } else {
            Err(FieldViolation::new(
                field,
                "must be an email address such as name@example.com",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// ISO 3166-1 alpha-2, uppercase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CountryCode(String);

impl CountryCode {
    pub fn parse(field: &str, text: &str) -> Result<Self, FieldViolation> {
        let upper = text.to_ascii_uppercase();
        if validate::is_country_code(&upper) {
            Ok(Self(upper))
        } else {
            Err(FieldViolation::new(
                field,
                "must be an ISO 3166-1 alpha-2 country code such as DE",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LanguageTag(String);

impl LanguageTag {
    pub fn parse(field: &str, text: &str) -> Result<Self, FieldViolation> {
        if validate::is_language_tag(text) {
            Ok(Self(text.to_owned()))
        } else {
            Err(FieldViolation::new(
                field,
                "must be a BCP 47 language tag such as en or pt-BR",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for LanguageTag {
    fn default() -> Self {
        Self("en".into())
    }
}

/// Reputation, 0 to 1,000,000 with 4 fractional digits, in units of 10^-4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReputationScore(i64);

impl ReputationScore {
    pub const SCALE: u32 = 4;
    pub const MAX_UNITS: i64 = 1_000_000 * 10_000;

    pub fn parse(field: &str, text: &str) -> Result<Self, FieldViolation> {
        fixed::parse_units(field, text, Self::SCALE, Self::MAX_UNITS).map(Self)
    }

    pub fn units(self) -> i64 {
        self.0
    }
}

/// A JSON object of at most [`Metadata::MAX_BYTES`] serialised.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Metadata(serde_json::Map<String, serde_json::Value>);

impl Metadata {
    pub const MAX_BYTES: usize = crate::transport::MAX_JSON_OBJECT_BYTES;

    pub fn new(
        field: &str,
        object: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, FieldViolation> {
        let size = serde_json::Value::Object(object.clone()).to_string().len();
        if size > Self::MAX_BYTES {
            return Err(FieldViolation::new(
                field,
                format!(
                    "is {size} bytes as JSON; at most {} are allowed",
                    Self::MAX_BYTES
                ),
            ));
        }
        Ok(Self(object))
    }

    pub fn into_json(self) -> serde_json::Value {
        serde_json::Value::Object(self.0)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewUser {
    pub username: Username,
    pub email: Option<Email>,
    pub user_type: UserType,
    pub wallet_address: Option<Address>,
    pub jurisdiction: Option<CountryCode>,
    pub country: Option<CountryCode>,
    pub language: LanguageTag,
    pub metadata: Metadata,
}

/// The fields an UpdateUser call changes; `None` leaves a field alone, and
/// `Some(None)` clears an optional one.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct UserChanges {
    pub email: Option<Option<Email>>,
    pub user_type: Option<UserType>,
    pub wallet_address: Option<Option<Address>>,
    pub jurisdiction: Option<Option<CountryCode>>,
    pub country: Option<Option<CountryCode>>,
    pub language: Option<LanguageTag>,
    pub metadata: Option<Metadata>,
    pub reputation_score: Option<ReputationScore>,
}

impl UserChanges {
    /// Fields that only an admin may change: the ones that bear on
    /// compliance or standing rather than on the user's own preferences.
    pub fn touches_admin_fields(&self) -> bool {
        self.user_type.is_some()
            || self.wallet_address.is_some()
            || self.jurisdiction.is_some()
            || self.reputation_score.is_some()
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub email: Option<String>,
    pub user_type: UserType,
    pub role: Role,
    pub wallet_address: Option<String>,
    pub jurisdiction: Option<String>,
    pub country: Option<String>,
    pub language: String,
    pub kyc_status: KycStatus,
    pub kyc_reason: Option<String>,
    pub kyc_updated_at: Option<DateTime<Utc>>,
    pub reputation_score_units: i64,
    pub metadata: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserFilter {
    pub user_type: Option<UserType>,
    pub kyc_status: Option<KycStatus>,
    pub jurisdiction: Option<String>,
    /// Set by authorization, not by the caller: restricts to one user.
    pub only_user: Option<Uuid>,
}

impl UserFilter {
    pub fn fingerprint(&self) -> String {
        format!(
            "users|{:?}|{:?}|{:?}|{:?}",
            self.user_type, self.kyc_status, self.jurisdiction, self.only_user
        )
    }
}

/// UpdateUser: which user, and the changes its field mask names.
#[derive(Clone, Debug, PartialEq)]
pub struct UserUpdate {
    pub id: Uuid,
    pub changes: UserChanges,
}

/// SetUserRole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoleChange {
    pub user: Uuid,
    pub role: Role,
}

/// SetKycStatus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KycUpdate {
    pub user: Uuid,
    pub change: KycChange,
}

/// Whose wallets or keys to list; `None` is everyone the caller may see.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OwnedBy(pub Option<Uuid>);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KycChange {
    pub status: KycStatus,
    pub reason: Option<String>,
}

impl KycChange {
    pub const MAX_REASON: usize = 500;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewWallet {
    pub owner_id: Uuid,
    pub address: Address,
    pub label: String,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Wallet {
    pub id: Uuid,
    pub owner_id: Uuid,
    /// Lowercase, as stored.
    pub address: String,
    pub label: String,
    pub available_micros: i64,
    pub pending_micros: i64,
    pub staked_micros: i64,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewApiKey {
    pub user_id: Uuid,
    pub name: String,
    pub role: Role,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ApiKey {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub role: Role,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|expiry| expiry > now)
    }
}

/// A key and its secret, which exists only in this value and is never stored.
#[derive(Clone, Debug)]
pub struct IssuedApiKey {
    pub key: ApiKey,
    /// Empty when `replayed`: only the hash was stored.
    pub secret: String,
    /// This answers a retry of an earlier call with the same request id.
    pub replayed: bool,
}

/// Names and labels: at most 64 characters, no control characters.
pub fn parse_label(field: &str, text: &str) -> Result<String, FieldViolation> {
    if text.chars().count() > 64 || text.chars().any(char::is_control) {
        Err(FieldViolation::new(
            field,
            "must be at most 64 characters without control characters",
        ))
    } else {
        Ok(text.to_owned())
    }
}
