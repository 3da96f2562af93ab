//! The microVM backend's parts: the guest kernel and its modules, the agent's initramfs, the
//! VMM seam (QEMU `-M microvm`) and the unprivileged user it runs as, the host–agent protocol,
//! the agent that runs as PID 1 in the guest, and a running machine as the host sees it. The
//! shim's `vm` module puts them behind the runtime seam.

pub mod agent;
pub mod disks;
pub mod guest;
pub mod image;
pub mod initramfs;
pub mod jail;
pub mod kernel;
pub mod machine;
pub mod output;
pub mod probes;
pub mod protocol;
pub mod sizing;
pub mod vmm;
