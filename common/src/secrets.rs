//! Tokens and digests: how a bearer token is made and stored (only its
//! sha256), and the content address of an artifact.

use sha2::{Digest, Sha256};

/// 32 random bytes, hex: `sluice_` + 64 digits.
pub fn generate_token() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|err| format!("no randomness for a token: {err}"))?;
    Ok(format!("sluice_{}", hex(&bytes)))
}

/// What a tokens file keeps of a token: its sha256, never the token.
pub fn hash_token(token: &str) -> String {
    sha256_hex(token.as_bytes())
}

/// An artifact's content address.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Whether `text` is a sha256 as [`sha256_hex`] writes it: 64 lowercase
/// hex digits. A cache or store path built from anything else is refused.
pub fn is_sha256(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        text.push(char::from(b"0123456789abcdef"[usize::from(byte & 0xf)]));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_content_addresses() {
        let digest = sha256_hex(b"abc");
        assert_eq!(
            digest,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(is_sha256(&digest));
        assert!(!is_sha256(&digest.to_uppercase()));
        assert!(!is_sha256("../etc/passwd"));
    }

    #[test]
    fn tokens_are_random_and_stored_hashed() {
        let one = generate_token().unwrap();
        let two = generate_token().unwrap();
        assert_ne!(one, two);
        assert!(one.starts_with("sluice_") && one.len() == 7 + 64);
        assert_eq!(hash_token(&one), sha256_hex(one.as_bytes()));
    }
}
