//! The bot watchlist: one scenario list run against a real redis-server and against the
//! in-memory adapter, plus the Redis keys' lifetimes asserted directly (not waited out).

mod common;

use std::time::Duration;

use common::*;
use flashsale_core::bot::watchlist::memory::InMemoryWatchlist;
use flashsale_core::bot::watchlist::redis::{spent_key, subject_keys, RedisWatchlist};
use flashsale_core::bot::watchlist::{Redeem, Redemption, Subject, Watchlist};
use flashsale_core::domain::{SaleId, Timestamp, UserId};
use flashsale_core::rate_limit::RequestId;
use testkit::RedisServer;

const HOUR: Duration = Duration::from_secs(3600);

fn rid(s: &str) -> RequestId {
    RequestId::from_gateway(Some(s))
}

fn drop_sale() -> SaleId {
    SaleId::parse("drop").unwrap()
}

/// Counting: per request id (a re-sent call counts once), per buyer and per address apart.
async fn counts_each_request_once<W: Watchlist>(w: &W) {
    let now = now();
    let (buyer, other) = (user("count-a"), user("count-b"));
    let first = w
        .observe(&buyer, Some("198.51.100.7"), &drop_sale(), &rid("r1"), now)
        .await
        .unwrap();
    let resent = w
        .observe(&buyer, Some("198.51.100.7"), &drop_sale(), &rid("r1"), now)
        .await
        .unwrap();
    assert_eq!(first.buyer_per_minute, resent.buyer_per_minute);
    assert_eq!(first.address_per_minute, resent.address_per_minute);
    for i in 2..=5 {
        w.observe(
            &buyer,
            Some("198.51.100.7"),
            &drop_sale(),
            &rid(&format!("r{i}")),
            now,
        )
        .await
        .unwrap();
    }
    let seen = w
        .observe(&other, Some("198.51.100.7"), &drop_sale(), &rid("o1"), now)
        .await
        .unwrap();
    // The other buyer: its first request; the address: both buyers' six requests.
    assert_eq!(seen.buyer_per_minute, first.buyer_per_minute);
    assert_eq!(seen.address_per_minute, first.address_per_minute + 5);
    assert!(seen.blocked.is_none() && !seen.pass);
}

/// Blocks: a blocked address stops every buyer behind it, a blocked buyer every address;
/// the admin list shows both; a lift ends one.
async fn blocks_apply_to_buyer_and_address<W: Watchlist>(w: &W) {
    let now = now();
    let (bot, neighbour, elsewhere) = (user("block-bot"), user("block-n"), user("block-e"));
    let address = Subject::Address("203.0.113.50".into());
    w.block(&Subject::Buyer(bot.clone()), "challenge-failed", HOUR, now)
        .await
        .unwrap();
    w.block(&address, "challenge-failed", HOUR, now)
        .await
        .unwrap();

    let seen = w
        .observe(&bot, Some("192.0.2.1"), &drop_sale(), &rid("b1"), now)
        .await
        .unwrap();
    let block = seen.blocked.expect("the buyer is blocked from any address");
    assert_eq!(block.reason, "challenge-failed");
    assert!(block.remaining > HOUR - Duration::from_secs(60) && block.remaining <= HOUR);
    let seen = w
        .observe(
            &neighbour,
            Some("203.0.113.50"),
            &drop_sale(),
            &rid("n1"),
            now,
        )
        .await
        .unwrap();
    assert_eq!(seen.blocked.map(|b| b.subject), Some(address.clone()));
    let seen = w
        .observe(&elsewhere, Some("192.0.2.1"), &drop_sale(), &rid("e1"), now)
        .await
        .unwrap();
    assert!(seen.blocked.is_none());

    let listed: Vec<Subject> = w
        .active_blocks(now, 100)
        .await
        .unwrap()
        .blocks
        .into_iter()
        .map(|b| b.subject)
        .collect();
    assert!(
        listed.contains(&Subject::Buyer(bot.clone())) && listed.contains(&address),
        "{listed:?}"
    );
    assert!(w.lift(&address).await.unwrap());
    assert!(!w.lift(&address).await.unwrap());
    let seen = w
        .observe(
            &neighbour,
            Some("203.0.113.50"),
            &drop_sale(),
            &rid("n2"),
            now,
        )
        .await
        .unwrap();
    assert!(seen.blocked.is_none());
    let listed: Vec<Subject> = w
        .active_blocks(now, 100)
        .await
        .unwrap()
        .blocks
        .into_iter()
        .map(|b| b.subject)
        .collect();
    assert!(!listed.contains(&address));
}

/// The admin list: longest remaining first, bounded, with the count of all.
async fn the_block_list_is_ordered_and_bounded<W: Watchlist>(w: &W) {
    let now = now();
    let before = w.active_blocks(now, 1000).await.unwrap().total;
    for (name, minutes) in [("list-short", 5), ("list-long", 50), ("list-mid", 20)] {
        w.block(
            &Subject::Buyer(user(name)),
            "challenge-failed",
            Duration::from_secs(minutes * 60),
            now,
        )
        .await
        .unwrap();
    }
    let page = w.active_blocks(now, 2).await.unwrap();
    assert_eq!(page.total, before + 3);
    assert_eq!(page.blocks.len(), 2);
    assert!(page.blocks[0].remaining >= page.blocks[1].remaining);
    let all = w.active_blocks(now, 1000).await.unwrap();
    let order: Vec<String> = all
        .blocks
        .iter()
        .map(|b| b.subject.label())
        .filter(|l| l.starts_with("buyer:list-"))
        .collect();
    assert_eq!(
        order,
        ["buyer:list-long", "buyer:list-mid", "buyer:list-short"]
    );
    assert_eq!(w.active_blocks(now, 0).await.unwrap().blocks.len(), 0);
}

/// A block ends by itself: observed an hour and a second later, it is gone.
async fn a_block_ends_after_its_hour<W: Watchlist>(w: &W, later_is_real_time: bool) {
    if later_is_real_time {
        return; // Redis keeps real time: its TTL is asserted on the key instead.
    }
    let now = now();
    let buyer = user("block-ends");
    w.block(
        &Subject::Buyer(buyer.clone()),
        "challenge-failed",
        HOUR,
        now,
    )
    .await
    .unwrap();
    let later = now.plus(HOUR + Duration::from_secs(1));
    let seen = w
        .observe(&buyer, None, &drop_sale(), &rid("late"), later)
        .await
        .unwrap();
    assert!(seen.blocked.is_none());
    assert_eq!(w.active_blocks(later, 100).await.unwrap().total, 0);
}

/// Redeems `nonce` for `buyer` on the drop sale (the answer unwrapped).
async fn redeem_as<W: Watchlist>(
    w: &W,
    buyer: &UserId,
    nonce: &str,
    request: &str,
    pass_for: Duration,
    now: Timestamp,
) -> Redemption {
    let (sale, request) = (drop_sale(), rid(request));
    let redeem = Redeem {
        buyer,
        sale: &sale,
        nonce,
        request: &request,
        nonce_ttl: Duration::from_secs(120),
        pass_for,
    };
    w.redeem(&redeem, now).await.unwrap()
}

/// Passes and single use of a challenge.
async fn passes_and_single_use<W: Watchlist>(w: &W, later_is_real_time: bool) {
    let now = now();
    let buyer = user("pass");
    let five_minutes = Duration::from_secs(300);
    assert_eq!(
        redeem_as(w, &buyer, "nonce-a", "s1", five_minutes, now).await,
        Redemption::Granted
    );
    assert!(
        w.observe(&buyer, None, &drop_sale(), &rid("p1"), now)
            .await
            .unwrap()
            .pass
    );
    // The pass is for that sale only.
    let other = SaleId::parse("other-drop").unwrap();
    assert!(
        !w.observe(&buyer, None, &other, &rid("p3"), now)
            .await
            .unwrap()
            .pass
    );
    assert!(
        !w.observe(&user("no-pass"), None, &drop_sale(), &rid("p2"), now)
            .await
            .unwrap()
            .pass
    );

    // Single use: the same request again is a re-sent call (redeemed now); another request
    // gets nothing new, and is admitted only while the pass stands.
    assert_eq!(
        redeem_as(w, &buyer, "nonce-a", "s1", five_minutes, now).await,
        Redemption::Granted,
        "a re-sent call"
    );
    assert_eq!(
        redeem_as(w, &buyer, "nonce-a", "s2", five_minutes, now).await,
        Redemption::AlreadyRedeemed { pass_stands: true },
        "a double submit"
    );
    let (short, brief) = (Duration::from_millis(1), user("pass-brief"));
    assert_eq!(
        redeem_as(w, &brief, "nonce-b", "s3", short, now).await,
        Redemption::Granted
    );
    // The pass lasted a millisecond: redeemed again once it is gone, the solution is a replay.
    // (Redis keeps real time: wait a moment; the in-memory watchlist takes a later `now`.)
    let later = if later_is_real_time {
        tokio::time::sleep(Duration::from_millis(50)).await;
        now
    } else {
        now.plus(Duration::from_secs(1))
    };
    assert_eq!(
        redeem_as(w, &brief, "nonce-b", "s4", five_minutes, later).await,
        Redemption::AlreadyRedeemed { pass_stands: false },
        "a replay once the pass is gone"
    );
}

#[tokio::test]
async fn the_watchlist_scenarios_hold_in_memory() {
    let w = InMemoryWatchlist::default();
    counts_each_request_once(&w).await;
    blocks_apply_to_buyer_and_address(&w).await;
    a_block_ends_after_its_hour(&w, false).await;
    the_block_list_is_ordered_and_bounded(&w).await;
    passes_and_single_use(&w, false).await;
}

#[tokio::test]
async fn the_watchlist_scenarios_hold_on_redis_with_the_keys_lifetimes() {
    let server = RedisServer::start();
    let w = RedisWatchlist::new(server.connection().await);
    counts_each_request_once(&w).await;
    blocks_apply_to_buyer_and_address(&w).await;
    a_block_ends_after_its_hour(&w, true).await;
    the_block_list_is_ordered_and_bounded(&w).await;
    passes_and_single_use(&w, true).await;

    // The lifetimes, on the keys themselves.
    let mut conn = server.connection().await;
    let pttl = |key: String| {
        let mut conn = conn.clone();
        async move {
            let ms: i64 = redis::cmd("PTTL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            ms
        }
    };
    let bot = Subject::Buyer(user("block-bot"));
    let keys = subject_keys(&bot, &drop_sale(), now());
    let block_ms = pttl(keys[0].clone()).await;
    assert!(
        (3_540_000..=3_600_000).contains(&block_ms),
        "block PTTL {block_ms}"
    );
    let count_ms = pttl(keys[1].clone()).await;
    assert!((1..=120_000).contains(&count_ms), "count PTTL {count_ms}");
    let pass_ms =
        pttl(subject_keys(&Subject::Buyer(user("pass")), &drop_sale(), now())[3].clone()).await;
    assert!(
        (290_000..=300_000).contains(&pass_ms),
        "pass PTTL {pass_ms}"
    );
    let spent_ms = pttl(spent_key(&user("pass"), "nonce-a")).await;
    assert!(
        (110_000..=120_000).contains(&spent_ms),
        "spent PTTL {spent_ms}"
    );

    // A block written half (its index entry, not its key: the second write failed) is not in
    // force and not listed; a lift written half (the index entry gone, not the key) leaves
    // the block in force, and the admin's retry finishes it.
    let ghost = Subject::Buyer(user("half-written"));
    let _: () = redis::cmd("ZADD")
        .arg("fs:{bot:blocks}")
        .arg(now().as_millis() + 3_600_000)
        .arg(ghost.label())
        .query_async(&mut conn)
        .await
        .unwrap();
    let listed = w.active_blocks(now(), 1000).await.unwrap();
    assert!(
        listed.blocks.iter().all(|b| b.subject != ghost),
        "{listed:?}"
    );
    assert!(w
        .observe(&user("half-written"), None, &drop_sale(), &rid("g1"), now())
        .await
        .unwrap()
        .blocked
        .is_none());
    let half_lifted = Subject::Buyer(user("half-lifted"));
    w.block(&half_lifted, "challenge-failed", HOUR, now())
        .await
        .unwrap();
    let _: () = redis::cmd("ZREM")
        .arg("fs:{bot:blocks}")
        .arg(half_lifted.label())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(w
        .observe(&user("half-lifted"), None, &drop_sale(), &rid("h1"), now())
        .await
        .unwrap()
        .blocked
        .is_some());
    assert!(w.lift(&half_lifted).await.unwrap(), "the retry lifts it");
    let _: () = redis::cmd("PING").query_async(&mut conn).await.unwrap();
}
