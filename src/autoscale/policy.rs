//! What an operator sets for a service: bounds, target-tracking policies and step policies,
//! with the defaults ECS uses, and the `--step` text form (`cpu>80:+2,cpu>60:+1,cpu<20:-1`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// CPU used over CPU reserved, percent, averaged over the service's tasks.
    Cpu,
    /// Memory used over memory reserved, percent, averaged likewise.
    Memory,
    /// New connections per minute per load-balancer target (ECS's
    /// `ALBRequestCountPerTarget`, counted by connection: the kernel balances connections).
    Requests,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Cpu => "cpu",
            Metric::Memory => "memory",
            Metric::Requests => "requests",
        }
    }

    /// How a value of the metric reads.
    pub fn show(self, v: f64) -> String {
        match self {
            Metric::Cpu | Metric::Memory => format!("{v:.0}%"),
            Metric::Requests => format!("{v:.0}/min"),
        }
    }
}

/// `minCapacity` / `maxCapacity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalableTarget {
    pub min_capacity: u32,
    pub max_capacity: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetTracking {
    pub metric: Metric,
    /// Percent the metric is held at.
    pub target: f64,
    pub scale_out_cooldown_secs: u64,
    pub scale_in_cooldown_secs: u64,
    pub disable_scale_in: bool,
}

impl TargetTracking {
    /// ECS's defaults: 300 s both ways; berth scales out sooner, since it sees its own
    /// numbers every few seconds rather than a cloud alarm's minutes.
    pub fn new(metric: Metric, target: f64) -> TargetTracking {
        TargetTracking {
            metric,
            target,
            scale_out_cooldown_secs: 30,
            scale_in_cooldown_secs: 120,
            disable_scale_in: false,
        }
    }
}

/// One step: when `metric` is above (or below) `threshold`, change the count by `adjustment`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub metric: Metric,
    pub above: bool,
    pub threshold: f64,
    pub adjustment: i32,
}

/// Steps are tried in order; the first that matches gives the policy's recommendation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepPolicy {
    pub steps: Vec<Step>,
    pub cooldown_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policies {
    pub target: ScalableTarget,
    pub tracking: Vec<TargetTracking>,
    pub steps: Option<StepPolicy>,
    /// Relative distance from a target inside which nothing changes (HPA's 10%).
    pub tolerance: f64,
    /// Scale-in takes the highest recommendation of this window, so a dip does not shrink
    /// the service (HPA's stabilization window).
    pub scale_in_window_secs: u64,
}

/// `cpu>80:+2,cpu>60:+1,cpu<20:-1`: each step a metric, `>` or `<`, a percent, and a signed
/// change; an error names the step and what is wrong with it.
pub fn parse_steps(text: &str) -> Result<Vec<Step>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let bad = |why: &str| format!("step \"{s}\": {why} (form: cpu>80:+2)");
            let (cond, adj) = s.split_once(':').ok_or_else(|| bad("no ':'"))?;
            let (name, above, threshold) = match (cond.split_once('>'), cond.split_once('<')) {
                (Some((n, t)), None) => (n, true, t),
                (None, Some((n, t))) => (n, false, t),
                _ => return Err(bad("needs one '>' or '<'")),
            };
            let metric = match name.trim() {
                "cpu" => Metric::Cpu,
                "memory" | "mem" => Metric::Memory,
                "requests" | "ALBRequestCountPerTarget" => Metric::Requests,
                other => return Err(bad(&format!("\"{other}\" is not cpu, memory or requests"))),
            };
            let threshold: f64 = threshold
                .trim()
                .trim_end_matches('%')
                .parse()
                .map_err(|_| bad("the threshold is not a number"))?;
            let adjustment: i32 = adj
                .trim()
                .parse()
                .map_err(|_| bad("the change is not a whole number such as +2 or -1"))?;
            if adjustment == 0 {
                return Err(bad("a change of 0 does nothing"));
            }
            Ok(Step {
                metric,
                above,
                threshold,
                adjustment,
            })
        })
        .collect()
}

/// Steps from a file: the text form, or JSON: a list of step strings (`["cpu>80:+2"]`) or
/// of step objects (`[{"metric":"cpu","above":true,"threshold":80,"adjustment":2}]`).
pub fn parse_steps_file(text: &str) -> Result<Vec<Step>, String> {
    let text = text.trim();
    if !text.starts_with('[') {
        return parse_steps(text);
    }
    let items: Vec<serde_json::Value> =
        serde_json::from_str(text).map_err(|e| format!("steps file: {e}"))?;
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        match item {
            serde_json::Value::String(s) => out.extend(parse_steps(&s)?),
            other => out.push(
                serde_json::from_value::<Step>(other)
                    .map_err(|e| format!("steps file, item {i}: {e}"))?,
            ),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steps_file_may_be_text_or_json() {
        let text = parse_steps_file("cpu>80:+2,cpu<20:-1\n").unwrap();
        let strings = parse_steps_file(r#"["cpu>80:+2", "cpu<20:-1"]"#).unwrap();
        let objects = parse_steps_file(
            r#"[{"metric":"cpu","above":true,"threshold":80,"adjustment":2},
                {"metric":"cpu","above":false,"threshold":20,"adjustment":-1}]"#,
        )
        .unwrap();
        assert_eq!(text, strings);
        assert_eq!(text, objects);
        assert!(parse_steps_file(r#"[{"metric":"disk"}]"#)
            .unwrap_err()
            .starts_with("steps file, item 0"));
    }

    #[test]
    fn the_step_text_form_reads_in_order_and_errors_name_the_step() {
        let s = parse_steps("cpu>80:+2, cpu>60:+1,memory<20%:-1").unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(
            s[0],
            Step {
                metric: Metric::Cpu,
                above: true,
                threshold: 80.0,
                adjustment: 2
            }
        );
        assert_eq!(
            s[2],
            Step {
                metric: Metric::Memory,
                above: false,
                threshold: 20.0,
                adjustment: -1
            }
        );
        assert_eq!(
            parse_steps("cpu>80:+2,disk>1:+1").unwrap_err(),
            "step \"disk>1:+1\": \"disk\" is not cpu, memory or requests (form: cpu>80:+2)"
        );
        assert!(parse_steps("cpu=80:+1")
            .unwrap_err()
            .contains("needs one '>' or '<'"));
        assert!(parse_steps("cpu>80:0")
            .unwrap_err()
            .contains("a change of 0"));
    }
}
