//! A throwaway PostgreSQL cluster for tests: `initdb` and `pg_ctl` from the
//! machine's PostgreSQL packages, in a temporary directory, on a free loopback
//! port. When the tests run as root, the server runs as the unprivileged
//! `postgres` user (PostgreSQL refuses to run as root). A test that needs the
//! server fails when it cannot start one, naming what to install; it is never
//! skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Login roles of the test cluster, members of the roles `vakt db migrate`
/// creates: the tests write the world as [`WRITER`], sidecars read it as
/// [`READER`], and [`OWNER`] does what only an owner may (the superuser `vakt`
/// migrates and imports).
pub const WRITER: &str = "world_writer";
pub const READER: &str = "sidecar";
pub const OWNER: &str = "world_owner";

pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    /// Run the server's programs as this user (when the tests run as root).
    user: Option<String>,
}

/// The directory holding initdb, pg_ctl and psql: `VAKT_PG_BIN`, the newest
/// `/usr/lib/postgresql/*/bin` (Debian), or the PATH.
fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("VAKT_PG_BIN") {
        return PathBuf::from(d);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        if dir.join("initdb").exists() && dir.join("pg_ctl").exists() {
            return dir;
        }
    }
    panic!(
        "PostgreSQL server programs (initdb, pg_ctl) not found: install Debian's \
         postgresql package (apt-get install postgresql), or set VAKT_PG_BIN to the \
         directory that holds them"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    /// Creates and starts a cluster with a superuser `vakt` (trust authentication
    /// on loopback), or panics saying why not.
    pub fn start() -> Self {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("vakt-pg")
            .tempdir()
            .unwrap();
        // SAFETY: geteuid has no preconditions.
        let user = (unsafe { libc::geteuid() } == 0).then(|| "postgres".to_owned());
        if let Some(u) = &user {
            let out = Command::new("id").args(["-u", u]).output().unwrap();
            assert!(
                out.status.success(),
                "the tests run as root, and PostgreSQL must run as an unprivileged user: \
                 create the user `postgres` (Debian's postgresql package does)"
            );
            let uid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
            let path = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: chown on a path we own; no memory is shared.
            assert_eq!(unsafe { libc::chown(path.as_ptr(), uid, u32::MAX) }, 0);
        }
        let mut c = Self {
            dir,
            bin,
            port: 0,
            user,
        };
        let data = c.data_dir();
        let out = c
            .command("initdb")
            .args(["-D"])
            .arg(&data)
            .args([
                "-U",
                "vakt",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--locale=C.UTF-8",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // A free port can be taken between looking and binding: try a few.
        for _ in 0..5 {
            c.port = free_port();
            if c.pg_ctl_start() {
                return c;
            }
        }
        panic!(
            "PostgreSQL did not start: {}",
            std::fs::read_to_string(c.dir.path().join("log")).unwrap_or_default()
        );
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        }
    }

    fn pg_ctl_start(&self) -> bool {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        self.command("pg_ctl")
            .args(["start", "-w", "-t", "60", "-D"])
            .arg(self.data_dir())
            .args(["-l"])
            .arg(self.dir.path().join("log"))
            .args(["-o", &opts])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// Stops the server (fast shutdown: connections are closed).
    pub fn stop(&self) {
        let out = self
            .command("pg_ctl")
            .args(["stop", "-m", "fast", "-w", "-t", "60", "-D"])
            .arg(self.data_dir())
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl stop failed: {out:?}");
    }

    /// Starts the server again on the same port.
    pub fn restart(&self) {
        assert!(self.pg_ctl_start(), "PostgreSQL did not start again");
    }

    /// A new, empty database; its URL.
    pub fn create_db(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(name)
    }

    pub fn url(&self, db: &str) -> String {
        self.url_as("vakt", db)
    }

    /// The URL of database `db` for login role `user`.
    pub fn url_as(&self, user: &str, db: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates the login roles [`WRITER`], [`READER`] and [`OWNER`] unless the
    /// cluster has them. Call it after a database was migrated (the roles they are
    /// members of come with the migration).
    pub fn logins(&self) {
        self.psql(
            "postgres",
            &format!(
                "DO $$ BEGIN
                   IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{WRITER}') THEN
                     CREATE ROLE {WRITER} LOGIN IN ROLE vakt_writer;
                   END IF;
                   IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{READER}') THEN
                     CREATE ROLE {READER} LOGIN IN ROLE vakt_reader;
                   END IF;
                   IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{OWNER}') THEN
                     CREATE ROLE {OWNER} LOGIN IN ROLE vakt_owner;
                   END IF;
                 END $$"
            ),
        );
    }

    /// Runs SQL with psql (stopping at the first error); returns its output,
    /// unaligned, without headers.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self.try_psql(db, sql);
        match out {
            Ok(s) => s,
            Err(e) => panic!("psql failed: {e}\nSQL: {sql}"),
        }
    }

    /// Runs SQL with psql; its output, or the error it printed.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        self.try_psql_as("vakt", db, sql)
    }

    /// Runs SQL with psql as login role `user` (stopping at the first error);
    /// returns its output.
    pub fn psql_as(&self, user: &str, db: &str, sql: &str) -> String {
        match self.try_psql_as(user, db, sql) {
            Ok(s) => s,
            Err(e) => panic!("psql as {user} failed: {e}\nSQL: {sql}"),
        }
    }

    /// Runs SQL with psql as login role `user`; its output, or the error it
    /// printed. Several statements run in one transaction.
    pub fn try_psql_as(&self, user: &str, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                user,
                "-d",
                db,
                "-c",
                sql,
            ])
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    /// Writes database `db` as SQL (`pg_dump`) into `to`.
    pub fn dump(&self, db: &str, to: &Path) {
        let out = Command::new(self.bin.join("pg_dump"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "vakt",
            ])
            .args(["-d", db, "-f"])
            .arg(to)
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_dump failed: {out:?}");
    }

    /// Runs the SQL file `from` (a dump) in database `db`, in one transaction.
    pub fn restore(&self, db: &str, from: &Path) {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args(["-p", &self.port.to_string(), "-U", "vakt", "-d", db, "-f"])
            .arg(from)
            .output()
            .unwrap();
        assert!(out.status.success(), "restoring failed: {out:?}");
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["stop", "-m", "immediate", "-w", "-D"])
            .arg(self.data_dir())
            .output();
    }
}
