//! `berthctl run | ps | describe | stop | logs`.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use berth::dbus::client::{ManagerProxy, TaskObjectProxy};
use serde_json::Value;

use crate::wire;

pub(crate) async fn describe(m: &ManagerProxy<'_>, id: &str) -> anyhow::Result<Value> {
    let text = m.describe_task(id.to_string()).await.map_err(wire)?;
    Ok(serde_json::from_str(&text)?)
}

/// Waits until the task is STOPPED; returns its description.
pub async fn wait_stopped(m: &ManagerProxy<'_>, id: &str) -> anyhow::Result<Value> {
    let ids = [id.to_string()];
    let mut tasks = crate::wait::until(m, &ids, crate::wait::Target::Stopped, None).await?;
    tasks.pop().context("the daemon described no task")
}

/// The exit status `run --wait` ends with: the first essential container's exit code.
pub fn exit_status(task: &Value) -> u8 {
    let containers = task["containers"].as_array().cloned().unwrap_or_default();
    let code = containers
        .iter()
        .find(|c| c["essential"] == true)
        .and_then(|c| c["exitCode"].as_i64());
    match code {
        Some(c) => c.clamp(0, 255) as u8,
        None => 1,
    }
}

pub fn print_task(v: &Value, json: bool) {
    if json {
        println!("{v}");
        return;
    }
    let s = |k: &str| v[k].as_str().unwrap_or("-").to_string();
    println!("Task:           {}", s("taskId"));
    println!("Definition:     {}", s("taskDefinition"));
    match v["vm"].as_object() {
        Some(vm) => println!(
            "Isolation:      {} ({} vCPU, {} MiB)",
            s("isolation"),
            vm["vcpus"],
            vm["memoryMiB"]
        ),
        None => println!("Isolation:      {}", s("isolation")),
    }
    println!(
        "Status:         {} (desired {})",
        s("lastStatus"),
        s("desiredStatus")
    );
    if v["containers"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| !c["healthStatus"].is_null()))
    {
        println!("Health:         {}", s("healthStatus"));
    }
    if !v["stopCode"].is_null() {
        println!("Stop code:      {}", s("stopCode"));
        println!("Stopped reason: {}", s("stoppedReason"));
    }
    println!("Containers:");
    for c in v["containers"].as_array().cloned().unwrap_or_default() {
        let code = c["exitCode"]
            .as_i64()
            .map(|x| x.to_string())
            .unwrap_or_else(|| "-".into());
        println!(
            "  {:<20} {:<10} exit {:<4} {}",
            c["name"].as_str().unwrap_or(""),
            c["lastStatus"].as_str().unwrap_or(""),
            code,
            c["reason"].as_str().unwrap_or("")
        );
        if let Some(h) = c["healthStatus"].as_str() {
            println!("  {:<20} health {h}", "");
        }
        let net = network_line(&c);
        if !net.is_empty() {
            println!("  {:<20} {net}", "");
        }
    }
}

/// A container's address and published ports, like `docker ps` shows them:
/// `172.29.0.2  0.0.0.0:8080->80/tcp`.
fn network_line(c: &Value) -> String {
    let address = c["networkInterfaces"][0]["privateIpv4Address"].as_str();
    let ports: Vec<String> = c["networkBindings"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|b| {
                    format!(
                        "{}:{}->{}/{}",
                        b["bindIP"].as_str().unwrap_or("0.0.0.0"),
                        b["hostPort"],
                        b["containerPort"],
                        b["protocol"].as_str().unwrap_or("tcp")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let mut parts: Vec<String> = address.map(String::from).into_iter().collect();
    parts.extend(ports);
    parts.join("  ")
}

pub async fn run(
    m: &ManagerProxy<'_>,
    reference: String,
    isolation: Option<String>,
    wait: bool,
    json: bool,
) -> anyhow::Result<u8> {
    let (id, _path) = match isolation {
        None => m.run_task(reference).await,
        Some(i) => {
            let options = std::collections::HashMap::from([("isolation".to_string(), i)]);
            m.run_task_with(reference, options).await
        }
    }
    .map_err(wire)?;
    if !wait {
        if json {
            println!("{}", describe(m, &id).await?);
        } else {
            println!("{id}");
        }
        return Ok(0);
    }
    if json {
        let v = wait_stopped(m, &id).await?;
        print_task(&v, true);
        return Ok(exit_status(&v));
    }
    let v = wait_attached(m, &id).await?;
    eprintln!("{}", stop_line(&v));
    Ok(exit_status(&v))
}

/// Waits for the stop while printing every container's output as it comes.
async fn wait_attached(m: &ManagerProxy<'_>, id: &str) -> anyhow::Result<Value> {
    let first = describe(m, id).await?;
    if !first["pullStartedAt"].is_null() && first["pullStoppedAt"].is_null() {
        // The output comes once the images are in; say why nothing shows before.
        eprintln!("task {id}: pulling its images (berthctl image pull shows a pull's progress)");
    }
    let names: Vec<String> = first["containers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let task = TaskObjectProxy::builder(m.inner().connection())
        .path(berth::dbus::TASK_PATH_PREFIX.to_string() + id)
        .build()
        .await?;
    let mut attach = crate::attach::Attach::new(task, names);
    let stopped = tokio::select! {
        v = wait_stopped(m, id) => v?,
        r = attach.follow() => match r? {},
    };
    attach.drain().await?;
    Ok(stopped)
}

/// The one line `run --wait` ends with, on stderr so stdout holds only the output:
/// `task ID STOPPED: Essential container in task exited (exit 0)`.
fn stop_line(v: &Value) -> String {
    let s = |k: &str| v[k].as_str().unwrap_or("-").to_string();
    format!(
        "task {} {}: {} (exit {})",
        s("taskId"),
        s("lastStatus"),
        s("stoppedReason"),
        exit_status(v)
    )
}

pub async fn ps(m: &ManagerProxy<'_>, all: bool, json: bool) -> anyhow::Result<()> {
    let list = m.list_tasks(all).await.map_err(wire)?;
    if json {
        let mut out = Vec::new();
        for (id, ..) in &list {
            out.push(describe(m, id).await?);
        }
        println!("{}", Value::from(out));
        return Ok(());
    }
    println!(
        "{:<32}  {:<24} {:<12} {:<8}",
        "TASK", "DEFINITION", "STATUS", "DESIRED"
    );
    for (id, def, last, desired, _) in list {
        println!("{id:<32}  {def:<24} {last:<12} {desired:<8}");
    }
    if all {
        // On standard error: the table stays one line per task for scripts. Best-effort: a
        // berthd without the properties still lists its tasks.
        if let Ok(line) = super::history::line(m).await {
            eprintln!("{line}");
        }
    }
    Ok(())
}

pub async fn show(m: &ManagerProxy<'_>, id: &str, json: bool) -> anyhow::Result<()> {
    print_task(&describe(m, id).await?, json);
    Ok(())
}

pub async fn stop(m: &ManagerProxy<'_>, id: String, reason: Option<String>) -> anyhow::Result<()> {
    m.stop_task(id, reason.unwrap_or_default())
        .await
        .map_err(wire)?;
    Ok(())
}

pub async fn logs(
    m: &ManagerProxy<'_>,
    id: String,
    container: Option<String>,
    follow: bool,
) -> anyhow::Result<()> {
    let task = describe(m, &id).await?;
    let container = match container {
        Some(c) => c,
        None => task["containers"][0]["name"]
            .as_str()
            .context("the task has no containers")?
            .to_string(),
    };
    let path = berth::dbus::TASK_PATH_PREFIX.to_string() + &id;
    let t = TaskObjectProxy::builder(m.inner().connection())
        .path(path)
        .build()
        .await?;
    let mut offset = 0u64;
    let mut out = std::io::stdout().lock();
    loop {
        let (data, next) = t.read_log(container.clone(), offset).await.map_err(wire)?;
        out.write_all(&data)?;
        out.flush()?;
        offset = next;
        if !data.is_empty() {
            continue;
        }
        if !follow || t.last_status().await? == "STOPPED" {
            // One last read: output written between the read and the status.
            let (data, _) = t.read_log(container.clone(), offset).await.map_err(wire)?;
            out.write_all(&data)?;
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_line_shows_the_address_and_ports_like_docker_ps() {
        let c = serde_json::json!({
            "networkInterfaces": [{"privateIpv4Address": "172.29.0.2"}],
            "networkBindings": [
                {"bindIP": "0.0.0.0", "hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                {"bindIP": "0.0.0.0", "hostPort": 49153, "containerPort": 53, "protocol": "udp"}
            ]
        });
        assert_eq!(
            network_line(&c),
            "172.29.0.2  0.0.0.0:8080->80/tcp  0.0.0.0:49153->53/udp"
        );
        assert_eq!(network_line(&serde_json::json!({})), "");
    }
}
