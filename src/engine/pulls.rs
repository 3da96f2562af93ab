//! Tasks whose images are pulled before they launch: RunTask admits the task to the books,
//! returns it PENDING, and the pulls run in the background; the task launches when every image
//! is in the store, or stops with ECS's `CannotPullContainerError` and the registry's reason.

use std::sync::Arc;

use super::{Change, Engine, State, TaskError};
use crate::clock::now_us;
use crate::image::pull::{PullBehavior, Puller};

/// The daemon's puller, when it has one, and when it is asked.
#[derive(Debug, Clone)]
pub struct Pulls {
    pub puller: Arc<Puller>,
    pub behavior: PullBehavior,
    /// The runtime the pulls run on (the engine's callers are threads of it or not).
    pub handle: tokio::runtime::Handle,
}

/// One image a task waits for: its name as written and its `repositoryCredentials`.
pub(super) type Wanted = (String, Option<String>);

impl Engine {
    /// Pulls images the store lacks (as `behavior` says) before tasks launch.
    pub fn with_puller(mut self, puller: Arc<Puller>, behavior: PullBehavior) -> Engine {
        self.pulls = tokio::runtime::Handle::try_current()
            .ok()
            .map(|handle| Pulls {
                puller,
                behavior,
                handle,
            });
        self
    }

    pub fn puller(&self) -> Option<&Arc<Puller>> {
        self.pulls.as_ref().map(|p| &p.puller)
    }

    /// The images of `reference`'s containers a task must pull first, each once.
    pub(super) fn images_to_pull(&self, reference: &str) -> Result<Vec<Wanted>, TaskError> {
        let Some(pulls) = &self.pulls else {
            return Ok(Vec::new());
        };
        let def = self.lock().definitions.get(reference)?.definition;
        let mut out: Vec<Wanted> = Vec::new();
        for c in &def.containers {
            let cached = self.images.get(&c.image).is_ok();
            let name = crate::image::reference::normalize(&c.image);
            let seen = out
                .iter()
                .any(|(i, _)| crate::image::reference::normalize(i) == name);
            if pulls.behavior.should_pull(cached) && !seen {
                out.push((c.image.clone(), c.repository_credentials.clone()));
            }
        }
        Ok(out)
    }

    /// Pulls `wanted` for task `id` in the background, then launches or stops it.
    pub(super) fn pull_then_launch(&self, id: String, wanted: Vec<Wanted>) {
        let Some(pulls) = self.pulls.clone() else {
            return;
        };
        let engine = self.clone();
        let asked_at = now_us() / 1_000_000;
        pulls.handle.spawn(async move {
            let all = wanted.iter().map(|(image, creds)| {
                let puller = &pulls.puller;
                async move {
                    puller
                        .pull(image, creds.as_deref(), asked_at)
                        .await
                        .map_err(|e| format!("CannotPullContainerError: {image}: {}", e.describe()))
                }
            });
            let result = futures_util::future::join_all(all)
                .await
                .into_iter()
                .find_map(Result::err);
            let pulled_at = now_us();
            let ran =
                tokio::task::spawn_blocking(move || engine.after_pull(&id, result, pulled_at));
            if let Err(e) = ran.await {
                tracing::error!(error = %e, "launching a task after its pull panicked");
            }
        });
    }

    /// The pulls of task `id` ended (with the first failure, if any): it launches, or stops
    /// with the reason. A task stopped while pulling stays as it is.
    fn after_pull(&self, id: &str, failure: Option<String>, pulled_at: u64) {
        let stopped = {
            let mut state = self.lock();
            let State { tasks, books, .. } = &mut *state;
            let Some(task) = tasks.get_mut(id) else {
                return;
            };
            if task.is_stopped() {
                return;
            }
            let Some(reason) = failure else {
                // From here StopTask takes the ordinary way (the backend will have the task).
                task.handing_over = true;
                drop(state);
                if let Err(e) = self.launch(id, Some(pulled_at)) {
                    tracing::error!(task = %id, error = %e, "cannot launch the task after its pull");
                }
                return;
            };
            tracing::warn!(task = %id, %reason, "task stopped: its image could not be pulled");
            task.failed_to_start(reason, pulled_at);
            books.release(task.claim());
            let task = task.clone();
            if let Err(e) = self.record(&state.store, &task) {
                tracing::error!(task = %id, error = %e, "cannot record the task's state");
            }
            task
        };
        self.runtime.release(&stopped.id);
        self.emit(Change::TaskChanged(id.to_string()));
        self.emit(Change::Capacity);
    }
}
