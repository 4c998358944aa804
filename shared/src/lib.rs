//! flashsale-core: the library every flashsale Lambda is built from.
//!
//! Layout (by domain concept; each port sits beside the adapters that implement it):
//! - [`domain`]: ids, quantities, money, and the clock port. Invalid values cannot be built.
//! - [`identity`]: who the caller is, from the API Gateway authorizer only; the local JWT
//!   authorizer and token minting that stand in for Cognito.
//! - [`sale`]: the sale catalog port (DynamoDB, and a per-instance cache), put-sale and the
//!   public view.
//! - [`reservation`]: the reserve flow ([`reservation::reserve::ReserveService`]), the
//!   reservation record's one home (its item schema and status transitions,
//!   [`reservation::item`]) and the reservation store port.
//! - [`stock`]: the stock engine port ([`stock::StockEngine`]), its Redis Lua adapter
//!   ([`stock::redis::RedisStockEngine`]) and the per-process sold-out fast path
//!   ([`stock::SoldOutCache`]).
//! - [`rate_limit`]: the token-bucket port and its Redis Lua adapter.
//! - [`bot`]: bot defence: the explainable bot score of a request, the challenge (ALTCHA or
//!   Turnstile), blocks and passes in Redis, and the admins' view of blocks.
//! - [`events`]: reservation events from the table's stream to the events queue.
//! - [`expiry`]: the scheduled cleanup of expired PENDING reservations.
//! - [`reconcile`]: hold reconciliation between Redis and DynamoDB, and the stock rebuild after a
//!   Redis loss.
//! - [`sweep`]: the scheduled run (the `expiry-cleanup` Lambda): the expiry cleanup, then per
//!   sale rebuild detection and hold reconciliation.
//! - [`payment`]: the payment provider port, its Stripe adapter, the Redis circuit breaker shared
//!   by every instance, Stripe webhook signatures, and the provider's webhook events read into
//!   provider-neutral ones.
//! - [`health`]: liveness and readiness with dependency probes.
//! - [`http`]: reading requests, JSON and `application/problem+json` answers (one catalogue of
//!   problem types) for the `lambda_http` handlers, and the outbound HTTPS client of the
//!   adapters for hosted services.
//! - [`store`]: connections to Redis (standalone or cluster) and DynamoDB, built once per
//!   cold start; the DynamoDB write helpers (retries, failure classes) and the store error.
//! - [`saga`]: the payment saga: payment intake, the workflow's task steps, webhook intake
//!   (with the Step Functions adapter of [`saga::control::SagaControl`]).
//! - [`notify`]: telling the buyer (email through SES, push through SNS) at every end of a
//!   reservation, at most once per event and channel; the buyers' push devices.
//! - [`waiting_room`]: the fair queue in front of reserve (seed flow 8): join, signed tickets,
//!   admission by time, the public status.
//! - [`config`], [`observability`], [`metrics`]: start-up configuration, JSON logs and
//!   CloudWatch embedded-metric lines.
//!
//! Generic parameters name the same port everywhere: `S` stock engine, `C` sale catalog, `K`
//! clock, `R` records (reservations or checkouts), `L` rate limiter or webhook log, `P` (and `F`,
//! the saga's refunds) a payment port (provider, or recovery in the sweep), `G` the saga's
//! workflow control, `M` repair requests, `E` event sink, `W` watchlist, `V` challenge
//! verifier, `Q` the waiting room's queue store; a Redis adapter's own `C` is its connection
//! (and a query page's `C` its cursor).

pub mod bot;
pub mod config;
pub mod domain;
pub mod events;
pub mod expiry;
pub mod health;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod notify;
pub mod observability;
pub mod payment;
pub mod rate_limit;
pub mod reconcile;
pub mod reservation;
pub mod saga;
pub mod sale;
pub mod stock;
pub mod store;
pub mod sweep;
pub mod waiting_room;
