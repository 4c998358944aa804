use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("quantity must be at least 1")]
    Zero,
    #[error("quantity must be at most {max}")]
    TooLarge { max: u32 },
}

/// How many units one reservation holds: 1 to [`Quantity::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Quantity(u32);

impl Quantity {
    /// A flash sale caps buyers at a handful of units; anything larger is a client bug.
    pub const MAX: u32 = 100;
    pub const ONE: Quantity = Quantity(1);

    pub fn new(units: u32) -> Result<Self, QuantityError> {
        match units {
            0 => Err(QuantityError::Zero),
            n if n > Self::MAX => Err(QuantityError::TooLarge { max: Self::MAX }),
            n => Ok(Self(n)),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for Quantity {
    type Error = QuantityError;
    fn try_from(units: u32) -> Result<Self, Self::Error> {
        Self::new(units)
    }
}

impl From<Quantity> for u32 {
    fn from(q: Quantity) -> u32 {
        q.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantity_accepts_one_to_max_only() {
        assert_eq!(Quantity::new(0), Err(QuantityError::Zero));
        assert_eq!(Quantity::new(1).map(Quantity::get), Ok(1));
        assert_eq!(Quantity::new(Quantity::MAX).map(Quantity::get), Ok(100));
        assert_eq!(
            Quantity::new(Quantity::MAX + 1),
            Err(QuantityError::TooLarge { max: 100 })
        );
    }
}
