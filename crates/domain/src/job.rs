//! The lifecycle every background job shares (scans, discovery): queued, running, then ended
//! exactly once; and which job a detection or an alert comes from.

use easm_events::{DiscoveryJobId, ScanJobId};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JobStatus {
    #[default]
    None,
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::None => "none",
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// The statuses a job can be stored with (`none`, a job not requested yet, never is).
    pub const STORED: [JobStatus; 5] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    /// A stored status.
    pub fn parse(s: &str) -> Option<JobStatus> {
        JobStatus::STORED
            .into_iter()
            .find(|status| status.as_str() == s)
    }

    /// Queued or running: the job still holds its (asset, profile) slot.
    pub fn active(self) -> bool {
        matches!(self, JobStatus::Queued | JobStatus::Running)
    }
}

/// The job a detection comes from: a scan (the built-in scanner, or the job an import of nuclei
/// results completes), or a discovery job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DetectedBy {
    Scan(ScanJobId),
    Discovery(DiscoveryJobId),
}

impl DetectedBy {
    pub(crate) fn scan(&self) -> Option<ScanJobId> {
        match self {
            DetectedBy::Scan(id) => Some(id.clone()),
            DetectedBy::Discovery(_) => None,
        }
    }

    pub(crate) fn discovery(&self) -> Option<DiscoveryJobId> {
        match self {
            DetectedBy::Discovery(id) => Some(id.clone()),
            DetectedBy::Scan(_) => None,
        }
    }

    /// The job of an event's `scanJobId` or `discoveryJobId`.
    pub(crate) fn of(
        scan: &Option<ScanJobId>,
        discovery: &Option<DiscoveryJobId>,
    ) -> Option<DetectedBy> {
        match (scan, discovery) {
            (Some(s), _) => Some(DetectedBy::Scan(s.clone())),
            (None, Some(d)) => Some(DetectedBy::Discovery(d.clone())),
            (None, None) => None,
        }
    }
}

impl std::fmt::Display for DetectedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DetectedBy::Scan(id) => write!(f, "scan {id}"),
            DetectedBy::Discovery(id) => write!(f, "discovery job {id}"),
        }
    }
}
