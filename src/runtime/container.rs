//! The container backend: lays out the task's directory (bundles, overlay dirs, plan), makes
//! its cgroup, and spawns the shim (`berthd shim TASK_DIR`) by fork+exec, never forking
//! containers from berthd's own threads.

use std::collections::BTreeSet;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::bundle::{self, Accounts, TaskContext};
use super::cleanup;
use super::devices;
use super::envfiles;
use super::microvm::{self, VmSettings};
use super::net;
use super::plan::{ContainerPlan, HealthPlan, Plan, DEFAULT_START_TIMEOUT_SECS, PLAN_FILE};
use super::report::StatusDir;
use super::scope::Scopes;
use super::secrets;
use super::spawn;
use super::status_watch::StatusWatch;
use super::volumes;
use super::{Launch, LaunchError, Runtime, Seen, Usage};
use crate::cgroup::{task as task_cgroup, CgroupTree, TaskLimits};
use crate::fsutil::write_atomic_private;
use crate::image::{ImageRecord, ImageStore};
use crate::network::Networks;
use crate::spec::{ContainerDefinition, NetworkMode, SharedNamespace, TaskDefinition};

/// How long a task's leftover processes get to die after SIGKILL before berth moves on.
const KILL_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// `<state_dir>/tasks`.
    pub tasks_dir: PathBuf,
    /// libcontainer's state root, on tmpfs (`/run/berth`).
    pub runtime_dir: PathBuf,
    pub pids_max: u64,
    /// The shim's binary and the words before the task directory: `berth-shim`, or
    /// `berthd shim` where berth-shim is not installed.
    pub shim_exe: PathBuf,
    pub shim_args: Vec<String>,
    /// berthd's connection to systemd, which puts each shim in its task's scope.
    pub scopes: Arc<Scopes>,
    /// A static init (tini) for containers with `initProcessEnabled`.
    pub init_binary: PathBuf,
    /// SIGTERM to SIGKILL for a container without `stopTimeout`.
    pub default_stop_timeout_secs: u64,
    /// How microVM tasks run here.
    pub vm: VmSettings,
    /// Where `secrets` are read from (`secrets_dir`); unset: none can be.
    pub secrets_dir: Option<PathBuf>,
    /// Bytes a container's log reaches before it rotates (0: never).
    pub log_max_bytes: u64,
}

#[derive(Debug)]
pub struct ContainerRuntime {
    config: RuntimeConfig,
    tree: CgroupTree,
    images: Arc<ImageStore>,
    /// Shims this berthd spawned and has not yet reaped: alive for certain, whatever a scan
    /// of /proc (racing their exec) says.
    spawned: Arc<std::sync::Mutex<BTreeSet<String>>>,
    /// Status directories under inotify, to wake the engine when a shim reports.
    watch: Option<Arc<StatusWatch>>,
    /// berth's bridge; `None` when the host has none (bridge and awsvpc tasks are refused).
    networks: Option<Arc<Networks>>,
    usage: super::usage::UsageReader,
}

pub(super) fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> LaunchError + 'a {
    move |source| LaunchError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

impl ContainerRuntime {
    pub fn new(
        config: RuntimeConfig,
        tree: CgroupTree,
        images: Arc<ImageStore>,
        networks: Option<Arc<Networks>>,
    ) -> Self {
        ContainerRuntime {
            config,
            tree,
            images,
            networks,
            usage: Default::default(),
            spawned: Arc::default(),
            watch: match StatusWatch::new() {
                Ok(w) => Some(Arc::new(w)),
                Err(e) => {
                    tracing::warn!(error = %e, "no inotify: task changes are seen at the periodic sweep");
                    None
                }
            },
        }
    }

    fn watch_status(&self, id: &str) {
        if let Some(w) = &self.watch {
            let dir = self.task_dir(id).join("status");
            if dir.is_dir() {
                w.add(id, &dir);
            }
        }
    }

    /// Ids reach here from the engine's books only; one of another shape names no directory
    /// of berth's (it maps to an empty name beneath `tasks/`, which holds no task).
    fn task_dir(&self, id: &str) -> PathBuf {
        if crate::names::is_task_id(id) {
            self.config.tasks_dir.join(id)
        } else {
            self.config.tasks_dir.join("invalid-task-id")
        }
    }

    /// The account files of the top-most layer that has them, read beneath the layer (an
    /// image's `etc/passwd -> /etc/shadow` reads nothing of the host's) and bounded in size.
    fn accounts(&self, image: &ImageRecord) -> Accounts {
        const LIMIT: u64 = 4 << 20;
        let read = |layer: &str, file: &str| {
            let dir = self.images.layer_dir(layer);
            let root = crate::beneath::open_root(&dir).ok()?;
            match crate::beneath::read_bounded(root.as_fd(), Path::new(file), LIMIT) {
                Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
                Err(crate::beneath::BeneathError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    None
                }
                Err(e) => {
                    tracing::warn!(layer, "the image's {file} is not used: {e}");
                    None
                }
            }
        };
        let find = |file: &str| {
            image
                .layers
                .iter()
                .rev()
                .find_map(|l| read(l, file))
                .unwrap_or_default()
        };
        Accounts {
            passwd: find("etc/passwd"),
            group: find("etc/group"),
        }
    }

    fn plan(&self, launch: &Launch, dir: &Path) -> Result<Plan, LaunchError> {
        let def = launch.definition;
        let host_name = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into());
        let ctx = TaskContext {
            task_id: launch.task_id,
            network_mode: def.network_mode,
            pid_mode: def.pid_mode,
            ipc_mode: def.ipc_mode,
            pids_max: self.config.pids_max,
            host_name: &host_name,
        };
        let task_cgroup = self.tree.task(launch.task_id);
        let resolvers = net::host_resolvers();
        let shared = self.config.tasks_dir.with_file_name("volumes");
        let places = volumes::prepare(def, dir, &shared)?;
        // In a microVM the containers' IPC namespace is the guest's business.
        let shm = match launch.vm {
            None => volumes::task_shm(def, dir)?,
            Some(_) => None,
        };
        let mut containers = Vec::new();
        for (i, c) in def.containers.iter().enumerate() {
            let with_files =
                secrets::merge(&envfiles::merge(c)?, self.config.secrets_dir.as_deref())?;
            let c = &with_files;
            let image = self.images.get(&c.image)?;
            // Checked at registration; checked again where it becomes a path.
            let cdir = dir
                .join("containers")
                .join(crate::names::segment("container", &c.name)?);
            let bundle_dir = cdir.join("bundle");
            std::fs::create_dir_all(&bundle_dir).map_err(io("create", &bundle_dir))?;
            let rootfs = cdir.join("rootfs");
            let cgroup = task_cgroup.join(&c.name);
            let mut cnet = net::prepare(
                self.networks.as_deref(),
                &ctx,
                def,
                c,
                launch.network,
                &resolvers,
                &cdir,
            )?;
            cnet.binds = volumes::binds(def, &c.name, &places);
            cnet.shm = shm.clone();
            cnet.devices = devices::nodes(c)?;
            cnet.init = devices::init(c, &self.config.init_binary)?;
            let config = bundle::config(
                &ctx,
                &cnet,
                c,
                &image.config,
                &self.accounts(&image),
                &rootfs,
                &self.tree.relative(&cgroup),
            )?;
            let config_path = bundle_dir.join("config.json");
            write_atomic_private(&config_path, config.to_string().as_bytes())
                .map_err(io("write", &config_path))?;
            containers.push(ContainerPlan {
                name: c.name.clone(),
                container_id: format!("{}{i}", cleanup::container_id_prefix(launch.task_id)),
                essential: c.essential,
                stop_timeout_secs: c
                    .stop_timeout
                    .unwrap_or(self.config.default_stop_timeout_secs),
                bundle: bundle_dir,
                lower: image
                    .layers
                    .iter()
                    .rev()
                    .map(|l| self.images.layer_dir(l))
                    .collect(),
                upper: cdir.join("upper"),
                work: cdir.join("work"),
                rootfs,
                cgroup,
                log: dir.join("logs").join(format!("{}.log", c.name)),
                depends_on: c.depends_on.clone(),
                start_timeout_secs: c.start_timeout.unwrap_or(DEFAULT_START_TIMEOUT_SECS),
                health: health_plan(c, &config),
                cwd: config["process"]["cwd"].as_str().unwrap_or("/").to_string(),
                loopback_up: cnet.netns.is_none()
                    && (def.network_mode != NetworkMode::Host || c.sandbox.disable_networking),
            });
        }
        Ok(Plan {
            task_id: launch.task_id.to_string(),
            family: def.family.clone(),
            scope_cgroup: self.tree.scope(launch.task_id),
            shim_cgroup: self.tree.shim(launch.task_id),
            task_cgroup,
            limits: TaskLimits {
                cpu_units: def.cpu,
                // A VM's memory is the guest's and its VMM's, as the books hold it.
                memory_mib: match launch.vm {
                    Some(_) => Some(launch.reserved_memory_mib),
                    None => def.memory,
                },
                pids_max: self.config.pids_max,
                // A microVM's swap is its guest's business: the VMM gets none.
                swap_mib: match launch.vm {
                    Some(_) => 0,
                    None => def
                        .containers
                        .iter()
                        .filter_map(|c| c.sandbox.max_swap_mib)
                        .fold(0u64, u64::saturating_add),
                },
            },
            runtime_root: self.config.runtime_dir.clone(),
            vm: launch
                .vm
                .map(|size| {
                    microvm::plan(
                        &self.config.vm,
                        size,
                        &self.config.runtime_dir,
                        launch.task_id,
                    )
                })
                .transpose()
                .map_err(LaunchError::Vm)?,
            containers,
            shared_namespaces: shared_namespaces(def),
            log_max_bytes: self.config.log_max_bytes,
        })
    }

    /// The task's shim, if it runs: found in the task's scope (or, in the moment before
    /// systemd moves it there, in berthd's own cgroup), never by a command line alone; once
    /// it has recorded its pid, that pid among them (pids are reused).
    fn shim_pid(&self, id: &str) -> Option<Pid> {
        let found = cleanup::shims(&self.tree, &self.config.tasks_dir, Some(id));
        let recorded = StatusDir::new(&self.task_dir(id))
            .shim()
            .map(|s| Pid::from_raw(s.pid as i32));
        // With a record, only the recorded pid is the shim: a task's namespace holder is a
        // fork of its shim (same command line, same leaf) and outlives a shim that died.
        match recorded {
            Some(r) => found.iter().find(|s| s.pid == r),
            None => found.first(),
        }
        .map(|s| s.pid)
    }

    /// libcontainer state directories of the task's containers.
    fn container_states(&self, id: &str) -> Vec<PathBuf> {
        let prefix = cleanup::container_id_prefix(id);
        std::fs::read_dir(&self.config.runtime_dir)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Runtime for ContainerRuntime {
    fn supports(&self, isolation: crate::vm::sizing::Isolation) -> Result<(), String> {
        match isolation {
            crate::vm::sizing::Isolation::Container => Ok(()),
            crate::vm::sizing::Isolation::Microvm => microvm::check(&self.config.vm),
        }
    }

    fn launch(&self, launch: &Launch) -> Result<(), LaunchError> {
        let planning = std::time::Instant::now();
        if !crate::names::is_task_id(launch.task_id) {
            return Err(crate::names::NameError {
                what: "task id".into(),
                name: launch.task_id.chars().take(80).collect(),
            }
            .into());
        }
        let dir = self.task_dir(launch.task_id);
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let plan = self.plan(launch, &dir)?;
        // On tmpfs: gone after a reboot.
        let run = &self.config.runtime_dir;
        std::fs::create_dir_all(run).map_err(io("create", run))?;
        let plan_path = dir.join(PLAN_FILE);
        let bytes = serde_json::to_vec_pretty(&plan).map_err(|e| LaunchError::Io {
            action: "write",
            path: plan_path.clone(),
            source: std::io::Error::other(e),
        })?;
        write_atomic_private(&plan_path, &bytes).map_err(io("write", &plan_path))?;
        crate::timing::step(launch.task_id, "plan", planning);
        if let (Some(networks), false) = (&self.networks, launch.network.interfaces.is_empty()) {
            let attaching = std::time::Instant::now();
            networks.attach(launch.task_id, launch.network)?;
            crate::timing::step(launch.task_id, "network", attaching);
        }
        // Watched before the shim can write its first word.
        let status = dir.join("status");
        std::fs::create_dir_all(&status).map_err(io("create", &status))?;
        self.watch_status(launch.task_id);
        crate::timing::mark(launch.task_id, "spawn", crate::clock::now_us());
        let shim = spawn::ShimSpawn {
            exe: &self.config.shim_exe,
            args: &self.config.shim_args,
            scopes: &self.config.scopes,
            tree: &self.tree,
            spawned: &self.spawned,
        };
        shim.spawn(launch.task_id, &plan.family, &dir)
    }

    fn stop(&self, task_id: &str) {
        if let Some(pid) = self.shim_pid(task_id) {
            let _ = kill(pid, Signal::SIGTERM);
        }
    }

    fn observe(&self, task_id: &str) -> Seen {
        // A task re-adopted after a restart is watched from its first observation.
        self.watch_status(task_id);
        // Whether the shim lives is asked before its files are read: a shim seen dead then
        // wrote everything it will, so the read holds its last exits. Asked after, a shim
        // that wrote a container's exit and `done` between the two looked like one that
        // died without them (its last container's exit code lost, the task called lost).
        let ours = self
            .spawned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(task_id);
        let holder_alive = ours || self.shim_pid(task_id).is_some();
        Seen {
            report: StatusDir::new(&self.task_dir(task_id)).observe(),
            holder_alive,
        }
    }

    /// A shim that ended normally has cleared all of this already; one that died has not.
    fn release(&self, task_id: &str) {
        // Open statistics files would keep the removed cgroups alive.
        self.usage.forget(task_id);
        if let Some(w) = &self.watch {
            w.remove(task_id);
        }
        let cg = self.tree.scope(task_id);
        match task_cgroup::kill_all(&cg, KILL_WAIT) {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                task = task_id,
                "processes outlived SIGKILL in the task cgroup"
            ),
            Err(e) => {
                tracing::warn!(task = task_id, error = %e, "cannot kill what is left of the task")
            }
        }
        // Containers' root filesystems and tmpfs volumes; task-scoped volumes go with the task.
        cleanup::unmount_under(&self.task_dir(task_id));
        let volumes = self.task_dir(task_id).join("volumes");
        if let Err(e) = std::fs::remove_dir_all(&volumes) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(task = task_id, error = %e, "task volumes not removed");
            }
        }
        if let Some(n) = &self.networks {
            n.detach(task_id);
        }
        for state in self.container_states(task_id) {
            if let Err(e) = std::fs::remove_dir_all(&state) {
                tracing::warn!(task = task_id, path = %state.display(), error = %e, "container state not removed");
            }
        }
        // The emptied scope itself is systemd's to collect (--collect); what berth made
        // inside it goes now, so no task cgroup outlives its task.
        if let Err(e) = task_cgroup::remove_below(&cg) {
            tracing::warn!(task = task_id, error = %e, "task cgroups not removed");
        }
    }

    fn forget(&self, task_id: &str) -> bool {
        if !crate::names::is_task_id(task_id) {
            return false;
        }
        let dir = self.task_dir(task_id);
        // Released at its stop; a mount left by a crash must not take a host file with it.
        cleanup::unmount_under(&dir);
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if !cleanup::mounts_under(&mountinfo, &dir).is_empty() {
            tracing::warn!(task = task_id, path = %dir.display(), "stopped task's directory kept: something is still mounted beneath it");
            return false;
        }
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(task = task_id, path = %dir.display(), error = %e, "stopped task's directory not removed");
                false
            }
            _ => true,
        }
    }

    fn sweep(&self, live: &BTreeSet<String>) {
        self.usage.retain(live);
        let tasks_dir = &self.config.tasks_dir;
        // A task id, or nothing: a directory named otherwise beneath tasks/ is no task's.
        let task_of = |p: &Path| -> Option<String> {
            let rel = p.strip_prefix(tasks_dir).ok()?;
            let id = rel.components().next()?.as_os_str().to_str()?;
            crate::names::is_task_id(id).then(|| id.to_string())
        };
        let mut orphans = BTreeSet::new();
        for s in cleanup::shims(&self.tree, tasks_dir, None) {
            if !live.contains(&s.task_id) {
                tracing::warn!(pid = %s.pid, task = %s.task_id, "killing the shim of a task berth does not run");
                let _ = kill(s.pid, Signal::SIGKILL);
                orphans.insert(s.task_id);
            }
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mounted = cleanup::mounts_under(&mountinfo, tasks_dir);
        orphans.extend(mounted.iter().filter_map(|m| task_of(m)));
        orphans.extend(self.tree.scoped_tasks());
        for id in orphans.iter().filter(|i| !live.contains(*i)) {
            tracing::warn!(task = %id, "clearing what is left of a task berth does not run");
            self.release(id);
        }
        if let Some(n) = &self.networks {
            n.sweep(live);
        }
        // State of containers whose task is gone from the books altogether.
        let held = |name: &str| {
            live.iter()
                .any(|id| name.starts_with(&cleanup::container_id_prefix(id)))
        };
        if let Ok(rd) = std::fs::read_dir(&self.config.runtime_dir) {
            for e in rd.flatten().filter(|e| e.path().is_dir()) {
                let name = e.file_name();
                let name = name.to_str().unwrap_or_default();
                if cleanup::is_container_id(name) && !held(name) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }

    fn usage(&self, task_id: &str, containers: &[String]) -> Option<Usage> {
        self.usage.read(
            &self.tree.task(task_id),
            &self.task_dir(task_id),
            task_id,
            containers,
        )
    }

    fn notify_changes(&self, tx: tokio::sync::mpsc::UnboundedSender<String>) {
        if let Some(w) = self.watch.clone() {
            let spawned = std::thread::Builder::new()
                .name("status-watch".into())
                .spawn(move || w.run(tx));
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "no status watch thread: task changes are seen at the periodic sweep");
            }
        }
    }

    fn read_log(&self, task_id: &str, container: &str, offset: u64, max: usize) -> (Vec<u8>, u64) {
        let path = self
            .task_dir(task_id)
            .join("logs")
            .join(format!("{container}.log"));
        super::logfile::read(&path, offset, max)
    }
}

/// The health check as the shim runs it: as the container's user, in its directory.
fn health_plan(c: &ContainerDefinition, config: &serde_json::Value) -> Option<HealthPlan> {
    let check = c.health_check.clone()?;
    let process = &config["process"];
    let id = |k: &str| process["user"][k].as_u64().unwrap_or(0) as u32;
    Some(HealthPlan {
        check,
        uid: id("uid"),
        gid: id("gid"),
    })
}

/// `pidMode`/`ipcMode` task: the namespaces the shim holds for all the task's containers.
fn shared_namespaces(def: &TaskDefinition) -> Vec<String> {
    [("pid", def.pid_mode), ("ipc", def.ipc_mode)]
        .into_iter()
        .filter(|(_, m)| *m == Some(SharedNamespace::Task))
        .map(|(k, _)| k.to_string())
        .collect()
}
