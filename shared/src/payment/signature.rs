//! Stripe webhook signatures (`Stripe-Signature` header).
//!
//! The header is `t=<unix seconds>,v1=<hex>[,v1=<hex>...][,v0=<hex>]`. Each `v1` is
//! `hex(HMAC-SHA256(secret, "<t>.<raw body>"))`, where the secret is the endpoint's whole
//! `whsec_...` string. Stripe sends one `v1` per active secret while a secret is being rolled,
//! so every `v1` is tried against every configured secret; `v0` (test-mode legacy scheme) and
//! unknown schemes are ignored. The signature is checked before the timestamp, so a forger
//! learns nothing about the clock; a genuine but old header is refused as a replay.
//!
//! Verify the raw body bytes exactly as received: parsing and re-serializing JSON changes them.

use std::fmt;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::{ConfigError, Env};

type HmacSha256 = Hmac<Sha256>;

/// Stripe's recommended tolerance between the signed timestamp and our clock.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// A webhook endpoint's signing secret (`whsec_...`). Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    /// Refuses an empty (or blank) secret: an HMAC with an empty key proves nothing.
    pub fn new(raw: impl Into<String>) -> Result<Self, ConfigError> {
        let raw = raw.into();
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(ConfigError::Invalid {
                name: "STRIPE_WEBHOOK_SECRETS",
                reason: "a webhook secret is empty".into(),
            });
        }
        Ok(Self(raw.to_owned()))
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length; this cannot fail.
        <HmacSha256 as KeyInit>::new_from_slice(self.0.as_bytes())
            .expect("HMAC takes keys of any length")
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(***)")
    }
}

/// `STRIPE_WEBHOOK_SECRETS`: one or more secrets, comma-separated (the new and the old one
/// while rolling a secret). At least one is required.
pub fn webhook_secrets_from_env(env: &Env) -> Result<Vec<WebhookSecret>, ConfigError> {
    let raw = env.required("STRIPE_WEBHOOK_SECRETS")?;
    parse_secrets(&raw)
}

fn parse_secrets(raw: &str) -> Result<Vec<WebhookSecret>, ConfigError> {
    let secrets: Vec<WebhookSecret> = raw
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(WebhookSecret::new)
        .collect::<Result<_, _>>()?;
    if secrets.is_empty() {
        return Err(ConfigError::Missing("STRIPE_WEBHOOK_SECRETS"));
    }
    Ok(secrets)
}

/// Why a webhook was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Empty header, no or non-numeric `t`, an element without `=`, a `v1` that is not 64 hex
    /// digits.
    #[error("malformed Stripe-Signature header")]
    Malformed,
    /// A well-formed header without any `v1` signature (for example only `v0`).
    #[error("no v1 signature in the Stripe-Signature header")]
    NoSignatures,
    /// No `v1` matches the body under any configured secret.
    #[error("no signature matches the payload")]
    Mismatch,
    /// Correctly signed, but the timestamp is older than the tolerance: a replay.
    #[error("signature timestamp is too old")]
    TooOld,
    /// Correctly signed, but the timestamp is further in the future than the tolerance.
    #[error("signature timestamp is in the future")]
    TooNew,
}

impl SignatureError {
    /// A stable slug for `application/problem+json` responses and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed_signature_header",
            Self::NoSignatures => "no_signatures",
            Self::Mismatch => "signature_mismatch",
            Self::TooOld => "timestamp_too_old",
            Self::TooNew => "timestamp_too_new",
        }
    }
}

struct ParsedHeader {
    timestamp: i64,
    v1: Vec<[u8; 32]>,
}

fn parse_header(header: &str) -> Result<ParsedHeader, SignatureError> {
    let mut timestamp = None;
    let mut v1 = Vec::new();
    for element in header.split(',') {
        let (scheme, value) = element
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match scheme {
            "t" => {
                if timestamp.is_some() || value.is_empty() {
                    return Err(SignatureError::Malformed);
                }
                let t = value
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| value.parse::<i64>().ok())
                    .flatten()
                    .ok_or(SignatureError::Malformed)?;
                timestamp = Some(t);
            }
            "v1" => {
                let mut bytes = [0u8; 32];
                hex::decode_to_slice(value, &mut bytes).map_err(|_| SignatureError::Malformed)?;
                v1.push(bytes);
            }
            // v0 (legacy test-mode scheme) and schemes Stripe may add later.
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if v1.is_empty() {
        return Err(SignatureError::NoSignatures);
    }
    Ok(ParsedHeader { timestamp, v1 })
}

fn expected(secret: &WebhookSecret, timestamp: i64, payload: &[u8]) -> [u8; 32] {
    let mut mac = secret.mac();
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac.finalize().into_bytes().into()
}

/// Checks a `Stripe-Signature` header against the raw body. `now_unix` is our clock in
/// seconds; `tolerance` is how far the signed timestamp may be from it, either way.
pub fn verify(
    header: &str,
    payload: &[u8],
    secrets: &[WebhookSecret],
    now_unix: i64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let parsed = parse_header(header)?;
    let mut matched = false;
    for secret in secrets {
        let want = expected(secret, parsed.timestamp, payload);
        for got in &parsed.v1 {
            // Constant time: the comparison does not reveal how many leading bytes matched.
            matched |= bool::from(want.ct_eq(got));
        }
    }
    if !matched {
        return Err(SignatureError::Mismatch);
    }
    let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    let age = now_unix.saturating_sub(parsed.timestamp);
    if age > tolerance {
        return Err(SignatureError::TooOld);
    }
    if age < -tolerance {
        return Err(SignatureError::TooNew);
    }
    Ok(())
}

/// The `Stripe-Signature` header value Stripe would send for `payload` at `timestamp`
/// (for tests and for local tools that play Stripe).
pub fn sign(secret: &WebhookSecret, timestamp: i64, payload: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(expected(secret, timestamp, payload))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_492_774_577;
    const BODY: &[u8] = br#"{"id":"evt_test_webhook","object":"event"}"#;
    const V1: &str = "88a022085c6bdb887b02cb26ff76dd681234d9675c0f22844059f55552a8883a";

    fn secret(s: &str) -> WebhookSecret {
        WebhookSecret::new(s).unwrap()
    }

    fn check(
        header: &str,
        body: &[u8],
        secrets: &[WebhookSecret],
        now: i64,
    ) -> Result<(), SignatureError> {
        verify(header, body, secrets, now, DEFAULT_TOLERANCE)
    }

    #[test]
    fn the_known_vector_signs_and_verifies() {
        let s = secret("whsec_test_secret");
        assert_eq!(sign(&s, T, BODY), format!("t={T},v1={V1}"));
        assert_eq!(check(&format!("t={T},v1={V1}"), BODY, &[s], T), Ok(()));
    }

    #[test]
    fn forged_signatures_are_refused() {
        let header = format!("t={T},v1={V1}");
        // Signed with another secret.
        assert_eq!(
            check(&header, BODY, &[secret("whsec_other")], T),
            Err(SignatureError::Mismatch)
        );
        // One byte of the body changed.
        let mut body = BODY.to_vec();
        body[10] ^= 0x01;
        assert_eq!(
            check(&header, &body, &[secret("whsec_test_secret")], T),
            Err(SignatureError::Mismatch)
        );
        // One hex digit of the signature changed.
        let mut forged = V1.to_owned();
        forged.replace_range(0..1, "9");
        assert_eq!(
            check(
                &format!("t={T},v1={forged}"),
                BODY,
                &[secret("whsec_test_secret")],
                T
            ),
            Err(SignatureError::Mismatch)
        );
        // A different timestamp with the old signature.
        assert_eq!(
            check(
                &format!("t={},v1={V1}", T + 1),
                BODY,
                &[secret("whsec_test_secret")],
                T
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_replayed_header_on_another_body_is_a_mismatch() {
        let s = secret("whsec_test_secret");
        let header = sign(&s, T, BODY);
        let other = br#"{"id":"evt_other","object":"event"}"#;
        assert_eq!(
            check(&header, other, &[s], T),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn timestamps_outside_the_tolerance_are_refused_either_way() {
        let s = [secret("whsec_test_secret")];
        let header = format!("t={T},v1={V1}");
        assert_eq!(check(&header, BODY, &s, T + 300), Ok(()));
        assert_eq!(check(&header, BODY, &s, T - 300), Ok(()));
        assert_eq!(
            check(&header, BODY, &s, T + 301),
            Err(SignatureError::TooOld)
        );
        assert_eq!(
            check(&header, BODY, &s, T - 301),
            Err(SignatureError::TooNew)
        );
    }

    #[test]
    fn malformed_headers_are_refused_before_any_hmac() {
        let s = [secret("whsec_test_secret")];
        for header in [
            "",
            "   ",
            &format!("v1={V1}"),
            &format!("t=abc,v1={V1}"),
            &format!("t=-5,v1={V1}"),
            &format!("t=,v1={V1}"),
            &format!("t={T},t={T},v1={V1}"),
            &format!("t={T},v1=zz"),
            &format!("t={T},v1={}", &V1[..62]),
            &format!("t={T},v1"),
            &format!("t={T},,v1={V1}"),
        ] {
            assert_eq!(
                check(header, BODY, &s, T),
                Err(SignatureError::Malformed),
                "{header:?}"
            );
        }
        assert_eq!(
            check(&format!("t={T},v0={V1}"), BODY, &s, T),
            Err(SignatureError::NoSignatures)
        );
    }

    #[test]
    fn v0_and_unknown_schemes_are_ignored_beside_a_valid_v1() {
        let s = [secret("whsec_test_secret")];
        let header = format!("t={T},v0=deadbeef,v1={V1},v2=xyz");
        assert_eq!(check(&header, BODY, &s, T), Ok(()));
        // Whitespace around elements, as some proxies add it.
        assert_eq!(check(&format!("t={T}, v1={V1}"), BODY, &s, T), Ok(()));
    }

    #[test]
    fn rotation_accepts_any_v1_under_any_configured_secret() {
        let old = secret("whsec_old");
        let new = secret("whsec_new");
        // During a roll Stripe signs with both secrets.
        let by_old = sign(&old, T, BODY);
        let by_new = sign(&new, T, BODY);
        let both = format!("{by_old},{}", by_new.split_once(',').unwrap().1);
        // A receiver that knows only the new secret, only the old one, or both accepts it.
        for secrets in [
            vec![new.clone()],
            vec![old.clone()],
            vec![old.clone(), new.clone()],
        ] {
            assert_eq!(check(&both, BODY, &secrets, T), Ok(()));
        }
        // A receiver already on the new secret still accepts events signed by it alone, and the
        // old secret, once dropped, no longer verifies anything.
        assert_eq!(check(&by_new, BODY, &[old.clone(), new.clone()], T), Ok(()));
        assert_eq!(
            check(&by_old, BODY, &[new], T),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(check(&by_old, BODY, &[], T), Err(SignatureError::Mismatch));
    }

    #[test]
    fn secrets_never_print_and_parse_from_a_comma_separated_list() {
        let s = secret("whsec_very_secret");
        assert!(!format!("{s:?}").contains("very_secret"));
        let list = parse_secrets(" whsec_a , whsec_b ,").unwrap();
        assert_eq!(list, vec![secret("whsec_a"), secret("whsec_b")]);
        assert!(parse_secrets(" , ").is_err());
        assert!(WebhookSecret::new("  ").is_err());
    }

    #[test]
    fn slugs_are_stable() {
        assert_eq!(
            [
                SignatureError::Malformed,
                SignatureError::NoSignatures,
                SignatureError::Mismatch,
                SignatureError::TooOld,
                SignatureError::TooNew
            ]
            .map(|e| e.as_str()),
            [
                "malformed_signature_header",
                "no_signatures",
                "signature_mismatch",
                "timestamp_too_old",
                "timestamp_too_new"
            ]
        );
    }
}
