//! Progress reporting. Library code never prints: long work reports through
//! [`Progress`], and the CLI decides whether to draw a bar (only on a terminal).

pub trait Progress: Send + Sync {
    /// A new phase of `total` units (bytes) begins.
    fn start(&self, what: &str, total: u64);
    fn advance(&self, n: u64);
    fn finish(&self);
}

/// Reports nothing: for tests, scripts and unattended runs.
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

/// A terminal progress bar (indicatif).
pub struct Bar(std::sync::Mutex<Option<indicatif::ProgressBar>>);

impl Bar {
    pub fn new() -> Self {
        Bar(std::sync::Mutex::new(None))
    }
}

impl Default for Bar {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for Bar {
    fn start(&self, what: &str, total: u64) {
        let pb = indicatif::ProgressBar::new(total);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        pb.set_message(what.to_string());
        *self.0.lock().unwrap() = Some(pb);
    }
    fn advance(&self, n: u64) {
        if let Some(pb) = &*self.0.lock().unwrap() {
            pb.inc(n);
        }
    }
    fn finish(&self) {
        if let Some(pb) = self.0.lock().unwrap().take() {
            pb.finish_and_clear();
        }
    }
}
