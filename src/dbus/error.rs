//! Wire errors of `org.berth.Agent1`: one place maps engine errors to D-Bus error names, so
//! clients can match on the name and show the message as it is.

use zbus::DBusError;

use crate::engine::{DefinitionError, ServiceError, TaskError};
use crate::errors::chain;
use crate::image::ImageError;

#[derive(Debug, DBusError)]
#[zbus(prefix = "org.berth.Agent1.Error")]
pub enum BerthError {
    #[zbus(error)]
    ZBus(zbus::Error),
    /// The caller is neither root nor in the `berth` group.
    AccessDenied(String),
    /// The task definition is not valid JSON or not a valid ECS task definition.
    InvalidTaskDefinition(String),
    /// The named object does not exist.
    NotFound(String),
    /// An argument is malformed.
    InvalidArgument(String),
    /// The host lacks the capacity the task reserves (`RESOURCE:MEMORY: ...`).
    ResourceUnavailable(String),
    /// The object is in use (an image a task runs).
    InUse(String),
    /// berthd could not do what was asked (its state database failed, ...).
    Failed(String),
}

impl From<DefinitionError> for BerthError {
    fn from(e: DefinitionError) -> Self {
        match e {
            DefinitionError::Spec(_) => BerthError::InvalidTaskDefinition(e.to_string()),
            DefinitionError::NotFound(_) => BerthError::NotFound(e.to_string()),
            DefinitionError::BadReference(_) => BerthError::InvalidArgument(e.to_string()),
            DefinitionError::Store(crate::store::StoreError::Full { .. })
            | DefinitionError::Disk(_) => BerthError::ResourceUnavailable(e.to_string()),
            DefinitionError::Store(_) => BerthError::Failed(chain(&e)),
        }
    }
}

impl From<TaskError> for BerthError {
    fn from(e: TaskError) -> Self {
        match e {
            TaskError::Definition(d) => d.into(),
            TaskError::Capacity(_) => BerthError::ResourceUnavailable(e.to_string()),
            TaskError::Inactive(_) | TaskError::Isolation(_) | TaskError::Unrunnable { .. } => {
                BerthError::InvalidArgument(e.to_string())
            }
            TaskError::NotFound(_) => BerthError::NotFound(e.to_string()),
            TaskError::ImageInUse { .. } => BerthError::InUse(e.to_string()),
            TaskError::Image(i) => i.into(),
            TaskError::Store(crate::store::StoreError::Full { .. }) => {
                BerthError::ResourceUnavailable(e.to_string())
            }
            TaskError::Store(_) | TaskError::Id(_) => BerthError::Failed(chain(&e)),
        }
    }
}

impl From<ServiceError> for BerthError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Task(t) => t.into(),
            ServiceError::NotFound(_) => BerthError::NotFound(e.to_string()),
            ServiceError::Exists(_) => BerthError::InUse(e.to_string()),
            ServiceError::InvalidName(_) | ServiceError::Invalid(_) => {
                BerthError::InvalidArgument(e.to_string())
            }
            ServiceError::Store(crate::store::StoreError::Full { .. }) => {
                BerthError::ResourceUnavailable(e.to_string())
            }
            ServiceError::Store(_) => BerthError::Failed(chain(&e)),
        }
    }
}

impl From<ImageError> for BerthError {
    fn from(e: ImageError) -> Self {
        match e {
            ImageError::NotFound(_) => BerthError::NotFound(e.to_string()),
            ImageError::Refused(why) => BerthError::AccessDenied(why),
            ImageError::Io { .. } | ImageError::Index { .. } => BerthError::Failed(chain(&e)),
            _ => BerthError::InvalidArgument(chain(&e)),
        }
    }
}
