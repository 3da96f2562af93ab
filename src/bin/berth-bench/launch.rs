//! One launch of `/bin/true` each way: through berth's D-Bus API (RunTask until the
//! TaskStateChanged signal says STOPPED), through `berthctl run --wait`, and through `crun run` /
//! `runc run` of berth's own config.json for that container over the same image layers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use berth::dbus::client::ManagerProxy;
use futures_util::StreamExt;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(120);

/// Time from the RunTask call to the signals of RUNNING (if seen) and STOPPED.
pub struct ApiRun {
    pub task_id: String,
    pub to_running: Option<Duration>,
    pub to_stopped: Option<Duration>,
}

/// Runs `definition` through the API and waits for `until` (RUNNING or STOPPED).
pub async fn api(m: &ManagerProxy<'_>, definition: &str, until: &str) -> anyhow::Result<ApiRun> {
    api_with(m, definition, until, None, TIMEOUT).await
}

/// [`api`] in the `isolation` given (else the daemon's choice), waiting up to `timeout`.
pub async fn api_with(
    m: &ManagerProxy<'_>,
    definition: &str,
    until: &str,
    isolation: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<ApiRun> {
    let mut signals = m.receive_task_state_changed().await?;
    let t0 = Instant::now();
    let (id, _) = match isolation {
        Some(i) => {
            let options = std::collections::HashMap::from([("isolation".into(), i.into())]);
            m.run_task_with(definition.to_string(), options).await
        }
        None => m.run_task(definition.to_string()).await,
    }
    .context("RunTask")?;
    let mut run = ApiRun {
        task_id: id.clone(),
        to_running: None,
        to_stopped: None,
    };
    let wait = async {
        while let Some(s) = signals.next().await {
            let Ok(a) = s.args() else { continue };
            if a.id != id {
                continue;
            }
            match a.last_status {
                "RUNNING" => run.to_running = run.to_running.or(Some(t0.elapsed())),
                "STOPPED" => run.to_stopped = Some(t0.elapsed()),
                _ => {}
            }
            if a.last_status == until || a.last_status == "STOPPED" {
                return;
            }
        }
    };
    if tokio::time::timeout(timeout, wait).await.is_err() {
        bail!("task {id} of {definition} did not reach {until} within {timeout:?}");
    }
    Ok(run)
}

/// The task's essential container exited 0, as the berth runs must to count.
pub async fn exited_zero(m: &ManagerProxy<'_>, id: &str) -> anyhow::Result<()> {
    let v: Value = serde_json::from_str(&m.describe_task(id.to_string()).await?)?;
    let code = &v["containers"][0]["exitCode"];
    if code != 0 {
        bail!(
            "task {id} ended with exit code {code}: {}",
            v["stoppedReason"]
        );
    }
    Ok(())
}

/// `berthctl run --wait DEFINITION`, timed from spawn to exit.
pub async fn berthctl(berthctl: &Path, definition: &str) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let out = tokio::process::Command::new(berthctl)
        .args(["run", "--wait", definition])
        .output()
        .await
        .with_context(|| format!("cannot run {}", berthctl.display()))?;
    let took = t0.elapsed();
    if !out.status.success() {
        bail!(
            "berthctl run --wait {definition}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(took)
}

/// What an OCI runtime needs to run the same container berth ran: berth's config.json and
/// the image layers under it, from a finished task's plan.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub config: Value,
    pub lower: Vec<PathBuf>,
}

impl Bundle {
    pub fn from_task(task_dir: &Path) -> anyhow::Result<Bundle> {
        let path = task_dir.join("plan.json");
        let plan: Value = serde_json::from_slice(
            &std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?,
        )?;
        let c = &plan["containers"][0];
        let config_path =
            PathBuf::from(c["bundle"].as_str().unwrap_or_default()).join("config.json");
        let config = serde_json::from_slice(
            &std::fs::read(&config_path)
                .with_context(|| format!("cannot read {}", config_path.display()))?,
        )?;
        let lower = c["lower"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l.as_str().map(PathBuf::from))
            .collect();
        Ok(Bundle { config, lower })
    }
}

/// `RUNTIME run` of the bundle as container `name` under `work`: the overlay mount and the
/// config written inside the timed span, as berth's shim does both for each launch.
pub fn oci(runtime: &str, bundle: &Bundle, work: &Path, name: &str) -> anyhow::Result<Duration> {
    let dir = work.join(name);
    let (upper, workdir, rootfs) = (dir.join("upper"), dir.join("work"), dir.join("rootfs"));
    let t0 = Instant::now();
    for d in [&upper, &workdir, &rootfs] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let lower: Vec<String> = bundle
        .lower
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        workdir.display()
    );
    mount(
        Some("overlay"),
        &rootfs,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .context("cannot mount the overlay root filesystem")?;
    let mut config = bundle.config.clone();
    config["root"]["path"] = Value::from(rootfs.display().to_string());
    config["linux"]["cgroupsPath"] = Value::from(format!("/berth-bench/{name}"));
    std::fs::write(dir.join("config.json"), config.to_string())?;
    let status = std::process::Command::new(runtime)
        .args(["run", "--bundle"])
        .arg(&dir)
        .arg(name)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .with_context(|| format!("cannot run {runtime}"))?;
    let took = t0.elapsed();
    let _ = std::process::Command::new(runtime)
        .args(["delete", "--force", name])
        .stderr(std::process::Stdio::null())
        .status();
    let _ = umount2(&rootfs, MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir(format!("/sys/fs/cgroup/berth-bench/{name}"));
    if !status.success() {
        bail!("{runtime} run of /bin/true: {status}");
    }
    Ok(took)
}

/// Where one launch's time went, milliseconds per step: berthd's steps from its
/// `berth::timing` journal events, the shim's from its status files, and the gaps between.
pub fn spans(
    task_dir: &Path,
    container: &str,
    journal: &str,
    run: &ApiRun,
) -> BTreeMap<String, f64> {
    let task_id = &run.task_id;
    let mut out = BTreeMap::new();
    let mut spawn_at = None;
    for line in journal
        .lines()
        .filter(|l| l.contains(task_id) && l.contains("step="))
    {
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .map(|v| v.trim_matches('"').to_string())
        };
        let (Some(step), us, at) = (field("step="), field("us="), field("at=")) else {
            continue;
        };
        if let Some(us) = us.and_then(|u| u.parse::<f64>().ok()) {
            out.insert(format!("berthd.{step}"), us / 1000.0);
        }
        if let Some(at) = at.and_then(|a| a.parse::<u64>().ok()) {
            spawn_at = Some(at);
        }
    }
    let status = task_dir.join("status");
    let read = |f: &str| -> Option<Value> {
        serde_json::from_slice(&std::fs::read(status.join(f)).ok()?).ok()
    };
    let shim_at = read("shim.json").and_then(|v| v["at"].as_u64());
    if let (Some(spawn), Some(shim)) = (spawn_at, shim_at) {
        out.insert(
            "shim.exec (fork, exec, the shim's first word)".into(),
            shim.saturating_sub(spawn) as f64 / 1000.0,
        );
    }
    let started = read(&format!("{container}.started.json"));
    if let Some(s) = &started {
        for step in s["steps"].as_array().into_iter().flatten() {
            if let (Some(n), Some(us)) = (step["name"].as_str(), step["us"].as_f64()) {
                out.insert(format!("shim.{n}"), us / 1000.0);
            }
        }
    }
    let exited = read(&format!("{container}.exit.json"));
    if let (Some(s), Some(x)) = (&started, &exited) {
        let (a, b) = (s["at"].as_u64().unwrap_or(0), x["at"].as_u64().unwrap_or(0));
        out.insert(
            "container.run (/bin/true until its exit is reported)".into(),
            b.saturating_sub(a) as f64 / 1000.0,
        );
    }
    if let Some(total) = run.to_stopped {
        out.insert(
            "total (RunTask → STOPPED signal)".into(),
            total.as_secs_f64() * 1000.0,
        );
    }
    out
}
