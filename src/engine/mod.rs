//! The one owner of berth's mutable state: the capacity books and the registered task
//! definitions. Faces hold an [`Engine`] handle, ask it to act, and read snapshots.
//!
//! Every change is committed to the [`Store`] before the registry in memory and the caller
//! see it; on start the registry is rebuilt from the store.

mod definitions;

use std::sync::{Arc, Mutex, MutexGuard};

pub use definitions::{DefinitionError, Registered};

use crate::capacity::{Books, Resources};
use crate::spec;
use crate::store::{Store, StoreError, StoredDefinition};

#[derive(Debug)]
struct State {
    books: Books,
    definitions: definitions::Registry,
    store: Store,
}

/// A cheap, cloneable handle on the engine.
#[derive(Debug, Clone)]
pub struct Engine {
    state: Arc<Mutex<State>>,
}

/// What the faces show of the capacity books.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapacitySnapshot {
    pub registered: Resources,
    pub remaining: Resources,
}

impl Engine {
    /// Builds the engine over `store`, restoring the registered task definitions.
    pub fn new(books: Books, store: Store) -> Result<Engine, StoreError> {
        let mut registry = definitions::Registry::default();
        for stored in store.definitions()? {
            let reference = format!("{}:{}", stored.family, stored.revision);
            match spec::parse(&stored.json) {
                Ok(v) => {
                    registry.restore(stored.revision, stored.active, v);
                }
                // A definition a newer validation refuses stays in the store, untouched.
                Err(e) => {
                    tracing::warn!(task_definition = %reference, error = %e, "stored task definition no longer validates; not loaded")
                }
            }
        }
        Ok(Engine {
            state: Arc::new(Mutex::new(State {
                books,
                definitions: registry,
                store,
            })),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn capacity(&self) -> CapacitySnapshot {
        let s = self.lock();
        CapacitySnapshot {
            registered: s.books.registered(),
            remaining: s.books.remaining(),
        }
    }

    pub fn register_definition(&self, json: &str) -> Result<Registered, DefinitionError> {
        let validated = spec::parse(json)?;
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
