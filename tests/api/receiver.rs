//! A webhook receiver for tests: a real HTTP server on 127.0.0.1 that records every request and
//! can fail on purpose (the first N requests, or all) or answer slowly.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: String,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

#[derive(Default)]
struct Behaviour {
    received: Mutex<Vec<Received>>,
    fail_first: AtomicUsize,
    fail_always: AtomicBool,
    delay_ms: AtomicU64,
    /// Failures answer 429 with this `Retry-After` instead of 503.
    retry_after: Mutex<Option<String>>,
    /// When each request arrived.
    arrivals: Mutex<Vec<Instant>>,
}

pub struct Receiver {
    pub url: String,
    state: Arc<Behaviour>,
    task: tokio::task::JoinHandle<()>,
}

async fn receive(
    State(s): State<Arc<Behaviour>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    s.arrivals.lock().unwrap().push(Instant::now());
    s.received.lock().unwrap().push(Received {
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let delay = s.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let failing = s.fail_always.load(Ordering::SeqCst)
        || s.fail_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
    let retry_after = s.retry_after.lock().unwrap().clone();
    match (failing, retry_after) {
        (true, Some(after)) => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", after)],
            "slow down",
        )
            .into_response(),
        (true, None) => (StatusCode::SERVICE_UNAVAILABLE, "try later").into_response(),
        (false, _) => (StatusCode::OK, "thanks").into_response(),
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state = Arc::new(Behaviour::default());
        let app = axum::Router::new()
            .fallback(axum::routing::post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { url, state, task }
    }

    /// Answer 503 to the next `n` requests.
    pub fn fail_first(&self, n: usize) {
        self.state.fail_first.store(n, Ordering::SeqCst);
    }

    pub fn fail_always(&self, on: bool) {
        self.state.fail_always.store(on, Ordering::SeqCst);
    }

    pub fn answer_after(&self, delay: Duration) {
        self.state
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Failures answer 429 with `Retry-After: <value>`.
    pub fn throttle_with(&self, retry_after: &str) {
        *self.state.retry_after.lock().unwrap() = Some(retry_after.to_string());
    }

    pub fn arrivals(&self) -> Vec<Instant> {
        self.state.arrivals.lock().unwrap().clone()
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Every request so far, once there are at least `n` (panics after `timeout`).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "receiver got {} requests, expected {n}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
