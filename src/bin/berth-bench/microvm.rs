//! The microVM rows: a `/bin/true` task run to its exit and an idle task to RUNNING, each in a
//! microVM, beside a bare boot of the same kernel by the same VMM to an `/init` that powers
//! off at once, so what berth adds on top of the VMM (its agent, the layer disks, libcontainer
//! in the guest, the protocol) is a ratio. The container rows of the same run are the other
//! side. Runs only where berthd can run microVM tasks.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use berth::config::Config;
use berth::dbus::client::ManagerProxy;
use berth::runtime::microvm;
use berth::vm::initramfs::Initramfs;
use berth::vm::kernel;
use berth::vm::sizing::MIN_VM_MEMORY_MIB;
use berth::vm::vmm::{Qemu, VmSpec, Vmm};

use crate::launch;
use crate::stats::{median, percentile};

/// A nested, emulated boot takes minutes.
const TIMEOUT: Duration = Duration::from_secs(900);
/// A static busybox, as Debian's busybox-static installs it: the bare boot's `/init`.
const BUSYBOX: &str = "/bin/busybox";

/// Why microVM rows cannot be measured here, if they cannot.
pub fn unavailable(config: &Config) -> Option<String> {
    if let Err(e) = kernel::find(&config.vm_kernel_dir) {
        return Some(e.to_string());
    }
    let busybox = std::fs::read(BUSYBOX).unwrap_or_default();
    if !is_static_elf(&busybox) {
        return Some(format!("no static busybox at {BUSYBOX} for the bare boot's /init (apt-get install busybox-static)"));
    }
    None
}

/// An x86-64 ELF executable without a program interpreter (no `PT_INTERP` header).
fn is_static_elf(b: &[u8]) -> bool {
    let u16_at = |o: usize| {
        b.get(o..o + 2)
            .map(|x| u16::from_le_bytes([x[0], x[1]]) as usize)
    };
    let u64_at = |o: usize| {
        b.get(o..o + 8)
            .and_then(|x| x.try_into().ok())
            .map(u64::from_le_bytes)
    };
    if !b.starts_with(b"\x7fELF\x02") {
        return false;
    }
    let (Some(phoff), Some(size), Some(count)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    const PT_INTERP: u32 = 3;
    (0..count).all(|i| {
        let at = phoff as usize + i * size;
        b.get(at..at + 4)
            .and_then(|x| x.try_into().ok())
            .map(u32::from_le_bytes)
            .is_some_and(|t| t != PT_INTERP)
    })
}

/// The bare boot's initramfs: a static busybox and an `/init` that powers off.
fn bare_initramfs(work: &Path) -> anyhow::Result<PathBuf> {
    let path = work.join("bare-initramfs.cpio");
    let file = std::fs::File::create(&path).with_context(|| path.display().to_string())?;
    let mut cpio = Initramfs::new(std::io::BufWriter::new(file));
    let busybox = std::fs::read(BUSYBOX).context(BUSYBOX)?;
    cpio.dir("bin", 0o755)?;
    cpio.file("bin/busybox", 0o755, &busybox)?;
    cpio.file(
        "init",
        0o755,
        b"#!/bin/busybox sh\n/bin/busybox poweroff -f\n",
    )?;
    cpio.finish()?;
    Ok(path)
}

/// One bare boot, from the VMM's start to its exit.
fn bare_boot(config: &Config, initramfs: &Path, work: &Path) -> anyhow::Result<Duration> {
    let k = kernel::find(&config.vm_kernel_dir)?;
    let spec = VmSpec {
        kernel: k.image,
        initramfs: initramfs.to_owned(),
        vcpus: 1,
        memory_mib: MIN_VM_MEMORY_MIB,
        accel: microvm::accel(config.vm_accel),
        console_log: work.join("bare-console.log"),
        agent_socket: work.join("bare.sock"),
        disks: Vec::new(),
        cgroup: None,
        run_as: None,
        agent_fd: None,
    };
    let argv = Qemu {
        binary: config.vmm.clone(),
    }
    .command(&spec);
    let t0 = Instant::now();
    let mut child = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {}", config.vmm.display()))?;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if t0.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the bare boot did not power off within {TIMEOUT:?}; console: {}",
                spec.console_log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let took = t0.elapsed();
    if !status.success() {
        bail!(
            "the bare boot's VMM exited {status}; console: {}",
            spec.console_log.display()
        );
    }
    Ok(took)
}

/// `runs` of each microVM row, interleaved.
pub async fn figures(
    m: &ManagerProxy<'_>,
    config: &Config,
    runs: usize,
    true_ref: &str,
    idle_ref: &str,
) -> anyhow::Result<Value> {
    let work = PathBuf::from("/run/berth-bench");
    std::fs::create_dir_all(&work)?;
    let initramfs = bare_initramfs(&work)?;
    let (mut bare, mut to_exit, mut to_running) = (vec![], vec![], vec![]);
    let mut vmm_mib = vec![];
    let tree = berth::cgroup::CgroupTree::new(Path::new("/sys/fs/cgroup"), &config.slice);
    for i in 0..runs {
        crate::progress(&format!("microVM {} of {runs}: bare boot", i + 1));
        bare.push(crate::ms(bare_boot(config, &initramfs, &work)?));
        crate::progress(&format!(
            "microVM {} of {runs}: /bin/true to its exit",
            i + 1
        ));
        let r = launch::api_with(m, true_ref, "STOPPED", Some("microvm"), TIMEOUT).await?;
        launch::exited_zero(m, &r.task_id).await?;
        to_exit.extend(r.to_stopped.map(crate::ms));
        crate::progress(&format!(
            "microVM {} of {runs}: idle task to RUNNING",
            i + 1
        ));
        let r = launch::api_with(m, idle_ref, "RUNNING", Some("microvm"), TIMEOUT).await?;
        // What the VMM holds with the idle task's guest: the figure vm_overhead_mib is set from.
        let vmm = tree.task(&r.task_id).join("vmm/memory.current");
        if let Some(bytes) = std::fs::read_to_string(&vmm)
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
        {
            vmm_mib.push(bytes / (1024.0 * 1024.0));
        }
        crate::fleet::stop(m, std::slice::from_ref(&r.task_id)).await?;
        match r.to_running {
            Some(t) => to_running.push(crate::ms(t)),
            None => bail!("microVM task {} stopped before it ran", r.task_id),
        }
    }
    let summary = |v: &[f64]| json!({"median": median(v), "p90": percentile(v, 90.0), "runs": v});
    let ratio = match (median(&to_exit), median(&bare)) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    Ok(json!({
        "bare_boot_ms": summary(&bare),
        "to_exit_ms": summary(&to_exit),
        "to_running_ms": summary(&to_running),
        "vmm_memory_mib": summary(&vmm_mib),
        // The idle task's few MiB round up to the smallest VM.
        "guest_memory_mib": MIN_VM_MEMORY_MIB,
        "vm_overhead_mib": config.vm_overhead_mib,
        "exit_vs_bare_boot": ratio,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_executable_is_not_static() {
        // This test binary is dynamically linked; a text file is no ELF at all.
        let me = std::fs::read("/proc/self/exe").unwrap();
        assert!(!is_static_elf(&me));
        assert!(!is_static_elf(b"#!/bin/sh\n"));
    }
}
