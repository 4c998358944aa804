//! Bearer tokens for the crowd's buyers and the admin who opens the sale.
//!
//! Locally the authorizer checks RS256 tokens signed with `.local/jwt/private.pem` (what
//! `mint-token` signs; claims shaped like Cognito ID tokens). Against a stage on AWS, a
//! command prints one token per call: `--token-command 'my-idp-login --user {user}'`, where
//! `{user}` is replaced by the buyer's name and `{role}` by `buyer` or `admin` (a team's own
//! script, e.g. one that signs in Cognito test users with `aws cognito-idp admin-initiate-auth`).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use flashsale_core::identity::token::{mint, Claims};
use flashsale_core::identity::LOCAL_MAIL_DOMAIN;

pub enum TokenSource {
    /// Sign locally (LocalStack deployment).
    Local {
        private_key_pem: String,
        issuer: String,
        audience: String,
    },
    /// Run a command per token.
    Command(String),
}

impl TokenSource {
    /// The local signer with the key `./dev setup` made and the stack's issuer and audience
    /// (`flashsale-local`, `flashsale-api`: infra/lib/config.ts DEFAULTS).
    pub fn local(key_file: &Path) -> anyhow::Result<Self> {
        let private_key_pem = std::fs::read_to_string(key_file)
            .with_context(|| format!("reading {} (run ./dev setup)", key_file.display()))?;
        Ok(Self::Local {
            private_key_pem,
            issuer: "flashsale-local".into(),
            audience: "flashsale-api".into(),
        })
    }

    /// A token for `user`; `admin` adds the `admin` group; `account_age` sets the account's
    /// creation claim (`custom:created_at`) that far back (local tokens only: a command's
    /// identity provider knows its own accounts' ages).
    pub async fn token(
        &self,
        user: &str,
        admin: bool,
        account_age: Option<Duration>,
    ) -> anyhow::Result<String> {
        match self {
            TokenSource::Local {
                private_key_pem,
                issuer,
                audience,
            } => {
                let now = chrono::Utc::now().timestamp();
                let claims = Claims {
                    sub: user.into(),
                    iss: issuer.clone(),
                    aud: audience.clone(),
                    exp: now + 3600,
                    iat: now,
                    groups: if admin { vec!["admin".into()] } else { vec![] },
                    token_use: Some("id".into()),
                    created_at: account_age
                        .map(|age| (now - age.as_secs() as i64).max(0).to_string()),
                    email: Some(format!("{user}@{LOCAL_MAIL_DOMAIN}")),
                    email_verified: Some(true),
                };
                Ok(mint(private_key_pem, &claims)?)
            }
            TokenSource::Command(template) => {
                let command = template
                    .replace("{user}", user)
                    .replace("{role}", if admin { "admin" } else { "buyer" });
                let out = tokio::process::Command::new("sh")
                    .arg("-c")
                    .arg(&command)
                    .output()
                    .await
                    .with_context(|| format!("running the token command for {user}"))?;
                anyhow::ensure!(
                    out.status.success(),
                    "the token command failed for {user}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                let token = String::from_utf8(out.stdout)?.trim().to_owned();
                anyhow::ensure!(
                    !token.is_empty(),
                    "the token command printed nothing for {user}"
                );
                Ok(token)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_command_source_substitutes_user_and_role() {
        let source = TokenSource::Command("echo tok-{user}-{role}".into());
        assert_eq!(
            source.token("ann", false, None).await.unwrap(),
            "tok-ann-buyer"
        );
        assert_eq!(
            source.token("ops", true, None).await.unwrap(),
            "tok-ops-admin"
        );
        let failing = TokenSource::Command("exit 3".into());
        assert!(failing.token("ann", false, None).await.is_err());
    }
}
