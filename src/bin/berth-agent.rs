//! berth-agent: PID 1 inside a berth microVM (the `/init` of the initramfs berth builds).
//! Refuses to run anywhere else: as PID 1 it mounts filesystems and powers the machine off.

fn main() {
    if std::process::id() != 1 {
        eprintln!(
            "berth-agent runs as PID 1 inside a berth microVM (berth builds its initramfs); \
             it is not for use on a host"
        );
        std::process::exit(2);
    }
    berth::vm::agent::run()
}
