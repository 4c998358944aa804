//! An in-memory [`QueueStore`] for fast tests of the logic around the queue. It follows
//! `queue.lua` step for step with [`super::schedule`]'s arithmetic; `tests/waiting_room.rs`
//! runs both on the same joins and compares the places.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

use super::schedule::{boost, measured_minute, minute_of, serving_at, step_ms, MINUTE_MS};
use super::{
    JoinOutcome, JoinRequest, Place, QueueError, QueueState, QueueStore, StraightIn, NO_SHOW_GRACE,
    NO_SHOW_MIN_SAMPLE,
};
use crate::domain::{SaleId, Timestamp, UserId};

#[derive(Default)]
struct Room {
    /// Once frozen: the queue's state. The tail's admission is `origin + tail_off` ms.
    frozen: Option<Frozen>,
    /// The pre-queue, ordered as a Redis sorted set: by rank key, then buyer id.
    pre: BTreeSet<(u64, String)>,
    places: HashMap<String, Place>,
    shown: HashSet<u64>,
    /// Per minute: places admitted in it, and of them the ones that came.
    admitted: HashMap<i64, u64>,
    showed: HashMap<i64, u64>,
    /// Per second: the buyers let straight in.
    straight_in: HashMap<i64, HashSet<String>>,
}

/// The state queue.lua keeps in its `state` hash once the pre-queue is frozen.
#[derive(Debug, Clone, Copy)]
struct Frozen {
    pre: u64,
    tail: u64,
    tail_off: f64,
    origin: i64,
    pre_step: f64,
}

/// Six decimals, as queue.lua keeps fractional ms (`string.format('%.6f')`).
fn r6(x: f64) -> f64 {
    format!("{x:.6}")
        .parse()
        .expect("a formatted number parses")
}

impl Room {
    fn current(&self, opens_at: i64, per_sec: u32) -> Frozen {
        self.frozen.unwrap_or_else(|| {
            let size = self.pre.len() as u64;
            Frozen {
                pre: size,
                tail: size,
                tail_off: r6((size as f64 - 1.0) * step_ms(per_sec, 1.0)),
                origin: opens_at,
                pre_step: r6(step_ms(per_sec, 1.0)),
            }
        })
    }

    fn freeze(&mut self, opens_at: i64, per_sec: u32) -> Frozen {
        if let Some(f) = self.frozen {
            return f;
        }
        let f = self.current(opens_at, per_sec);
        self.frozen = Some(f);
        self.count_pre_queue(f.pre, f.origin, f.pre_step);
        f
    }

    fn boosted_step(&self, now: i64, per_sec: u32, max_percent: u32) -> f64 {
        step_ms(per_sec, self.boost(now, max_percent))
    }

    fn boost(&self, now: i64, max_percent: u32) -> f64 {
        let m = measured_minute(now, NO_SHOW_GRACE.as_millis() as i64);
        let (admitted, showed) = (
            self.admitted.get(&m).copied().unwrap_or(0),
            self.showed.get(&m).copied().unwrap_or(0),
        );
        boost(admitted, showed, max_percent, NO_SHOW_MIN_SAMPLE)
    }

    /// Counts the pre-queue's places per minute of admission, as the freeze in queue.lua does.
    fn count_pre_queue(&mut self, pre: u64, origin: i64, step: f64) {
        let mut rank = 0u64;
        while rank < pre {
            let m = minute_of(origin + (rank as f64 * step).ceil() as i64);
            let next = ((((m + 1) * MINUTE_MS - origin) as f64 / step).ceil() as u64)
                .min(pre)
                .max(rank + 1);
            *self.admitted.entry(m).or_default() += next - rank;
            rank = next;
        }
    }
}

#[derive(Default)]
pub struct MemoryQueueStore {
    rooms: Mutex<HashMap<SaleId, Room>>,
}

impl MemoryQueueStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, sale: &SaleId, f: impl FnOnce(&mut Room) -> T) -> T {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        f(rooms.entry(sale.clone()).or_default())
    }
}

impl QueueStore for MemoryQueueStore {
    async fn join(&self, r: &JoinRequest) -> Result<JoinOutcome, QueueError> {
        let (now, opens_at) = (r.now.as_millis(), r.opens_at.as_millis());
        Ok(self.with(&r.sale, |room| {
            let buyer = r.buyer.as_str().to_owned();
            let expired = match room.places.get(&buyer) {
                Some(place) if r.now < place.admit_at.plus(r.admission_window) => {
                    return JoinOutcome::Placed {
                        place: *place,
                        rejoined: true,
                    };
                }
                Some(_) => room.places.remove(&buyer).is_some(),
                None => false,
            };
            // By buyer, as ZSCORE/ZRANK do (a rank key from another seed still finds it).
            let in_pre = room.pre.iter().find(|(_, b)| *b == buyer).cloned();
            if now < opens_at && room.frozen.is_none() {
                let size = room.pre.len() as u64;
                if in_pre.is_some() {
                    return JoinOutcome::PreQueued {
                        size,
                        rejoined: true,
                    };
                }
                if size >= r.max_queue {
                    return JoinOutcome::Full { waiting: size };
                }
                room.pre.insert((r.rank_key, buyer));
                return JoinOutcome::PreQueued {
                    size: size + 1,
                    rejoined: false,
                };
            }
            let Frozen {
                pre,
                tail,
                tail_off,
                origin,
                pre_step,
            } = room.freeze(opens_at, r.drain_per_sec);
            if let (Some(entry), false) = (in_pre, expired) {
                let rank = room.pre.range(..entry).count() as u64;
                let place = Place {
                    position: rank + 1,
                    admit_at: Timestamp::from_millis(
                        origin + (rank as f64 * pre_step).ceil() as i64,
                    ),
                };
                // Back after its place's window: to the back of the queue instead.
                if r.now < place.admit_at.plus(r.admission_window) {
                    room.places.insert(buyer, place);
                    return JoinOutcome::Placed {
                        place,
                        rejoined: false,
                    };
                }
            }
            let step = room.boosted_step(now, r.drain_per_sec, r.max_boost_percent);
            let waiting = tail - serving_at(tail, tail_off, step, (now - origin) as f64);
            if waiting >= r.max_queue {
                return JoinOutcome::Full { waiting };
            }
            let at_off = r6((tail_off + step).max((now - origin) as f64));
            let place = Place {
                position: tail + 1,
                admit_at: Timestamp::from_millis(origin + at_off.ceil() as i64),
            };
            room.frozen = Some(Frozen {
                pre,
                tail: tail + 1,
                tail_off: at_off,
                origin,
                pre_step,
            });
            *room
                .admitted
                .entry(minute_of(place.admit_at.as_millis()))
                .or_default() += 1;
            room.places.insert(buyer, place);
            JoinOutcome::Placed {
                place,
                rejoined: false,
            }
        }))
    }

    async fn state(
        &self,
        sale: &SaleId,
        now: Timestamp,
        drain_per_sec: u32,
        max_boost_percent: u32,
        opens_at: Timestamp,
    ) -> Result<QueueState, QueueError> {
        let (now, opens_at) = (now.as_millis(), opens_at.as_millis());
        Ok(self.with(sale, |room| {
            if now < opens_at && room.frozen.is_none() {
                return QueueState {
                    tail: 0,
                    serving: 0,
                    pre_queue: room.pre.len() as u64,
                    rate_per_sec: f64::from(drain_per_sec),
                };
            }
            let Frozen {
                pre,
                tail,
                tail_off,
                origin,
                ..
            } = room.current(opens_at, drain_per_sec);
            let step = room.boosted_step(now, drain_per_sec, max_boost_percent);
            QueueState {
                tail,
                serving: serving_at(tail, tail_off, step, (now - origin) as f64),
                pre_queue: pre,
                // As queue.lua reports it: rate x boost, to the thousandth.
                rate_per_sec: (f64::from(drain_per_sec)
                    * room.boost(now, max_boost_percent)
                    * 1000.0
                    + 0.5)
                    .floor()
                    / 1000.0,
            }
        }))
    }

    async fn restore(&self, r: &JoinRequest, place: Place) -> Result<Place, QueueError> {
        Ok(self.with(&r.sale, |room| {
            if let Some(stored) = room.places.get(r.buyer.as_str()) {
                return *stored;
            }
            let mut f = room.freeze(r.opens_at.as_millis(), r.drain_per_sec);
            f.tail = f.tail.max(place.position);
            let off = (place.admit_at.as_millis() - f.origin) as f64;
            if off > f.tail_off {
                f.tail_off = r6(off);
            }
            room.frozen = Some(f);
            room.places.insert(r.buyer.as_str().to_owned(), place);
            place
        }))
    }

    async fn straight_in(
        &self,
        sale: &SaleId,
        buyer: &UserId,
        now: Timestamp,
        drain_per_sec: u32,
        per_sec: u32,
        opens_at: Timestamp,
    ) -> Result<StraightIn, QueueError> {
        let (now_ms, opens_at) = (now.as_millis(), opens_at.as_millis());
        Ok(self.with(sale, |room| {
            if now_ms < opens_at {
                return StraightIn::Queue;
            }
            let f = room.current(opens_at, drain_per_sec);
            let step = room.boosted_step(now_ms, drain_per_sec, 0);
            if serving_at(f.tail, f.tail_off, step, (now_ms - f.origin) as f64) < f.tail {
                return StraightIn::Queue;
            }
            let this_second = room.straight_in.entry(now.as_secs()).or_default();
            if this_second.contains(buyer.as_str()) {
                return StraightIn::Allowed;
            }
            if this_second.len() as u64 >= u64::from(per_sec) {
                return StraightIn::Queue;
            }
            this_second.insert(buyer.as_str().to_owned());
            StraightIn::Allowed
        }))
    }

    async fn record_show(
        &self,
        sale: &SaleId,
        place: Place,
        _keep_until: Timestamp,
    ) -> Result<(), QueueError> {
        self.with(sale, |room| {
            if room.shown.insert(place.position) {
                *room
                    .showed
                    .entry(minute_of(place.admit_at.as_millis()))
                    .or_default() += 1;
            }
        });
        Ok(())
    }
}
