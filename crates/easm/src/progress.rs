//! Progress of long command-line work, on standard error when it is a terminal; nothing at all
//! when it is not (a pipe, a log file, CI), so output meant for machines stays clean.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::Duration;

pub struct Progress(ProgressBar);

impl Progress {
    /// A spinner counting what is done: `exporting the audit log: 12,345 events (4,100/s, 3s)`.
    pub fn counting(what: &'static str, unit: &'static str) -> Progress {
        Progress::start(&format!(
            "{{spinner}} {what}: {{human_pos}} {unit} ({{per_sec}}, {{elapsed}})"
        ))
    }

    /// A spinner for work that cannot be counted as it goes: `rebuilding the read models (3s)`.
    pub fn working(what: &'static str) -> Progress {
        Progress::start(&format!("{{spinner}} {what} ({{elapsed}})"))
    }

    fn start(template: &str) -> Progress {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar.tick();
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress(bar)
    }

    pub fn add(&self, n: u64) {
        self.0.inc(n);
    }

    /// Leaves the last line on the terminal, with the final count and time.
    pub fn finish(self) {
        self.0.finish();
    }
}
