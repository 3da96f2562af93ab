//! The Amazon ECS API (AWS JSON 1.1), so the AWS CLI, the SDKs and the tools built on them
//! drive berth unchanged: a thin transport over the engine's verbs (those D-Bus calls), with
//! SigV4 verified against the operator's access keys (`keys`), each read-only or read-write.

pub mod arn;
pub mod error;
pub mod http;
pub mod keys;
mod ops;
pub mod sigv4;
