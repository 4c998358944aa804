//! Notifications (seed 004 flows 2-4): the buyer hears of every end of a reservation.
//!
//! The events queue carries the reservations' events ([`crate::events`]); the `notifier`
//! Lambda consumes it ([`consumer::Notifier`]) and, for the three ends, tells the buyer:
//! - **confirmed** (`ReservationConfirmed`): the order, its amount and currency;
//! - **declined** (`ReservationFailed`): why, and what to do (another card);
//! - **expired** (`ReservationExpired`): that the units went back on sale.
//!
//! Channels: **email** through Amazon SES's v1 `SendEmail` ([`ses::SesMailer`]; LocalStack's
//! free edition has v1, not v2, and AWS fully supports v1, so the same code runs in both), to
//! the address the buyer's identity carried at reserve; **push** through SNS mobile push
//! ([`sns::SnsPusher`]) to every device the buyer registered ([`devices`]); a buyer without a
//! device gets email only.
//!
//! **At most once per event and channel**: the notifier claims `<event id>#<channel>` in the
//! notifications log ([`NotificationLog`], a conditional put in DynamoDB) with a lease, marks
//! it *attempted* right before calling the provider, and *sent* after. A duplicate delivery
//! finds the claim sent (or held by a live lease, and waits) and sends nothing. A notifier that
//! dies after claiming and before the attempt leaves a lease that runs out: the redelivered
//! message sends then. Once attempted, a notification is never sent again, whatever happens
//! next (a timeout, a death, a lost answer): the provider may have it, and SES has no
//! idempotency key, so "at most once" wins over "at least once" there (counted as `GaveUp`,
//! which pages). A provider that answers a clear refusal for now (throttled, 5xx) releases the
//! claim, and the message comes again; one that refuses for good (a rejected address, a
//! disabled device) is given up. The SES and SNS clients make one attempt per call (no SDK
//! retries: a retried call could send twice). A notification never changes the reservation.

pub mod consumer;
pub mod devices;
pub mod dynamo;
pub mod memory;
pub mod message;
pub mod ses;
pub mod sns;

use std::future::Future;
use std::time::Duration;

use crate::domain::Timestamp;

/// How long a claim keeps other deliveries of the same notification away: well above one
/// send's budget ([`SEND_TIMEOUT`]), well below the events queue's visibility timeout (180 s),
/// so a redelivery after a crash finds the lease run out.
pub const LEASE: Duration = Duration::from_secs(60);
/// The budget of one provider call.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// The way a notice reaches the buyer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Email,
    Push,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Push => "push",
        }
    }
}

/// The answer to a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Ours: send, then mark it sent.
    Claimed,
    /// Sent before (or given up for good): nothing to do.
    Done,
    /// Another delivery holds a live lease: try again later.
    Busy,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("notifications log unavailable: {0}")]
    Unavailable(String),
}

/// The port: one record per (event, channel).
pub trait NotificationLog: Send + Sync {
    /// Claims `id` for `token` until `now + lease`, if nobody sent it and no live lease holds
    /// it. A claim whose answer was lost is recognised by its token.
    fn claim(
        &self,
        id: &str,
        token: &str,
        now: Timestamp,
        lease: Duration,
    ) -> impl Future<Output = Result<Claim, LogError>> + Send;
    /// Marks `id` attempted, if `token` still holds it (`false`: it does not, send nothing).
    /// From then on no claim is granted again.
    fn attempt(&self, id: &str, token: &str)
        -> impl Future<Output = Result<bool, LogError>> + Send;
    /// Gives `id` up for now (the provider refused before taking it): the next delivery may
    /// claim it at once.
    fn release(&self, id: &str, token: &str) -> impl Future<Output = Result<(), LogError>> + Send;
    /// Marks `id` sent (or given up, with why), if `token` still holds it.
    fn finish(
        &self,
        id: &str,
        token: &str,
        outcome: Finished,
    ) -> impl Future<Output = Result<(), LogError>> + Send;
}

/// How a claimed notification ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    Sent,
    /// The provider refused it for good (a rejected address, a disabled device).
    GaveUp(String),
}

/// Why a send failed. The texts carry the provider's error code, never the address.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    /// The provider refused for now and did not take it (throttled, a 5xx): release and retry.
    #[error("transient: {0}")]
    Transient(String),
    /// Refused for good: retrying cannot help.
    #[error("permanent: {0}")]
    Permanent(String),
    /// No answer (a timeout, a dropped connection): the provider may have taken it.
    #[error("unknown outcome: {0}")]
    Unknown(String),
}

/// An email, rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub text: String,
}

/// The email port.
pub trait Mailer: Send + Sync {
    fn send(&self, email: &Email) -> impl Future<Output = Result<(), SendError>> + Send;
}

/// The push port: one message to one device endpoint (an SNS platform endpoint ARN).
pub trait Pusher: Send + Sync {
    fn push(
        &self,
        endpoint: &str,
        text: &str,
    ) -> impl Future<Output = Result<(), SendError>> + Send;
}

/// A provider call's failure, by its error code only (SES's messages can name the address,
/// which must reach neither logs nor the notifications table): a code in `permanent` is
/// [`SendError::Permanent`], another [`SendError::Transient`]; no answer (a timeout, a broken
/// response) is [`SendError::Unknown`]: the provider may have taken it. (The SES and SNS crates
/// share the SDK's error types.)
pub(crate) fn classify<E, R>(
    error: &aws_sdk_ses::error::SdkError<E, R>,
    permanent: &[&str],
) -> SendError
where
    E: aws_sdk_ses::error::ProvideErrorMetadata,
{
    use aws_sdk_ses::error::SdkError;
    match error {
        SdkError::ServiceError(context) => {
            let code = context.err().code().unwrap_or("unknown").to_owned();
            if permanent.contains(&code.as_str()) {
                SendError::Permanent(code)
            } else {
                SendError::Transient(code)
            }
        }
        SdkError::ConstructionFailure(_) => SendError::Permanent("construction failure".into()),
        SdkError::DispatchFailure(_) => SendError::Transient("not dispatched".into()),
        SdkError::TimeoutError(_) => SendError::Unknown("timeout".into()),
        _ => SendError::Unknown("no readable answer".into()),
    }
}
