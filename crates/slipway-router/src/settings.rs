//! What the router knows of each app besides its dynos: domains, certificates, features and
//! timeouts. The API builds an [`AppSettings`] from the store whenever one of them changes and
//! hands it to [`crate::RouteTable::configure`].

use std::time::Duration;

/// Heroku's 30 s to the first response byte (H12).
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// Heroku's 55 s rolling idle window, each way (H15, H28).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(55);

/// How the router picks a web dyno.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Balance {
    /// Heroku's: a dyno chosen at random.
    #[default]
    Random,
    /// Two dynos chosen at random; the one with fewer requests in flight gets the request.
    LeastOutstanding,
}

/// Timeouts for requests whose path starts with `prefix` (the longest matching prefix wins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTimeouts {
    pub prefix: String,
    pub response: Duration,
    pub idle: Duration,
}

/// An app's router timeouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    /// Time to the first response byte once the request is sent (H12).
    pub response: Duration,
    /// Rolling idle window after the first byte, each way (H15 / H28).
    pub idle: Duration,
    /// Overrides by path prefix.
    pub paths: Vec<PathTimeouts>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            response: DEFAULT_RESPONSE_TIMEOUT,
            idle: DEFAULT_IDLE_TIMEOUT,
            paths: Vec::new(),
        }
    }
}

impl Timeouts {
    /// (response, idle) for a request path.
    pub fn for_path(&self, path: &str) -> (Duration, Duration) {
        self.paths
            .iter()
            .filter(|p| path.starts_with(p.prefix.as_str()))
            .max_by_key(|p| p.prefix.len())
            .map_or((self.response, self.idle), |p| (p.response, p.idle))
    }
}

/// A certificate the app added (`certs:add`), served by SNI for the names it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPair {
    /// PEM: the leaf first, then intermediates.
    pub chain_pem: String,
    /// PEM private key.
    pub key_pem: String,
}

/// Everything about an app the router needs besides its dynos.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppSettings {
    /// Custom domains, lower case: exact host names and wildcards (`*.example.com`).
    pub domains: Vec<String>,
    /// `maintenance:on`: every request gets the maintenance page (H80).
    pub maintenance: bool,
    /// Feature `http-session-affinity`.
    pub session_affinity: bool,
    /// Feature `http-least-outstanding`.
    pub balance: Balance,
    /// Feature `http2-to-dyno`: HTTP/2 (prior knowledge, cleartext) to the dynos.
    pub http2_to_dyno: bool,
    /// Feature `http-to-https-redirect`: plain HTTP requests are redirected to HTTPS.
    pub https_redirect: bool,
    /// Config var `ERROR_PAGE_URL`.
    pub error_page_url: Option<String>,
    /// Config var `MAINTENANCE_PAGE_URL`.
    pub maintenance_page_url: Option<String>,
    pub timeouts: Timeouts,
    /// SNI certificates (`certs:add`).
    pub certs: Vec<CertPair>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins() {
        let t = Timeouts {
            response: Duration::from_secs(30),
            idle: Duration::from_secs(55),
            paths: vec![
                PathTimeouts {
                    prefix: "/api".into(),
                    response: Duration::from_secs(5),
                    idle: Duration::from_secs(6),
                },
                PathTimeouts {
                    prefix: "/api/reports".into(),
                    response: Duration::from_secs(120),
                    idle: Duration::from_secs(7),
                },
            ],
        };
        assert_eq!(
            t.for_path("/"),
            (Duration::from_secs(30), Duration::from_secs(55))
        );
        assert_eq!(
            t.for_path("/api/x"),
            (Duration::from_secs(5), Duration::from_secs(6))
        );
        assert_eq!(
            t.for_path("/api/reports/1"),
            (Duration::from_secs(120), Duration::from_secs(7))
        );
    }
}
