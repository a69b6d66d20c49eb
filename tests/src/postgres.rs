//! A private PostgreSQL server for tests, from the machine's own binaries
//! (Debian's `postgresql` package): initialized in a temporary directory,
//! listening on an ephemeral loopback port, stopped when dropped, and
//! stopped too when the test process dies however it dies (the server's
//! wrapper shell waits on a pipe from this process, and its end is the
//! signal).
//!
//! ```ignore
//! let mut postgres = TestPostgres::start();
//! let url = postgres.create_database();
//! postgres.stop();    // the registry answers 503 meanwhile
//! postgres.start_again();
//! ```

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub struct TestPostgres {
    dir: TempDir,
    bin: PathBuf,
    pub port: u16,
    /// The user the server runs as (`postgres` when the tests run as root:
    /// PostgreSQL refuses to run as root).
    user_opt: Option<(u32, u32)>,
    server_opt: Option<(Child, ChildStdin)>,
    /// The process-wide server is never dropped: its wrapper removes its
    /// files once it stops.
    remove_at_exit: bool,
}

/// Where the server binaries are: `SLUICE_TEST_PG_BIN`, or the newest
/// `/usr/lib/postgresql/*/bin`.
pub fn binaries() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SLUICE_TEST_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let major = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").exists().then_some((major, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// Whether this process must have PostgreSQL: CI sets
/// `SLUICE_REQUIRE_POSTGRES=1`, so its tests can never skip quietly.
pub fn required() -> bool {
    std::env::var("SLUICE_REQUIRE_POSTGRES").is_ok_and(|value| value == "1")
}

/// `true` when the test may go on; a note on standard error when it skips.
pub fn available(test: &str) -> bool {
    if binaries().is_some() {
        return true;
    }
    assert!(
        !required(),
        "{test} needs PostgreSQL's server binaries (apt-get install postgresql), and SLUICE_REQUIRE_POSTGRES=1"
    );
    eprintln!("SKIPPED {test}: no PostgreSQL server binaries (apt-get install postgresql)");
    false
}

impl TestPostgres {
    /// Initializes a cluster and starts it. Panics with what is missing.
    pub fn start() -> TestPostgres {
        TestPostgres::init(false)
    }

    fn init(remove_at_exit: bool) -> TestPostgres {
        let bin = binaries().expect("PostgreSQL's server binaries (apt-get install postgresql)");
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let user_opt = run_as();
        if let Some((uid, gid)) = user_opt {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("handing the directory to postgres");
        }
        let data = dir.path().join("data");
        let output = as_user(Command::new(bin.join("initdb")), user_opt)
            .args([
                "--auth=trust",
                "--username=postgres",
                "--locale=C",
                "--encoding=UTF8",
                "--no-sync",
            ])
            .arg("-D")
            .arg(&data)
            .output()
            .expect("running initdb");
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut postgres = TestPostgres {
            dir,
            bin,
            port: free_port(),
            user_opt,
            server_opt: None,
            remove_at_exit,
        };
        postgres.start_again();
        postgres
    }

    /// The server's log.
    pub fn log(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// `postgres://` to `database` as the superuser.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A new empty database; its URL.
    pub fn create_database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("sluice_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        self.psql(&format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// Runs one statement with psql; its output. Panics when it fails.
    pub fn psql(&self, sql: &str) -> String {
        let output = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-c")
            .arg(sql)
            .output()
            .expect("running psql");
        assert!(
            output.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// Serves TLS from now on with `cert` and `key`, checking client
    /// certificates (where `rules` ask for them) against `client_ca`, and
    /// replaces `pg_hba.conf` with `rules`. Returns once new connections
    /// see both.
    pub fn enable_tls(&self, cert: &Path, key: &Path, client_ca: &Path, rules: &[&str]) {
        let data = self.dir.path().join("data");
        for (from, name) in [(cert, "server.crt"), (key, "server.key"), (client_ca, "root.crt")] {
            let to = data.join(name);
            std::fs::copy(from, &to).expect("copying a TLS file into the data directory");
            // The server refuses a key others can read.
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            if let Some((uid, gid)) = self.user_opt {
                std::os::unix::fs::chown(&to, Some(uid), Some(gid)).expect("handing a TLS file to postgres");
            }
        }
        std::fs::write(data.join("pg_hba.conf"), rules.join("\n") + "\n").expect("writing pg_hba.conf");
        for (setting, value) in [
            ("ssl", "on"),
            ("ssl_cert_file", "server.crt"),
            ("ssl_key_file", "server.key"),
            ("ssl_ca_file", "root.crt"),
        ] {
            self.psql(&format!("ALTER SYSTEM SET {setting} = '{value}'"));
        }
        self.psql("SELECT pg_reload_conf()");
        let started = Instant::now();
        while self.psql("SHOW ssl") != "on" {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the server did not turn TLS on: {}",
                std::fs::read_to_string(self.log()).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (fast shutdown: connections are cut, nothing
    /// committed is lost), as a restart or a failover would.
    pub fn stop(&mut self) {
        if let Some((mut server, stdin)) = self.server_opt.take() {
            drop(stdin);
            let _ = server.wait();
        }
    }

    /// Starts the server on its data and port; waits until it answers.
    pub fn start_again(&mut self) {
        assert!(self.server_opt.is_none(), "the server is already running");
        let data = self.dir.path().join("data");
        // The shell ends the server when its standard input closes: when
        // `stop` drops it, or when this process exits, however it exits.
        let mut server = as_user(Command::new("sh"), self.user_opt)
            .arg("-c")
            .arg(r#""$0" "$@" & pid=$!; read _; kill -INT $pid; wait $pid; [ -z "$REMOVE" ] || rm -rf "$REMOVE""#)
            .arg(self.bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "full_page_writes=off", "-c", "synchronous_commit=off"])
            .env("REMOVE", if self.remove_at_exit { self.dir.path().as_os_str() } else { "".as_ref() })
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            // Where a failed start or a failing statement is explained.
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.log())
                    .map_or_else(|_| Stdio::null(), Stdio::from),
            )
            .spawn()
            .expect("starting postgres");
        let stdin = server.stdin.take().expect("the server's standard input");
        self.server_opt = Some((server, stdin));
        let started = Instant::now();
        loop {
            if let Some((server, _)) = &mut self.server_opt
                && let Ok(Some(status)) = server.try_wait()
            {
                panic!(
                    "postgres exited ({status}) on port {}: {}",
                    self.port,
                    std::fs::read_to_string(self.log()).unwrap_or_default()
                );
            }
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|status| status.success());
            if ready {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "postgres did not accept connections within a minute: {}",
                std::fs::read_to_string(self.log()).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One server for a whole test process, for tests that only need a
/// database each ([`TestPostgres::create_database`]). Never dropped: it
/// ends with the process.
pub fn shared() -> &'static TestPostgres {
    static SHARED: OnceLock<TestPostgres> = OnceLock::new();
    SHARED.get_or_init(|| TestPostgres::init(true))
}

fn run_as() -> Option<(u32, u32)> {
    let output = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&output.stdout).trim() != "0" {
        return None;
    }
    let id = |flag: &str| -> Option<u32> {
        let output = Command::new("id").args([flag, "postgres"]).output().ok()?;
        String::from_utf8_lossy(&output.stdout).trim().parse().ok()
    };
    Some((
        id("-u").expect("a postgres user to run PostgreSQL as (the tests run as root)"),
        id("-g").expect("the postgres user's group"),
    ))
}

fn as_user(mut command: Command, user_opt: Option<(u32, u32)>) -> Command {
    if let Some((uid, gid)) = user_opt {
        command.uid(uid).gid(gid);
        // HOME stays root's otherwise, and psql's history and such follow it.
        command.env("HOME", "/tmp");
    }
    command
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding an ephemeral port");
    listener.local_addr().expect("its address").port()
}
