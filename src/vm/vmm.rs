//! The VMM seam: what berth asks of a virtual machine monitor (boot this kernel and initramfs
//! with this much CPU and memory, a console file, an agent channel at this socket), and QEMU's
//! `-M microvm` answering it. Firecracker or Cloud Hypervisor plug in here on real hosts; berth
//! never implements a VMM.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The name of the agent's virtio-serial port, which the agent looks for in sysfs.
pub const AGENT_PORT: &str = "org.berth.agent";

/// How the VMM runs guest code.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Accel {
    Kvm,
    /// Software emulation. The guest kernel must be told the TSC frequency: calibrating it
    /// under TCG hangs some boots.
    Tcg {
        tsc_khz: u64,
    },
}

/// One microVM to boot.
#[derive(Debug, Clone, PartialEq)]
pub struct VmSpec {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub accel: Accel,
    /// The guest's serial console, written to this file.
    pub console_log: PathBuf,
    /// The agent's channel: a Unix socket the VMM listens on.
    pub agent_socket: PathBuf,
    /// Block devices, found in the guest by their serial.
    pub disks: Vec<Disk>,
    /// The cgroup the VMM runs in (its `cgroup.procs`, joined before exec).
    pub cgroup: Option<PathBuf>,
    /// The unprivileged user the VMM runs as; `None`: root.
    pub run_as: Option<super::jail::RunAs>,
    /// The agent's socket as an inherited, listening descriptor (a VMM that runs as another
    /// user cannot create the socket in berth's runtime directory).
    pub agent_fd: Option<i32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Disk {
    pub path: PathBuf,
    pub serial: String,
    pub read_only: bool,
}

/// A VMM's command line for a spec.
pub trait Vmm {
    fn name(&self) -> &str;
    fn command(&self, vm: &VmSpec) -> Vec<OsString>;
}

/// The `-sandbox` QEMU runs under (as libvirt asks for it).
pub const SANDBOX: &str = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

/// QEMU with the microvm machine: no PCI, no firmware to speak of, virtio-mmio devices.
#[derive(Debug, Clone)]
pub struct Qemu {
    pub binary: PathBuf,
}

impl Qemu {
    /// The guest kernel's command line. ACPI stays on: it is how the kernel finds the
    /// virtio-mmio devices (Debian's kernels ignore `virtio_mmio.device=`). `panic=-1` turns a
    /// dead agent into a VM that exits instead of one that hangs. `loglevel=4` lets the
    /// kernel's errors through to the console log, an OOM kill's one line among them.
    pub fn kernel_cmdline(vm: &VmSpec) -> String {
        let mut c = String::from("console=ttyS0 panic=-1 quiet loglevel=4 rdinit=/init");
        if let Accel::Tcg { tsc_khz } = vm.accel {
            c.push_str(&format!(" tsc_early_khz={tsc_khz}"));
        }
        c
    }
}

impl Vmm for Qemu {
    fn name(&self) -> &str {
        "qemu-system-x86_64 -M microvm"
    }

    fn command(&self, vm: &VmSpec) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![self.binary.clone().into()];
        let mut push = |s: &str| a.push(s.into());
        push("-M");
        push("microvm,acpi=on");
        match vm.accel {
            Accel::Kvm => {
                push("-accel");
                push("kvm");
                push("-cpu");
                push("host");
            }
            Accel::Tcg { .. } => {
                push("-accel");
                // TCG's translation cache defaults to 1 GiB; bounded, the VMM fits the
                // task's memory.max beside its guest.
                push("tcg,thread=multi,tb-size=128");
                push("-cpu");
                push("max");
            }
        }
        for s in [
            "-smp".to_string(),
            vm.vcpus.max(1).to_string(),
            "-m".into(),
            format!("{}M", vm.memory_mib),
            "-nodefaults".into(),
            "-no-user-config".into(),
            "-nographic".into(),
            "-no-reboot".into(),
            // QEMU's own seccomp filter: the guest runs the task's code, and a VMM it breaks
            // into can neither exec, nor gain privileges, nor use obsolete system calls.
            "-sandbox".into(),
            SANDBOX.into(),
            "-global".into(),
            "virtio-mmio.force-legacy=false".into(),
            "-kernel".into(),
        ] {
            a.push(s.into());
        }
        a.push(vm.kernel.clone().into());
        a.push("-initrd".into());
        a.push(vm.initramfs.clone().into());
        a.push("-append".into());
        a.push(Self::kernel_cmdline(vm).into());
        a.push("-chardev".into());
        // Appended to, so the shim can empty a console the guest floods.
        a.push(chardev("file", "console", &vm.console_log, ",append=on"));
        a.push("-serial".into());
        a.push("chardev:console".into());
        a.push("-chardev".into());
        a.push(match vm.agent_fd {
            Some(fd) => format!("socket,id=agent,fd={fd},server=on,wait=off").into(),
            None => chardev("socket", "agent", &vm.agent_socket, ",server=on,wait=off"),
        });
        a.push("-device".into());
        a.push("virtio-serial-device,max_ports=2".into());
        a.push("-device".into());
        a.push(format!("virtserialport,chardev=agent,name={AGENT_PORT}").into());
        for (i, d) in vm.disks.iter().enumerate() {
            let path = d.path.to_string_lossy().replace(',', ",,");
            let ro = if d.read_only { ",readonly=on" } else { "" };
            a.push("-drive".into());
            a.push(format!("id=disk{i},file={path},format=raw,if=none{ro}").into());
            a.push("-device".into());
            a.push(format!("virtio-blk-device,drive=disk{i},serial={}", d.serial).into());
        }
        a
    }
}

/// A `-chardev` value with a path; QEMU splits options at commas, which it escapes by doubling.
fn chardev(kind: &str, id: &str, path: &Path, rest: &str) -> OsString {
    let path = path.to_string_lossy().replace(',', ",,");
    format!("{kind},id={id},path={path}{rest}").into()
}

/// The host CPU's frequency in kHz from `/proc/cpuinfo` ("cpu MHz"), for `tsc_early_khz`.
pub fn tsc_khz(cpuinfo: &str) -> Option<u64> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "cpu MHz")
            .then(|| v.trim().parse::<f64>().ok())
            .flatten()
            .map(|mhz| (mhz * 1000.0) as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(accel: Accel) -> VmSpec {
        VmSpec {
            kernel: "/k/vmlinuz".into(),
            initramfs: "/c/agent.cpio".into(),
            vcpus: 2,
            memory_mib: 256,
            accel,
            console_log: "/t/a,b/console.log".into(),
            agent_socket: "/t/agent.sock".into(),
            disks: vec![Disk {
                path: "/l/ab.ext4".into(),
                serial: "l0".into(),
                read_only: true,
            }],
            cgroup: None,
            run_as: None,
            agent_fd: None,
        }
    }

    fn args(vm: &VmSpec) -> Vec<String> {
        Qemu {
            binary: "/usr/bin/qemu-system-x86_64".into(),
        }
        .command(vm)
        .into_iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect()
    }

    fn after<'a>(a: &'a [String], flag: &str) -> Vec<&'a str> {
        a.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn a_tcg_microvm_boots_the_kernel_with_its_tsc_and_the_agent_port() {
        let a = args(&spec(Accel::Tcg { tsc_khz: 2_596_146 }));
        assert_eq!(after(&a, "-M"), ["microvm,acpi=on"]);
        assert_eq!(after(&a, "-accel"), ["tcg,thread=multi,tb-size=128"]);
        assert_eq!(after(&a, "-smp"), ["2"]);
        assert_eq!(after(&a, "-m"), ["256M"]);
        assert_eq!(after(&a, "-kernel"), ["/k/vmlinuz"]);
        assert_eq!(after(&a, "-initrd"), ["/c/agent.cpio"]);
        let cmdline = after(&a, "-append")[0];
        assert!(cmdline.contains("tsc_early_khz=2596146"), "{cmdline}");
        assert!(cmdline.contains("panic=-1"), "{cmdline}");
        assert!(a.contains(&"-no-reboot".to_string()));
        assert_eq!(after(&a, "-sandbox"), [SANDBOX]);
        assert!(SANDBOX.contains("spawn=deny") && SANDBOX.contains("elevateprivileges=deny"));
        assert!(a.contains(&"virtio-mmio.force-legacy=false".to_string()));
        assert_eq!(
            after(&a, "-chardev"),
            [
                "file,id=console,path=/t/a,,b/console.log,append=on",
                "socket,id=agent,path=/t/agent.sock,server=on,wait=off"
            ]
        );
        assert!(after(&a, "-device").contains(&"virtserialport,chardev=agent,name=org.berth.agent"));
        assert_eq!(
            after(&a, "-drive"),
            ["id=disk0,file=/l/ab.ext4,format=raw,if=none,readonly=on"]
        );
        assert!(after(&a, "-device").contains(&"virtio-blk-device,drive=disk0,serial=l0"));
    }

    #[test]
    fn a_handed_agent_socket_is_named_by_its_descriptor() {
        let mut vm = spec(Accel::Kvm);
        vm.agent_fd = Some(7);
        let a = args(&vm);
        assert_eq!(
            after(&a, "-chardev")[1],
            "socket,id=agent,fd=7,server=on,wait=off"
        );
    }

    #[test]
    fn kvm_needs_no_tsc_hint() {
        let a = args(&spec(Accel::Kvm));
        assert_eq!(after(&a, "-accel"), ["kvm"]);
        assert_eq!(after(&a, "-cpu"), ["host"]);
        assert!(!after(&a, "-append")[0].contains("tsc_early_khz"));
    }

    #[test]
    fn the_tsc_frequency_comes_from_cpuinfo() {
        let info = "processor\t: 0\nmodel name\t: x\ncpu MHz\t\t: 2596.146\ncache size\t: 1 KB\n";
        assert_eq!(tsc_khz(info), Some(2_596_146));
        assert_eq!(tsc_khz("processor : 0\n"), None);
    }
}
