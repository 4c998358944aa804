//! Who is calling. The buyer is whoever the API Gateway authorizer says: a Lambda authorizer
//! (`context.userId`, used on LocalStack) or the Cognito user-pool authorizer
//! (`claims.sub`, used on AWS). A user id anywhere else in the request is never trusted.

pub mod authorizer;
pub mod token;

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};
use serde_json::Value;

use crate::domain::UserId;

/// The group that may administer sales (Cognito group, or the `cognito:groups` claim of a
/// locally minted token).
pub const ADMIN_GROUP: &str = "admin";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: UserId,
    pub groups: Vec<String>,
    /// The caller's address as API Gateway saw it (for per-IP rate limits).
    pub source_ip: Option<String>,
    /// When the account was created (the `custom:created_at` claim, unix seconds), if the
    /// identity says. For the bot score's account age.
    pub created_at: Option<crate::domain::Timestamp>,
    /// The buyer's email address (Cognito's `email` claim; the local token's), if the identity
    /// carries a plausible one ([`plausible_email`]). Where notifications go.
    pub email: Option<String>,
}

/// The domain of the addresses local tokens carry (`mint-token`, the demo's crowd): RFC 2606's
/// reserved `.test`, so nothing local can ever mail a real person.
pub const LOCAL_MAIL_DOMAIN: &str = "buyers.flashsale.test";

/// An address worth keeping: at most 254 bytes (RFC 5321's path limit), one `@` with text on
/// both sides, no whitespace or control characters. Not a full RFC 5322 check: the identity
/// provider verified the address; this only keeps junk out of records and mail calls.
pub fn plausible_email(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let (local, domain) = raw.split_once('@')?;
    let ok = raw.len() <= 254
        && !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !raw.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then(|| raw.to_owned())
}

impl Identity {
    pub fn is_admin(&self) -> bool {
        self.groups.iter().any(|g| g == ADMIN_GROUP)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("the request carries no authorizer identity")]
    Missing,
    #[error("the authorizer's user id is not valid")]
    Invalid,
}

/// Groups may arrive as a JSON array, or (from Cognito through REST API mapping, and from
/// Lambda authorizer contexts, which allow only scalars) as a comma- or space-separated string.
fn groups_of(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(Value::String(s)) => s
            .trim_matches(|c| c == '[' || c == ']')
            .split([',', ' '])
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

pub fn from_request(request: &Request) -> Result<Identity, IdentityError> {
    let Some(RequestContext::ApiGatewayV1(context)) = request.request_context_ref() else {
        return Err(IdentityError::Missing);
    };
    let fields = &context.authorizer.fields;
    let claims = fields.get("claims").and_then(Value::as_object);
    let user = fields
        .get("userId")
        .and_then(Value::as_str)
        .or_else(|| claims.and_then(|c| c.get("sub")).and_then(Value::as_str))
        .ok_or(IdentityError::Missing)?;
    let groups = match fields.get("groups") {
        Some(value) => groups_of(Some(value)),
        None => groups_of(claims.and_then(|c| c.get("cognito:groups"))),
    };
    // Lambda authorizer: `createdAt` in the context; Cognito: the claim itself. A value that
    // is not a whole number of seconds is ignored (unknown age), never an error.
    let created_at = fields
        .get("createdAt")
        .or_else(|| claims.and_then(|c| c.get("custom:created_at")))
        .and_then(|v| match v {
            Value::String(s) => s.trim().parse::<i64>().ok(),
            Value::Number(n) => n.as_i64(),
            _ => None,
        })
        .filter(|secs| *secs > 0)
        .map(|secs| crate::domain::Timestamp::from_millis(secs.saturating_mul(1000)));
    // Lambda authorizer: `email` in the context (put there only when verified); Cognito: the
    // claim, only with `email_verified` true (the REST authorizer passes claims as strings). A
    // value that does not look like an address is dropped (no email), never an error.
    let cognito_email = claims
        .filter(|c| {
            matches!(c.get("email_verified"), Some(Value::Bool(true)))
                || c.get("email_verified").and_then(Value::as_str) == Some("true")
        })
        .and_then(|c| c.get("email"));
    let email = fields
        .get("email")
        .or(cognito_email)
        .and_then(Value::as_str)
        .and_then(plausible_email);
    Ok(Identity {
        user_id: UserId::parse(user).map_err(|_| IdentityError::Invalid)?,
        groups,
        source_ip: context.identity.source_ip.clone(),
        created_at,
        email,
    })
}

/// Builds the request context an authorizer would produce: for tests of the handlers.
pub fn context_for(user: &str, groups: &[&str], source_ip: &str) -> RequestContext {
    let mut context =
        lambda_http::aws_lambda_events::apigw::ApiGatewayProxyRequestContext::default();
    context
        .authorizer
        .fields
        .insert("userId".into(), Value::String(user.into()));
    context
        .authorizer
        .fields
        .insert("groups".into(), Value::String(groups.join(",")));
    context.identity.source_ip = Some(source_ip.into());
    RequestContext::ApiGatewayV1(context)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::Body;

    #[test]
    fn the_email_comes_from_the_context_or_the_cognito_claim_and_junk_is_dropped() {
        let mut context = context_for("user-1", &[], "10.0.0.1");
        if let RequestContext::ApiGatewayV1(c) = &mut context {
            c.authorizer
                .fields
                .insert("email".into(), Value::String(" ann@example.com ".into()));
        }
        let request = lambda_http::http::Request::new(Body::Empty).with_request_context(context);
        assert_eq!(
            from_request(&request).unwrap().email.as_deref(),
            Some("ann@example.com")
        );
        let mut cognito =
            lambda_http::aws_lambda_events::apigw::ApiGatewayProxyRequestContext::default();
        cognito.authorizer.fields.insert(
            "claims".into(),
            serde_json::json!({"sub": "user-2", "email": "bob@example.com", "email_verified": "true"}),
        );
        let request = lambda_http::http::Request::new(Body::Empty)
            .with_request_context(RequestContext::ApiGatewayV1(cognito));
        assert_eq!(
            from_request(&request).unwrap().email.as_deref(),
            Some("bob@example.com")
        );
        // An address the provider did not verify is not used.
        let mut unverified =
            lambda_http::aws_lambda_events::apigw::ApiGatewayProxyRequestContext::default();
        unverified.authorizer.fields.insert(
            "claims".into(),
            serde_json::json!({"sub": "user-4", "email": "eve@example.com", "email_verified": "false"}),
        );
        let request = lambda_http::http::Request::new(Body::Empty)
            .with_request_context(RequestContext::ApiGatewayV1(unverified));
        assert_eq!(from_request(&request).unwrap().email, None);
        for junk in [
            "",
            "no-at-sign",
            "@example.com",
            "ann@",
            "a@b@c",
            "ann @example.com",
            "a\u{7}@x",
        ] {
            assert_eq!(plausible_email(junk), None, "{junk:?}");
        }
        assert_eq!(plausible_email(&format!("{}@x.io", "a".repeat(260))), None);
        let plain = lambda_http::http::Request::new(Body::Empty).with_request_context(context_for(
            "user-3",
            &[],
            "10.0.0.1",
        ));
        assert_eq!(from_request(&plain).unwrap().email, None);
    }

    #[test]
    fn the_user_comes_from_the_lambda_authorizer_context() {
        let request = lambda_http::http::Request::new(Body::Empty)
            .with_request_context(context_for("user-1", &["admin"], "10.0.0.1"));
        let identity = from_request(&request).unwrap();
        assert_eq!(identity.user_id.as_str(), "user-1");
        assert!(identity.is_admin());
        assert_eq!(identity.source_ip.as_deref(), Some("10.0.0.1"));
    }

    #[test]
    fn the_user_comes_from_cognito_claims_on_aws() {
        let mut context =
            lambda_http::aws_lambda_events::apigw::ApiGatewayProxyRequestContext::default();
        context.authorizer.fields.insert(
            "claims".into(),
            serde_json::json!({ "sub": "abc-123", "cognito:groups": "buyers,admin" }),
        );
        let request = lambda_http::http::Request::new(Body::Empty)
            .with_request_context(RequestContext::ApiGatewayV1(context));
        let identity = from_request(&request).unwrap();
        assert_eq!(identity.user_id.as_str(), "abc-123");
        assert!(identity.is_admin());
    }

    #[test]
    fn the_account_creation_time_comes_from_the_context_or_the_cognito_claim() {
        let mut context = context_for("user-1", &[], "10.0.0.1");
        if let RequestContext::ApiGatewayV1(c) = &mut context {
            c.authorizer
                .fields
                .insert("createdAt".into(), "1700000000".into());
        }
        let request = lambda_http::http::Request::new(Body::Empty).with_request_context(context);
        let identity = from_request(&request).unwrap();
        assert_eq!(
            identity.created_at.map(|t| t.as_secs()),
            Some(1_700_000_000)
        );

        let mut context =
            lambda_http::aws_lambda_events::apigw::ApiGatewayProxyRequestContext::default();
        context.authorizer.fields.insert(
            "claims".into(),
            serde_json::json!({ "sub": "abc", "custom:created_at": "1700000001" }),
        );
        let request = lambda_http::http::Request::new(Body::Empty)
            .with_request_context(RequestContext::ApiGatewayV1(context));
        assert_eq!(
            from_request(&request)
                .unwrap()
                .created_at
                .map(|t| t.as_secs()),
            Some(1_700_000_001)
        );
        // Not a number: unknown, not an error.
        let mut context = context_for("user-1", &[], "10.0.0.1");
        if let RequestContext::ApiGatewayV1(c) = &mut context {
            c.authorizer
                .fields
                .insert("createdAt".into(), "yesterday".into());
        }
        let request = lambda_http::http::Request::new(Body::Empty).with_request_context(context);
        assert_eq!(from_request(&request).unwrap().created_at, None);
    }

    #[test]
    fn no_authorizer_context_means_no_identity() {
        let request = lambda_http::http::Request::new(Body::Empty);
        assert_eq!(from_request(&request), Err(IdentityError::Missing));
        let request = lambda_http::http::Request::new(Body::Empty)
            .with_request_context(RequestContext::ApiGatewayV1(Default::default()));
        assert_eq!(from_request(&request), Err(IdentityError::Missing));
    }
}
