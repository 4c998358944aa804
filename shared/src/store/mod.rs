//! Connections to the stores, built once per cold start and shared by every request, and the
//! helpers the DynamoDB adapters share.

pub mod dynamo;
pub mod item;
pub mod redis;
