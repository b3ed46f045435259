//! kiln's command-line client: `kiln submit`, `jobs`, `metrics`, `cancel`, `generate` and
//! `checkpoints` talk to a running server over its HTTP API, as any other client would.
//!
//! [`Client`] sends requests with the API key and turns problem+json answers into errors that
//! name what the server said; [`sse`] reads the event stream; [`follow`] draws a job's progress
//! (bars on a terminal, one line per epoch in a log); [`table`] lays out epoch metrics;
//! [`stream`] reopens a dropped event stream; [`watch`] shows every job's changes (`kiln jobs
//! --watch`); [`commands`] are the subcommands.

pub mod commands;
pub mod follow;
pub mod sse;
pub mod stream;
pub mod table;
pub mod watch;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;

use crate::config::Secret;

/// Where the server is and how to authenticate: flags shared by every client subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// The kiln server's base URL.
    #[arg(long, env = "KILN_SERVER", default_value = "http://127.0.0.1:8080", value_parser = server_url)]
    pub server: String,
    /// The API key to send as a bearer token (not needed for a server without keys).
    #[arg(long, env = "KILN_API_KEY", hide_env_values = true)]
    pub api_key: Option<Secret>,
}

/// `--server`, checked before any request: an `http` or `https` URL.
fn server_url(text: &str) -> Result<String, String> {
    let url =
        reqwest::Url::parse(text).map_err(|e| format!("not a URL ({e}); e.g. http://127.0.0.1:8080"))?;
    match url.scheme() {
        "http" | "https" => Ok(text.to_string()),
        other => Err(format!("kiln speaks http or https, not {other}; e.g. http://127.0.0.1:8080")),
    }
}

/// `error` and every cause under it, joined: reqwest's own message ("error sending request")
/// names no cause, its sources do ("Connection refused").
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

/// Why a request did not succeed, in words for the terminal.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {server}: {}", with_causes(source))]
    Unreachable { server: String, source: reqwest::Error },
    /// The server answered with an error (its problem+json `detail`, or the status alone).
    #[error("{status}: {detail}")]
    Refused { status: StatusCode, detail: String },
    #[error("{0}")]
    Other(String),
}

/// A client of one server.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
}

impl Client {
    pub fn new(args: &ServerArgs) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: args.server.trim_end_matches('/').to_string(),
            key: args.api_key.as_ref().map(|k| k.0.clone()),
        }
    }

    /// A request to `path` (from the server's root), with the key.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    /// Sends `request`; an answer other than 2xx becomes [`ClientError::Refused`].
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, ClientError> {
        let response = request
            .send()
            .await
            .map_err(|source| ClientError::Unreachable { server: self.base.clone(), source })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let detail = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|p| p["detail"].as_str().or(p["title"].as_str()).map(str::to_string))
            .unwrap_or(body);
        Err(ClientError::Refused { status, detail })
    }

    /// GET `path` as JSON.
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        json(self.send(self.request(Method::GET, path)).await?).await
    }

    /// POST `body` as JSON to `path`; the answer as JSON.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        json(self.send(self.request(Method::POST, path).json(body)).await?).await
    }
}

async fn json(response: Response) -> Result<Value, ClientError> {
    response.json().await.map_err(|e| ClientError::Other(format!("the server's answer is not JSON: {e}")))
}
