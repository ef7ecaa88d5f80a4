//! End-to-end tests: real redis-server processes, tenantry in-process, real clients.

mod auth;
mod backend_failure;
mod backend_users;
mod blocking;
mod clients;
mod cluster;
mod cluster_changes;
mod command_table;
mod errors;
mod hostile;
mod isolation;
mod keyspace;
mod pipeline;
mod policy;
mod pubsub;
mod quota;
mod quota_cluster;
mod redis_cli;
mod reload;
mod ring;
mod telemetry;
mod tls;
mod tracking;
mod transactions;
mod transparency;
