//! Queue tickets and the pre-queue's seed, both from one secret key (`WAITING_ROOM_KEY`).
//!
//! A ticket is a JWT (RFC 7519) signed with HMAC-SHA256 (`HS256`, RFC 7518 §3.2; verified by the
//! `jsonwebtoken` crate, whose HMAC check is constant-time). Claims:
//! `iss` = [`ISSUER`], `sub` = buyer id, `sale` = sale id, `opn` = the sale's opening (Unix
//! ms: a ticket of an earlier opening of the same sale id is another sale's), `pos` = 1-based
//! position,
//! `adm` = admission time (Unix ms), `end` = end of the admission window (Unix ms; the check),
//! `exp` = the same rounded up to seconds (for JWT tools), `iat` (Unix s). The times are checked against our [`crate::domain::Clock`], not by the
//! library, so tests move time instead of sleeping.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Place;
use crate::config::{ConfigError, Env};
use crate::domain::{SaleId, Timestamp, UserId};

/// The `iss` of every ticket.
pub const ISSUER: &str = "flashsale-waiting-room";
/// The key must carry at least this many bytes (RFC 7518 §3.2: a key of at least the hash's
/// size, 256 bits, for HS256).
pub const MIN_KEY_BYTES: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// The ticket key. Never printed.
#[derive(Clone)]
pub struct TicketKey {
    secret: Vec<u8>,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TicketKey(***)")
    }
}

impl TicketKey {
    /// Refuses a key shorter than [`MIN_KEY_BYTES`].
    pub fn new(secret: &[u8]) -> Result<Self, ConfigError> {
        if secret.len() < MIN_KEY_BYTES {
            return Err(ConfigError::Invalid {
                name: "WAITING_ROOM_KEY",
                reason: format!("must be at least {MIN_KEY_BYTES} bytes"),
            });
        }
        Ok(Self {
            secret: secret.to_vec(),
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        })
    }

    /// `WAITING_ROOM_KEY` (required where a room runs: join and reserve).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Self::new(env.required("WAITING_ROOM_KEY")?.as_bytes())
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.secret)
            .expect("HMAC takes keys of any length");
        for part in parts {
            // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// The ticket for `place`, admitted for `window` from its admission time.
    pub fn issue(
        &self,
        sale: &SaleId,
        opens_at: Timestamp,
        buyer: &UserId,
        place: Place,
        window: std::time::Duration,
        now: Timestamp,
    ) -> String {
        let claims = Claims {
            iss: ISSUER.into(),
            sub: buyer.as_str().into(),
            sale: sale.as_str().into(),
            opn: opens_at.as_millis(),
            pos: place.position,
            adm: place.admit_at.as_millis(),
            end: place.admit_at.plus(window).as_millis(),
            exp: (place.admit_at.plus(window).as_millis() + 999).div_euclid(1000),
            iat: now.as_secs(),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 encoding of plain claims cannot fail")
    }

    /// Checks `token` for `buyer` at `sale` at `now`: the admitted place, or why not.
    pub fn verify(
        &self,
        token: &str,
        sale: &SaleId,
        opens_at: Timestamp,
        buyer: &UserId,
        now: Timestamp,
    ) -> Result<Admitted, TicketError> {
        let (place, ends_at) = self.read(token, sale, opens_at, buyer)?;
        if now >= ends_at {
            return Err(TicketError::Expired);
        }
        if now < place.admit_at {
            return Err(TicketError::NotYetAdmitted {
                admit_at: place.admit_at,
            });
        }
        Ok(Admitted {
            position: place.position,
            admit_at: place.admit_at,
        })
    }

    /// The place `token` holds for `buyer` at `sale` and the end of its window, whatever the
    /// time: signature, issuer, sale and buyer checked.
    pub fn read(
        &self,
        token: &str,
        sale: &SaleId,
        opens_at: Timestamp,
        buyer: &UserId,
    ) -> Result<(Place, Timestamp), TicketError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["iss", "sub", "exp"]);
        // Times are ours to check (below), against the injected clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let claims = decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|_| TicketError::Invalid)?
            .claims;
        if claims.sale != sale.as_str() || claims.opn != opens_at.as_millis() {
            return Err(TicketError::OtherSale);
        }
        if claims.sub != buyer.as_str() {
            return Err(TicketError::OtherBuyer);
        }
        Ok((
            Place {
                position: claims.pos,
                admit_at: Timestamp::from_millis(claims.adm),
            },
            Timestamp::from_millis(claims.end),
        ))
    }

    /// The pre-queue seed of a sale opening at `opens_at` (a new opening time, a new seed).
    pub fn pre_queue_seed(&self, sale: &SaleId, opens_at: Timestamp) -> PreQueueSeed {
        PreQueueSeed(self.mac(&[
            b"pre-queue",
            sale.as_str().as_bytes(),
            &opens_at.as_millis().to_be_bytes(),
        ]))
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    sale: String,
    opn: i64,
    pos: u64,
    adm: i64,
    end: i64,
    exp: i64,
    iat: i64,
}

/// A ticket that admits its holder now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    pub position: u64,
    pub admit_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// Not a ticket we signed (forged, tampered, truncated, another key).
    #[error("the queue ticket is not valid")]
    Invalid,
    #[error("the queue ticket is for another sale")]
    OtherSale,
    #[error("the queue ticket belongs to another buyer")]
    OtherBuyer,
    #[error("the queue ticket's admission window is over")]
    Expired,
    #[error("the queue ticket is not admitted yet")]
    NotYetAdmitted { admit_at: Timestamp },
}

/// A sale's pre-queue seed: 32 bytes, `HMAC-SHA256(key, "pre-queue" ‖ sale ‖ opening)`.
/// Secret until the opening (nobody can compute a rank before it), published after it.
#[derive(Clone, PartialEq, Eq)]
pub struct PreQueueSeed([u8; 32]);

impl fmt::Debug for PreQueueSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PreQueueSeed(***)")
    }
}

impl PreQueueSeed {
    /// `hex(SHA-256(seed))`: published before the opening, so the seed cannot be changed after.
    pub fn commitment(&self) -> String {
        hex::encode(Sha256::digest(self.0))
    }

    /// The seed itself, hex: published once the sale is open.
    pub fn reveal(&self) -> String {
        hex::encode(self.0)
    }

    /// The buyer's rank key: the first 52 bits of `HMAC-SHA256(seed, buyer id)` (exact in a
    /// Redis sorted-set score, a double). The pre-queue is served in increasing rank key, ties
    /// (one in 2^52) by buyer id, byte order, as a Redis sorted set orders them.
    pub fn rank_key(&self, buyer: &UserId) -> u64 {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC takes keys of any length");
        mac.update(buyer.as_str().as_bytes());
        let bytes: [u8; 32] = mac.finalize().into_bytes().into();
        u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes")) >> 12
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const OPEN: Timestamp = Timestamp::from_millis(500);

    fn key() -> TicketKey {
        TicketKey::new(b"a test key of at least thirty-two bytes").unwrap()
    }

    fn place(pos: u64, at: i64) -> Place {
        Place {
            position: pos,
            admit_at: Timestamp::from_millis(at),
        }
    }

    #[test]
    fn an_admitted_ticket_admits_its_buyer_at_its_sale_within_its_window() {
        let (sale, buyer) = (SaleId::parse("s1").unwrap(), UserId::parse("u1").unwrap());
        let t = key().issue(
            &sale,
            OPEN,
            &buyer,
            place(7, 10_000),
            Duration::from_secs(60),
            Timestamp::from_millis(1_000),
        );
        let at = |ms| key().verify(&t, &sale, OPEN, &buyer, Timestamp::from_millis(ms));
        assert_eq!(
            at(9_999),
            Err(TicketError::NotYetAdmitted {
                admit_at: Timestamp::from_millis(10_000)
            })
        );
        assert_eq!(
            at(10_000),
            Ok(Admitted {
                position: 7,
                admit_at: Timestamp::from_millis(10_000)
            })
        );
        assert!(at(69_999).is_ok());
        assert_eq!(at(70_000), Err(TicketError::Expired));
        let other_buyer = UserId::parse("u2").unwrap();
        assert_eq!(
            key().verify(
                &t,
                &sale,
                OPEN,
                &other_buyer,
                Timestamp::from_millis(20_000)
            ),
            Err(TicketError::OtherBuyer)
        );
        let other_sale = SaleId::parse("s2").unwrap();
        assert_eq!(
            key().verify(
                &t,
                &other_sale,
                OPEN,
                &buyer,
                Timestamp::from_millis(20_000)
            ),
            Err(TicketError::OtherSale)
        );
    }

    #[test]
    fn a_ticket_of_another_opening_of_the_same_sale_is_another_sales() {
        let (sale, buyer) = (SaleId::parse("s1").unwrap(), UserId::parse("u1").unwrap());
        let now = Timestamp::from_millis(50_000);
        let t = key().issue(
            &sale,
            OPEN,
            &buyer,
            place(1, 40_000),
            Duration::from_secs(60),
            now,
        );
        let moved = Timestamp::from_millis(OPEN.as_millis() + 1);
        assert_eq!(
            key().verify(&t, &sale, moved, &buyer, now),
            Err(TicketError::OtherSale)
        );
        assert!(key().verify(&t, &sale, OPEN, &buyer, now).is_ok());
    }

    #[test]
    fn forged_and_tampered_tickets_are_invalid() {
        let (sale, buyer) = (SaleId::parse("s1").unwrap(), UserId::parse("u1").unwrap());
        let now = Timestamp::from_millis(50_000);
        let t = key().issue(
            &sale,
            OPEN,
            &buyer,
            place(900, 40_000),
            Duration::from_secs(60),
            now,
        );
        // Another key.
        let forger = TicketKey::new(b"another key of at least thirty-two bytes").unwrap();
        let forged = forger.issue(
            &sale,
            OPEN,
            &buyer,
            place(1, 0),
            Duration::from_secs(600),
            now,
        );
        assert_eq!(
            key().verify(&forged, &sale, OPEN, &buyer, now),
            Err(TicketError::Invalid)
        );
        // The payload changed (an earlier position), the signature kept.
        let parts: Vec<&str> = t.split('.').collect();
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = String::from_utf8(b64.decode(parts[1]).unwrap()).unwrap();
        let earlier = payload.replace("\"pos\":900", "\"pos\":1");
        assert_ne!(payload, earlier);
        let tampered = format!("{}.{}.{}", parts[0], b64.encode(earlier), parts[2]);
        assert_eq!(
            key().verify(&tampered, &sale, OPEN, &buyer, now),
            Err(TicketError::Invalid)
        );
        // "alg": "none" and garbage.
        let none = format!(
            "{}.{}.",
            b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
            parts[1]
        );
        assert_eq!(
            key().verify(&none, &sale, OPEN, &buyer, now),
            Err(TicketError::Invalid)
        );
        assert_eq!(
            key().verify("x.y.z", &sale, OPEN, &buyer, now),
            Err(TicketError::Invalid)
        );
        assert_eq!(
            key().verify("", &sale, OPEN, &buyer, now),
            Err(TicketError::Invalid)
        );
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(TicketKey::new(b"too short").is_err());
        assert!(!format!("{:?}", key()).contains("test key"));
    }

    #[test]
    fn the_seed_is_per_sale_and_opening_and_its_commitment_binds_it() {
        let sale = SaleId::parse("s1").unwrap();
        let a = key().pre_queue_seed(&sale, Timestamp::from_millis(1));
        let b = key().pre_queue_seed(&sale, Timestamp::from_millis(2));
        let c = key().pre_queue_seed(&SaleId::parse("s2").unwrap(), Timestamp::from_millis(1));
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            a.commitment(),
            hex::encode(Sha256::digest(hex::decode(a.reveal()).unwrap()))
        );
        let buyer = UserId::parse("u1").unwrap();
        assert!(a.rank_key(&buyer) < (1 << 52));
        assert_ne!(a.rank_key(&buyer), b.rank_key(&buyer));
    }
}
