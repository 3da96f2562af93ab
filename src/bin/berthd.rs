//! berthd: the berth daemon. All behaviour lives in the library; this edge parses arguments,
//! sets up logging and turns errors into one line and an exit status.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Exit status for a host or configuration berthd cannot run on (sysexits' EX_CONFIG); the
/// unit's RestartPreventExitStatus= names it so systemd does not restart into the same wall.
const EXIT_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(version, about = "berth: Amazon ECS for one Linux host (daemon)")]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Config file (TOML). Default: /etc/berth/berthd.toml if it exists, else built-in defaults.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// (internal) The per-task shim berthd starts; not for use by hand.
    #[command(hide = true)]
    Shim { task_dir: PathBuf },
}

fn one_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Shim { task_dir }) = args.command {
        // No tracing subscriber here: libcontainer forks this process, and output from the
        // forked child would land in the container's stderr.
        return match berth::runtime::shim::run(&task_dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("berth-shim: {}", one_line(&e.into()));
                ExitCode::FAILURE
            }
        };
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = match berth::config::Config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berthd: {}", one_line(&e.into()));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("berthd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(berth::daemon::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let config_problem = e.needs_operator();
            eprintln!("berthd: {}", one_line(&e.into()));
            if config_problem {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
