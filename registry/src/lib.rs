//! Sluice's control plane: the model registry.
//!
//! Empty on purpose: the registry issue fills it with the store (SQLite and an
//! object store), the `/api/v1` HTTP API, governance, deployments and the audit
//! log described in `DESIGN.md`. Until then the gateway serves a model
//! repository directory (`sluice serve --model-repository DIR`).
