//! The default seccomp filter, Docker's intent in a short form: every system call is allowed
//! but those that reach past the container (kernel modules, keyrings, clocks, reboot, mounts
//! and new namespaces, tracing other processes, BPF), each refused with EPERM unless the
//! container holds the capability that would make it legitimate. `privileged` has no filter.

use serde_json::{json, Value};

use crate::spec::sandbox::Sandbox;

/// (system calls, the capability that lets them through, or none: always refused).
const GATED: &[(&[&str], Option<&str>)] = &[
    (&["add_key", "keyctl", "request_key"], None),
    (&["userfaultfd"], None),
    (
        &["lookup_dcookie", "uselib", "ustat", "sysfs", "_sysctl"],
        None,
    ),
    (&["acct"], Some("SYS_PACCT")),
    (&["bpf"], Some("SYS_ADMIN")),
    (&["perf_event_open"], Some("PERFMON")),
    (
        &["clock_adjtime", "clock_settime", "settimeofday"],
        Some("SYS_TIME"),
    ),
    (
        &[
            "init_module",
            "finit_module",
            "delete_module",
            "create_module",
            "query_module",
            "get_kernel_syms",
        ],
        Some("SYS_MODULE"),
    ),
    (
        &["kexec_load", "kexec_file_load", "reboot"],
        Some("SYS_BOOT"),
    ),
    (&["iopl", "ioperm"], Some("SYS_RAWIO")),
    (&["open_by_handle_at"], Some("DAC_READ_SEARCH")),
    (
        &[
            "mount",
            "umount2",
            "pivot_root",
            "unshare",
            "setns",
            "name_to_handle_at",
            "quotactl",
            "swapon",
            "swapoff",
            "fsopen",
            "fsmount",
            "fsconfig",
            "move_mount",
            "open_tree",
        ],
        Some("SYS_ADMIN"),
    ),
    (
        &["kcmp", "process_vm_readv", "process_vm_writev", "ptrace"],
        Some("SYS_PTRACE"),
    ),
    (
        &["get_mempolicy", "set_mempolicy", "mbind", "move_pages"],
        Some("SYS_NICE"),
    ),
];

/// Namespace flags of clone(2): a new namespace needs SYS_ADMIN, as `unshare` does.
const CLONE_NAMESPACES: [u64; 7] = [
    0x0002_0000, // CLONE_NEWNS
    0x0200_0000, // CLONE_NEWCGROUP
    0x0400_0000, // CLONE_NEWUTS
    0x0800_0000, // CLONE_NEWIPC
    0x1000_0000, // CLONE_NEWUSER
    0x2000_0000, // CLONE_NEWPID
    0x4000_0000, // CLONE_NEWNET
];

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

fn architectures() -> Value {
    match std::env::consts::ARCH {
        "x86_64" => json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
        "aarch64" => json!(["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]),
        _ => json!([]),
    }
}

/// `linux.seccomp` for the container with `caps` (names with `CAP_`); `None` when privileged
/// or asked `seccomp:unconfined`.
pub fn profile(s: &Sandbox, caps: &[String]) -> Option<Value> {
    if s.privileged || s.seccomp_unconfined {
        return None;
    }
    let holds = |cap: &str| caps.iter().any(|c| c.strip_prefix("CAP_") == Some(cap));
    let mut denied: Vec<&str> = GATED
        .iter()
        .filter(|(_, gate)| !gate.is_some_and(holds))
        .flat_map(|(calls, _)| calls.iter().copied())
        .collect();
    denied.sort_unstable();
    let mut rules = vec![json!({"names": denied, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM})];
    if !holds("SYS_ADMIN") {
        // clone3's flags sit in memory seccomp cannot read: ENOSYS sends libc back to clone.
        rules.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS}));
        for flag in CLONE_NAMESPACES {
            rules.push(json!({"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM,
                "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}]}));
        }
    }
    Some(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": architectures(),
        "syscalls": rules,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(p: &Value) -> Vec<String> {
        serde_json::from_value(p["syscalls"][0]["names"].clone()).unwrap()
    }

    #[test]
    fn a_capability_lets_its_calls_through_and_privileged_has_no_filter() {
        let s = Sandbox::default();
        let p = profile(&s, &["CAP_CHOWN".into()]).unwrap();
        let d = denied(&p);
        assert!(d.contains(&"mount".to_string()) && d.contains(&"keyctl".to_string()));
        assert!(p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["names"][0] == "clone3"));
        let p = profile(&s, &["CAP_SYS_ADMIN".into()]).unwrap();
        assert!(!denied(&p).contains(&"mount".to_string()));
        assert!(
            denied(&p).contains(&"keyctl".to_string()),
            "keyrings stay closed"
        );
        assert_eq!(
            p["syscalls"].as_array().unwrap().len(),
            1,
            "no clone rules with SYS_ADMIN"
        );
        let privileged = Sandbox {
            privileged: true,
            ..Sandbox::default()
        };
        assert_eq!(profile(&privileged, &[]), None);
    }

    #[test]
    fn the_profile_is_one_libcontainer_reads() {
        let p = profile(&Sandbox::default(), &[]).unwrap();
        let parsed: Result<libcontainer::oci_spec::runtime::LinuxSeccomp, _> =
            serde_json::from_value(p);
        assert!(parsed.is_ok(), "{parsed:?}");
    }
}
