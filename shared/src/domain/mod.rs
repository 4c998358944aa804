//! Domain types shared by every function. Each newtype validates on construction
//! (`parse`/`new`), so a value that exists is a value that is valid.

mod clock;
mod ids;
mod money;
mod quantity;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use ids::{IdError, IdempotencyKey, ReservationId, SaleId, UserId};
pub use money::{Currency, Money, MoneyError};
pub use quantity::{Quantity, QuantityError};
