//! In-memory notification log, mailer, pusher and device list, for fast tests of the consumer.
//! The real adapters are tested on LocalStack (the notifier's end-to-end tests).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::devices::{DeviceError, Devices};
use super::{Claim, Email, Finished, LogError, Mailer, NotificationLog, Pusher, SendError};
use crate::domain::{Timestamp, UserId};

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Sending {
        token: String,
        lease_until: Timestamp,
    },
    Attempted {
        token: String,
    },
    Sent,
    GaveUp(String),
}

#[derive(Default)]
pub struct MemoryNotificationLog {
    records: Mutex<HashMap<String, State>>,
}

impl MemoryNotificationLog {
    /// Whether `id` is marked sent.
    pub fn is_sent(&self, id: &str) -> bool {
        self.records.lock().unwrap().get(id) == Some(&State::Sent)
    }

    /// Whether `id` was given up.
    pub fn gave_up(&self, id: &str) -> bool {
        matches!(self.records.lock().unwrap().get(id), Some(State::GaveUp(_)))
    }
}

impl NotificationLog for MemoryNotificationLog {
    async fn claim(
        &self,
        id: &str,
        token: &str,
        now: Timestamp,
        lease: Duration,
    ) -> Result<Claim, LogError> {
        let mut records = self.records.lock().unwrap();
        let claim = match records.get(id) {
            None => Claim::Claimed,
            Some(State::Sent) | Some(State::GaveUp(_)) | Some(State::Attempted { .. }) => {
                Claim::Done
            }
            Some(State::Sending { token: held, .. }) if held == token => Claim::Claimed,
            Some(State::Sending { lease_until, .. }) if *lease_until < now => Claim::Claimed,
            Some(State::Sending { .. }) => Claim::Busy,
        };
        if claim == Claim::Claimed {
            records.insert(
                id.to_owned(),
                State::Sending {
                    token: token.to_owned(),
                    lease_until: now.plus(lease),
                },
            );
        }
        Ok(claim)
    }

    async fn attempt(&self, id: &str, token: &str) -> Result<bool, LogError> {
        let mut records = self.records.lock().unwrap();
        match records.get(id) {
            Some(State::Sending { token: held, .. }) if held == token => {
                records.insert(
                    id.to_owned(),
                    State::Attempted {
                        token: token.to_owned(),
                    },
                );
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release(&self, id: &str, token: &str) -> Result<(), LogError> {
        let mut records = self.records.lock().unwrap();
        if matches!(records.get(id), Some(State::Attempted { token: held }) if held == token) {
            records.remove(id);
        }
        Ok(())
    }

    async fn finish(&self, id: &str, token: &str, outcome: Finished) -> Result<(), LogError> {
        let mut records = self.records.lock().unwrap();
        if let Some(State::Attempted { token: held }) = records.get(id) {
            if held == token {
                records.insert(
                    id.to_owned(),
                    match outcome {
                        Finished::Sent => State::Sent,
                        Finished::GaveUp(why) => State::GaveUp(why),
                    },
                );
            }
        }
        Ok(())
    }
}

/// Records what it sends; answers with the scripted failures first.
#[derive(Default)]
pub struct RecordingMailer {
    pub sent: Mutex<Vec<Email>>,
    pub failures: Mutex<Vec<SendError>>,
}

impl Mailer for RecordingMailer {
    async fn send(&self, email: &Email) -> Result<(), SendError> {
        if let Some(failure) = self.failures.lock().unwrap().pop() {
            return Err(failure);
        }
        self.sent.lock().unwrap().push(email.clone());
        Ok(())
    }
}

/// Records what it pushes (endpoint, text); answers with the scripted failures first.
#[derive(Default)]
pub struct RecordingPusher {
    pub pushed: Mutex<Vec<(String, String)>>,
    pub failures: Mutex<Vec<SendError>>,
}

impl Pusher for RecordingPusher {
    async fn push(&self, endpoint: &str, text: &str) -> Result<(), SendError> {
        if let Some(failure) = self.failures.lock().unwrap().pop() {
            return Err(failure);
        }
        self.pushed
            .lock()
            .unwrap()
            .push((endpoint.to_owned(), text.to_owned()));
        Ok(())
    }
}

/// Devices by buyer.
#[derive(Default)]
pub struct MemoryDevices {
    pub by_user: Mutex<HashMap<UserId, Vec<String>>>,
}

impl Devices for MemoryDevices {
    async fn endpoints_of(&self, user: &UserId) -> Result<Vec<String>, DeviceError> {
        Ok(self
            .by_user
            .lock()
            .unwrap()
            .get(user)
            .cloned()
            .unwrap_or_default())
    }

    async fn add(&self, user: &UserId, endpoint: &str) -> Result<(), DeviceError> {
        let mut by_user = self.by_user.lock().unwrap();
        let list = by_user.entry(user.clone()).or_default();
        if !list.iter().any(|e| e == endpoint) {
            list.push(endpoint.to_owned());
        }
        Ok(())
    }
}
