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

/// A one-layer image holding one static program with three behaviours: `uname REL` says the
/// kernel's release on stdout, a line with a non-ASCII character on stderr, and exits 42 when
/// the release is REL; `ok` exits 0; `ignore-term` ignores SIGTERM and waits; `hog` allocates
/// and touches 400 MiB.
fn probe_layer(dir: &Path) -> PathBuf {
    let root = dir.join("layer");
    std::fs::create_dir_all(&root).expect("layer dir");
    let src = dir.join("probe.c");
    std::fs::write(
        &src,
        r#"#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/utsname.h>
int main(int c, char **v) {
  if (c > 2 && !strcmp(v[1], "uname")) {
    struct utsname u; uname(&u);
    printf("running on %s\n", u.release); fprintf(stderr, "pi \xcf\x80 = 3.14\n");
    return strcmp(u.release, v[2]) == 0 ? 42 : 1;
  }
  if (c > 1 && !strcmp(v[1], "ok")) return 0;
  if (c > 1 && !strcmp(v[1], "ignore-term")) { signal(SIGTERM, SIG_IGN); for (;;) pause(); }
  if (c > 1 && !strcmp(v[1], "hog")) {
    for (int i = 0; i < 400; i++) { char *p = malloc(1 << 20); if (!p) return 3; memset(p, 1, 1 << 20); }
    return 0;
  }
  return 2;
}
"#,
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

fn probe(
    name: &str,
    args: &[&str],
    memory_mib: Option<i64>,
    stop_timeout_secs: u64,
) -> VmContainer {
    let spec = libcontainer::oci_spec::runtime::Spec::default();
    let mut config = serde_json::to_value(&spec).expect("default spec");
    let mut argv = vec!["/probe"];
    argv.extend_from_slice(args);
    config["process"]["args"] = serde_json::json!(argv);
    config["process"]["terminal"] = false.into();
    config["linux"]["cgroupsPath"] = format!("/berth/{name}").into();
    if let Some(mib) = memory_mib {
        config["linux"]["resources"]["memory"] =
            serde_json::json!({ "limit": mib << 20, "swap": mib << 20 });
    }
    VmContainer {
        name: name.into(),
        config,
        layers: vec!["l0".into()],
        stop_timeout_secs,
    }
}

fn check(name: &str, mode: &str, timeout_secs: u64) -> HostMessage {
    HostMessage::Check {
        name: name.into(),
        command: vec!["/probe".into(), mode.into()],
        uid: 0,
        gid: 0,
        cwd: "/".into(),
        timeout_secs,
    }
}

/// How a container ended, what it wrote (stdout, stderr), and the results of its health checks.
type Run = (AgentMessage, String, String, Vec<Option<String>>);

/// Runs `c` and returns how it ended. With `stop`, once it runs: a ping (its usage), a health
/// check that passes and one that outlives its timeout, then the stop.
fn run(m: &mut machine::Machine, c: VmContainer, stop: bool) -> Run {
    let name = c.name.clone();
    m.send(&HostMessage::Run {
        containers: vec![c],
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let wait = Duration::from_secs(90);
    let started = m.receive(wait).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(&started, AgentMessage::Started { name: n, .. } if *n == name),
        "{started:?}"
    );
    if stop {
        for msg in [
            HostMessage::Ping { seq: 7 },
            check(&name, "ok", 30),
            check(&name, "ignore-term", 1),
        ] {
            m.send(&msg).unwrap_or_else(|e| panic!("{e}"));
        }
    }
    let (mut out, mut err, mut checks, mut pong) = (String::new(), String::new(), vec![], false);
    loop {
        match m.receive(wait).unwrap_or_else(|e| panic!("{e}")) {
            AgentMessage::Output { stderr, data, .. } => {
                if stderr { &mut err } else { &mut out }.push_str(&data)
            }
            AgentMessage::Pong { seq, usage } => {
                assert_eq!(seq, 7);
                let mine = usage.iter().find(|u| u.name == name);
                assert!(
                    mine.is_some_and(|u| u.memory_bytes > 0 && u.cpu_usec > 0),
                    "the pong carries the running container's usage: {usage:?}"
                );
                pong = true;
            }
            AgentMessage::Checked { name: n, failure } => {
                assert_eq!(n, name);
                checks.push(failure);
            }
            ended => return (ended, out, err, checks),
        }
        if pong && checks.len() == 2 {
            m.send(&HostMessage::Stop).unwrap_or_else(|e| panic!("{e}"));
            pong = false;
        }
    }
}

#[test]
fn the_agent_boots_as_pid_1_runs_stops_and_oom_kills_containers_and_powers_off() {
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
        cgroup: None,
        // As root, the VMM runs as nobody, as berth runs it as berth-vmm: it reaches the
        // kernel, disks and socket in this 0700 directory only through what is handed to it.
        run_as: if nix::unistd::geteuid().is_root() {
            berth::vm::jail::resolve("nobody").unwrap_or_else(|e| panic!("{e}"))
        } else {
            None
        },
        agent_fd: None,
    };
    let qemu = Qemu {
        binary: "qemu-system-x86_64".into(),
    };
    let (mut m, hello) = machine::boot(&qemu, &vm, Duration::from_secs(120), &mut || false)
        .unwrap_or_else(|e| panic!("{e}"));
    let AgentMessage::Hello {
        version,
        kernel,
        modules,
    } = hello
    else {
        panic!("no hello: {hello:?}");
    };
    assert_eq!(version, VERSION);
    if let Some(who) = &vm.run_as {
        let status = std::fs::read_to_string(format!("/proc/{}/status", m.pid())).unwrap();
        let uids = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        let want = who.uid.to_string();
        assert!(
            uids.split_whitespace().skip(1).all(|u| u == want),
            "the VMM runs as {} (uid {want}): {uids}",
            who.user
        );
    }
    assert_eq!(kernel, k.release, "the agent runs on the cloud kernel");
    for m in ["virtio_ring", "virtio", "virtio_mmio", "virtio_console"] {
        assert!(
            modules.iter().any(|x| x == m),
            "{m} not loaded: {modules:?}"
        );
    }
    let (ended, out, err, _) = run(
        &mut m,
        probe("uname", &["uname", &k.release], None, 30),
        false,
    );
    assert_eq!(
        ended,
        AgentMessage::Exited {
            name: "uname".into(),
            code: 42,
            oom: false
        },
        "the container saw the guest's kernel"
    );
    assert_eq!(
        out,
        format!("running on {}\n", k.release),
        "stdout, before the exit"
    );
    assert_eq!(err, "pi \u{3c0} = 3.14\n", "stderr, its UTF-8 whole");
    let (ended, ..) = run(&mut m, probe("hog", &["hog"], Some(32), 30), false);
    assert_eq!(
        ended,
        AgentMessage::Exited {
            name: "hog".into(),
            code: 137,
            oom: true
        },
        "400 MiB in a 32 MiB container is an OOM kill, read from the guest's memory.events"
    );
    let (ended, _, _, mut checks) = run(&mut m, probe("stubborn", &["ignore-term"], None, 2), true);
    checks.sort();
    assert_eq!(
        checks,
        [None, Some("timed out after 1 s".to_string())],
        "health checks run inside the container: one passes, one is killed at its timeout"
    );
    assert_eq!(
        ended,
        AgentMessage::Exited {
            name: "stubborn".into(),
            code: 137,
            oom: false
        },
        "a container ignoring SIGTERM is killed after its stop timeout (asked after a ping)"
    );
    let status = m
        .power_off(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "QEMU exited {status} after the power-off");
}
