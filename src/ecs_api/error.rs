//! ECS's errors as the API answers them: `{"__type": NAME, "message": ...}`, 400 for what the
//! caller did (500 only for berth's own failure, which clients retry).

use serde_json::{json, Value};

use crate::engine::{DefinitionError, ServiceError, TagError, TaskError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub exception: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(exception: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            exception,
            message: message.into(),
        }
    }

    pub fn client(message: impl Into<String>) -> ApiError {
        ApiError::new("ClientException", message)
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new("InvalidParameterException", message)
    }

    pub fn status(&self) -> u16 {
        if self.exception == "ServerException" {
            500
        } else {
            400
        }
    }

    pub fn body(&self) -> Value {
        json!({"__type": self.exception, "message": self.message})
    }
}

impl From<DefinitionError> for ApiError {
    fn from(e: DefinitionError) -> ApiError {
        ApiError::client(crate::errors::chain(&e))
    }
}

impl From<TaskError> for ApiError {
    fn from(e: TaskError) -> ApiError {
        match e {
            TaskError::Store(_) => ApiError::new("ServerException", crate::errors::chain(&e)),
            other => ApiError::client(crate::errors::chain(&other)),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> ApiError {
        match e {
            ServiceError::NotFound(_) => {
                ApiError::new("ServiceNotFoundException", "Service not found.")
            }
            ServiceError::Invalid(m) => ApiError::invalid(m),
            ServiceError::Store(_) => ApiError::new("ServerException", crate::errors::chain(&e)),
            other => ApiError::client(crate::errors::chain(&other)),
        }
    }
}

impl From<TagError> for ApiError {
    fn from(e: TagError) -> ApiError {
        match e {
            TagError::Invalid(m) => ApiError::invalid(m),
            TagError::NotFound(_) => ApiError::new(
                "ResourceNotFoundException",
                "The specified resource could not be found.",
            ),
            TagError::Store(_) => ApiError::new("ServerException", crate::errors::chain(&e)),
        }
    }
}
