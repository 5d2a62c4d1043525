//! `easm audit`: export an organization's log with a signed digest, verify such a file offline,
//! and print the public key that verifies exports.

use crate::progress::Progress;
use anyhow::{bail, Context, Result};
use easm_api::audit_export::{export_lines, Range};
use easm_events::OrgId;
use easm_store::{audit_signing_secret, Db};
use futures_util::StreamExt;
use std::io::{BufRead, Write};
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum Audit {
    /// Write an organization's events as NDJSON with their chain hashes, then a signed digest.
    Export {
        #[arg(long)]
        org: OrgId,
        /// RFC 3339; events at or after it.
        #[arg(long)]
        since: Option<String>,
        /// RFC 3339; events before it.
        #[arg(long)]
        until: Option<String>,
        /// The file to write (standard output when absent).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check an export: every hash, the chain between lines, and the signed digest. Names the
    /// first line that was modified, removed, inserted or reordered and exits 1. Needs no
    /// database.
    Verify {
        file: PathBuf,
        /// The server's public key (base64); without it, the key named in the digest is used.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Print the public key (base64 Ed25519) that verifies this server's exports.
    PublicKey,
}

fn time(field: &str, v: Option<String>) -> Result<Option<(i64, String)>> {
    v.map(|s| {
        let t = easm_events::parse_timestamp(&s)
            .with_context(|| format!("--{field}: not an RFC 3339 time or a date: {s}"))?;
        Ok((t.timestamp_micros(), s))
    })
    .transpose()
}

/// Verify a file; true when intact (the report goes to standard output as JSON).
pub fn verify(file: &PathBuf, public_key: Option<&str>) -> Result<bool> {
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let lines = std::io::BufReader::new(f).lines().map_while(|l| l.ok());
    match easm_events::verify(lines, public_key) {
        Ok(v) => {
            println!(
                "{}",
                serde_json::json!({"valid": true, "orgId": v.org_id, "events": v.count, "lastHash": v.last_hash, "publicKey": v.public_key})
            );
            Ok(true)
        }
        Err(t) => {
            println!(
                "{}",
                serde_json::json!({"valid": false, "line": t.line, "reason": t.reason})
            );
            Ok(false)
        }
    }
}

pub async fn run(db: &Db, command: Audit) -> Result<()> {
    match command {
        Audit::Export {
            org,
            since,
            until,
            out,
        } => {
            let range = Range {
                since: time("since", since)?,
                until: time("until", until)?,
            };
            let secret = audit_signing_secret(db).await?;
            let log = easm_store::EventLog::new(db.clone());
            let mut sink: Box<dyn Write> = match &out {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("creating {}", p.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let mut lines = std::pin::pin!(export_lines(log, org, range, secret));
            let progress = Progress::counting("exporting the audit log", "lines");
            while let Some(chunk) = lines.next().await {
                let chunk = chunk?;
                sink.write_all(chunk.as_bytes())?;
                progress.add(chunk.matches('\n').count() as u64);
            }
            sink.flush()?;
            progress.finish();
        }
        Audit::PublicKey => {
            println!(
                "{}",
                easm_events::public_key(&audit_signing_secret(db).await?)
            );
        }
        Audit::Verify { .. } => bail!("verify runs without a database"),
    }
    Ok(())
}
