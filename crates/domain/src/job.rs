//! The lifecycle every background job shares (scans, discovery): queued, running, then ended
//! exactly once.

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
