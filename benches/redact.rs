//! Redaction cost on the request path: `redact::scrub` over the strings of one
//! decision record (ids, an org number, a package URN, a decision id, a reason
//! message, a caller name), over the same fields when one of them holds a secret,
//! and per string for each kind of input: without any trigger, with a trigger whose
//! shape does not hold, with a secret, and long strings of each. Reported as
//! nanoseconds per string and per record, the median of interleaved rounds.
//!
//! Run: `cargo bench --bench redact`. Without `--bench` (as `cargo test --benches`
//! runs it) it is a short smoke run.

use std::hint::black_box;
use std::time::Instant;
use vakt::decision_log::redact::scrub;

// The same allocator as the `vakt` binary.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The strings one authorize record scrubs, as an ordinary request sends them.
const RECORD: &[&str] = &[
    "01a209d4-7b0c-7347-bd2d-e94ff3ea883c",
    "kari.nordmann",
    "tk-regnskap",
    "310001015",
    "310015156",
    "urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet",
    "useSystemUser",
    "employee-unknown",
    "employee kari.nordmann is not known",
    "regnskap-frontend",
    "127.0.0.1:57142",
];

/// One record's strings with a secret in the employee id.
fn record_with_secret() -> Vec<&'static str> {
    let mut r = RECORD.to_vec();
    r[1] = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJrYXJpIn0.c2lnbmF0dXJlLWJ5dGVz";
    r[8] = "employee eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJrYXJpIn0.c2lnbmF0dXJlLWJ5dGVz is not known";
    r
}

fn cases() -> Vec<(&'static str, String)> {
    let prose = "the employee asked for the regnskap package on behalf of the client; ";
    vec![
        ("org number (no trigger)", "310015156".into()),
        ("id (no trigger)", "kari.nordmann".into()),
        (
            "URN (no trigger)",
            "urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet".into(),
        ),
        (
            "UUID (no trigger)",
            "01a209d4-7b0c-7347-bd2d-e94ff3ea883c".into(),
        ),
        (
            "reason (trigger, no secret)",
            "the token was refused by the system user".into(),
        ),
        (
            "JWT",
            "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJrYXJpIn0.c2lnbmF0dXJlLWJ5dGVz".into(),
        ),
        ("password pair", "a=1&password=hunter2hunter2&b=2".into()),
        ("fodselsnummer", "15038713008".into()),
        ("card number", "4111 1111 1111 1111".into()),
        ("1 KiB prose (no secret)", prose.repeat(1024 / prose.len())),
        (
            "1 KiB digits and words (no secret)",
            "org 310015156 team 42 ".repeat(1024 / 22),
        ),
    ]
}

/// Nanoseconds per call of `f`, the median of `rounds` rounds of `iters` calls.
fn measure(rounds: usize, iters: usize, mut f: impl FnMut()) -> f64 {
    let mut samples: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (rounds, iters) = if bench { (31, 20_000) } else { (3, 100) };
    let secret_record = record_with_secret();
    println!("redact::scrub, median of {rounds} rounds of {iters} calls");
    let ordinary = measure(rounds, iters, || {
        for s in RECORD {
            black_box(scrub(black_box(s)));
        }
    });
    println!(
        "{:<40} {:>9.0} ns per record ({} strings, {:.0} ns each)",
        "ordinary record",
        ordinary,
        RECORD.len(),
        ordinary / RECORD.len() as f64
    );
    let with_secret = measure(rounds, iters, || {
        for s in &secret_record {
            black_box(scrub(black_box(s)));
        }
    });
    println!(
        "{:<40} {:>9.0} ns per record",
        "record with a JWT as employee id", with_secret
    );
    for (name, s) in cases() {
        let ns = measure(rounds, iters, || {
            black_box(scrub(black_box(&s)));
        });
        println!("{name:<40} {ns:>9.0} ns ({} bytes)", s.len());
    }
}
