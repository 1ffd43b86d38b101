//! Heroku's router log line and error codes, in one place.

use std::time::Duration;

use http::StatusCode;

/// Heroku's router error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// App crashed: every web dyno has crashed.
    H10,
    /// No answer within the response timeout.
    H12,
    /// The dyno closed the connection without answering.
    H13,
    /// No web dynos running.
    H14,
    /// The dyno's answer was not HTTP.
    H17,
    /// The dyno sent nothing for the idle window after its first byte.
    H15,
    /// The dyno closed the connection in the middle of its response.
    H18Backend,
    /// The client closed the connection in the middle of the response.
    H18Client,
    /// No dyno accepted a connection within 5 s.
    H19,
    /// Web dynos did not come up while the request waited.
    H20,
    /// Every dyno refused the connection.
    H21,
    /// The client went away before the response.
    H27,
    /// The client sent nothing for the idle window in the middle of its request.
    H28,
    /// Maintenance mode (not an error).
    H80,
    /// The platform failed.
    H99,
}

impl Code {
    pub fn code(self) -> &'static str {
        match self {
            Code::H10 => "H10",
            Code::H12 => "H12",
            Code::H13 => "H13",
            Code::H14 => "H14",
            Code::H17 => "H17",
            Code::H15 => "H15",
            Code::H18Backend | Code::H18Client => "H18",
            Code::H19 => "H19",
            Code::H20 => "H20",
            Code::H21 => "H21",
            Code::H27 => "H27",
            Code::H28 => "H28",
            Code::H80 => "H80",
            Code::H99 => "H99",
        }
    }

    pub fn desc(self) -> &'static str {
        match self {
            Code::H10 => "App crashed",
            Code::H12 => "Request timeout",
            Code::H13 => "Connection closed without response",
            Code::H14 => "No web processes running",
            Code::H17 => "Poorly formatted HTTP response",
            Code::H15 => "Idle connection",
            Code::H18Backend | Code::H18Client => "Server Request Interrupted",
            Code::H19 => "Backend connection timeout",
            Code::H20 => "App boot timeout",
            Code::H21 => "Backend connection refused",
            Code::H27 => "Client Request Interrupted",
            Code::H28 => "Client Connection Idle",
            Code::H80 => "Maintenance mode",
            Code::H99 => "Platform error",
        }
    }

    /// The status the client gets when the router answers for the dyno.
    pub fn status(self) -> StatusCode {
        match self {
            Code::H27 => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            Code::H28 => StatusCode::REQUEST_TIMEOUT,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

fn push_u64(out: &mut String, n: u64) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// The fields of a router log line.
#[derive(Debug, Clone, Default)]
pub struct LogFields {
    pub method: http::Method,
    pub path: String,
    pub host: std::sync::Arc<str>,
    pub request_id: String,
    pub fwd: String,
    pub dyno: std::sync::Arc<str>,
    pub connect: Option<Duration>,
    pub service: Option<Duration>,
    pub status: u16,
    pub bytes: Option<u64>,
    /// `http` or `https`.
    pub protocol: &'static str,
}

impl LogFields {
    fn rest(&self, out: &mut String) {
        out.push_str("method=");
        out.push_str(self.method.as_str());
        out.push_str(" path=\"");
        if self.path.as_bytes().contains(&b'"') {
            out.push_str(&self.path.replace('"', "%22"));
        } else {
            out.push_str(&self.path);
        }
        out.push_str("\" host=");
        out.push_str(&self.host);
        out.push_str(" request_id=");
        out.push_str(&self.request_id);
        out.push_str(" fwd=\"");
        if self.fwd.bytes().any(|b| b == b'"' || b == b'\\') {
            out.push_str(&self.fwd.replace(['"', '\\'], ""));
        } else {
            out.push_str(&self.fwd);
        }
        out.push_str("\" dyno=");
        out.push_str(&self.dyno);
        out.push_str(" connect=");
        if let Some(c) = self.connect {
            push_u64(out, c.as_millis() as u64);
            out.push_str("ms");
        }
        out.push_str(" service=");
        if let Some(s) = self.service {
            push_u64(out, s.as_millis() as u64);
            out.push_str("ms");
        }
        out.push_str(" status=");
        push_u64(out, self.status.into());
        out.push_str(" bytes=");
        if let Some(b) = self.bytes {
            push_u64(out, b);
        }
        out.push_str(" protocol=");
        out.push_str(self.protocol);
    }

    /// `at=info ...`
    pub fn info(&self) -> String {
        let mut out = String::with_capacity(256);
        out.push_str("at=info ");
        self.rest(&mut out);
        out
    }

    /// `at=error code=H.. desc="..." ...` (H80 is `at=info`).
    pub fn error(&self, code: Code) -> String {
        let mut out = String::with_capacity(288);
        let at = if code == Code::H80 { "info" } else { "error" };
        out.push_str("at=");
        out.push_str(at);
        out.push_str(" code=");
        out.push_str(code.code());
        out.push_str(" desc=\"");
        out.push_str(code.desc());
        out.push_str("\" ");
        self.rest(&mut out);
        match code {
            Code::H18Backend => out.push_str(" sock=backend"),
            Code::H18Client => out.push_str(" sock=client"),
            _ => {}
        }
        out
    }
}
