//! mint-token: signs local bearer tokens with `.local/jwt/private.pem` (made by `./dev setup`),
//! shaped like Cognito ID tokens, for the local authorizer.
//!
//! Usage: mint-token [--sub USER] [--admin] [--ttl SECONDS] [--count N] [--account-age SECONDS]
//!   [--email ADDRESS | --no-email]
//!   --email sets the `email` claim (default `<user>@buyers.flashsale.test`, a reserved domain
//!   that never reaches anyone); --no-email leaves it out.
//!   --count N prints N tokens for users USER-0 .. USER-(N-1), one per line (load tests).
//!   --account-age S sets `custom:created_at` to S seconds ago (the bot score's account age;
//!   without it the token says nothing about the account's age, like a Cognito user created
//!   before the attribute existed).

use anyhow::{bail, Context};
use flashsale_core::identity::token::{mint, Claims};

fn main() -> anyhow::Result<()> {
    let mut sub = "buyer-1".to_string();
    let mut admin = false;
    let mut ttl: i64 = 3600;
    let mut count: Option<usize> = None;
    let mut account_age: Option<i64> = None;
    let mut email: Option<Option<String>> = None;
    let mut key_path = std::path::PathBuf::from(".local/jwt/private.pem");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--sub" => sub = args.next().context("--sub needs a value")?,
            "--admin" => admin = true,
            "--ttl" => ttl = args.next().context("--ttl needs a value")?.parse()?,
            "--count" => count = Some(args.next().context("--count needs a value")?.parse()?),
            "--key" => key_path = args.next().context("--key needs a value")?.into(),
            "--account-age" => {
                account_age = Some(
                    args.next()
                        .context("--account-age needs seconds")?
                        .parse()?,
                )
            }
            "--email" => email = Some(Some(args.next().context("--email needs an address")?)),
            "--no-email" => email = Some(None),
            other => bail!("unknown argument {other}"),
        }
    }
    let key = std::fs::read_to_string(&key_path)
        .with_context(|| format!("reading {} (run ./dev setup)", key_path.display()))?;
    let now = chrono::Utc::now().timestamp();
    let claims = |sub: String| Claims {
        email: match &email {
            Some(chosen) => chosen.clone(),
            None => Some(format!(
                "{sub}@{}",
                flashsale_core::identity::LOCAL_MAIL_DOMAIN
            )),
        },
        email_verified: Some(!matches!(email, Some(None))),
        sub,
        iss: std::env::var("JWT_ISSUER").unwrap_or_else(|_| "flashsale-local".into()),
        aud: std::env::var("JWT_AUDIENCE").unwrap_or_else(|_| "flashsale-api".into()),
        exp: now + ttl,
        iat: now,
        groups: if admin { vec!["admin".into()] } else { vec![] },
        token_use: Some("id".into()),
        created_at: account_age.map(|age| (now - age).to_string()),
    };
    match count {
        None => println!("{}", mint(&key, &claims(sub))?),
        Some(n) => {
            for i in 0..n {
                println!("{}", mint(&key, &claims(format!("{sub}-{i}")))?);
            }
        }
    }
    Ok(())
}
