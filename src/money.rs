//! Money and the identifiers that travel with it, shared by every service:
//! exact AZR amounts, the AZR scale and its text form, and the caller-chosen
//! request ids that make a call safe to retry.

use crate::error::FieldViolation;
use crate::fixed;

/// AZR has 6 fractional digits (micro-AZR), as USDC does.
pub const AZR_SCALE: u32 = 6;
/// The largest amount of one transaction: one billion AZR.
pub const MAX_AMOUNT_MICROS: i64 = 1_000_000_000 * 1_000_000;

/// A positive amount of AZR in micro-AZR, at most [`MAX_AMOUNT_MICROS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(i64);

impl Amount {
    pub fn parse(field: &str, text: &str) -> Result<Self, FieldViolation> {
        let micros = fixed::parse_units(field, text, AZR_SCALE, MAX_AMOUNT_MICROS)?;
        if micros == 0 {
            return Err(FieldViolation::new(field, "must be greater than zero"));
        }
        Ok(Self(micros))
    }

    pub fn from_micros(micros: i64) -> Option<Self> {
        (micros > 0 && micros <= MAX_AMOUNT_MICROS).then_some(Self(micros))
    }

    pub fn micros(self) -> i64 {
        self.0
    }
}

/// Writes micro-AZR as a decimal string with all 6 fractional digits.
pub fn format_azr(micros: i64) -> String {
    fixed::format_units(micros, AZR_SCALE)
}

/// A caller-chosen idempotency key: 1–128 printable ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    pub fn parse(field: &str, text: &str) -> Result<Self, FieldViolation> {
        if (1..=128).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_graphic()) {
            Ok(Self(text.to_owned()))
        } else {
            Err(FieldViolation::new(
                field,
                "must be 1 to 128 printable ASCII characters without spaces",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
