//! The verifiable export of an organization's log, produced page by page so that neither the
//! server nor the CLI holds it whole: event lines in chain order, then the signed digest.

use easm_events::{digest_line, export_line, DigestFacts, OrgId, GENESIS_HASH};
use easm_store::{EventLog, FeedFilter, StoreError};
use futures_util::Stream;

const PAGE: i64 = 1000;

/// The time range of an export, epoch microseconds (`until` excluded), with the texts the
/// digest states.
#[derive(Clone, Debug, Default)]
pub struct Range {
    pub since: Option<(i64, String)>,
    pub until: Option<(i64, String)>,
}

struct State {
    after: i64,
    count: u64,
    first_prev: Option<String>,
    last_hash: Option<String>,
    done: bool,
}

/// The export's text in chunks of whole lines, each ending in a newline.
pub fn export_lines(
    log: EventLog,
    org_id: OrgId,
    range: Range,
    secret: [u8; 32],
) -> impl Stream<Item = Result<String, StoreError>> {
    let filter = FeedFilter {
        since: range.since.as_ref().map(|s| s.0),
        until: range.until.as_ref().map(|u| u.0),
        chain_order: true,
        ..FeedFilter::default()
    };
    let start = State {
        after: 0,
        count: 0,
        first_prev: None,
        last_hash: None,
        done: false,
    };
    futures_util::stream::unfold(start, move |mut st| {
        let (log, org_id, filter, range) =
            (log.clone(), org_id.clone(), filter.clone(), range.clone());
        async move {
            if st.done {
                return None;
            }
            let events = match log.org_after(&org_id, st.after, PAGE, &filter).await {
                Ok(e) => e,
                Err(e) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
            };
            let mut chunk = String::new();
            for e in &events {
                st.first_prev.get_or_insert_with(|| e.prev_hash.clone());
                st.last_hash = Some(e.hash.clone());
                st.after = e.chain_seq;
                st.count += 1;
                chunk.push_str(&export_line(e));
                chunk.push('\n');
            }
            if (events.len() as i64) < PAGE {
                // An empty export is anchored at the genesis hash.
                let anchor = st.first_prev.clone().unwrap_or_else(|| GENESIS_HASH.into());
                let facts = DigestFacts {
                    org_id: org_id.to_string(),
                    count: st.count,
                    last_hash: st.last_hash.clone().unwrap_or_else(|| anchor.clone()),
                    first_prev_hash: anchor,
                    since: range.since.map(|s| s.1),
                    until: range.until.map(|u| u.1),
                    exported_at: easm_events::format_timestamp(&chrono::Utc::now()),
                };
                chunk.push_str(&digest_line(&facts, &secret));
                chunk.push('\n');
                st.done = true;
            }
            Some((Ok(chunk), st))
        }
    })
}
