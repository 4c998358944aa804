//! The bot defence's settings, read once at a cold start.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `BOT_DEFENCE` | `on` | `off` turns the defence off (every request admitted, nothing counted) |
//! | `BOT_CHALLENGE_PROVIDER` | `altcha` | `altcha` (proof of work, verified in process) or `turnstile` (Cloudflare's hosted CAPTCHA; needs outbound internet) |
//! | `BOT_CHALLENGE_SIGNATURE_SECRET` | (required for altcha) | HMAC key that signs challenges |
//! | `BOT_CHALLENGE_KEY_SECRET` | (required for altcha) | HMAC key that signs the expected derived key |
//! | `TURNSTILE_SITE_KEY` | (required for turnstile) | the widget's public site key |
//! | `TURNSTILE_SECRET_KEY` | (required for turnstile) | the siteverify secret |
//! | `TURNSTILE_SITEVERIFY_URL` | Cloudflare's | a local stand-in's URL in tests (http only to this machine) |
//! | `TURNSTILE_TIMEOUT_MS` | 3000 | budget of one verification |
//! | `TURNSTILE_TEST_KEYS` | `off` | `on` allows Cloudflare's dummy secret keys (a front end's tests only) |
//! | `BOT_CHALLENGE_AT` | 80 | the lowest score that is challenged (the seed's "above 80", taken inclusively: its bot on a fresh account scores exactly 80 on its first request) |
//! | `BOT_CHALLENGE_WORK` | 100000 | SHA-256 counters at the threshold (four times that at 100) |
//! | `BOT_CHALLENGE_TTL_SECONDS` | 120 | how long a challenge may be answered |
//! | `BOT_BLOCK_SECONDS` | 3600 | the block after a failed, expired or replayed solution (seed: one hour) |
//! | `BOT_PASS_SECONDS` | 600 | how long a solved challenge spares the buyer another |
//! | `BOT_BLOCK_ADDRESSES` | `off` | `on`: block the address too (see [`DefencePolicy::block_addresses`] for why it is off by default) |
//!
//! The secrets come from Secrets Manager on AWS (dynamic references in the template) and are
//! never logged ([`AltchaConfig`]'s `Debug` leaves them out, [`Secret`] prints `***`).

use std::time::Duration;

use super::challenge::altcha::{AltchaChallenges, AltchaConfig};
use super::challenge::turnstile::{
    TurnstileConfig, TurnstileSetupError, TurnstileVerifier, SITEVERIFY_URL, TOKEN_LIFETIME,
};
use super::challenge::Challenges;
use super::defence::DefencePolicy;
use super::score::Weights;
use crate::config::{ConfigError, Env, Secret};

/// Which challenge, with its settings.
#[derive(Debug, Clone)]
pub enum ChallengeConfig {
    Altcha(AltchaConfig),
    Turnstile(TurnstileConfig),
}

impl ChallengeConfig {
    /// The adapter (Turnstile's sets up its HTTPS client, and checks its URL and keys).
    pub fn build(self) -> Result<Challenges, ConfigError> {
        Ok(match self {
            ChallengeConfig::Altcha(c) => Challenges::Altcha(AltchaChallenges::new(c)),
            ChallengeConfig::Turnstile(c) => {
                let verifier = TurnstileVerifier::new(c).map_err(|e| ConfigError::Invalid {
                    name: match e {
                        TurnstileSetupError::Endpoint(_) => "TURNSTILE_SITEVERIFY_URL",
                        TurnstileSetupError::EmptyKey | TurnstileSetupError::TestKey => {
                            "TURNSTILE_SECRET_KEY"
                        }
                        TurnstileSetupError::Tls(_) => "BOT_CHALLENGE_PROVIDER",
                    },
                    reason: e.to_string(),
                })?;
                Challenges::Turnstile(Box::new(verifier))
            }
        })
    }
}

/// `on` or `off`.
fn on_off(env: &Env, name: &'static str, default: bool) -> Result<bool, ConfigError> {
    let default = if default { "on" } else { "off" };
    match env.parsed_or(name, default.to_string())?.as_str() {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(ConfigError::Invalid {
            name,
            reason: format!("must be on or off, got {other}"),
        }),
    }
}

/// `None` when `BOT_DEFENCE=off`.
pub fn from_env(env: &Env) -> Result<Option<(DefencePolicy, ChallengeConfig)>, ConfigError> {
    if !on_off(env, "BOT_DEFENCE", true)? {
        return Ok(None);
    }
    let challenge_at: u8 = env.parsed_or("BOT_CHALLENGE_AT", 80)?;
    if !(1..=100).contains(&challenge_at) {
        return Err(ConfigError::Invalid {
            name: "BOT_CHALLENGE_AT",
            reason: "must be between 1 and 100".into(),
        });
    }
    let policy = DefencePolicy {
        weights: Weights {
            challenge_at,
            ..Weights::default()
        },
        block_for: Duration::from_secs(env.parsed_or("BOT_BLOCK_SECONDS", 3600)?),
        pass_for: Duration::from_secs(env.parsed_or("BOT_PASS_SECONDS", 600)?),
        block_addresses: on_off(env, "BOT_BLOCK_ADDRESSES", false)?,
    };
    let ttl_seconds: u64 = env.parsed_or("BOT_CHALLENGE_TTL_SECONDS", 120)?;
    if !(10..=3600).contains(&ttl_seconds) {
        return Err(ConfigError::Invalid {
            name: "BOT_CHALLENGE_TTL_SECONDS",
            reason: "must be between 10 and 3600 (a shorter one expires before a person solves it)"
                .into(),
        });
    }
    let challenges = match env
        .parsed_or("BOT_CHALLENGE_PROVIDER", "altcha".to_string())?
        .as_str()
    {
        "altcha" => ChallengeConfig::Altcha(AltchaConfig {
            signature_secret: env.required("BOT_CHALLENGE_SIGNATURE_SECRET")?,
            key_secret: env.required("BOT_CHALLENGE_KEY_SECRET")?,
            ttl: Duration::from_secs(ttl_seconds),
            base_work: env.parsed_or("BOT_CHALLENGE_WORK", 100_000)?,
            threshold: challenge_at,
        }),
        "turnstile" => ChallengeConfig::Turnstile(TurnstileConfig {
            site_key: env.required("TURNSTILE_SITE_KEY")?,
            secret: Secret::new(env.required("TURNSTILE_SECRET_KEY")?),
            siteverify_url: env
                .parsed_or("TURNSTILE_SITEVERIFY_URL", SITEVERIFY_URL.to_string())?,
            timeout: Duration::from_millis(env.parsed_or("TURNSTILE_TIMEOUT_MS", 3000u64)?.max(1)),
            accept_test_keys: on_off(env, "TURNSTILE_TEST_KEYS", false)?,
        }),
        other => {
            return Err(ConfigError::Invalid {
                name: "BOT_CHALLENGE_PROVIDER",
                reason: format!("must be altcha or turnstile, got {other}"),
            })
        }
    };
    // A solution is remembered for its lifetime and a minute more; a pass that ends sooner
    // would turn the same solution sent again (a retry) into a replay and a block.
    let lifetime = match &challenges {
        ChallengeConfig::Altcha(c) => c.ttl,
        ChallengeConfig::Turnstile(_) => TOKEN_LIFETIME,
    };
    if policy.pass_for < lifetime + Duration::from_secs(60) {
        return Err(ConfigError::Invalid {
            name: "BOT_PASS_SECONDS",
            reason: format!(
                "must be at least the challenge's lifetime + 60 s ({} s)",
                (lifetime + Duration::from_secs(60)).as_secs()
            ),
        });
    }
    Ok(Some((policy, challenges)))
}

/// The defence of a guarded route, built from the environment, its watchlist in Redis on
/// `conn`; `None` when `BOT_DEFENCE=off`. Every guarded function (reserve, the waiting room's
/// join) builds it this way at its cold start.
pub fn redis_defence<C>(
    env: &Env,
    conn: C,
) -> Result<
    Option<
        super::defence::BotDefence<
            super::watchlist::redis::RedisWatchlist<C>,
            Challenges,
            crate::domain::SystemClock,
        >,
    >,
    ConfigError,
>
where
    C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
{
    let Some((policy, challenges)) = from_env(env)? else {
        return Ok(None);
    };
    Ok(Some(super::defence::BotDefence {
        watchlist: super::watchlist::redis::RedisWatchlist::new(conn),
        challenges: challenges.build()?,
        clock: crate::domain::SystemClock,
        policy,
    }))
}
