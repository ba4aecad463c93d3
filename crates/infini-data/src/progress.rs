//! Progress reporting: a live bar on a terminal, plain periodic lines otherwise (CI, logs, pipes).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often the plain-line fallback prints.
const PLAIN_EVERY: Duration = Duration::from_secs(10);

/// A progress reporter for a long job counted in some unit (documents, tokens, steps).
pub struct Progress {
    label: String,
    unit: &'static str,
    total: Option<u64>,
    position: u64,
    message: String,
    start: Instant,
    last_line: Instant,
    bar: Option<ProgressBar>,
    /// Off a terminal, print a line every this many units instead of every 10 seconds.
    plain_every: Option<u64>,
}

impl Progress {
    /// Starts reporting; `total` is the expected count if known.
    pub fn new(label: impl Into<String>, unit: &'static str, total: Option<u64>) -> Self {
        let label = label.into();
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(t) => ProgressBar::new(t),
                None => ProgressBar::new_spinner(),
            };
            let template = if total.is_some() {
                "{prefix} [{bar:30}] {human_pos}/{human_len} {unit} ({per_sec}, ETA {eta}) {msg}"
            } else {
                "{prefix} {spinner} {human_pos} {unit} ({per_sec}) {msg}"
            };
            let template = template.replace("{unit}", unit);
            bar.set_style(ProgressStyle::with_template(&template).expect("valid template").progress_chars("=> "));
            bar.set_prefix(label.clone());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let now = Instant::now();
        Self { label, unit, total, position: 0, message: String::new(), start: now, last_line: now, bar, plain_every: None }
    }

    /// Off a terminal, print a line every `n` units (instead of every 10 seconds).
    pub fn with_plain_every(mut self, n: u64) -> Self {
        self.plain_every = (n > 0).then_some(n);
        self
    }

    /// Sets the absolute position.
    pub fn set_position(&mut self, position: u64) {
        let previous = std::mem::replace(&mut self.position, position);
        let due = match self.plain_every {
            Some(n) => position / n > previous / n,
            None => self.last_line.elapsed() >= PLAIN_EVERY,
        };
        match &self.bar {
            Some(bar) => bar.set_position(position),
            None if due => {
                self.last_line = Instant::now();
                eprintln!("{}", self.line());
            }
            None => {}
        }
    }

    /// Sets the free-text part shown after the counts (e.g. the current loss).
    pub fn set_message(&mut self, message: impl Into<String>) {
        self.message = message.into();
        if let Some(bar) = &self.bar {
            bar.set_message(self.message.clone());
        }
    }

    /// Prints a line above the bar (or plainly) without disturbing it.
    pub fn println(&self, line: impl AsRef<str>) {
        match &self.bar {
            Some(bar) => bar.println(line.as_ref()),
            None => eprintln!("{}", line.as_ref()),
        }
    }

    /// Seconds since the start.
    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Units per second so far.
    pub fn rate(&self) -> f64 {
        self.position as f64 / self.elapsed().max(1e-9)
    }

    fn line(&self) -> String {
        let rate = self.rate();
        let mut line = format!("{}: {} {}", self.label, self.position, self.unit);
        if let Some(total) = self.total {
            let pct = 100.0 * self.position as f64 / total.max(1) as f64;
            let eta = (total.saturating_sub(self.position)) as f64 / rate.max(1e-9);
            line += &format!("/{total} ({pct:.0}%, ETA {})", human_duration(eta));
        }
        line += &format!(", {} {}/s", human_rate(rate), self.unit);
        if !self.message.is_empty() {
            line += &format!(", {}", self.message);
        }
        line
    }

    /// Ends the report with a final summary line.
    pub fn finish(self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        eprintln!("{} in {}", self.line(), human_duration(self.elapsed()));
    }
}

/// A rate with the digits that matter: `1234.5` → `"1234"`, `5.432` → `"5.4"`, `0.5432` → `"0.54"`.
pub fn human_rate(rate: f64) -> String {
    if rate >= 10.0 {
        format!("{rate:.0}")
    } else if rate >= 1.0 {
        format!("{rate:.1}")
    } else {
        format!("{rate:.2}")
    }
}

/// `3725.0` → `"1h02m"`, `95.0` → `"1m35s"`, `4.2` → `"4.2s"`.
pub fn human_duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "?".into();
    }
    let s = seconds.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{seconds:.1}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_rates_keep_their_digits() {
        assert_eq!(human_rate(1234.5), "1234");
        assert_eq!(human_rate(5.432), "5.4");
        assert_eq!(human_rate(0.5432), "0.54", "a step every 1.8 s is not '1 steps/s'");
        assert_eq!(human_duration(95.0), "1m35s");
    }
}
