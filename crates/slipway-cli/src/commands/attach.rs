//! `run`'s attached session: TLS to the dyno's `attach_url`, the rendezvous handshake, then this
//! terminal (raw, with window-size changes) or these pipes relayed both ways until the server sends
//! the command's exit status.

use std::io::Write;
use std::os::fd::AsFd;

use anyhow::{anyhow, bail, Context, Result};
use slipway_types::rendezvous::{find_exit_marker, frame, partial_marker_len, OPT_FRAMES};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// Host, port and secret of a `rendezvous://host:port/secret` URL.
pub fn parse_attach_url(url: &str) -> Result<(String, u16, String)> {
    let rest = url
        .strip_prefix("rendezvous://")
        .ok_or_else(|| anyhow!("The server gave an attach URL this CLI cannot use: {url}"))?;
    let (authority, secret) = rest
        .split_once('/')
        .ok_or_else(|| anyhow!("The attach URL {url} has no secret."))?;
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("The attach URL {url} has no port."))?;
    let port = port
        .parse()
        .map_err(|_| anyhow!("The attach URL {url} has a bad port."))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_string(), port, secret.to_string()))
}

/// The terminal's size, from stdout or stdin.
pub fn terminal_size() -> Option<(u16, u16)> {
    let (stdout, stdin) = (std::io::stdout(), std::io::stdin());
    crate::term::window_size(stdout.as_fd()).or_else(|| crate::term::window_size(stdin.as_fd()))
}

/// Puts stdin's terminal in raw mode until dropped.
struct RawMode(Option<nix::sys::termios::Termios>);

impl RawMode {
    fn enter() -> RawMode {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let Ok(saved) = tcgetattr(stdin.as_fd()) else {
            return RawMode(None);
        };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        if tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).is_err() {
            return RawMode(None);
        }
        RawMode(Some(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin().as_fd(),
                nix::sys::termios::SetArg::TCSANOW,
                saved,
            );
        }
    }
}

/// Reads stdin on a thread of its own (it blocks), as frames.
fn stdin_frames() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        use std::io::Read;
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 8192];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.blocking_send(frame::encode(frame::EOF, &[]));
                    return;
                }
                Ok(n) => {
                    if tx
                        .blocking_send(frame::encode(frame::DATA, &buf[..n]))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    rx
}

fn resize_frame((cols, rows): (u16, u16)) -> Vec<u8> {
    let mut p = cols.to_be_bytes().to_vec();
    p.extend_from_slice(&rows.to_be_bytes());
    frame::encode(frame::RESIZE, &p)
}

/// Attaches to a one-off dyno; returns its command's exit status. `status` is called with the
/// `up` line once the dyno is reached.
pub async fn attach(
    attach_url: &str,
    ca_file: &std::path::Path,
    tty: bool,
    out: &mut dyn Write,
    on_up: impl FnOnce() -> Result<()>,
) -> Result<i32> {
    let (host, port, secret) = parse_attach_url(attach_url)?;
    let config = slipway_tls::client_config(ca_file).map_err(|e| {
        anyhow!(
            "Cannot use the server's CA certificate ({e}). Set SLIPWAY_CA_FILE to the server's \
             <data-dir>/tls/ca.pem."
        )
    })?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .with_context(|| format!("Cannot reach the dyno's rendezvous endpoint {host}:{port}"))?;
    let _ = tcp.set_nodelay(true);
    let name = slipway_tls::ServerName::try_from(host.clone())
        .map_err(|_| anyhow!("{host} is not a valid TLS server name"))?;
    let tls = slipway_tls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .with_context(|| format!("TLS with the rendezvous endpoint {host}:{port} failed"))?;
    let (rd, mut wr) = tokio::io::split(tls);
    // Not a broken pipe on our own output (which ends quietly): the dyno's connection.
    let broke = |e: std::io::Error| {
        anyhow!("The connection to the dyno's rendezvous endpoint broke ({e}).")
    };
    wr.write_all(format!("{secret};{OPT_FRAMES}\r\n").as_bytes())
        .await
        .map_err(broke)?;
    wr.flush().await.map_err(broke)?;
    let mut rd = BufReader::new(rd);
    // The endpoint's first line, and no more than a line's worth of it (anything else on that
    // port could send without end).
    let mut first = Vec::new();
    (&mut rd).take(4096).read_until(b'\n', &mut first).await?;
    if let Some(why) = refusal(&first) {
        bail!("{why}");
    }
    on_up()?;

    let _raw = tty.then(RawMode::enter);
    let mut input = stdin_frames();
    let mut winch = if tty {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok()
    } else {
        None
    };
    if tty {
        if let Some(size) = terminal_size() {
            wr.write_all(&resize_frame(size)).await.map_err(broke)?;
            wr.flush().await.map_err(broke)?;
        }
    }
    use std::io::IsTerminal;
    let crlf_to_lf = !std::io::stdout().is_terminal();
    let mut held: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut input_open = true;
    loop {
        tokio::select! {
            n = rd.read(&mut buf) => {
                let n = match n {
                    Ok(n) => n,
                    // A close without TLS's close_notify is still a close.
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                    Err(e) => {
                        write_out(out, &held, crlf_to_lf)?;
                        bail!(
                            "The connection to the dyno broke ({e}); the command may still be \
                             running: see slipway ps."
                        );
                    }
                };
                if n == 0 {
                    // Closed without a status: as Heroku's CLI, success.
                    write_out(out, &held, crlf_to_lf)?;
                    return Ok(0);
                }
                held.extend_from_slice(&buf[..n]);
                match find_exit_marker(&held) {
                    Some((at, Some((code, _)))) => {
                        write_out(out, &held[..at], crlf_to_lf)?;
                        return Ok(code);
                    }
                    Some((at, None)) => {
                        write_out(out, &held[..at], crlf_to_lf)?;
                        held.drain(..at);
                    }
                    None => {
                        let keep = partial_marker_len(&held);
                        let upto = held.len() - keep;
                        write_out(out, &held[..upto], crlf_to_lf)?;
                        held.drain(..upto);
                    }
                }
            }
            f = input.recv(), if input_open => {
                match f {
                    Some(f) => {
                        if wr.write_all(&f).await.is_err() || wr.flush().await.is_err() {
                            input_open = false;
                        }
                    }
                    None => input_open = false,
                }
            }
            _ = async { winch.as_mut().unwrap().recv().await }, if winch.is_some() => {
                if let Some(size) = terminal_size() {
                    let _ = wr.write_all(&resize_frame(size)).await;
                    let _ = wr.flush().await;
                }
            }
        }
    }
}

fn write_out(out: &mut dyn Write, bytes: &[u8], crlf_to_lf: bool) -> Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    if crlf_to_lf {
        let mut v = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
                i += 1;
                continue;
            }
            v.push(bytes[i]);
            i += 1;
        }
        out.write_all(&v)?;
    } else {
        out.write_all(bytes)?;
    }
    out.flush()?;
    Ok(())
}

/// What the rendezvous endpoint's first line says when it is not `rendezvous`: its error, as a
/// sentence.
fn refusal(first: &[u8]) -> Option<String> {
    let first = String::from_utf8_lossy(first);
    if first.trim_end() == "rendezvous" {
        return None;
    }
    let why = first.trim().trim_start_matches("error:").trim();
    let mut chars = why.chars();
    Some(match chars.next() {
        Some(initial) => format!("{}{}", initial.to_uppercase(), chars.as_str()),
        None => "The rendezvous endpoint closed the connection.".to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoints_first_line_becomes_a_sentence() {
        assert_eq!(refusal(b"rendezvous\r\n"), None);
        assert_eq!(
            refusal(b"error: dyno not found\r\n").as_deref(),
            Some("Dyno not found")
        );
        // Not ASCII, and not UTF-8 at all: still one line, never a panic.
        assert_eq!(
            refusal("error: échec\r\n".as_bytes()).as_deref(),
            Some("Échec")
        );
        assert!(refusal(b"\xff\xfe oops").is_some());
        assert_eq!(
            refusal(b"").as_deref(),
            Some("The rendezvous endpoint closed the connection.")
        );
    }

    #[test]
    fn attach_urls_parse() {
        assert_eq!(
            parse_attach_url("rendezvous://127.0.0.1:5051/abc").unwrap(),
            ("127.0.0.1".into(), 5051, "abc".into())
        );
        assert_eq!(
            parse_attach_url("rendezvous://[::1]:5051/abc").unwrap(),
            ("::1".into(), 5051, "abc".into())
        );
        assert!(parse_attach_url("https://x/abc").is_err());
        assert!(parse_attach_url("rendezvous://x/abc").is_err());
    }
}
