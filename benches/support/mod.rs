//! What the benchmarks share: starting `vakt serve`, and reading a process's CPU
//! time.

/// CPU time (user + system) a process has used so far, in µs, from /proc.
pub fn cpu_us(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces) start after ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    let ticks = f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0);
    // Linux reports CPU time in clock ticks of 1/100 s.
    ticks * 10_000.0
}

/// The `vakt` binary the benchmark drives: `VAKT_BIN` when set (a copy kept
/// apart while other builds rewrite `target/`), else the one Cargo built with it.
#[allow(dead_code)]
pub fn vakt_bin() -> std::ffi::OsString {
    std::env::var_os("VAKT_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_vakt").into())
}

/// Starts `vakt serve --listen 127.0.0.1:0 ARGS` with its stdout in `stdout` (as
/// a container runtime's log driver would take it); the child and the address it
/// listens on, once it says so (at most 60 s).
// Each benchmark compiles this module on its own; not every one starts a server.
#[allow(dead_code)]
pub fn spawn_vakt(args: &[&str], stdout: std::fs::File) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(vakt_bin())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(stdout)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    // Reads the address, then keeps draining so the server never blocks.
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if v["fields"]["message"] == "listening" {
                let _ = tx.send(v["fields"]["address"].as_str().unwrap_or("").to_owned());
            }
        }
    });
    let addr = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("vakt serve starts listening");
    (child, addr)
}

/// A field of `/proc/PID/status` in kB (`VmHWM:`, `VmRSS:`); 0 when unreadable.
#[allow(dead_code)]
pub fn proc_kb(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Starts `vakt serve --listen 127.0.0.1:0 --decision-log off --data DATA` with
/// its stdout discarded; the child and the lines of its log (stderr), which the
/// caller reads up to "listening" and then keeps draining.
#[allow(dead_code)]
pub fn serve_data(
    data: &std::ffi::OsStr,
) -> (
    std::process::Child,
    std::io::Lines<std::io::BufReader<std::process::ChildStderr>>,
) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(vakt_bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--decision-log",
            "off",
            "--data",
        ])
        .arg(data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("vakt serve starts");
    let stderr = child.stderr.take().expect("stderr is piped");
    (child, std::io::BufReader::new(stderr).lines())
}
