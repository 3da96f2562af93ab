//! Many idle tasks at once: how fast the API starts and stops them, what each costs the host
//! beyond its container (the shim's RSS, PSS and cgroup charge; berthd's RSS), and what a
//! `/metrics` scrape costs as they grow.

use std::collections::BTreeMap;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use berth::dbus::client::ManagerProxy;
use futures_util::future::join_all;
use futures_util::StreamExt;

use crate::stats::median;

const TIMEOUT: Duration = Duration::from_secs(900);

/// Waits for every id in `ids` to reach `status` by the TaskStateChanged signals in `signals`.
async fn await_all(
    signals: &mut berth::dbus::client::TaskStateChangedStream,
    ids: &HashSet<String>,
    status: &str,
    already: HashSet<String>,
) -> anyhow::Result<()> {
    let mut reached = already;
    let wait = async {
        while reached.len() < ids.len() {
            let Some(s) = signals.next().await else {
                bail!("the bus closed");
            };
            let Ok(a) = s.args() else { continue };
            if !ids.contains(a.id) {
                continue;
            }
            if a.last_status == status {
                reached.insert(a.id.to_string());
            } else if a.last_status == "STOPPED" {
                bail!("task {} STOPPED before {status}", a.id);
            }
        }
        Ok(())
    };
    match tokio::time::timeout(TIMEOUT, wait).await {
        Ok(r) => r,
        Err(_) => bail!("tasks did not all reach {status} within {TIMEOUT:?}"),
    }
}

/// Starts `n` tasks of `definition` at once; returns their ids and the time until every one
/// was RUNNING.
pub async fn start(
    m: &ManagerProxy<'_>,
    definition: &str,
    n: usize,
) -> anyhow::Result<(Vec<String>, Duration)> {
    let mut signals = m.receive_task_state_changed().await?;
    let t0 = Instant::now();
    let calls = (0..n).map(|_| m.run_task(definition.to_string()));
    let mut ids = Vec::new();
    for r in join_all(calls).await {
        ids.push(r.context("RunTask")?.0);
    }
    let set: HashSet<String> = ids.iter().cloned().collect();
    // A task may have reached RUNNING before its id was known here; the signal is kept in
    // the stream, so nothing is missed.
    await_all(&mut signals, &set, "RUNNING", HashSet::new()).await?;
    Ok((ids, t0.elapsed()))
}

/// Stops every task in `ids` at once; the time until every one was STOPPED.
pub async fn stop(m: &ManagerProxy<'_>, ids: &[String]) -> anyhow::Result<Duration> {
    let mut signals = m.receive_task_state_changed().await?;
    let t0 = Instant::now();
    let calls = ids.iter().map(|id| m.stop_task(id.clone(), "bench".into()));
    for r in join_all(calls).await {
        r.context("StopTask")?;
    }
    let set: HashSet<String> = ids.iter().cloned().collect();
    await_all(&mut signals, &set, "STOPPED", HashSet::new()).await?;
    Ok(t0.elapsed())
}

/// Figures at one count of idle tasks.
#[derive(Debug, Clone, Default)]
pub struct Level {
    pub tasks: usize,
    pub containers: usize,
    pub shim_rss_kib: Option<f64>,
    pub shim_pss_kib: Option<f64>,
    pub shim_charge_kib: Option<f64>,
    pub berthd_rss_kib: Option<f64>,
    pub scrape_ms: Option<f64>,
    pub scrape_bytes: usize,
    /// What berthd says the scrape cost it, by part (`berth_scrape_part_duration_seconds`),
    /// medians in ms.
    pub scrape_parts_ms: BTreeMap<String, f64>,
}

/// The `part` values of `berth_scrape_part_duration_seconds` in a scrape's body, in ms.
fn scrape_parts(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("berth_scrape_part_duration_seconds{part=\"")?;
            let (part, value) = rest.split_once("\"} ")?;
            Some((part.to_string(), value.trim().parse::<f64>().ok()? * 1000.0))
        })
        .collect()
}

fn kib_field(text: &str, key: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn shim_pid(state_dir: &Path, id: &str) -> Option<u32> {
    let path = state_dir.join("tasks").join(id).join("status/shim.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    v["pid"].as_u64().map(|p| p as u32)
}

/// berthd's main pid, from systemd.
pub fn berthd_pid() -> Option<u32> {
    let out = std::process::Command::new("systemctl")
        .args(["show", "-p", "MainPID", "--value", "berthd"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .ok()
        .filter(|p| *p > 0)
}

/// One GET of `/metrics`: its time and body.
pub fn scrape(addr: &str) -> anyhow::Result<(Duration, String)> {
    let t0 = Instant::now();
    let mut s = TcpStream::connect(addr).with_context(|| format!("cannot connect to {addr}"))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: berth\r\n\r\n")?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let took = t0.elapsed();
    let body = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(&[][..], |i| &buf[i + 4..]);
    if !buf.starts_with(b"HTTP/1.") || body.is_empty() {
        bail!("/metrics at {addr} answered no body");
    }
    Ok((took, String::from_utf8_lossy(body).into_owned()))
}

/// Measures the host's cost of the idle tasks `ids` (each of `per_task` containers).
pub fn measure(ids: &[String], per_task: usize, state_dir: &Path, metrics: &str) -> Level {
    let (mut rss, mut pss, mut charge) = (Vec::new(), Vec::new(), Vec::new());
    for id in ids {
        let Some(pid) = shim_pid(state_dir, id) else {
            continue;
        };
        if let Ok(t) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
            rss.extend(kib_field(&t, "Rss:"));
            pss.extend(kib_field(&t, "Pss:"));
        }
        let cg = format!("/sys/fs/cgroup/berth.slice/berth-{id}.scope/shim/memory.current");
        if let Some(b) = std::fs::read_to_string(cg)
            .ok()
            .and_then(|t| t.trim().parse::<f64>().ok())
        {
            charge.push(b / 1024.0);
        }
    }
    let berthd_rss_kib = berthd_pid()
        .and_then(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .and_then(|t| kib_field(&t, "VmRSS:"));
    let scrapes: Vec<(Duration, String)> = (0..5).filter_map(|_| scrape(metrics).ok()).collect();
    let times: Vec<f64> = scrapes.iter().map(|s| s.0.as_secs_f64() * 1000.0).collect();
    let parts: Vec<BTreeMap<String, f64>> = scrapes.iter().map(|s| scrape_parts(&s.1)).collect();
    let names: std::collections::BTreeSet<&String> = parts.iter().flat_map(|p| p.keys()).collect();
    let scrape_parts_ms = names
        .into_iter()
        .filter_map(|n| {
            let v: Vec<f64> = parts.iter().filter_map(|p| p.get(n).copied()).collect();
            Some((n.clone(), median(&v)?))
        })
        .collect();
    Level {
        tasks: ids.len(),
        containers: ids.len() * per_task,
        shim_rss_kib: median(&rss),
        shim_pss_kib: median(&pss),
        shim_charge_kib: median(&charge),
        berthd_rss_kib,
        scrape_ms: median(&times),
        scrape_bytes: scrapes.last().map_or(0, |s| s.1.len()),
        scrape_parts_ms,
    }
}
