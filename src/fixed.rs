//! Exact fixed-point numbers: amounts of AZR and other decimals held as a
//! count of the smallest unit in an `i64`.
//!
//! Why integers: both backends store, compare and sum a `BIGINT` exactly
//! (SeaORM's `Decimal` on SQLite goes through `f64` and silently rounds), and
//! CHECK constraints such as the 1:1 peg are plain integer comparisons.
//! Parsing is strict: a value is rejected, never rounded.

use rust_decimal::Decimal;

use crate::error::FieldViolation;

/// Parses `text` as a non-negative decimal with at most `scale` fractional
/// digits and returns it in units of `10^-scale`, no larger than `max_units`.
pub fn parse_units(
    field: &str,
    text: &str,
    scale: u32,
    max_units: i64,
) -> Result<i64, FieldViolation> {
    let invalid = |why: String| FieldViolation::new(field, why);
    if text.is_empty() {
        return Err(invalid("is required".into()));
    }
    if text.starts_with('-') {
        return Err(invalid("must not be negative".into()));
    }
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    let plain = |digits: &str| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    if !plain(whole) || fraction.is_some_and(|digits| !plain(digits)) {
        return Err(invalid(format!(
            "must be a plain decimal number such as \"12.5\" (no exponent, sign, separators or spaces), got {text:?}"
        )));
    }
    let fraction = fraction.unwrap_or("");
    if fraction.len() > scale as usize {
        return Err(invalid(format!(
            "has {} fractional digits; at most {scale} are allowed",
            fraction.len()
        )));
    }
    let maximum = format_units(max_units, scale);
    let too_large = || invalid(format!("must be at most {maximum}"));
    let whole = whole.trim_start_matches('0');
    if whole.len() > 19 {
        return Err(too_large());
    }
    let whole: i128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_large())?
    };
    let fraction_units: i128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse::<i128>().map_err(|_| too_large())?
            * 10i128.pow(scale - fraction.len() as u32)
    };
    let units = whole * 10i128.pow(scale) + fraction_units;
    if units > i128::from(max_units) {
        return Err(too_large());
    }
    Ok(units as i64)
}

/// Writes `units` of `10^-scale` in canonical form, every fractional digit
/// written out: `format_units(12_500_000, 6) == "12.500000"`.
pub fn format_units(units: i64, scale: u32) -> String {
    Decimal::new(units, scale).to_string()
}

/// As [`format_units`], for sums wider than an i64 (aggregates over many
/// rows): exact integer arithmetic, the same text for values that fit.
pub fn format_wide_units(units: i128, scale: u32) -> String {
    let divisor = 10_u128.pow(scale);
    let magnitude = units.unsigned_abs();
    let sign = if units < 0 { "-" } else { "" };
    let (whole, fraction) = (magnitude / divisor, magnitude % divisor);
    if scale == 0 {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{fraction:0width$}", width = scale as usize)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn wide_units_format_like_narrow_ones_and_beyond() {
        for units in [
            0_i64,
            1,
            -1,
            999_999,
            1_000_000,
            -1_234_567,
            i64::MAX,
            i64::MIN + 1,
        ] {
            assert_eq!(
                super::format_wide_units(i128::from(units), 6),
                super::format_units(units, 6)
            );
        }
        assert_eq!(
            super::format_wide_units(i128::from(i64::MAX) * 3, 6),
            "27670116110564.327421"
        );
    }

    use super::*;

    const MAX: i64 = 1_000_000_000_000_000;

    #[test]
    fn plain_decimals_are_read_exactly() {
        assert_eq!(parse_units("x", "12.5", 6, MAX), Ok(12_500_000));
        assert_eq!(parse_units("x", "0.000001", 6, MAX), Ok(1));
        assert_eq!(parse_units("x", "007", 6, MAX), Ok(7_000_000));
        assert_eq!(parse_units("x", "0", 6, MAX), Ok(0));
    }

    #[test]
    fn anything_but_a_plain_decimal_is_rejected() {
        for text in [
            "", "-1", "+1", "1e3", "1,5", "NaN", "inf", " 1", "1 ", ".5", "5.", "1.2.3", "0x10",
        ] {
            assert!(
                parse_units("x", text, 6, MAX).is_err(),
                "{text:?} was accepted"
            );
        }
    }

    #[test]
    fn more_fractional_digits_than_the_scale_are_rejected_not_rounded() {
        let error = parse_units("x", "1.0000001", 6, MAX).unwrap_err();
        assert!(error.description.contains("at most 6"), "{error:?}");
    }

    #[test]
    fn values_above_the_maximum_are_rejected() {
        assert!(parse_units("x", "1000000000.000001", 6, MAX).is_err());
        assert_eq!(parse_units("x", "1000000000", 6, MAX), Ok(MAX));
        assert!(parse_units("x", "1e400", 6, MAX).is_err());
        assert!(parse_units("x", &"9".repeat(400), 6, MAX).is_err());
    }

    #[test]
    fn formatting_writes_every_fractional_digit() {
        assert_eq!(format_units(12_500_000, 6), "12.500000");
        assert_eq!(format_units(0, 4), "0.0000");
        assert_eq!(format_units(MAX, 6), "1000000000.000000");
    }
}
