//! The admins' view of the bot defence's blocks (admins only; the authorizer already keeps
//! buyers off `/admin/*`, and each handler checks the group again):
//!
//! - `GET /admin/bot/blocks?limit=N` → 200 `{"blocks": [{"subject": {"kind": "buyer" |
//!   "address", "id": ...}, "label": "buyer:<id>", "reason": "challenge-failed", "remainingSeconds":
//!   3412}], "total": 7}`, longest remaining first, at most `limit` (default
//!   [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]); `total` counts them all.
//! - `DELETE /admin/bot/blocks?subject=<label>` (`buyer:<id>` or `address:<ip or /64>`, the
//!   `label` of a listed block, URL-encoded) → 204; 404 `block-not-found` when there is none.
//!
//! Errors (problem+json): 400 `invalid-limit` / `invalid-subject`, 403 for a non-admin, 503
//! `dependency-unavailable` with `Retry-After` when Redis does not answer.

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;

use super::watchlist::{Block, Subject, Watchlist};
use crate::domain::Clock;
use crate::http::request::{admin_of, bad_request};
use crate::http::{json, problems, Problem};

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

#[derive(Serialize)]
struct ListedBlock<'a> {
    #[serde(flatten)]
    block: &'a Block,
    /// What to pass as `subject` to lift it.
    label: String,
}

#[derive(Serialize)]
struct Listing<'a> {
    blocks: Vec<ListedBlock<'a>>,
    total: usize,
}

/// Serves both routes (one function, dispatched on the method).
pub async fn blocks<W: Watchlist, K: Clock>(
    watchlist: &W,
    clock: &K,
    request: &Request,
) -> Response<Body> {
    match handle(watchlist, clock, request).await {
        Ok(response) => response,
        Err(problem) => problem.into_response(),
    }
}

async fn handle<W: Watchlist, K: Clock>(
    watchlist: &W,
    clock: &K,
    request: &Request,
) -> Result<Response<Body>, Problem> {
    let identity = admin_of(request, "The bot defence's blocks are for the admin group.")?;
    let query = request.query_string_parameters_ref();
    let param = |name: &str| query.and_then(|q| q.first(name)).map(str::to_owned);
    let unavailable = |error: super::watchlist::WatchlistError| {
        tracing::error!(%error, "watchlist unavailable");
        problems::dependency_unavailable("The block list could not be read or changed.")
    };
    match *request.method() {
        Method::GET => {
            let limit = match param("limit") {
                None => DEFAULT_LIMIT,
                Some(raw) => raw
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        bad_request(
                            "invalid-limit",
                            "Invalid limit",
                            format!("limit must be a whole number from 1 to {MAX_LIMIT}."),
                        )
                    })?,
            };
            let list = watchlist
                .active_blocks(clock.now(), limit)
                .await
                .map_err(unavailable)?;
            let listing = Listing {
                blocks: list
                    .blocks
                    .iter()
                    .map(|block| ListedBlock {
                        block,
                        label: block.subject.label(),
                    })
                    .collect(),
                total: list.total,
            };
            Ok(json(StatusCode::OK, &listing))
        }
        Method::DELETE => {
            let subject = param("subject")
                .as_deref()
                .and_then(Subject::parse_label)
                .ok_or_else(|| {
                    bad_request(
                        "invalid-subject",
                        "Invalid subject",
                        "subject must be `buyer:<user id>` or `address:<address>`, as listed.",
                    )
                })?;
            let lifted = watchlist.lift(&subject).await.map_err(unavailable)?;
            tracing::info!(subject = %subject.label(), admin = %identity.user_id, lifted, "block lift requested");
            if lifted {
                Ok(Response::builder()
                    .status(StatusCode::NO_CONTENT)
                    .body(Body::Empty)
                    .expect("static response"))
            } else {
                Err(Problem::new(
                    StatusCode::NOT_FOUND,
                    "block-not-found",
                    "No such block",
                    format!(
                        "{} is not blocked (the block may have ended).",
                        subject.label()
                    ),
                ))
            }
        }
        _ => Err(Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            "Use GET to list blocks and DELETE to lift one.",
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::bot::watchlist::memory::InMemoryWatchlist;
    use crate::domain::{ManualClock, Timestamp, UserId};
    use crate::identity::context_for;

    fn request(method: &str, query: &[(&str, &str)], groups: &[&str]) -> Request {
        let request = lambda_http::http::Request::builder()
            .method(method)
            .uri("https://api.example/admin/bot/blocks")
            .body(Body::Empty)
            .unwrap()
            .with_request_context(context_for("ops-1", groups, "10.0.0.1"));
        let params: std::collections::HashMap<String, String> = query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        request.with_query_string_parameters(params)
    }

    async fn blocked_pair() -> (InMemoryWatchlist, ManualClock) {
        let clock = ManualClock::at(Timestamp::from_millis(1_800_000_000_000));
        let watchlist = InMemoryWatchlist::default();
        for (subject, minutes) in [
            (Subject::Buyer(UserId::parse("bot-1").unwrap()), 60),
            (Subject::Address("2001:db8:1:2::/64".into()), 30),
        ] {
            watchlist
                .block(
                    &subject,
                    "challenge-failed",
                    Duration::from_secs(minutes * 60),
                    clock.now(),
                )
                .await
                .unwrap();
        }
        (watchlist, clock)
    }

    fn body(response: &Response<Body>) -> serde_json::Value {
        serde_json::from_slice(response.body().as_ref()).unwrap()
    }

    #[tokio::test]
    async fn admins_list_blocks_longest_first_with_their_labels() {
        let (watchlist, clock) = blocked_pair().await;
        let response = blocks(&watchlist, &clock, &request("GET", &[], &["admin"])).await;
        assert_eq!(response.status(), StatusCode::OK);
        let listing = body(&response);
        assert_eq!(listing["total"], 2);
        assert_eq!(listing["blocks"][0]["label"], "buyer:bot-1");
        assert_eq!(listing["blocks"][0]["subject"]["kind"], "buyer");
        assert_eq!(listing["blocks"][0]["reason"], "challenge-failed");
        assert_eq!(listing["blocks"][0]["remainingSeconds"], 3600);
        assert_eq!(listing["blocks"][1]["label"], "address:2001:db8:1:2::/64");

        let page = blocks(
            &watchlist,
            &clock,
            &request("GET", &[("limit", "1")], &["admin"]),
        )
        .await;
        let page = body(&page);
        assert_eq!(page["blocks"].as_array().unwrap().len(), 1);
        assert_eq!(page["total"], 2);
    }

    #[tokio::test]
    async fn an_admin_lifts_a_listed_block_by_its_label_once() {
        let (watchlist, clock) = blocked_pair().await;
        let lift = || {
            request(
                "DELETE",
                &[("subject", "address:2001:db8:1:2::/64")],
                &["admin"],
            )
        };
        let response = blocks(&watchlist, &clock, &lift()).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let again = blocks(&watchlist, &clock, &lift()).await;
        assert_eq!(again.status(), StatusCode::NOT_FOUND);
        assert_eq!(body(&again)["type"], "/problems/block-not-found");
        let left = watchlist.active_blocks(clock.now(), 10).await.unwrap();
        assert_eq!(left.total, 1);
    }

    #[tokio::test]
    async fn buyers_and_bad_parameters_are_refused_with_problems() {
        let (watchlist, clock) = blocked_pair().await;
        let cases = [
            (request("GET", &[], &["buyers"]), StatusCode::FORBIDDEN),
            (
                request("DELETE", &[("subject", "buyer:bot-1")], &[]),
                StatusCode::FORBIDDEN,
            ),
            (
                request("GET", &[("limit", "0")], &["admin"]),
                StatusCode::BAD_REQUEST,
            ),
            (
                request("GET", &[("limit", "lots")], &["admin"]),
                StatusCode::BAD_REQUEST,
            ),
            (
                request("DELETE", &[("subject", "robot:x")], &["admin"]),
                StatusCode::BAD_REQUEST,
            ),
            (request("DELETE", &[], &["admin"]), StatusCode::BAD_REQUEST),
            (
                request("PUT", &[], &["admin"]),
                StatusCode::METHOD_NOT_ALLOWED,
            ),
        ];
        for (request, status) in cases {
            let response = blocks(&watchlist, &clock, &request).await;
            assert_eq!(response.status(), status, "{:?}", body(&response));
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json"
            );
        }
        // Nothing was lifted by the refused calls.
        assert_eq!(
            watchlist
                .active_blocks(clock.now(), 10)
                .await
                .unwrap()
                .total,
            2
        );
    }
}
