//! Issue 4's speed figures for the state store, measured against the release binaries in one
//! run so that peers share the same (shared, noisy) machine state:
//!
//! 1. start → `READY=1` (from just before the spawn to the datagram's arrival at the harness's
//!    `NOTIFY_SOCKET`) with an up-to-date database holding 100 projects, and with an empty
//!    state directory (creating the database and applying every migration); beside them
//!    `aifactoryd migrate` as a process on an empty and on an up-to-date state directory, and
//!    the floors `aifactoryd --version` and `true`. All six are interleaved run by run, and the
//!    daemon gets SIGTERM and is waited for after each start.
//! 2. a ~100 MB database with one pending migration (built with the release `aifactoryd
//!    migrate`, filled with `projects` rows, then the newest migration made pending again by
//!    deleting its ledger row and dropping the tables it creates): `aifactoryd migrate`, which
//!    backs the file up with SQLite's online backup API before applying; a daemon start in the
//!    same state; the same migrate with nothing pending (its fixed cost); and, as peers for the
//!    backup, rusqlite's `Connection::backup` (the call the daemon makes) from this process,
//!    the `sqlite3` CLI's `.backup`, and a plain `cp` (+ fsync) as the floor. Interleaved run by
//!    run, each after a `syncfs`. Then start → `READY=1` on the migrated 100 MB database.
//!
//! Run with `cargo build --release -p aifactoryd -p aifactoryctl && cargo bench -p
//! aifactory-tests --bench store`: `cargo bench` does not build the daemon. The bench uses the
//! binaries in `target/release` (or `$AIFACTORY_BIN_DIR`). The tables printed at the end are
//! markdown, ready for BENCHMARKS.md.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use aifactory_tests::bench::{
    Latency, RunClock, checked, find_in_path, fmt_duration, print_report, run_ok, sized, time_run,
    warn_if_stale,
};
use aifactory_tests::{Sandbox, bin, skip};
use aifactoryd::migrate::{BACKUP_DIR, MIGRATIONS, Migration};
use aifactoryd::store::DB_FILE;
use nix::sys::signal::Signal;
use rusqlite::{Connection, params};

/// Timed runs of each start-up series, interleaved, after [`WARMUP`] untimed ones.
static STARTS: LazyLock<usize> = LazyLock::new(|| sized(200, 3));
static WARMUP: LazyLock<usize> = LazyLock::new(|| sized(3, 1));
/// Projects in the up-to-date database of the start-up series.
const PROJECTS: usize = 100;
/// Size the big database is filled to, with rows carrying [`FILLER`] bytes of text each.
static BIG_DB_BYTES: LazyLock<u64> = LazyLock::new(|| sized(100 << 20, 1 << 20));
const FILLER: usize = 1000;
const FILL_BATCH: usize = 1000;
/// Repetitions of the big-database series, and starts on the migrated big database.
static BIG_RUNS: LazyLock<usize> = LazyLock::new(|| sized(9, 1));
static BIG_STARTS: LazyLock<usize> = LazyLock::new(|| sized(10, 1));
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

fn main() {
    let clock = RunClock::start();
    warn_if_stale(&["aifactoryd"]);
    let startup = startup_series();
    let big = big_database();
    print_report(
        &clock.summary(None),
        &[startup_table(&startup), big_table(&big)],
    );
}

// ---------------------------------------------------------------------------------------------
// 1. Start-up.

struct Series {
    what: String,
    target: &'static str,
    latency: Latency,
}

fn startup_series() -> Vec<Series> {
    let current = Sandbox::new();
    run_ok(&mut migrate_command(&current), "applied");
    let mut conn = Connection::open(current.state_dir().join(DB_FILE)).expect("open the database");
    add_projects(&mut conn, 0..PROJECTS, &|i| {
        format!("git@github.com:bench/project-{i}.git")
    });
    drop(conn);
    let floor_sandbox = Sandbox::new();
    let floor = |exe: PathBuf, args: &[&str], expect: &str| {
        let mut cmd = Command::new(exe);
        floor_sandbox.apply_env(&mut cmd);
        cmd.args(args);
        checked(cmd, expect)
    };
    let mut version = floor(bin("aifactoryd"), &["--version"], "aifactoryd");
    let mut floor_true = floor(find_in_path("true").expect("`true` is on PATH"), &[], "");

    let n = MIGRATIONS.len();
    let whats = [
        format!("start → READY=1, up-to-date schema, {PROJECTS} projects"),
        format!("start → READY=1, empty state dir (creates the database, applies {n} migrations)"),
        format!("`aifactoryd migrate`, empty state dir (creates the database, applies {n})"),
        format!("`aifactoryd migrate`, up to date, {PROJECTS} projects"),
        "`aifactoryd --version` (floor: exec the daemon binary)".into(),
        "`true` (floor: spawn any process)".into(),
    ];
    let targets = ["< 50 ms", "–", "–", "–", "–", "–"];
    eprintln!(
        "start-up: {} timed runs of each of {} series",
        *STARTS,
        whats.len()
    );
    let mut samples: Vec<Vec<Duration>> = whats.iter().map(|_| Vec::new()).collect();
    // The first (untimed) start also switches `current` to WAL, as any daemon-used file is.
    for run in 0..*WARMUP + *STARTS {
        for k in 0..whats.len() {
            let which = (run + k) % whats.len();
            let took = match which {
                0 => start_to_ready(&current),
                1 => start_to_ready(&Sandbox::new()),
                2 => run_ok(&mut migrate_command(&Sandbox::new()), "applied").0,
                3 => run_ok(&mut migrate_command(&current), "up to date").0,
                4 => time_run(&mut version, "aifactoryd --version"),
                _ => time_run(&mut floor_true, "true"),
            };
            if run >= *WARMUP {
                samples[which].push(took);
            }
        }
    }
    whats
        .into_iter()
        .zip(targets)
        .zip(samples)
        .map(|((what, target), samples)| Series {
            what,
            target,
            latency: Latency::new(samples),
        })
        .collect()
}

/// Starts the daemon, returns the time from just before the spawn to READY=1's arrival, then
/// stops it with SIGTERM and checks it exited cleanly.
fn start_to_ready(sandbox: &Sandbox) -> Duration {
    let mut spawned = None;
    let mut daemon = sandbox
        .daemon()
        .spawn_with(|_| spawned = Some(Instant::now()));
    daemon.wait_ready();
    let ready = daemon
        .notify
        .wait_for("READY=1", Duration::ZERO)
        .expect("READY=1 was seen");
    let took = ready.at - spawned.expect("spawned");
    daemon.signal(Signal::SIGTERM);
    let status = daemon
        .wait_exit(STOP_TIMEOUT)
        .unwrap_or_else(|| panic!("aifactoryd did not stop on SIGTERM:\n{}", daemon.logs()));
    assert!(
        status.success(),
        "aifactoryd stopped with {status}:\n{}",
        daemon.logs()
    );
    took
}

/// Adds projects `ids` in one transaction, with the columns the daemon fills.
fn add_projects(
    conn: &mut Connection,
    ids: std::ops::Range<usize>,
    origin: &dyn Fn(usize) -> String,
) {
    let tx = conn.transaction().expect("begin");
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO projects (id, name, path, origin_url, provider, detected_provider,
                                       provider_manual, default_branch, created_at)
                 VALUES (?1, ?2, ?3, ?4, 'github', 'github', 0, 'main', '2026-01-01T00:00:00Z')",
            )
            .expect("prepare the insert");
        for i in ids {
            insert
                .execute(params![
                    format!("p-{i:08x}"),
                    format!("project-{i}"),
                    format!("/home/bench/src/project-{i}"),
                    origin(i),
                ])
                .expect("insert a project");
        }
    }
    tx.commit().expect("commit the projects");
}

// ---------------------------------------------------------------------------------------------
// 2. A 100 MB database with one pending migration.

struct Big {
    bytes: u64,
    rows: i64,
    migrate: Vec<Duration>,
    /// Start → READY=1 with the migration pending (the daemon backs up and migrates first).
    start_pending: Vec<Duration>,
    /// The pending migration, `NNNN_name`.
    pending: String,
    /// "applied NNNN_name in N ms", as `aifactoryd migrate` printed it.
    apply_ms: Vec<u64>,
    migrate_current: Vec<Duration>,
    rusqlite: Vec<Duration>,
    sqlite3: Option<Vec<Duration>>,
    cp: Vec<Duration>,
    fsync: Vec<Duration>,
    /// Start → READY=1 on the migrated database.
    ready: Vec<Duration>,
}

fn big_database() -> Big {
    let template = Sandbox::new();
    let source = template.state_dir().join(DB_FILE);
    eprintln!("building a {} MB database", *BIG_DB_BYTES >> 20);
    let (bytes, rows) = build_big(&template, &source);
    let sqlite3 = Path::new("/usr/bin/sqlite3");
    let sqlite3 = sqlite3.exists().then_some(sqlite3);
    if sqlite3.is_none() {
        skip(
            "store bench: sqlite3 comparison",
            "/usr/bin/sqlite3 does not exist",
        );
    }

    let latest = MIGRATIONS.last().expect("migrations");
    let mut big = Big {
        pending: format!("{:04}_{}", latest.version, latest.name),
        bytes,
        rows,
        migrate: Vec::new(),
        start_pending: Vec::new(),
        apply_ms: Vec::new(),
        migrate_current: Vec::new(),
        rusqlite: Vec::new(),
        sqlite3: sqlite3.map(|_| Vec::new()),
        cp: Vec::new(),
        fsync: Vec::new(),
        ready: Vec::new(),
    };
    let mut last = None;
    for run in 0..*BIG_RUNS {
        eprintln!("big database: run {} of {}", run + 1, *BIG_RUNS);
        // Two copies with the migration pending: one for `aifactoryd migrate`, one for a start.
        let [target, started] = [(); 2].map(|()| {
            let sandbox = Sandbox::new();
            let db = sandbox.state_dir().join(DB_FILE);
            fs::copy(&source, &db).expect("copy the big database");
            sync(&db);
            sandbox
        });
        let scratch = target.path().join("scratch.db");
        // Each run starts with a different one, so that noise falls on all of them alike, and
        // each starts with nothing left to write back on the filesystem.
        for k in 0..5 {
            settle(target.path());
            match (run + k) % 5 {
                0 => {
                    let (took, out) = run_ok(&mut migrate_command(&target), "applied");
                    assert!(out.contains("backed up version"), "no backup: {out}");
                    big.migrate.push(took);
                    big.apply_ms.push(applied_ms(&out));
                    assert_one_backup(&target, bytes);
                }
                1 => {
                    let conn = Connection::open(&source).expect("open the big database");
                    let start = Instant::now();
                    conn.backup(
                        rusqlite::MAIN_DB,
                        &scratch,
                        None::<fn(rusqlite::backup::Progress)>,
                    )
                    .expect("rusqlite backup");
                    big.rusqlite.push(start.elapsed());
                    drop(conn);
                    remove(&scratch);
                }
                2 => {
                    if let (Some(exe), Some(times)) = (sqlite3, big.sqlite3.as_mut()) {
                        let mut cmd = Command::new(exe);
                        cmd.arg(&source)
                            .arg(format!(".backup '{}'", scratch.display()));
                        times.push(run_ok(&mut cmd, "").0);
                        remove(&scratch);
                    }
                }
                3 => {
                    let mut cmd = Command::new("cp");
                    cmd.arg(&source).arg(&scratch);
                    big.cp.push(run_ok(&mut cmd, "").0);
                    let start = Instant::now();
                    sync(&scratch);
                    big.fsync.push(start.elapsed());
                    remove(&scratch);
                }
                4 => {
                    big.start_pending.push(start_to_ready(&started));
                    assert_one_backup(&started, bytes);
                }
                _ => unreachable!(),
            }
        }
        settle(target.path());
        big.migrate_current
            .push(run_ok(&mut migrate_command(&target), "up to date").0);
        last = Some(started);
    }

    let migrated = last.expect("at least one run");
    eprintln!("start → READY=1 on the migrated 100 MB database");
    big.ready = (0..*WARMUP + *BIG_STARTS)
        .map(|_| start_to_ready(&migrated))
        .skip(*WARMUP)
        .collect();
    big
}

/// Creates the full schema with the release `aifactoryd migrate`, fills `projects` to
/// [`BIG_DB_BYTES`], switches to WAL as a daemon-used file is, then makes the newest migration
/// pending again. Returns the file's size and rows.
fn build_big(sandbox: &Sandbox, db: &Path) -> (u64, i64) {
    run_ok(&mut migrate_command(sandbox), "applied");
    let mut conn = Connection::open(db).expect("open the database");
    let version: u32 = conn
        .query_row("SELECT max(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })
        .expect("read the schema version");
    let latest = MIGRATIONS.last().expect("migrations");
    assert_eq!(
        version,
        latest.version,
        "{} and this bench know different migrations: rebuild with `cargo build --release -p aifactoryd -p aifactoryctl`",
        bin("aifactoryd").display()
    );
    conn.pragma_update(None, "synchronous", "OFF")
        .expect("synchronous=OFF");
    let filler = "x".repeat(FILLER);
    let size = |conn: &Connection| -> u64 {
        conn.query_row(
            "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
            [],
            |r| r.get::<_, i64>(0),
        )
        .expect("database size") as u64
    };
    let mut next = 0usize;
    while size(&conn) < *BIG_DB_BYTES {
        add_projects(&mut conn, next..next + FILL_BATCH, &|i| {
            format!("https://git.example.invalid/bench/project-{i}.git#{filler}")
        });
        next += FILL_BATCH;
    }
    conn.pragma_update_and_check(None, "journal_mode", "wal", |r| r.get::<_, String>(0))
        .expect("journal_mode=wal");
    unapply(&conn, latest);
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM projects", [], |r| r.get(0))
        .expect("count rows");
    drop(conn);
    let bytes = fs::metadata(db).expect("stat the database").len();
    sync(db);
    (bytes, rows)
}

/// Makes `latest` pending again: drops the tables it creates and the columns it adds to
/// existing tables (both found by applying the migrations to an in-memory database) and
/// deletes its ledger row. Only a migration that adds tables, indexes and columns can be undone
/// this way; the bench says so if the newest one does more.
fn unapply(conn: &Connection, latest: &Migration) {
    let scratch = Connection::open_in_memory().expect("open an in-memory database");
    let schema = |c: &Connection| -> Vec<(String, String, Option<String>)> {
        c.prepare("SELECT type, name, sql FROM sqlite_master ORDER BY name")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect()
            })
            .expect("read the schema")
    };
    let columns = |c: &Connection, table: &str| -> Vec<String> {
        c.prepare("SELECT name FROM pragma_table_info(?1)")
            .and_then(|mut s| s.query_map([table], |r| r.get(0))?.collect())
            .expect("read a table's columns")
    };
    for m in MIGRATIONS.iter().take_while(|m| m.version < latest.version) {
        scratch
            .execute_batch(m.sql)
            .expect("apply an earlier migration");
    }
    let before = schema(&scratch);
    let before_columns: Vec<(String, Vec<String>)> = before
        .iter()
        .filter(|(kind, _, _)| kind == "table")
        .map(|(_, name, _)| (name.clone(), columns(&scratch, name)))
        .collect();
    scratch
        .execute_batch(latest.sql)
        .expect("apply the newest migration");
    let after = schema(&scratch);
    let added: Vec<_> = after
        .iter()
        .filter(|(_, name, _)| !before.iter().any(|(_, n, _)| n == name))
        .cloned()
        .collect();
    // SQLite makes `sqlite_sequence` for the first AUTOINCREMENT table and never lets it be
    // dropped: the bench forgets that table's rows instead.
    let tables: Vec<&str> = added
        .iter()
        .filter(|(kind, name, _)| kind == "table" && name != "sqlite_sequence")
        .map(|(_, name, _)| name.as_str())
        .collect();
    // Columns added to tables that were there before, dropped again below.
    let new_columns: Vec<(&str, Vec<String>)> = before_columns
        .iter()
        .map(|(table, old)| {
            let now = columns(&scratch, table);
            let new = now.into_iter().filter(|c| !old.contains(c)).collect();
            (table.as_str(), new)
        })
        .filter(|(_, new): &(&str, Vec<String>)| !new.is_empty())
        .collect();
    let undoable = added
        .iter()
        .all(|(kind, _, _)| kind == "table" || kind == "index")
        && before.iter().all(|(kind, name, sql)| {
            after.iter().any(|(k, n, s)| {
                k == kind
                    && n == name
                    && (s == sql || (kind == "table" && new_columns.iter().any(|(t, _)| t == name)))
            })
        })
        && before_columns
            .iter()
            .all(|(table, old)| columns(&scratch, table).starts_with(old));
    assert!(
        (!tables.is_empty() || !new_columns.is_empty()) && undoable,
        "migration {:04}_{} does more than add tables, indexes and columns ({added:?}, {new_columns:?}): teach this bench to undo it",
        latest.version,
        latest.name
    );
    for table in tables {
        conn.execute_batch(&format!("DROP TABLE \"{table}\""))
            .expect("drop a table of the newest migration");
        if added.iter().any(|(_, name, _)| name == "sqlite_sequence") {
            conn.execute("DELETE FROM sqlite_sequence WHERE name = ?1", [table])
                .expect("forget a dropped table's AUTOINCREMENT counter");
        }
    }
    for (table, new) in &new_columns {
        for column in new {
            conn.execute_batch(&format!("ALTER TABLE \"{table}\" DROP COLUMN \"{column}\""))
                .expect("drop a column of the newest migration");
        }
    }
    conn.execute(
        "DELETE FROM schema_migrations WHERE version = ?1",
        [latest.version],
    )
    .expect("delete the newest migration's ledger row");
}

/// Checks that migrating left exactly one backup, at least as big as the database.
fn assert_one_backup(sandbox: &Sandbox, bytes: u64) {
    let sizes: Vec<u64> = fs::read_dir(sandbox.state_dir().join(BACKUP_DIR))
        .expect("list the backups")
        .flatten()
        .map(|e| e.metadata().expect("stat the backup").len())
        .collect();
    assert!(
        sizes.len() == 1 && sizes[0] >= bytes,
        "expected one full-size backup, found {sizes:?}"
    );
}

fn applied_ms(out: &str) -> u64 {
    out.lines()
        .find_map(|l| {
            l.strip_prefix("applied ")?
                .rsplit_once(" in ")?
                .1
                .strip_suffix(" ms")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no `applied ... in N ms` in: {out}"))
}

fn sync(file: &Path) {
    fs::File::open(file)
        .and_then(|f| f.sync_all())
        .unwrap_or_else(|e| panic!("fsync {}: {e}", file.display()));
}

/// Writes back everything dirty on the filesystem holding `dir` (the last copy, the last
/// removal), so that no measurement pays for its predecessor's writeback.
fn settle(dir: &Path) {
    let dir = fs::File::open(dir).expect("open a directory");
    nix::unistd::syncfs(&dir).expect("syncfs");
}

fn remove(file: &Path) {
    fs::remove_file(file).unwrap_or_else(|e| panic!("remove {}: {e}", file.display()));
}

// ---------------------------------------------------------------------------------------------
// Processes.

fn migrate_command(sandbox: &Sandbox) -> Command {
    if !sandbox.config_file().exists() {
        sandbox.write_config("");
    }
    let mut cmd = Command::new(bin("aifactoryd"));
    sandbox.apply_env(&mut cmd);
    cmd.arg("--config")
        .arg(sandbox.config_file())
        .arg("--state-dir")
        .arg(sandbox.state_dir())
        .arg("migrate");
    cmd
}

// ---------------------------------------------------------------------------------------------
// Measurements.

// ---------------------------------------------------------------------------------------------
// Markdown.

fn startup_table(series: &[Series]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| Start-up (release binaries) | n | median | p99 | min | max | target |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---|");
    for s in series {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            s.what,
            s.latency.len(),
            fmt_duration(s.latency.median()),
            fmt_duration(s.latency.p99()),
            fmt_duration(s.latency.min()),
            fmt_duration(s.latency.max()),
            s.target,
        );
    }
    out
}

fn big_table(big: &Big) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| {:.1} MB database ({} `projects` rows), 1 pending migration | n | median | min | max |",
        big.bytes as f64 / (1u64 << 20) as f64,
        big.rows
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|");
    let row = |out: &mut String, what: &str, samples: &[Duration]| {
        let l = Latency::new(samples.to_vec());
        let _ = writeln!(
            out,
            "| {what} | {} | {} | {} | {} |",
            l.len(),
            fmt_duration(l.median()),
            fmt_duration(l.min()),
            fmt_duration(l.max()),
        );
    };
    row(
        &mut out,
        &format!(
            "`aifactoryd migrate`: backup + apply {} (process, total)",
            big.pending
        ),
        &big.migrate,
    );
    let mut applied = big.apply_ms.clone();
    applied.sort_unstable();
    let _ = writeln!(
        out,
        "| of which applying {} itself (as `migrate` prints it, whole ms) | {} | {} ms | {} ms | {} ms |",
        big.pending,
        applied.len(),
        applied[applied.len() / 2],
        applied[0],
        applied[applied.len() - 1]
    );
    row(
        &mut out,
        "`aifactoryd migrate`, nothing pending, same database (fixed cost)",
        &big.migrate_current,
    );
    let estimate: Vec<Duration> = big
        .migrate
        .iter()
        .zip(&big.migrate_current)
        .map(|(total, fixed)| total.saturating_sub(*fixed))
        .collect();
    row(
        &mut out,
        "⇒ the daemon's backup + apply (total − fixed cost, per run)",
        &estimate,
    );
    row(
        &mut out,
        &format!(
            "start → READY=1, {} pending (the daemon backs up and migrates first)",
            big.pending
        ),
        &big.start_pending,
    );
    row(
        &mut out,
        "peer: rusqlite `Connection::backup` in-process (the daemon's call)",
        &big.rusqlite,
    );
    if let Some(times) = &big.sqlite3 {
        row(
            &mut out,
            "peer: `sqlite3 SRC \".backup DST\"` (process)",
            times,
        );
    }
    row(&mut out, "floor: `cp SRC DST` (process, no fsync)", &big.cp);
    row(&mut out, "floor: fsync of that copy", &big.fsync);
    let cp_sync: Vec<Duration> = big
        .cp
        .iter()
        .zip(&big.fsync)
        .map(|(a, b)| *a + *b)
        .collect();
    row(&mut out, "floor: `cp` + fsync", &cp_sync);
    row(
        &mut out,
        "start → READY=1 on the migrated database (up to date)",
        &big.ready,
    );
    out
}
