//! berth's agent boots as PID 1 in a real QEMU microvm with Debian's cloud kernel, loads the
//! virtio modules from the initramfs berth built, finds its port, and greets the host over the
//! versioned protocol; told to power off, it does, and QEMU exits. Runs on the development
//! host itself (a microVM needs no cgroup v2 or systemd there), under TCG.
//!
//! Needs `qemu-system-x86_64` (tests/vm/install-host-deps) and the guest kernel in
//! `$BERTH_GUEST_KERNEL` (default `~/.cache/berth/guest-kernel`): `packaging/fetch-guest-kernel
//! DIR` puts it there, and tests/all runs it first.

use std::path::PathBuf;
use std::time::Duration;

use berth::vm::image::{self, AgentImage};
use berth::vm::kernel;
use berth::vm::machine;
use berth::vm::protocol::{AgentMessage, VERSION};
use berth::vm::vmm::{tsc_khz, Accel, Qemu, VmSpec};

fn kernel_dir() -> PathBuf {
    std::env::var_os("BERTH_GUEST_KERNEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/berth/guest-kernel")
        })
}

#[test]
fn the_agent_boots_as_pid_1_greets_the_host_and_powers_off() {
    let k = kernel::find(&kernel_dir()).unwrap_or_else(|e| panic!("{e}"));
    let work = tempfile::tempdir().expect("tempdir");
    let agent = PathBuf::from(env!("CARGO_BIN_EXE_berth-agent"));
    let initramfs = image::cached(
        &AgentImage {
            agent: &agent,
            kernel: &k,
            modules: &["virtio_mmio", "virtio_console"],
        },
        &work.path().join("cache"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let vm = VmSpec {
        kernel: k.image.clone(),
        initramfs,
        vcpus: 1,
        memory_mib: 256,
        accel: Accel::Tcg {
            tsc_khz: tsc_khz(&cpuinfo).unwrap_or(2_000_000),
        },
        console_log: work.path().join("console.log"),
        agent_socket: work.path().join("agent.sock"),
    };
    let qemu = Qemu {
        binary: "qemu-system-x86_64".into(),
    };
    let (m, hello) =
        machine::boot(&qemu, &vm, Duration::from_secs(120)).unwrap_or_else(|e| panic!("{e}"));
    let AgentMessage::Hello {
        version,
        kernel,
        modules,
    } = hello
    else {
        panic!("no hello: {hello:?}");
    };
    assert_eq!(version, VERSION);
    assert_eq!(kernel, k.release, "the agent runs on the cloud kernel");
    for m in ["virtio_ring", "virtio", "virtio_mmio", "virtio_console"] {
        assert!(
            modules.iter().any(|x| x == m),
            "{m} not loaded: {modules:?}"
        );
    }
    let status = m
        .power_off(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "QEMU exited {status} after the power-off");
}
