//! Domain and wire types shared by Slipway's server and CLI.
//!
//! The structs here serialise to the Heroku Platform API v3 JSON shapes (`App`, `Release`,
//! `Formation`, `Dyno`, `Account`, `LogSession`, `ErrorBody`), so the server answers with them and
//! the CLI reads them back. Validation rules that both sides apply (app names, config keys,
//! process types, formation quantities) live here too, so the CLI and the API reject the same input.

pub mod files;
pub mod names;
pub mod rendezvous;
pub mod routing;
pub mod sizes;
pub mod wire;

pub use names::*;
pub use routing::*;
pub use sizes::*;
pub use wire::*;
