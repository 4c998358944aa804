//! Connections to the stores, built once per cold start and shared by every request.

pub mod dynamo;
pub mod redis;
