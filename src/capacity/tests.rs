use super::*;
use crate::spec::Protocol;

fn host(cpus: u32, memory_mib: u64) -> HostResources {
    HostResources { cpus, memory_mib }
}

fn tcp(port: u16) -> HostPort {
    HostPort {
        protocol: Protocol::Tcp,
        port,
    }
}

fn claim<'a>(holder: &'a str, cpu_units: u64, memory_mib: u64, ports: &'a [HostPort]) -> Claim<'a> {
    Claim {
        holder,
        resources: Resources {
            cpu_units,
            memory_mib,
        },
        ports,
        addresses: Vec::new(),
    }
}

#[test]
fn registration_counts_units_and_subtracts_the_reserve() {
    let b = Books::register(host(2, 1967), 256, []);
    assert_eq!(
        b.registered(),
        Resources {
            cpu_units: 2048,
            memory_mib: 1711
        }
    );
    assert_eq!(b.remaining(), b.registered());
}

#[test]
fn admission_refuses_what_does_not_fit_and_release_gives_back() {
    let mut b = Books::register(host(1, 1256), 256, []);
    let t = claim("a", 512, 600, &[]);
    b.admit(t.clone()).unwrap();
    let e = b.admit(claim("b", 512, 600, &[])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "RESOURCE:MEMORY: needs 600 MiB, 400 MiB of 1000 MiB remain"
    );
    b.admit(claim("c", 512, 100, &[])).unwrap();
    assert_eq!(
        b.admit(claim("d", 1, 0, &[])).unwrap_err().to_string(),
        "RESOURCE:CPU: needs 1 CPU units, 0 of 1024 remain"
    );
    b.release(t.clone());
    assert_eq!(b.remaining().memory_mib, 900);
}

#[test]
fn reserve_larger_than_memory_leaves_zero() {
    let b = Books::register(host(1, 100), 256, []);
    assert_eq!(b.registered().memory_mib, 0);
}

#[test]
fn a_held_port_is_refused_to_the_next_task_until_released() {
    let mut b = Books::register(host(2, 4096), 0, [tcp(22)]);
    let first = [tcp(8080)];
    b.admit(claim("t1", 0, 10, &first)).unwrap();
    let e = b.admit(claim("t2", 0, 10, &[tcp(8080)])).unwrap_err();
    assert_eq!(e.to_string(), "RESOURCE:PORTS: tcp/8080 held by task t1");
    // A refusal takes nothing: memory and cpu untouched.
    assert_eq!(b.reserved().memory_mib, 10);
    // The same number over udp is another port.
    let udp = [HostPort {
        protocol: Protocol::Udp,
        port: 8080,
    }];
    b.admit(claim("t3", 0, 10, &udp)).unwrap();
    b.release(claim("t1", 0, 10, &first));
    b.admit(claim("t2", 0, 10, &[tcp(8080)])).unwrap();
    assert_eq!(b.ports().reserved(Protocol::Tcp), 1);
    assert_eq!(b.ports().reserved(Protocol::Udp), 1);
}

#[test]
fn host_ports_are_refused_and_not_registered() {
    let mut b = Books::register(host(1, 1024), 0, [tcp(22), tcp(9580)]);
    let e = b.admit(claim("t", 0, 0, &[tcp(9580)])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "RESOURCE:PORTS: tcp/9580 reserved for the host (reserved_ports in berthd.toml)"
    );
    assert_eq!(b.ports().registered(Protocol::Tcp), 65533);
    assert_eq!(b.ports().registered(Protocol::Udp), 65535);
}

#[test]
fn releasing_a_stale_claim_leaves_a_later_holder_alone() {
    let mut b = Books::register(host(1, 1024), 0, []);
    b.force(claim("new", 0, 0, &[tcp(80)]));
    b.release(claim("old", 0, 0, &[tcp(80)]));
    assert_eq!(
        b.ports().conflict(&[tcp(80)]),
        Some((tcp(80), PortHolder::Task("new".into())))
    );
}

#[test]
fn new_work_is_refused_below_the_free_disk_floor_naming_the_numbers() {
    assert!(disk("/var/lib/berth", Some(200 << 20), 100).is_ok());
    assert!(
        disk("/var/lib/berth", None, 100).is_ok(),
        "unknown space refuses nothing"
    );
    let e = disk("/var/lib/berth", Some(3 << 20), 100).unwrap_err();
    assert_eq!(
        e.to_string(),
        "RESOURCE:DISK: the state directory /var/lib/berth has 3 MiB free, under the 100 MiB berth keeps free; free space there, or lower min_free_disk_mib"
    );
}
