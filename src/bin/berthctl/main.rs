//! berthctl: the command line over berth's D-Bus API. Human tables by default, `--json` for
//! scripts. Uses only the generated proxy and the spec types.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::json;

use berth::dbus::client::ManagerProxy;

mod attach;
mod history;
mod images;
mod services;
mod tasks;
mod top;
mod wait;

#[derive(Parser)]
#[command(version, about = "berth: Amazon ECS for one Linux host (command line)")]
struct Args {
    /// D-Bus address of the bus berthd serves on (default: the system bus).
    #[arg(long, global = true, env = "BERTH_BUS_ADDRESS", value_name = "ADDR")]
    bus_address: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The host's registered and remaining CPU and memory.
    Capacity,
    /// Register an ECS task definition file (`-` for standard input); prints family:revision.
    Register { file: PathBuf },
    /// List active task definitions (optionally of families starting with PREFIX).
    Definitions { prefix: Option<String> },
    /// Show a registered task definition (FAMILY or FAMILY:REVISION).
    Definition { reference: String },
    /// Deregister FAMILY:REVISION.
    Deregister { reference: String },
    /// Run a task of FAMILY[:REVISION]; prints the task id.
    Run {
        reference: String,
        /// Show the containers' output as it comes and wait until the task stops; exit with
        /// its essential container's exit code (with --json: only the stopped task, as JSON).
        #[arg(long, conflicts_with = "detach")]
        wait: bool,
        /// Print the task id and return at once (the default; as `docker run -d`).
        #[arg(long, short)]
        detach: bool,
        /// `container` or `microvm` (a VM of its own); default: the daemon's choice.
        #[arg(long, value_parser = ["container", "microvm"])]
        isolation: Option<String>,
    },
    /// List tasks that are not stopped (all with --all).
    Ps {
        #[arg(long, short)]
        all: bool,
    },
    /// Show a task.
    Describe { task: String },
    /// Wait until the tasks are STOPPED (or RUNNING); fails at once if a task stops before
    /// it runs, and after --timeout seconds.
    Wait {
        #[arg(required = true)]
        tasks: Vec<String>,
        #[arg(long, value_enum, default_value = "STOPPED")]
        status: wait::Target,
        /// Give up after this many seconds (default: wait as long as it takes).
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
    },
    /// Stop a task (SIGTERM, then SIGKILL after each container's stopTimeout).
    Stop {
        task: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Print a container's output (the task's first container by default).
    Logs {
        task: String,
        container: Option<String>,
        /// Keep printing until the task stops.
        #[arg(long, short)]
        follow: bool,
    },
    /// What running tasks and their containers use (CPU %, memory, pids), every second.
    Top {
        /// Print once (after a second's sample, for the CPU rate) and exit.
        #[arg(long)]
        once: bool,
    },
    /// Images: import, pull, ls, rm.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Services: create, update, delete, ls, describe, events, scaling, why.
    #[command(subcommand)]
    Service(services::ServiceCommand),
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Import an OCI image layout directory, or a `docker save` / docker-archive tarball.
    Import {
        path: PathBuf,
        /// NAME:TAG to give the image (default: the name the archive carries).
        #[arg(long)]
        name: Option<String>,
    },
    /// Pull an image from its registry (bytes and layers shown as they arrive).
    Pull {
        /// NAME[:TAG] or NAME@sha256:DIGEST, as a task definition's `image` gives it.
        reference: String,
        /// Print only the name and id at the end.
        #[arg(long, short)]
        quiet: bool,
    },
    /// List imported images.
    Ls,
    /// Remove an image no running task uses.
    Rm { name: String },
}

async fn connect(address: Option<&str>) -> anyhow::Result<ManagerProxy<'static>> {
    let conn = match address {
        Some(a) => zbus::connection::Builder::address(a).build().await,
        None => zbus::connection::Builder::system().build().await,
    }
    .with_context(|| {
        format!(
            "cannot connect to the bus {}",
            address.unwrap_or("(system)")
        )
    })?;
    Ok(ManagerProxy::new(&conn).await?)
}

/// Shows a daemon error as its short name and message, e.g. `InvalidTaskDefinition: ...`.
pub(crate) fn wire(e: berth::dbus::BerthError) -> anyhow::Error {
    use berth::dbus::BerthError as E;
    match e {
        E::ZBus(z) => z.into(),
        E::AccessDenied(m) => anyhow::anyhow!("AccessDenied: {m}"),
        E::InvalidTaskDefinition(m) => anyhow::anyhow!("InvalidTaskDefinition: {m}"),
        E::NotFound(m) => anyhow::anyhow!("NotFound: {m}"),
        E::InvalidArgument(m) => anyhow::anyhow!("InvalidArgument: {m}"),
        E::ResourceUnavailable(m) => anyhow::anyhow!("ResourceUnavailable: {m}"),
        E::InUse(m) => anyhow::anyhow!("InUse: {m}"),
        E::Failed(m) => anyhow::anyhow!("Failed: {m}"),
    }
}

async fn run(args: Args) -> anyhow::Result<u8> {
    let m = connect(args.bus_address.as_deref()).await?;
    match args.command {
        Command::Capacity => {
            let text = m.describe_capacity().await?;
            if args.json {
                println!("{text}");
            } else {
                let v: serde_json::Value =
                    serde_json::from_str(&text).context("the daemon sent malformed JSON")?;
                print_capacity(&v);
            }
        }
        Command::Register { file } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?
            };
            let (reference, ignored) = m.register_task_definition(text).await.map_err(wire)?;
            if args.json {
                println!(
                    "{}",
                    json!({"taskDefinition": reference, "ignored": ignored})
                );
            } else {
                println!("{reference}");
                for i in ignored {
                    eprintln!("ignored: {i}");
                }
            }
        }
        Command::Definitions { prefix } => {
            let list = m.list_task_definitions(prefix.unwrap_or_default()).await?;
            if args.json {
                println!("{}", json!(list));
            } else {
                list.iter().for_each(|d| println!("{d}"));
            }
        }
        Command::Definition { reference } => {
            let text = m.describe_task_definition(reference).await.map_err(wire)?;
            let v: serde_json::Value = serde_json::from_str(&text)?;
            println!(
                "{}",
                if args.json {
                    v.to_string()
                } else {
                    serde_json::to_string_pretty(&v)?
                }
            );
        }
        Command::Deregister { reference } => {
            println!(
                "{}",
                m.deregister_task_definition(reference)
                    .await
                    .map_err(wire)?
            );
        }
        Command::Run {
            reference,
            wait,
            isolation,
            detach: _,
        } => {
            return tasks::run(&m, reference, isolation, wait, args.json).await;
        }
        Command::Ps { all } => tasks::ps(&m, all, args.json).await?,
        Command::Describe { task } => tasks::show(&m, &task, args.json).await?,
        Command::Wait {
            tasks,
            status,
            timeout,
        } => wait::run(&m, tasks, status, timeout, args.json).await?,
        Command::Stop { task, reason } => tasks::stop(&m, task, reason).await?,
        Command::Logs {
            task,
            container,
            follow,
        } => tasks::logs(&m, task, container, follow).await?,
        Command::Top { once } => top::top(&m, once, args.json).await?,
        Command::Image(ImageCommand::Import { path, name }) => {
            images::import(&m, &path, name).await?
        }
        Command::Image(ImageCommand::Pull { reference, quiet }) => {
            images::pull(&m, reference, quiet).await?
        }
        Command::Image(ImageCommand::Ls) => images::ls(&m, args.json).await?,
        Command::Image(ImageCommand::Rm { name }) => images::rm(&m, name).await?,
        Command::Service(cmd) => services::run(&m, cmd, args.json).await?,
    }
    Ok(0)
}

fn main() -> ExitCode {
    // `berthctl ps | head` should end quietly when head does, as other Unix tools do, rather
    // than panic on the closed pipe.
    // SAFETY: called before any thread starts; SIG_DFL is a valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berthctl: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!(
                "berthctl: {}",
                e.chain()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(": ")
            );
            ExitCode::FAILURE
        }
    }
}

/// The books as two tables: per resource, then per task holding a reservation.
fn print_capacity(v: &serde_json::Value) {
    let row =
        |a: &str, b: String, c: String, d: String| println!("{a:<10} {b:>12} {c:>12} {d:>12}");
    row(
        "RESOURCE",
        "REGISTERED".into(),
        "RESERVED".into(),
        "REMAINING".into(),
    );
    let get = |k: &str| v[k].as_u64().unwrap_or(0);
    row(
        "cpu",
        get("registeredCpu").to_string(),
        get("reservedCpu").to_string(),
        get("remainingCpu").to_string(),
    );
    let mib = |k: &str| format!("{} MiB", get(k));
    row(
        "memory",
        mib("registeredMemory"),
        mib("reservedMemory"),
        mib("remainingMemory"),
    );
    for proto in ["tcp", "udp"] {
        let n = |k: &str| v[k][proto].as_u64().unwrap_or(0).to_string();
        row(
            &format!("{proto} ports"),
            n("registeredPorts"),
            n("reservedPorts"),
            n("remainingPorts"),
        );
    }
    let tasks = v["tasks"].as_array().cloned().unwrap_or_default();
    if tasks.is_empty() {
        return;
    }
    println!();
    println!(
        "{:<32} {:<24} {:<12} {:>6} {:>10}  PORTS",
        "TASK", "DEFINITION", "STATUS", "CPU", "MEMORY"
    );
    for t in tasks {
        let ports: Vec<&str> = t["ports"]
            .as_array()
            .map(|a| a.iter().filter_map(|p| p.as_str()).collect())
            .unwrap_or_default();
        let vm = match (t["vmMemory"].as_u64(), t["vmmOverheadMemory"].as_u64()) {
            (Some(vm), Some(vmm)) => format!("  (microVM: VM {vm} MiB + VMM {vmm} MiB)"),
            _ => String::new(),
        };
        println!(
            "{:<32} {:<24} {:<12} {:>6} {:>10}  {}{vm}",
            t["taskId"].as_str().unwrap_or(""),
            t["taskDefinition"].as_str().unwrap_or(""),
            t["lastStatus"].as_str().unwrap_or(""),
            t["cpu"].as_u64().unwrap_or(0),
            format!("{} MiB", t["memory"].as_u64().unwrap_or(0)),
            ports.join(",")
        );
    }
}
