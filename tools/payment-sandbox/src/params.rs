//! Stripe's request parameters: `application/x-www-form-urlencoded`, nested names written
//! `metadata[key]=value` / `expand[]=x`. Like Stripe, query-string and body parameters are
//! merged.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(query: Option<&str>, body: &[u8]) -> Self {
        let mut pairs: Vec<(String, String)> = Vec::new();
        if let Some(query) = query {
            pairs.extend(form_urlencoded::parse(query.as_bytes()).into_owned());
        }
        pairs.extend(form_urlencoded::parse(body).into_owned());
        Self(pairs)
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// The last value given for a plain (non-nested) parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `name[key]=value` pairs as a map; an empty value unsets the key, as in Stripe.
    pub fn map(&self, name: &str) -> BTreeMap<String, String> {
        let mut map = BTreeMap::new();
        for (k, v) in &self.0 {
            let Some(inner) = k
                .strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('['))
                .and_then(|rest| rest.strip_suffix(']'))
            else {
                continue;
            };
            if inner.is_empty() {
                continue;
            }
            if v.is_empty() {
                map.remove(inner);
            } else {
                map.insert(inner.to_owned(), v.clone());
            }
        }
        map
    }

    /// The first parameter whose top-level name (before any `[`) is not in `allowed`.
    pub fn unknown(&self, allowed: &[&str]) -> Option<&str> {
        self.0
            .iter()
            .map(|(k, _)| k.split('[').next().unwrap_or(k))
            .find(|top| !allowed.contains(top))
    }

    /// Order-independent form, for comparing a replay with the original request.
    pub fn canonical(&self) -> Vec<(String, String)> {
        let mut pairs = self.0.clone();
        pairs.sort();
        pairs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_metadata_and_unknowns() {
        let p = Params::parse(
            Some("expand[]=latest_charge"),
            b"amount=100&metadata%5Breservation_id%5D=r1&metadata[x]=1&metadata[x]=&currency=usd",
        );
        assert_eq!(p.get("amount"), Some("100"));
        let meta = p.map("metadata");
        assert_eq!(meta.len(), 1);
        assert_eq!(meta["reservation_id"], "r1");
        assert_eq!(
            p.unknown(&["amount", "metadata", "currency", "expand"]),
            None
        );
        assert_eq!(
            p.unknown(&["amount", "metadata", "currency"]),
            Some("expand")
        );
    }

    #[test]
    fn canonical_ignores_order() {
        let a = Params::parse(None, b"a=1&b=2");
        let b = Params::parse(None, b"b=2&a=1");
        let c = Params::parse(None, b"b=3&a=1");
        assert_eq!(a.canonical(), b.canonical());
        assert_ne!(a.canonical(), c.canonical());
    }
}
