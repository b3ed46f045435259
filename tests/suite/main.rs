//! kiln's integration tests: each module starts real servers on 127.0.0.1:0 (in this process, or
//! the `kiln` binary as a child process) and talks to them over HTTP. They are one test binary,
//! so Burn is linked into one executable instead of one per file.

mod common;

mod api;
mod checkpoints;
mod cli;
mod cluster;
mod connections;
mod dashboard;
mod data_dir;
mod datasets;
mod durability;
mod export;
mod failover;
mod fashion_mnist;
mod images;
mod language_models;
mod modern_cnns;
mod predict;
mod prometheus;
mod security;
mod sequential;
mod watch;
mod watch_all;
mod wgpu;
