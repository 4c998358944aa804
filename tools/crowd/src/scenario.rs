//! A sale scenario: the sale, the crowd and its behaviours, and the bounds of the run.
//!
//! Scenarios are TOML files (`tools/crowd/scenarios/*.toml`); every field has a default, so a
//! file names only what it changes. Unknown fields are refused, and every error names the field
//! (`sale.stock: must be at least 1`, or toml's own "unknown field `stokc`" with its line).
//!
//! ```toml
//! name = "sneaker drop"
//! [sale]
//! stock = 50            # units
//! shards = 4            # Redis shards the stock is split over
//! per_user_limit = 1    # units one buyer may hold or own
//! hold_seconds = 60     # how long an unpaid reservation holds its units (60..=3600)
//! [crowd]
//! buyers = 250
//! burst_share = 0.7     # share of the buyers who arrive in the opening burst
//! burst_seconds = 3     # the burst's length
//! tail_seconds = 30     # the rest arrive over this long, fewer and fewer
//! max_in_flight = 64    # buyers acting at once (the client side's concurrency)
//! [mix]                 # relative weights of the behaviours (see Behaviour)
//! pay_now = 50
//! bot = 25              # scripted bots among the buyers (they should end with nothing)
//! [limits]
//! max_requests = 5000
//! max_seconds = 300
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::buyer::Behaviour;

/// A whole scenario (see the module doc for the file format).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default = "default_name")]
    pub name: String,
    #[serde(default)]
    pub sale: SaleSpec,
    #[serde(default)]
    pub crowd: CrowdSpec,
    #[serde(default)]
    pub mix: Mix,
    #[serde(default)]
    pub limits: Limits,
}

fn default_name() -> String {
    "flash sale".into()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SaleSpec {
    /// Units on sale.
    pub stock: u64,
    /// Redis shards the stock is split over (1..=256, the put-sale API's bounds).
    pub shards: u16,
    pub per_user_limit: u32,
    /// Seconds an unpaid reservation holds its units (the API accepts 60..=3600).
    pub hold_seconds: u64,
    /// Price in minor units (cents) of `currency` (ISO 4217).
    pub price_minor: u64,
    pub currency: String,
}

impl Default for SaleSpec {
    fn default() -> Self {
        Self {
            stock: 50,
            shards: 4,
            per_user_limit: 1,
            hold_seconds: 60,
            price_minor: 1999,
            currency: "EUR".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CrowdSpec {
    pub buyers: u32,
    /// Share (0..=1) of the buyers who arrive in the opening burst.
    pub burst_share: f64,
    /// Length of the opening burst (s).
    pub burst_seconds: f64,
    /// The others arrive over this long after the burst, fewer and fewer (s).
    pub tail_seconds: f64,
    /// Buyers acting at once at most.
    pub max_in_flight: usize,
}

impl Default for CrowdSpec {
    fn default() -> Self {
        Self {
            buyers: 250,
            burst_share: 0.7,
            burst_seconds: 3.0,
            tail_seconds: 30.0,
            max_in_flight: 64,
        }
    }
}

/// Relative weights of the buyer behaviours; a buyer's behaviour is drawn with these odds.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mix {
    pub pay_now: u32,
    pub pay_late: u32,
    pub pay_after_expiry: u32,
    pub declined_then_retry: u32,
    pub abandon: u32,
    pub greedy: u32,
    pub retry_after_503: u32,
    pub pay_at_deadline: u32,
    /// Scripted bots (not buyers: they should end with nothing).
    pub bot: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Self {
            pay_now: 45,
            pay_late: 10,
            pay_after_expiry: 5,
            declined_then_retry: 10,
            abandon: 15,
            greedy: 5,
            retry_after_503: 10,
            pay_at_deadline: 0,
            bot: 25,
        }
    }
}

impl Mix {
    /// (behaviour, weight) pairs with a weight above zero.
    pub fn weights(&self) -> Vec<(Behaviour, u32)> {
        [
            (Behaviour::PayNow, self.pay_now),
            (Behaviour::PayLate, self.pay_late),
            (Behaviour::PayAfterExpiry, self.pay_after_expiry),
            (Behaviour::DeclinedThenRetry, self.declined_then_retry),
            (Behaviour::Abandon, self.abandon),
            (Behaviour::Greedy, self.greedy),
            (Behaviour::RetryAfter503, self.retry_after_503),
            (Behaviour::PayAtDeadline, self.pay_at_deadline),
            (Behaviour::Bot, self.bot),
        ]
        .into_iter()
        .filter(|(_, w)| *w > 0)
        .collect()
    }
}

/// The run's bounds: it stops by itself at whichever comes first.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Requests to the API in all (polls included); buyers stop asking once it is spent.
    pub max_requests: u64,
    /// Wall-clock seconds of the crowd (settling and the ledger come after).
    pub max_seconds: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_requests: 5000,
            max_seconds: 300,
        }
    }
}

/// What is wrong with a scenario; the message names the field.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn from_file(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text).map_err(|e| match e {
            ScenarioError::Parse { message, .. } => ScenarioError::Parse {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })
    }

    /// Parses and checks a scenario from TOML text.
    pub fn from_toml(text: &str) -> Result<Self, ScenarioError> {
        let scenario: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            path: "scenario".into(),
            message: e.to_string(),
        })?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// The defaults (what `demo` runs without `--scenario`).
    pub fn default_demo() -> Self {
        Self {
            name: "demo drop".into(),
            sale: SaleSpec::default(),
            crowd: CrowdSpec::default(),
            mix: Mix::default(),
            limits: Limits::default(),
        }
    }

    pub fn validate(&self) -> Result<(), ScenarioError> {
        let invalid = |field: &'static str, reason: &str| {
            Err(ScenarioError::Invalid {
                field,
                reason: reason.into(),
            })
        };
        let s = &self.sale;
        if !(1..=10_000_000).contains(&s.stock) {
            return invalid(
                "sale.stock",
                "must be between 1 and 10000000 (the API's bounds)",
            );
        }
        if !(1..=256).contains(&s.shards) {
            return invalid(
                "sale.shards",
                "must be between 1 and 256 (the API's bounds)",
            );
        }
        if u64::from(s.shards) > s.stock {
            return invalid(
                "sale.shards",
                "must not exceed sale.stock (every shard holds a unit)",
            );
        }
        if !(1..=100).contains(&s.per_user_limit) {
            return invalid(
                "sale.per_user_limit",
                "must be between 1 and 100 (the API's bounds)",
            );
        }
        if !(60..=3600).contains(&s.hold_seconds) {
            return invalid(
                "sale.hold_seconds",
                "must be between 60 and 3600 (the API's bounds)",
            );
        }
        if s.price_minor == 0 {
            return invalid("sale.price_minor", "must be at least 1");
        }
        if s.currency.len() != 3 || !s.currency.chars().all(|c| c.is_ascii_uppercase()) {
            return invalid("sale.currency", "must be an ISO 4217 code such as EUR");
        }
        let c = &self.crowd;
        if c.buyers == 0 || c.buyers > 100_000 {
            return invalid("crowd.buyers", "must be between 1 and 100000");
        }
        if !(0.0..=1.0).contains(&c.burst_share) {
            return invalid("crowd.burst_share", "must be between 0 and 1");
        }
        if !(c.burst_seconds.is_finite() && c.burst_seconds >= 0.0) {
            return invalid("crowd.burst_seconds", "must be 0 or more");
        }
        if !(c.tail_seconds.is_finite() && c.tail_seconds >= 0.0) {
            return invalid("crowd.tail_seconds", "must be 0 or more");
        }
        if c.max_in_flight == 0 || c.max_in_flight > 10_000 {
            return invalid("crowd.max_in_flight", "must be between 1 and 10000");
        }
        if self.mix.weights().is_empty() {
            return invalid("mix", "at least one behaviour needs a weight above 0");
        }
        if self.limits.max_requests == 0 {
            return invalid("limits.max_requests", "must be at least 1");
        }
        if self.limits.max_seconds == 0 || self.limits.max_seconds > 24 * 3600 {
            return invalid("limits.max_seconds", "must be between 1 and 86400");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_the_defaults() {
        let s = Scenario::from_toml("").unwrap();
        assert_eq!(s.sale.stock, 50);
        assert_eq!(s.crowd.buyers, 250);
        assert_eq!(s.mix.weights().len(), 8);
        assert_eq!(s.mix.bot, 25, "the default crowd has scripted bots in it");
    }

    #[test]
    fn a_file_names_only_what_it_changes() {
        let s = Scenario::from_toml(
            "name = \"x\"\n[sale]\nstock = 7\nshards = 2\n[mix]\npay_now = 1\nabandon = 0\n",
        )
        .unwrap();
        assert_eq!((s.name.as_str(), s.sale.stock, s.sale.shards), ("x", 7, 2));
        assert_eq!(s.sale.hold_seconds, 60);
        assert_eq!(s.mix.abandon, 0);
        assert_eq!(s.mix.greedy, 5, "unnamed weights keep their defaults");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("[sale]\nstokc = 5\n", "stokc"),
            ("[sale]\nstock = 0\n", "sale.stock"),
            ("[sale]\nstock = \"many\"\n", "stock"),
            ("[sale]\nhold_seconds = 10\n", "sale.hold_seconds"),
            ("[sale]\nstock = 2\nshards = 3\n", "sale.shards"),
            ("[sale]\ncurrency = \"euro\"\n", "sale.currency"),
            ("[crowd]\nburst_share = 1.5\n", "crowd.burst_share"),
            ("[crowd]\nbuyers = 0\n", "crowd.buyers"),
            ("[mix]\npay_now = 0\npay_late = 0\npay_after_expiry = 0\ndeclined_then_retry = 0\nabandon = 0\ngreedy = 0\nretry_after_503 = 0\npay_at_deadline = 0\nbot = 0\n", "mix"),
            ("[limits]\nmax_seconds = 0\n", "limits.max_seconds"),
            ("[lmits]\n", "lmits"),
        ];
        for (text, field) in cases {
            let err = Scenario::from_toml(text).expect_err(text).to_string();
            assert!(err.contains(field), "{text:?}: {err}");
        }
    }

    #[test]
    fn the_shipped_scenarios_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Scenario::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
                seen += 1;
            }
        }
        assert!(
            seen >= 2,
            "expected the demo's scenarios in {}",
            dir.display()
        );
    }
}
