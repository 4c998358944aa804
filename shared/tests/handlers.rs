//! Unit tests of the HTTP handlers with in-memory fakes for every port (fast, no services).
//! The same handlers run against real Redis and DynamoDB in the end-to-end tests.

use std::collections::HashMap;
use std::time::Duration;

use flashsale_core::domain::{ManualClock, SaleId, Timestamp};
use flashsale_core::identity::context_for;
use flashsale_core::rate_limit::memory::InMemoryRateLimiter;
use flashsale_core::rate_limit::BucketPolicy;
use flashsale_core::reservation::http as reservation_http;
use flashsale_core::reservation::memory::InMemoryReservationStore;
use flashsale_core::reservation::reserve::{RatePolicies, ReserveService};
use flashsale_core::sale::http as sale_http;
use flashsale_core::sale::memory::InMemorySaleCatalog;
use flashsale_core::sale::Sale;
use flashsale_core::stock::memory::InMemoryStockEngine;
use flashsale_core::stock::repair::memory::RecordedRepairs;
use flashsale_core::stock::StockEngine;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::Value;
use testkit::fixtures::{self, OpenSale};

const NOW: i64 = 1_800_000_000_000;

type Service = ReserveService<
    InMemoryStockEngine,
    InMemoryRateLimiter<ManualClock>,
    InMemorySaleCatalog,
    InMemoryReservationStore,
    ManualClock,
    RecordedRepairs,
>;

fn sale(id: &str, units: u64, limit: u32) -> Sale {
    OpenSale::new(SaleId::parse(id).unwrap(), units)
        .limit(limit)
        .price(49_999)
        .named("Console drop")
        .at(Timestamp::from_millis(NOW))
}

async fn service_with(sales: &[Sale]) -> Service {
    let clock = ManualClock::at(Timestamp::from_millis(NOW));
    let service = ReserveService {
        stock: InMemoryStockEngine::default(),
        limiter: InMemoryRateLimiter::new(clock.clone()),
        catalog: InMemorySaleCatalog::default(),
        store: InMemoryReservationStore::default(),
        clock,
        repairs: RecordedRepairs::default(),
        policies: RatePolicies {
            per_user: BucketPolicy::new(3, 1.0).unwrap(),
            per_ip: BucketPolicy::new(100, 100.0).unwrap(),
        },
    };
    for sale in sales {
        fixtures::open(&service.catalog, &service.stock, sale).await;
    }
    service
}

fn request(
    method: Method,
    path: &str,
    params: &[(&str, &str)],
    user: Option<(&str, &[&str])>,
    headers: &[(&str, &str)],
    body: &str,
) -> Request {
    let mut builder = lambda_http::http::Request::builder()
        .method(method)
        .uri(path);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let body = if body.is_empty() {
        Body::Empty
    } else {
        Body::Text(body.into())
    };
    let mut request = builder.body(body).unwrap();
    let params: HashMap<String, String> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    request = request.with_path_parameters(params);
    if let Some((user, groups)) = user {
        request = request.with_request_context(context_for(user, groups, "203.0.113.7"));
    }
    request
}

fn reserve_request(sale: &str, user: Option<&str>, key: Option<&str>, body: &str) -> Request {
    let mut headers = vec![];
    if let Some(key) = key {
        headers.push(("Idempotency-Key", key));
    }
    request(
        Method::POST,
        &format!("/sales/{sale}/reservations"),
        &[("saleId", sale)],
        user.map(|u| (u, &[][..])),
        &headers,
        body,
    )
}

fn json_of(response: &Response<Body>) -> Value {
    match response.body() {
        Body::Text(text) => serde_json::from_str(text).unwrap(),
        other => panic!("expected a text body, got {other:?}"),
    }
}

fn assert_problem(response: &Response<Body>, status: StatusCode, type_slug: &str) {
    assert_eq!(response.status(), status, "{:?}", response.body());
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body = json_of(response);
    assert_eq!(body["type"], format!("/problems/{type_slug}"));
    assert_eq!(body["status"], status.as_u16());
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
}

#[tokio::test]
async fn a_reservation_is_created_for_the_authorizer_user_with_rate_headers() {
    let service = service_with(&[sale("drop", 10, 2)]).await;
    // GIVEN a body that claims to be someone else
    let response = reservation_http::reserve(
        &service,
        &reserve_request(
            "drop",
            Some("alice"),
            Some("k1"),
            r#"{"quantity":2,"user_id":"mallory"}"#,
        ),
    )
    .await;
    // THEN the reservation is Alice's, for 2 units, PENDING, expiring after the hold time
    assert_eq!(response.status(), StatusCode::CREATED);
    let body = json_of(&response);
    assert_eq!(body["quantity"], 2);
    assert_eq!(body["status"], "PENDING");
    assert_eq!(
        body["amount"],
        serde_json::json!({"amount_minor": 99_998, "currency": "EUR"})
    );
    assert_eq!(
        body["expires_at"],
        Timestamp::from_millis(NOW + 600_000).to_rfc3339()
    );
    let stored = service.store.all();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].user_id.as_str(), "alice");
    assert_eq!(response.headers()["x-ratelimit-limit"], "3");
    assert_eq!(response.headers()["x-ratelimit-remaining"], "2");
    assert!(response.headers().contains_key("x-ratelimit-reset"));
}

#[tokio::test]
async fn the_same_idempotency_key_replays_the_reservation_and_a_changed_body_is_refused() {
    let service = service_with(&[sale("drop", 10, 5)]).await;
    let first = reservation_http::reserve(
        &service,
        &reserve_request("drop", Some("bob"), Some("k"), ""),
    )
    .await;
    let again = reservation_http::reserve(
        &service,
        &reserve_request("drop", Some("bob"), Some("k"), ""),
    )
    .await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(
        json_of(&first)["reservation_id"],
        json_of(&again)["reservation_id"]
    );
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(service.store.all().len(), 1);
    let changed = reservation_http::reserve(
        &service,
        &reserve_request("drop", Some("bob"), Some("k"), r#"{"quantity":2}"#),
    )
    .await;
    assert_problem(
        &changed,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency-key-reused",
    );
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_problem() {
    let service = service_with(&[sale("drop", 10, 5)]).await;
    let cases: Vec<(Request, StatusCode, &str)> = vec![
        (
            reserve_request("drop", None, Some("k"), ""),
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
        ),
        (
            reserve_request("drop", Some("u"), None, ""),
            StatusCode::BAD_REQUEST,
            "missing-idempotency-key",
        ),
        (
            reserve_request("drop", Some("u"), Some("has space"), ""),
            StatusCode::BAD_REQUEST,
            "invalid-idempotency-key",
        ),
        (
            reserve_request("drop", Some("u"), Some("k"), "{not json"),
            StatusCode::BAD_REQUEST,
            "malformed-body",
        ),
        (
            reserve_request("drop", Some("u"), Some("k"), "[1,2]"),
            StatusCode::BAD_REQUEST,
            "malformed-body",
        ),
        (
            reserve_request("drop", Some("u"), Some("k"), r#"{"quantity":"two"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-quantity",
        ),
        (
            reserve_request("drop", Some("u"), Some("k"), r#"{"quantity":-1}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-quantity",
        ),
        (
            reserve_request("drop", Some("u"), Some("k"), r#"{"quantity":0}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-quantity",
        ),
        (
            reserve_request("drop", Some("u"), Some("k"), r#"{"quantity":1e12}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-quantity",
        ),
        (
            reserve_request("drop", Some("u"), Some("k"), r#"{"quantity":101}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-quantity",
        ),
        (
            reserve_request("drop", Some("u"), Some("k"), &" ".repeat(5_000)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
        ),
        (
            reserve_request("no{such", Some("u"), Some("k"), ""),
            StatusCode::BAD_REQUEST,
            "invalid-sale-id",
        ),
        (
            reserve_request("nope", Some("u"), Some("k"), ""),
            StatusCode::NOT_FOUND,
            "sale-not-found",
        ),
    ];
    for (request, status, slug) in cases {
        let response = reservation_http::reserve(&service, &request).await;
        assert_problem(&response, status, slug);
    }
    assert!(
        service.store.all().is_empty(),
        "no bad request reserved anything"
    );
}

#[tokio::test]
async fn sold_out_limit_and_window_refusals_have_their_statuses() {
    let mut early = sale("early", 5, 1);
    early.starts_at = Timestamp::from_millis(NOW + 60_000);
    let mut late = sale("late", 5, 1);
    late.ends_at = Timestamp::from_millis(NOW - 1);
    let service = service_with(&[sale("one", 1, 1), early, late]).await;

    let ok = reservation_http::reserve(&service, &reserve_request("one", Some("a"), Some("k"), ""))
        .await;
    assert_eq!(ok.status(), StatusCode::CREATED);
    assert_problem(
        &reservation_http::reserve(&service, &reserve_request("one", Some("b"), Some("k"), ""))
            .await,
        StatusCode::GONE,
        "sold-out",
    );
    assert_problem(
        &reservation_http::reserve(&service, &reserve_request("one", Some("a"), Some("k2"), ""))
            .await,
        StatusCode::CONFLICT,
        "limit-reached",
    );
    assert_problem(
        &reservation_http::reserve(
            &service,
            &reserve_request("early", Some("c"), Some("k"), ""),
        )
        .await,
        StatusCode::CONFLICT,
        "sale-not-started",
    );
    assert_problem(
        &reservation_http::reserve(&service, &reserve_request("late", Some("d"), Some("k"), ""))
            .await,
        StatusCode::CONFLICT,
        "sale-ended",
    );
}

#[tokio::test]
async fn a_burst_beyond_the_bucket_gets_429_with_retry_after() {
    let service = service_with(&[sale("drop", 100, 100)]).await;
    for i in 0..3 {
        let r = reservation_http::reserve(
            &service,
            &reserve_request("drop", Some("eager"), Some(&format!("k{i}")), ""),
        )
        .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let refused = reservation_http::reserve(
        &service,
        &reserve_request("drop", Some("eager"), Some("k9"), ""),
    )
    .await;
    assert_problem(&refused, StatusCode::TOO_MANY_REQUESTS, "rate-limited");
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(refused.headers()["x-ratelimit-remaining"], "0");
    // A second later one token is back.
    service.clock.advance(Duration::from_secs(1));
    let r = reservation_http::reserve(
        &service,
        &reserve_request("drop", Some("eager"), Some("k10"), ""),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn when_the_durable_write_fails_the_unit_goes_back_and_the_buyer_gets_503() {
    let service = service_with(&[sale("drop", 1, 1)]).await;
    service.store.fail_writes(true);
    let response =
        reservation_http::reserve(&service, &reserve_request("drop", Some("a"), Some("k"), ""))
            .await;
    assert_problem(
        &response,
        StatusCode::SERVICE_UNAVAILABLE,
        "dependency-unavailable",
    );
    assert!(response.headers().contains_key("retry-after"));
    let levels = service
        .stock
        .levels(&sale("drop", 1, 1).stock())
        .await
        .unwrap();
    assert_eq!(
        (levels.available(), levels.held()),
        (1, 0),
        "the unit is not lost"
    );
    // And the buyer can try again (the allowance came back with the unit).
    service.store.fail_writes(false);
    let retry = reservation_http::reserve(
        &service,
        &reserve_request("drop", Some("a"), Some("k-new"), ""),
    )
    .await;
    assert_eq!(retry.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_buyer_reads_their_own_reservation_and_nobody_elses() {
    let service = service_with(&[sale("drop", 10, 1)]).await;
    let created = reservation_http::reserve(
        &service,
        &reserve_request("drop", Some("owner"), Some("k"), ""),
    )
    .await;
    let id = json_of(&created)["reservation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let get = |user: Option<&str>, id: &str| {
        request(
            Method::GET,
            &format!("/reservations/{id}"),
            &[("reservationId", id)],
            user.map(|u| (u, &[][..])),
            &[],
            "",
        )
    };

    let mine = reservation_http::get_reservation(&service.store, &get(Some("owner"), &id)).await;
    assert_eq!(mine.status(), StatusCode::OK);
    assert_eq!(json_of(&mine)["status"], "PENDING");
    assert_problem(
        &reservation_http::get_reservation(&service.store, &get(Some("thief"), &id)).await,
        StatusCode::NOT_FOUND,
        "reservation-not-found",
    );
    assert_problem(
        &reservation_http::get_reservation(&service.store, &get(Some("owner"), "not-a-uuid")).await,
        StatusCode::BAD_REQUEST,
        "invalid-reservation-id",
    );
    assert_problem(
        &reservation_http::get_reservation(&service.store, &get(None, &id)).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    );
}

fn put(user: &str, groups: &[&str], id: &str, body: &str) -> Request {
    request(
        Method::PUT,
        &format!("/sales/{id}"),
        &[("saleId", id)],
        Some((user, groups)),
        &[],
        body,
    )
}

const SALE_BODY: &str = r#"{"name":"Drop","total_stock":100,"shards":4,"per_user_limit":1,"price":{"amount_minor":1999,"currency":"USD"},"starts_at":"2027-06-01T10:00:00Z","ends_at":"2027-06-01T12:00:00Z"}"#;

#[tokio::test]
async fn admins_create_and_top_up_sales_and_buyers_cannot() {
    let service = service_with(&[]).await;
    let (catalog, stock, clock) = (&service.catalog, &service.stock, &service.clock);

    assert_problem(
        &sale_http::put_sale(catalog, stock, clock, &put("buyer", &[], "new", SALE_BODY)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );

    let created = sale_http::put_sale(
        catalog,
        stock,
        clock,
        &put("ops", &["admin"], "new", SALE_BODY),
    )
    .await;
    assert_eq!(
        created.status(),
        StatusCode::CREATED,
        "{:?}",
        created.body()
    );
    let body = json_of(&created);
    assert_eq!(
        (
            body["total_stock"].as_u64(),
            body["available"].as_i64(),
            body["status"].as_str()
        ),
        (Some(100), Some(100), Some("upcoming"))
    );

    // A top-up grows the stock in the engine too; shrinking or re-sharding is refused.
    let more = SALE_BODY.replace("\"total_stock\":100", "\"total_stock\":150");
    let updated =
        sale_http::put_sale(catalog, stock, clock, &put("ops", &["admin"], "new", &more)).await;
    assert_eq!(updated.status(), StatusCode::OK);
    assert_eq!(json_of(&updated)["available"], 150);
    let fewer = SALE_BODY.replace("\"total_stock\":100", "\"total_stock\":10");
    assert_problem(
        &sale_http::put_sale(
            catalog,
            stock,
            clock,
            &put("ops", &["admin"], "new", &fewer),
        )
        .await,
        StatusCode::CONFLICT,
        "sale-conflict",
    );
    let resharded = more.replace("\"shards\":4", "\"shards\":8");
    assert_problem(
        &sale_http::put_sale(
            catalog,
            stock,
            clock,
            &put("ops", &["admin"], "new", &resharded),
        )
        .await,
        StatusCode::CONFLICT,
        "sale-conflict",
    );

    // Bad bodies.
    for (body, status, slug) in [
        ("{", StatusCode::BAD_REQUEST, "malformed-body"),
        (
            r#"{"total_stock":1}"#,
            StatusCode::BAD_REQUEST,
            "malformed-body",
        ),
        (
            &SALE_BODY.replace("\"name\"", "\"nmae\"") as &str,
            StatusCode::BAD_REQUEST,
            "malformed-body",
        ),
        (
            &SALE_BODY.replace("USD", "usd"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-sale",
        ),
        (
            &SALE_BODY.replace("2027-06-01T12:00:00Z", "2027-05-01T12:00:00Z"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-sale",
        ),
        (
            &SALE_BODY.replace("\"per_user_limit\":1", "\"per_user_limit\":0"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-sale",
        ),
        (
            &SALE_BODY.replace("\"total_stock\":100", "\"total_stock\":-5"),
            StatusCode::BAD_REQUEST,
            "malformed-body",
        ),
    ] {
        let r = sale_http::put_sale(
            catalog,
            stock,
            clock,
            &put("ops", &["admin"], "other", body),
        )
        .await;
        assert_problem(&r, status, slug);
    }
}

#[tokio::test]
async fn the_public_sale_view_shows_status_and_approximate_availability() {
    let service = service_with(&[sale("drop", 1, 1)]).await;
    let get = request(
        Method::GET,
        "/sales/drop",
        &[("saleId", "drop")],
        None,
        &[],
        "",
    );
    let view = sale_http::get_sale(&service.catalog, &service.stock, &service.clock, &get).await;
    assert_eq!(view.status(), StatusCode::OK);
    let body = json_of(&view);
    assert_eq!(
        (
            body["status"].as_str(),
            body["available"].as_i64(),
            body["available_is_approximate"].as_bool()
        ),
        (Some("open"), Some(1), Some(true))
    );
    reservation_http::reserve(&service, &reserve_request("drop", Some("a"), Some("k"), "")).await;
    let view = sale_http::get_sale(&service.catalog, &service.stock, &service.clock, &get).await;
    assert_eq!(json_of(&view)["status"], "sold_out");
    let missing = request(
        Method::GET,
        "/sales/none",
        &[("saleId", "none")],
        None,
        &[],
        "",
    );
    assert_problem(
        &sale_http::get_sale(&service.catalog, &service.stock, &service.clock, &missing).await,
        StatusCode::NOT_FOUND,
        "sale-not-found",
    );
}

// ---- The waiting room (seed flow 8) ----

mod waiting_room {
    use super::*;
    use flashsale_core::sale::SaleCatalog;
    use flashsale_core::waiting_room::http as room_http;
    use flashsale_core::waiting_room::memory::MemoryQueueStore;
    use flashsale_core::waiting_room::room::WaitingRoom;
    use flashsale_core::waiting_room::ticket::TicketKey;
    use flashsale_core::waiting_room::{RoomMode, RoomSettings};
    use sha2::{Digest, Sha256};

    type Room = WaitingRoom<MemoryQueueStore, InMemorySaleCatalog, ManualClock>;

    /// A reserve service with `sales`, and a room over the same catalog and clock.
    async fn with_room(sales: &[Sale]) -> (Service, Room) {
        let service = service_with(sales).await;
        let room = WaitingRoom {
            store: MemoryQueueStore::new(),
            catalog: service.catalog.clone(),
            key: TicketKey::new(b"handler tests' ticket key, 32 bytes and more").unwrap(),
            clock: service.clock.clone(),
        };
        (service, room)
    }

    fn room_sale(id: &str, settings: RoomSettings) -> Sale {
        OpenSale::new(SaleId::parse(id).unwrap(), 10)
            .waiting_room(settings)
            .at(Timestamp::from_millis(NOW))
    }

    fn slow_room() -> RoomSettings {
        RoomSettings {
            drain_per_sec: 1,
            ..RoomSettings::with_defaults(RoomMode::Always)
        }
    }

    fn join(sale: &str, user: Option<&str>) -> Request {
        request(
            Method::POST,
            &format!("/sales/{}/queue", sale.replace(' ', "%20")),
            &[("saleId", sale)],
            user.map(|u| (u, &[][..])),
            &[],
            "",
        )
    }

    fn with_ticket(sale: &str, user: &str, key: &str, ticket: Option<&str>) -> Request {
        let mut headers = vec![("Idempotency-Key", key)];
        if let Some(ticket) = ticket {
            headers.push(("Queue-Ticket", ticket));
        }
        request(
            Method::POST,
            &format!("/sales/{sale}/reservations"),
            &[("saleId", sale)],
            Some((user, &[][..])),
            &headers,
            "",
        )
    }

    async fn join_ok(
        room: &Room,
        limiter: &InMemoryRateLimiter<ManualClock>,
        sale: &str,
        user: &str,
    ) -> Value {
        let r = room_http::join(
            room,
            limiter,
            room_http::default_join_policy(),
            &join(sale, Some(user)),
        )
        .await;
        assert!(r.status().is_success(), "{:?}", r.body());
        json_of(&r)
    }

    /// Reserve as the reserve function runs it: the room's gate, then the handler.
    async fn reserve(service: &Service, room: &Room, request: Request) -> Response<Body> {
        let sale = SaleId::parse(request.uri().path().split('/').nth(2).unwrap()).unwrap();
        match room_http::gate(room, &request, &sale).await {
            Err(refused) => refused,
            Ok(()) => reservation_http::reserve(service, &request).await,
        }
    }

    #[tokio::test]
    async fn a_buyer_joins_once_and_reserves_with_its_ticket_once_admitted() {
        let (service, room) = with_room(&[room_sale("roomy", slow_room())]).await;
        let limiter = InMemoryRateLimiter::new(service.clock.clone());

        let first = room_http::join(
            &room,
            &limiter,
            room_http::default_join_policy(),
            &join("roomy", Some("ann")),
        )
        .await;
        assert_eq!(first.status(), StatusCode::CREATED);
        assert!(first.headers().contains_key("x-ratelimit-remaining"));
        let ann = json_of(&first);
        assert_eq!(
            (ann["position"].as_u64(), ann["state"].as_str()),
            (Some(1), Some("admitted"))
        );
        let bob = join_ok(&room, &limiter, "roomy", "bob").await;
        assert_eq!(
            (
                bob["position"].as_u64(),
                bob["state"].as_str(),
                bob["estimated_wait_seconds"].as_u64()
            ),
            (Some(2), Some("waiting"), Some(1))
        );
        assert_eq!(bob["status_url"], "/sales/roomy/queue");
        // Joining again: the same place, 200.
        let again = room_http::join(
            &room,
            &limiter,
            room_http::default_join_policy(),
            &join("roomy", Some("ann")),
        )
        .await;
        assert_eq!(again.status(), StatusCode::OK);
        assert_eq!(json_of(&again)["position"], 1);
        assert_eq!(json_of(&again)["rejoined"], true);

        let (ann_ticket, bob_ticket) = (
            ann["ticket"].as_str().unwrap(),
            bob["ticket"].as_str().unwrap(),
        );
        // Without a ticket: sent to the queue.
        let refused = reserve(&service, &room, with_ticket("roomy", "cat", "k-cat", None)).await;
        assert_problem(&refused, StatusCode::FORBIDDEN, "queue-required");
        assert_eq!(json_of(&refused)["queue"], "/sales/roomy/queue");
        // Someone else's ticket, garbage: refused.
        assert_problem(
            &reserve(
                &service,
                &room,
                with_ticket("roomy", "cat", "k-cat", Some(ann_ticket)),
            )
            .await,
            StatusCode::FORBIDDEN,
            "invalid-queue-ticket",
        );
        assert_problem(
            &reserve(
                &service,
                &room,
                with_ticket("roomy", "cat", "k-cat", Some("not.a.ticket")),
            )
            .await,
            StatusCode::FORBIDDEN,
            "invalid-queue-ticket",
        );
        // Bob is not admitted yet: 403 with Retry-After.
        let early = reserve(
            &service,
            &room,
            with_ticket("roomy", "bob", "k-bob", Some(bob_ticket)),
        )
        .await;
        assert_problem(&early, StatusCode::FORBIDDEN, "not-admitted-yet");
        assert_eq!(early.headers()["retry-after"], "1");
        // Ann is: her reservation is made.
        let made = reserve(
            &service,
            &room,
            with_ticket("roomy", "ann", "k-ann", Some(ann_ticket)),
        )
        .await;
        assert_eq!(made.status(), StatusCode::CREATED, "{:?}", made.body());
        // A second later, Bob is too.
        service.clock.advance(Duration::from_secs(1));
        let made = reserve(
            &service,
            &room,
            with_ticket("roomy", "bob", "k-bob", Some(bob_ticket)),
        )
        .await;
        assert_eq!(made.status(), StatusCode::CREATED, "{:?}", made.body());
        // After the admission window (300 s): expired.
        service.clock.advance(Duration::from_secs(300));
        assert_problem(
            &reserve(
                &service,
                &room,
                with_ticket("roomy", "bob", "k-bob2", Some(bob_ticket)),
            )
            .await,
            StatusCode::FORBIDDEN,
            "queue-ticket-expired",
        );
        // A sale without a room takes no ticket.
        let (service, room) = with_room(&[sale("plain", 10, 1)]).await;
        let made = reserve(&service, &room, with_ticket("plain", "dan", "k-dan", None)).await;
        assert_eq!(made.status(), StatusCode::CREATED);
    }

    #[tokio::test]
    async fn joins_that_cannot_be_served_get_clear_problems() {
        let late = OpenSale::new(SaleId::parse("later").unwrap(), 10)
            .waiting_room(slow_room())
            .opened_ago(Duration::ZERO)
            .at(Timestamp::from_millis(NOW + 3_600_000));
        let soon = OpenSale::new(SaleId::parse("soon").unwrap(), 10)
            .waiting_room(slow_room())
            .at(Timestamp::from_millis(NOW + 600_000));
        let tiny = room_sale(
            "tiny",
            RoomSettings {
                max_queue: 1,
                ..slow_room()
            },
        );
        let (service, room) = with_room(&[sale("plain", 10, 1), late, soon, tiny]).await;
        let limiter = InMemoryRateLimiter::new(service.clock.clone());
        let policy = room_http::default_join_policy();

        assert_problem(
            &room_http::join(&room, &limiter, policy, &join("plain", Some("a"))).await,
            StatusCode::CONFLICT,
            "no-waiting-room",
        );
        assert_problem(
            &room_http::join(&room, &limiter, policy, &join("nope", Some("a"))).await,
            StatusCode::NOT_FOUND,
            "sale-not-found",
        );
        assert_problem(
            &room_http::join(&room, &limiter, policy, &join("tiny", None)).await,
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
        );
        assert_problem(
            &room_http::join(&room, &limiter, policy, &join("bad id!", Some("a"))).await,
            StatusCode::BAD_REQUEST,
            "invalid-sale-id",
        );
        // An hour before the opening, the queue (30 minutes of pre-queue) is not open yet.
        assert_problem(
            &room_http::join(&room, &limiter, policy, &join("later", Some("a"))).await,
            StatusCode::CONFLICT,
            "queue-not-open",
        );
        // Ten minutes before: the pre-queue, 202, come back at the opening.
        let pre = room_http::join(&room, &limiter, policy, &join("soon", Some("b"))).await;
        assert_eq!(pre.status(), StatusCode::ACCEPTED);
        // The fixture opens 60 s before the time it is built at: 540 s from now.
        assert_eq!(pre.headers()["retry-after"], "540");
        let body = json_of(&pre);
        assert_eq!(
            (body["state"].as_str(), body["pre_queue_size"].as_u64()),
            (Some("pre_queue"), Some(1))
        );
        assert_eq!(body["seed_commitment"].as_str().map(str::len), Some(64));
        // One admitted at once, one waiting: the third finds the queue full.
        join_ok(&room, &limiter, "tiny", "c1").await;
        join_ok(&room, &limiter, "tiny", "c2").await;
        let full = room_http::join(&room, &limiter, policy, &join("tiny", Some("c3"))).await;
        assert_problem(&full, StatusCode::SERVICE_UNAVAILABLE, "queue-full");
        assert!(full.headers().contains_key("retry-after"));
        // A buyer hammering join: its bucket (5 at once) runs dry.
        for _ in 0..4 {
            join_ok(&room, &limiter, "tiny", "c1").await;
        }
        let limited = room_http::join(&room, &limiter, policy, &join("tiny", Some("c1"))).await;
        assert_problem(&limited, StatusCode::TOO_MANY_REQUESTS, "rate-limited");
        assert!(limited.headers().contains_key("retry-after"));
        // An ended sale.
        service.clock.advance(Duration::from_secs(7200));
        assert_problem(
            &room_http::join(&room, &limiter, policy, &join("tiny", Some("c4"))).await,
            StatusCode::CONFLICT,
            "sale-ended",
        );
    }

    fn join_with(sale: &str, user: &str, ticket: &str) -> Request {
        request(
            Method::POST,
            &format!("/sales/{sale}/queue"),
            &[("saleId", sale)],
            Some((user, &[][..])),
            &[("Queue-Ticket", ticket)],
            "",
        )
    }

    #[tokio::test]
    async fn a_join_with_its_ticket_gets_the_place_back_after_the_queue_state_is_lost() {
        let (service, room) = with_room(&[room_sale("lost", slow_room())]).await;
        let limiter = InMemoryRateLimiter::new(service.clock.clone());
        for name in ["a", "b", "c"] {
            join_ok(&room, &limiter, "lost", name).await;
        }
        let c = join_ok(&room, &limiter, "lost", "c").await;
        let c_ticket = c["ticket"].as_str().unwrap();
        // The queue's state is gone (a new, empty store; same key, same sale).
        let room = WaitingRoom {
            store: MemoryQueueStore::new(),
            catalog: room.catalog.clone(),
            key: room.key.clone(),
            clock: room.clock.clone(),
        };
        let policy = room_http::default_join_policy();
        let back =
            room_http::join(&room, &limiter, policy, &join_with("lost", "c", c_ticket)).await;
        assert_eq!(back.status(), StatusCode::OK, "{:?}", back.body());
        assert_eq!(json_of(&back)["position"], 3);
        // A newcomer goes behind the restored place.
        assert_eq!(join_ok(&room, &limiter, "lost", "d").await["position"], 4);
        // Someone else's ticket on a join restores nothing: a plain join, at the back.
        let stolen =
            room_http::join(&room, &limiter, policy, &join_with("lost", "e", c_ticket)).await;
        assert_eq!(stolen.status(), StatusCode::CREATED);
        assert_eq!(json_of(&stolen)["position"], 5);
    }

    #[tokio::test]
    async fn once_the_room_takes_joins_its_settings_and_opening_are_fixed() {
        let (service, _room) = with_room(&[room_sale("fixed", slow_room())]).await;
        let (catalog, stock, clock) = (&service.catalog, &service.stock, &service.clock);
        let body = |drain: u32, starts: &str| {
            format!(
                r#"{{"name":"drop","total_stock":10,"shards":4,"per_user_limit":1,"price":{{"amount_minor":1000,"currency":"EUR"}},"starts_at":"{starts}","ends_at":"2027-01-15T09:00:00Z","waiting_room":{{"mode":"always","drain_per_sec":{drain}}}}}"#
            )
        };
        // The fixture sale opened at NOW - 60 s (2027-01-15T07:59:00Z) with a drain of 1/s.
        for (drain, starts) in [(2, "2027-01-15T07:59:00Z"), (1, "2027-01-15T08:30:00Z")] {
            let r = sale_http::put_sale(
                catalog,
                stock,
                clock,
                &put("ops", &["admin"], "fixed", &body(drain, starts)),
            )
            .await;
            assert_problem(&r, StatusCode::CONFLICT, "sale-conflict");
            assert!(json_of(&r)["detail"]
                .as_str()
                .unwrap()
                .contains("waiting room"));
        }
        // What did not time any place may change: the stock grows, the cap and window too.
        let grown = body(1, "2027-01-15T07:59:00Z")
            .replace("\"total_stock\":10", "\"total_stock\":20")
            .replace(
                "\"drain_per_sec\":1}",
                "\"drain_per_sec\":1,\"max_queue\":500,\"admission_window_seconds\":120}",
            );
        let r = sale_http::put_sale(
            catalog,
            stock,
            clock,
            &put("ops", &["admin"], "fixed", &grown),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK, "{:?}", r.body());
        assert_eq!(json_of(&r)["waiting_room"]["max_queue"], 500);
        // And the room may be switched off.
        let off = r#"{"name":"drop","total_stock":20,"shards":4,"per_user_limit":1,"price":{"amount_minor":1000,"currency":"EUR"},"starts_at":"2027-01-15T07:59:00Z","ends_at":"2027-01-15T09:00:00Z"}"#;
        let r =
            sale_http::put_sale(catalog, stock, clock, &put("ops", &["admin"], "fixed", off)).await;
        assert_eq!(r.status(), StatusCode::OK, "{:?}", r.body());
        assert!(json_of(&r).get("waiting_room").is_none());
    }

    #[tokio::test]
    async fn the_status_is_public_cacheable_and_reveals_the_seed_once_open() {
        let soon = OpenSale::new(SaleId::parse("soon").unwrap(), 10)
            .waiting_room(slow_room())
            .at(Timestamp::from_millis(NOW + 600_000));
        let (service, room) = with_room(&[soon, sale("plain", 10, 1)]).await;
        let limiter = InMemoryRateLimiter::new(service.clock.clone());
        let status = |id: &str| {
            request(
                Method::GET,
                &format!("/sales/{id}/queue"),
                &[("saleId", id)],
                None,
                &[],
                "",
            )
        };
        join_ok(&room, &limiter, "soon", "a").await;
        let before = room_http::status(&room, &status("soon")).await;
        assert_eq!(before.status(), StatusCode::OK);
        assert_eq!(before.headers()["cache-control"], "public, max-age=1");
        assert!(before.headers().contains_key("ratelimit-policy"));
        let body = json_of(&before);
        assert_eq!(
            (body["state"].as_str(), body["pre_queue_size"].as_u64()),
            (Some("pre_queue"), Some(1))
        );
        assert!(
            body.get("seed").is_none(),
            "the seed stays secret before the opening"
        );
        let commitment = body["seed_commitment"].as_str().unwrap().to_owned();

        service.clock.advance(Duration::from_secs(601));
        join_ok(&room, &limiter, "soon", "b").await;
        let body = json_of(&room_http::status(&room, &status("soon")).await);
        assert_eq!(body["state"], "open");
        assert_eq!(
            (
                body["queue_length"].as_u64(),
                body["serving_position"].as_u64()
            ),
            (Some(2), Some(2))
        );
        let seed = hex::decode(body["seed"].as_str().unwrap()).unwrap();
        assert_eq!(
            hex::encode(Sha256::digest(&seed)),
            commitment,
            "the revealed seed is the committed one"
        );

        assert_problem(
            &room_http::status(&room, &status("plain")).await,
            StatusCode::CONFLICT,
            "no-waiting-room",
        );
        assert_problem(
            &room_http::status(&room, &status("nope")).await,
            StatusCode::NOT_FOUND,
            "sale-not-found",
        );
    }

    #[tokio::test]
    async fn admins_turn_the_room_on_with_checked_settings() {
        let service = service_with(&[]).await;
        let (catalog, stock, clock) = (&service.catalog, &service.stock, &service.clock);
        // SALE_BODY with a `waiting_room` member before its closing brace.
        let with_room = |room: &str| {
            format!(
                "{},\"waiting_room\":{room}}}",
                &SALE_BODY[..SALE_BODY.len() - 1]
            )
        };
        for (room, slug) in [
            (r#"{"mode":"sometimes"}"#, "invalid-sale"),
            (r#"{"mode":"threshold"}"#, "invalid-sale"),
            (
                r#"{"mode":"always","straight_in_per_sec":5}"#,
                "invalid-sale",
            ),
            (r#"{"mode":"always","drain_per_sec":0}"#, "invalid-sale"),
            (
                r#"{"mode":"always","admission_window_seconds":5}"#,
                "invalid-sale",
            ),
            (
                r#"{"mode":"always","max_no_show_boost_percent":101}"#,
                "invalid-sale",
            ),
        ] {
            let r = sale_http::put_sale(
                catalog,
                stock,
                clock,
                &put("ops", &["admin"], "rm", &with_room(room)),
            )
            .await;
            assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, slug);
        }
        let r = sale_http::put_sale(
            catalog,
            stock,
            clock,
            &put(
                "ops",
                &["admin"],
                "rm",
                &with_room(r#"{"mode":"always","colour":1}"#),
            ),
        )
        .await;
        assert!(r.status().is_client_error());
        let r = sale_http::put_sale(
            catalog,
            stock,
            clock,
            &put(
                "ops",
                &["admin"],
                "rm",
                &with_room(r#"{"mode":"threshold","straight_in_per_sec":200,"max_queue":5000}"#),
            ),
        )
        .await;
        assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.body());
        let room = &json_of(&r)["waiting_room"];
        assert_eq!(
            (
                room["mode"].as_str(),
                room["straight_in_per_sec"].as_u64(),
                room["max_queue"].as_u64(),
                room["drain_per_sec"].as_u64()
            ),
            (Some("threshold"), Some(200), Some(5000), Some(10_000))
        );
        let stored = catalog
            .get(&SaleId::parse("rm").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            stored.waiting_room.unwrap().mode,
            RoomMode::Threshold {
                straight_in_per_sec: 200
            }
        );
    }
}
