//! The outbound HTTPS client the adapters of hosted services share (Stripe, Turnstile): hyper 1
//! over rustls with the aws-lc-rs provider and the webpki roots, the stack the AWS SDK already
//! links into every Lambda, so an adapter adds no crates to the build. Build one per adapter per
//! cold start: it keeps a pool of connections.

use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

pub type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A client that speaks https, and plain http only where [`check_endpoint`] allowed it.
/// `connect_timeout` bounds the TCP connect; idle pooled connections are dropped after 30 s
/// (hosted APIs close theirs after about a minute).
pub fn https_client(connect_timeout: Duration) -> Result<HttpsClient, rustls::Error> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::aws_lc_rs::default_provider())?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(https))
}

/// Why an endpoint URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("{0:?} is not an http(s) URL with a host and no query or fragment")]
    NotAUrl(String),
    #[error("{0:?} has a path; give the base URL only")]
    HasPath(String),
    #[error("{0:?} uses plain http to another machine: secrets travel in every request, so only 127.0.0.1, ::1 or localhost may use http")]
    PlainHttp(String),
}

/// Checks an endpoint URL: https, or http to this machine only (a local stand-in); with
/// `base_only`, no path. Returns it without a trailing `/`.
pub fn check_endpoint(raw: &str, base_only: bool) -> Result<String, EndpointError> {
    let url = raw.trim().trim_end_matches('/').to_owned();
    let uri: Uri = url
        .parse()
        .map_err(|_| EndpointError::NotAUrl(url.clone()))?;
    let host = uri.host().unwrap_or_default();
    if host.is_empty() || uri.query().is_some() || url.contains('#') {
        return Err(EndpointError::NotAUrl(url));
    }
    if base_only && !matches!(uri.path(), "" | "/") {
        return Err(EndpointError::HasPath(url));
    }
    match uri.scheme_str() {
        Some("https") => Ok(url),
        Some("http") if matches!(host, "127.0.0.1" | "[::1]" | "::1" | "localhost") => Ok(url),
        Some("http") => Err(EndpointError::PlainHttp(url)),
        _ => Err(EndpointError::NotAUrl(url)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_https_or_loopback_http() {
        assert_eq!(
            check_endpoint("https://api.stripe.com/", true),
            Ok("https://api.stripe.com".into())
        );
        assert_eq!(
            check_endpoint("http://127.0.0.1:12111", true),
            Ok("http://127.0.0.1:12111".into())
        );
        assert!(check_endpoint(
            "https://challenges.cloudflare.com/turnstile/v0/siteverify",
            false
        )
        .is_ok());
        assert!(matches!(
            check_endpoint(
                "https://challenges.cloudflare.com/turnstile/v0/siteverify",
                true
            ),
            Err(EndpointError::HasPath(_))
        ));
        assert!(matches!(
            check_endpoint("http://api.example.com", true),
            Err(EndpointError::PlainHttp(_))
        ));
        for bad in [
            "",
            "api.stripe.com",
            "ftp://x",
            "https://x/?a=1",
            "https://x/#f",
        ] {
            assert!(check_endpoint(bad, false).is_err(), "{bad}");
        }
    }
}
