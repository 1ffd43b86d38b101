//! The seam between the dyno manager and the router.

use std::net::SocketAddr;

/// A web dyno that is up and can take requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// `web.1`
    pub dyno: String,
    pub addr: SocketAddr,
}

/// Receives the up web dynos of each app whenever they change. The router implements it; the
/// dyno manager calls it.
pub trait RouteSink: Send + Sync + 'static {
    /// Replaces the set of up web dynos of `app_name` (whose id is `app_id`).
    fn set_backends(&self, app_id: &str, app_name: &str, backends: Vec<Backend>);
    /// Forgets an app (destroyed).
    fn remove_app(&self, app_name: &str);
}
