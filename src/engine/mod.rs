//! The one owner of berth's mutable state: the capacity books and the registered task
//! definitions. Faces hold an [`Engine`] handle, ask it to act, and read snapshots.
//!
//! Task definitions are held in memory until the durable store lands (issue: capacity books,
//! durable state and restarts).

mod definitions;

use std::sync::{Arc, Mutex, MutexGuard};

pub use definitions::{DefinitionError, Registered};

use crate::capacity::{Books, Resources};
use crate::spec;

#[derive(Debug)]
struct State {
    books: Books,
    definitions: definitions::Registry,
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
    pub fn new(books: Books) -> Engine {
        Engine {
            state: Arc::new(Mutex::new(State {
                books,
                definitions: definitions::Registry::default(),
            })),
        }
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
        Ok(self.lock().definitions.register(validated))
    }

    pub fn list_definitions(&self, family_prefix: &str) -> Vec<String> {
        self.lock().definitions.list(family_prefix)
    }

    pub fn describe_definition(&self, reference: &str) -> Result<Registered, DefinitionError> {
        self.lock().definitions.get(reference)
    }

    pub fn deregister_definition(&self, reference: &str) -> Result<String, DefinitionError> {
        self.lock().definitions.deregister(reference)
    }
}
