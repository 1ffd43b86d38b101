//! The rendezvous endpoint: how `run` attaches to a one-off dyno.
//!
//! `POST /apps/{app}/dynos` with `attach: true` starts the dyno with a terminal (or pipes, for
//! `force_no_tty`) and answers `attach_url: rendezvous://HOST:PORT/SECRET`. The client opens TLS
//! to that port and writes the secret; Slipway answers `rendezvous\r\n` in a record of its own,
//! then relays bytes both ways. When the command ends, Slipway sends Heroku's exit marker line
//! (`\u{FFFF} heroku-command-exit-status: N`) and closes; if the client goes first, the dyno is
//! stopped.
//!
//! Clients may follow the secret with `\r\n` (Heroku's CLI), `\n` (the Ruby client) or nothing.
//! Without a terminal, the byte `0x04` ends the process's stdin. Slipway's own CLI sends
//! `;frames\r\n` after the secret and then [`Frame`]s, which carry window-size changes and an
//! unambiguous end of input.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use slipway_manager::{Attached, Manager};
use slipway_runtime::{DynoIo, TtySize};
use slipway_tls::TlsAcceptor;
use slipway_types::rendezvous::{frame, EXIT_MARKER, OPT_FRAMES};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tracing::{debug, warn};

/// Hex characters in a secret (24 random bytes).
pub const SECRET_LEN: usize = 48;
/// How long an attach URL stays valid; the dyno is stopped if nobody attaches by then.
const ATTACH_WINDOW: Duration = Duration::from_secs(120);
struct Pending {
    app_id: String,
    dyno: String,
    attached: oneshot::Receiver<Attached>,
}

/// Attach sessions waiting for their client.
#[derive(Clone)]
pub struct Rendezvous {
    sessions: Arc<Mutex<HashMap<String, Pending>>>,
    manager: Manager,
    /// The TLS port clients are sent to.
    pub port: u16,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Rendezvous {
    pub fn new(manager: Manager, port: u16) -> Rendezvous {
        Rendezvous {
            sessions: Arc::default(),
            manager,
            port,
        }
    }

    /// Registers an attach session for a one-off dyno; gives its secret.
    pub fn register(
        &self,
        app_id: &str,
        dyno: &str,
        attached: oneshot::Receiver<Attached>,
    ) -> String {
        use rand::RngCore;
        let mut bytes = [0u8; SECRET_LEN / 2];
        rand::thread_rng().fill_bytes(&mut bytes);
        let secret = hex::encode(bytes);
        lock(&self.sessions).insert(
            secret.clone(),
            Pending {
                app_id: app_id.to_string(),
                dyno: dyno.to_string(),
                attached,
            },
        );
        let this = self.clone();
        let key = secret.clone();
        tokio::spawn(async move {
            tokio::time::sleep(ATTACH_WINDOW).await;
            let expired = lock(&this.sessions).remove(&key);
            if let Some(p) = expired {
                debug!(dyno = %p.dyno, "Nobody attached to the one-off dyno; stopping it.");
                let _ = this.manager.stop_dyno(&p.app_id, &p.dyno).await;
            }
        });
        secret
    }

    /// Accepts TLS connections on `listener` until the task is dropped.
    pub async fn serve(self, listener: TcpListener, acceptor: TlsAcceptor) {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(error) => {
                    warn!(%error, "Rendezvous accept failed.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let this = self.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => this.session(tls).await,
                    Ok(Err(error)) => debug!(%peer, %error, "Rendezvous TLS handshake failed."),
                    Err(_) => debug!(%peer, "Rendezvous TLS handshake timed out."),
                }
            });
        }
    }

    async fn session<S: AsyncRead + AsyncWrite + Unpin + Send>(&self, mut tls: S) {
        let mut secret = [0u8; SECRET_LEN];
        let read = tokio::time::timeout(Duration::from_secs(30), tls.read_exact(&mut secret));
        if !matches!(read.await, Ok(Ok(_))) {
            return;
        }
        let pending = std::str::from_utf8(&secret)
            .ok()
            .and_then(|s| lock(&self.sessions).remove(s));
        let Some(pending) = pending else {
            let _ = tls
                .write_all(
                    b"error: this attach URL is unknown or has expired; run the command again\r\n",
                )
                .await;
            let _ = tls.shutdown().await;
            return;
        };
        // Its own record: Heroku's CLI throws the first chunk it reads away.
        if tls.write_all(b"rendezvous\r\n").await.is_err() || tls.flush().await.is_err() {
            let _ = self.manager.stop_dyno(&pending.app_id, &pending.dyno).await;
            return;
        }
        let attached = match tokio::time::timeout(Duration::from_secs(120), pending.attached).await
        {
            Ok(Ok(a)) => a,
            _ => {
                let msg = format!(
                    "error: {} could not start; see `slipway logs --dyno {}`\r\n",
                    pending.dyno, pending.dyno
                );
                let _ = tls.write_all(msg.as_bytes()).await;
                let _ = tls.shutdown().await;
                return;
            }
        };
        let (rd, mut wr) = tokio::io::split(tls);
        let Attached { io, exit } = attached;
        let (input, output): (Input, Output) = match io {
            DynoIo::Tty(master) => (Input::Tty(master.clone()), Output::Tty(master)),
            DynoIo::Pipes {
                stdin,
                stdout,
                stderr,
            } => (Input::Pipe(Some(stdin)), Output::Pipes(stdout, stderr)),
        };
        let input = relay_input(rd, input);
        tokio::pin!(input);
        let client_gone = tokio::select! {
            _ = relay_output(output, exit, &mut wr) => false,
            _ = &mut input => true,
        };
        if client_gone {
            debug!(dyno = %pending.dyno, "Client left; stopping the one-off dyno.");
            let _ = self.manager.stop_dyno(&pending.app_id, &pending.dyno).await;
        } else {
            // Clients leave once they read the exit marker. Until then (briefly) the connection
            // stays open: Heroku's CLI may still be sending its end-of-input byte, and fails if
            // the other side has already closed.
            let _ = tokio::time::timeout(LINGER, &mut input).await;
            let _ = wr.shutdown().await;
        }
    }
}

/// How long a session stays open after the exit marker for the client to leave first.
const LINGER: Duration = Duration::from_secs(2);

enum Input {
    Tty(slipway_runtime::PtyMaster),
    Pipe(Option<tokio::process::ChildStdin>),
}

enum Output {
    Tty(slipway_runtime::PtyMaster),
    Pipes(tokio::process::ChildStdout, tokio::process::ChildStderr),
}

impl Input {
    async fn data(&mut self, bytes: &[u8]) {
        match self {
            Input::Tty(m) => {
                let _ = m.write_all(bytes).await;
            }
            Input::Pipe(stdin) => {
                if let Some(s) = stdin {
                    if s.write_all(bytes).await.is_err() {
                        *stdin = None;
                    }
                }
            }
        }
    }

    /// End of input: closes a pipe; on a terminal, sends the EOF character.
    async fn eof(&mut self) {
        match self {
            Input::Tty(m) => {
                let _ = m.write_all(&[0x04]).await;
            }
            Input::Pipe(stdin) => *stdin = None,
        }
    }
}

/// Client bytes to the dyno; returns when the client has gone.
async fn relay_input(mut rd: impl AsyncRead + Unpin, mut input: Input) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    // What follows the secret: `\r\n`, `\n`, `;options\r\n`, or nothing.
    let framed = loop {
        if pending.first() == Some(&b';') {
            if let Some(nl) = pending.iter().position(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(&pending[1..nl]).trim().to_string();
                pending.drain(..=nl);
                break line.split(',').any(|o| o.trim() == OPT_FRAMES);
            }
            if pending.len() > 256 {
                return;
            }
        } else if pending.starts_with(b"\r\n") {
            pending.drain(..2);
            break false;
        } else if pending.first() == Some(&b'\n') {
            pending.drain(..1);
            break false;
        } else if !pending.is_empty() && pending != b"\r" {
            break false;
        }
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
    };
    let tty = matches!(input, Input::Tty(_));
    loop {
        if framed {
            // Complete frames in `pending`.
            while pending.len() >= 3 {
                let len = u16::from_be_bytes([pending[1], pending[2]]) as usize;
                if pending.len() < 3 + len {
                    break;
                }
                let kind = pending[0];
                let payload: Vec<u8> = pending[3..3 + len].to_vec();
                pending.drain(..3 + len);
                match kind {
                    frame::DATA => input.data(&payload).await,
                    frame::RESIZE if payload.len() == 4 => {
                        if let Input::Tty(m) = &input {
                            let _ = m.resize(TtySize {
                                cols: u16::from_be_bytes([payload[0], payload[1]]),
                                rows: u16::from_be_bytes([payload[2], payload[3]]),
                            });
                        }
                    }
                    frame::EOF => input.eof().await,
                    _ => {}
                }
            }
        } else if !pending.is_empty() {
            if tty {
                input.data(&pending).await;
            } else if let Some(at) = pending.iter().position(|&b| b == 0x04) {
                // Heroku's CLI marks the end of piped input with 0x04.
                input.data(&pending[..at]).await;
                input.eof().await;
            } else {
                input.data(&pending).await;
            }
            pending.clear();
        }
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
    }
}

/// Dyno output to the client, then the exit marker.
async fn relay_output(
    output: Output,
    mut exit: tokio::sync::watch::Receiver<Option<i32>>,
    wr: &mut (impl AsyncWrite + Unpin),
) {
    let mut last = b'\n';
    let mut buf = vec![0u8; 16 * 1024];
    match output {
        Output::Tty(master) => loop {
            match master.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    last = buf[n - 1];
                    if wr.write_all(&buf[..n]).await.is_err() || wr.flush().await.is_err() {
                        return std::future::pending().await;
                    }
                }
            }
        },
        Output::Pipes(mut out, mut err) => {
            let mut ebuf = vec![0u8; 16 * 1024];
            let (mut out_open, mut err_open) = (true, true);
            while out_open || err_open {
                let (n, from_out) = tokio::select! {
                    r = out.read(&mut buf), if out_open => (r.unwrap_or(0), true),
                    r = err.read(&mut ebuf), if err_open => (r.unwrap_or(0), false),
                };
                if n == 0 {
                    if from_out {
                        out_open = false;
                    } else {
                        err_open = false;
                    }
                    continue;
                }
                let chunk = if from_out { &buf[..n] } else { &ebuf[..n] };
                last = chunk[n - 1];
                if wr.write_all(chunk).await.is_err() || wr.flush().await.is_err() {
                    return std::future::pending().await;
                }
            }
        }
    }
    let code = match exit.wait_for(|c| c.is_some()).await {
        Ok(c) => c.unwrap_or(255),
        Err(_) => 255,
    };
    let code = if code < 0 { 255 } else { code };
    let lead = if last == b'\n' { "" } else { "\r\n" };
    let marker = format!("{lead}{EXIT_MARKER} {code}\n");
    let _ = wr.write_all(marker.as_bytes()).await;
    let _ = wr.flush().await;
}
