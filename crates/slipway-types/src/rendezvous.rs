//! What the rendezvous endpoint and its clients agree on (see `slipway_api::rendezvous`).

/// The line Heroku's CLI reads a one-off command's exit status from, followed by ` N`.
pub const EXIT_MARKER: &str = "\u{FFFF} heroku-command-exit-status:";

/// Options a client may send after the secret as `;opt1,opt2\r\n`.
pub const OPT_FRAMES: &str = "frames";

/// Frame kinds of the framed input mode (Slipway's CLI): `[kind][len: u16 BE][payload]`.
pub mod frame {
    /// Bytes for the process's stdin or terminal.
    pub const DATA: u8 = 0;
    /// The window size: cols, rows as u16 BE.
    pub const RESIZE: u8 = 1;
    /// End of input.
    pub const EOF: u8 = 2;

    /// Encodes one frame.
    pub fn encode(kind: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len().min(u16::MAX as usize);
        let mut out = Vec::with_capacity(3 + len);
        out.push(kind);
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend_from_slice(&payload[..len]);
        out
    }
}

/// Finds the exit marker line in `buf`: where it starts and, once its line is complete, the
/// status and where the line ends.
pub fn find_exit_marker(buf: &[u8]) -> Option<(usize, Option<(i32, usize)>)> {
    let m = EXIT_MARKER.as_bytes();
    let at = buf.windows(m.len()).position(|w| w == m)?;
    let rest = &buf[at + m.len()..];
    let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
        return Some((at, None));
    };
    let code = std::str::from_utf8(&rest[..nl])
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .unwrap_or(0);
    Some((at, Some((code, at + m.len() + nl + 1))))
}

/// How many bytes at the end of `buf` could begin the exit marker (to be held back until more
/// output arrives).
pub fn partial_marker_len(buf: &[u8]) -> usize {
    let m = EXIT_MARKER.as_bytes();
    (1..m.len().min(buf.len() + 1))
        .rev()
        .find(|&n| buf.ends_with(&m[..n]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_is_found_whole_and_in_parts() {
        let out = format!("hello\r\n{EXIT_MARKER} 3\nafter");
        let (at, done) = find_exit_marker(out.as_bytes()).unwrap();
        assert_eq!(&out[..at], "hello\r\n");
        let (code, end) = done.unwrap();
        assert_eq!((code, &out[end..]), (3, "after"));
        let half = format!("x{EXIT_MARKER} 4");
        assert_eq!(find_exit_marker(half.as_bytes()), Some((1, None)));
        assert_eq!(find_exit_marker(b"plain output\n"), None);
        let m = EXIT_MARKER.as_bytes();
        let mut cut = b"abc".to_vec();
        cut.extend_from_slice(&m[..5]);
        assert_eq!(partial_marker_len(&cut), 5);
        assert_eq!(partial_marker_len(b"abc\n"), 0);
        assert_eq!(frame::encode(frame::EOF, &[]), vec![2, 0, 0]);
        assert_eq!(frame::encode(frame::DATA, b"hi"), vec![0, 0, 2, b'h', b'i']);
    }
}
