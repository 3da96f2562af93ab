//! The Amazon ECS API (AWS JSON 1.1), so the AWS CLI, the SDKs and the tools built on them
//! drive berth unchanged. This first part holds what every request passes through: SigV4
//! verification (`sigv4`) against the operator's access keys (`keys`). The HTTP endpoint and
//! the operations over the engine's verbs come next (issue 22).

pub mod keys;
pub mod sigv4;
