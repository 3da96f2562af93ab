//! The microVM backend's parts (issue 10, being built): the guest kernel and its modules, the
//! agent's initramfs, the VMM seam (QEMU `-M microvm`), the host–agent protocol, the agent that
//! runs as PID 1 in the guest, and a running machine as the host sees it. Not yet behind the
//! runtime seam: no task runs in a microVM yet.

pub mod agent;
pub mod disks;
pub mod guest;
pub mod image;
pub mod initramfs;
pub mod kernel;
pub mod machine;
pub mod output;
pub mod probes;
pub mod protocol;
pub mod sizing;
pub mod vmm;
