//! Every Lua script, run twice with the same arguments, leaves the same state as run once.
//!
//! A client can execute a script twice while its caller saw one call: the cluster client
//! re-sends a command after a dropped connection, and the first run may have happened. So each
//! script must be idempotent for identical arguments. For each script this test builds a state
//! on a real redis-server, snapshots it (DUMP), runs the script once and records the state,
//! restores the snapshot, runs it twice, and compares. It also checks that the single run
//! changed something, so a script that silently does nothing cannot pass, and that the second
//! run's reply means what the first one's did (a re-sent reserve that answered "duplicate" made
//! the engine release the hold it had just taken).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use flashsale_core::bot::watchlist::redis::{spent_key, subject_keys, OBSERVE, REDEEM};
use flashsale_core::bot::watchlist::Subject;
use flashsale_core::domain::{IdempotencyKey, ReservationId, Timestamp, UserId};
use flashsale_core::payment::breaker::BREAKER;
use flashsale_core::rate_limit::redis::TOKEN_BUCKET;
use flashsale_core::rate_limit::RateKey;
use flashsale_core::stock::redis::scripts;
use flashsale_core::stock::redis::{RedisStockConfig, RedisStockEngine};
use flashsale_core::stock::{ReserveOutcome, SaleStock, ShardKeys, StockEngine, StockSetup};
use flashsale_core::waiting_room::redis::{keys as room_keys, QUEUE};
use redis::aio::ConnectionManager;
use redis::{Script, Value};
use testkit::RedisServer;

type State = BTreeMap<String, String>;

/// Every key with its type and content, in a canonical text form. Volatile fields that only say
/// *when* something ran (a token bucket's `ts`, its fractional tokens) are normalised.
async fn state(conn: &mut ConnectionManager) -> State {
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(conn).await.unwrap();
    keys.sort();
    let mut out = State::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(conn)
            .await
            .unwrap();
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(conn)
            .await
            .unwrap();
        let content = match kind.as_str() {
            "string" => {
                let v: Vec<u8> = redis::cmd("GET").arg(&key).query_async(conn).await.unwrap();
                if v.starts_with(b"HYLL") {
                    // A HyperLogLog (the bot watchlist's request counts): its count.
                    let n: i64 = redis::cmd("PFCOUNT")
                        .arg(&key)
                        .query_async(conn)
                        .await
                        .unwrap();
                    format!("hyperloglog of {n}")
                } else {
                    String::from_utf8_lossy(&v).into_owned()
                }
            }
            "hash" => {
                let mut h: BTreeMap<String, String> = redis::cmd("HGETALL")
                    .arg(&key)
                    .query_async(conn)
                    .await
                    .unwrap();
                h.remove("ts");
                if let Some(tokens) = h.get_mut("tokens") {
                    *tokens = format!("{:.1}", tokens.parse::<f64>().unwrap());
                }
                format!("{h:?}")
            }
            "zset" => {
                let z: Vec<(String, String)> = redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query_async(conn)
                    .await
                    .unwrap();
                format!("{z:?}")
            }
            "set" => {
                let mut members: Vec<String> = redis::cmd("SMEMBERS")
                    .arg(&key)
                    .query_async(conn)
                    .await
                    .unwrap();
                members.sort();
                format!("{members:?}")
            }
            other => panic!("unexpected type {other} of {key}"),
        };
        out.insert(key, format!("{kind} ttl:{} {content}", ttl > 0));
    }
    out
}

/// DUMP of every key with its remaining lifetime.
async fn dump(conn: &mut ConnectionManager) -> Vec<(String, Vec<u8>, i64)> {
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(conn).await.unwrap();
    let mut out = Vec::new();
    for key in keys {
        let bytes: Vec<u8> = redis::cmd("DUMP")
            .arg(&key)
            .query_async(conn)
            .await
            .unwrap();
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(conn)
            .await
            .unwrap();
        out.push((key, bytes, ttl.max(0)));
    }
    out
}

async fn restore(conn: &mut ConnectionManager, snapshot: &[(String, Vec<u8>, i64)]) {
    let _: () = redis::cmd("FLUSHALL").query_async(conn).await.unwrap();
    for (key, bytes, ttl) in snapshot {
        let _: () = redis::cmd("RESTORE")
            .arg(key)
            .arg(*ttl)
            .arg(bytes.as_slice())
            .query_async(conn)
            .await
            .unwrap();
    }
}

async fn eval(
    conn: &mut ConnectionManager,
    script: &Script,
    keys: &[String],
    args: &[String],
) -> Value {
    let mut invocation = script.prepare_invoke();
    for key in keys {
        invocation.key(key);
    }
    for arg in args {
        invocation.arg(arg);
    }
    invocation.invoke_async(conn).await.unwrap()
}

/// The status word of a `{"STATUS", ...}` reply, or the reply itself for other shapes.
fn status(reply: &Value) -> String {
    match reply {
        Value::Array(items) => match items.first() {
            Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(Value::SimpleString(s)) => s.clone(),
            _ => format!("{reply:?}"),
        },
        other => format!("{other:?}"),
    }
}

/// Whether a second run's reply tells the caller the same thing as the first run's.
fn same_meaning(first: &Value, second: &Value) -> bool {
    const EQUIVALENT: [(&str, &str); 6] = [
        ("RELEASED", "ALREADY_RELEASED"),
        ("COMMITTED", "ALREADY_COMMITTED"),
        ("RETAKEN", "ALREADY_COMMITTED"),
        ("CREATED", "EXISTS"),
        ("RESTORED", "HELD"),
        ("FENCED", "PAUSED"),
    ];
    match (first, second) {
        // Counts of what changed (unclaim, restore_claims, unlock): 0 the second time.
        (Value::Int(_), Value::Int(_)) => true,
        _ => {
            let (a, b) = (status(first), status(second));
            a == b || EQUIVALENT.contains(&(a.as_str(), b.as_str()))
        }
    }
}

/// Runs `script` once and twice from the current state and asserts both end the same, and
/// differently from where they started, and that the second reply means the same as the first.
async fn assert_rerun_safe(
    server: &RedisServer,
    name: &str,
    script: &Script,
    keys: &[String],
    args: &[String],
) {
    let mut conn = server.connection().await;
    let snapshot = dump(&mut conn).await;
    let before = state(&mut conn).await;
    let first = eval(&mut conn, script, keys, args).await;
    let once = state(&mut conn).await;
    restore(&mut conn, &snapshot).await;
    eval(&mut conn, script, keys, args).await;
    let again = eval(&mut conn, script, keys, args).await;
    let twice = state(&mut conn).await;
    assert_ne!(before, once, "{name} changed nothing (reply {first:?})");
    assert_eq!(once, twice, "{name}: two runs differ from one");
    assert!(
        same_meaning(&first, &again),
        "{name}: the second run answers {again:?} where the first answered {first:?}"
    );
    // Leave the state of one run for the next case.
    restore(&mut conn, &snapshot).await;
    eval(&mut conn, script, keys, args).await;
}

struct Fixture {
    server: RedisServer,
    engine: RedisStockEngine<ConnectionManager>,
    sale: SaleStock,
    now: Timestamp,
}

impl Fixture {
    async fn new(shards: u16, units: u64) -> Self {
        let server = RedisServer::start();
        let engine = RedisStockEngine::new(server.connection().await, RedisStockConfig::default());
        let sale = sale(&unique_sale("rerun"), shards);
        engine
            .setup(
                &sale,
                &StockSetup {
                    total_units: units,
                    per_user_limit: 3,
                },
            )
            .await
            .unwrap();
        Self {
            server,
            engine,
            sale,
            now: now(),
        }
    }

    fn keys(&self, shard: u16) -> ShardKeys {
        ShardKeys::new(&self.sale.sale_id, shard)
    }

    fn ms(&self, t: Timestamp) -> String {
        t.as_millis().to_string()
    }

    async fn check(&self, name: &str, script: &Script, keys: &[String], args: &[String]) {
        assert_rerun_safe(&self.server, name, script, keys, args).await;
    }

    async fn reserve(&self, user: &UserId, key: &str) -> ReservationId {
        match self
            .engine
            .reserve(&request(&self.sale, user, key, 1))
            .await
            .unwrap()
        {
            ReserveOutcome::Reserved(hold) => hold.reservation_id,
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn every_stock_script_is_safe_to_run_twice() {
    // Two shards: the buyer's home shard h and another one o.
    let f = Fixture::new(2, 6).await;
    let shards = f.sale.shards;
    let buyer = user_with_home(shards, 0, "rerun-buyer");
    let (h, o) = (0u16, 1u16);
    let home = f.keys(h);
    let other = f.keys(o);
    let expires = f.now.plus(Duration::from_secs(600));
    let ttl = "86400".to_string();

    // reserve.lua: a hold on the home shard.
    let id = ReservationId::new();
    let key = IdempotencyKey::parse("k-reserve").unwrap();
    f.check(
        "reserve",
        &scripts::RESERVE,
        &[
            home.stock(),
            home.holds(),
            home.hold_times(),
            home.user(&buyer),
            home.idempotency(&buyer, &key),
        ],
        &[
            id.to_string(),
            buyer.to_string(),
            "1".into(),
            f.ms(expires),
            f.ms(f.now),
            "2".into(),
            h.to_string(),
            ttl.clone(),
            "1".into(),
        ],
    )
    .await;

    // claim.lua, take.lua, confirm.lua: the fallback path of another request.
    let fid = ReservationId::new();
    let fkey = IdempotencyKey::parse("k-fallback").unwrap();
    f.check(
        "claim",
        &scripts::CLAIM,
        &[
            home.stock(),
            home.user(&buyer),
            home.idempotency(&buyer, &fkey),
            home.pending_claims(),
        ],
        &[
            fid.to_string(),
            "1".into(),
            buyer.to_string(),
            f.ms(f.now),
            "30".into(),
        ],
    )
    .await;
    f.check(
        "take",
        &scripts::TAKE,
        &[other.stock(), other.holds(), other.hold_times()],
        &[
            fid.to_string(),
            buyer.to_string(),
            "1".into(),
            f.ms(expires),
            f.ms(f.now),
            "2".into(),
            "1".into(),
        ],
    )
    .await;
    f.check(
        "confirm",
        &scripts::CONFIRM,
        &[
            home.user(&buyer),
            home.idempotency(&buyer, &fkey),
            home.pending_claims(),
        ],
        &[
            fid.to_string(),
            "1".into(),
            o.to_string(),
            ttl.clone(),
            buyer.to_string(),
            f.ms(expires),
        ],
    )
    .await;

    // release.lua (and its claim removal, unclaim.lua) of the first hold.
    f.check(
        "release",
        &scripts::RELEASE,
        &[home.stock(), home.holds(), home.hold_times()],
        &[id.to_string()],
    )
    .await;
    f.check(
        "unclaim",
        &scripts::UNCLAIM,
        &[home.user(&buyer), home.pending_claims()],
        &[id.to_string(), buyer.to_string()],
    )
    .await;

    // commit.lua of the fallback hold.
    f.check(
        "commit",
        &scripts::COMMIT,
        &[other.stock(), other.holds(), other.hold_times()],
        &[fid.to_string()],
    )
    .await;

    // commit.lua with a hold spec: a paid reservation whose hold Redis lost is taken as sold.
    let lost = ReservationId::new();
    f.check(
        "commit (retake a lost hold)",
        &scripts::COMMIT,
        &[home.stock(), home.holds(), home.hold_times()],
        &[
            lost.to_string(),
            buyer.to_string(),
            "1".into(),
            f.ms(expires),
            f.ms(f.now),
        ],
    )
    .await;

    // rollback.lua of a fresh reservation on the home shard, and the void of a fallback hold.
    let buyer2 = user_with_home(shards, 0, "rerun-rollback");
    let rid = f.reserve(&buyer2, "k-rollback").await;
    let rkey = IdempotencyKey::parse("k-rollback").unwrap();
    f.check(
        "rollback",
        &scripts::ROLLBACK,
        &[
            home.stock(),
            home.holds(),
            home.hold_times(),
            home.user(&buyer2),
            home.idempotency(&buyer2, &rkey),
            home.pending_claims(),
        ],
        &[rid.to_string(), buyer2.to_string(), "1".into()],
    )
    .await;
    let buyer3 = user_with_home(shards, 1, "rerun-void");
    let vid = f.reserve(&buyer3, "k-void").await;
    f.check(
        "release (void)",
        &scripts::RELEASE,
        &[other.stock(), other.holds(), other.hold_times()],
        &[vid.to_string(), "void".into()],
    )
    .await;

    // restore_hold.lua: a durable reservation whose hold is gone.
    let restored = ReservationId::new();
    f.check(
        "restore_hold",
        &scripts::RESTORE_HOLD,
        &[home.stock(), home.holds(), home.hold_times()],
        &[
            restored.to_string(),
            buyer.to_string(),
            "1".into(),
            f.ms(expires),
            f.ms(f.now),
            "0".into(),
            "1".into(),
        ],
    )
    .await;
    f.check(
        "restore_claims",
        &scripts::RESTORE_CLAIMS,
        &[home.user(&buyer)],
        &[restored.to_string(), "1".into()],
    )
    .await;

    // Admin scripts: top_up.lua (to a target), configure.lua.
    f.check("top_up", &scripts::TOP_UP, &[home.stock()], &["5".into()])
        .await;
    f.check(
        "configure",
        &scripts::CONFIGURE,
        &[home.stock()],
        &["4".into()],
    )
    .await;

    // The rebuild: pause.lua, rebuild_shard.lua, resume.lua, and the lock's unlock.lua.
    f.check(
        "pause",
        &scripts::PAUSE,
        &[home.stock()],
        &["2".into(), "3".into(), f.ms(f.now)],
    )
    .await;
    let rebuilt = ReservationId::new();
    f.check(
        "rebuild_shard",
        &scripts::REBUILD_SHARD,
        &[home.stock(), home.holds(), home.hold_times()],
        &[
            "3".into(),
            "2".into(),
            "3".into(),
            f.ms(f.now),
            rebuilt.to_string(),
            format!("H|1|{}|{}|{buyer}", expires.as_millis(), f.now.as_millis()),
        ],
    )
    .await;
    f.check("resume", &scripts::RESUME, &[home.stock()], &[])
        .await;
    let lock = home.rebuild_lock();
    f.server.cli(&["SET", &lock, "token-1", "EX", "60"]);
    f.check("unlock", &scripts::UNLOCK, &[lock], &["token-1".into()])
        .await;

    // setup.lua on a new sale.
    let fresh = ShardKeys::new(&unique_sale("rerun-setup"), 0);
    f.check(
        "setup",
        &scripts::SETUP,
        &[fresh.stock()],
        &["5".into(), "1".into(), "2".into()],
    )
    .await;
}

#[tokio::test]
async fn the_rate_limit_and_breaker_scripts_are_safe_to_run_twice() {
    let server = RedisServer::start();
    let bucket = RateKey::SourceIp("10.0.0.7".into());
    let request = flashsale_core::rate_limit::RequestId::random();
    let keys = [bucket.redis_key(), bucket.request_key(&request)];
    let args = |op: &str| -> Vec<String> {
        vec![
            "5".into(),
            "0.001".into(),
            "1".into(),
            op.into(),
            "10000".into(),
        ]
    };
    assert_rerun_safe(
        &server,
        "token_bucket take",
        &TOKEN_BUCKET,
        &keys,
        &args("take"),
    )
    .await;
    assert_rerun_safe(
        &server,
        "token_bucket refund",
        &TOKEN_BUCKET,
        &keys,
        &args("refund"),
    )
    .await;

    // breaker.lua: a failure recorded for a permit of a closed circuit counts once.
    let state_key = "fs:breaker:{rerun}".to_string();
    let now = now().as_millis();
    let breaker =
        |op: &str, token: &str, success: bool, probe: bool| -> (Vec<String>, Vec<String>) {
            (
                vec![state_key.clone(), format!("{state_key}:rec:{token}")],
                vec![
                    op.into(),
                    now.to_string(),
                    "3".into(),
                    "30000".into(),
                    "15000".into(),
                    token.into(),
                    if success { "1" } else { "0" }.into(),
                    if probe { "1" } else { "0" }.into(),
                ],
            )
        };
    let (k, a) = breaker("record", "permit-1", false, false);
    assert_rerun_safe(&server, "breaker record failure", &BREAKER, &k, &a).await;
    // Open the circuit, let its cooldown pass: the next acquire takes the probe.
    server.cli(&[
        "HSET",
        &state_key,
        "state",
        "open",
        "open_until",
        &(now - 1).to_string(),
        "failures",
        "0",
    ]);
    let (k, a) = breaker("acquire", "probe-1", false, false);
    assert_rerun_safe(&server, "breaker acquire (probe)", &BREAKER, &k, &a).await;
    let (k, a) = breaker("record", "probe-1", true, true);
    assert_rerun_safe(&server, "breaker record probe success", &BREAKER, &k, &a).await;
}

/// observe.lua's reply carries remaining lifetimes (ms), which differ between two runs by the
/// time in between: compare what they mean (a block or none, the same reason, the same counts,
/// a pass or none).
fn observation_meaning(reply: &Value) -> String {
    let Value::Array(items) = reply else {
        panic!("observe answered {reply:?}")
    };
    let positive = |v: &Value| matches!(v, Value::Int(n) if *n > 0);
    format!(
        "blocked:{} reason:{:?} counts:{:?}/{:?} pass:{}",
        positive(&items[0]),
        items[1],
        items[2],
        items[3],
        positive(&items[4])
    )
}

async fn assert_observe_rerun_safe(
    server: &RedisServer,
    name: &str,
    keys: &[String],
    request: &str,
) {
    let mut conn = server.connection().await;
    let snapshot = dump(&mut conn).await;
    let before = state(&mut conn).await;
    let args = [request.to_string()];
    let first = eval(&mut conn, &OBSERVE, keys, &args).await;
    let once = state(&mut conn).await;
    restore(&mut conn, &snapshot).await;
    eval(&mut conn, &OBSERVE, keys, &args).await;
    let again = eval(&mut conn, &OBSERVE, keys, &args).await;
    let twice = state(&mut conn).await;
    assert_ne!(before, once, "{name} changed nothing");
    assert_eq!(once, twice, "{name}: two runs differ from one");
    assert_eq!(
        observation_meaning(&first),
        observation_meaning(&again),
        "{name}"
    );
}

#[tokio::test]
async fn the_bot_watchlist_scripts_are_safe_to_run_twice() {
    let server = RedisServer::start();
    let buyer = Subject::Buyer(UserId::parse("rerun-bot").unwrap());
    let sale = flashsale_core::domain::SaleId::parse("rerun-sale").unwrap();
    let keys = subject_keys(&buyer, &sale, now()).to_vec();
    // observe.lua: a re-sent observation counts the request once.
    assert_observe_rerun_safe(&server, "observe", &keys, "req-1").await;
    // With a block and a pass in place, it still counts once and reads the same.
    let mut conn = server.connection().await;
    for (key, value) in [(&keys[0], "challenge-failed"), (&keys[3], "1")] {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("PX")
            .arg(3_600_000)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    assert_observe_rerun_safe(&server, "observe (blocked, with a pass)", &keys, "req-2").await;
    // redeem.lua: a re-sent redemption of the same request is still "redeemed now", and
    // leaves the same spent nonce and pass.
    let rerun_buyer = UserId::parse("rerun-solver").unwrap();
    let redeem_keys = vec![
        spent_key(&rerun_buyer, "nonce-1"),
        subject_keys(&Subject::Buyer(rerun_buyer.clone()), &sale, now())[3].clone(),
    ];
    assert_rerun_safe(
        &server,
        "redeem",
        &REDEEM,
        &redeem_keys,
        &["req-3".into(), "120000".into(), "600000".into()],
    )
    .await;
}

/// The engine-level view of a re-sent reserve: the second run answers with the same hold and
/// takes nothing more (the case that used to release a confirmed hold on the fallback path).
#[tokio::test]
async fn a_reserve_sent_twice_is_one_reservation_on_both_paths() {
    let f = Fixture::new(2, 2).await;
    let shards = f.sale.shards;
    // Home path.
    let buyer = user_with_home(shards, 0, "twice-home");
    let req = request(&f.sale, &buyer, "twice", 1);
    let first = f.engine.reserve(&req).await.unwrap();
    let second = f.engine.reserve(&req).await.unwrap();
    assert!(matches!(first, ReserveOutcome::Reserved(_)), "{first:?}");
    assert_eq!(first, second);
    // Fallback path: shard 0 is empty now, so this buyer's unit comes from shard 1.
    let buyer2 = user_with_home(shards, 0, "twice-fallback");
    let req = request(&f.sale, &buyer2, "twice", 1);
    let first = f.engine.reserve(&req).await.unwrap();
    let second = f.engine.reserve(&req).await.unwrap();
    let ReserveOutcome::Reserved(hold) = &first else {
        panic!("{first:?}")
    };
    assert_eq!(hold.shard, 1);
    assert_eq!(first, second);
    let levels = f.engine.levels(&f.sale).await.unwrap();
    assert_eq!((levels.available(), levels.held()), (0, 2));
}

/// queue.lua: a join or restore sent twice answers the same place (pre-queue, FIFO, a ticket's
/// place), a show sent twice counts once, a buyer let straight in twice counts once.
#[tokio::test]
async fn the_waiting_room_script_is_safe_to_run_twice() {
    let server = RedisServer::start();
    let sale = unique_sale("rerun-room");
    let now = now();
    let keys: Vec<String> = room_keys(&sale, now).to_vec();
    let args =
        |op: &str, now: Timestamp, opens_at: Timestamp, buyer: &str, rank: &str| -> Vec<String> {
            vec![
                op.into(),
                now.as_millis().to_string(),
                "10".into(),
                "50".into(),
                "100".into(),
                "30000".into(),
                opens_at.as_millis().to_string(),
                buyer.into(),
                "1000".into(),
                rank.into(),
                now.plus(Duration::from_secs(3600)).as_millis().to_string(),
                "5".into(),
                "300000".into(),
            ]
        };
    let opens_at = now.plus(Duration::from_secs(60));
    assert_rerun_safe(
        &server,
        "queue join (pre-queue)",
        &QUEUE,
        &keys,
        &args("join", now, opens_at, "early", "12345"),
    )
    .await;
    let open = opens_at.plus(Duration::from_millis(5));
    assert_rerun_safe(
        &server,
        "queue join (pre-queue member at the opening)",
        &QUEUE,
        &keys,
        &args("join", open, opens_at, "early", "12345"),
    )
    .await;
    assert_rerun_safe(
        &server,
        "queue join (FIFO)",
        &QUEUE,
        &keys,
        &args("join", open, opens_at, "late", "999"),
    )
    .await;
    // show: the place of "late" (position 2, admitted 100 ms after the opening).
    let mut show = args("show", open, opens_at, "2", "");
    show[9] = opens_at
        .plus(Duration::from_millis(100))
        .as_millis()
        .to_string();
    assert_rerun_safe(&server, "queue show", &QUEUE, &keys, &show).await;
    // restore: a ticket's place brought back (position 9, admitted a second after the opening).
    let mut restore = args("restore", open, opens_at, "restored", "");
    restore[8] = "9".into();
    restore[9] = opens_at
        .plus(Duration::from_secs(1))
        .as_millis()
        .to_string();
    assert_rerun_safe(&server, "queue restore", &QUEUE, &keys, &restore).await;
    // straight_in: a buyer let in counts once in its second (a sale without a queue yet).
    let other = unique_sale("rerun-room-in");
    let other_keys: Vec<String> = room_keys(&other, open).to_vec();
    assert_rerun_safe(
        &server,
        "queue straight_in",
        &QUEUE,
        &other_keys,
        &args("straight_in", open, opens_at, "walk-in", ""),
    )
    .await;
}
