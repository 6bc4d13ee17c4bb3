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

/// The build, as `vakt --version` names it and `vakt_build_info` labels it (see
/// build.rs).
pub const BUILD_VERSION: &str = env!("CARGO_PKG_VERSION");
pub const BUILD_COMMIT: &str = env!("VAKT_BUILD_COMMIT");
pub const BUILD_DATE: &str = env!("VAKT_BUILD_DATE");

/// The process's own figures, as Prometheus's client libraries export them
/// (`process_*`). Read from /proc when a scrape or an export asks, never on a
/// call's path; a figure that cannot be read (not Linux, /proc not mounted) is
/// left out rather than reported as zero.
#[derive(Debug, Default, PartialEq)]
pub struct ProcessStats {
    /// User and system CPU time, in seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident memory, in bytes.
    pub resident_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    /// The soft limit on open file descriptors.
    pub max_fds: Option<u64>,
    /// When the process started, in seconds since 1970.
    pub start_time_seconds: Option<f64>,
}

impl ProcessStats {
    /// The figures of this process now.
    pub fn read() -> Self {
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        let fields = stat.as_deref().map(stat_fields).unwrap_or_default();
        // SAFETY: sysconf only reads a system constant.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let ticks = (ticks > 0).then_some(ticks as f64);
        // Fields 14 and 15 (utime, stime) and 22 (starttime), in clock ticks;
        // `fields` starts at field 3, after the command name.
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        let cpu_seconds = match (field(14), field(15), ticks) {
            (Some(u), Some(s), Some(t)) => Some((u + s) as f64 / t),
            _ => None,
        };
        let boot_time = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<u64>().ok())
        });
        let start_time_seconds = match (boot_time, field(22), ticks) {
            (Some(b), Some(st), Some(t)) => Some(b as f64 + st as f64 / t),
            _ => None,
        };
        let resident_bytes = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().strip_suffix("kB"))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
            .map(|kb| kb * 1024);
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64);
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|s| limit_of(&s, "Max open files"));
        Self {
            cpu_seconds,
            resident_bytes,
            open_fds,
            max_fds,
            start_time_seconds,
        }
    }
}

/// The fields of /proc/self/stat from the third on: the second, the command
/// name in parentheses, may itself hold spaces and parentheses.
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rfind(')')
        .map(|i| stat[i + 1..].split_whitespace().collect())
        .unwrap_or_default()
}

/// A soft limit from /proc/self/limits ("unlimited" is left out).
fn limit_of(limits: &str, name: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|soft| soft.parse::<u64>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_read_past_a_command_name_with_spaces() {
        let stat = "4242 (va kt) d) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 123456 1000 200";
        let f = stat_fields(stat);
        assert_eq!(f[0], "S");
        assert_eq!(f[14 - 3], "250");
        assert_eq!(f[22 - 3], "123456");
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n\
                      Max locked memory         unlimited            unlimited            bytes\n";
        assert_eq!(limit_of(limits, "Max open files"), Some(1024));
        assert_eq!(limit_of(limits, "Max locked memory"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_figures() {
        let p = ProcessStats::read();
        assert!(p.resident_bytes.unwrap() > 0);
        assert!(p.open_fds.unwrap() >= 3);
        assert!(p.max_fds.unwrap() >= p.open_fds.unwrap());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = p.start_time_seconds.unwrap();
        assert!(
            started <= now + 1.0 && started > now - 86_400.0,
            "{started} {now}"
        );
        assert!(p.cpu_seconds.unwrap() >= 0.0);
    }

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
