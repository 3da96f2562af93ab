use super::*;
use crate::autoscale::{Metric, Policies, ScalableTarget, TargetTracking};

fn engine(dir: &std::path::Path) -> Engine {
    crate::engine::test_engine(dir)
}

fn policies() -> Policies {
    Policies {
        target: ScalableTarget {
            min_capacity: 0,
            max_capacity: 3,
        },
        tracking: vec![TargetTracking::new(Metric::Cpu, 50.0)],
        steps: None,
        tolerance: 0.1,
        scale_in_window_secs: 60,
    }
}

#[test]
fn a_service_and_its_scaling_survive_a_restart_and_the_autoscaler_holds_without_samples() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = engine(dir.path());
        e.register_definition(r#"{"family":"web","networkMode":"none","containerDefinitions":[{"name":"a","image":"busybox","memory":32}]}"#).unwrap();
        let spec = ServiceSpec {
            name: "web-1".into(),
            task_definition: "web".into(),
            desired_count: 0,
            min_healthy_percent: 100,
            max_percent: 200,
            isolation: Some(crate::vm::sizing::Isolation::Microvm),
            load_balancers: Vec::new(),
        };
        // This engine has no guest kernel: a microVM service is refused at once, by its cause.
        let refused = e.create_service(&spec).unwrap_err().to_string();
        assert!(refused.contains("kernel"), "{refused}");
        let spec = ServiceSpec {
            isolation: Some(crate::vm::sizing::Isolation::Container),
            ..spec
        };
        assert_eq!(
            e.create_service(&spec)
                .unwrap()
                .primary()
                .unwrap()
                .task_definition,
            "web:1"
        );
        assert!(matches!(
            e.create_service(&spec),
            Err(ServiceError::Exists(_))
        ));
        e.set_scaling("web-1", Some(policies())).unwrap();
        e.scale("web-1", std::time::Duration::from_secs(10))
            .unwrap();
        e.schedule("web-1").unwrap();
        let s = e.service("web-1").unwrap();
        assert_eq!(s.desired_count, 0);
        let sc = s.scaling.as_ref().unwrap();
        assert!(sc.decisions.is_empty(), "a hold changes nothing");
        assert_eq!(
            sc.last.as_ref().unwrap().reason,
            "no samples in the window since the last change"
        );
    }
    let e = engine(dir.path());
    let s = e.service("web-1").unwrap();
    assert!(s.scaling.is_some());
    assert_eq!(
        s.isolation,
        Some(crate::vm::sizing::Isolation::Container),
        "the service's isolation survives the restart"
    );
    e.delete_service("web-1").unwrap();
    e.schedule("web-1").unwrap();
    assert!(matches!(e.service("web-1"), Err(ServiceError::NotFound(_))));
    let mut bad = policies();
    bad.target.min_capacity = 5;
    assert!(matches!(
        e.set_scaling("nope", Some(bad)),
        Err(ServiceError::Invalid(_))
    ));
}
