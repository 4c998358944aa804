use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("currency must be a three-letter ISO 4217 code in upper case")]
    InvalidCurrency,
    #[error("amount must not be negative")]
    Negative,
    #[error("amounts in different currencies cannot be combined")]
    CurrencyMismatch,
    #[error("amount overflows")]
    Overflow,
}

/// An ISO 4217 currency code such as `EUR` or `USD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(raw: &str) -> Result<Self, MoneyError> {
        let bytes: [u8; 3] = raw
            .as_bytes()
            .try_into()
            .map_err(|_| MoneyError::InvalidCurrency)?;
        if !bytes.iter().all(u8::is_ascii_uppercase) {
            return Err(MoneyError::InvalidCurrency);
        }
        Ok(Self(bytes))
    }

    pub fn as_str(&self) -> &str {
        // Constructed only from ASCII upper-case letters.
        std::str::from_utf8(&self.0).expect("currency code is ASCII")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.as_str().to_owned()
    }
}

/// Money in integer minor units (cents for EUR/USD, yen for JPY): never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(amount_minor: i64, currency: Currency) -> Result<Self, MoneyError> {
        if amount_minor < 0 {
            return Err(MoneyError::Negative);
        }
        Ok(Self {
            amount_minor,
            currency,
        })
    }

    /// The price of `units` items at `self` each.
    pub fn times(self, units: u32) -> Result<Self, MoneyError> {
        let amount_minor = self
            .amount_minor
            .checked_mul(i64::from(units))
            .ok_or(MoneyError::Overflow)?;
        Ok(Self {
            amount_minor,
            ..self
        })
    }

    pub fn checked_add(self, other: Money) -> Result<Self, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch);
        }
        let amount_minor = self
            .amount_minor
            .checked_add(other.amount_minor)
            .ok_or(MoneyError::Overflow)?;
        Ok(Self {
            amount_minor,
            ..self
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur() -> Currency {
        Currency::parse("EUR").unwrap()
    }

    #[test]
    fn currency_accepts_three_upper_case_letters_only() {
        assert!(Currency::parse("EUR").is_ok());
        for bad in ["eur", "EU", "EURO", "E1R", ""] {
            assert_eq!(
                Currency::parse(bad),
                Err(MoneyError::InvalidCurrency),
                "{bad}"
            );
        }
    }

    #[test]
    fn money_refuses_negative_amounts_and_mixed_currencies() {
        assert_eq!(Money::new(-1, eur()), Err(MoneyError::Negative));
        let usd = Money::new(100, Currency::parse("USD").unwrap()).unwrap();
        let eur = Money::new(100, eur()).unwrap();
        assert_eq!(eur.checked_add(usd), Err(MoneyError::CurrencyMismatch));
    }

    #[test]
    fn money_multiplies_without_silent_overflow() {
        let price = Money::new(1999, eur()).unwrap();
        assert_eq!(price.times(3).unwrap().amount_minor, 5997);
        assert_eq!(
            Money::new(i64::MAX, eur()).unwrap().times(2),
            Err(MoneyError::Overflow)
        );
    }

    #[test]
    fn money_serializes_as_minor_units_and_code() {
        let json = serde_json::to_string(&Money::new(999, eur()).unwrap()).unwrap();
        assert_eq!(json, r#"{"amount_minor":999,"currency":"EUR"}"#);
    }
}
