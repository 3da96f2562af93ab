//! The microVM side of the task backend: whether this host can run microVM tasks (kernel,
//! VMM, agent), and the VM part of such a task's plan. The shim then boots the VM in the
//! task's cgroup and relays what the agent reports into the same status files as container
//! tasks, so nothing above the runtime tells the two apart.

use std::path::{Path, PathBuf};

use super::plan::VmPlan;
use crate::config::VmAccel;
use crate::vm::sizing::VmSize;
use crate::vm::vmm::{tsc_khz, Accel};
use crate::vm::{jail, kernel};

/// The daemon's microVM settings.
#[derive(Debug, Clone)]
pub struct VmSettings {
    pub kernel_dir: PathBuf,
    pub vmm: PathBuf,
    pub accel: VmAccel,
    pub boot_timeout_secs: u64,
    pub agent_timeout_secs: u64,
    /// `berth-agent`, beside berthd.
    pub agent: PathBuf,
    /// `<state_dir>/vm`: the agent's initramfs and the layers' disks.
    pub cache_dir: PathBuf,
    /// `vmm_user`: who the VMM runs as.
    pub vmm_user: String,
}

/// Why this host cannot run a microVM task now, with the fix; `Ok` when it can.
pub fn check(s: &VmSettings) -> Result<(), String> {
    kernel::find(&s.kernel_dir).map_err(|e| e.to_string())?;
    if !s.vmm.is_file() {
        return Err(format!(
            "no VMM at {}: install QEMU (apt-get install --no-install-recommends \
             qemu-system-x86) or set vmm in berthd's config",
            s.vmm.display()
        ));
    }
    if !s.agent.is_file() {
        return Err(format!(
            "no berth-agent at {}: install it beside berthd",
            s.agent.display()
        ));
    }
    if s.accel == VmAccel::Kvm && !kvm_usable() {
        return Err("vm_accel is kvm but /dev/kvm cannot be opened read-write".into());
    }
    jail::resolve(&s.vmm_user).map(|_| ())
}

fn kvm_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// The accelerator for a VM now: KVM where asked or (with `auto`) where `/dev/kvm` opens,
/// else emulation told the host's TSC frequency.
pub fn accel(setting: VmAccel) -> Accel {
    let tcg = || Accel::Tcg {
        tsc_khz: std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| tsc_khz(&c))
            .unwrap_or(2_000_000),
    };
    match setting {
        VmAccel::Kvm => Accel::Kvm,
        VmAccel::Tcg => tcg(),
        VmAccel::Auto if kvm_usable() => Accel::Kvm,
        VmAccel::Auto => {
            tracing::warn!("no usable /dev/kvm: the microVM runs emulated (TCG), slowly");
            tcg()
        }
    }
}

/// The VM part of a task's plan; an error names a `vmm_user` that does not exist.
pub fn plan(
    s: &VmSettings,
    size: &VmSize,
    runtime_dir: &Path,
    task_id: &str,
) -> Result<VmPlan, String> {
    Ok(VmPlan {
        vmm: s.vmm.clone(),
        accel: accel(s.accel),
        kernel_dir: s.kernel_dir.clone(),
        agent: s.agent.clone(),
        cache_dir: s.cache_dir.clone(),
        vcpus: size.vcpus,
        memory_mib: size.memory_mib,
        boot_timeout_secs: s.boot_timeout_secs,
        agent_timeout_secs: s.agent_timeout_secs,
        socket: runtime_dir.join(format!("{}.vm", &task_id[..12.min(task_id.len())])),
        run_as: jail::resolve(&s.vmm_user)?,
    })
}

/// What a microVM's agent reports of a container, as berth shows a cgroup.
pub fn guest_stats(u: &crate::vm::protocol::Usage) -> crate::cgroup::stats::CgroupStats {
    crate::cgroup::stats::CgroupStats {
        cpu: crate::cgroup::stats::CpuStat {
            usage_usec: u.cpu_usec,
            ..Default::default()
        },
        memory_bytes: u.memory_bytes,
        working_set_bytes: u.memory_bytes,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path) -> VmSettings {
        VmSettings {
            kernel_dir: dir.join("kernel"),
            vmm: dir.join("qemu"),
            accel: VmAccel::Tcg,
            boot_timeout_secs: 300,
            agent_timeout_secs: 60,
            agent: dir.join("berth-agent"),
            cache_dir: dir.join("vm"),
            vmm_user: "root".into(),
        }
    }

    #[test]
    fn a_host_without_a_kernel_is_told_where_and_how() {
        let d = tempfile::tempdir().unwrap();
        let e = check(&settings(d.path())).unwrap_err();
        assert!(e.contains("fetch-guest-kernel"), "{e}");
        assert!(
            e.contains(&d.path().join("kernel").display().to_string()),
            "{e}"
        );
    }

    #[test]
    fn a_host_without_qemu_is_told_what_to_install() {
        let d = tempfile::tempdir().unwrap();
        let k = d.path().join("kernel");
        std::fs::create_dir_all(k.join("boot")).unwrap();
        std::fs::create_dir_all(k.join("lib/modules/6.1-cloud")).unwrap();
        std::fs::write(k.join("boot/vmlinuz-6.1-cloud"), b"").unwrap();
        let e = check(&settings(d.path())).unwrap_err();
        assert!(e.contains("qemu-system-x86"), "{e}");
    }

    #[test]
    fn the_socket_name_is_short_and_the_size_carried() {
        let d = tempfile::tempdir().unwrap();
        let p = plan(
            &settings(d.path()),
            &VmSize {
                vcpus: 2,
                memory_mib: 512,
            },
            Path::new("/run/berth"),
            "0123456789abcdef0123",
        )
        .unwrap();
        assert_eq!(p.run_as, None, "vmm_user root: the VMM stays root");
        assert_eq!(p.socket, PathBuf::from("/run/berth/0123456789ab.vm"));
        assert_eq!((p.vcpus, p.memory_mib), (2, 512));
        assert!(matches!(p.accel, Accel::Tcg { .. }));
    }

    #[test]
    fn a_missing_vmm_user_is_refused_at_check_and_plan() {
        let d = tempfile::tempdir().unwrap();
        let mut s = settings(d.path());
        s.vmm_user = "berth-no-such-user".into();
        let size = VmSize {
            vcpus: 1,
            memory_mib: 128,
        };
        let e = plan(&s, &size, Path::new("/run/berth"), "0123456789ab").unwrap_err();
        assert!(
            e.contains("vmm_user berth-no-such-user: no such user"),
            "{e}"
        );
    }
}
