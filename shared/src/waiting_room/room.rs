//! The waiting room's use cases: join, status, and reserve's admission check.

use std::time::Duration;

use super::schedule::poll_after_secs;
use super::ticket::{TicketError, TicketKey};
use super::{JoinOutcome, JoinRequest, Place, QueueError, QueueState, QueueStore, RoomMode};
use super::{RoomSettings, StraightIn};
use crate::domain::{Clock, SaleId, Timestamp, UserId};
use crate::sale::{CatalogError, Sale, SaleCatalog, SaleWindow};

/// The room's Redis keys outlive the sale by the admission window plus this margin.
const KEEP_AFTER_END: Duration = Duration::from_secs(3600);

/// The waiting room of every sale that has one. `Q` queue store, `C` sale catalog, `K` clock.
pub struct WaitingRoom<Q, C, K> {
    pub store: Q,
    pub catalog: C,
    pub key: TicketKey,
    pub clock: K,
}

/// A successful join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Joined {
    /// A place and its ticket. `rejoined`: the buyer's earlier place.
    Placed {
        place: Place,
        rejoined: bool,
        ticket: String,
        admission_ends_at: Timestamp,
        wait: Duration,
        poll_after_secs: u64,
    },
    /// In the pre-queue; join again at the opening for the place.
    PreQueued {
        size: u64,
        rejoined: bool,
        opens_at: Timestamp,
        seed_commitment: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("no such sale")]
    SaleNotFound,
    #[error("the sale has no waiting room")]
    NoRoom,
    #[error("the sale has ended")]
    SaleEnded,
    #[error("the queue opens later")]
    NotOpenYet { queue_opens_at: Timestamp },
    #[error("the queue is full")]
    Full { retry_after_secs: u64 },
    #[error(transparent)]
    Store(#[from] QueueError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// What the status endpoint shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub sale: Sale,
    pub settings: RoomSettings,
    pub queue: QueueState,
    pub now: Timestamp,
    pub seed_commitment: String,
    /// The pre-queue's seed, once the sale is open.
    pub seed: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("no such sale")]
    SaleNotFound,
    #[error("the sale has no waiting room")]
    NoRoom,
    #[error(transparent)]
    Store(#[from] QueueError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// Why reserve turns a buyer back to the queue.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// No ticket on a room sale (always mode, or threshold mode when people wait).
    #[error("join the queue first")]
    QueueRequired { sale: SaleId },
    #[error(transparent)]
    Ticket(TicketError),
    #[error(transparent)]
    Store(#[from] QueueError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

fn keep_until(sale: &Sale, settings: &RoomSettings) -> Timestamp {
    sale.ends_at
        .plus(settings.admission_window)
        .plus(KEEP_AFTER_END)
}

impl<Q: QueueStore, C: SaleCatalog, K: Clock> WaitingRoom<Q, C, K> {
    async fn room_of(&self, sale: &SaleId) -> Result<Option<(Sale, RoomSettings)>, CatalogError> {
        Ok(self
            .catalog
            .get(sale)
            .await?
            .and_then(|s| s.waiting_room.map(|room| (s, room))))
    }

    /// `buyer` joins the room of `sale_id`: its place (the same one every time), or a pre-queue
    /// entry before the opening. A buyer joining again may bring the ticket it holds: if Redis
    /// lost its place, the ticket's place is restored (and the tail raised to it) instead of a
    /// new one at a reset queue's front; a ticket that cannot restore anything (over, of
    /// another opening or buyer, not ours) is a plain join.
    pub async fn join(
        &self,
        sale_id: &SaleId,
        buyer: &UserId,
        ticket: Option<&str>,
    ) -> Result<Joined, JoinError> {
        let sale = self
            .catalog
            .get(sale_id)
            .await?
            .ok_or(JoinError::SaleNotFound)?;
        let settings = sale.waiting_room.ok_or(JoinError::NoRoom)?;
        let now = self.clock.now();
        if sale.window_at(now) == SaleWindow::Ended {
            return Err(JoinError::SaleEnded);
        }
        let queue_opens_at = sale.starts_at.minus(settings.pre_queue);
        if now < queue_opens_at {
            return Err(JoinError::NotOpenYet { queue_opens_at });
        }
        let seed = self.key.pre_queue_seed(sale_id, sale.starts_at);
        let request = JoinRequest {
            sale: sale_id.clone(),
            buyer: buyer.clone(),
            now,
            opens_at: sale.starts_at,
            drain_per_sec: settings.drain_per_sec,
            max_queue: settings.max_queue,
            max_boost_percent: settings.max_boost_percent,
            rank_key: seed.rank_key(buyer),
            keep_until: keep_until(&sale, &settings),
            admission_window: settings.admission_window,
        };
        let held = match ticket {
            // Only a ticket of this buyer for this opening of the sale, still in its window,
            // and only once the sale is open (no ticket exists before); anything else is a
            // plain join (a stale header, a rotated key), as it can restore nothing.
            Some(ticket) if now >= sale.starts_at => {
                match self.key.read(ticket, sale_id, sale.starts_at, buyer) {
                    Ok((place, ends_at)) if now < ends_at => Some(place),
                    _ => None,
                }
            }
            _ => None,
        };
        let outcome = match held {
            Some(place) => JoinOutcome::Placed {
                place: self.store.restore(&request, place).await?,
                rejoined: true,
            },
            None => self.store.join(&request).await?,
        };
        match outcome {
            JoinOutcome::Placed { place, rejoined } => {
                let wait = now.until(place.admit_at);
                Ok(Joined::Placed {
                    place,
                    rejoined,
                    ticket: self.key.issue(
                        sale_id,
                        sale.starts_at,
                        buyer,
                        place,
                        settings.admission_window,
                        now,
                    ),
                    admission_ends_at: place.admit_at.plus(settings.admission_window),
                    wait,
                    poll_after_secs: poll_after_secs(wait.as_millis() as i64),
                })
            }
            JoinOutcome::PreQueued { size, rejoined } => Ok(Joined::PreQueued {
                size,
                rejoined,
                opens_at: sale.starts_at,
                seed_commitment: seed.commitment(),
            }),
            JoinOutcome::Full { waiting } => {
                // Come back when a tenth of the queue has moved on (at least 1 s, at most 60 s).
                let tenth = (waiting / 10).max(1) as f64 / f64::from(settings.drain_per_sec.max(1));
                Err(JoinError::Full {
                    retry_after_secs: (tenth.ceil() as u64).clamp(1, 60),
                })
            }
        }
    }

    /// The queue of `sale_id` now.
    pub async fn status(&self, sale_id: &SaleId) -> Result<Status, StatusError> {
        let sale = self
            .catalog
            .get(sale_id)
            .await?
            .ok_or(StatusError::SaleNotFound)?;
        let settings = sale.waiting_room.ok_or(StatusError::NoRoom)?;
        let now = self.clock.now();
        let queue = self
            .store
            .state(
                sale_id,
                now,
                settings.drain_per_sec,
                settings.max_boost_percent,
                sale.starts_at,
            )
            .await?;
        let seed = self.key.pre_queue_seed(sale_id, sale.starts_at);
        Ok(Status {
            seed_commitment: seed.commitment(),
            seed: (now >= sale.starts_at).then(|| seed.reveal()),
            sale,
            settings,
            queue,
            now,
        })
    }

    /// Reserve's admission check for `buyer` at `sale_id` with the ticket it sent, if any.
    /// Passes sales without a room and sales that are not open (reserve answers those).
    /// Returns the admitted position, if a ticket admitted the buyer.
    pub async fn admit(
        &self,
        sale_id: &SaleId,
        buyer: &UserId,
        ticket: Option<&str>,
    ) -> Result<Option<u64>, Refused> {
        let Some((sale, settings)) = self.room_of(sale_id).await? else {
            return Ok(None);
        };
        let now = self.clock.now();
        if sale.window_at(now) != SaleWindow::Open {
            return Ok(None);
        }
        match (ticket, settings.mode) {
            (Some(ticket), _) => {
                let admitted = self
                    .key
                    .verify(ticket, sale_id, sale.starts_at, buyer, now)
                    .map_err(Refused::Ticket)?;
                // The no-show measure only: a failure costs a little boost, never the buyer.
                if let Err(error) = self
                    .store
                    .record_show(
                        sale_id,
                        Place {
                            position: admitted.position,
                            admit_at: admitted.admit_at,
                        },
                        keep_until(&sale, &settings),
                    )
                    .await
                {
                    tracing::warn!(%error, "could not record a show in the waiting room");
                }
                Ok(Some(admitted.position))
            }
            (None, RoomMode::Always) => Err(Refused::QueueRequired {
                sale: sale_id.clone(),
            }),
            (
                None,
                RoomMode::Threshold {
                    straight_in_per_sec,
                },
            ) => {
                match self
                    .store
                    .straight_in(
                        sale_id,
                        buyer,
                        now,
                        settings.drain_per_sec,
                        straight_in_per_sec,
                        sale.starts_at,
                    )
                    .await?
                {
                    StraightIn::Allowed => Ok(None),
                    StraightIn::Queue => Err(Refused::QueueRequired {
                        sale: sale_id.clone(),
                    }),
                }
            }
        }
    }
}
