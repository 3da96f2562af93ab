//! berth-shim: the per-task shim as a binary of its own (`berth-shim TASK_DIR`), linking only
//! what the shim needs (libcontainer, nix) and none of berthd's daemon (tokio, zbus, SQLite,
//! HTTP), so each launch pages in less and each shim maps less. berthd starts it from beside
//! its own executable, falling back to `berthd shim TASK_DIR`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(task_dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: berth-shim TASK_DIR (started by berthd; not for use by hand)");
        return ExitCode::from(2);
    };
    // No tracing subscriber: libcontainer forks this process, and output from the forked
    // child would land in the container's stderr.
    match berth::runtime::shim::run(&PathBuf::from(task_dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-shim: {}", berth::runtime::shim::describe(&e));
            ExitCode::FAILURE
        }
    }
}
