//! HMAC-SHA256 signatures of message and push bodies, in GitHub's form
//! (`sha256=<hex>`), made for outgoing webhooks and checked, in constant
//! time, on incoming pushes.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The header value signing `body` with `key`: `sha256=<hex>`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `header` (`sha256=<hex>`) signs `body` with `key`. The digests
/// are compared in constant time; a missing, malformed or other-algorithm
/// header is refused.
pub fn verify(key: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_sig) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(given) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of GitHub's "Validating webhook deliveries".
    #[test]
    fn github_test_vector() {
        let key = b"It's a Secret to Everybody";
        let sig = signature(key, b"Hello, World!");
        assert_eq!(
            sig,
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        assert!(verify(key, b"Hello, World!", Some(&sig)));
    }

    #[test]
    fn wrong_missing_or_malformed_signatures_are_refused() {
        let key = b"k";
        let sig = signature(key, b"body");
        assert!(!verify(key, b"body!", Some(&sig)));
        assert!(!verify(b"other", b"body", Some(&sig)));
        assert!(!verify(key, b"body", None));
        assert!(!verify(key, b"body", Some("sha1=00")));
        assert!(!verify(key, b"body", Some("sha256=zz")));
        assert!(!verify(key, b"body", Some(&sig[..sig.len() - 2])));
    }
}
