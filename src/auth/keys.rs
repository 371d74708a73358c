//! API key secrets: 256 random bits, shown once, stored only as a SHA-256
//! hash. A slow password hash is not needed: the secret is not guessable, and
//! a fast hash keeps authentication to one indexed lookup per call.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

const SCHEME: &str = "azr_";
/// `azr_` and 32 random bytes in unpadded base64url.
const SECRET_LENGTH: usize = 4 + 43;

pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{SCHEME}{}", URL_SAFE_NO_PAD.encode(bytes))
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The first characters of a secret, safe to show so its owner can tell
/// keys apart.
pub fn secret_prefix(secret: &str) -> String {
    secret.chars().take(12).collect()
}

pub(crate) fn looks_like_secret(text: &str) -> bool {
    text.len() == SECRET_LENGTH
        && text.starts_with(SCHEME)
        && text[SCHEME.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_unique_well_formed_and_hashed_stably() {
        let first = generate_secret();
        let second = generate_secret();
        assert_ne!(first, second);
        assert!(looks_like_secret(&first), "{first}");
        assert_eq!(hash_secret(&first), hash_secret(&first));
        assert_ne!(hash_secret(&first), hash_secret(&second));
        assert_eq!(hash_secret(&first).len(), 64);
        assert!(!looks_like_secret("azr_short"));
    }
}
