//! `berthctl top`: what running tasks and their containers use, refreshed every second as
//! `docker stats` does. CPU % is the rate between two samples of `DescribeUsage` (100 % is one
//! CPU), timed by the daemon's monotonic clock.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::Context;
use berth::dbus::client::ManagerProxy;
use serde_json::Value;

const INTERVAL: Duration = Duration::from_secs(1);

async fn sample(m: &ManagerProxy<'_>) -> anyhow::Result<Value> {
    let text = m.describe_usage().await?;
    serde_json::from_str(&text).context("the daemon sent malformed JSON")
}

/// CPU seconds of every task (container `None`) and container in a sample.
fn cpu_seconds(v: &Value) -> HashMap<(String, Option<String>), f64> {
    let mut out = HashMap::new();
    for t in v["tasks"].as_array().into_iter().flatten() {
        let id = t["taskId"].as_str().unwrap_or_default().to_string();
        if let Some(s) = t["cpuSeconds"].as_f64() {
            out.insert((id.clone(), None), s);
        }
        for c in t["containers"].as_array().into_iter().flatten() {
            if let (Some(name), Some(s)) = (c["name"].as_str(), c["cpuSeconds"].as_f64()) {
                out.insert((id.clone(), Some(name.to_string())), s);
            }
        }
    }
    out
}

/// `cur` with `cpuPercent` set on every task and container that `prev` also had; a task
/// new since `prev` gets null (no rate yet).
pub fn with_rates(prev: &Value, mut cur: Value) -> Value {
    let elapsed =
        cur["sampledAt"].as_f64().unwrap_or(0.0) - prev["sampledAt"].as_f64().unwrap_or(0.0);
    let before = cpu_seconds(prev);
    let rate = |key: (String, Option<String>), now: &Value| -> Value {
        match (before.get(&key), now.as_f64()) {
            (Some(b), Some(n)) if elapsed > 0.0 => {
                let pct = (n - b).max(0.0) / (elapsed / 1e6) * 100.0;
                serde_json::json!((pct * 10.0).round() / 10.0)
            }
            _ => Value::Null,
        }
    };
    for t in cur["tasks"].as_array_mut().into_iter().flatten() {
        let id = t["taskId"].as_str().unwrap_or_default().to_string();
        t["cpuPercent"] = rate((id.clone(), None), &t["cpuSeconds"]);
        for c in t["containers"].as_array_mut().into_iter().flatten() {
            let name = c["name"].as_str().map(str::to_string);
            c["cpuPercent"] = rate((id.clone(), name), &c["cpuSeconds"]);
        }
    }
    cur
}

fn bytes(v: &Value) -> String {
    let Some(b) = v.as_f64() else {
        return "-".into();
    };
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut x = b;
    let mut unit = 0;
    while x >= 1024.0 && unit < UNITS.len() - 1 {
        x /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{x:.0}{}", UNITS[unit])
    } else {
        format!("{x:.1}{}", UNITS[unit])
    }
}

fn row(task: &str, container: &str, def: &str, v: &Value) -> String {
    let cpu = v["cpuPercent"]
        .as_f64()
        .map_or("-".to_string(), |p| format!("{p:.1}%"));
    let limit = if v["memoryLimitBytes"].is_null() && !v["memoryBytes"].is_null() {
        "no limit".to_string()
    } else {
        bytes(&v["memoryLimitBytes"])
    };
    let mem_pct = match (v["memoryBytes"].as_f64(), v["memoryLimitBytes"].as_f64()) {
        (Some(u), Some(l)) if l > 0.0 => format!("{:.1}%", u / l * 100.0),
        _ => "-".into(),
    };
    let pids = v["pids"]
        .as_u64()
        .map_or("-".to_string(), |p| p.to_string());
    format!(
        "{task:<12}  {container:<16} {def:<20} {:<9} {cpu:>7}  {:>21}  {mem_pct:>6}  {pids:>5}",
        v["lastStatus"].as_str().unwrap_or("-"),
        format!("{} / {limit}", bytes(&v["memoryBytes"])),
    )
}

/// The table: a line per task (its whole cgroup), then one per container under it.
pub fn table(v: &Value) -> String {
    let mut out = format!(
        "{:<12}  {:<16} {:<20} {:<9} {:>7}  {:>21}  {:>6}  {:>5}\n",
        "TASK", "CONTAINER", "DEFINITION", "STATUS", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS"
    );
    for t in v["tasks"].as_array().into_iter().flatten() {
        let id = t["taskId"].as_str().unwrap_or_default();
        let short = &id[..id.len().min(12)];
        let def = t["taskDefinition"].as_str().unwrap_or_default();
        out += &row(short, "-", def, t);
        out.push('\n');
        for c in t["containers"].as_array().into_iter().flatten() {
            out += &row("", c["name"].as_str().unwrap_or_default(), "", c);
            out.push('\n');
        }
    }
    out
}

/// Prints the usage every second until interrupted; `once` prints one (two samples a second
/// apart, for the rate) and returns.
pub async fn top(m: &ManagerProxy<'_>, once: bool, json: bool) -> anyhow::Result<()> {
    let mut prev = sample(m).await?;
    let tty = std::io::stdout().is_terminal() && !json;
    loop {
        tokio::time::sleep(INTERVAL).await;
        let cur = sample(m).await?;
        let shown = with_rates(&prev, cur.clone());
        let mut out = std::io::stdout().lock();
        if json {
            writeln!(out, "{shown}")?;
        } else {
            if tty {
                // Home and clear, so the table refreshes in place.
                write!(out, "\x1b[H\x1b[2J")?;
            }
            write!(out, "{}", table(&shown))?;
            if !tty && !once {
                writeln!(out)?;
            }
        }
        out.flush()?;
        if once {
            return Ok(());
        }
        prev = cur;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample(at: u64, task_cpu: f64, a_cpu: f64) -> Value {
        json!({"sampledAt": at, "tasks": [{
            "taskId": "0123456789abcdef", "taskDefinition": "web:3", "lastStatus": "RUNNING",
            "cpuSeconds": task_cpu, "memoryBytes": 10485760, "memoryLimitBytes": 134217728,
            "pids": 4,
            "containers": [
                {"name": "a", "lastStatus": "RUNNING", "cpuSeconds": a_cpu,
                 "memoryBytes": 1048576, "memoryLimitBytes": null, "pids": 2},
                {"name": "b", "lastStatus": "PENDING", "cpuSeconds": null,
                 "memoryBytes": null, "memoryLimitBytes": null, "pids": null}]}]})
    }

    #[test]
    fn cpu_percent_is_the_rate_between_samples_on_the_daemons_clock() {
        let v = with_rates(&sample(1_000_000, 1.0, 0.5), sample(3_000_000, 2.0, 1.0));
        assert_eq!(v["tasks"][0]["cpuPercent"], 50.0);
        assert_eq!(v["tasks"][0]["containers"][0]["cpuPercent"], 25.0);
        assert!(v["tasks"][0]["containers"][1]["cpuPercent"].is_null());
    }

    #[test]
    fn a_task_new_since_the_last_sample_has_no_rate_yet() {
        let v = with_rates(
            &json!({"sampledAt": 0, "tasks": []}),
            sample(1_000_000, 1.0, 0.5),
        );
        assert!(v["tasks"][0]["cpuPercent"].is_null());
    }

    #[test]
    fn the_table_shows_task_then_containers_with_memory_of_limit() {
        let t = table(&with_rates(
            &sample(1_000_000, 1.0, 0.5),
            sample(2_000_000, 1.25, 0.5),
        ));
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines[1].starts_with("0123456789ab  -"), "{t}");
        assert!(lines[1].contains("25.0%"), "{t}");
        assert!(lines[1].contains("10.0MiB / 128.0MiB"), "{t}");
        assert!(lines[1].contains("7.8%"), "{t}");
        assert!(lines[2].contains("1.0MiB / no limit"), "{t}");
        assert!(lines[3].contains("PENDING"), "{t}");
    }
}
