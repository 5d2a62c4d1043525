use crate::error::StoreError;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, ConnectOptions, Connection, Executor};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone, Debug)]
pub enum DbConfig {
    /// The embedded default: one SQLite file in WAL mode.
    Sqlite {
        path: PathBuf,
    },
    Postgres {
        url: String,
    },
}

impl DbConfig {
    /// `EASM_DATABASE_URL` wins; otherwise `easm.db` under the data directory.
    pub fn from_settings(database_url: Option<&str>, data_dir: &std::path::Path) -> DbConfig {
        match database_url {
            Some(url) if !url.is_empty() => DbConfig::Postgres { url: url.into() },
            _ => DbConfig::Sqlite {
                path: data_dir.join("easm.db"),
            },
        }
    }
}

/// Both backends are reached through sqlx's `Any` driver so that one SQL text serves both;
/// ids are TEXT and timestamps epoch-microsecond BIGINTs, which `Any` carries. SQLite has a
/// single writer, so writes go through a one-connection pool and never race each other for the
/// write lock inside this process.
#[derive(Clone, Debug)]
pub struct Db {
    backend: Backend,
    /// PostgreSQL's URL, for connections of its own (a rebuild's bulk copy).
    url: Option<String>,
    read: AnyPool,
    write: AnyPool,
    /// Events appended through this process, for [`Db::log_grew`].
    appended: Arc<AtomicU64>,
}

impl Db {
    pub async fn connect(config: &DbConfig) -> Result<Db, StoreError> {
        sqlx::any::install_default_drivers();
        let db = match config {
            DbConfig::Sqlite { path } => {
                if let Some(dir) = path.parent() {
                    if !dir.as_os_str().is_empty() {
                        std::fs::create_dir_all(dir)
                            .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
                    }
                }
                let url = format!("sqlite://{}?mode=rwc", path.display());
                let opts = AnyConnectOptions::from_str(&url)?.disable_statement_logging();
                let sqlite_pool = |max: u32| {
                    AnyPoolOptions::new()
                        .max_connections(max)
                        .acquire_timeout(Duration::from_secs(30))
                        .after_connect(|conn, _| {
                            Box::pin(async move {
                                conn.execute("PRAGMA journal_mode = WAL").await?;
                                conn.execute("PRAGMA busy_timeout = 10000").await?;
                                conn.execute("PRAGMA synchronous = NORMAL").await?;
                                // The default 2 MiB page cache holds a few thousand findings'
                                // index pages: past that every write read its pages back from
                                // the OS (a third of an import's time at 100,000 findings).
                                conn.execute("PRAGMA cache_size = -65536").await?;
                                Ok(())
                            })
                        })
                };
                let write = sqlite_pool(1).connect_with(opts.clone()).await?;
                let read = sqlite_pool(8).connect_with(opts).await?;
                Db {
                    backend: Backend::Sqlite,
                    url: None,
                    read,
                    write,
                    appended: Arc::default(),
                }
            }
            DbConfig::Postgres { url } => {
                let opts = AnyConnectOptions::from_str(url)?.disable_statement_logging();
                // One connection on its own first: a server that is down, refuses us or fails
                // TLS is named at once, where the pool would retry until its acquire timeout.
                AnyConnection::connect_with(&opts).await?.close().await?;
                let pool = AnyPoolOptions::new()
                    .max_connections(32)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(opts)
                    .await?;
                Db {
                    backend: Backend::Postgres,
                    url: Some(url.clone()),
                    read: pool.clone(),
                    write: pool,
                    appended: Arc::default(),
                }
            }
        };
        db.migrate().await?;
        Ok(db)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        match self.backend {
            Backend::Sqlite => {
                sqlx::migrate!("../../migrations/sqlite")
                    .run(&self.write)
                    .await?
            }
            Backend::Postgres => {
                sqlx::migrate!("../../migrations/postgres")
                    .run(&self.write)
                    .await?
            }
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// PostgreSQL's URL (none on SQLite).
    pub(crate) fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }

    pub fn reader(&self) -> &AnyPool {
        &self.read
    }

    pub fn writer(&self) -> &AnyPool {
        &self.write
    }

    /// PostgreSQL plans from table statistics, which autovacuum refreshes a minute or more
    /// after a table grows, and keeps the plans of prepared statements: a plan made while the
    /// log was nearly empty (reading the whole table instead of an index) would stay in use
    /// meanwhile, and a new store's first minutes would run several times slower. The read models
    /// grow with the log (100,000 findings imported and read at once sorted a whole table for a
    /// page of 50, 51 ms, where their statistics make it 0.2 ms). So every table's statistics are
    /// refreshed here (which also replans) each time the events appended through this process
    /// double, from 1,024 to about a million; autovacuum keeps up after that. SQLite never
    /// gathers statistics of its own, and without them chose the severity index for an asset's
    /// findings of one severity (100 ms at 100,000 findings, where the asset's index takes 1).
    /// Called after an append commits; the refresh runs on its own so that no request waits
    /// for it, and a failure is only logged.
    pub(crate) fn log_grew(&self, added: u64) {
        let before = self.appended.fetch_add(added, Ordering::Relaxed);
        let after = before + added;
        let doubled = (10..=20).any(|k| before < 1 << k && after >= 1 << k);
        if doubled {
            let pool = self.write.clone();
            // SQLite's statistics from a sample, so that its one writer is held for milliseconds.
            let analyze = match self.backend {
                Backend::Postgres => "ANALYZE",
                Backend::Sqlite => "PRAGMA analysis_limit = 1000; ANALYZE",
            };
            tokio::spawn(async move {
                if let Err(e) = sqlx::raw_sql(analyze).execute(&pool).await {
                    tracing::warn!(error = %e, "could not refresh the tables' statistics");
                }
            });
        }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}
