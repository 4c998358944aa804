//! The drain schedule's arithmetic, shared by the in-memory store and mirrored line by line in
//! `queue.lua` (`tests/waiting_room.rs` runs both on the same joins and compares).
//!
//! The queue keeps two numbers: `tail`, the last position given out, and `tail_off`, its
//! admission time in ms after the opening (fractional: at 10,000 places a second a place is
//! 0.1 ms, which sums exactly enough only at the small magnitude of an offset). A new place
//! goes at `max(tail_off + step, now - opening)` with `step = 1000 / (rate × boost)` ms, so a
//! queue that ran empty starts again from now (the served count never runs ahead of the
//! people who came).

/// Milliseconds between two admitted places at `per_sec` places a second, times `boost`.
pub fn step_ms(per_sec: u32, boost: f64) -> f64 {
    1000.0 / (f64::from(per_sec.max(1)) * boost.max(1.0))
}

/// Places admitted by `t` (not before the last place given out: the places still ahead all
/// came after the queue last ran empty, at the current step; exact while the rate held, an
/// estimate for display when the boost moved). The tolerance keeps 9999.0000001 steps from
/// counting as 10,000.
pub fn serving_at(tail: u64, tail_at: f64, step: f64, t: f64) -> u64 {
    if tail_at <= t {
        return tail;
    }
    let ahead = ((tail_at - t) / step - 1e-6).ceil();
    if ahead >= tail as f64 {
        0
    } else {
        tail - ahead as u64
    }
}

/// Milliseconds in the no-show measure's bucket.
pub const MINUTE_MS: i64 = 60_000;

/// The minute (since the epoch) a time falls in.
pub fn minute_of(ms: i64) -> i64 {
    ms.div_euclid(MINUTE_MS)
}

/// The minute the no-show boost is measured on at `now`: the last whole minute that ended at
/// least `grace_ms` ago (its places had the grace period to come).
pub fn measured_minute(now: i64, grace_ms: i64) -> i64 {
    minute_of(now - grace_ms) - 1
}

/// The no-show boost: `admitted / showed` of the measured minute's places, between 1 and
/// `1 + max_percent / 100`; 1 while fewer than `min_sample` places were admitted in it.
pub fn boost(admitted: u64, showed: u64, max_percent: u32, min_sample: u64) -> f64 {
    if admitted < min_sample || admitted == 0 || max_percent == 0 {
        return 1.0;
    }
    let max = 1.0 + f64::from(max_percent) / 100.0;
    let ratio = admitted as f64 / (showed.max(1) as f64);
    ratio.clamp(1.0, max)
}

/// Seconds a client should wait before polling the status again: a quarter of its distance,
/// 1 to 20 s (Cloudflare's waiting room refreshes every 20 s).
pub fn poll_after_secs(wait_ms: i64) -> u64 {
    ((wait_ms.max(0) as u64) / 4000).clamp(1, 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serving_counts_places_whose_time_has_come() {
        // 10 places, the last at t=1000, one every 100 ms: place 1 at 100.
        assert_eq!(serving_at(10, 1000.0, 100.0, 1000.0), 10);
        assert_eq!(serving_at(10, 1000.0, 100.0, 950.0), 9);
        assert_eq!(serving_at(10, 1000.0, 100.0, 900.0), 9);
        assert_eq!(serving_at(10, 1000.0, 100.0, 899.0), 8);
        assert_eq!(serving_at(10, 1000.0, 100.0, 0.0), 0);
        assert_eq!(serving_at(0, -100.0, 100.0, 0.0), 0);
        // 10,000 places a second: at the first place's time, one is served despite rounding.
        assert_eq!(serving_at(10_000, 999.9, 0.1, 0.0), 1);
        assert_eq!(measured_minute(125_000, 30_000), 0);
        assert_eq!(measured_minute(89_999, 30_000), -1);
    }

    #[test]
    fn boost_is_bounded_and_waits_for_a_sample() {
        assert_eq!(boost(50, 10, 50, 100), 1.0, "too few settled places");
        assert_eq!(boost(200, 200, 50, 100), 1.0, "everyone showed");
        assert_eq!(boost(200, 250, 50, 100), 1.0, "more showed than settled");
        assert!((boost(200, 160, 50, 100) - 1.25).abs() < 1e-9);
        assert_eq!(boost(200, 10, 50, 100), 1.5, "capped");
        assert_eq!(boost(200, 0, 0, 100), 1.0, "boost off");
    }

    #[test]
    fn step_and_poll() {
        assert!((step_ms(10_000, 1.0) - 0.1).abs() < 1e-12);
        assert!((step_ms(10, 2.0) - 50.0).abs() < 1e-12);
        assert_eq!(poll_after_secs(0), 1);
        assert_eq!(poll_after_secs(40_000), 10);
        assert_eq!(poll_after_secs(10_000_000), 20);
    }
}
