//! A throwaway PostgreSQL cluster per test, with pg_evolve and pg_cron preloaded: the system's
//! PostgreSQL 15, or the server whose pg_config `PG_EVOLVE_PG_CONFIG` names
//! (`scripts/versions.sh test` sets it for the other versions).
//!
//! The cluster runs as the unprivileged `postgres` OS user (via `runuser` when the tests run as
//! root), listens on a free loopback port and keeps its socket in its own temporary folder.
//! It is stopped and deleted when the `Cluster` is dropped.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};

/// The pg_config of the server under test.
pub fn pg_config() -> String {
    std::env::var("PG_EVOLVE_PG_CONFIG")
        .unwrap_or_else(|_| "/usr/lib/postgresql/15/bin/pg_config".into())
}

/// `pg_config --<what>` of the server under test (e.g. "bindir", "sharedir").
pub fn pg_config_dir(what: &str) -> String {
    let out = Command::new(pg_config())
        .arg(format!("--{what}"))
        .output()
        .expect("pg_config runs");
    assert!(out.status.success(), "pg_config --{what}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn bin_dir() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| pg_config_dir("bindir"))
}

pub struct Cluster {
    pub dir: PathBuf,
    pub port: u16,
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a PostgreSQL binary as the `postgres` user.
fn pg_command(bin: &str) -> Command {
    let path = format!("{}/{bin}", bin_dir());
    if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", &path]);
        c
    } else {
        Command::new(path)
    }
}

/// pg_evolve, and pg_cron where it is installed (it is optional; the versions built by
/// scripts/versions.sh may lack it).
pub fn preload() -> &'static str {
    let cron = std::path::Path::new(&pg_config_dir("pkglibdir")).join("pg_cron.so");
    if cron.exists() {
        "pg_evolve,pg_cron"
    } else {
        "pg_evolve"
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

impl Cluster {
    /// Starts a fresh cluster; `extra_conf` lines are appended to postgresql.conf.
    pub fn start(name: &str, extra_conf: &[&str]) -> Cluster {
        let seq = SEQ.fetch_add(1, Ordering::SeqCst);
        let dir = PathBuf::from(format!(
            "/tmp/pg_evolve_it/{name}-{}-{seq}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if running_as_root() {
            // Only this cluster's folder (and the shared parent, not recursively): other tests
            // create and delete their own folders concurrently.
            for path in ["/tmp/pg_evolve_it", dir.to_str().unwrap()] {
                let ok = Command::new("chown")
                    .args(["postgres:postgres", path])
                    .status()
                    .unwrap();
                assert!(ok.success(), "chown {path}");
            }
        }
        let data = dir.join("data");
        let out = pg_command("initdb")
            .args([
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ])
            .stdout(Stdio::null())
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let mut conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             shared_preload_libraries = '{}'\ncron.database_name = 'postgres'\n\
             fsync = off\nmax_connections = 100\nmax_worker_processes = 16\n",
            dir.display(),
            preload()
        );
        for line in extra_conf {
            conf.push_str(line);
            conf.push('\n');
        }
        let conf_path = data.join("postgresql.conf");
        let mut existing = std::fs::read_to_string(&conf_path).unwrap();
        existing.push_str(&conf);
        std::fs::write(&conf_path, existing).unwrap();
        let cluster = Cluster { dir, port };
        cluster.pg_ctl_start();
        cluster
    }

    /// A hot standby of this cluster: pg_basebackup over a replication connection, streaming
    /// from it (`-R` writes primary_conninfo and standby.signal), on a port of its own.
    pub fn standby(&self, name: &str) -> Cluster {
        let seq = SEQ.fetch_add(1, Ordering::SeqCst);
        let dir = PathBuf::from(format!(
            "/tmp/pg_evolve_it/{name}-{}-{seq}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if running_as_root() {
            let ok = Command::new("chown")
                .args(["postgres:postgres", dir.to_str().unwrap()])
                .status()
                .unwrap();
            assert!(ok.success(), "chown {}", dir.display());
        }
        let data = dir.join("data");
        let out = pg_command("pg_basebackup")
            .args([
                "-D",
                data.to_str().unwrap(),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ])
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .output()
            .expect("pg_basebackup runs");
        assert!(
            out.status.success(),
            "pg_basebackup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The copied postgresql.conf names the primary's port and socket folder: the last
        // setting of a name wins.
        let port = free_port();
        let conf_path = data.join("postgresql.conf");
        let mut conf = std::fs::read_to_string(&conf_path).unwrap();
        conf.push_str(&format!(
            "port = {port}\nunix_socket_directories = '{}'\nhot_standby = on\n",
            dir.display()
        ));
        std::fs::write(&conf_path, conf).unwrap();
        let standby = Cluster { dir, port };
        standby.pg_ctl_start();
        standby
    }

    pub fn pg_ctl_start(&self) {
        let data = self.dir.join("data");
        let log = self.dir.join("log");
        let out = pg_command("pg_ctl")
            .args([
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ])
            .output()
            .expect("pg_ctl runs");
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server: mode is smart, fast or immediate.
    pub fn pg_ctl_stop(&self, mode: &str) {
        let data = self.dir.join("data");
        let _ = pg_command("pg_ctl")
            .args(["-D", data.to_str().unwrap(), "-m", mode, "-w", "stop"])
            .output();
    }

    pub fn connect_to(&self, db: &str) -> Client {
        self.connect_as(db, "postgres")
    }

    /// Connects as `user` (trust authentication: any existing login role).
    pub fn connect_as(&self, db: &str, user: &str) -> Client {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match Client::connect(
                &format!("host=127.0.0.1 port={} user={user} dbname={db}", self.port),
                NoTls,
            ) {
                Ok(c) => return c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("cannot connect to {db}: {e}"),
            }
        }
    }

    /// Creates a fresh database with vector and pg_evolve installed; returns its name.
    pub fn fresh_db(&self, name: &str) -> String {
        let mut admin = self.connect_to("postgres");
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let mut c = self.connect_to(name);
        c.batch_execute("CREATE EXTENSION vector; CREATE EXTENSION pg_evolve;")
            .unwrap();
        name.to_string()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

/// The names of the extension's tables, sorted.
pub fn extension_tables(c: &mut Client) -> Vec<String> {
    c.query(
        "SELECT c.relname::text FROM pg_class c JOIN pg_depend d ON d.objid = c.oid \
         JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_evolve' \
         WHERE c.relkind IN ('r', 'p') ORDER BY 1",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.pg_ctl_stop("immediate");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The SQLSTATE of a failed statement ("ok" when it succeeded).
pub fn state(c: &mut Client, sql: &str) -> String {
    match c.batch_execute(sql) {
        Ok(()) => "ok".into(),
        Err(e) => e
            .code()
            .map(|s| s.code().to_string())
            .unwrap_or_else(|| panic!("no SQLSTATE: {e}")),
    }
}

/// A query's one bigint.
pub fn count(c: &mut Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).unwrap().get(0)
}

/// A query's one text (NULL as None).
pub fn text(c: &mut Client, sql: &str) -> Option<String> {
    c.query_one(sql, &[]).unwrap().get(0)
}
