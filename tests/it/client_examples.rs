//! The client examples in other languages: `examples/python/client.py`,
//! `examples/node/client.js` and `examples/java` (compiled with Debian's
//! grpc-java) run against the real server and print what the Rust example
//! prints, and the Go, Java and C# stubs are generated from `proto/` with
//! Debian's protoc and gRPC plugins.

#[path = "../../examples/client.rs"]
#[allow(dead_code)]
mod client;
use crate::common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// `node`, with examples/node's packages installed.
fn node() -> Command {
    let dir = Path::new(ROOT).join("examples/node");
    let ok = Command::new("node")
        .current_dir(&dir)
        .args([
            "-e",
            "require.resolve('@grpc/grpc-js'); require.resolve('@grpc/proto-loader')",
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "node or examples/node's packages are missing: run scripts/test (it runs `npm ci` in examples/node; Debian: apt-get install nodejs npm)"
    );
    Command::new("node")
}

/// What the Rust example prints for the server at `addr` (host:port).
fn rust_client_output(addr: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(client::run(format!("http://{addr}"))).unwrap()
}

/// Runs an example to completion within `limit`, killing it past that.
fn run_within(mut command: Command, limit: std::time::Duration) -> Output {
    use std::process::Stdio;
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{command:?} did not finish within {limit:?}:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// Each decision id replaced by a fixed token: they differ on every call.
fn without_decision_ids(s: &str) -> String {
    s.lines()
        .map(
            |line| match (line.find("(decision "), line.find(", revision ")) {
                (Some(a), Some(b)) if a < b => {
                    format!("{}(decision <id>{}", &line[..a], &line[b..])
                }
                _ => line.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join("\n")
}

/// The example's output is the Rust client's, and says what the README says:
/// Kari allowed for Bakeri Brød, denied for Havbris and Randi denied as an
/// auditor, each with its reason, and the system user to use.
fn assert_prints_the_answers(name: &str, out: &Output, expected: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{name} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let after = |heading: &str| {
        let i = lines
            .iter()
            .position(|l| l.starts_with(heading))
            .unwrap_or_else(|| panic!("{name} printed no {heading:?}:\n{stdout}"));
        (lines[i + 1], lines.get(i + 2).copied().unwrap_or(""))
    };
    let (decision, reason) = after("Kari (accounting team) for client Bakeri Brød AS:");
    assert!(
        decision.starts_with("  Allow (decision "),
        "{name}: {decision}"
    );
    assert!(
        reason.starts_with("    use-system-user: employee kari may use system user tk-regnskap"),
        "{name}: {reason}"
    );
    let (decision, reason) = after("Kari for Havbris AS, whose client link was removed:");
    assert!(
        decision.starts_with("  Deny (decision "),
        "{name}: {decision}"
    );
    assert_eq!(
        reason, "    client-not-linked: client 310020206 is not linked to system user tk-regnskap",
        "{name}"
    );
    let (decision, reason) = after("Randi, Fjordfisk's auditor, as its accountant:");
    assert!(
        decision.starts_with("  Deny (decision "),
        "{name}: {decision}"
    );
    assert!(
        reason.starts_with(
            "    auditor-separation-of-duties: employee randi audits client 310021210"
        ),
        "{name}: {reason}"
    );
    let (user, _) = after("System users Kari may use for Kaffebrenneriet AS with sykefravaer:");
    assert_eq!(
        user, "  tk-regnskap-syk (external ref tk-regnskap-syk, agent)",
        "{name}"
    );
    assert_eq!(
        without_decision_ids(stdout.trim_end()),
        without_decision_ids(expected.trim_end()),
        "{name} prints otherwise than `cargo run --example client`"
    );
}

const LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

#[test]
fn the_python_example_prints_what_the_rust_client_prints() {
    let py = python();
    let s = Spawned::start(&["--decision-log", "off"], false);
    let expected = rust_client_output(&s.addr);
    let mut command = Command::new(&py);
    command
        .arg(Path::new(ROOT).join("examples/python/client.py"))
        .arg(&s.addr);
    let out = run_within(command, LIMIT);
    assert_prints_the_answers("examples/python/client.py", &out, &expected);
    s.stop();
}

#[test]
fn the_node_example_prints_what_the_rust_client_prints() {
    let mut command = node();
    let s = Spawned::start(&["--decision-log", "off"], false);
    let expected = rust_client_output(&s.addr);
    // The address from the environment, as a deployment would set it.
    command
        .arg(Path::new(ROOT).join("examples/node/client.js"))
        .env("VAKT_ADDR", &s.addr);
    let out = run_within(command, LIMIT);
    assert_prints_the_answers("examples/node/client.js", &out, &expected);
    s.stop();
}

/// A server that also listens on a Unix socket in a fresh directory.
fn serve_on_a_socket() -> (tempfile::TempDir, PathBuf, Spawned) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("vakt.sock");
    let s = Spawned::start(
        &[
            "--decision-log",
            "off",
            "--listen-unix",
            socket.to_str().unwrap(),
        ],
        false,
    );
    (dir, socket, s)
}

#[test]
fn the_node_example_works_over_the_unix_socket() {
    let mut command = node();
    let (_dir, socket, s) = serve_on_a_socket();
    let expected = rust_client_output(&s.addr);
    command
        .arg(Path::new(ROOT).join("examples/node/client.js"))
        .arg(format!("unix://{}", socket.display()));
    let out = run_within(command, LIMIT);
    assert_prints_the_answers("examples/node/client.js over unix:", &out, &expected);
    s.stop();
}

/// grpcio sends the socket path, percent-encoded, as :authority; with default
/// settings the example is answered all the same.
#[test]
fn the_python_example_works_over_the_unix_socket() {
    let py = python();
    let (_dir, socket, s) = serve_on_a_socket();
    let expected = rust_client_output(&s.addr);
    let mut command = Command::new(&py);
    command
        .arg(Path::new(ROOT).join("examples/python/client.py"))
        .arg(format!("unix://{}", socket.display()));
    let out = run_within(command, LIMIT);
    assert_prints_the_answers("examples/python/client.py over unix:", &out, &expected);
    s.stop();
}

/// The jars of Debian's grpc-java that the Java example compiles and runs with,
/// each with the package that has it.
const JAVA_JARS: &[(&str, &str)] = &[
    ("grpc-api", "libgrpc-java"),
    ("grpc-context", "libgrpc-java"),
    ("grpc-core", "libgrpc-java"),
    ("grpc-netty", "libgrpc-java"),
    ("grpc-protobuf", "libgrpc-java"),
    ("grpc-protobuf-lite", "libgrpc-java"),
    ("grpc-stub", "libgrpc-java"),
    ("protobuf", "libprotobuf-java"),
    ("guava", "libguava-java"),
    ("perfmark-api", "libperfmark-java"),
    ("gson", "libgoogle-gson-java"),
    ("netty-buffer", "libnetty-java"),
    ("netty-codec", "libnetty-java"),
    ("netty-codec-http", "libnetty-java"),
    ("netty-codec-http2", "libnetty-java"),
    ("netty-common", "libnetty-java"),
    ("netty-handler", "libnetty-java"),
    ("netty-resolver", "libnetty-java"),
    ("netty-transport", "libnetty-java"),
    // javax.annotation.Generated, which the generated stub names.
    (
        "geronimo-annotation-1.3-spec",
        "libgeronimo-annotation-1.3-spec-java",
    ),
];

/// Java is compiled and run, not only generated: Debian's grpc-java (1.41) and
/// protoc's stubs, with `examples/java`'s Client.java unchanged.
#[test]
fn the_java_example_compiles_with_debians_grpc_java_and_prints_what_the_rust_client_prints() {
    let protoc = tool("protoc", "protobuf-compiler");
    let java_grpc = tool("grpc_java_plugin", "protobuf-compiler-grpc-java-plugin");
    let javac = tool("javac", "default-jdk-headless");
    let java = tool("java", "default-jdk-headless");
    let classpath: Vec<PathBuf> = JAVA_JARS
        .iter()
        .map(|(jar, package)| {
            let p = Path::new("/usr/share/java").join(format!("{jar}.jar"));
            assert!(
                p.is_file(),
                "{} is missing: install Debian's {package} (apt-get install {package}), or run scripts/test, which does",
                p.display()
            );
            p
        })
        .collect();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let classes = work.path().join("classes");
    std::fs::create_dir_all(&src).unwrap();
    let made = Command::new(&protoc)
        .arg(format!("-I{ROOT}/proto"))
        .arg(format!(
            "--plugin=protoc-gen-grpc-java={}",
            java_grpc.display()
        ))
        .arg(format!("--java_out={}", src.display()))
        .arg(format!("--grpc-java_out={}", src.display()))
        .arg(format!("{ROOT}/proto/vakt/v1/authorization.proto"))
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "protoc failed:\n{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let mut sources =
        vec![Path::new(ROOT).join("examples/java/src/main/java/vakt/example/Client.java")];
    for entry in std::fs::read_dir(src.join("vakt/v1")).unwrap() {
        sources.push(entry.unwrap().path());
    }
    let compiled = Command::new(&javac)
        .args(["-nowarn", "-encoding", "UTF-8", "-d"])
        .arg(&classes)
        .arg("-cp")
        .arg(std::env::join_paths(&classpath).unwrap())
        .args(&sources)
        .output()
        .unwrap();
    assert!(
        compiled.status.success(),
        "javac failed:\n{}",
        String::from_utf8_lossy(&compiled.stderr)
    );

    let s = Spawned::start(&["--decision-log", "off"], false);
    let expected = rust_client_output(&s.addr);
    let mut command = Command::new(&java);
    command
        .arg("-cp")
        .arg(std::env::join_paths(std::iter::once(classes).chain(classpath)).unwrap())
        .arg("vakt.example.Client")
        .arg(&s.addr);
    let out = run_within(command, LIMIT);
    assert_prints_the_answers("examples/java Client.java", &out, &expected);
    s.stop();
}

/// A program the stub generation needs, or a failure naming the Debian package
/// that has it.
fn tool(name: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("{name} is missing: install Debian's {package} (apt-get install {package}), or run scripts/test, which does")
    })
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| {
        let mut made = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = entry.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    made.push(p.strip_prefix(dir).unwrap().display().to_string());
                }
            }
        }
        made.sort();
        panic!("{file} was not generated ({e}); protoc made {made:?}")
    })
}

/// Go and C# are only generated in CI, not compiled (Java is also compiled and
/// run, above): this is the generation the examples' READMEs describe, with
/// Debian's generators, and the names the examples import are the ones the
/// proto's options give.
#[test]
fn go_java_and_csharp_stubs_generate_from_the_proto_with_debians_generators() {
    let protoc = tool("protoc", "protobuf-compiler");
    let go = tool("protoc-gen-go", "protoc-gen-go");
    let go_grpc = tool("protoc-gen-go-grpc", "protoc-gen-go-grpc");
    let java_grpc = tool("grpc_java_plugin", "protobuf-compiler-grpc-java-plugin");
    let out = tempfile::tempdir().unwrap();
    let o = out.path().display();
    let made = Command::new(&protoc)
        .arg(format!("-I{ROOT}/proto"))
        .arg(format!("--plugin=protoc-gen-go={}", go.display()))
        .arg(format!("--plugin=protoc-gen-go-grpc={}", go_grpc.display()))
        .arg(format!(
            "--plugin=protoc-gen-grpc-java={}",
            java_grpc.display()
        ))
        .args([
            format!("--go_out={o}"),
            "--go_opt=module=vakt".into(),
            format!("--go-grpc_out={o}"),
            "--go-grpc_opt=module=vakt".into(),
            format!("--java_out={o}"),
            format!("--grpc-java_out={o}"),
            format!("--csharp_out={o}"),
        ])
        .arg(format!("{ROOT}/proto/vakt/v1/authorization.proto"))
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "protoc failed:\n{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let example = |f: &str| std::fs::read_to_string(Path::new(ROOT).join(f)).unwrap();

    // Go: package vaktv1 at the go_package path examples/go/main.go imports.
    let messages = read(out.path(), "gen/vakt/v1/authorization.pb.go");
    assert!(messages.contains("package vaktv1"), "{messages:.300}");
    assert!(messages.contains("type AuthorizeRequest struct"));
    let stub = read(out.path(), "gen/vakt/v1/authorization_grpc.pb.go");
    assert!(stub.contains("func NewAuthorizerClient("));
    assert!(example("examples/go/main.go").contains("vaktv1 \"vakt/gen/vakt/v1\""));

    // Java: one class per message (java_multiple_files) in package vakt.v1, and
    // the gRPC stub that examples/java calls.
    for class in [
        "AuthorizeRequest",
        "AuthorizeResponse",
        "Reason",
        "Decision",
    ] {
        let java = read(out.path(), &format!("vakt/v1/{class}.java"));
        assert!(java.contains("package vakt.v1;"), "{class}.java");
    }
    let stub = read(out.path(), "vakt/v1/AuthorizerGrpc.java");
    assert!(stub.contains("public static AuthorizerBlockingStub newBlockingStub("));
    assert!(
        example("examples/java/src/main/java/vakt/example/Client.java")
            .contains("import vakt.v1.AuthorizerGrpc;")
    );

    // C#: the messages in namespace Vakt.V1 (the client stub comes from
    // Grpc.Tools at `dotnet build`; Debian has no grpc_csharp_plugin).
    let cs = read(out.path(), "Authorization.cs");
    assert!(cs.contains("namespace Vakt.V1 {"), "{cs:.300}");
    assert!(cs.contains("public sealed partial class AuthorizeRequest"));
    assert!(example("examples/csharp/Program.cs").contains("using Vakt.V1;"));
}
