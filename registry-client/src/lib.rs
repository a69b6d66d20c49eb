//! Wire types and a typed async client for the registry's `/api/v1` API.
//!
//! Empty on purpose: the registry issue fills it. The gateway, the CLI and the
//! tests will share these types so that there is no second copy of them.
