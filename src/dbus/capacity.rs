//! The capacity books as `DescribeCapacity` shows them: registered, reserved and remaining per
//! resource, the ports the host keeps, and the tasks holding the rest.

use serde_json::{json, Value};

use crate::engine::{CapacitySnapshot, Task};
use crate::spec::Protocol;

pub fn describe(cap: &CapacitySnapshot, holders: &[Task]) -> Value {
    let ports =
        |f: &dyn Fn(Protocol) -> u64| json!({"tcp": f(Protocol::Tcp), "udp": f(Protocol::Udp)});
    let registered = |p| cap.ports.registered(p);
    let reserved = |p| cap.ports.reserved(p);
    let remaining = |p| cap.ports.remaining(p);
    json!({
        "registeredCpu": cap.registered.cpu_units,
        "registeredMemory": cap.registered.memory_mib,
        "registeredPorts": ports(&registered),
        "reservedCpu": cap.reserved.cpu_units,
        "reservedMemory": cap.reserved.memory_mib,
        "reservedPorts": ports(&reserved),
        "remainingCpu": cap.remaining.cpu_units,
        "remainingMemory": cap.remaining.memory_mib,
        "remainingPorts": ports(&remaining),
        "hostPorts": cap.ports.host_ports().map(|p| p.to_string()).collect::<Vec<_>>(),
        "tasks": holders.iter().map(|t| json!({
            "taskId": t.id,
            "taskDefinition": t.task_definition,
            "lastStatus": t.last_status.as_str(),
            "cpu": t.reservation.cpu_units,
            "memory": t.reservation.memory_mib,
            "ports": t.host_ports.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "isolation": t.isolation.as_str(),
            // A microVM task's memory is its VM's and its VMM's overhead.
            "vmMemory": t.vm.map(|v| v.memory_mib),
            "vmmOverheadMemory": t.vm.map(|v| t.reservation.memory_mib.saturating_sub(v.memory_mib)),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capacity::{Books, HostPort};
    use crate::host::HostResources;

    #[test]
    fn books_and_holders_add_up() {
        let tcp = |port| HostPort {
            protocol: Protocol::Tcp,
            port,
        };
        let mut books = Books::register(
            HostResources {
                cpus: 2,
                memory_mib: 1000,
            },
            0,
            [tcp(22)],
        );
        let def = crate::spec::parse(
            r#"{"family":"web","networkMode":"host","containerDefinitions":[
            {"name":"a","image":"busybox","memory":100,"cpu":256,
             "portMappings":[{"containerPort":8080}]}]}"#,
        )
        .unwrap()
        .definition;
        let task = Task::new("t1".into(), "web:1".into(), &def, 0);
        books.admit(task.claim()).unwrap();
        let snap = CapacitySnapshot {
            registered: books.registered(),
            reserved: books.reserved(),
            remaining: books.remaining(),
            ports: books.ports().clone(),
        };
        let v = describe(&snap, &[task]);
        assert_eq!(v["remainingMemory"], 900);
        assert_eq!(v["reservedCpu"], 256);
        assert_eq!(v["registeredPorts"]["tcp"], 65534);
        assert_eq!(v["remainingPorts"]["tcp"], 65533);
        assert_eq!(v["hostPorts"], json!(["tcp/22"]));
        assert_eq!(v["tasks"][0]["ports"], json!(["tcp/8080"]));
        assert_eq!(v["tasks"][0]["memory"], 100);
        assert_eq!(v["tasks"][0]["isolation"], "container");
        assert!(v["tasks"][0]["vmMemory"].is_null());
        let vm = Task::new("t2".into(), "web:1".into(), &def, 0).in_microvm(
            crate::vm::sizing::VmSize {
                vcpus: 1,
                memory_mib: 128,
            },
            256,
        );
        let v = describe(&snap, &[vm]);
        assert_eq!(v["tasks"][0]["memory"], 384);
        assert_eq!(v["tasks"][0]["vmMemory"], 128);
        assert_eq!(v["tasks"][0]["vmmOverheadMemory"], 256);
    }
}
