//! berth-bench: the figures behind `bench/run`. Runs as root where berthd runs (the test guest,
//! or a real host), with the `busybox:latest` image imported; prints a table with a verdict
//! beside each target and writes the figures as JSON. Never a pass/fail test: the verdicts
//! are information, the run fails only when something could not be measured.

mod fleet;
mod launch;
mod microvm;
mod stats;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use serde_json::{json, Value};

use berth::dbus::client::ManagerProxy;
use stats::{fit, median, pairwise_ratio, percentile};

#[derive(Parser)]
#[command(about = "berth's launch, overhead, density and scrape figures beside crun and runc")]
struct Args {
    /// Launch runs of each kind after warm-up, interleaved.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Idle tasks for the density run (the largest overhead and scrape count).
    #[arg(long, default_value_t = 200)]
    tasks: usize,
    /// Further idle-task counts to measure overhead and scrape at.
    #[arg(long, value_delimiter = ',', default_value = "1,50")]
    levels: Vec<usize>,
    /// Where to write the figures.
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,
    #[arg(long, default_value = "/usr/bin/berthctl")]
    berthctl: PathBuf,
    #[arg(long, default_value = "/var/lib/berth")]
    state_dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:9580")]
    metrics: String,
    /// Runs of each microVM row (0: none). Skipped, with the reason, where berthd has no
    /// guest kernel.
    #[arg(long = "microvm-runs", default_value_t = 3)]
    microvm_runs: usize,
    /// berthd's config, for the microVM rows' kernel and VMM.
    #[arg(long, default_value = "/etc/berth/berthd.toml")]
    config: PathBuf,
    /// Facts about the run to record (KEY=VALUE: commit, kernel, emulated, profile...).
    #[arg(long = "fact", value_parser = parse_fact)]
    facts: Vec<(String, String)>,
}

fn parse_fact(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s}: expected KEY=VALUE"))
}

const TRUE_DEF: &str = r#"{"family":"bench-true","networkMode":"none","containerDefinitions":[
  {"name":"main","image":"busybox:latest","memory":32,"command":["/bin/true"]}]}"#;
/// Exits on SIGTERM: a bare `sleep` as PID 1 ignores it, and stopping would time the 30 s
/// stopTimeout instead of berth.
const IDLE_DEF: &str = r#"{"family":"bench-idle","networkMode":"none","containerDefinitions":[
  {"name":"main","image":"busybox:latest","memory":6,
   "command":["sh","-c","trap 'exit 0' TERM; sleep 86400 & wait"]}]}"#;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn progress(msg: &str) {
    eprintln!("bench: {msg}");
}

/// The launch figures: every kind interleaved run by run, so drift hits all alike.
async fn launches(m: &ManagerProxy<'_>, a: &Args, true_ref: &str) -> anyhow::Result<Value> {
    let work = PathBuf::from("/run/berth-bench");
    std::fs::create_dir_all(&work)?;
    let first = launch::api(m, true_ref, "STOPPED").await?;
    launch::exited_zero(m, &first.task_id).await?;
    let bundle = launch::Bundle::from_task(&a.state_dir.join("tasks").join(&first.task_id))?;
    let (mut berth, mut ctl, mut crun, mut runc) = (vec![], vec![], vec![], vec![]);
    let mut last = first;
    for i in 0..a.runs + 2 {
        let warm = i < 2;
        progress(&format!(
            "launch {}{}",
            if warm { "warm-up " } else { "" },
            if warm { i + 1 } else { i - 1 }
        ));
        let r = launch::api(m, true_ref, "STOPPED").await?;
        launch::exited_zero(m, &r.task_id).await?;
        let c = launch::berthctl(&a.berthctl, true_ref).await?;
        let cr = launch::oci("crun", &bundle, &work, &format!("crun-{i}"))?;
        let rc = launch::oci("runc", &bundle, &work, &format!("runc-{i}"))?;
        if !warm {
            berth.push(ms(r.to_stopped.unwrap_or_default()));
            ctl.push(ms(c));
            crun.push(ms(cr));
            runc.push(ms(rc));
        }
        last = r;
    }
    let mut to_running = vec![];
    let idle_ref = "bench-idle";
    for i in 0..a.runs {
        progress(&format!("RunTask → RUNNING {}", i + 1));
        let r = launch::api(m, idle_ref, "RUNNING").await?;
        to_running.extend(r.to_running.map(ms));
        fleet::stop(m, &[r.task_id]).await?;
    }
    let journal = std::process::Command::new("journalctl")
        .args(["-u", "berthd", "-o", "cat", "--no-pager", "-n", "2000"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    let journal = strip_ansi(&journal);
    let spans = launch::spans(
        &a.state_dir.join("tasks").join(&last.task_id),
        "main",
        &journal,
        &last,
    );
    let summary = |v: &[f64]| json!({"median": median(v), "p90": percentile(v, 90.0), "runs": v});
    Ok(json!({
        "berth_ms": summary(&berth),
        "berthctl_ms": summary(&ctl),
        "crun_ms": summary(&crun),
        "runc_ms": summary(&runc),
        "to_running_ms": summary(&to_running),
        "ratio_vs_crun": pairwise_ratio(&berth, &crun),
        "ratio_vs_runc": pairwise_ratio(&berth, &runc),
        "spans_ms": spans,
    }))
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Density at `a.tasks`, then overhead and scrape at every level (0 included).
async fn fleet_figures(m: &ManagerProxy<'_>, a: &Args, idle_ref: &str) -> anyhow::Result<Value> {
    let mut levels = vec![fleet::measure(&[], 1, &a.state_dir, &a.metrics)];
    progress(&format!("density: starting {} idle tasks at once", a.tasks));
    let (ids, up) = fleet::start(m, idle_ref, a.tasks).await?;
    levels.push(fleet::measure(&ids, 1, &a.state_dir, &a.metrics));
    progress(&format!("density: stopping {} tasks", a.tasks));
    let down = fleet::stop(m, &ids).await?;
    let cap: Value = serde_json::from_str(&m.describe_capacity().await?)?;
    let whole = cap["remainingCpu"] == cap["registeredCpu"]
        && cap["remainingMemory"] == cap["registeredMemory"];
    for &n in a.levels.iter().filter(|&&n| n > 0 && n != a.tasks) {
        progress(&format!("overhead and scrape at {n} idle tasks"));
        let (ids, _) = fleet::start(m, idle_ref, n).await?;
        levels.push(fleet::measure(&ids, 1, &a.state_dir, &a.metrics));
        fleet::stop(m, &ids).await?;
    }
    levels.sort_by_key(|l| l.tasks);
    let by_count = |f: &dyn Fn(&fleet::Level) -> Option<f64>| -> BTreeMap<String, Option<f64>> {
        levels.iter().map(|l| (l.tasks.to_string(), f(l))).collect()
    };
    let scrape_points: Vec<(f64, f64)> = levels
        .iter()
        .filter_map(|l| Some((l.containers as f64, l.scrape_ms?)))
        .collect();
    let scrape_line = fit(&scrape_points);
    // berthd's own per-task work: reading the files and building the series.
    let inside_points: Vec<(f64, f64)> = levels
        .iter()
        .filter_map(|l| {
            let p = &l.scrape_parts_ms;
            Some((
                l.containers as f64,
                p.get("task_files")? + p.get("task_series")?,
            ))
        })
        .collect();
    let inside_line = fit(&inside_points);
    let rss_points: Vec<(f64, f64)> = levels
        .iter()
        .filter_map(|l| Some((l.tasks as f64, l.berthd_rss_kib?)))
        .collect();
    let rss_line = fit(&rss_points);
    Ok(json!({
        "density": {
            "tasks": a.tasks,
            "all_running": true,
            "start_s": up.as_secs_f64(),
            "tasks_per_s": a.tasks as f64 / up.as_secs_f64(),
            "stop_s": down.as_secs_f64(),
            "books_whole_after_stop": whole,
        },
        "overhead": {
            "shim_rss_kib": by_count(&|l| l.shim_rss_kib),
            "shim_pss_kib": by_count(&|l| l.shim_pss_kib),
            "shim_charge_kib": by_count(&|l| l.shim_charge_kib),
            "berthd_rss_kib": by_count(&|l| l.berthd_rss_kib),
            "berthd_rss_kib_per_task": rss_line.map(|l| l.slope),
            // A slope at or below zero is noise (allocator reuse), not shrinking: never
            // extrapolate below what was measured.
            "berthd_rss_kib_at_1000_extrapolated": rss_line.map(|l| {
                let most = rss_points.iter().map(|p| p.1).fold(0.0, f64::max);
                (l.intercept + l.slope.max(0.0) * 1000.0).max(most)
            }),
        },
        "scrape": {
            "ms": by_count(&|l| l.scrape_ms),
            "bytes": levels.iter().map(|l| (l.tasks.to_string(), l.scrape_bytes)).collect::<BTreeMap<_, _>>(),
            "us_per_container": scrape_line.map(|l| l.slope * 1000.0),
            "linear_fit_r2": scrape_line.map(|l| l.r2),
            "parts_ms": levels.iter().map(|l| (l.tasks.to_string(), l.scrape_parts_ms.clone())).collect::<BTreeMap<_, _>>(),
            "berthd_us_per_container": inside_line.map(|l| l.slope * 1000.0),
        },
    }))
}

async fn register(m: &ManagerProxy<'_>, json: &str) -> anyhow::Result<String> {
    let (reference, _) = m
        .register_task_definition(json.to_string())
        .await
        .context("RegisterTaskDefinition")?;
    Ok(reference)
}

async fn run(a: Args) -> anyhow::Result<Value> {
    let conn = zbus::connection::Builder::system()
        .build()
        .await
        .context("cannot connect to the system bus")?;
    let m = ManagerProxy::new(&conn).await?;
    let true_ref = register(&m, TRUE_DEF).await?;
    let idle_ref = register(&m, IDLE_DEF).await?;
    let launch = launches(&m, &a, &true_ref).await?;
    let fleet = fleet_figures(&m, &a, &idle_ref).await?;
    let mut facts: BTreeMap<String, String> = a.facts.iter().cloned().collect();
    facts.insert("cpus".into(), num_cpus().to_string());
    let microvm = microvm_figures(&m, &a, &true_ref, &idle_ref).await?;
    let mut out = json!({"env": facts, "launch": launch, "microvm": microvm});
    if let (Some(o), Value::Object(f)) = (out.as_object_mut(), fleet) {
        o.extend(f);
    }
    Ok(out)
}

async fn microvm_figures(
    m: &ManagerProxy<'_>,
    a: &Args,
    true_ref: &str,
    idle_ref: &str,
) -> anyhow::Result<Value> {
    if a.microvm_runs == 0 {
        return Ok(json!({"skipped": "--microvm-runs 0"}));
    }
    let config = berth::config::Config::load(Some(&a.config))
        .with_context(|| format!("berthd's config {}", a.config.display()))?;
    if let Some(why) = microvm::unavailable(&config) {
        progress(&format!("microVM rows skipped: {why}"));
        return Ok(json!({ "skipped": why }));
    }
    microvm::figures(m, &config, a.microvm_runs, true_ref, idle_ref).await
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let out_path = args.out.clone();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth-bench: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let figures = match rt.block_on(run(args)) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("berth-bench: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", report::table(&figures));
    let written = out_path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&out_path, format!("{figures:#}\n")));
    if let Err(e) = written {
        eprintln!("berth-bench: cannot write {}: {e}", out_path.display());
        return ExitCode::FAILURE;
    }
    println!("figures written to {}", out_path.display());
    ExitCode::SUCCESS
}

mod report;
