use super::*;

fn view(id: &str, def: &str, status: Status) -> TaskView {
    TaskView {
        id: id.into(),
        task_definition: def.into(),
        last_status: status,
        desired_stopped: false,
        health: HealthStatus::Unknown,
        checked: false,
        stop_code: None,
        stopped_reason: None,
        created_at: id.len() as u64,
        draining: false,
    }
}

fn stopped(id: &str, def: &str, code: StopCode) -> TaskView {
    TaskView {
        stop_code: Some(code),
        stopped_reason: Some("Essential container in task exited".into()),
        ..view(id, def, Status::Stopped)
    }
}

#[test]
fn a_new_service_starts_its_desired_count_and_a_stopped_task_is_replaced() {
    let s = Service::new("web", "web:1", 3, 0);
    assert_eq!(plan(&s, &[], 0).start, ["web:1", "web:1", "web:1"]);
    let tasks = [
        view("a", "web:1", Status::Running),
        view("b", "web:1", Status::Running),
    ];
    assert_eq!(plan(&s, &tasks, 0).start, ["web:1"]);
}

#[test]
fn failures_count_grow_a_back_off_and_a_healthy_task_resets_it() {
    let mut s = Service::new("web", "web:1", 1, 0);
    // A deployment that completed is past the circuit breaker: its failures only back off.
    s.deployments[0].rollout = Rollout::Completed;
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        s.tasks.insert(id.to_string());
        assert!(account(
            &mut s,
            &[stopped(id, "web:1", StopCode::EssentialContainerExited)],
            10
        ));
        assert_eq!(s.failures, i as u32 + 1);
    }
    assert_eq!(s.retry_at, Some(10 + 4_000_000), "third failure: 4 s");
    assert!(plan(&s, &[], 11).start.is_empty(), "backing off");
    assert_eq!(plan(&s, &[], 10 + 4_000_000).start.len(), 1);
    assert!(s.events.iter().any(|e| e
        .message
        .contains("3 task failures in a row: next launch in 4 s")));
    account(&mut s, &[view("d", "web:1", Status::Running)], 20);
    assert_eq!((s.failures, s.retry_at), (0, None));
    // A stop berth asked for is not a failure; a task seen twice counts once.
    s.tasks.insert("e".into());
    account(
        &mut s,
        &[stopped("e", "web:1", StopCode::UserInitiated)],
        30,
    );
    account(
        &mut s,
        &[stopped("e", "web:1", StopCode::EssentialContainerExited)],
        31,
    );
    assert_eq!(s.failures, 0);
}

#[test]
fn a_rolling_update_at_100_200_never_drops_below_the_desired_healthy_count() {
    let mut s = Service::new("web", "web:1", 3, 0);
    s.deployments[0].rollout = Rollout::Completed;
    s.deploy("web:2", 1);
    let old = |id: &str| view(id, "web:1", Status::Running);
    let mut tasks = vec![old("o1"), old("o2"), old("o3")];
    let a = plan(&s, &tasks, 2);
    assert_eq!(
        a.start,
        ["web:2", "web:2", "web:2"],
        "maximumPercent 200 leaves room for 3 more"
    );
    assert!(
        a.stop.is_empty(),
        "no old task stops before new ones are healthy"
    );
    tasks.extend([
        view("n1", "web:2", Status::Pending),
        view("n2", "web:2", Status::Running),
        view("n3", "web:2", Status::Pending),
    ]);
    let a = plan(&s, &tasks, 3);
    assert!(a.start.is_empty());
    assert_eq!(
        a.stop.len(),
        1,
        "one new healthy task lets one old one go: {a:?}"
    );
    for t in tasks.iter_mut().filter(|t| t.id.starts_with('n')) {
        t.last_status = Status::Running;
    }
    let a = plan(&s, &tasks, 4);
    assert_eq!(a.stop.len(), 3, "{a:?}");
    let done: Vec<TaskView> = tasks
        .into_iter()
        .filter(|t| t.id.starts_with('n'))
        .collect();
    assert!(settle(&mut s, &done, 5));
    assert_eq!(s.deployments.len(), 1);
    assert_eq!(s.deployments[0].rollout, Rollout::Completed);
    assert!(s.events.last().unwrap().message.contains("steady state"));
}

#[test]
fn health_checks_decide_healthy_and_an_unhealthy_task_is_replaced() {
    let s = Service::new("web", "web:1", 1, 0);
    let mut t = view("a", "web:1", Status::Running);
    t.checked = true;
    t.health = HealthStatus::Unhealthy;
    let a = plan(&s, &[t.clone()], 0);
    assert_eq!(
        a.stop,
        [(
            "a".to_string(),
            "Task failed container health checks".to_string()
        )]
    );
    assert_eq!(a.start, ["web:1"], "replaced at once");
    t.health = HealthStatus::Unknown;
    assert!(!t.healthy(), "a checked task counts only once HEALTHY");
}

#[test]
fn the_circuit_breaker_fails_the_deployment_and_rolls_back_to_the_last_good_one() {
    let mut s = Service::new("web", "web:1", 2, 0);
    s.deployments[0].rollout = Rollout::Completed;
    s.deploy("web:2", 1);
    for id in ["x1", "x2", "x3"] {
        s.tasks.insert(id.into());
        account(
            &mut s,
            &[stopped(id, "web:2", StopCode::EssentialContainerExited)],
            2,
        );
    }
    assert_eq!(s.primary().unwrap().task_definition, "web:1", "rolled back");
    assert_eq!(s.deployments[1].rollout, Rollout::Failed);
    assert!(s.events.iter().any(|e| e
        .message
        .contains("deployment of web:2 failed: 3 tasks failed")));
    assert!(s
        .events
        .iter()
        .any(|e| e.message.contains("rolling back to web:1")));
    assert_eq!(failure_threshold(2), 3);
    assert_eq!(failure_threshold(30), 15);
}

#[test]
fn scale_in_stops_the_newest_and_not_yet_healthy_first_and_delete_stops_all() {
    let mut s = Service::new("web", "web:1", 1, 0);
    let tasks = [
        view("aa", "web:1", Status::Running),
        view("bbb", "web:1", Status::Running),
        view("c", "web:1", Status::Pending),
    ];
    let a = plan(&s, &tasks, 0);
    let stopped: Vec<&str> = a.stop.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(stopped, ["c", "bbb"]);
    s.deleting = true;
    assert_eq!(plan(&s, &tasks, 0).stop.len(), 3);
}

#[test]
fn a_task_started_just_before_a_crash_is_taken_back_and_its_failure_counts() {
    // berthd died between starting task "a" and recording it in the service.
    let mut s = Service::new("web", "web:1", 1, 0);
    assert!(account(&mut s, &[view("a", "web:1", Status::Running)], 10));
    assert!(s.tasks.contains("a"));
    assert!(s.events.iter().any(|e| e
        .message
        .starts_with("(service web) took back task a, started before")));
    // Taken back once: the next pass changes nothing.
    assert!(!account(&mut s, &[view("a", "web:1", Status::Running)], 11));
    account(
        &mut s,
        &[stopped("a", "web:1", StopCode::EssentialContainerExited)],
        12,
    );
    assert_eq!(s.failures, 1, "its stop is a failure like any other");
    assert!(s
        .events
        .iter()
        .any(|e| e.message.starts_with("(service web) task a stopped")));
}

#[test]
fn a_draining_task_counts_as_gone_so_the_rollout_goes_on_and_a_scale_in_is_drainable() {
    let mut s = Service::new("web", "web:1", 2, 0);
    s.deploy("web:2", 1);
    let draining = TaskView {
        draining: true,
        ..view("a", "web:1", Status::Running)
    };
    let tasks = [
        draining,
        view("b", "web:1", Status::Running),
        view("c", "web:2", Status::Running),
        view("d", "web:2", Status::Running),
    ];
    let a = plan(&s, &tasks, 2);
    // Two of web:2 healthy: b may go, drained; the draining a is not stopped again.
    assert_eq!(
        a.stop.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
        ["b"]
    );
    assert_eq!(a.drainable, ["b"]);
    assert!(a.start.is_empty());
    let s = Service::new("web", "web:1", 1, 0);
    let tasks = [
        view("a", "web:1", Status::Running),
        view("bb", "web:1", Status::Running),
    ];
    let a = plan(&s, &tasks, 0);
    assert_eq!(
        a.drainable,
        ["bb"],
        "the newest is scaled in, drained first"
    );
}

#[test]
fn an_unhealthy_task_stops_at_once_never_drained() {
    let s = Service::new("web", "web:1", 1, 0);
    let sick = TaskView {
        checked: true,
        health: HealthStatus::Unhealthy,
        ..view("a", "web:1", Status::Running)
    };
    let a = plan(&s, &[sick], 0);
    assert_eq!(a.stop.len(), 1);
    assert!(a.drainable.is_empty());
}
