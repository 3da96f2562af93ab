use super::*;
use crate::runtime::report::{Done, Exited, Failed, Started};
use crate::runtime::Observation;
use crate::spec;

fn task() -> Task {
    let def = spec::parse(
        r#"{"family":"web","containerDefinitions":[
            {"name":"app","image":"busybox","memory":64},
            {"name":"side","image":"busybox","memory":32,"essential":false}]}"#,
    )
    .unwrap()
    .definition;
    Task::new("t1".into(), "web:1".into(), &def, 10)
}

fn seen(f: impl FnOnce(&mut Observation)) -> Seen {
    let mut report = Observation::default();
    f(&mut report);
    Seen {
        report,
        holder_alive: true,
    }
}

fn started(o: &mut Observation, name: &str) {
    o.started.insert(
        name.into(),
        Started {
            pid: 1,
            at: 1,
            steps: vec![],
        },
    );
}

fn exited(o: &mut Observation, name: &str, code: i32, oom: Option<OomScope>) {
    o.exited.insert(
        name.into(),
        Exited {
            exit_code: code,
            oom,
            at: 2,
        },
    );
}

#[test]
fn running_once_every_container_started() {
    let mut t = task();
    t.launched();
    assert_eq!(t.last_status, Status::Pending);
    assert!(t.apply(&seen(|o| started(o, "app")), 20));
    assert_eq!(t.last_status, Status::Pending);
    t.apply(
        &seen(|o| {
            started(o, "app");
            started(o, "side")
        }),
        30,
    );
    assert_eq!(t.last_status, Status::Running);
    assert_eq!(t.started_at, Some(30));
    assert!(!t.apply(
        &seen(|o| {
            started(o, "app");
            started(o, "side")
        }),
        40
    ));
}

#[test]
fn essential_exit_stops_the_task_with_its_code() {
    let mut t = task();
    t.launched();
    let both = |o: &mut Observation| {
        started(o, "app");
        started(o, "side");
        exited(o, "app", 42, None);
    };
    t.apply(&seen(both), 20);
    assert_eq!(t.last_status, Status::Stopping);
    assert_eq!(t.desired_status, Status::Stopped);
    assert_eq!(t.stop_code, Some(StopCode::EssentialContainerExited));
    assert_eq!(
        t.stopped_reason.as_deref(),
        Some("Essential container in task exited")
    );
    t.apply(
        &seen(|o| {
            both(o);
            exited(o, "side", 143, None);
            o.done = Some(Done { at: 3 });
        }),
        30,
    );
    assert_eq!(t.last_status, Status::Stopped);
    assert_eq!(t.containers[0].exit_code, Some(42));
    assert_eq!(t.containers[1].exit_code, Some(143));
    assert_eq!(t.stopped_at, Some(30));
}

#[test]
fn oom_kill_is_the_stopped_reason() {
    let mut t = task();
    t.apply(
        &seen(|o| {
            started(o, "app");
            exited(o, "app", 137, Some(OomScope::Container));
        }),
        20,
    );
    assert!(t
        .stopped_reason
        .as_deref()
        .unwrap()
        .starts_with("OutOfMemoryError: container app"));
    assert_eq!(t.stop_code, Some(StopCode::EssentialContainerExited));
}

#[test]
fn user_stop_keeps_its_reason_over_the_exit_that_follows() {
    let mut t = task();
    t.apply(
        &seen(|o| {
            started(o, "app");
            started(o, "side")
        }),
        20,
    );
    assert!(t.request_stop("maintenance".into()));
    assert_eq!(t.last_status, Status::Stopping);
    t.apply(
        &seen(|o| {
            exited(o, "app", 143, None);
            exited(o, "side", 143, None);
            o.done = Some(Done { at: 3 });
        }),
        30,
    );
    assert_eq!(t.stop_code, Some(StopCode::UserInitiated));
    assert_eq!(t.stopped_reason.as_deref(), Some("maintenance"));
    assert!(!t.request_stop("again".into()));
}

#[test]
fn failure_to_start_names_the_cause() {
    let mut t = task();
    t.apply(
        &seen(|o| {
            o.failed = Some(Failed {
                container: "app".into(),
                reason: "CannotStartContainerError: exec: no such file".into(),
                at: 1,
            });
            o.done = Some(Done { at: 2 });
        }),
        20,
    );
    assert_eq!(t.last_status, Status::Stopped);
    assert_eq!(t.stop_code, Some(StopCode::TaskFailedToStart));
    assert!(t.containers[0]
        .reason
        .as_deref()
        .unwrap()
        .contains("no such file"));
}

#[test]
fn a_failure_after_the_container_ran_is_a_lost_task() {
    let mut t = task();
    t.apply(
        &seen(|o| {
            started(o, "app");
            exited(o, "app", 137, None);
            o.failed = Some(Failed {
                container: "app".into(),
                reason: "the microVM's VMM (qemu-system-x86_64) exited".into(),
                at: 3,
            });
            o.done = Some(Done { at: 4 });
        }),
        20,
    );
    assert_eq!(t.stop_code, Some(StopCode::TaskLost));
    assert!(t.stopped_reason.as_deref().unwrap().contains("VMM"));
}

#[test]
fn a_lost_shim_stops_the_task_with_a_reason() {
    let mut t = task();
    let mut s = seen(|o| started(o, "app"));
    s.holder_alive = false;
    t.apply(&s, 20);
    assert_eq!(t.last_status, Status::Stopped);
    assert_eq!(t.stop_code, Some(StopCode::TaskLost));
    assert!(t.stopped_reason.as_deref().unwrap().contains("shim"));
}

fn running() -> Task {
    let mut t = task();
    t.launched();
    t.apply(
        &seen(|o| {
            started(o, "app");
            started(o, "side");
        }),
        20,
    );
    assert_eq!(t.last_status, Status::Running);
    t
}

#[test]
fn readopted_task_keeps_running_when_its_shim_does() {
    let mut t = running();
    t.readopt(
        Found::Seen,
        &seen(|o| {
            started(o, "app");
            started(o, "side");
        }),
        30,
    );
    assert_eq!(t.last_status, Status::Running);
    assert_eq!(t.started_at, Some(20));
}

#[test]
fn exits_while_berthd_was_down_are_recorded_with_their_codes() {
    let mut t = running();
    let mut s = seen(|o| {
        started(o, "app");
        started(o, "side");
        exited(o, "app", 3, None);
        exited(o, "side", 143, None);
        o.done = Some(Done { at: 25 });
    });
    s.holder_alive = false;
    t.readopt(Found::Seen, &s, 30);
    assert_eq!(t.last_status, Status::Stopped);
    assert_eq!(t.stop_code, Some(StopCode::EssentialContainerExited));
    assert_eq!(t.containers[0].exit_code, Some(3));
    assert_eq!(t.containers[1].exit_code, Some(143));
}

#[test]
fn after_a_reboot_every_task_is_stopped_as_host_restarted() {
    let mut t = running();
    t.readopt(Found::HostRestarted, &Seen::default(), 30);
    assert_eq!(t.last_status, Status::Stopped);
    assert_eq!(t.stop_code, Some(StopCode::HostRestarted));
    assert_eq!(
        t.stopped_reason.as_deref(),
        Some("host restarted: the task ended with the previous boot")
    );
    assert!(t
        .containers
        .iter()
        .all(|c| c.last_status == Status::Stopped));
    assert_eq!(t.stopped_at, Some(30));
}

#[test]
fn a_task_berthd_died_starting_is_stopped_unless_its_shim_runs() {
    let mut t = task();
    t.readopt(Found::Seen, &Seen::default(), 30);
    assert_eq!(t.last_status, Status::Stopped);
    assert_eq!(t.stop_code, Some(StopCode::TaskFailedToStart));
    assert!(t
        .stopped_reason
        .as_deref()
        .unwrap()
        .contains("berthd stopped while starting"));

    let mut t = task();
    t.readopt(Found::Seen, &seen(|_| {}), 30);
    assert_eq!(
        t.last_status,
        Status::Pending,
        "a shim that runs carries on"
    );
}

#[test]
fn a_dependency_that_ran_to_its_end_counts_as_started() {
    let mut t = task();
    t.launched();
    t.apply(
        &seen(|o| {
            started(o, "side");
            exited(o, "side", 0, None);
        }),
        20,
    );
    assert_eq!(t.last_status, Status::Pending, "app has not started yet");
    t.apply(
        &seen(|o| {
            started(o, "side");
            exited(o, "side", 0, None);
            started(o, "app");
        }),
        30,
    );
    assert_eq!((t.last_status, t.started_at), (Status::Running, Some(30)));
}

#[test]
fn task_health_follows_its_essential_containers_checks() {
    use crate::runtime::report::{Health, HealthStatus};
    let def = spec::parse(
        r#"{"family":"web","containerDefinitions":[
            {"name":"app","image":"busybox","memory":64,"healthCheck":{"command":["CMD","true"]}},
            {"name":"side","image":"busybox","memory":32,"essential":false,
             "healthCheck":{"command":["CMD","false"]}},
            {"name":"plain","image":"busybox","memory":32}]}"#,
    )
    .unwrap()
    .definition;
    let mut t = Task::new("t2".into(), "web:1".into(), &def, 10);
    t.launched();
    assert_eq!(t.health_status(), HealthStatus::Unknown);
    assert_eq!(t.containers[2].health_status, None, "no check, no health");
    let health = |o: &mut Observation, name: &str, status| {
        o.health.insert(
            name.into(),
            Health {
                status,
                failing_streak: 0,
                last_failure: None,
                at: 1,
            },
        );
    };
    let all = |o: &mut Observation| {
        for c in ["app", "side", "plain"] {
            started(o, c);
        }
    };
    assert!(t.apply(
        &seen(|o| {
            all(o);
            health(o, "app", HealthStatus::Healthy);
            health(o, "side", HealthStatus::Unhealthy);
        }),
        20
    ));
    assert_eq!(t.containers[1].health_status, Some(HealthStatus::Unhealthy));
    assert_eq!(
        t.health_status(),
        HealthStatus::Healthy,
        "a non-essential container's health does not count"
    );
    t.apply(
        &seen(|o| {
            all(o);
            health(o, "app", HealthStatus::Unhealthy);
        }),
        30,
    );
    assert_eq!(t.health_status(), HealthStatus::Unhealthy);
}

#[test]
fn a_pulling_task_is_pending_with_pull_times_and_a_stop_ends_it_at_once() {
    let mut t = task();
    t.start_pull(20);
    assert_eq!(t.last_status, Status::Pending);
    assert!(t.pulling());
    t.stop_unlaunched("Task stopped by user".into(), 30);
    assert!(t.is_stopped() && !t.pulling());
    assert_eq!(t.stop_code, Some(StopCode::UserInitiated));
    assert_eq!((t.pull_started_at, t.pull_stopped_at), (Some(20), Some(30)));
    assert!(t
        .containers
        .iter()
        .all(|c| c.last_status == Status::Stopped));
}

#[test]
fn a_failed_pull_is_a_failure_to_start_with_the_registrys_reason() {
    let mut t = task();
    t.start_pull(20);
    t.failed_to_start("CannotPullContainerError: busybox: unauthorized".into(), 40);
    assert_eq!(t.stop_code, Some(StopCode::TaskFailedToStart));
    assert_eq!(
        t.containers[0].reason.as_deref(),
        Some("CannotPullContainerError: busybox: unauthorized")
    );
    assert_eq!(t.pull_stopped_at, Some(40));
}

#[test]
fn a_task_berthd_died_pulling_is_stopped_unless_it_was_handed_over() {
    let gone = Seen {
        report: Observation::default(),
        holder_alive: false,
    };
    let mut t = task();
    t.start_pull(20);
    t.readopt(Found::Seen, &gone, 50);
    assert_eq!(t.stop_code, Some(StopCode::TaskFailedToStart));
    assert!(t
        .stopped_reason
        .as_deref()
        .is_some_and(|r| r.contains("while pulling")));
    let mut handed = task();
    handed.start_pull(20);
    handed.readopt(Found::Seen, &seen(|o| started(o, "app")), 50);
    assert!(!handed.is_stopped() && !handed.pulling());
    assert_eq!(handed.pull_stopped_at, Some(50));
}
