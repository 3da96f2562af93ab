//! `berthctl service ...`: create, update, delete, ls, describe, events, scaling, why.

use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;

use berth::autoscale::{
    parse_steps, parse_steps_file, Metric, Policies, ScalableTarget, StepPolicy, TargetTracking,
};
use berth::dbus::client::ManagerProxy;

use crate::wire;

#[derive(Subcommand)]
pub enum ServiceCommand {
    /// Keep N tasks of a task definition running.
    Create {
        name: String,
        #[arg(long = "task-definition")]
        task_definition: String,
        #[arg(long, default_value_t = 1)]
        desired: u32,
        #[arg(long = "min-healthy-percent", default_value_t = 100)]
        min_healthy_percent: u32,
        #[arg(long = "max-percent", default_value_t = 200)]
        max_percent: u32,
        /// `container` or `microvm` for every task (default: the daemon's choice).
        #[arg(long)]
        isolation: Option<String>,
        /// Balance new TCP connections over the serving tasks' CONTAINER:PORT (repeatable).
        #[arg(long = "load-balancer", value_name = "CONTAINER:PORT")]
        load_balancer: Vec<String>,
        /// Where each --load-balancer listens, in order (default 0.0.0.0:PORT).
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Vec<String>,
        /// Seconds a task being replaced or scaled in keeps its connections (default 300).
        #[arg(long = "deregistration-delay", value_name = "SECS")]
        deregistration_delay: Option<u32>,
    },
    /// Roll out a new revision and/or set the desired count.
    Update {
        name: String,
        #[arg(long = "task-definition")]
        task_definition: Option<String>,
        #[arg(long)]
        desired: Option<u32>,
    },
    /// Stop the service's tasks and remove it.
    Delete { name: String },
    /// List services with their counts.
    Ls,
    /// Show a service: counts, deployments, tasks, recent events.
    Describe { name: String },
    /// The service's events, newest first.
    Events { name: String },
    /// Set the autoscaler's bounds and policies (or --off to remove them).
    Scaling(ScalingArgs),
    /// The autoscaler's last decisions and the numbers that drove them.
    Why { name: String },
}

#[derive(clap::Args)]
pub struct ScalingArgs {
    name: String,
    #[arg(long)]
    min: Option<u32>,
    #[arg(long)]
    max: Option<u32>,
    /// Target average CPU utilization, percent of the tasks' reserved CPU.
    #[arg(long = "target-cpu")]
    target_cpu: Option<f64>,
    /// Target average memory utilization, percent of the tasks' reserved memory.
    #[arg(long = "target-memory")]
    target_memory: Option<f64>,
    /// Target new connections per minute per load-balancer target (ECS's
    /// ALBRequestCountPerTarget).
    #[arg(long = "target-requests")]
    target_requests: Option<f64>,
    /// Such as 30s or 2m.
    #[arg(long = "scale-out-cooldown", value_parser = seconds)]
    scale_out_cooldown: Option<u64>,
    #[arg(long = "scale-in-cooldown", value_parser = seconds)]
    scale_in_cooldown: Option<u64>,
    #[arg(long = "disable-scale-in")]
    disable_scale_in: bool,
    /// Step policy: "cpu>80:+2,cpu>60:+1,cpu<20:-1", or @FILE holding the same (as text or
    /// as a JSON list of such strings or of step objects).
    #[arg(long)]
    step: Option<String>,
    /// Scale-in takes the highest recommendation of this window (default 60s).
    #[arg(long = "scale-in-window", value_parser = seconds)]
    scale_in_window: Option<u64>,
    /// Remove the service's scaling.
    #[arg(long)]
    off: bool,
}

/// `30`, `30s`, `2m`: seconds.
fn seconds(s: &str) -> Result<u64, String> {
    let (n, mult) = match s.strip_suffix('m') {
        Some(n) => (n, 60),
        None => (s.strip_suffix('s').unwrap_or(s), 1),
    };
    n.parse::<u64>()
        .map(|n| n * mult)
        .map_err(|_| format!("\"{s}\" is not a duration such as 30s or 2m"))
}

fn policies(a: &ScalingArgs) -> anyhow::Result<Policies> {
    let (Some(min), Some(max)) = (a.min, a.max) else {
        anyhow::bail!("--min and --max are required (or --off)");
    };
    let mut tracking = Vec::new();
    for (metric, target) in [
        (Metric::Cpu, a.target_cpu),
        (Metric::Memory, a.target_memory),
        (Metric::Requests, a.target_requests),
    ] {
        let Some(target) = target else { continue };
        if metric == Metric::Requests && !(target >= 1.0 && target.is_finite()) {
            anyhow::bail!(
                "--target-requests {target}: connections per minute per target, 1 or more"
            );
        }
        if metric != Metric::Requests && !(1.0..=100.0).contains(&target) {
            anyhow::bail!(
                "--target-{} {target}: a percent between 1 and 100",
                metric.as_str()
            );
        }
        let mut t = TargetTracking::new(metric, target);
        t.scale_out_cooldown_secs = a.scale_out_cooldown.unwrap_or(t.scale_out_cooldown_secs);
        t.scale_in_cooldown_secs = a.scale_in_cooldown.unwrap_or(t.scale_in_cooldown_secs);
        t.disable_scale_in = a.disable_scale_in;
        tracking.push(t);
    }
    let steps = match &a.step {
        Some(text) => {
            let steps = match text.strip_prefix('@') {
                Some(file) => {
                    let body = std::fs::read_to_string(file)
                        .with_context(|| format!("cannot read {file}"))?;
                    parse_steps_file(&body)
                }
                None => parse_steps(text.trim()),
            }
            .map_err(anyhow::Error::msg)?;
            Some(StepPolicy {
                steps,
                cooldown_secs: a.scale_out_cooldown.unwrap_or(30),
            })
        }
        None => None,
    };
    Ok(Policies {
        target: ScalableTarget {
            min_capacity: min,
            max_capacity: max,
        },
        tracking,
        steps,
        tolerance: 0.1,
        scale_in_window_secs: a.scale_in_window.unwrap_or(60),
    })
}

async fn describe(m: &ManagerProxy<'_>, name: &str) -> anyhow::Result<Value> {
    let text = m.describe_service(name.to_string()).await.map_err(wire)?;
    serde_json::from_str(&text).context("the daemon sent malformed JSON")
}

pub async fn run(m: &ManagerProxy<'_>, cmd: ServiceCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        ServiceCommand::Create {
            name,
            task_definition,
            desired,
            min_healthy_percent,
            max_percent,
            isolation,
            load_balancer,
            listen,
            deregistration_delay,
        } => {
            let mut options = std::collections::HashMap::new();
            if let Some(i) = isolation {
                options.insert("isolation".to_string(), i);
            }
            if !load_balancer.is_empty() {
                let lbs = load_balancers(&load_balancer, &listen, deregistration_delay)?;
                options.insert("loadBalancers".to_string(), lbs.to_string());
            }
            match options.is_empty() {
                false => {
                    m.create_service_with(
                        name.clone(),
                        task_definition,
                        desired,
                        min_healthy_percent,
                        max_percent,
                        options,
                    )
                    .await
                }
                true => {
                    m.create_service(
                        name.clone(),
                        task_definition,
                        desired,
                        min_healthy_percent,
                        max_percent,
                    )
                    .await
                }
            }
            .map_err(wire)?;
            println!("{name}");
        }
        ServiceCommand::Update {
            name,
            task_definition,
            desired,
        } => {
            let desired = desired.map_or(-1, i64::from);
            m.update_service(name, task_definition.unwrap_or_default(), desired)
                .await
                .map_err(wire)?;
        }
        ServiceCommand::Delete { name } => m.delete_service(name).await.map_err(wire)?,
        ServiceCommand::Ls => {
            let mut all = Vec::new();
            for name in m.list_services().await? {
                all.push(describe(m, &name).await?);
            }
            if json {
                println!("{}", Value::from(all));
                return Ok(());
            }
            println!(
                "{:<24} {:<24} {:>7} {:>7} {:>7}  STATUS",
                "SERVICE", "DEFINITION", "DESIRED", "RUNNING", "PENDING"
            );
            for s in all {
                println!(
                    "{:<24} {:<24} {:>7} {:>7} {:>7}  {}",
                    s["serviceName"].as_str().unwrap_or(""),
                    s["taskDefinition"].as_str().unwrap_or(""),
                    s["desiredCount"],
                    s["runningCount"],
                    s["pendingCount"],
                    s["status"].as_str().unwrap_or("")
                );
            }
        }
        ServiceCommand::Describe { name } => {
            let s = describe(m, &name).await?;
            if json {
                println!("{s}");
            } else {
                print_service(&s);
            }
        }
        ServiceCommand::Events { name } => {
            let s = describe(m, &name).await?;
            if json {
                println!("{}", s["events"]);
                return Ok(());
            }
            for e in s["events"].as_array().cloned().unwrap_or_default() {
                println!(
                    "{:>16.3}  {}",
                    e["createdAt"].as_f64().unwrap_or(0.0),
                    e["message"].as_str().unwrap_or("")
                );
            }
        }
        ServiceCommand::Scaling(a) => {
            let text = if a.off {
                String::new()
            } else {
                serde_json::to_string(&policies(&a)?)?
            };
            m.put_scaling_policy(a.name, text).await.map_err(wire)?;
        }
        ServiceCommand::Why { name } => {
            let s = describe(m, &name).await?;
            if json {
                println!("{}", s["scaling"]);
                return Ok(());
            }
            if s["scaling"].is_null() {
                println!("service {name} has no scaling policy (berthctl service scaling)");
                return Ok(());
            }
            if !s["scaling"]["last"].is_null() {
                println!("now:");
                print_decision(&s["scaling"]["last"]);
            }
            println!("changes, newest first:");
            for d in s["scaling"]["decisions"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .rev()
            {
                print_decision(d);
            }
        }
    }
    Ok(())
}

fn print_decision(d: &Value) {
    let pct = |k: &str| {
        d[k].as_f64()
            .map(|v| format!("{v:.0}%"))
            .unwrap_or("-".into())
    };
    println!(
        "{:>16.3}  {:<4} {} -> {}  cpu {} memory {}  {}",
        d["at"].as_f64().unwrap_or(0.0) / 1e6,
        d["direction"].as_str().unwrap_or(""),
        d["from"],
        d["to"],
        pct("cpu"),
        pct("memory"),
        d["reason"].as_str().unwrap_or("")
    );
}

/// ECS's `loadBalancers` list from `--load-balancer`, `--listen` and `--deregistration-delay`.
fn load_balancers(lbs: &[String], listen: &[String], delay: Option<u32>) -> anyhow::Result<Value> {
    if listen.len() > lbs.len() {
        anyhow::bail!(
            "--listen given {} times for {} --load-balancer",
            listen.len(),
            lbs.len()
        );
    }
    lbs.iter()
        .enumerate()
        .map(|(i, lb)| {
            let (container, port) = lb
                .rsplit_once(':')
                .and_then(|(c, p)| Some((c, p.parse::<u16>().ok()?)))
                .with_context(|| {
                    format!("--load-balancer {lb}: give CONTAINER:PORT, such as web:80")
                })?;
            let mut v = serde_json::json!({"containerName": container, "containerPort": port});
            if let Some(l) = listen.get(i) {
                v["listen"] = l.as_str().into();
            }
            if let Some(d) = delay {
                v["deregistrationDelaySeconds"] = d.into();
            }
            Ok(v)
        })
        .collect::<anyhow::Result<Vec<Value>>>()
        .map(Value::from)
}

fn print_service(s: &Value) {
    let t = |k: &str| s[k].as_str().unwrap_or("-").to_string();
    println!("Service:        {}", t("serviceName"));
    println!("Status:         {}", t("status"));
    println!("Definition:     {}", t("taskDefinition"));
    println!(
        "Desired:        {}   running {}   pending {}",
        s["desiredCount"], s["runningCount"], s["pendingCount"]
    );
    println!("Deployments:");
    for d in s["deployments"].as_array().cloned().unwrap_or_default() {
        println!(
            "  {:<8} {:<24} {:<12} running {} pending {} failed {}",
            d["status"].as_str().unwrap_or(""),
            d["taskDefinition"].as_str().unwrap_or(""),
            d["rolloutState"].as_str().unwrap_or(""),
            d["runningCount"],
            d["pendingCount"],
            d["failedTasks"]
        );
    }
    println!("Tasks:");
    for x in s["tasks"].as_array().cloned().unwrap_or_default() {
        println!(
            "  {:<32} {:<24} {:<10} {}",
            x["taskId"].as_str().unwrap_or(""),
            x["taskDefinition"].as_str().unwrap_or(""),
            x["lastStatus"].as_str().unwrap_or(""),
            x["healthStatus"].as_str().unwrap_or("")
        );
    }
    let targets = s["targets"].as_array().cloned().unwrap_or_default();
    if !targets.is_empty() {
        println!("Targets:");
        for x in targets {
            println!(
                "  {:<21} {:<32} {:<21} {:<9} active {} new {}",
                x["listener"].as_str().unwrap_or(""),
                x["taskId"].as_str().unwrap_or(""),
                x["target"].as_str().unwrap_or(""),
                x["state"].as_str().unwrap_or(""),
                x["activeConnections"],
                x["newConnections"]
            );
        }
    }
    println!("Events:");
    for e in s["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .take(10)
    {
        println!("  {}", e["message"].as_str().unwrap_or(""));
    }
}
