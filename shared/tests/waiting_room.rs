//! The waiting room on a real redis-server: concurrent joins, one place per buyer, the cap (a
//! small one and the seed's 100,000), the pre-queue's seeded order, the no-show boost, the
//! threshold mode, tickets through the room service, and a Redis flush mid-queue. The same
//! joins also run against the in-memory store, whose places must match queue.lua's.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::*;
use flashsale_core::domain::{ManualClock, SaleId, Timestamp, UserId};
use flashsale_core::sale::memory::InMemorySaleCatalog;
use flashsale_core::sale::SaleCatalog;
use flashsale_core::waiting_room::memory::MemoryQueueStore;
use flashsale_core::waiting_room::redis::{keys, RedisQueueStore};
use flashsale_core::waiting_room::room::{JoinError, Joined, Refused, WaitingRoom};
use flashsale_core::waiting_room::ticket::{TicketError, TicketKey};
use flashsale_core::waiting_room::{
    JoinOutcome, JoinRequest, Place, QueueStore, RoomMode, RoomSettings, StraightIn,
};
use redis::aio::ConnectionManager;
use testkit::fixtures::OpenSale;
use testkit::RedisServer;

const KEY: &[u8] = b"waiting-room test key, thirty-two bytes or more";

fn key() -> TicketKey {
    TicketKey::new(KEY).unwrap()
}

/// A join of `buyer` at `now` for a sale opening at `opens_at`, `per_sec` places a second.
fn join_request(
    sale: &SaleId,
    buyer: &UserId,
    now: Timestamp,
    opens_at: Timestamp,
    per_sec: u32,
    max_queue: u64,
) -> JoinRequest {
    JoinRequest {
        sale: sale.clone(),
        buyer: buyer.clone(),
        now,
        opens_at,
        drain_per_sec: per_sec,
        max_queue,
        max_boost_percent: 50,
        rank_key: key().pre_queue_seed(sale, opens_at).rank_key(buyer),
        keep_until: now.plus(Duration::from_secs(7200)),
        admission_window: Duration::from_secs(300),
    }
}

fn placed(outcome: JoinOutcome) -> (Place, bool) {
    match outcome {
        JoinOutcome::Placed { place, rejoined } => (place, rejoined),
        other => panic!("expected a place, got {other:?}"),
    }
}

/// `n` buyers join at once (each from its own task); every join's place, by buyer.
async fn join_all<Q: QueueStore + Clone + 'static>(
    store: &Q,
    sale: &SaleId,
    buyers: &[UserId],
    now: Timestamp,
    opens_at: Timestamp,
    per_sec: u32,
    max_queue: u64,
) -> Vec<(UserId, JoinOutcome)> {
    let mut tasks = tokio::task::JoinSet::new();
    for buyer in buyers {
        let (store, request) = (
            store.clone(),
            join_request(sale, buyer, now, opens_at, per_sec, max_queue),
        );
        tasks.spawn(async move {
            let outcome = store.join(&request).await.unwrap();
            (request.buyer, outcome)
        });
    }
    let mut out = Vec::with_capacity(buyers.len());
    while let Some(joined) = tasks.join_next().await {
        out.push(joined.unwrap());
    }
    out
}

fn buyers(prefix: &str, n: usize) -> Vec<UserId> {
    (0..n).map(|i| user(format!("{prefix}-{i}"))).collect()
}

async fn redis_store(server: &RedisServer) -> RedisQueueStore<ConnectionManager> {
    let store = RedisQueueStore::new(server.connection().await);
    store.preload_script().await.unwrap();
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_joins_get_unique_dense_places_one_per_buyer() {
    let server = RedisServer::start();
    let store = redis_store(&server).await;
    let sale = unique_sale("wr-dense");
    let now = now();
    let opens_at = now.minus(Duration::from_secs(10));
    let crowd = buyers("dense", 10_000);
    let joined = join_all(&store, &sale, &crowd, now, opens_at, 10_000, 100_000).await;

    let mut by_position: HashMap<u64, &UserId> = HashMap::new();
    let mut places: HashMap<&UserId, Place> = HashMap::new();
    for (buyer, outcome) in &joined {
        let (place, rejoined) = placed(*outcome);
        assert!(!rejoined, "{buyer} had no place before");
        assert!(
            by_position.insert(place.position, buyer).is_none(),
            "position {} given twice",
            place.position
        );
        places.insert(buyer, place);
    }
    let positions: HashSet<u64> = by_position.keys().copied().collect();
    assert_eq!(
        positions,
        (1..=10_000).collect::<HashSet<u64>>(),
        "dense: 1 to 10,000"
    );
    // The schedule: 10,000 a second from now (the queue was empty), in position order.
    let mut ordered: Vec<Place> = places.values().copied().collect();
    ordered.sort_by_key(|p| p.position);
    assert_eq!(
        ordered[0].admit_at, now,
        "the first place is admitted at once"
    );
    for pair in ordered.windows(2) {
        assert!(
            pair[0].admit_at <= pair[1].admit_at,
            "admission follows the queue"
        );
    }
    let last = ordered.last().unwrap().admit_at;
    assert!(
        (now.plus(Duration::from_millis(999))..=now.plus(Duration::from_millis(1001)))
            .contains(&last),
        "10,000 places at 10,000/s take a second: last at +{} ms",
        last.as_millis() - now.as_millis()
    );

    // Joining again, concurrently, answers the same place: one person, one place.
    let again = join_all(
        &store,
        &sale,
        &crowd[..2_000],
        now,
        opens_at,
        10_000,
        100_000,
    )
    .await;
    for (buyer, outcome) in again {
        let (place, rejoined) = placed(outcome);
        assert!(rejoined);
        assert_eq!(place, places[&buyer], "{buyer} got another place");
    }
    let state = store.state(&sale, now, 10_000, 50, opens_at).await.unwrap();
    assert_eq!(state.tail, 10_000, "re-joins gave out no place");
    assert_eq!(
        state.serving, 1,
        "only the first place is admitted at `now`"
    );
}

#[tokio::test]
async fn a_small_cap_refuses_joins_beyond_it_and_frees_as_the_queue_drains() {
    let server = RedisServer::start();
    let store = redis_store(&server).await;
    let sale = unique_sale("wr-cap");
    let t0 = now();
    let opens_at = t0.minus(Duration::from_secs(1));
    // 2 places a second, at most 50 waiting.
    for (i, buyer) in buyers("cap", 51).iter().enumerate() {
        let outcome = store
            .join(&join_request(&sale, buyer, t0, opens_at, 2, 50))
            .await
            .unwrap();
        // Place 1 is admitted at t0; 50 wait behind it, the 51st waiting one is refused.
        assert!(
            matches!(outcome, JoinOutcome::Placed { .. }),
            "join {i}: {outcome:?}"
        );
    }
    let late = user("cap-late");
    assert_eq!(
        store
            .join(&join_request(&sale, &late, t0, opens_at, 2, 50))
            .await
            .unwrap(),
        JoinOutcome::Full { waiting: 50 }
    );
    // A place admitted makes room for one more.
    let t1 = t0.plus(Duration::from_millis(500));
    let (place, _) = placed(
        store
            .join(&join_request(&sale, &late, t1, opens_at, 2, 50))
            .await
            .unwrap(),
    );
    assert_eq!(place.position, 52);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_cap_of_100000_holds_at_full_size() {
    let server = RedisServer::start();
    let store = redis_store(&server).await;
    let sale = unique_sale("wr-full");
    let now = now();
    let opens_at = now.minus(Duration::from_secs(1));
    let settings = RoomSettings::with_defaults(RoomMode::Always);
    let crowd = buyers("full", 100_001);
    // In waves of 10,000 concurrent joins, all at the same instant (nobody admitted meanwhile
    // but the first place).
    let mut full = Vec::new();
    for wave in crowd.chunks(10_000) {
        for (buyer, outcome) in join_all(
            &store,
            &sale,
            wave,
            now,
            opens_at,
            settings.drain_per_sec,
            settings.max_queue,
        )
        .await
        {
            if let JoinOutcome::Full { waiting } = outcome {
                full.push((buyer, waiting));
            }
        }
    }
    // Place 1 is admitted at `now`, so 100,000 wait behind it: the 100,002nd join is the
    // first refused. With 100,001 buyers, none is; one more is.
    assert!(full.is_empty(), "refused within the cap: {full:?}");
    let state = store
        .state(&sale, now, settings.drain_per_sec, 0, opens_at)
        .await
        .unwrap();
    assert_eq!((state.tail, state.waiting()), (100_001, 100_000));
    let one_more = user("full-one-more");
    assert_eq!(
        store
            .join(&join_request(
                &sale, &one_more, now, opens_at, 10_000, 100_000
            ))
            .await
            .unwrap(),
        JoinOutcome::Full { waiting: 100_000 }
    );
}

#[tokio::test]
async fn the_pre_queue_is_ordered_by_the_published_seed_and_fifo_follows() {
    let server = RedisServer::start();
    let store = redis_store(&server).await;
    let sale = unique_sale("wr-pre");
    let opens_at = now().plus(Duration::from_secs(60));
    let before = opens_at.minus(Duration::from_secs(30));
    let early = buyers("early", 500);
    for (i, outcome) in join_all(&store, &sale, &early, before, opens_at, 100, 100_000)
        .await
        .into_iter()
        .enumerate()
    {
        assert!(
            matches!(
                outcome.1,
                JoinOutcome::PreQueued {
                    rejoined: false,
                    ..
                }
            ),
            "{i}: {outcome:?}"
        );
    }
    // Joining again before the opening: still in the pre-queue, nothing added.
    assert_eq!(
        store
            .join(&join_request(
                &sale, &early[7], before, opens_at, 100, 100_000
            ))
            .await
            .unwrap(),
        JoinOutcome::PreQueued {
            size: 500,
            rejoined: true
        }
    );
    // After the opening: one newcomer first, then the early ones come back (in any order).
    let at_open = opens_at.plus(Duration::from_millis(10));
    let newcomer = user("newcomer");
    let (newcomer_place, _) = placed(
        store
            .join(&join_request(
                &sale, &newcomer, at_open, opens_at, 100, 100_000,
            ))
            .await
            .unwrap(),
    );
    assert_eq!(
        newcomer_place.position, 501,
        "FIFO joins go after the pre-queue"
    );
    let back = join_all(&store, &sale, &early, at_open, opens_at, 100, 100_000).await;
    let mut by_position: Vec<(u64, UserId, Place)> = back
        .into_iter()
        .map(|(b, o)| {
            let (p, _) = placed(o);
            (p.position, b, p)
        })
        .collect();
    by_position.sort_by_key(|(pos, _, _)| *pos);
    assert_eq!(
        by_position.iter().map(|(p, _, _)| *p).collect::<Vec<_>>(),
        (1..=500).collect::<Vec<_>>()
    );
    // The order an auditor recomputes from the revealed seed: by HMAC(seed, buyer).
    let seed = key().pre_queue_seed(&sale, opens_at);
    let mut audit: Vec<(u64, String)> = early
        .iter()
        .map(|b| (seed.rank_key(b), b.as_str().to_owned()))
        .collect();
    audit.sort();
    let served: Vec<String> = by_position
        .iter()
        .map(|(_, b, _)| b.as_str().to_owned())
        .collect();
    assert_eq!(
        served,
        audit.into_iter().map(|(_, b)| b).collect::<Vec<_>>()
    );
    // Not the order they joined in (buyer names are numbered in join order).
    assert_ne!(
        served,
        early
            .iter()
            .map(|b| b.as_str().to_owned())
            .collect::<Vec<_>>()
    );
    // Their admission: from the opening, 100 a second.
    assert_eq!(by_position[0].2.admit_at, opens_at);
    assert_eq!(
        by_position[499].2.admit_at,
        opens_at.plus(Duration::from_millis(4990))
    );
    assert_eq!(
        newcomer_place.admit_at,
        opens_at.plus(Duration::from_millis(5000))
    );
}

/// The same joins (pre-queue, opening, FIFO, re-joins, an expired place) on both stores give
/// the same places.
#[tokio::test]
async fn the_in_memory_store_gives_the_places_queue_lua_gives() {
    let server = RedisServer::start();
    let redis = redis_store(&server).await;
    let memory = MemoryQueueStore::new();
    let sale = unique_sale("wr-same");
    let opens_at = now().plus(Duration::from_secs(60));
    let mut script: Vec<(UserId, Timestamp)> = Vec::new();
    for i in 0..40 {
        script.push((
            user(format!("same-{i}")),
            opens_at.minus(Duration::from_secs(40 - i)),
        ));
    }
    for i in 0..60u64 {
        // After the opening, some arriving in bursts, some after a lull, some re-joining.
        let t = opens_at.plus(Duration::from_millis(if i < 30 {
            i * 7
        } else {
            5_000 + i * 90
        }));
        script.push((user(format!("same-{}", i % 70)), t));
    }
    // A re-join after the admission window: a new place at the back.
    script.push((user("same-3"), opens_at.plus(Duration::from_secs(400))));
    for (buyer, t) in &script {
        // 3 a second: a step of 333.333... ms, which both stores must round alike.
        let request = join_request(&sale, buyer, *t, opens_at, 3, 1_000);
        let (a, b) = (
            redis.join(&request).await.unwrap(),
            memory.join(&request).await.unwrap(),
        );
        assert_eq!(a, b, "{buyer} at {t:?}");
        let (sa, sb) = (
            redis.state(&sale, *t, 3, 50, opens_at).await.unwrap(),
            memory.state(&sale, *t, 3, 50, opens_at).await.unwrap(),
        );
        assert_eq!(
            (sa.tail, sa.serving, sa.pre_queue),
            (sb.tail, sb.serving, sb.pre_queue)
        );
    }
    let last = placed(
        redis
            .join(&join_request(
                &sale,
                &user("same-3"),
                opens_at.plus(Duration::from_secs(400)),
                opens_at,
                5,
                1_000,
            ))
            .await
            .unwrap(),
    );
    // At the seed's 10,000 a second (a step of 0.1 ms, fractional in binary): a burst of 300
    // at one instant, then stragglers, and a restore; every place alike in both stores.
    let fast = unique_sale("wr-same-fast");
    let t0 = now();
    let origin = t0.minus(Duration::from_millis(3));
    for i in 0..400u64 {
        let t = if i < 300 {
            t0
        } else {
            t0.plus(Duration::from_millis(i / 7))
        };
        let request = join_request(
            &fast,
            &user(format!("fast-{i}")),
            t,
            origin,
            10_000,
            100_000,
        );
        assert_eq!(
            redis.join(&request).await.unwrap(),
            memory.join(&request).await.unwrap(),
            "fast-{i}"
        );
    }
    let request = join_request(&fast, &user("fast-restored"), t0, origin, 10_000, 100_000);
    let ticket_place = Place {
        position: 777,
        admit_at: t0.plus(Duration::from_millis(80)),
    };
    assert_eq!(
        redis.restore(&request, ticket_place).await.unwrap(),
        memory.restore(&request, ticket_place).await.unwrap()
    );
    let after = join_request(&fast, &user("fast-after"), t0, origin, 10_000, 100_000);
    assert_eq!(
        redis.join(&after).await.unwrap(),
        memory.join(&after).await.unwrap()
    );
    // 40 early buyers and 20 newcomers had places: the new one is the 61st.
    assert_eq!(
        last.0.position, 61,
        "an expired place is given up for one at the back"
    );
}

#[tokio::test]
async fn no_shows_are_made_up_for_by_admitting_faster_within_the_bound() {
    let server = RedisServer::start();
    let store = redis_store(&server).await;
    let sale = unique_sale("wr-boost");
    let t0 = now();
    // 200 places at 10 a second, admitted over 20 s within one minute.
    let minute = t0.as_millis().div_euclid(60_000) * 60_000;
    let t0 = Timestamp::from_millis(minute + 60_000 + 5_000);
    let opens_at = t0.minus(Duration::from_secs(1));
    let mut places = Vec::new();
    for buyer in buyers("boost", 200) {
        places.push(
            placed(
                store
                    .join(&join_request(&sale, &buyer, t0, opens_at, 10, 100_000))
                    .await
                    .unwrap(),
            )
            .0,
        );
    }
    // Only every fourth place comes to reserve.
    for place in places.iter().step_by(4) {
        store
            .record_show(&sale, *place, t0.plus(Duration::from_secs(7200)))
            .await
            .unwrap();
    }
    // Once that minute ended 30 s ago, 200 admitted and 50 came: the ratio is 4, the bound
    // 1.5, so new places come at 15 a second.
    let before = Timestamp::from_millis(minute + 120_000 + 29_000);
    assert_eq!(
        store
            .state(&sale, before, 10, 50, opens_at)
            .await
            .unwrap()
            .rate_per_sec,
        10.0,
        "within the grace period"
    );
    let later = Timestamp::from_millis(minute + 120_000 + 31_000);
    let state = store.state(&sale, later, 10, 50, opens_at).await.unwrap();
    assert_eq!(state.rate_per_sec, 15.0);
    let a = placed(
        store
            .join(&join_request(
                &sale,
                &user("boost-a"),
                later,
                opens_at,
                10,
                100_000,
            ))
            .await
            .unwrap(),
    )
    .0;
    let b = placed(
        store
            .join(&join_request(
                &sale,
                &user("boost-b"),
                later,
                opens_at,
                10,
                100_000,
            ))
            .await
            .unwrap(),
    )
    .0;
    let gap = b.admit_at.as_millis() - a.admit_at.as_millis();
    assert!(
        (66..=67).contains(&gap),
        "1/15 s between places, got {gap} ms"
    );
    // Recording a show twice counts once.
    store.record_show(&sale, places[1], later).await.unwrap();
    store.record_show(&sale, places[1], later).await.unwrap();
    let counted = server.cli(&[
        "HGET",
        &keys(&sale, later)[0],
        &format!("shw:{}", (minute + 60_000) / 60_000),
    ]);
    assert_eq!(
        counted.trim(),
        "51",
        "50 every fourth place, and place 2 once"
    );
    let again = store.state(&sale, later, 10, 50, opens_at).await.unwrap();
    assert_eq!(again.rate_per_sec, 15.0);
    // Without a boost (0 %), the base rate.
    assert_eq!(
        store
            .state(&sale, later, 10, 0, opens_at)
            .await
            .unwrap()
            .rate_per_sec,
        10.0
    );
}

#[tokio::test]
async fn threshold_mode_lets_buyers_straight_in_until_people_wait_or_the_threshold_is_reached() {
    let server = RedisServer::start();
    let store = redis_store(&server).await;
    let sale = unique_sale("wr-threshold");
    // Mid-second, so the whole test falls in one counting second.
    let t = Timestamp::from_millis((now().as_secs() + 5) * 1000 + 100);
    let opens_at = t.minus(Duration::from_secs(60));
    let enter = |buyer: &str, at: Timestamp| {
        let (store, sale, buyer) = (store.clone(), sale.clone(), user(buyer));
        async move {
            store
                .straight_in(&sale, &buyer, at, 10, 3, opens_at)
                .await
                .unwrap()
        }
    };
    for name in ["a", "b", "c"] {
        assert_eq!(enter(name, t).await, StraightIn::Allowed, "{name}");
    }
    // Counted per buyer: a fourth buyer is sent to the queue, a buyer already in is not, and
    // one buyer sending many requests spends one of the three.
    assert_eq!(enter("d", t).await, StraightIn::Queue);
    for _ in 0..5 {
        assert_eq!(enter("a", t).await, StraightIn::Allowed);
    }
    // The next second, again 3; but once people wait in the queue, nobody goes straight in.
    let next = t.plus(Duration::from_secs(1));
    assert_eq!(enter("d", next).await, StraightIn::Allowed);
    for buyer in buyers("thr", 5) {
        store
            .join(&join_request(&sale, &buyer, next, opens_at, 10, 1_000))
            .await
            .unwrap();
    }
    assert_eq!(enter("e", next).await, StraightIn::Queue);
    // Before the opening, nobody.
    let early = unique_sale("wr-threshold-early");
    assert_eq!(
        store
            .straight_in(&early, &user("a"), t, 10, 3, t.plus(Duration::from_secs(5)))
            .await
            .unwrap(),
        StraightIn::Queue
    );
}

#[tokio::test]
async fn a_buyer_whose_place_redis_lost_gets_it_back_from_its_ticket_and_newcomers_go_behind() {
    let server = RedisServer::start();
    let store = redis_store(&server).await;
    let sale = unique_sale("wr-restore");
    let t0 = now();
    let opens_at = t0.minus(Duration::from_secs(1));
    // 100 places at 10 a second; the 90th is 9 s away.
    let mut places = Vec::new();
    for buyer in buyers("rs", 100) {
        places.push(
            placed(
                store
                    .join(&join_request(&sale, &buyer, t0, opens_at, 10, 1_000))
                    .await
                    .unwrap(),
            )
            .0,
        );
    }
    server.cli(&["FLUSHALL"]);
    // Buyer 89 comes back with its ticket's place: it keeps it, the tail is raised to it...
    let request = join_request(&sale, &user("rs-89"), t0, opens_at, 10, 1_000);
    assert_eq!(
        store.restore(&request, places[89]).await.unwrap(),
        places[89]
    );
    // ...so a newcomer goes behind it, not to the front of an empty queue.
    let (late, _) = placed(
        store
            .join(&join_request(
                &sale,
                &user("rs-late"),
                t0,
                opens_at,
                10,
                1_000,
            ))
            .await
            .unwrap(),
    );
    assert_eq!(late.position, 91);
    assert!(late.admit_at > places[89].admit_at);
    // Restoring again answers the stored place (run twice, same place).
    assert_eq!(
        store.restore(&request, places[89]).await.unwrap(),
        places[89]
    );
}

#[tokio::test]
async fn a_pre_queue_buyer_back_after_its_window_goes_to_the_back() {
    let server = RedisServer::start();
    let store = redis_store(&server).await;
    let sale = unique_sale("wr-late");
    let opens_at = now().plus(Duration::from_secs(60));
    let before = opens_at.minus(Duration::from_secs(10));
    for buyer in buyers("pl", 3) {
        store
            .join(&join_request(&sale, &buyer, before, opens_at, 10, 1_000))
            .await
            .unwrap();
    }
    // One returns at the opening (freezing the pre-queue), another 400 s later: its place's
    // 300 s window is over, so it gets a new place at the back, admitted now.
    store
        .join(&join_request(
            &sale,
            &user("pl-0"),
            opens_at,
            opens_at,
            10,
            1_000,
        ))
        .await
        .unwrap();
    let late = opens_at.plus(Duration::from_secs(400));
    let (place, _) = placed(
        store
            .join(&join_request(
                &sale,
                &user("pl-1"),
                late,
                opens_at,
                10,
                1_000,
            ))
            .await
            .unwrap(),
    );
    assert_eq!((place.position, place.admit_at), (4, late));
}

/// The room service on Redis: tickets from join admit at their time, and only their buyer at
/// their sale; a Redis flush mid-queue keeps admitted tickets valid.
#[tokio::test]
async fn tickets_admit_their_buyer_at_their_time_and_survive_a_redis_flush() {
    let server = RedisServer::start();
    let catalog = InMemorySaleCatalog::default();
    let t0 = now();
    let clock = ManualClock::at(t0);
    let settings = RoomSettings {
        drain_per_sec: 2,
        admission_window: Duration::from_secs(60),
        ..RoomSettings::with_defaults(RoomMode::Always)
    };
    let sale = OpenSale::new(unique_sale("wr-tickets"), 10)
        .waiting_room(settings)
        .at(t0);
    catalog.create(&sale).await.unwrap();
    let plain = OpenSale::new(unique_sale("wr-plain"), 10).at(t0);
    catalog.create(&plain).await.unwrap();
    let room = WaitingRoom {
        store: redis_store(&server).await,
        catalog,
        key: key(),
        clock: clock.clone(),
    };
    let id = &sale.sale_id;
    let (first, second) = (user("t-first"), user("t-second"));
    let ticket_of = |joined: Joined| match joined {
        Joined::Placed { ticket, place, .. } => (ticket, place),
        other => panic!("{other:?}"),
    };
    let (t1, p1) = ticket_of(room.join(id, &first, None).await.unwrap());
    let (t2, p2) = ticket_of(room.join(id, &second, None).await.unwrap());
    assert_eq!((p1.position, p2.position), (1, 2));
    assert_eq!(p2.admit_at, t0.plus(Duration::from_millis(500)));

    assert_eq!(room.admit(id, &first, Some(&t1)).await.unwrap(), Some(1));
    assert!(matches!(
        room.admit(id, &second, Some(&t2)).await,
        Err(Refused::Ticket(TicketError::NotYetAdmitted { .. }))
    ));
    assert!(matches!(
        room.admit(id, &second, None).await,
        Err(Refused::QueueRequired { .. })
    ));
    assert!(matches!(
        room.admit(id, &second, Some(&t1)).await,
        Err(Refused::Ticket(TicketError::OtherBuyer))
    ));
    assert!(
        matches!(room.admit(&plain.sale_id, &first, None).await, Ok(None)),
        "a sale without a room needs no ticket"
    );
    // A ticket for this sale does not open another room sale.
    let other = OpenSale::new(unique_sale("wr-other"), 10)
        .waiting_room(settings)
        .at(t0);
    room.catalog.create(&other).await.unwrap();
    assert!(matches!(
        room.admit(&other.sale_id, &first, Some(&t1)).await,
        Err(Refused::Ticket(TicketError::OtherSale))
    ));

    // Redis loses everything mid-queue: admitted tickets still admit.
    server.cli(&["FLUSHALL"]);
    clock.advance(Duration::from_millis(500));
    assert_eq!(room.admit(id, &first, Some(&t1)).await.unwrap(), Some(1));
    assert_eq!(room.admit(id, &second, Some(&t2)).await.unwrap(), Some(2));
    // Past the window: expired; joining again gives a new place at the back.
    clock.advance(Duration::from_secs(61));
    assert!(matches!(
        room.admit(id, &first, Some(&t1)).await,
        Err(Refused::Ticket(TicketError::Expired))
    ));
    let (_, again) = ticket_of(room.join(id, &first, None).await.unwrap());
    assert!(again.admit_at >= clock_now(&clock));

    // Joins: a sale without a room, an unknown sale.
    assert!(matches!(
        room.join(&plain.sale_id, &first, None).await,
        Err(JoinError::NoRoom)
    ));
    assert!(matches!(
        room.join(&unique_sale("wr-none"), &first, None).await,
        Err(JoinError::SaleNotFound)
    ));
}

fn clock_now(clock: &ManualClock) -> Timestamp {
    use flashsale_core::domain::Clock;
    clock.now()
}

#[tokio::test]
async fn the_rooms_keys_share_one_slot_and_expire_after_the_sale() {
    let server = RedisServer::start();
    let store = redis_store(&server).await;
    let sale = unique_sale("wr-keys");
    let now = now();
    let request = join_request(
        &sale,
        &user("k"),
        now,
        now.minus(Duration::from_secs(1)),
        10,
        10,
    );
    store.join(&request).await.unwrap();
    store
        .record_show(
            &sale,
            placed(store.join(&request).await.unwrap()).0,
            request.keep_until,
        )
        .await
        .unwrap();
    // One hash tag, so one slot: each step is one script on one node in cluster mode.
    let tags: HashSet<String> = keys(&sale, now)
        .iter()
        .map(|k| k[k.find('{').unwrap()..=k.find('}').unwrap()].to_owned())
        .collect();
    assert_eq!(tags.len(), 1, "{tags:?}");
    // state, places and shown (no pre-queue here: its key does not exist).
    for k in [
        &keys(&sale, now)[0],
        &keys(&sale, now)[2],
        &keys(&sale, now)[3],
    ] {
        let at: i64 = server.cli(&["PEXPIRETIME", k]).trim().parse().unwrap();
        assert_eq!(at, request.keep_until.as_millis(), "{k}");
    }
}
