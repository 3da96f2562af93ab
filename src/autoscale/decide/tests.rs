use super::*;
use crate::autoscale::{parse_steps, Policies, ScalableTarget, StepPolicy, TargetTracking};

fn cpu_policy(target: f64, min: u32, max: u32) -> Policies {
    Policies {
        target: ScalableTarget {
            min_capacity: min,
            max_capacity: max,
        },
        tracking: vec![TargetTracking::new(Metric::Cpu, target)],
        steps: None,
        tolerance: 0.1,
        scale_in_window_secs: 60,
    }
}

/// Runs the autoscaler over a load series, one decision every 5 s with a 15 s averaging
/// window, and returns the desired count after each step. The load is the service's total
/// CPU demand in percent of one task's reservation, so utilization is load / count.
struct Sim {
    policies: Policies,
    current: u32,
    samples: Vec<Sample>,
    recent: Vec<(u64, u32)>,
    last_out: Option<u64>,
    last_in: Option<u64>,
    room: Option<(u32, String)>,
    decisions: Vec<Decision>,
}

impl Sim {
    fn new(policies: Policies, current: u32) -> Sim {
        Sim {
            policies,
            current,
            samples: vec![],
            recent: vec![],
            last_out: None,
            last_in: None,
            room: None,
            decisions: vec![],
        }
    }

    fn run(&mut self, load: &[f64]) -> Vec<u32> {
        let mut counts = Vec::new();
        for &demand in load {
            let now = (self.samples.len() as u64 + 1) * 5_000;
            let util = demand / f64::from(self.current.max(1));
            self.samples.push(Sample {
                at_ms: now,
                cpu: util,
                memory: 10.0,
                requests: None,
            });
            let d = decide(&Input {
                now_ms: now,
                current: self.current,
                samples: &self.samples,
                window_ms: 15_000,
                policies: &self.policies,
                last_scale_out_ms: self.last_out,
                last_scale_in_ms: self.last_in,
                recent: &self.recent,
                room: self.room.clone(),
            });
            self.recent.push((now, d.recommendation));
            match d.direction {
                Direction::Out => self.last_out = Some(now),
                Direction::In => self.last_in = Some(now),
                Direction::Hold => {}
            }
            self.current = d.desired;
            counts.push(d.desired);
            self.decisions.push(d);
        }
        counts
    }
}

#[test]
fn a_step_up_in_load_scales_out_at_once_then_settles() {
    let mut sim = Sim::new(cpu_policy(50.0, 1, 10), 1);
    let counts = sim.run(&[
        40.0, 40.0, 150.0, 150.0, 150.0, 150.0, 150.0, 150.0, 150.0, 150.0,
    ]);
    assert_eq!(counts[..2], [1, 1], "40% of 50% is inside the band");
    let first_out = counts.iter().position(|&c| c > 1).unwrap();
    assert_eq!(
        first_out, 2,
        "scales out on the first high sample: {counts:?}"
    );
    assert_eq!(
        *counts.last().unwrap(),
        3,
        "150% of demand at a 50% target needs 3: {counts:?}"
    );
    assert!(
        sim.decisions[first_out].reason.contains("vs target 50%"),
        "{}",
        sim.decisions[first_out].reason
    );
}

#[test]
fn a_short_spike_scales_out_but_the_window_keeps_it_from_shrinking_at_once() {
    let mut p = cpu_policy(50.0, 1, 10);
    p.tracking[0].scale_out_cooldown_secs = 0;
    p.tracking[0].scale_in_cooldown_secs = 0;
    let mut sim = Sim::new(p, 2);
    let mut load = vec![100.0; 3];
    load.extend([400.0, 400.0]);
    load.extend(vec![100.0; 30]);
    let counts = sim.run(&load);
    let peak = *counts.iter().max().unwrap();
    assert!(peak > 2, "the spike scaled out: {counts:?}");
    let at_peak = counts.iter().position(|&c| c == peak).unwrap();
    // 60 s window at one decision per 5 s: nothing smaller for the next 12 decisions.
    assert!(
        counts[at_peak..at_peak + 12].iter().all(|&c| c == peak),
        "{counts:?}"
    );
    assert_eq!(
        *counts.last().unwrap(),
        2,
        "back to what 100% needs: {counts:?}"
    );
}

#[test]
fn a_slow_ramp_grows_the_service_step_by_step_never_past_max() {
    let mut p = cpu_policy(50.0, 1, 6);
    p.tracking[0].scale_out_cooldown_secs = 10;
    let mut sim = Sim::new(p, 1);
    let load: Vec<f64> = (0..60).map(|i| 20.0 + 8.0 * f64::from(i)).collect();
    let counts = sim.run(&load);
    assert!(
        counts.windows(2).all(|w| w[1] >= w[0]),
        "never shrinks while load grows: {counts:?}"
    );
    assert_eq!(*counts.last().unwrap(), 6);
    assert!(sim
        .decisions
        .iter()
        .any(|d| d.reason.contains("held to maxCapacity 6")));
}

#[test]
fn an_oscillating_load_inside_the_band_does_not_flap() {
    let mut sim = Sim::new(cpu_policy(50.0, 1, 10), 4);
    let load: Vec<f64> = (0..40)
        .map(|i| if i % 2 == 0 { 185.0 } else { 215.0 })
        .collect();
    let counts = sim.run(&load);
    assert!(
        counts.iter().all(|&c| c == 4),
        "46%..54% of a 50% target: {counts:?}"
    );
    // Outside the band, alternating above and below: scale-in waits for the window.
    let mut p = cpu_policy(50.0, 1, 10);
    p.tracking[0].scale_out_cooldown_secs = 0;
    let mut sim = Sim::new(p, 4);
    let load: Vec<f64> = (0..40)
        .map(|i| if (i / 3) % 2 == 0 { 140.0 } else { 260.0 })
        .collect();
    let counts = sim.run(&load);
    let changes = counts.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(changes <= 2, "at most up once and down once: {counts:?}");
}

#[test]
fn a_capacity_wall_stops_scale_out_and_says_which_resource() {
    let mut sim = Sim::new(cpu_policy(50.0, 1, 10), 2);
    sim.room = Some((
        1,
        "RESOURCE:MEMORY: needs 256 MiB, 200 MiB of 1836 MiB remain".into(),
    ));
    let counts = sim.run(&[400.0]);
    assert_eq!(counts, [3], "only one more fits");
    assert!(
        sim.decisions[0]
            .reason
            .contains("capacity allows 3: RESOURCE:MEMORY"),
        "{}",
        sim.decisions[0].reason
    );
    sim.room = Some((0, "RESOURCE:MEMORY: full".into()));
    sim.last_out = None;
    let counts = sim.run(&[600.0]);
    assert_eq!(counts, [3]);
    assert_eq!(sim.decisions[1].direction, Direction::Hold);
    assert!(sim.decisions[1].reason.contains("RESOURCE:MEMORY: full"));
}

#[test]
fn cooldowns_hold_the_next_change_and_the_reason_says_so() {
    let mut p = cpu_policy(50.0, 1, 20);
    p.tracking[0].scale_out_cooldown_secs = 30;
    let mut sim = Sim::new(p, 1);
    let counts = sim.run(&[100.0, 300.0, 900.0, 900.0, 900.0, 900.0, 900.0, 900.0]);
    assert_eq!(counts[0], 2);
    assert_eq!(
        counts[1], 2,
        "30 s cooldown after the first scale-out: {counts:?}"
    );
    assert!(sim.decisions[1]
        .reason
        .contains("scale-out cooldown (30 s) not over"));
    assert!(
        counts[6] > 2,
        "after the cooldown it scales again: {counts:?}"
    );
}

#[test]
fn several_policies_largest_out_wins_and_in_needs_all_to_agree() {
    let mut p = cpu_policy(50.0, 1, 10);
    p.tracking.push(TargetTracking::new(Metric::Memory, 50.0));
    p.steps = Some(StepPolicy {
        steps: parse_steps("cpu>90:+3").unwrap(),
        cooldown_secs: 0,
    });
    let input = |cpu: f64, memory: f64, current: u32| {
        let samples = vec![Sample {
            at_ms: 61_000,
            cpu,
            memory,
            requests: None,
        }];
        decide(&Input {
            now_ms: 61_000,
            current,
            samples: &samples,
            window_ms: 15_000,
            policies: &p,
            last_scale_out_ms: None,
            last_scale_in_ms: None,
            recent: &[(0, current)],
            room: None,
        })
    };
    let d = input(95.0, 60.0, 2);
    assert_eq!(
        (d.desired, d.direction),
        (5, Direction::Out),
        "step +3 beats ceil(2x95/50)=4: {}",
        d.reason
    );
    let d = input(10.0, 50.0, 4);
    assert_eq!(
        d.direction,
        Direction::Hold,
        "memory at target holds the count: {}",
        d.reason
    );
    let d = input(10.0, 10.0, 4);
    assert_eq!((d.desired, d.direction), (1, Direction::In), "{}", d.reason);
    let none: [Sample; 0] = [];
    let d = decide(&Input {
        now_ms: 0,
        current: 3,
        samples: &none,
        window_ms: 1,
        policies: &p,
        last_scale_out_ms: None,
        last_scale_in_ms: None,
        recent: &[],
        room: None,
    });
    assert_eq!(
        (d.desired, d.reason.as_str()),
        (3, "no samples in the window since the last change")
    );
}

/// The decision at 61 s on one sample (memory 1%) with no history.
fn decide_on_one(p: &Policies, current: u32, cpu: f64, requests: Option<f64>) -> Decision {
    let samples = vec![Sample {
        at_ms: 61_000,
        cpu,
        memory: 1.0,
        requests,
    }];
    decide(&Input {
        now_ms: 61_000,
        current,
        samples: &samples,
        window_ms: 60_000,
        policies: p,
        last_scale_out_ms: None,
        last_scale_in_ms: None,
        recent: &[],
        room: None,
    })
}

#[test]
fn requests_per_target_track_like_any_metric_and_read_per_minute() {
    let mut p = cpu_policy(50.0, 1, 10);
    p.tracking = vec![TargetTracking::new(Metric::Requests, 100.0)];
    let d = decide_on_one(&p, 2, 1.0, Some(240.0));
    assert_eq!(d.desired, 5);
    assert_eq!(d.direction, Direction::Out);
    assert!(
        d.reason
            .contains("requests 240/min vs target 100/min: ceil(2 x 240 / 100) = 5"),
        "{}",
        d.reason
    );
    let steps = parse_steps("requests>200:+1,ALBRequestCountPerTarget<10:-1").unwrap();
    assert_eq!(steps[0].metric, Metric::Requests);
    assert_eq!(steps[1].metric, Metric::Requests);
}

#[test]
fn no_requests_reading_holds_the_requests_policy_and_vetoes_a_scale_in() {
    let mut p = cpu_policy(50.0, 1, 10);
    p.tracking
        .push(TargetTracking::new(Metric::Requests, 100.0));
    p.scale_in_window_secs = 0;
    let d = decide_on_one(&p, 4, 5.0, None);
    assert_eq!(d.desired, 4, "{}", d.reason);
    assert_eq!(d.direction, Direction::Hold);
    assert!(
        d.reason.contains("no requests readings yet"),
        "the policy without a reading is why: {}",
        d.reason
    );
}
