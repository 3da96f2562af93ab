//! Running and stopping tasks, and the loop that keeps each task's known status in line with
//! what its backend reports. The runtime is called outside the state lock.

use crate::vm::sizing::{check_fit, vm_size, Isolation, VmSize};
use std::collections::BTreeSet;
use std::time::Duration;

/// How often every unstopped task is observed whatever its backend says.
const SWEEP: Duration = Duration::from_secs(2);

use super::{Change, DefinitionError, Engine, State, Status, Task};
use crate::capacity::Refusal;
use crate::clock::now_us;
use crate::network;
use crate::runtime::Launch;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    #[error("{0}")]
    Capacity(#[from] Refusal),
    #[error("task definition {0} is inactive; register a new revision")]
    Inactive(String),
    #[error("no task {0}")]
    NotFound(String),
    #[error("image {image} is used by task {task}; stop the task first")]
    ImageInUse { image: String, task: String },
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot make a task id")]
    Id(#[source] std::io::Error),
    #[error("{0}")]
    Isolation(String),
    /// Fields this host cannot honour, each named: the task is not started.
    #[error("{reference} cannot run on this host: {}", .fields.join("; "))]
    Unrunnable {
        reference: String,
        fields: Vec<String>,
    },
}

fn new_task_id() -> Result<String, std::io::Error> {
    use std::io::Read;
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Records the task's whole state; the one way a task reaches the store.
pub(super) fn persist(store: &Store, task: &Task) -> Result<(), StoreError> {
    let json = serde_json::to_string(task).unwrap_or_default();
    store.put_task(&task.id, &json)
}

impl Engine {
    /// `RunTask`: admits the task to the books, records it, and hands it to the runtime.
    /// A task the runtime cannot start is returned STOPPED with the cause as its reason.
    pub fn run_task(&self, reference: &str) -> Result<Task, TaskError> {
        self.run_task_as(reference, None, None)
    }

    /// The microVM size of a task of `reference` in the isolation asked for (else the daemon's
    /// choice), `None` for a container task. The runtime's check (kernel, VMM, agent on disk)
    /// runs outside the state lock.
    pub(super) fn microvm_size(
        &self,
        reference: &str,
        isolation: Option<Isolation>,
    ) -> Result<Option<VmSize>, TaskError> {
        let def = self.lock().definitions.get(reference)?.definition;
        let policy = self.isolation;
        if Isolation::choose(isolation, &def, policy.default, policy.fargate) != Isolation::Microvm
        {
            return Ok(None);
        }
        let size = vm_size(&def).map_err(TaskError::Isolation)?;
        check_fit(&def).map_err(TaskError::Isolation)?;
        self.runtime
            .supports(Isolation::Microvm)
            .map_err(TaskError::Isolation)?;
        Ok(Some(size))
    }

    /// Refuses a definition whose fields this host cannot honour (an EBS volume given at
    /// launch, secrets without a secret store), naming each.
    pub(super) fn check_runnable(&self, reference: &str) -> Result<(), TaskError> {
        let reg = self.lock().definitions.get(reference)?;
        let fields = crate::spec::runnable::refusals(&reg.definition, self.host_sources);
        if fields.is_empty() {
            return Ok(());
        }
        Err(TaskError::Unrunnable {
            reference: reg.reference(),
            fields,
        })
    }

    /// `RunTask` on behalf of `started_by` (ECS's field: `service:<name>`), in the isolation
    /// asked for (else the daemon's choice for the definition).
    pub fn run_task_as(
        &self,
        reference: &str,
        started_by: Option<&str>,
        isolation: Option<Isolation>,
    ) -> Result<Task, TaskError> {
        let admitting = std::time::Instant::now();
        let id = new_task_id().map_err(TaskError::Id)?;
        self.check_runnable(reference)?;
        self.check_disk()?;
        let vm = self.microvm_size(reference, isolation)?;
        let pulls = self.images_to_pull(reference)?;
        let task = {
            let mut state = self.lock();
            let reg = state.definitions.get(reference)?;
            if !reg.active {
                return Err(TaskError::Inactive(reg.reference()));
            }
            let def = &reg.definition;
            let addresses = state.books.pick_addresses(network::addresses_needed(def))?;
            let dynamic = state
                .books
                .pick_ports(&network::dynamic_ports_needed(def))?;
            let mut task = Task::new(id.clone(), reg.reference(), def, now_us())
                .with_network(network::assign(def, &id, &addresses, &dynamic));
            if let Some(size) = vm {
                task = task.in_microvm(size, self.isolation.vm_overhead_mib);
            }
            task.started_by = started_by.map(str::to_string);
            if !pulls.is_empty() {
                task.start_pull(now_us());
            }
            state.books.admit(task.claim())?;
            if let Err(e) = self.record(&state.store, &task) {
                state.books.release(task.claim());
                return Err(e.into());
            }
            state.tasks.insert(id.clone(), task.clone());
            task
        };
        crate::timing::step(&id, "admit", admitting);
        self.emit(Change::TaskAdded(id.clone()));
        self.emit(Change::Capacity);
        if !pulls.is_empty() {
            self.pull_then_launch(id, pulls);
            return Ok(task);
        }
        self.launch(&id, None)
    }

    /// Hands the admitted task `id` to its backend (its pulls, if it had any, ended at
    /// `pulled_at`); a task the backend cannot start is STOPPED with the cause as its reason.
    pub(super) fn launch(&self, id: &str, pulled_at: Option<u64>) -> Result<Task, TaskError> {
        let (registered, net, vm, reserved_memory_mib) = {
            let mut state = self.lock();
            let reg = {
                let task = state
                    .tasks
                    .get(id)
                    .ok_or_else(|| TaskError::NotFound(id.to_string()))?;
                if task.is_stopped() {
                    return Ok(task.clone());
                }
                state.definitions.get(&task.task_definition)?
            };
            // What its containers will run on, kept from removal while it lives.
            let layers: Vec<String> = reg
                .definition
                .containers
                .iter()
                .filter_map(|c| self.images.get(&c.image).ok())
                .flat_map(|r| r.layers)
                .collect();
            let task = state
                .tasks
                .get_mut(id)
                .ok_or_else(|| TaskError::NotFound(id.to_string()))?;
            task.layers = layers;
            (
                reg,
                task.network.clone(),
                task.vm,
                task.reservation.memory_mib,
            )
        };
        let launching = std::time::Instant::now();
        let launched = self.runtime.launch(&Launch {
            task_id: id,
            definition: &registered.definition,
            network: &net,
            vm: vm.as_ref(),
            reserved_memory_mib,
        });
        crate::timing::step(id, "launch", launching);
        let mut state = self.lock();
        let State { tasks, books, .. } = &mut *state;
        let Some(task) = tasks.get_mut(id) else {
            return Err(TaskError::NotFound(id.to_string()));
        };
        if let Some(at) = pulled_at {
            task.end_pull(at);
        }
        task.handing_over = false;
        match launched {
            Ok(()) => task.launched(),
            Err(e) => {
                tracing::warn!(task = %id, error = %e, "task failed to start");
                task.failed_to_start(e.to_string(), now_us());
                books.release(task.claim());
                self.runtime.release(id);
            }
        }
        let task = task.clone();
        self.record(&state.store, &task)?;
        drop(state);
        self.emit(Change::TaskChanged(id.to_string()));
        if task.is_stopped() {
            self.emit(Change::Capacity);
        }
        Ok(task)
    }

    /// `StopTask`: records the reason and tells the runtime; the watch loop sees the exits.
    pub fn stop_task(&self, id: &str, reason: &str) -> Result<Task, TaskError> {
        let task = {
            let mut state = self.lock();
            let task = state
                .tasks
                .get_mut(id)
                .ok_or_else(|| TaskError::NotFound(id.to_string()))?;
            let reason = if reason.is_empty() {
                "Task stopped by user"
            } else {
                reason
            };
            if task.pulling() && !task.handing_over {
                // Nothing of it runs yet: STOPPED now; its pull ends on its own.
                task.stop_unlaunched(reason.to_string(), now_us());
                let task = task.clone();
                state.books.release(task.claim());
                self.record(&state.store, &task)?;
                drop(state);
                self.emit(Change::TaskChanged(id.to_string()));
                self.emit(Change::Capacity);
                return Ok(task);
            }
            if !task.request_stop(reason.to_string()) {
                return Ok(task.clone());
            }
            let task = task.clone();
            self.record(&state.store, &task)?;
            task
        };
        self.runtime.stop(id);
        self.emit(Change::TaskChanged(id.to_string()));
        Ok(task)
    }

    pub fn task(&self, id: &str) -> Result<Task, TaskError> {
        self.lock()
            .tasks
            .get(id)
            .cloned()
            .ok_or_else(|| TaskError::NotFound(id.to_string()))
    }

    /// Tasks, oldest first; stopped ones only when `all`.
    pub fn tasks(&self, all: bool) -> Vec<Task> {
        let mut v: Vec<Task> = self
            .lock()
            .tasks
            .values()
            .filter(|t| all || !t.is_stopped())
            .cloned()
            .collect();
        v.sort_by_key(|t| t.created_at);
        v
    }

    pub fn read_log(
        &self,
        id: &str,
        container: &str,
        offset: u64,
        max: usize,
    ) -> Result<(Vec<u8>, u64), TaskError> {
        let task = self.task(id)?;
        if !task.containers.iter().any(|c| c.name == container) {
            return Err(TaskError::NotFound(format!("{id} container {container}")));
        }
        Ok(self.runtime.read_log(id, container, offset, max))
    }

    /// How many tasks there are in each lastStatus, without copying them.
    pub fn count_by_status(&self) -> std::collections::BTreeMap<Status, u64> {
        let mut counts = std::collections::BTreeMap::new();
        for t in self.lock().tasks.values() {
            *counts.entry(t.last_status).or_default() += 1;
        }
        counts
    }

    /// What a running task has used so far, read from its backend now.
    pub fn usage(&self, id: &str) -> Option<crate::runtime::Usage> {
        let names = {
            let state = self.lock();
            container_names(state.tasks.get(id).filter(|t| !t.is_stopped())?)
        };
        self.runtime.usage(id, &names)
    }

    /// [`Engine::usage`] of a task the caller holds a snapshot of: no wait on the engine's
    /// lock, which a scrape of every task would otherwise take once per task.
    pub fn usage_of(&self, task: &Task) -> Option<crate::runtime::Usage> {
        if task.is_stopped() {
            return None;
        }
        self.runtime.usage(&task.id, &container_names(task))
    }

    /// Removes an image no unstopped task uses.
    pub fn remove_image(&self, name: &str) -> Result<(), TaskError> {
        let want = crate::image::reference::normalize(name);
        let holder = self
            .lock()
            .tasks
            .values()
            .find(|t| !t.is_stopped() && t.images.contains(&want))
            .map(|t| t.id.clone());
        if let Some(task) = holder {
            return Err(TaskError::ImageInUse { image: want, task });
        }
        let live: std::collections::BTreeSet<String> = self
            .lock()
            .tasks
            .values()
            .filter(|t| !t.is_stopped())
            .flat_map(|t| t.layers.iter().cloned())
            .collect();
        self.images.remove_keeping(&want, &live)?;
        Ok(())
    }

    /// Follows every unstopped task until berthd stops: observe, apply, record, announce.
    /// A task is observed when its backend says it has news, and every task at each sweep
    /// (which also catches a holder that died without a word).
    pub async fn watch(self) {
        let (tx, mut news) = tokio::sync::mpsc::unbounded_channel();
        self.runtime.notify_changes(tx);
        let mut sweep = tokio::time::interval(SWEEP);
        loop {
            let only: Option<BTreeSet<String>> = tokio::select! {
                _ = sweep.tick() => None,
                Some(id) = news.recv() => {
                    let mut ids = BTreeSet::from([id]);
                    while let Ok(more) = news.try_recv() {
                        ids.insert(more);
                    }
                    Some(ids)
                }
            };
            let live: Vec<(String, bool)> = self
                .lock()
                .tasks
                .values()
                .filter(|t| {
                    !t.is_stopped() && t.last_status != Status::Provisioning && !t.pulling()
                })
                .filter(|t| only.as_ref().is_none_or(|o| o.contains(&t.id)))
                .map(|t| (t.id.clone(), t.desired_status == Status::Stopped))
                .collect();
            for (id, stopping) in live {
                if stopping && only.is_none() {
                    self.runtime.stop(&id);
                }
                let seen = self.runtime.observe(&id);
                self.apply_seen(&id, &seen);
            }
        }
    }

    fn apply_seen(&self, id: &str, seen: &crate::runtime::Seen) {
        // STOPPED is shown only once what the task held on the host (its veth, port rules,
        // mounts, cgroup) is gone, as ECS frees a task's resources before it says STOPPED: a
        // client that sees STOPPED finds nothing of the task left. Released outside the lock,
        // which a slow kill or unmount must not hold.
        let stops = {
            let state = self.lock();
            let Some(task) = state.tasks.get(id) else {
                return;
            };
            let mut probe = task.clone();
            probe.apply(seen, now_us()) && probe.is_stopped()
        };
        if stops {
            self.runtime.release(id);
        }
        let mut state = self.lock();
        let State { tasks, books, .. } = &mut *state;
        let Some(task) = tasks.get_mut(id) else {
            return;
        };
        if !task.apply(seen, now_us()) {
            return;
        }
        let task = task.clone();
        if task.is_stopped() {
            books.release(task.claim());
        }
        if let Err(e) = self.record(&state.store, &task) {
            tracing::error!(task = %id, error = %e, "cannot record the task's state");
        }
        drop(state);
        if task.is_stopped() {
            if !stops {
                self.runtime.release(id);
            }
            tracing::info!(task = %id, reason = ?task.stopped_reason, "task stopped");
            self.emit(Change::Capacity);
        }
        self.emit(Change::TaskChanged(id.to_string()));
    }
}

/// The names `Runtime::usage` reads a task's containers by.
fn container_names(task: &Task) -> Vec<String> {
    task.containers.iter().map(|c| c.name.clone()).collect()
}
