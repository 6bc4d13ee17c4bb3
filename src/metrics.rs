//! Metrics: counters and histograms the request path updates without locks, and
//! their rendering in the Prometheus text format.
//!
//! Every metric is a fixed set of atomics chosen when Vakt starts, so updating one
//! costs an atomic add and the label sets cannot grow with input: methods and
//! status codes are enumerations, and policy ids are counted in buckets by hash,
//! named the first time each is seen.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds: from 50 µs (a decision) to 10 s
/// (the request timeout).
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 10.0,
];

/// A histogram with [`LATENCY_BUCKETS`], updated with atomics.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations at or below each bound (not cumulative; summed when rendered).
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    /// Observations above the last bound.
    over: AtomicU64,
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        match LATENCY_BUCKETS.iter().position(|b| s <= *b) {
            Some(i) => self.buckets[i].fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// Counts by a string label whose values come from a bounded set Vakt controls
/// (policy ids of the loaded policies): buckets by hash, each named by the first
/// value counted in it. Two ids that share a bucket are counted together under the
/// first one's name; with 1,024 buckets and a few dozen policies that is rare.
pub struct Labelled {
    counts: Box<[AtomicU64]>,
    named: Box<[AtomicBool]>,
    names: Mutex<Vec<Option<String>>>,
}

const LABEL_BUCKETS: usize = 1024;

impl Default for Labelled {
    fn default() -> Self {
        Self {
            counts: (0..LABEL_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            named: (0..LABEL_BUCKETS).map(|_| AtomicBool::new(false)).collect(),
            names: Mutex::new(vec![None; LABEL_BUCKETS]),
        }
    }
}

impl std::fmt::Debug for Labelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Labelled")
    }
}

impl Labelled {
    pub fn add(&self, label: &str) {
        use std::hash::BuildHasher as _;
        let h = foldhash::fast::FixedState::with_seed(0x6d65_7472).hash_one(label);
        let i = (h as usize) % LABEL_BUCKETS;
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        // Only the first count in a bucket takes the lock, to name it.
        if !self.named[i].load(Ordering::Relaxed) {
            if let Ok(mut names) = self.names.lock() {
                if names[i].is_none() {
                    names[i] = Some(label.to_owned());
                }
            }
            self.named[i].store(true, Ordering::Relaxed);
        }
    }

    /// Every label counted so far with its count, sorted by label.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        let names = match self.names.lock() {
            Ok(n) => n.clone(),
            Err(_) => return Vec::new(),
        };
        let mut out: Vec<(String, u64)> = names
            .into_iter()
            .enumerate()
            .filter_map(|(i, n)| n.map(|n| (n, self.counts[i].load(Ordering::Relaxed))))
            .collect();
        out.sort();
        out
    }
}

/// Text in the Prometheus exposition format (version 0.0.4).
#[derive(Default)]
pub struct Exposition(String);

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

impl Exposition {
    /// Starts a metric family with its help text and type.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    /// One sample.
    pub fn sample(&mut self, name: &str, pairs: &[(&str, &str)], value: f64) {
        let _ = writeln!(self.0, "{name}{} {value}", labels(pairs));
    }

    /// The samples of a histogram: cumulative buckets, sum and count.
    pub fn histogram(&mut self, name: &str, pairs: &[(&str, &str)], h: &Histogram) {
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += h.buckets[i].load(Ordering::Relaxed);
            let le = bound.to_string();
            let mut with_le = pairs.to_vec();
            with_le.push(("le", &le));
            self.sample(&format!("{name}_bucket"), &with_le, cumulative as f64);
        }
        cumulative += h.over.load(Ordering::Relaxed);
        let mut with_le = pairs.to_vec();
        with_le.push(("le", "+Inf"));
        self.sample(&format!("{name}_bucket"), &with_le, cumulative as f64);
        self.sample(
            &format!("{name}_sum"),
            pairs,
            h.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
        );
        self.sample(&format!("{name}_count"), pairs, cumulative as f64);
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_render_cumulative_buckets() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(40));
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_secs(20));
        let mut e = Exposition::default();
        e.family("x_seconds", "histogram", "x");
        e.histogram("x_seconds", &[("method", "a\"b")], &h);
        let text = e.into_string();
        assert!(
            text.contains("x_seconds_bucket{method=\"a\\\"b\",le=\"0.00005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{method=\"a\\\"b\",le=\"0.0005\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{method=\"a\\\"b\",le=\"10\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{method=\"a\\\"b\",le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_count{method=\"a\\\"b\"} 3\n"),
            "{text}"
        );
    }

    #[test]
    fn labelled_counts_keep_their_first_name() {
        let l = Labelled::default();
        for id in ["tenant-mismatch", "team-not-granted", "tenant-mismatch"] {
            l.add(id);
        }
        assert_eq!(
            l.snapshot(),
            [
                ("team-not-granted".to_owned(), 1),
                ("tenant-mismatch".to_owned(), 2)
            ]
        );
    }
}
