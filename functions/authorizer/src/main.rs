//! authorizer: the API Gateway TOKEN authorizer of local deployments (on AWS, Cognito's user
//! pool authorizer takes this role). Verifies RS256 bearer tokens against JWT_PUBLIC_KEY.

use flashsale_core::identity::authorizer::{authorize, TokenAuthorizerEvent};
use flashsale_core::identity::token::TokenVerifier;
use flashsale_core::{config, observability};
use lambda_runtime::{service_fn, Diagnostic, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    observability::init();
    // The environment, read once; every part takes its settings from this snapshot.
    let env = config::Env::from_process();
    let verifier = TokenVerifier::new(
        &env.required("JWT_PUBLIC_KEY")?,
        &env.required("JWT_ISSUER")?,
        &env.required("JWT_AUDIENCE")?,
    )?;
    let verifier = &verifier;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<TokenAuthorizerEvent>| async move {
            authorize(verifier, &event.payload).map_err(|message| Diagnostic {
                error_type: message.to_owned(),
                error_message: message.to_owned(),
            })
        },
    ))
    .await
}
