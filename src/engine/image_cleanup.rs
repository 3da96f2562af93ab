//! Automated image cleanup, as the ECS agent does it: pulled images no task has used for
//! `image_cleanup_age_secs` are removed, never one a task not yet stopped uses. Runs in the
//! history loop, after stopped tasks are forgotten (a forgotten task no longer holds its image).

use super::Engine;
use crate::image::cleanup::{self, Use};

impl Engine {
    /// Removes pulled images unused for `age_secs` (None: never).
    pub fn with_image_cleanup(mut self, age_secs: Option<u64>) -> Engine {
        self.image_cleanup_age = age_secs;
        self
    }

    /// Removes the pulled images the policy no longer keeps at `now` (seconds); returns them.
    pub fn clean_images(&self, now: u64) -> Vec<String> {
        let Some(age) = self.image_cleanup_age else {
            return Vec::new();
        };
        let uses: Vec<Use> = self
            .lock()
            .tasks
            .values()
            .flat_map(|t| {
                let stopped_at = t
                    .is_stopped()
                    .then(|| t.stopped_at.unwrap_or(t.created_at) / 1_000_000);
                t.images.iter().map(move |i| Use {
                    image: i.clone(),
                    stopped_at,
                })
            })
            .collect();
        let mut removed = Vec::new();
        for name in cleanup::unused(&self.images.list(), &uses, now, age) {
            // A task admitted since is seen here: its image stays.
            match self.remove_image(&name) {
                Ok(()) => {
                    tracing::info!(image = %name, "pulled image removed: unused past image_cleanup_age_secs");
                    removed.push(name);
                }
                Err(e) => tracing::debug!(image = %name, error = %e, "image kept"),
            }
        }
        removed
    }
}
