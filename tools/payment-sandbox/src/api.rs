//! The Stripe API subset under `/v1`. Messages, codes and status codes follow Stripe's, so an
//! adapter that handles these handles Stripe.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use hyper::{HeaderMap, Method, Response, StatusCode};
use serde_json::{json, Map, Value};

use crate::http::{bytes_response, Body, Req};
use crate::model::{card_behaviour, format_amount, CardBehaviour, Charge, Intent, Refund, Status};
use crate::params::Params;
use crate::state::{new_id, unix_now, IdempotentResult, RequestInfo, Shared, State, API_VERSION};
use crate::webhook;

/// Stripe's limit on `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// Every parameter Stripe's create-PaymentIntent endpoint knows. Those the sandbox does not
/// model are accepted and ignored; anything else is refused like Stripe refuses it, so a typo
/// in the adapter fails here instead of in production.
const CREATE_INTENT_PARAMS: &[&str] = &[
    "amount",
    "currency",
    "payment_method",
    "confirm",
    "metadata",
    "description",
    "application_fee_amount",
    "automatic_payment_methods",
    "capture_method",
    "confirmation_method",
    "confirmation_token",
    "customer",
    "error_on_requires_action",
    "expand",
    "mandate",
    "mandate_data",
    "off_session",
    "on_behalf_of",
    "payment_method_configuration",
    "payment_method_data",
    "payment_method_options",
    "payment_method_types",
    "radar_options",
    "receipt_email",
    "return_url",
    "setup_future_usage",
    "shipping",
    "statement_descriptor",
    "statement_descriptor_suffix",
    "transfer_data",
    "transfer_group",
    "use_stripe_sdk",
];
const CANCEL_PARAMS: &[&str] = &["cancellation_reason", "expand"];
const CANCELLATION_REASONS: &[&str] = &[
    "duplicate",
    "fraudulent",
    "requested_by_customer",
    "abandoned",
];
const REFUND_PARAMS: &[&str] = &[
    "payment_intent",
    "charge",
    "amount",
    "metadata",
    "reason",
    "expand",
    "currency",
    "customer",
    "instructions_email",
    "origin",
    "refund_application_fee",
    "reverse_transfer",
];
const REFUND_REASONS: &[&str] = &["duplicate", "fraudulent", "requested_by_customer"];
const RETRIEVE_PARAMS: &[&str] = &["expand", "client_secret"];
const LIST_REFUND_PARAMS: &[&str] = &[
    "payment_intent",
    "charge",
    "limit",
    "starting_after",
    "ending_before",
    "created",
    "expand",
];

/// Stripe's error object. `stored` says whether an idempotency key keeps this result: Stripe
/// stores the result of every request that started executing, but not parameter validation
/// failures (nor 401/503, which never reach an endpoint).
#[derive(Debug)]
struct StripeError {
    status: StatusCode,
    kind: &'static str,
    code: Option<&'static str>,
    decline_code: Option<&'static str>,
    message: String,
    /// `param`, `payment_intent`, `charge`, `payment_method`: whatever else the error names.
    extra: Map<String, Value>,
    stored: bool,
}

impl StripeError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            code: None,
            decline_code: None,
            message: message.into(),
            extra: Map::new(),
            stored: false,
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    fn param(self, param: &str) -> Self {
        self.with("param", json!(param))
    }

    fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_owned(), value);
        self
    }

    /// The endpoint ran: an idempotency key keeps this error.
    fn stored(mut self) -> Self {
        self.stored = true;
        self
    }

    fn body(&self) -> Value {
        let mut error = Map::new();
        error.insert("type".into(), json!(self.kind));
        if let Some(code) = self.code {
            error.insert("code".into(), json!(code));
            error.insert(
                "doc_url".into(),
                json!(format!("https://stripe.com/docs/error-codes/{code}")),
            );
        }
        if let Some(decline_code) = self.decline_code {
            error.insert("decline_code".into(), json!(decline_code));
        }
        error.insert("message".into(), json!(self.message));
        error.extend(self.extra.clone());
        json!({ "error": error })
    }
}

fn missing(param: &str) -> StripeError {
    StripeError::invalid(format!("Missing required param: {param}."))
        .code("parameter_missing")
        .param(param)
}

fn unknown_param(param: &str) -> StripeError {
    StripeError::invalid(format!("Received unknown parameter: {param}"))
        .code("parameter_unknown")
        .param(param)
}

fn no_such(object: &str, id: &str, param: &str, status: StatusCode) -> StripeError {
    let mut error = StripeError::invalid(format!("No such {object}: '{id}'"))
        .code("resource_missing")
        .param(param);
    error.status = status;
    error
}

/// The result of one `/v1` call.
struct Reply {
    status: StatusCode,
    body: Bytes,
    /// Set on an idempotent replay: the original request's id.
    replay_of: Option<String>,
    events: Vec<String>,
    /// A slow-card intent to settle after this many ms.
    settle_later: Option<(String, u64)>,
}

impl Reply {
    fn json(status: StatusCode, value: &Value) -> Self {
        Self {
            status,
            body: Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
            replay_of: None,
            events: Vec::new(),
            settle_later: None,
        }
    }

    fn error(error: &StripeError) -> Self {
        Self::json(error.status, &error.body())
    }
}

/// What an endpoint produced, before idempotency storage.
struct Outcome {
    status: StatusCode,
    body: Value,
    stored: bool,
    intent: Option<String>,
    events: Vec<String>,
    settle_later: Option<(String, u64)>,
}

impl Outcome {
    fn ok(body: Value) -> Self {
        Self {
            status: StatusCode::OK,
            body,
            stored: true,
            intent: None,
            events: Vec::new(),
            settle_later: None,
        }
    }
}

impl From<StripeError> for Outcome {
    fn from(error: StripeError) -> Self {
        Self {
            status: error.status,
            body: error.body(),
            stored: error.stored,
            intent: None,
            events: Vec::new(),
            settle_later: None,
        }
    }
}

pub async fn handle(shared: &Arc<Shared>, req: Req) -> Response<Body> {
    let started = Instant::now();
    let request_id = new_id("req");
    let key = idempotency_key(&req.headers);
    let (latency_ms, outage) = {
        let mut st = shared.lock();
        st.stats.api_calls += 1;
        let (min, max) = st.switches.latency_ms;
        // A provider that is down answers fast-ish: the lower bound of the latency range.
        let outage = st.switches.outage;
        (
            if outage {
                min
            } else {
                fastrand::u64(min..=max)
            },
            outage,
        )
    };
    tokio::time::sleep(Duration::from_millis(latency_ms)).await;

    let reply = if outage {
        shared.lock().stats.outage_rejections += 1;
        Reply::error(&StripeError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            "Stripe is temporarily unavailable (payment sandbox: outage switch is on). Please retry.",
        ))
    } else if !authorized(&req.headers, &shared.secret_key) {
        shared.lock().stats.auth_failures += 1;
        Reply::error(&StripeError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "Invalid API Key provided",
        ))
    } else {
        execute(shared, &req, &request_id, key.as_deref())
    };

    webhook::dispatch(shared, reply.events.clone());
    if let Some((id, delay_ms)) = reply.settle_later.clone() {
        let task_shared = Arc::clone(shared);
        shared.spawn(settle_slow(task_shared, id, delay_ms));
    }

    tracing::info!(
        request_id = %request_id,
        method = %req.method,
        path = %req.path,
        status = reply.status.as_u16(),
        ms = started.elapsed().as_millis() as u64,
        idempotency_key = key.as_deref().unwrap_or("-"),
        replayed = reply.replay_of.is_some(),
        "api call"
    );
    response(reply, &request_id, key.as_deref(), &req.headers)
}

fn response(
    reply: Reply,
    request_id: &str,
    key: Option<&str>,
    request_headers: &HeaderMap,
) -> Response<Body> {
    let status = reply.status;
    let mut response = bytes_response(status, reply.body);
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    set("request-id", request_id);
    let version = request_headers
        .get("stripe-version")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(API_VERSION);
    set("stripe-version", version);
    if let Some(key) = key {
        set("idempotency-key", key);
    }
    if let Some(original) = &reply.replay_of {
        set("idempotent-replayed", "true");
        set("original-request", original);
    }
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"Stripe\""),
        );
    }
    response
}

fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
}

/// `Authorization: Bearer <key>`, or HTTP Basic with the key as user name (Stripe takes both).
fn authorized(headers: &HeaderMap, secret_key: &str) -> bool {
    let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let (scheme, credentials) = value.trim().split_once(' ').unwrap_or((value, ""));
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return !credentials.is_empty() && credentials == secret_key;
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(credentials) else {
            return false;
        };
        let decoded = String::from_utf8_lossy(&decoded);
        let user = decoded.split(':').next().unwrap_or("");
        return !user.is_empty() && user == secret_key;
    }
    false
}

enum PostRoute<'a> {
    CreateIntent,
    CancelIntent(&'a str),
    CreateRefund,
}

fn execute(shared: &Shared, req: &Req, request_id: &str, key: Option<&str>) -> Reply {
    let rest = req.path.strip_prefix("/v1/").unwrap_or("");
    let segments: Vec<&str> = rest.split('/').collect();
    let params = Params::parse(req.query.as_deref(), &req.body);
    let info = RequestInfo {
        id: Some(request_id.to_owned()),
        idempotency_key: key.map(str::to_owned),
    };
    let mut st = shared.lock();
    let route = match (&req.method, segments.as_slice()) {
        (&Method::POST, ["payment_intents"]) => PostRoute::CreateIntent,
        (&Method::POST, ["payment_intents", id, "cancel"]) => PostRoute::CancelIntent(id),
        (&Method::POST, ["refunds"]) => PostRoute::CreateRefund,
        (&Method::GET, ["payment_intents", id]) => {
            return reply_of(retrieve_intent(&st, id, &params));
        }
        (&Method::GET, ["refunds"]) => return reply_of(list_refunds(&st, &params)),
        (&Method::GET, ["refunds", id]) => return reply_of(retrieve_refund(&st, id, &params)),
        _ => {
            let mut error = StripeError::invalid(format!(
                "Unrecognized request URL ({}: {}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.",
                req.method, req.path
            ));
            error.status = StatusCode::NOT_FOUND;
            return Reply::error(&error);
        }
    };

    if let Some(key) = key {
        if key.len() > MAX_IDEMPOTENCY_KEY_LEN {
            return Reply::error(&StripeError::invalid(format!(
                "Invalid Idempotency-Key: keys can be at most {MAX_IDEMPOTENCY_KEY_LEN} characters long."
            )));
        }
        if let Some(reply) = replay(&mut st, &shared.secret_key, key, req, &params) {
            return reply;
        }
    }

    let outcome = match route {
        PostRoute::CreateIntent => create_intent(&mut st, &params, &info),
        PostRoute::CancelIntent(id) => cancel_intent(&mut st, id, &params, &info),
        PostRoute::CreateRefund => create_refund(&mut st, &params, &info),
    };
    let body = Bytes::from(serde_json::to_vec(&outcome.body).unwrap_or_default());
    if let (Some(key), true) = (key, outcome.stored) {
        let stored = IdempotentResult {
            method: req.method.to_string(),
            path: req.path.clone(),
            params: params.canonical(),
            status: outcome.status.as_u16(),
            body: body.clone(),
            request_id: request_id.to_owned(),
            intent: outcome.intent.clone(),
            stored_at: Instant::now(),
        };
        st.store_idempotent(&shared.secret_key, key, stored);
    }
    Reply {
        status: outcome.status,
        body,
        replay_of: None,
        events: outcome.events,
        settle_later: outcome.settle_later,
    }
}

fn reply_of(result: Result<Value, StripeError>) -> Reply {
    match result {
        Ok(value) => Reply::json(StatusCode::OK, &value),
        Err(error) => Reply::error(&error),
    }
}

/// The stored answer for a reused key, or an `idempotency_error` if the key was first used
/// for another request. `None` = first use.
fn replay(st: &mut State, scope: &str, key: &str, req: &Req, params: &Params) -> Option<Reply> {
    let stored = st.idempotent(scope, key)?;
    if stored.path != req.path || stored.method != req.method.as_str() {
        let error = StripeError::new(
            StatusCode::BAD_REQUEST,
            "idempotency_error",
            format!(
                "Keys for idempotent requests can only be used for the same endpoint they were first used for ('{}' vs '{}'). Try using a key other than '{key}' if you meant to execute a different request.",
                req.path, stored.path
            ),
        );
        return Some(Reply::error(&error));
    }
    if stored.params != params.canonical() {
        let error = StripeError::new(
            StatusCode::BAD_REQUEST,
            "idempotency_error",
            format!(
                "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request."
            ),
        );
        return Some(Reply::error(&error));
    }
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let body = stored.body.clone();
    let original = stored.request_id.clone();
    let intent = stored.intent.clone();
    st.stats.idempotent_replays += 1;
    if let Some(intent) = intent.and_then(|id| st.intents.get_mut(&id)) {
        intent.create_calls += 1;
    }
    Some(Reply {
        status,
        body,
        replay_of: Some(original),
        events: Vec::new(),
        settle_later: None,
    })
}

fn positive_amount(params: &Params, name: &str) -> Result<Option<u64>, StripeError> {
    let Some(raw) = params.get(name) else {
        return Ok(None);
    };
    let amount: i64 = raw.trim().parse().map_err(|_| {
        StripeError::invalid(format!("Invalid integer: {raw}"))
            .code("parameter_invalid_integer")
            .param(name)
    })?;
    if amount < 1 {
        return Err(
            StripeError::invalid("This value must be greater than or equal to 1.")
                .code("parameter_invalid_integer")
                .param(name),
        );
    }
    Ok(u64::try_from(amount).ok())
}

fn currency(params: &Params) -> Result<String, StripeError> {
    let raw = params.get("currency").ok_or_else(|| missing("currency"))?;
    let currency = raw.trim().to_ascii_lowercase();
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_lowercase()) {
        return Err(StripeError::invalid(format!(
            "Invalid currency: {raw}. Stripe currently supports these currencies: usd, eur, gbp, ... (three-letter ISO codes, lowercase)."
        ))
        .param("currency"));
    }
    Ok(currency)
}

fn boolean(params: &Params, name: &str) -> Result<Option<bool>, StripeError> {
    match params.get(name) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(other) => Err(StripeError::invalid(format!("Invalid boolean: {other}")).param(name)),
    }
}

fn one_of(params: &Params, name: &str, allowed: &[&str]) -> Result<Option<String>, StripeError> {
    match params.get(name) {
        None | Some("") => Ok(None),
        Some(value) if allowed.contains(&value) => Ok(Some(value.to_owned())),
        Some(value) => Err(StripeError::invalid(format!(
            "Invalid {name}: must be one of {}; got '{value}'",
            allowed.join(", ")
        ))
        .param(name)),
    }
}

fn create_intent(st: &mut State, params: &Params, info: &RequestInfo) -> Outcome {
    match try_create_intent(st, params, info) {
        Ok(outcome) => outcome,
        Err(error) => error.into(),
    }
}

fn try_create_intent(
    st: &mut State,
    params: &Params,
    info: &RequestInfo,
) -> Result<Outcome, StripeError> {
    if let Some(name) = params.unknown(CREATE_INTENT_PARAMS) {
        return Err(unknown_param(name));
    }
    let amount = positive_amount(params, "amount")?.ok_or_else(|| missing("amount"))?;
    let currency = currency(params)?;
    let confirm = boolean(params, "confirm")?.unwrap_or(false);
    if params
        .get("capture_method")
        .is_some_and(|m| m != "automatic")
    {
        return Err(StripeError::invalid(
            "The payment sandbox only supports capture_method=automatic.",
        )
        .param("capture_method"));
    }
    let payment_method = params
        .get("payment_method")
        .filter(|pm| !pm.is_empty())
        .map(str::to_owned);
    let behaviour = match &payment_method {
        Some(pm) => Some(card_behaviour(pm).ok_or_else(|| {
            no_such(
                "PaymentMethod",
                pm,
                "payment_method",
                StatusCode::BAD_REQUEST,
            )
        })?),
        None => None,
    };
    let behaviour = match (confirm, behaviour) {
        (true, None) => return Err(missing("payment_method")),
        (true, Some(b)) => Some(b),
        (false, _) => None,
    };

    let id = new_id("pi");
    let secret_suffix = new_id("secret");
    let now = unix_now();
    let mut intent = Intent {
        id: id.clone(),
        seq: st.next_seq(),
        client_secret: format!("{id}_{secret_suffix}"),
        amount,
        currency,
        status: if payment_method.is_some() {
            Status::RequiresConfirmation
        } else {
            Status::RequiresPaymentMethod
        },
        payment_method: payment_method.clone(),
        metadata: params.map("metadata"),
        description: params.get("description").map(str::to_owned),
        charge: None,
        last_payment_error: None,
        created: now,
        canceled_at: None,
        cancellation_reason: None,
        amount_refunded: 0,
        create_calls: 1,
    };
    st.stats.payment_intents += 1;

    let pm = payment_method.unwrap_or_default();
    let mut outcome = Outcome::ok(Value::Null);
    outcome.intent = Some(id.clone());
    match behaviour {
        None => {}
        Some(CardBehaviour::Succeed) => {
            intent.status = Status::Succeeded;
            intent.charge = Some(new_charge("succeeded", now, &pm));
            st.stats.succeeded += 1;
            let charge = intent.charge_json().unwrap_or_default();
            outcome
                .events
                .push(st.emit("charge.succeeded", charge, &id, info));
            outcome
                .events
                .push(st.emit("payment_intent.succeeded", intent.to_json(), &id, info));
        }
        Some(CardBehaviour::Decline {
            decline_code,
            message,
        }) => {
            let mut charge = new_charge("failed", now, &pm);
            charge.failure_code = Some("card_declined");
            charge.failure_message = Some(message);
            let charge_id = charge.id.clone();
            let pm_object = json!({"id": pm, "object": "payment_method", "type": "card"});
            intent.charge = Some(charge);
            intent.status = Status::RequiresPaymentMethod;
            // Stripe detaches a failed payment method; it lives on in last_payment_error.
            intent.payment_method = None;
            intent.last_payment_error = Some(json!({
                "charge": charge_id,
                "code": "card_declined",
                "decline_code": decline_code,
                "doc_url": "https://stripe.com/docs/error-codes/card-declined",
                "message": message,
                "payment_method": pm_object,
                "type": "card_error",
            }));
            st.stats.declined += 1;
            let charge_json = intent.charge_json().unwrap_or_default();
            outcome
                .events
                .push(st.emit("charge.failed", charge_json, &id, info));
            outcome.events.push(st.emit(
                "payment_intent.payment_failed",
                intent.to_json(),
                &id,
                info,
            ));
            let mut error = StripeError::new(StatusCode::PAYMENT_REQUIRED, "card_error", message)
                .code("card_declined")
                .with("charge", json!(charge_id))
                .with("payment_intent", intent.to_json())
                .with("payment_method", pm_object);
            error.decline_code = Some(decline_code);
            let declined = Outcome::from(error.stored());
            outcome.status = declined.status;
            outcome.body = declined.body;
        }
        Some(CardBehaviour::Slow) => {
            intent.status = Status::Processing;
            intent.charge = Some(new_charge("pending", now, &pm));
            outcome
                .events
                .push(st.emit("payment_intent.processing", intent.to_json(), &id, info));
            outcome.settle_later = Some((id.clone(), st.switches.slow_ms));
        }
    }
    if outcome.status == StatusCode::OK {
        outcome.body = intent.to_json();
    }
    st.intents.insert(id, intent);
    Ok(outcome)
}

fn new_charge(status: &'static str, created: i64, payment_method: &str) -> Charge {
    Charge {
        id: new_id("ch"),
        status,
        created,
        payment_method: payment_method.to_owned(),
        failure_code: None,
        failure_message: None,
    }
}

/// The slow card settles: `processing` -> `succeeded`, unless it was canceled meanwhile.
async fn settle_slow(shared: Arc<Shared>, id: String, delay_ms: u64) {
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    let events = {
        let mut st = shared.lock();
        let Some(intent) = st.intents.get_mut(&id) else {
            return;
        };
        if intent.status != Status::Processing {
            return;
        }
        intent.status = Status::Succeeded;
        if let Some(charge) = intent.charge.as_mut() {
            charge.status = "succeeded";
        }
        let charge = intent.charge_json().unwrap_or_default();
        let pi = intent.to_json();
        st.stats.succeeded += 1;
        // Stripe sets `request` to null for transitions no API call caused.
        let info = RequestInfo::default();
        vec![
            st.emit("charge.succeeded", charge, &id, &info),
            st.emit("payment_intent.succeeded", pi, &id, &info),
        ]
    };
    tracing::info!(payment_intent = %id, "slow card settled: succeeded");
    webhook::dispatch(&shared, events);
}

fn cancel_intent(st: &mut State, id: &str, params: &Params, info: &RequestInfo) -> Outcome {
    match try_cancel_intent(st, id, params, info) {
        Ok(outcome) => outcome,
        Err(error) => error.into(),
    }
}

fn try_cancel_intent(
    st: &mut State,
    id: &str,
    params: &Params,
    info: &RequestInfo,
) -> Result<Outcome, StripeError> {
    if let Some(name) = params.unknown(CANCEL_PARAMS) {
        return Err(unknown_param(name));
    }
    let reason = one_of(params, "cancellation_reason", CANCELLATION_REASONS)?;
    let Some(intent) = st.intents.get_mut(id) else {
        return Err(no_such(
            "payment_intent",
            id,
            "intent",
            StatusCode::NOT_FOUND,
        ));
    };
    if !intent.status.cancelable() {
        let status = intent.status.as_str();
        return Err(StripeError::invalid(format!(
            "You cannot cancel this PaymentIntent because it has a status of {status}. Only a PaymentIntent with one of the following statuses may be canceled: requires_payment_method, requires_capture, requires_confirmation, requires_action, processing."
        ))
        .code("payment_intent_unexpected_state")
        .with("payment_intent", intent.to_json())
        .stored());
    }
    intent.status = Status::Canceled;
    intent.canceled_at = Some(unix_now());
    intent.cancellation_reason = reason;
    // The slow card's pending charge never completes once its intent is canceled.
    if let Some(charge) = intent.charge.as_mut().filter(|c| c.status == "pending") {
        charge.status = "failed";
    }
    let body = intent.to_json();
    st.stats.canceled += 1;
    let mut outcome = Outcome::ok(body.clone());
    outcome
        .events
        .push(st.emit("payment_intent.canceled", body, id, info));
    Ok(outcome)
}

fn create_refund(st: &mut State, params: &Params, info: &RequestInfo) -> Outcome {
    match try_create_refund(st, params, info) {
        Ok(outcome) => outcome,
        Err(error) => error.into(),
    }
}

fn try_create_refund(
    st: &mut State,
    params: &Params,
    info: &RequestInfo,
) -> Result<Outcome, StripeError> {
    if let Some(name) = params.unknown(REFUND_PARAMS) {
        return Err(unknown_param(name));
    }
    let requested = positive_amount(params, "amount")?;
    let reason = one_of(params, "reason", REFUND_REASONS)?;
    let pi_id = match (params.get("payment_intent"), params.get("charge")) {
        (Some(pi), _) if !pi.is_empty() => pi.to_owned(),
        (_, Some(ch)) if !ch.is_empty() => st
            .intents
            .values()
            .find(|i| i.charge.as_ref().is_some_and(|c| c.id == ch))
            .map(|i| i.id.clone())
            .ok_or_else(|| no_such("charge", ch, "charge", StatusCode::BAD_REQUEST))?,
        _ => {
            return Err(StripeError::invalid(
                "One of the following params should be provided for this request: payment_intent or charge.",
            )
            .code("parameter_missing"))
        }
    };
    let Some(intent) = st.intents.get_mut(&pi_id) else {
        return Err(no_such(
            "payment_intent",
            &pi_id,
            "payment_intent",
            StatusCode::BAD_REQUEST,
        ));
    };
    let charge_id = match (&intent.charge, intent.status) {
        (Some(charge), Status::Succeeded) => charge.id.clone(),
        _ => {
            return Err(StripeError::invalid(format!(
                "This PaymentIntent ({pi_id}) does not have a successful charge to refund."
            ))
            .code("payment_intent_unexpected_state")
            .with("payment_intent", intent.to_json())
            .stored())
        }
    };
    let remaining = intent.amount.saturating_sub(intent.amount_refunded);
    if remaining == 0 {
        return Err(
            StripeError::invalid(format!("Charge {charge_id} has already been refunded."))
                .code("charge_already_refunded")
                .with("charge", json!(charge_id))
                .stored(),
        );
    }
    let amount = requested.unwrap_or(remaining);
    if amount > remaining {
        return Err(StripeError::invalid(format!(
            "Refund amount ({}) is greater than unrefunded amount on charge ({})",
            format_amount(amount, &intent.currency),
            format_amount(remaining, &intent.currency)
        ))
        .code("charge_already_refunded")
        .param("amount")
        .with("charge", json!(charge_id))
        .stored());
    }
    intent.amount_refunded += amount;
    let currency = intent.currency.clone();
    let charge_json = intent.charge_json().unwrap_or_default();
    let refund = Refund {
        id: new_id("re"),
        seq: st.next_seq(),
        amount,
        currency,
        payment_intent: pi_id.clone(),
        charge: charge_id,
        created: unix_now(),
        metadata: params.map("metadata"),
        reason,
    };
    let body = refund.to_json();
    st.refunds.push(refund);
    st.stats.refunds += 1;
    let mut outcome = Outcome::ok(body.clone());
    outcome
        .events
        .push(st.emit("charge.refunded", charge_json, &pi_id, info));
    outcome
        .events
        .push(st.emit("refund.created", body, &pi_id, info));
    Ok(outcome)
}

fn retrieve_intent(st: &State, id: &str, params: &Params) -> Result<Value, StripeError> {
    if let Some(name) = params.unknown(RETRIEVE_PARAMS) {
        return Err(unknown_param(name));
    }
    st.intents
        .get(id)
        .map(Intent::to_json)
        .ok_or_else(|| no_such("payment_intent", id, "intent", StatusCode::NOT_FOUND))
}

fn retrieve_refund(st: &State, id: &str, params: &Params) -> Result<Value, StripeError> {
    if let Some(name) = params.unknown(RETRIEVE_PARAMS) {
        return Err(unknown_param(name));
    }
    st.refunds
        .iter()
        .find(|r| r.id == id)
        .map(Refund::to_json)
        .ok_or_else(|| no_such("refund", id, "id", StatusCode::NOT_FOUND))
}

/// Newest first, like every Stripe list; `limit` 1..=100 (default 10) and `starting_after`.
fn list_refunds(st: &State, params: &Params) -> Result<Value, StripeError> {
    if let Some(name) = params.unknown(LIST_REFUND_PARAMS) {
        return Err(unknown_param(name));
    }
    let limit = match params.get("limit") {
        None => 10,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n @ 1..=100) => n,
            _ => {
                return Err(StripeError::invalid(format!(
                    "Invalid limit: must be an integer between 1 and 100, got '{raw}'"
                ))
                .param("limit"))
            }
        },
    };
    let mut refunds: Vec<&Refund> = st
        .refunds
        .iter()
        .filter(|r| {
            params
                .get("payment_intent")
                .is_none_or(|pi| r.payment_intent == pi)
        })
        .filter(|r| params.get("charge").is_none_or(|ch| r.charge == ch))
        .collect();
    refunds.sort_by_key(|r| std::cmp::Reverse(r.seq));
    if let Some(after) = params.get("starting_after") {
        let Some(position) = refunds.iter().position(|r| r.id == after) else {
            return Err(no_such(
                "refund",
                after,
                "starting_after",
                StatusCode::BAD_REQUEST,
            ));
        };
        refunds.drain(..=position);
    }
    let has_more = refunds.len() > limit;
    let data: Vec<Value> = refunds.iter().take(limit).map(|r| r.to_json()).collect();
    Ok(json!({
        "object": "list",
        "data": data,
        "has_more": has_more,
        "url": "/v1/refunds",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn bearer_and_basic_auth() {
        let key = "sk_test_x";
        assert!(authorized(&headers("Bearer sk_test_x"), key));
        assert!(authorized(&headers("bearer sk_test_x"), key));
        let basic = base64::engine::general_purpose::STANDARD.encode("sk_test_x:");
        assert!(authorized(&headers(&format!("Basic {basic}")), key));
        assert!(!authorized(&headers("Bearer sk_test_y"), key));
        assert!(!authorized(&headers("Bearer "), key));
        assert!(!authorized(&headers("Basic !!!"), key));
        assert!(!authorized(&HeaderMap::new(), key));
    }

    #[test]
    fn error_body_has_stripe_shape() {
        let body = missing("amount").body();
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["code"], "parameter_missing");
        assert_eq!(body["error"]["param"], "amount");
        assert_eq!(body["error"]["message"], "Missing required param: amount.");
    }
}
