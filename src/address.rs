//! Blockchain addresses, shared by Identity (a user's and a wallet's address)
//! and the Treasury (where deposits come from and withdrawals go): held in
//! lowercase, shown EIP-55 checksummed.

use sha3::{Digest, Keccak256};

use crate::error::FieldViolation;

/// A blockchain address, held in lowercase; shown EIP-55 checksummed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address(String);

impl Address {
    pub fn parse(field: &str, text: &str) -> Result<Self, FieldViolation> {
        canonical_address(text)
            .map(Self)
            .map_err(|why| FieldViolation::new(field, why))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The EIP-55 checksummed form of a stored (lowercase) address.
pub fn display_address(stored: &str) -> String {
    checksummed(stored.trim_start_matches("0x"))
}

/// Checks an address and returns it in lowercase. All-lowercase and
/// all-uppercase hex are accepted as they are; mixed case must carry a valid
/// EIP-55 checksum, since it is then a typo check the sender relied on.
fn canonical_address(address: &str) -> Result<String, &'static str> {
    let hex = address
        .strip_prefix("0x")
        .ok_or("must start with 0x followed by 40 hexadecimal digits")?;
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("must start with 0x followed by 40 hexadecimal digits");
    }
    let lower = hex.to_ascii_lowercase();
    let mixed =
        hex.bytes().any(|b| b.is_ascii_lowercase()) && hex.bytes().any(|b| b.is_ascii_uppercase());
    if mixed && checksummed(&lower) != address {
        return Err("has an invalid EIP-55 checksum");
    }
    Ok(format!("0x{lower}"))
}

/// The EIP-55 form of a lowercase address body (40 hex digits, no `0x`).
fn checksummed(lower_hex: &str) -> String {
    let hash = Keccak256::digest(lower_hex.as_bytes());
    let mut out = String::with_capacity(42);
    out.push_str("0x");
    for (index, character) in lower_hex.chars().enumerate() {
        let nibble = (hash[index / 2] >> (if index % 2 == 0 { 4 } else { 0 })) & 0x0f;
        if character.is_ascii_alphabetic() && nibble >= 8 {
            out.push(character.to_ascii_uppercase());
        } else {
            out.push(character);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eip55_checksums_match_the_reference_vectors() {
        for address in [
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
            "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        ] {
            let lower = canonical_address(address).unwrap();
            assert_eq!(checksummed(&lower[2..]), address);
        }
        assert!(canonical_address("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD").is_err());
        assert!(canonical_address("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed").is_ok());
        assert!(canonical_address("5aaeb6053f3e94c9b9a09f33669435e7ef1beaed").is_err());
        assert!(canonical_address("0x5aaeb6053f3e94c9b9a09f33669435e7ef1bea").is_err());
    }
}
