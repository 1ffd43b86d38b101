//! The seam between the dyno manager and the router.

use std::net::SocketAddr;

/// A web dyno that is up and can take requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// `web.1`
    pub dyno: String,
    pub addr: SocketAddr,
}

/// What an app's web process is doing when no web dyno is up: it decides the router's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WebStatus {
    /// Some web dyno is up.
    Up,
    /// Web dynos are starting or about to (the router holds requests for a while: H20).
    Starting,
    /// Every web dyno has crashed (H10).
    Crashed,
    /// No web dynos in the formation (H14).
    #[default]
    None,
}

/// Receives the up web dynos of each app whenever they change. The router implements it; the
/// dyno manager calls it.
pub trait RouteSink: Send + Sync + 'static {
    /// Replaces the set of up web dynos of `app_name` (whose id is `app_id`).
    fn set_backends(&self, app_id: &str, app_name: &str, backends: Vec<Backend>);
    /// What the app's web dynos are doing; called after each `set_backends`.
    fn set_web_status(&self, _app_id: &str, _app_name: &str, _status: WebStatus) {}
    /// Forgets an app (destroyed).
    fn remove_app(&self, app_name: &str);
}
