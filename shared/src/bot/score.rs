//! The bot score (seed 004, flow 10): a pure function from what is known about one request to a
//! score from 0 to 100 with the reasons that made it. Explainable by construction: every point
//! comes from a named reason, logged and shown to admins, never to the client (a bot that reads
//! its reasons learns what to fake).
//!
//! Signals, and how far each is trusted:
//! - request rates per buyer and per source IP, counted by us (trusted): the seed's line is
//!   "100+ requests per minute where a human sends under 10";
//! - the account's age, from the identity (trusted as far as the identity provider is): the
//!   seed's "fresh account (< 1 day old)". On Cognito the claim is the custom attribute
//!   `custom:created_at` (unix seconds, written once at sign-up confirmation); a locally minted
//!   token carries the same claim. A missing claim is "unknown", never "new";
//! - client telemetry the front end sends (untrusted: a bot sends whatever passes), so it can
//!   only raise the score, a little per item, and never block on its own: headless or webdriver
//!   flags, WebGL or Canvas missing, no pointer events, a click faster than a person clicks;
//!   and *no telemetry at all*: the shop's pages always send it, so a client that sends none is
//!   not the shop's front end (a script, or an app that has not adopted it);
//! - on AWS, bot signals the WAF edge forwarded as headers (Bot Control labels).
//!
//! The weights are configuration ([`Weights`]); the defaults put the seed's bot (fast, fresh,
//! headless, no pointer) well above the threshold of 80, the same headless browser on a fresh
//! account at it from its first request, and a script at a bot's rate (100 or more a minute)
//! that sends no telemetry at it, while a person (a few requests a minute, even on a day-old
//! account in a privacy browser) stays far below it. What the score cannot see: a script that
//! sends a person's telemetry and keeps to a person's pace (README, "Bot defence").

use std::time::Duration;

/// What the client says about itself (the front end's telemetry). Untrusted: each field only
/// adds points when it reports something a person's browser does not do. Lenient, so a front
/// end never breaks reservations: fields it does not know are ignored, and counts may come as
/// any JSON number (`performance.now()` gives fractions; they are rounded, negatives read as 0).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Telemetry {
    /// `navigator.webdriver` was true.
    #[serde(default)]
    pub webdriver: bool,
    /// The page found a headless browser (user agent or missing window chrome).
    #[serde(default)]
    pub headless: bool,
    /// A WebGL context could be created.
    pub webgl: Option<bool>,
    /// A 2D canvas could be read back.
    pub canvas: Option<bool>,
    /// Pointer (mouse, touch, pen) events seen on the page before the click.
    #[serde(default, deserialize_with = "whole_u32")]
    pub pointer_events: Option<u32>,
    /// Milliseconds from the page view to the buy click.
    #[serde(default, deserialize_with = "whole_u64")]
    pub click_after_ms: Option<u64>,
}

/// Any JSON number (or null) as a whole number: rounded; negatives and non-numbers read as 0.
fn rounded<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    let raw: Option<f64> = serde::Deserialize::deserialize(deserializer)?;
    // `as` saturates: above u64::MAX it is u64::MAX.
    Ok(raw.map(|n| {
        if n.is_finite() {
            n.round().max(0.0) as u64
        } else {
            0
        }
    }))
}

fn whole_u64<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    rounded(deserializer)
}

fn whole_u32<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    Ok(rounded(deserializer)?.map(|n| u32::try_from(n).unwrap_or(u32::MAX)))
}

/// Everything the score looks at for one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signals {
    /// Requests of this buyer in the last minute, this one included.
    pub user_per_minute: u32,
    /// Requests from this source IP in the last minute, this one included.
    pub ip_per_minute: u32,
    /// Time since the account was created; `None` when the identity does not say.
    pub account_age: Option<Duration>,
    /// The client's telemetry, if it sent any.
    pub telemetry: Option<Telemetry>,
    /// Bot signals the edge (AWS WAF Bot Control) attached to the request.
    pub edge_signals: Vec<String>,
}

impl Signals {
    /// No signals beyond the counts: for tests and callers that know nothing else.
    pub fn counts(user_per_minute: u32, ip_per_minute: u32) -> Self {
        Self {
            user_per_minute,
            ip_per_minute,
            ..Self::default()
        }
    }
}

/// Why points were given. Shown to admins and logged; never sent to the client.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Reason {
    /// The buyer's request rate (per minute) is above a person's.
    UserRate {
        per_minute: u32,
    },
    /// The source IP's request rate (per minute) is above what a shared address sends.
    IpRate {
        per_minute: u32,
    },
    /// The account is younger than [`Weights::new_account`].
    NewAccount {
        age_minutes: u64,
    },
    /// The client sent no telemetry: not the shop's front end.
    NoTelemetry,
    Webdriver,
    Headless,
    NoWebgl,
    NoCanvas,
    NoPointerEvents,
    /// The buy click came faster than a person reads and clicks.
    InstantClick {
        after_ms: u64,
    },
    /// A bot signal from the edge.
    EdgeSignal {
        signal: String,
    },
}

/// One reason and the points it added.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Contribution {
    #[serde(flatten)]
    pub reason: Reason,
    pub points: u8,
}

/// A score from 0 to 100 and its reasons (the points add up to the score, before the cap).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Score {
    pub value: u8,
    pub reasons: Vec<Contribution>,
}

impl Score {
    pub fn reaches(&self, threshold: u8) -> bool {
        self.value >= threshold
    }
}

/// The weights, thresholds and the challenge threshold. Defaults follow the seed (rate: a
/// person under 10 a minute, a bot over 100; fresh account: under a day; challenge above 80).
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    /// Per-buyer rate at which points start, and the rate at which they reach `user_rate_points`
    /// (linear in between).
    pub user_rate_from: u32,
    pub user_rate_full: u32,
    pub user_rate_points: u8,
    /// The same for the source IP (higher: offices and carrier NAT share addresses).
    pub ip_rate_from: u32,
    pub ip_rate_full: u32,
    pub ip_rate_points: u8,
    /// Accounts younger than this get `new_account_points`.
    pub new_account: Duration,
    pub new_account_points: u8,
    /// For a request without any telemetry.
    pub no_telemetry_points: u8,
    pub webdriver_points: u8,
    pub headless_points: u8,
    pub no_webgl_points: u8,
    pub no_canvas_points: u8,
    pub no_pointer_points: u8,
    /// Clicks faster than this after the page view get `instant_click_points`.
    pub instant_click: Duration,
    pub instant_click_points: u8,
    pub edge_signal_points: u8,
    /// The points of the edge findings that say what kind of client it is (see
    /// [`CLIENT_KIND_SIGNALS`]) are capped here all together: a native app is a non-browser user
    /// agent, often also an unverified bot, and on a VPN a data-centre address; that alone must
    /// not add up to a challenge. Other findings (an automated browser) count in full.
    pub edge_cap: u8,
    /// Telemetry points are capped here all together: it is self-reported, so it alone never
    /// reaches the threshold; with a fresh account it does (the seed's bot on its first
    /// request: a headless browser admitting automation, from an account made for the drop).
    pub telemetry_cap: u8,
    /// A score at or above this is challenged (seed: "score > 80 triggers CAPTCHA", taken
    /// inclusively, so the seed's headless bot on a fresh account, at exactly 80, is asked).
    pub challenge_at: u8,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            user_rate_from: 10,
            user_rate_full: 100,
            user_rate_points: 60,
            ip_rate_from: 120,
            ip_rate_full: 600,
            ip_rate_points: 25,
            new_account: Duration::from_secs(24 * 3600),
            new_account_points: 20,
            no_telemetry_points: 20,
            webdriver_points: 25,
            headless_points: 25,
            no_webgl_points: 5,
            no_canvas_points: 5,
            no_pointer_points: 10,
            instant_click: Duration::from_millis(300),
            instant_click_points: 15,
            edge_signal_points: 35,
            edge_cap: 35,
            telemetry_cap: 60,
            challenge_at: 80,
        }
    }
}

/// Edge findings about the kind of client (infra/lib/edge.ts slugs), capped together by
/// [`Weights::edge_cap`].
pub const CLIENT_KIND_SIGNALS: [&str; 3] = [
    "non-browser-user-agent",
    "unverified-bot",
    "known-bot-data-center",
];

/// Points for a rate: none up to `from`, `points` at `full` and above, linear in between.
fn rate_points(rate: u32, from: u32, full: u32, points: u8) -> u8 {
    if rate <= from {
        return 0;
    }
    if rate >= full || full <= from {
        return points;
    }
    let share = f64::from(rate - from) / f64::from(full - from);
    (share * f64::from(points)).round() as u8
}

/// Scores one request. Pure: the same signals and weights always give the same score.
pub fn score(signals: &Signals, weights: &Weights) -> Score {
    let mut reasons = Vec::new();
    let mut add = |reason: Reason, points: u8| {
        if points > 0 {
            reasons.push(Contribution { reason, points });
        }
    };
    add(
        Reason::UserRate {
            per_minute: signals.user_per_minute,
        },
        rate_points(
            signals.user_per_minute,
            weights.user_rate_from,
            weights.user_rate_full,
            weights.user_rate_points,
        ),
    );
    add(
        Reason::IpRate {
            per_minute: signals.ip_per_minute,
        },
        rate_points(
            signals.ip_per_minute,
            weights.ip_rate_from,
            weights.ip_rate_full,
            weights.ip_rate_points,
        ),
    );
    if let Some(age) = signals.account_age.filter(|age| *age < weights.new_account) {
        add(
            Reason::NewAccount {
                age_minutes: age.as_secs() / 60,
            },
            weights.new_account_points,
        );
    }
    let mut edge_budget = weights.edge_cap;
    for signal in &signals.edge_signals {
        let given = if CLIENT_KIND_SIGNALS.contains(&signal.as_str()) {
            let given = weights.edge_signal_points.min(edge_budget);
            edge_budget -= given;
            given
        } else {
            weights.edge_signal_points
        };
        add(
            Reason::EdgeSignal {
                signal: signal.clone(),
            },
            given,
        );
    }
    if signals.telemetry.is_none() {
        add(Reason::NoTelemetry, weights.no_telemetry_points);
    }
    if let Some(t) = &signals.telemetry {
        let mut budget = weights.telemetry_cap;
        let mut capped = |reason: Reason, points: u8| {
            let given = points.min(budget);
            budget -= given;
            add(reason, given);
        };
        if t.webdriver {
            capped(Reason::Webdriver, weights.webdriver_points);
        }
        if t.headless {
            capped(Reason::Headless, weights.headless_points);
        }
        if t.webgl == Some(false) {
            capped(Reason::NoWebgl, weights.no_webgl_points);
        }
        if t.canvas == Some(false) {
            capped(Reason::NoCanvas, weights.no_canvas_points);
        }
        if t.pointer_events == Some(0) {
            capped(Reason::NoPointerEvents, weights.no_pointer_points);
        }
        if let Some(after_ms) = t
            .click_after_ms
            .filter(|ms| u128::from(*ms) < weights.instant_click.as_millis())
        {
            capped(
                Reason::InstantClick { after_ms },
                weights.instant_click_points,
            );
        }
    }
    let total: u32 = reasons.iter().map(|c| u32::from(c.points)).sum();
    Score {
        value: total.min(100) as u8,
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person() -> Signals {
        Signals {
            user_per_minute: 4,
            ip_per_minute: 30,
            account_age: Some(Duration::from_secs(90 * 24 * 3600)),
            telemetry: Some(Telemetry {
                webdriver: false,
                headless: false,
                webgl: Some(true),
                canvas: Some(true),
                pointer_events: Some(37),
                click_after_ms: Some(2_400),
            }),
            edge_signals: Vec::new(),
        }
    }

    fn points_of(score: &Score, reason: &Reason) -> Option<u8> {
        score
            .reasons
            .iter()
            .find(|c| &c.reason == reason)
            .map(|c| c.points)
    }

    #[test]
    fn a_person_scores_nothing_and_the_seeds_bot_is_challenged() {
        let w = Weights::default();
        let human = score(&person(), &w);
        assert_eq!(human.value, 0, "{human:?}");
        assert!(human.reasons.is_empty());

        // The seed's bot: 100+ requests a minute, a fresh account, headless without WebGL,
        // Canvas or pointer events.
        let bot = Signals {
            user_per_minute: 120,
            ip_per_minute: 120,
            account_age: Some(Duration::from_secs(3600)),
            telemetry: Some(Telemetry {
                webdriver: true,
                headless: true,
                webgl: Some(false),
                canvas: Some(false),
                pointer_events: Some(0),
                click_after_ms: Some(40),
            }),
            edge_signals: Vec::new(),
        };
        let s = score(&bot, &w);
        assert!(s.reaches(w.challenge_at), "{s:?}");
        assert_eq!(s.value, 100);
        assert_eq!(
            points_of(&s, &Reason::UserRate { per_minute: 120 }),
            Some(60)
        );
        assert_eq!(
            points_of(&s, &Reason::NewAccount { age_minutes: 60 }),
            Some(20)
        );
    }

    /// Found by the demo's crowd: with the cap at 40 this bot scored 60 on its first request
    /// and reserved a unit before its rate gave it away.
    #[test]
    fn the_seeds_bot_is_challenged_on_its_first_request() {
        let w = Weights::default();
        let first = Signals {
            user_per_minute: 1,
            ip_per_minute: 1,
            account_age: Some(Duration::from_secs(600)),
            telemetry: Some(Telemetry {
                webdriver: true,
                headless: true,
                webgl: Some(false),
                canvas: Some(false),
                pointer_events: Some(0),
                click_after_ms: Some(20),
            }),
            edge_signals: Vec::new(),
        };
        let s = score(&first, &w);
        assert_eq!(s.value, 80, "{s:?}");
        assert!(s.reaches(w.challenge_at));
        // The same browser on an old account is not challenged on telemetry alone.
        let old = Signals {
            account_age: Some(Duration::from_secs(400 * 24 * 3600)),
            ..first
        };
        assert!(!score(&old, &w).reaches(w.challenge_at));
    }

    #[test]
    fn each_reason_adds_its_weight() {
        let w = Weights::default();
        let with = |change: fn(&mut Signals)| {
            let mut s = person();
            change(&mut s);
            score(&s, &w)
        };
        let s = with(|s| s.account_age = Some(Duration::from_secs(600)));
        assert_eq!(
            (
                s.value,
                points_of(&s, &Reason::NewAccount { age_minutes: 10 })
            ),
            (20, Some(20))
        );
        let s = with(|s| s.edge_signals = vec!["automated-browser".into()]);
        assert_eq!(s.value, 35);
        // Findings about the kind of client count once (a native app: non-browser user agent,
        // unverified bot and a VPN's data-centre address, with no telemetry, stays under the
        // threshold); an automated browser counts on top.
        let s = with(|s| {
            s.edge_signals = CLIENT_KIND_SIGNALS.iter().map(|x| x.to_string()).collect();
            s.telemetry = None;
        });
        assert_eq!(s.value, 35 + 20);
        let s = with(|s| {
            s.edge_signals = vec!["non-browser-user-agent".into(), "automated-browser".into()];
        });
        assert_eq!(s.value, 35 + 35);
        let s = with(|s| s.telemetry.as_mut().unwrap().webdriver = true);
        assert_eq!((s.value, points_of(&s, &Reason::Webdriver)), (25, Some(25)));
        let s = with(|s| s.telemetry.as_mut().unwrap().headless = true);
        assert_eq!(points_of(&s, &Reason::Headless), Some(25));
        let s = with(|s| s.telemetry.as_mut().unwrap().webgl = Some(false));
        assert_eq!((s.value, points_of(&s, &Reason::NoWebgl)), (5, Some(5)));
        let s = with(|s| s.telemetry.as_mut().unwrap().canvas = Some(false));
        assert_eq!(points_of(&s, &Reason::NoCanvas), Some(5));
        let s = with(|s| s.telemetry.as_mut().unwrap().pointer_events = Some(0));
        assert_eq!(points_of(&s, &Reason::NoPointerEvents), Some(10));
        let s = with(|s| s.telemetry.as_mut().unwrap().click_after_ms = Some(120));
        assert_eq!(
            points_of(&s, &Reason::InstantClick { after_ms: 120 }),
            Some(15)
        );
        // The boundary: exactly the instant-click bound is a person's speed.
        let s = with(|s| s.telemetry.as_mut().unwrap().click_after_ms = Some(300));
        assert_eq!(s.value, 0);
    }

    #[test]
    fn rates_add_points_linearly_between_a_persons_rate_and_a_bots() {
        let w = Weights::default();
        let at = |rate: u32| {
            let mut s = person();
            s.user_per_minute = rate;
            score(&s, &w).value
        };
        assert_eq!(at(10), 0);
        assert_eq!(at(55), 30); // half way from 10 to 100
        assert_eq!(at(100), 60);
        assert_eq!(at(10_000), 60);
        let mut s = person();
        s.ip_per_minute = 600;
        assert_eq!(score(&s, &w).value, 25);
    }

    #[test]
    fn telemetry_alone_never_reaches_the_threshold_and_a_missing_claim_is_not_new() {
        let w = Weights::default();
        let mut s = person();
        s.telemetry = Some(Telemetry {
            webdriver: true,
            headless: true,
            webgl: Some(false),
            canvas: Some(false),
            pointer_events: Some(0),
            click_after_ms: Some(1),
        });
        let scored = score(&s, &w);
        assert_eq!(scored.value, w.telemetry_cap);
        assert!(!scored.reaches(w.challenge_at));
        // Unknown account age and no telemetry at all: only the missing telemetry counts.
        s.telemetry = None;
        s.account_age = None;
        let scored = score(&s, &w);
        assert_eq!(scored.value, 20);
        assert_eq!(points_of(&scored, &Reason::NoTelemetry), Some(20));
    }

    #[test]
    fn a_person_on_a_new_account_in_a_privacy_browser_stays_far_below_the_threshold() {
        let w = Weights::default();
        let mut s = person();
        s.account_age = Some(Duration::from_secs(3600));
        s.user_per_minute = 12;
        let t = s.telemetry.as_mut().unwrap();
        t.canvas = Some(false);
        t.webgl = Some(false);
        let scored = score(&s, &w);
        assert_eq!(scored.value, 20 + 1 + 5 + 5);
        assert!(scored.value < w.challenge_at / 2);
    }

    #[test]
    fn a_script_at_a_bots_rate_without_telemetry_is_challenged_on_trusted_signals_alone() {
        let w = Weights::default();
        // No account age (AWS without the attribute), no edge, one address: rate alone.
        let script = Signals::counts(100, 100);
        let scored = score(&script, &w);
        assert!(scored.reaches(w.challenge_at), "{scored:?}");
        // A person's rate without telemetry (an app, an API client) is not.
        assert!(!score(&Signals::counts(12, 30), &w).reaches(w.challenge_at));
        // Nor a busy address of people (NAT) without telemetry.
        assert!(!score(&Signals::counts(4, 600), &w).reaches(w.challenge_at));
    }

    /// Found by a break attempt: a browser's fractional milliseconds, or one new field from
    /// the front end, turned every reservation into a 400.
    #[test]
    fn telemetry_is_read_leniently() {
        let t: Telemetry = serde_json::from_str(
            r#"{"clickAfterMs": 2534.7, "pointerEvents": 12.0, "hardwareConcurrency": 8, "webgl": true}"#,
        )
        .unwrap();
        assert_eq!((t.click_after_ms, t.pointer_events), (Some(2535), Some(12)));
        let t: Telemetry =
            serde_json::from_str(r#"{"clickAfterMs": -5, "pointerEvents": 1e12}"#).unwrap();
        assert_eq!(
            (t.click_after_ms, t.pointer_events),
            (Some(0), Some(u32::MAX))
        );
        let t: Telemetry = serde_json::from_str(r#"{"clickAfterMs": null}"#).unwrap();
        assert_eq!(t.click_after_ms, None);
        // Still JSON of the right types, or refused.
        assert!(serde_json::from_str::<Telemetry>(r#"{"webdriver": "yes"}"#).is_err());
        assert!(serde_json::from_str::<Telemetry>("[1]").is_err());
    }

    #[test]
    fn the_score_is_capped_at_100() {
        let w = Weights::default();
        let s = Signals {
            user_per_minute: 1_000,
            ip_per_minute: 10_000,
            account_age: Some(Duration::ZERO),
            telemetry: None,
            edge_signals: vec!["a".into(), "b".into()],
        };
        let scored = score(&s, &w);
        assert_eq!(scored.value, 100);
        let total: u32 = scored.reasons.iter().map(|c| u32::from(c.points)).sum();
        assert!(total > 100);
    }
}
