//! One HTTP client for everything the crowd talks to: the API (https on AWS, http on
//! LocalStack), the payment sandbox and the fault proxies' control ports.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// An answer: status, headers, body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Why a call got no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Transport(String),
}

#[derive(Clone)]
pub struct Http {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Http {
    pub fn new() -> anyhow::Result<Self> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::aws_lc_rs::default_provider())?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(20))
            .pool_max_idle_per_host(256)
            .build(https);
        Ok(Self { client })
    }

    /// One call. `body` is sent as JSON when given.
    pub async fn call(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&serde_json::Value>,
        timeout: Duration,
    ) -> Result<Reply, CallError> {
        let mut request = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| CallError::Transport(e.to_string()))?;
            let value =
                HeaderValue::from_str(value).map_err(|e| CallError::Transport(e.to_string()))?;
            request = request.header(name, value);
        }
        let payload = match body {
            Some(json) => {
                request = request.header(CONTENT_TYPE, "application/json");
                Bytes::from(json.to_string())
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(payload))
            .map_err(|e| CallError::Transport(e.to_string()))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| CallError::Transport(e.to_string()))?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| CallError::Transport(e.to_string()))?
                .to_bytes();
            Ok(Reply {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| CallError::Timeout(timeout))?
    }

    /// GET returning JSON; an error for anything but 2xx.
    pub async fn get_json(&self, url: &str) -> anyhow::Result<serde_json::Value> {
        let reply = self
            .call(Method::GET, url, &[], None, Duration::from_secs(30))
            .await?;
        anyhow::ensure!(
            (200..300).contains(&reply.status),
            "GET {url}: {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        Ok(reply.json())
    }

    /// POST of a JSON body returning JSON; an error for anything but 2xx.
    pub async fn post_json(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let reply = self
            .call(Method::POST, url, &[], Some(body), Duration::from_secs(30))
            .await?;
        anyhow::ensure!(
            (200..300).contains(&reply.status),
            "POST {url}: {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        Ok(reply.json())
    }
}
