//! The SES adapter of [`Mailer`]: the v1 API's `SendEmail` (LocalStack's free edition has v1,
//! not v2; AWS fully supports v1), text body, UTF-8, from the stack's verified sender.

use aws_sdk_ses::types::{Body, Content, Destination, Message};
use aws_sdk_ses::Client;

use super::{Email, Mailer, SendError};

/// Error codes after which sending the same email again cannot succeed (SES v1 API reference,
/// SendEmail errors).
const PERMANENT: [&str; 5] = [
    "MessageRejected",
    "InvalidParameterValue",
    "MailFromDomainNotVerifiedException",
    "ConfigurationSetDoesNotExistException",
    "ConfigurationSetSendingPausedException",
];

#[derive(Clone)]
pub struct SesMailer {
    client: Client,
    sender: String,
}

impl SesMailer {
    pub fn new(client: Client, sender: impl Into<String>) -> Self {
        Self {
            client,
            sender: sender.into(),
        }
    }
}

fn content(text: &str) -> Result<Content, SendError> {
    Content::builder()
        .data(text)
        .charset("UTF-8")
        .build()
        .map_err(|e| SendError::Permanent(e.to_string()))
}

impl Mailer for SesMailer {
    async fn send(&self, email: &Email) -> Result<(), SendError> {
        let message = Message::builder()
            .subject(content(&email.subject)?)
            .body(Body::builder().text(content(&email.text)?).build())
            .build();
        let sent = self
            .client
            .send_email()
            .source(&self.sender)
            .destination(Destination::builder().to_addresses(&email.to).build())
            .message(message)
            .send()
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(error) => Err(super::classify(&error, &PERMANENT)),
        }
    }
}
