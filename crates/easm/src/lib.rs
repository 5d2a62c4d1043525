//! What the `easm` and `easm-bench` binaries share: the configuration, the work that runs
//! beside the API, and the command-line tools over the store.

pub mod admin;
pub mod audit;
pub mod background;
pub mod config;
pub mod mcp_bridge;
pub mod progress;
pub mod replay;
pub mod telemetry;
pub mod zone_server;

/// Ends when the process is asked to stop (Ctrl-C, SIGTERM).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

/// When the process was asked to stop, once it was: what still runs then is given the grace
/// (`EASM_SHUTDOWN_TIMEOUT`) from that moment, then cut short.
#[derive(Clone)]
pub struct Shutdown {
    asked: tokio::sync::watch::Receiver<Option<std::time::Instant>>,
    grace: std::time::Duration,
}

impl Shutdown {
    /// Listens for the signal from now on.
    pub fn listen(grace: std::time::Duration) -> Shutdown {
        let (tx, asked) = tokio::sync::watch::channel(None);
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = tx.send(Some(std::time::Instant::now()));
        });
        Shutdown { asked, grace }
    }

    /// Resolves once the process is asked to stop.
    pub fn asked(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut asked = self.asked.clone();
        async move {
            let _ = asked.wait_for(Option::is_some).await;
        }
    }

    async fn deadline(&self) {
        let mut asked = self.asked.clone();
        let Ok(at) = asked.wait_for(Option::is_some).await.map(|at| *at) else {
            return std::future::pending().await;
        };
        if let Some(at) = at {
            tokio::time::sleep_until((at + self.grace).into()).await;
        }
    }

    /// `work` to its end, or until the grace after the signal passed (then `None`: it is cut
    /// short, and `what` says what was).
    pub async fn bounded<T>(
        &self,
        what: &str,
        work: impl std::future::Future<Output = T>,
    ) -> Option<T> {
        tokio::select! {
            biased;
            done = work => Some(done),
            _ = self.deadline() => {
                tracing::warn!(what, grace_ms = self.grace.as_millis() as u64, "cut short: EASM_SHUTDOWN_TIMEOUT passed");
                None
            }
        }
    }
}

/// An error and its causes on one line, each said once (sqlx repeats its source's message in
/// its own), for the one line a failed command prints.
pub fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain().map(ToString::to_string) {
        if !line.ends_with(&cause) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&cause);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::error_line;
    use anyhow::Context;

    #[test]
    fn an_error_line_names_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let sqlx_like =
            anyhow::Error::new(io).context("error communicating with database: connection refused");
        let e = Err::<(), _>(sqlx_like)
            .context("opening the database")
            .unwrap_err();
        assert_eq!(
            error_line(&e),
            "opening the database: error communicating with database: connection refused"
        );
    }
}
