//! Reading a function's configuration from its environment, once, at start-up. A missing or
//! malformed variable fails the cold start with the variable's name; handlers never read the
//! environment themselves.

use std::fmt;
use std::str::FromStr;

/// A credential from the configuration (an API key, a shared secret). `Debug` prints `***`;
/// there is no `Display`, so it cannot end up in a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// The function's environment, read once at a cold start ([`Env::from_process`]: the one
/// place our code reads the process environment; the AWS SDK and the log filter read their own
/// variables) and handed to every part's `from_env`. It holds secrets: `Debug` prints names only.
#[derive(Clone, Default)]
pub struct Env(std::collections::HashMap<String, String>);

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.0.keys().collect();
        names.sort();
        f.debug_tuple("Env").field(&names).finish()
    }
}

impl Env {
    /// A variable whose name or value is not valid Unicode is left out (read as missing), as
    /// `std::env::var` would report it, instead of failing the cold start.
    pub fn from_process() -> Self {
        Self(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        )
    }

    /// An environment of these variables only (tests, tools).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    /// The variable's value as set (not trimmed: a key may end in whitespace); a missing or
    /// blank one is an error naming it.
    pub fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        match self.0.get(name) {
            Some(value) if !value.trim().is_empty() => Ok(value.clone()),
            _ => Err(ConfigError::Missing(name)),
        }
    }

    /// The variable's value (trimmed), or `None` when it is missing or blank: for settings a
    /// deployment may leave out.
    pub fn optional(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_owned)
    }

    /// The variable parsed as `T`, or `default` when it is missing or blank; an unparsable one
    /// is an error naming it.
    pub fn parsed_or<T>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            Some(raw) => raw.parse().map_err(|e: T::Err| ConfigError::Invalid {
                name,
                reason: e.to_string(),
            }),
            None => Ok(default),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_trimmed_and_blank_is_missing() {
        let env = Env::from_pairs([("A", " 5 "), ("B", "  "), ("C", "x")]);
        assert_eq!(env.parsed_or("A", 1u32).unwrap(), 5);
        assert_eq!(env.parsed_or("B", 1u32).unwrap(), 1);
        assert!(matches!(env.required("B"), Err(ConfigError::Missing("B"))));
        assert!(matches!(
            env.parsed_or("C", 1u32),
            Err(ConfigError::Invalid { name: "C", .. })
        ));
        assert_eq!(env.required("C").unwrap(), "x");
        // Secrets are not trimmed (a key may end in whitespace), and never printed.
        let env = Env::from_pairs([("SECRET", "k3y ")]);
        assert_eq!(env.required("SECRET").unwrap(), "k3y ");
        assert_eq!(format!("{env:?}"), r#"Env(["SECRET"])"#);
    }
}
