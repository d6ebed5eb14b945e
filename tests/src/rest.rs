//! The shim's REST API from a test's side: requests with the token, and each answer's status,
//! headers and JSON body, with the checks every test makes of them.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::Http;

/// The shim's REST API as a client calls it: every request with the token.
pub struct Api<'a> {
    pub shim: &'a Http,
    pub http: reqwest::Client,
}

/// What a request got back.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }

    /// The `Location` header, if any.
    pub fn location(&self) -> Option<&str> {
        self.headers.get("location").and_then(|l| l.to_str().ok())
    }

    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(self.status.as_u16(), status, "{self:#?}");
        self
    }

    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) -> &Self {
        self.expect(status);
        assert_eq!(self.code(), code, "{self:#?}");
        assert!(!self.message().is_empty(), "{self:#?}");
        self
    }
}

impl<'a> Api<'a> {
    /// A client of `shim` whose requests each end within `timeout`.
    pub fn new(shim: &'a Http, timeout: Duration) -> Api<'a> {
        Api {
            shim,
            http: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .expect("reqwest client"),
        }
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.shim.url(path))
            .bearer_auth(&self.shim.token)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("HTTP request: {e}\n{}", self.shim.logs()));
        let status = response.status();
        let headers = response.headers().clone();
        let stream = headers
            .get("content-type")
            .is_some_and(|t| t.to_str().unwrap_or("").starts_with("text/event-stream"));
        if stream {
            // An open event stream: its head is the answer.
            return Answer {
                status,
                headers,
                body: Value::Null,
            };
        }
        let bytes = response.bytes().await.expect("HTTP body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "{status}: body is not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(self.request(Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(self.request(Method::POST, path).json(&body))
            .await
    }

    pub async fn post_empty(&self, path: &str) -> Answer {
        self.send(self.request(Method::POST, path)).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(self.request(Method::DELETE, path)).await
    }
}
