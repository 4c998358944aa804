//! Bearer-token verification for the local Lambda authorizer: RS256 JWTs whose claims mimic
//! Cognito's (`sub`, `cognito:groups`, `token_use`), checked for signature, issuer, audience
//! and expiry. On AWS, the Cognito user-pool authorizer does this job with the pool's JWKS.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    #[serde(
        rename = "cognito:groups",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub groups: Vec<String>,
    #[serde(default)]
    pub token_use: Option<String>,
    /// When the account was created, unix seconds as a string: Cognito's custom attribute
    /// `custom:created_at` (custom attributes reach the ID token as strings), written once at
    /// sign-up confirmation. The bot score's account age; absent = unknown.
    #[serde(
        rename = "custom:created_at",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub created_at: Option<String>,
    /// The account's email address, as Cognito's ID token carries it (`email`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Whether the identity provider verified it (`email_verified`): an address nobody proved
    /// to own is never mailed (a buyer could otherwise point notices at anyone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the key is not a valid RSA PEM key")]
    BadKey,
    #[error("the token is invalid: {0:?}")]
    Invalid(jsonwebtoken::errors::ErrorKind),
}

/// Verifies tokens against one RSA public key, one issuer and one audience.
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl TokenVerifier {
    pub fn new(public_key_pem: &str, issuer: &str, audience: &str) -> Result<Self, TokenError> {
        let key =
            DecodingKey::from_rsa_pem(public_key_pem.as_bytes()).map_err(|_| TokenError::BadKey)?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        Ok(Self { key, validation })
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        decode::<Claims>(token, &self.key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| TokenError::Invalid(e.into_kind()))
    }
}

/// Signs a token (the dev tooling's `mint-token`, and tests).
pub fn mint(private_key_pem: &str, claims: &Claims) -> Result<String, TokenError> {
    let key =
        EncodingKey::from_rsa_pem(private_key_pem.as_bytes()).map_err(|_| TokenError::BadKey)?;
    encode(&Header::new(Algorithm::RS256), claims, &key)
        .map_err(|e| TokenError::Invalid(e.into_kind()))
}
