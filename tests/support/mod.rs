//! Helpers shared by the integration tests (each test crate uses a part of them).
#![allow(dead_code)]

pub mod client;
pub mod cluster;
pub mod provider;
pub mod redis;
