//! The inspection commands (`status`, `runs`, `events`) on a store the user
//! cannot write: a 0444 database in a 0555 directory they do not own, with
//! no `-wal`/`-shm` beside it. SQLite cannot create the `-shm` it reads a
//! WAL database through there, and weft falls back to reading the file as
//! immutable (see `weft_store_sqlite`'s `read_only` module).
//!
//! Tests usually run as root, and root ignores file permissions (it would
//! create the `-shm` and the bug would not show), so then the commands run
//! as uid/gid 65534 through `setpriv` (util-linux); as an ordinary user they
//! run as that user.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use weft_store_sqlite::SqliteStore;

use crate::support::{stderr, stdout, weft};

const EXAMPLE: &str = "examples/order-approval/workflow.toml";

/// Runs the example with `input` in `home`'s store; returns its run id.
fn example_run(home: &Path, input: &str, code: i32) -> String {
    let out = weft(home)
        .args(["run", EXAMPLE, "--input", input, "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    result["run_id"].as_str().unwrap().to_owned()
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Whether uid 65534 can reach and run `file`: every directory above it
/// searchable by others, the file readable and executable by others.
fn others_can_run(file: &Path) -> bool {
    let mode = |p: &Path| fs::metadata(p).map(|m| m.permissions().mode()).unwrap_or(0);
    mode(file) & 0o005 == 0o005 && file.ancestors().skip(1).all(|dir| mode(dir) & 0o001 != 0)
}

/// A user who cannot write the store's directory.
enum Other {
    /// This process's own user (not root): the directory's mode stops it.
    Me,
    /// Root is not stopped by modes: uid/gid 65534, through `setpriv`.
    Nobody,
}

impl Other {
    /// Who can play the other user for `dir`; `None` for root without
    /// `setpriv`.
    fn for_dir(dir: &Path) -> Option<Self> {
        let probe = dir.join(".probe");
        if fs::write(&probe, b"").is_err() {
            return Some(Self::Me);
        }
        fs::remove_file(&probe).unwrap();
        let setpriv = Command::new("setpriv").arg("--version").output();
        setpriv
            .is_ok_and(|o| o.status.success())
            .then_some(Self::Nobody)
    }

    /// `program` run as this user.
    fn command(&self, program: &Path) -> Command {
        match self {
            Self::Me => Command::new(program),
            Self::Nobody => {
                let mut cmd = Command::new("setpriv");
                cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                    .arg(program);
                cmd
            }
        }
    }

    /// The `weft` binary where this user can run it: where cargo built it,
    /// or a copy in `scratch` when uid 65534 cannot reach the target
    /// directory.
    fn weft(&self, scratch: &Path) -> PathBuf {
        let exe = PathBuf::from(env!("CARGO_BIN_EXE_weft"));
        if matches!(self, Self::Me) || others_can_run(&exe) {
            return exe;
        }
        let copy = scratch.join("weft");
        fs::copy(&exe, &copy).unwrap();
        set_mode(&copy, 0o755);
        copy
    }
}

/// The JSON lines of a successful command's stdout.
fn json_lines(out: &Output, what: &str) -> Vec<Value> {
    assert_eq!(out.status.code(), Some(0), "{what}: {}", stderr(out));
    stdout(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn inspection_commands_read_a_store_in_a_directory_they_cannot_write() {
    // A store with a finished and a suspended run, and what the inspection
    // commands print for it while it is writable.
    let home = tempfile::tempdir().unwrap();
    let done = example_run(home.path(), "@examples/order-approval/small-order.json", 0);
    let waiting = example_run(home.path(), "@examples/order-approval/big-order.json", 3);
    let inspect = |args: &[&str]| weft(home.path()).args(args).output().unwrap();
    let expected = [
        ["status", done.as_str(), "--json"],
        ["status", waiting.as_str(), "--json"],
        ["events", done.as_str(), "--json"],
        ["events", waiting.as_str(), "--json"],
    ]
    .map(|args| json_lines(&inspect(&args), &args.join(" ")));
    let runs = json_lines(&inspect(&["runs", "--json"]), "runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].as_array().unwrap().len(), 2);
    // Closing the last connection checkpoints the log and removes -wal and
    // -shm; open and close once more to be sure no weft left them.
    drop(SqliteStore::open(&home.path().join("weft.db")).unwrap());
    assert!(!home.path().join("weft.db-wal").exists());
    assert!(!home.path().join("weft.db-shm").exists());

    // A copy of it, 0444 in a 0555 directory, as another user's store; it
    // is that user's WEFT_HOME.
    let scratch = tempfile::tempdir().unwrap();
    set_mode(scratch.path(), 0o755); // tempdir is 0700
    let store_home = scratch.path().join("home");
    fs::create_dir(&store_home).unwrap();
    fs::copy(home.path().join("weft.db"), store_home.join("weft.db")).unwrap();
    set_mode(&store_home.join("weft.db"), 0o444);
    set_mode(&store_home, 0o555);

    let Some(other) = Other::for_dir(&store_home) else {
        set_mode(&store_home, 0o755);
        eprintln!(
            "NOTE: running as root without `setpriv`: no user who cannot \
             write the directory, the test checked nothing"
        );
        return;
    };
    // The condition is real: that user cannot create a file there.
    let touch = other
        .command(Path::new("touch"))
        .arg(store_home.join("probe"))
        .output()
        .unwrap();
    assert!(
        !touch.status.success(),
        "the other user can write the directory"
    );
    let exe = other.weft(scratch.path());
    let run_as_other = |args: &[&str]| {
        other
            .command(&exe)
            .args(args)
            .env("WEFT_HOME", &store_home)
            .env_remove("RUST_LOG")
            .current_dir(scratch.path())
            .output()
            .unwrap()
    };

    let got = [
        ["status", done.as_str(), "--json"],
        ["status", waiting.as_str(), "--json"],
        ["events", done.as_str(), "--json"],
        ["events", waiting.as_str(), "--json"],
    ]
    .map(|args| json_lines(&run_as_other(&args), &args.join(" ")));
    assert_eq!(got, expected);
    assert_eq!(got[0][0]["status"], "success");
    assert_eq!(got[1][0]["status"], "suspended");
    assert!(got[2].len() > 2 && got[3].len() > 2);
    assert_eq!(json_lines(&run_as_other(&["runs", "--json"]), "runs"), runs);
    // A run that is not there is still an invalid run id (exit 2), not an
    // I/O error.
    let out = run_as_other(&["status", "no-such-run", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // Nothing was created, nothing changed.
    assert_eq!(names(&store_home), ["weft.db"]);
    assert_eq!(
        fs::read(store_home.join("weft.db")).unwrap(),
        fs::read(home.path().join("weft.db")).unwrap()
    );
    set_mode(&store_home, 0o755); // for tempdir's cleanup as a non-root user
}
