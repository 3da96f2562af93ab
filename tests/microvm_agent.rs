//! berth's agent boots as PID 1 in a real QEMU microvm with Debian's cloud kernel, loads the
//! modules from the initramfs berth built, finds its port, and greets the host over the
//! versioned protocol; runs a container with libcontainer inside the guest, its root an
//! overlay on a read-only layer disk; told to power off, it does, and QEMU exits. One boot
//! checks all of it. Runs on the development host itself (a microVM needs no cgroup v2 or
//! systemd there), under TCG.
//!
//! Needs `qemu-system-x86_64` (tests/vm/install-host-deps) and the guest kernel in
//! `$BERTH_GUEST_KERNEL` (default `~/.cache/berth/guest-kernel`): `packaging/fetch-guest-kernel
//! DIR` puts it there, and tests/all runs it first.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use berth::vm::image::{self, AgentImage};
use berth::vm::kernel;
use berth::vm::machine;
use berth::vm::protocol::{AgentMessage, HostMessage, VmContainer, VERSION};
use berth::vm::vmm::{tsc_khz, Accel, Disk, Qemu, VmSpec};

fn kernel_dir() -> PathBuf {
    std::env::var_os("BERTH_GUEST_KERNEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/berth/guest-kernel")
        })
}

/// A one-layer image: a static program that exits 42 when `uname -r` is its argument.
fn probe_layer(dir: &Path) -> PathBuf {
    let root = dir.join("layer");
    std::fs::create_dir_all(&root).expect("layer dir");
    let src = dir.join("probe.c");
    std::fs::write(
        &src,
        "#include <string.h>\n#include <sys/utsname.h>\n\
         int main(int c, char **v) { struct utsname u; uname(&u);\n\
         return c > 1 && strcmp(u.release, v[1]) == 0 ? 42 : 1; }\n",
    )
    .expect("probe.c");
    let built = Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(root.join("probe"))
        .arg(&src)
        .status()
        .expect("gcc");
    assert!(built.success(), "gcc -static probe.c failed");
    let img = dir.join("layer.ext4");
    let made = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-O", "^has_journal", "-d"])
        .arg(&root)
        .arg(&img)
        .arg("16M")
        .stdout(std::process::Stdio::null())
        .status()
        .expect("mkfs.ext4");
    assert!(made.success(), "mkfs.ext4 -d failed");
    img
}

fn probe_config(release: &str) -> serde_json::Value {
    let spec = libcontainer::oci_spec::runtime::Spec::default();
    let mut config = serde_json::to_value(&spec).expect("default spec");
    config["process"]["args"] = serde_json::json!(["/probe", release]);
    config["process"]["terminal"] = false.into();
    config["linux"]["cgroupsPath"] = "/berth/probe".into();
    config
}

#[test]
fn the_agent_boots_as_pid_1_runs_a_container_on_the_guest_kernel_and_powers_off() {
    let k = kernel::find(&kernel_dir()).unwrap_or_else(|e| panic!("{e}"));
    let work = tempfile::tempdir().expect("tempdir");
    let agent = PathBuf::from(env!("CARGO_BIN_EXE_berth-agent"));
    let initramfs = image::cached(
        &AgentImage {
            agent: &agent,
            kernel: &k,
            modules: &["virtio_mmio", "virtio_console", "virtio_blk", "overlay"],
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
        disks: vec![Disk {
            path: probe_layer(work.path()),
            serial: "l0".into(),
            read_only: true,
        }],
    };
    let qemu = Qemu {
        binary: "qemu-system-x86_64".into(),
    };
    let (mut m, hello) =
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
    m.send(&HostMessage::Run {
        containers: vec![VmContainer {
            name: "probe".into(),
            config: probe_config(&k.release),
            layers: vec!["l0".into()],
        }],
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let wait = Duration::from_secs(60);
    let started = m.receive(wait).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(&started, AgentMessage::Started { name, .. } if name == "probe"),
        "{started:?}"
    );
    let exited = m.receive(wait).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        exited,
        AgentMessage::Exited {
            name: "probe".into(),
            code: 42
        },
        "the container saw the guest's kernel"
    );
    let status = m
        .power_off(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "QEMU exited {status} after the power-off");
}
