//! The one owner of berth's mutable state: the capacity books, the registered task
//! definitions and the tasks. Faces hold an [`Engine`] handle, ask it to act, read snapshots,
//! and follow [`Change`]s.
//!
//! Every change is committed to the [`Store`] before the caller sees it; on start the
//! definitions and tasks are rebuilt from the store (see `restore`).

mod autoscaling;
mod balancing;
mod definitions;
mod history;
mod image_cleanup;
mod pulls;
mod restore;
pub mod retention;
mod services;
mod tags;
pub mod task;
mod tasks;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::broadcast;

pub use autoscaling::DecisionCounts;
pub use balancing::TargetReport;
pub use definitions::{DefinitionError, Registered};
pub use history::History;
pub use services::{counts as service_counts, started_by, ServiceError, ServiceSpec};
pub use tags::{check as check_tags, TagError};
pub use task::{Status, StopCode, Task};
pub use tasks::TaskError;

use crate::capacity::{Books, PortBook, Resources};
use crate::clock::now_us;
use crate::image::ImageStore;
use crate::runtime::Runtime;
use crate::spec;
use crate::store::{Store, StoreError, StoredDefinition};
use crate::vm::sizing::Isolation;

#[derive(Debug)]
struct State {
    books: Books,
    definitions: definitions::Registry,
    tasks: BTreeMap<String, Task>,
    services: BTreeMap<String, crate::service::Service>,
    store: Store,
}

/// What changed, for the faces to show (D-Bus objects and PropertiesChanged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    TaskAdded(String),
    TaskChanged(String),
    /// A stopped task forgotten past its retention.
    TaskRemoved(String),
    Capacity,
    ServiceAdded(String),
    ServiceChanged(String),
    ServiceRemoved(String),
    /// The autoscaler changed a service's desired count.
    ServiceScaled {
        name: String,
        from: u32,
        to: u32,
        reason: String,
    },
}

/// A cheap, cloneable handle on the engine.
#[derive(Debug, Clone)]
pub struct Engine {
    state: Arc<Mutex<State>>,
    runtime: Arc<dyn Runtime>,
    images: Arc<ImageStore>,
    changes: broadcast::Sender<Change>,
    generation: Arc<std::sync::atomic::AtomicU64>,
    service_gate: Arc<Mutex<()>>,
    /// The autoscaler's samples and CPU readings, kept in memory only.
    sampler: Arc<Mutex<autoscaling::Sampler>>,
    decision_counts: Arc<Mutex<DecisionCounts>>,
    isolation: IsolationPolicy,
    host_sources: spec::runnable::HostSources,
    retention: retention::Retention,
    /// MiB the state directory's filesystem keeps free; below it new work is refused.
    min_free_disk_mib: u64,
    /// Pulls images tasks need; without, a task's image must be in the store.
    pulls: Option<pulls::Pulls>,
    /// Seconds a pulled image may go unused before it is removed (None: never).
    image_cleanup_age: Option<u64>,
    /// Services' load balancers; without (no bridge), `loadBalancers` are refused.
    balancer: Option<Arc<crate::balance::Balancer>>,
}

/// The daemon's isolation settings the engine applies at RunTask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsolationPolicy {
    pub default: Isolation,
    pub fargate: Isolation,
    pub vm_overhead_mib: u64,
}

impl Default for IsolationPolicy {
    fn default() -> Self {
        IsolationPolicy {
            default: Isolation::Container,
            fargate: Isolation::Microvm,
            vm_overhead_mib: 256,
        }
    }
}

/// What the faces show of the capacity books.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapacitySnapshot {
    pub registered: Resources,
    pub reserved: Resources,
    pub remaining: Resources,
    pub ports: PortBook,
}

impl Engine {
    /// Builds the engine over `store`, restoring the registered task definitions and the
    /// tasks: those not yet stopped are re-adopted through `runtime` (and charged to `books`)
    /// or stopped with the reason. `boot_id` tells a host restart from a berthd restart.
    pub fn new(
        mut books: Books,
        store: Store,
        runtime: Arc<dyn Runtime>,
        images: Arc<ImageStore>,
        boot_id: &str,
    ) -> Result<Engine, StoreError> {
        let definitions = restore::definitions(&store)?;
        let tasks = restore::tasks(&store, &mut books, runtime.as_ref(), boot_id, now_us())?;
        let services = restore::services(&store)?;
        for s in services.values() {
            if let Err(e) = books.hold_listeners(&s.name, &s.listener_ports()) {
                tracing::warn!(service = %s.name, error = %e, "a listener's port is taken");
            }
        }
        let (changes, _) = broadcast::channel(1024);
        Ok(Engine {
            state: Arc::new(Mutex::new(State {
                books,
                definitions,
                tasks,
                services,
                store,
            })),
            runtime,
            images,
            changes,
            generation: Arc::default(),
            service_gate: Arc::new(Mutex::new(())),
            sampler: Arc::new(Mutex::new(autoscaling::Sampler::default())),
            decision_counts: Arc::new(Mutex::new(DecisionCounts::default())),
            isolation: IsolationPolicy::default(),
            host_sources: spec::runnable::HostSources::default(),
            retention: retention::Retention::default(),
            min_free_disk_mib: 0,
            pulls: None,
            image_cleanup_age: None,
            balancer: None,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    fn emit(&self, change: Change) {
        // No subscriber yet is fine: faces read the state when they start.
        let _ = self.changes.send(change);
    }

    /// A count of the tasks' recorded changes: a view of the tasks built at one generation
    /// is current while the generation stays (the metrics' kept rendering).
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Records a task's state, the caller holding the lock, and counts the change first: by
    /// the time anyone can read the new state, a view built before it is known stale.
    fn record(&self, store: &Store, task: &Task) -> Result<(), StoreError> {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tasks::persist(store, task)
    }

    pub fn images(&self) -> &Arc<ImageStore> {
        &self.images
    }

    pub fn capacity(&self) -> CapacitySnapshot {
        let s = self.lock();
        CapacitySnapshot {
            registered: s.books.registered(),
            reserved: s.books.reserved(),
            remaining: s.books.remaining(),
            ports: s.books.ports().clone(),
        }
    }

    pub fn register_definition(&self, json: &str) -> Result<Registered, DefinitionError> {
        let validated = spec::parse(json)?;
        self.check_disk()?;
        let mut state = self.lock();
        let revision = state
            .definitions
            .next_revision(&validated.definition.family);
        state.store.insert_definition(&StoredDefinition {
            family: validated.definition.family.clone(),
            revision,
            active: true,
            json: validated.json.to_string(),
        })?;
        Ok(state.definitions.restore(revision, true, validated))
    }

    pub fn list_definitions(&self, family_prefix: &str) -> Vec<String> {
        self.lock().definitions.list(family_prefix)
    }

    /// The deregistered revisions' references (`list_definitions` has the active ones).
    pub fn list_inactive_definitions(&self, family_prefix: &str) -> Vec<String> {
        self.lock().definitions.list_by(family_prefix, false)
    }

    /// The daemon's isolation settings (the defaults without).
    pub fn with_isolation_policy(mut self, policy: IsolationPolicy) -> Engine {
        self.isolation = policy;
        self
    }

    /// The free space the state directory keeps (0: none, the default without).
    pub fn with_min_free_disk(mut self, mib: u64) -> Engine {
        self.min_free_disk_mib = mib;
        self
    }

    /// New work is refused while the state directory's filesystem is short of space.
    pub fn check_disk(&self) -> Result<(), crate::capacity::Refusal> {
        let (dir, free) = {
            let state = self.lock();
            (
                state.store.dir().display().to_string(),
                state.store.free_bytes(),
            )
        };
        crate::capacity::disk(&dir, free, self.min_free_disk_mib)
    }

    /// What the host gives tasks beyond its resources (secrets); none without.
    pub fn with_host_sources(mut self, sources: spec::runnable::HostSources) -> Engine {
        self.host_sources = sources;
        self
    }

    pub fn describe_definition(&self, reference: &str) -> Result<Registered, DefinitionError> {
        self.lock().definitions.get(reference)
    }

    pub fn deregister_definition(&self, reference: &str) -> Result<String, DefinitionError> {
        let mut state = self.lock();
        let found = state.definitions.get(reference)?;
        if !found.active || !reference.contains(':') {
            // Let the registry produce the precise refusal (inactive, or no revision given).
            return state.definitions.deregister(reference);
        }
        state
            .store
            .deactivate_definition(&found.family, found.revision)?;
        state.definitions.deregister(reference)
    }
}

/// An engine over a state directory for tests: 2 CPUs, 2000 MiB, a container runtime that is
/// constructed but never asked to run anything.
#[cfg(test)]
pub(crate) fn test_engine(dir: &std::path::Path) -> Engine {
    let store = Store::open(dir).expect("store");
    let books = Books::register(
        crate::host::HostResources {
            cpus: 2,
            memory_mib: 2000,
        },
        0,
        [],
    );
    let images = Arc::new(ImageStore::open(&dir.join("images")).expect("image store"));
    let runtime = crate::runtime::ContainerRuntime::new(
        crate::runtime::RuntimeConfig {
            tasks_dir: dir.join("tasks"),
            runtime_dir: dir.join("run"),
            pids_max: 64,
            shim_exe: "/bin/false".into(),
            shim_args: Vec::new(),
            vm: crate::runtime::VmSettings {
                kernel_dir: dir.join("kernel"),
                vmm: "/bin/false".into(),
                accel: crate::config::VmAccel::Tcg,
                boot_timeout_secs: 10,
                agent_timeout_secs: 10,
                agent: "/bin/false".into(),
                cache_dir: dir.join("vm"),
                vmm_user: "root".into(),
            },
            scopes: Default::default(),
            init_binary: "/bin/false".into(),
            default_stop_timeout_secs: 30,
            secrets_dir: None,
            log_max_bytes: 0,
        },
        crate::cgroup::CgroupTree::new(dir, "berth.slice"),
        images.clone(),
        None,
    );
    Engine::new(books, store, Arc::new(runtime), images, "boot").expect("engine")
}
