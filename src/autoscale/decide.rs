//! The decision: from the service's samples over the window, each policy recommends a count;
//! scale-out takes the largest, scale-in happens only when every policy agrees and takes the
//! highest recommendation of the stabilization window; cooldowns, the scalable target and the
//! host's capacity bound the result. Every decision carries the reason a user is shown.

use super::policy::{Metric, Policies, TargetTracking};

/// One sample of a service's utilization, percent of what its tasks reserved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at_ms: u64,
    pub cpu: f64,
    pub memory: f64,
    /// New connections per minute per load-balancer target; `None` without a reading (no
    /// load balancer, the first sample after a start, the kernel's counters unreadable).
    pub requests: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Out,
    In,
    Hold,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Out => "out",
            Direction::In => "in",
            Direction::Hold => "hold",
        }
    }
}

pub struct Input<'a> {
    pub now_ms: u64,
    /// The service's desired count now.
    pub current: u32,
    pub samples: &'a [Sample],
    /// Samples older than this are not averaged.
    pub window_ms: u64,
    pub policies: &'a Policies,
    pub last_scale_out_ms: Option<u64>,
    pub last_scale_in_ms: Option<u64>,
    /// Earlier recommendations (time, count), for the scale-in stabilization window.
    pub recent: &'a [(u64, u32)],
    /// Tasks the host can still admit for this service, and the resource that limits it
    /// (`RESOURCE:MEMORY: ...`); `None`: no limit known.
    pub room: Option<(u32, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub desired: u32,
    pub direction: Direction,
    /// What the policies recommended before cooldowns and bounds: kept for the window.
    pub recommendation: u32,
    pub reason: String,
    /// The averages the decision was made from.
    pub cpu: Option<f64>,
    pub memory: Option<f64>,
}

fn average(samples: &[Sample], since: u64, f: fn(&Sample) -> f64) -> Option<f64> {
    let v: Vec<f64> = samples.iter().filter(|s| s.at_ms >= since).map(f).collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Each policy's recommendation with its reason.
fn recommendations(
    input: &Input,
    cpu: f64,
    memory: f64,
    requests: Option<f64>,
) -> Vec<(u32, String)> {
    let p = input.policies;
    let cur = input.current;
    let value = |m: Metric| match m {
        Metric::Cpu => Some(cpu),
        Metric::Memory => Some(memory),
        Metric::Requests => requests,
    };
    let mut out = Vec::new();
    for t in &p.tracking {
        let Some(v) = value(t.metric) else {
            // No reading: this policy holds, so it vetoes a scale-in and adds no scale-out.
            out.push((cur, format!("no {} readings yet", t.metric.as_str())));
            continue;
        };
        let ratio = v / t.target;
        let name = t.metric.as_str();
        let rec = if (ratio - 1.0).abs() <= p.tolerance {
            (
                cur,
                format!(
                    "{name} {} is within {:.0}% of target {}",
                    t.metric.show(v),
                    p.tolerance * 100.0,
                    t.metric.show(t.target)
                ),
            )
        } else {
            let want = (f64::from(cur) * ratio).ceil().max(0.0) as u32;
            let want = if t.disable_scale_in {
                want.max(cur)
            } else {
                want
            };
            (
                want,
                format!(
                    "{name} {} vs target {}: ceil({cur} x {v:.0} / {:.0}) = {want}",
                    t.metric.show(v),
                    t.metric.show(t.target),
                    t.target
                ),
            )
        };
        out.push(rec);
    }
    if let Some(sp) = &p.steps {
        // A step on a metric with no reading does not match.
        let hit = sp.steps.iter().find(|s| {
            let Some(v) = value(s.metric) else {
                return false;
            };
            if s.above {
                v > s.threshold
            } else {
                v < s.threshold
            }
        });
        // A step policy with no matching step has no opinion: it neither holds nor vetoes.
        if let Some(s) = hit {
            let want = (i64::from(cur) + i64::from(s.adjustment)).max(0) as u32;
            let op = if s.above { '>' } else { '<' };
            out.push((
                want,
                format!(
                    "step {}{op}{:.0} ({}): {:+}",
                    s.metric.as_str(),
                    s.threshold,
                    s.metric.show(value(s.metric).unwrap_or(f64::NAN)),
                    s.adjustment
                ),
            ));
        }
    }
    out
}

fn cooling(last: Option<u64>, secs: u64, now: u64) -> bool {
    last.is_some_and(|t| now < t + secs * 1000)
}

pub fn decide(input: &Input) -> Decision {
    let p = input.policies;
    // Samples from before the last change were taken at another count: they would drive a
    // second change for the same load.
    let last_change = input
        .last_scale_out_ms
        .max(input.last_scale_in_ms)
        .map_or(0, |t| t + 1);
    let since = input
        .now_ms
        .saturating_sub(input.window_ms)
        .max(last_change);
    let cpu = average(input.samples, since, |s| s.cpu);
    let memory = average(input.samples, since, |s| s.memory);
    let requests = {
        let v: Vec<f64> = input
            .samples
            .iter()
            .filter(|s| s.at_ms >= since)
            .filter_map(|s| s.requests)
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let hold = |desired: u32, recommendation: u32, reason: String| Decision {
        desired,
        direction: Direction::Hold,
        recommendation,
        reason,
        cpu,
        memory,
    };
    let cur = input.current;
    let (Some(c), Some(m)) = (cpu, memory) else {
        return hold(
            cur,
            cur,
            "no samples in the window since the last change".into(),
        );
    };
    let recs = recommendations(input, c, m, requests);
    if recs.is_empty() {
        return hold(cur, cur, "no policy recommends a change".into());
    }
    let why = |pick: u32| {
        recs.iter()
            .filter(|(r, _)| *r == pick)
            .map(|(_, w)| w.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    };
    let max = recs.iter().map(|(r, _)| *r).max().unwrap_or(cur);
    let (lo, hi) = (
        p.target.min_capacity,
        p.target.max_capacity.max(p.target.min_capacity),
    );
    let bounded = max.clamp(lo, hi);
    // The longest cooldown of any policy, for one direction (a step policy has one for both).
    let cooldown = |of: fn(&TargetTracking) -> u64| {
        p.tracking
            .iter()
            .map(of)
            .chain(p.steps.iter().map(|s| s.cooldown_secs))
            .max()
            .unwrap_or(0)
    };
    let cooldown_out = cooldown(|t| t.scale_out_cooldown_secs);
    let cooldown_in = cooldown(|t| t.scale_in_cooldown_secs);
    if bounded > cur {
        let mut desired = bounded;
        let mut reason = why(max);
        if max > hi {
            reason.push_str(&format!("; held to maxCapacity {hi}"));
        } else if max < lo {
            reason.push_str(&format!("; raised to minCapacity {lo}"));
        }
        if cooling(input.last_scale_out_ms, cooldown_out, input.now_ms) {
            return hold(
                cur,
                max,
                format!("{reason}; scale-out cooldown ({cooldown_out} s) not over"),
            );
        }
        if let Some((room, resource)) = &input.room {
            if desired > cur + room {
                desired = cur + room;
                reason.push_str(&format!("; capacity allows {desired}: {resource}"));
                if desired == cur {
                    return hold(cur, max, reason);
                }
            }
        }
        return Decision {
            desired,
            direction: Direction::Out,
            recommendation: max,
            reason,
            cpu,
            memory,
        };
    }
    if bounded < cur {
        // The highest recommendation of the window: a dip does not shrink the service.
        let window_start = input.now_ms.saturating_sub(p.scale_in_window_secs * 1000);
        // A window not yet seen whole (berthd just started, the policy is new) is no
        // evidence that the load stays low.
        if !input.recent.iter().any(|(t, _)| *t <= window_start) {
            return hold(
                cur,
                max,
                format!(
                    "{}; scale-in waits for {} s of history",
                    why(max),
                    p.scale_in_window_secs
                ),
            );
        }
        let stable = input
            .recent
            .iter()
            .filter(|(t, _)| *t >= window_start)
            .map(|(_, r)| *r)
            .fold(bounded, u32::max);
        if stable >= cur {
            return hold(
                cur,
                max,
                format!(
                    "{}; scale-in waits: {stable} recommended within the last {} s",
                    why(max),
                    p.scale_in_window_secs
                ),
            );
        }
        let last = input.last_scale_in_ms.max(input.last_scale_out_ms);
        if cooling(last, cooldown_in, input.now_ms) {
            return hold(
                cur,
                max,
                format!("{}; scale-in cooldown ({cooldown_in} s) not over", why(max)),
            );
        }
        let desired = stable.clamp(lo, hi);
        let mut reason = why(max);
        if desired != max {
            reason.push_str(&format!("; {desired} after the window and bounds"));
        }
        return Decision {
            desired,
            direction: Direction::In,
            recommendation: max,
            reason,
            cpu,
            memory,
        };
    }
    let reason = match max.cmp(&cur) {
        std::cmp::Ordering::Greater => format!("{}; held to maxCapacity {hi}", why(max)),
        std::cmp::Ordering::Less => format!("{}; held to minCapacity {lo}", why(max)),
        std::cmp::Ordering::Equal => why(max),
    };
    hold(cur, max, reason)
}

#[cfg(test)]
mod tests;
