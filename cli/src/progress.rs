//! Progress displays on standard error (hidden with --json or when standard error is not a terminal).

use crate::runtime::RunStats;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use synctrail::model::Status;

/// A progress bar over a known number of steps, or a counter when the total is unknown.
pub fn bar(total: Option<u64>, unit: &str, hidden: bool) -> ProgressBar {
    let bar = match total {
        Some(total) => ProgressBar::new(total),
        None => ProgressBar::new_spinner(),
    };
    let template = match total {
        Some(_) => format!("{{spinner}} [{{elapsed_precise}}] {{bar:32}} {{pos}}/{{len}} {unit} {{msg}}"),
        None => format!("{{spinner}} [{{elapsed_precise}}] {{pos}} {unit} {{msg}}"),
    };
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    if hidden {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar
}

/// The display of a local run: records handled against what the queue held, and the statuses reached.
pub struct RunProgress {
    bar: ProgressBar,
}

impl RunProgress {
    /// A display for a run over a queue holding `queued` messages.
    pub fn new(queued: u64, hidden: bool) -> Self {
        Self { bar: bar(Some(queued.max(1)), "records", hidden) }
    }

    /// Shows `stats` (called by the runtime about ten times a second).
    pub fn update(&self, stats: &RunStats) {
        if let Some(len) = self.bar.length() {
            if stats.records > len {
                self.bar.set_length(stats.records);
            }
        }
        self.bar.set_position(stats.records);
        self.bar.set_message(status_summary(stats));
    }

    /// Leaves the bar as it is and moves on.
    pub fn finish(&self) {
        self.bar.finish();
    }
}

/// `completed 120 · dropped 4 · …` for the statuses reached so far.
pub fn status_summary(stats: &RunStats) -> String {
    let mut parts: Vec<String> = Status::ALL
        .iter()
        .filter_map(|s| stats.statuses.get(s).filter(|n| **n > 0).map(|n| format!("{s} {n}")))
        .collect();
    if stats.crashes > 0 {
        parts.push(format!("crashes {}", stats.crashes));
    }
    parts.join(" · ")
}
