//! The local Lambda TOKEN authorizer: verifies the bearer token and answers API Gateway with a
//! policy and the caller's identity in the context (`userId`, `groups`). Buyers may call the
//! buyer routes; admins every route. The policy covers whole route families, not the one
//! method asked about, so a cached decision stays right for the caller's other calls.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::token::TokenVerifier;
use super::ADMIN_GROUP;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenAuthorizerEvent {
    #[serde(default)]
    pub authorization_token: Option<String>,
    pub method_arn: String,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizerResponse {
    pub principal_id: String,
    pub policy_document: serde_json::Value,
    pub context: serde_json::Value,
}

/// API Gateway answers 401 when a TOKEN authorizer fails with exactly this message.
pub const UNAUTHORIZED: &str = "Unauthorized";

/// The routes a buyer may call (relative to `<api>/<stage>/`).
pub const BUYER_ROUTES: &[&str] = &[
    "POST/me/devices",
    "POST/sales/*/queue",
    "POST/sales/*/reservations",
    "GET/reservations/*",
    "POST/reservations/*/payment",
];

/// `arn:aws:execute-api:<region>:<account>:<api>/<stage>/<METHOD>/<path>` → the part up to the
/// stage.
fn api_stage_arn(method_arn: &str) -> Option<String> {
    let mut parts = method_arn.splitn(3, '/');
    let api = parts.next()?;
    let stage = parts.next()?;
    Some(format!("{api}/{stage}"))
}

pub fn authorize(
    verifier: &TokenVerifier,
    event: &TokenAuthorizerEvent,
) -> Result<AuthorizerResponse, &'static str> {
    let token = event
        .authorization_token
        .as_deref()
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .ok_or(UNAUTHORIZED)?;
    let claims = verifier.verify(token.trim()).map_err(|error| {
        tracing::info!(%error, "token refused");
        UNAUTHORIZED
    })?;
    let base = api_stage_arn(&event.method_arn).ok_or(UNAUTHORIZED)?;
    let admin = claims.groups.iter().any(|g| g == ADMIN_GROUP);
    let resources: Vec<String> = if admin {
        vec![format!("{base}/*")]
    } else {
        BUYER_ROUTES.iter().map(|r| format!("{base}/{r}")).collect()
    };
    Ok(AuthorizerResponse {
        principal_id: claims.sub.clone(),
        policy_document: json!({
            "Version": "2012-10-17",
            "Statement": [{ "Action": "execute-api:Invoke", "Effect": "Allow", "Resource": resources }],
        }),
        // Context values must be scalars: groups travel as a comma-separated string.
        context: {
            let mut context = json!({ "userId": claims.sub, "groups": claims.groups.join(",") });
            if let Some(created_at) = &claims.created_at {
                context["createdAt"] = json!(created_at);
            }
            let verified = claims.email_verified == Some(true);
            if let Some(email) = claims
                .email
                .as_deref()
                .filter(|_| verified)
                .and_then(super::plausible_email)
            {
                context["email"] = json!(email);
            }
            context
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::token::{mint, Claims};

    const ARN: &str =
        "arn:aws:execute-api:us-east-1:000000000000:api123/dev/POST/sales/s1/reservations";

    fn keys() -> (String, String) {
        let dir = std::env::temp_dir().join(format!("fs-keys-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let private = dir.join("private.pem");
        let public = dir.join("public.pem");
        assert!(std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out"
            ])
            .arg(&private)
            .output()
            .unwrap()
            .status
            .success());
        assert!(std::process::Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&private)
            .arg("-out")
            .arg(&public)
            .output()
            .unwrap()
            .status
            .success());
        let keys = (
            std::fs::read_to_string(&private).unwrap(),
            std::fs::read_to_string(&public).unwrap(),
        );
        std::fs::remove_dir_all(&dir).unwrap();
        keys
    }

    fn claims(sub: &str, groups: &[&str], exp_offset: i64, iss: &str) -> Claims {
        let now = chrono::Utc::now().timestamp();
        Claims {
            sub: sub.into(),
            iss: iss.into(),
            aud: "flashsale-api".into(),
            exp: now + exp_offset,
            iat: now,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            token_use: Some("id".into()),
            created_at: None,
            email: Some(format!("{sub}@example.com")),
            email_verified: Some(true),
        }
    }

    fn event(token: &str) -> TokenAuthorizerEvent {
        TokenAuthorizerEvent {
            authorization_token: Some(format!("Bearer {token}")),
            method_arn: ARN.into(),
        }
    }

    #[test]
    fn tokens_are_checked_for_signature_issuer_audience_and_expiry() {
        let (private, public) = keys();
        let (other_private, _) = keys();
        let verifier = TokenVerifier::new(&public, "flashsale-local", "flashsale-api").unwrap();

        // A good buyer token: buyer routes only, identity in the context.
        let good = mint(&private, &claims("buyer-1", &[], 300, "flashsale-local")).unwrap();
        let response = authorize(&verifier, &event(&good)).unwrap();
        assert_eq!(response.principal_id, "buyer-1");
        assert_eq!(response.context["userId"], "buyer-1");
        // The email claim travels in the context (where notifications go).
        assert_eq!(response.context["email"], "buyer-1@example.com");
        let resources = response.policy_document["Statement"][0]["Resource"]
            .as_array()
            .unwrap();
        assert!(resources
            .iter()
            .all(|r| !r.as_str().unwrap().contains("PUT")));
        assert!(resources.contains(&json!(
            "arn:aws:execute-api:us-east-1:000000000000:api123/dev/POST/sales/*/reservations"
        )));
        // Joining a waiting room is a buyer's call too (the e2e tests found it missing).
        assert!(resources.contains(&json!(
            "arn:aws:execute-api:us-east-1:000000000000:api123/dev/POST/sales/*/queue"
        )));

        // Admins get the whole API.
        let admin = mint(&private, &claims("ops", &["admin"], 300, "flashsale-local")).unwrap();
        let response = authorize(&verifier, &event(&admin)).unwrap();
        assert_eq!(
            response.policy_document["Statement"][0]["Resource"][0],
            "arn:aws:execute-api:us-east-1:000000000000:api123/dev/*"
        );
        assert_eq!(response.context["groups"], "admin");

        // Forged signature, expired, wrong issuer, garbage, missing: all 401.
        for token in [
            mint(&other_private, &claims("x", &[], 300, "flashsale-local")).unwrap(),
            mint(&private, &claims("x", &[], -3600, "flashsale-local")).unwrap(),
            mint(&private, &claims("x", &[], 300, "someone-else")).unwrap(),
            "not.a.token".to_string(),
        ] {
            assert_eq!(authorize(&verifier, &event(&token)), Err(UNAUTHORIZED));
        }
        let missing = TokenAuthorizerEvent {
            authorization_token: None,
            method_arn: ARN.into(),
        };
        assert_eq!(authorize(&verifier, &missing), Err(UNAUTHORIZED));
        let not_bearer = TokenAuthorizerEvent {
            authorization_token: Some(good),
            method_arn: ARN.into(),
        };
        assert_eq!(authorize(&verifier, &not_bearer), Err(UNAUTHORIZED));
    }
}
