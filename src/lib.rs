#![deny(clippy::all)]

pub mod core;
