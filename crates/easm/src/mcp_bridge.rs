//! `easm mcp --url URL --key KEY`: MCP over stdio for clients that only launch local commands,
//! forwarded message by message to the Streamable HTTP endpoint. No business logic: what a
//! message means is the server's; the bridge only carries the transport's headers (the key, the
//! negotiated protocol revision, a session id if the server gives one).

use anyhow::{Context, Result};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// What the bridge keeps between messages: the transport's state, nothing of MCP's.
struct Bridge {
    client: reqwest::Client,
    url: String,
    key: String,
    session: Option<String>,
    version: Option<String>,
    out: tokio::io::Stdout,
}

pub async fn run(url: &str, key: &str) -> Result<()> {
    let mut bridge = Bridge {
        client: reqwest::Client::builder()
            .user_agent(concat!("easm-mcp-bridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("making the HTTP client")?,
        url: url.to_string(),
        key: key.to_string(),
        session: None,
        version: None,
        out: tokio::io::stdout(),
    };
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await.context("reading stdin")? {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(&line) {
            Ok(message) => bridge.forward(&line, &message).await?,
            Err(e) => {
                let error = json!({"jsonrpc": "2.0", "id": null,
                    "error": {"code": -32700, "message": format!("parse error: {e}")}});
                bridge.write(&error).await?;
            }
        }
    }
    Ok(())
}

impl Bridge {
    /// POST one message; write what the server answers (JSON or an event stream) to stdout.
    async fn forward(&mut self, line: &str, message: &Value) -> Result<()> {
        let mut req = self
            .client
            .post(&self.url)
            .bearer_auth(&self.key)
            .header(ACCEPT, "application/json, text/event-stream")
            .header(CONTENT_TYPE, "application/json")
            .body(line.to_string());
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        if let Some(v) = &self.version {
            req = req.header("mcp-protocol-version", v);
        }
        let initialize = message["method"] == "initialize";
        let mut res = match req.send().await {
            Ok(res) => res,
            Err(e) => {
                return self
                    .fail(message, format!("{} could not be reached: {e}", self.url))
                    .await
            }
        };
        if let Some(s) = res
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
        {
            self.session = Some(s.to_string());
        }
        let status = res.status();
        let event_stream = res
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
        if status == reqwest::StatusCode::ACCEPTED {
            return Ok(());
        }
        if !status.is_success() {
            let body: Value = res.json().await.unwrap_or(Value::Null);
            let why = body["error"].as_str().unwrap_or("no details");
            return self.fail(message, format!("HTTP {status}: {why}")).await;
        }
        if event_stream {
            let mut pending = String::new();
            while let Some(chunk) = res.chunk().await.context("reading the event stream")? {
                pending.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = pending.find("\n\n") {
                    let event: String = pending.drain(..end + 2).collect();
                    let data: Vec<&str> = event
                        .lines()
                        .filter_map(|l| l.strip_prefix("data:"))
                        .map(str::trim_start)
                        .collect();
                    if let Ok(answer) = serde_json::from_str::<Value>(&data.join("\n")) {
                        self.answered(initialize, &answer).await?;
                    }
                }
            }
            return Ok(());
        }
        let answer: Value = res.json().await.context("reading the answer")?;
        match answer {
            Value::Array(batch) => {
                for a in &batch {
                    self.answered(initialize, a).await?;
                }
                Ok(())
            }
            one => self.answered(initialize, &one).await,
        }
    }

    /// Pass an answer on; the revision `initialize` agreed on goes with every later message.
    async fn answered(&mut self, initialize: bool, answer: &Value) -> Result<()> {
        if let Some(v) = answer["result"]["protocolVersion"]
            .as_str()
            .filter(|_| initialize)
        {
            self.version = Some(v.to_string());
        }
        self.write(answer).await
    }

    /// A request the endpoint did not answer gets a JSON-RPC error; a notification nothing.
    async fn fail(&mut self, message: &Value, why: String) -> Result<()> {
        tracing::warn!("{why}");
        match message.get("id") {
            Some(id) if !id.is_null() => {
                let error = json!({"jsonrpc": "2.0", "id": id,
                    "error": {"code": -32603, "message": why}});
                self.write(&error).await
            }
            _ => Ok(()),
        }
    }

    async fn write(&mut self, message: &Value) -> Result<()> {
        let mut line = serde_json::to_vec(message)?;
        line.push(b'\n');
        self.out.write_all(&line).await.context("writing stdout")?;
        self.out.flush().await.context("writing stdout")
    }
}
