use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why an identifier was refused. Each variant names the rule that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} is longer than {max} characters")]
    TooLong { kind: &'static str, max: usize },
    #[error("{kind} may contain only ASCII letters, digits, '-' and '_'")]
    InvalidCharacter { kind: &'static str },
    #[error("{kind} must contain only printable characters")]
    NotPrintable { kind: &'static str },
    #[error("reservation id must be a UUID")]
    NotAUuid,
}

fn check_slug(kind: &'static str, raw: &str, max: usize) -> Result<(), IdError> {
    if raw.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if raw.len() > max {
        return Err(IdError::TooLong { kind, max });
    }
    // Slugs end up inside Redis keys next to a `{hash tag}`; braces or separators in an id
    // could move a key to another cluster slot, so the alphabet is closed.
    if !raw
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(IdError::InvalidCharacter { kind });
    }
    Ok(())
}

fn check_printable(kind: &'static str, raw: &str, max: usize) -> Result<(), IdError> {
    if raw.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if raw.len() > max {
        return Err(IdError::TooLong { kind, max });
    }
    if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(IdError::NotPrintable { kind });
    }
    Ok(())
}

/// A sale, e.g. `console-drop-2026`. ASCII letters, digits, `-`, `_`; at most 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SaleId(String);

impl SaleId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: impl Into<String>) -> Result<Self, IdError> {
        let raw = raw.into();
        check_slug("sale id", &raw, Self::MAX_LEN)?;
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The buyer, as the API Gateway authorizer names them (a JWT `sub`). Never read from a body.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

impl UserId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: impl Into<String>) -> Result<Self, IdError> {
        let raw = raw.into();
        check_printable("user id", &raw, Self::MAX_LEN)?;
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A client-chosen key that makes a retried request return the first outcome.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: impl Into<String>) -> Result<Self, IdError> {
        let raw = raw.into();
        check_printable("idempotency key", &raw, Self::MAX_LEN)?;
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A reservation. UUIDv7, so ids sort by creation time in logs and tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ReservationId(Uuid);

impl ReservationId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn parse(raw: &str) -> Result<Self, IdError> {
        Uuid::try_parse(raw)
            .map(Self)
            .map_err(|_| IdError::NotAUuid)
    }
}

impl Default for ReservationId {
    fn default() -> Self {
        Self::new()
    }
}

macro_rules! string_conversions {
    ($($ty:ident),*) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl TryFrom<String> for $ty {
            type Error = IdError;
            fn try_from(raw: String) -> Result<Self, Self::Error> {
                Self::parse(raw)
            }
        }
        impl From<$ty> for String {
            fn from(id: $ty) -> String {
                id.0
            }
        }
    )*};
}
string_conversions!(SaleId, UserId, IdempotencyKey);

impl fmt::Display for ReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl TryFrom<String> for ReservationId {
    type Error = IdError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<ReservationId> for String {
    fn from(id: ReservationId) -> String {
        id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sale_id_refuses_characters_that_could_break_a_redis_hash_tag() {
        for bad in ["a{b", "a}b", "a:b", "a b", "é"] {
            assert_eq!(
                SaleId::parse(bad),
                Err(IdError::InvalidCharacter { kind: "sale id" }),
                "{bad}"
            );
        }
        assert!(SaleId::parse("drop-2026_a").is_ok());
    }

    #[test]
    fn ids_refuse_empty_and_overlong_values() {
        assert_eq!(SaleId::parse(""), Err(IdError::Empty { kind: "sale id" }));
        assert!(matches!(
            SaleId::parse("x".repeat(65)),
            Err(IdError::TooLong { max: 64, .. })
        ));
        assert!(matches!(
            UserId::parse("u".repeat(129)),
            Err(IdError::TooLong { max: 128, .. })
        ));
        assert_eq!(
            IdempotencyKey::parse("has space"),
            Err(IdError::NotPrintable {
                kind: "idempotency key"
            })
        );
    }

    #[test]
    fn reservation_ids_round_trip_through_their_string_form() {
        let id = ReservationId::new();
        assert_eq!(ReservationId::parse(&id.to_string()), Ok(id));
        assert_eq!(ReservationId::parse("not-a-uuid"), Err(IdError::NotAUuid));
    }

    #[test]
    fn ids_deserialize_through_validation() {
        let ok: SaleId = serde_json::from_str("\"s-1\"").unwrap();
        assert_eq!(ok.as_str(), "s-1");
        assert!(serde_json::from_str::<SaleId>("\"a{b\"").is_err());
    }
}
