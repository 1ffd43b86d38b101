use super::*;
use chrono::TimeZone;

fn line(source: Source, dyno: &str, message: &str) -> LogLine {
    LogLine {
        seq: 1,
        time: Utc
            .with_ymd_and_hms(2026, 11, 26, 5, 15, 59)
            .unwrap()
            .checked_add_signed(chrono::Duration::microseconds(123_456))
            .unwrap(),
        source,
        dyno: dyno.into(),
        message: message.into(),
    }
}

#[test]
fn frames_are_octet_counted_rfc5424() {
    let mut out = Vec::new();
    frame(&line(Source::App, "web.1", "hello"), "d.abc", &mut out);
    let body = "<190>1 2026-11-26T05:15:59.123456+00:00 d.abc app web.1 - - hello\n";
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("{} {body}", body.len())
    );
    let mut out = Vec::new();
    frame(&line(Source::Heroku, "router", "at=info"), "d.x", &mut out);
    frame(&line(Source::Heroku, "api", "Release v2"), "d.x", &mut out);
    let s = String::from_utf8(out).unwrap();
    assert!(s.contains("<158>1 2026-11-26T05:15:59.123456+00:00 d.x heroku router - - at=info\n"));
    assert!(s.contains("<134>1 2026-11-26T05:15:59.123456+00:00 d.x heroku api - - Release v2\n"));
    // The app-name field keeps printable ASCII only; an empty one is "-". Counts stay exact.
    for (dyno, shown) in [("we b.1é", "web.1"), ("", "-")] {
        let mut out = Vec::new();
        frame(&line(Source::App, dyno, "héllo"), "d.abc", &mut out);
        let body = format!("<190>1 2026-11-26T05:15:59.123456+00:00 d.abc app {shown} - - héllo\n");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{} {body}", body.len())
        );
    }
}

#[test]
fn overflow_message_is_logplex_l10() {
    let t = Utc.with_ymd_and_hms(2012, 11, 30, 6, 45, 29).unwrap();
    assert_eq!(
        overflow_message(500, t),
        "Error L10 (output buffer overflow): 500 messages dropped since 2012-11-30T06:45:29+00:00."
    );
}

#[test]
fn full_buffer_drops_newest_and_reports_l10_first() {
    let d = Drain::new("id", "d.t");
    for i in 0..BUFFER_LINES + 7 {
        d.push(&line(Source::App, "web.1", &format!("m{i}")));
    }
    assert_eq!(d.lock().dropped, 7);
    let (frames, n, _) = d.take(3, usize::MAX).unwrap();
    assert_eq!(n, 3);
    let s = String::from_utf8(frames).unwrap();
    let lines: Vec<&str> = s.lines().collect();
    assert!(
        lines[0].contains("d.t heroku logplex - - Error L10 (output buffer overflow): 7 messages dropped since 2026-11-26T05:15:59+00:00."),
        "{s}"
    );
    assert!(lines[1].ends_with("- - m0"));
    assert!(lines[2].ends_with("- - m1"));
    assert_eq!(d.lock().dropped, 0);
    let (frames, _, _) = d.take(1, usize::MAX).unwrap();
    assert!(String::from_utf8(frames).unwrap().ends_with("- - m2\n"));
}

#[test]
fn urls() {
    assert_eq!(
        parse_url("syslog://logs.example.com:514").unwrap(),
        Target::Syslog {
            host: "logs.example.com".into(),
            port: 514,
            tls: false
        }
    );
    assert!(matches!(
        parse_url("syslog+tls://127.0.0.1:6514").unwrap(),
        Target::Syslog { tls: true, .. }
    ));
    let t = parse_url("https://us%40r:p%3Ass@drain.example.com/logs?x=1").unwrap();
    assert_eq!(t.to_string(), "https://drain.example.com:443/logs?x=1");
    match t {
        Target::Http {
            authorization,
            path,
            port,
            ..
        } => {
            use base64::Engine;
            let want = base64::engine::general_purpose::STANDARD.encode("us@r:p:ss");
            assert_eq!(authorization.unwrap(), format!("Basic {want}"));
            assert_eq!(path, "/logs?x=1");
            assert_eq!(port, 443);
        }
        other => panic!("{other:?}"),
    }
    for bad in [
        "ftp://x.example.com",
        "syslog://x.example.com",
        "not a url",
        "https://",
        "tcp://u:secret@x:1",
    ] {
        let e = parse_url(bad).unwrap_err().to_string();
        assert!(!e.contains("secret"), "{e}");
    }
    assert!(parse_url("ftp://a.b")
        .unwrap_err()
        .to_string()
        .contains("syslog://, syslog+tls://, https://"));
}

#[tokio::test]
async fn a_syslog_drain_delivers_and_a_dead_one_does_not_block() {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let drains = Drains::new(None).unwrap();
    // A drain nobody listens on, next to a working one.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    drains
        .add(
            "app1",
            "dead",
            &format!("syslog://127.0.0.1:{dead_port}"),
            "d.dead",
        )
        .unwrap();
    drains
        .add(
            "app1",
            "live",
            &format!("syslog://127.0.0.1:{port}"),
            "d.live",
        )
        .unwrap();
    for i in 0..BUFFER_LINES + 10 {
        drains.line("app1", &line(Source::App, "web.1", &format!("n{i}")));
    }
    drains.line("app2", &line(Source::App, "web.1", "other app"));
    let (mut sock, _) = listener.accept().await.unwrap();
    let mut got = String::new();
    let mut buf = vec![0u8; 65536];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !got.contains(&format!("- - n{}\n", BUFFER_LINES - 1)) {
        let n = tokio::time::timeout_at(deadline, sock.read(&mut buf))
            .await
            .expect("frames arrive")
            .unwrap();
        assert!(n > 0);
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(got.contains("d.live app web.1 - - n0\n"));
    assert!(!got.contains("other app"));
    assert!(drains.dropped("app1", "dead").unwrap() >= 10);
    drains.remove("app1", "live");
    assert!(drains.dropped("app1", "live").is_none());
    drains.remove_app("app1");
    assert!(drains.dropped("app1", "dead").is_none());
}

#[tokio::test]
async fn a_drain_that_comes_back_reports_what_it_dropped_first() {
    use tokio::io::AsyncReadExt;
    // Nothing listens yet: the drain's first connection fails and it backs off for 1 s. The
    // port is held (bound, not listening: connections are refused) so no one else takes it.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = sock.local_addr().unwrap().port();
    let drains = Drains::new(None).unwrap();
    drains
        .add("app", "id", &format!("syslog://127.0.0.1:{port}"), "d.back")
        .unwrap();
    for i in 0..BUFFER_LINES + 3 {
        drains.line("app", &line(Source::App, "web.1", &format!("x{i}")));
    }
    assert_eq!(drains.dropped("app", "id"), Some(3));
    // Let the drain's first connection be refused, so it has to come back after its backoff.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let listener = sock.listen(16).unwrap();
    let (mut sock, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .expect("the drain reconnects")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    while !String::from_utf8_lossy(&got).contains("- - x0\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut buf))
            .await
            .expect("frames arrive")
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    let got = String::from_utf8(got).unwrap();
    let first = got.lines().next().unwrap();
    assert!(
        first.contains(" d.back heroku logplex - - Error L10 (output buffer overflow): 3 messages dropped since 2026-11-26T05:15:59+00:00."),
        "{first}"
    );
    assert!(first.starts_with(&format!(
        "{} <134>1 ",
        first.len() - first.find(' ').unwrap()
    )));
}

#[test]
fn new_needs_a_runtime() {
    assert!(matches!(Drains::new(None), Err(DrainError::NoRuntime)));
}

/// Drains never reach the dyno network (another app's dynos, around the router) or
/// link-local addresses: an address in the URL is refused when the drain is added, and a name
/// is checked against what it resolves to on every connection.
#[tokio::test]
async fn drains_do_not_reach_the_dyno_network_or_link_local_addresses() {
    let drains = Drains::new(None)
        .unwrap()
        .with_unreachable(&[(std::net::Ipv4Addr::new(10, 213, 0, 0), 16)]);
    for url in [
        "syslog://10.213.4.7:5000",
        "http://10.213.0.1/",
        "https://169.254.169.254/latest",
        "http://[::ffff:10.213.0.9]:5000/",
        "http://[fe80::1]/",
    ] {
        let err = drains.check_url(url).unwrap_err().to_string();
        assert!(err.contains("dyno network or link-local"), "{url}: {err}");
    }
    for url in [
        "syslog://10.214.0.1:514",
        "syslog://127.0.0.1:514",
        "https://logs.example.com/",
    ] {
        assert!(drains.check_url(url).is_ok(), "{url}");
    }

    // A name: `localhost` resolves to loopback, here made unreachable, so nothing connects,
    // while the same listener is reached once loopback is allowed.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let loopback = [
        Net::V4(std::net::Ipv4Addr::new(127, 0, 0, 0), 8),
        Net::V6(std::net::Ipv6Addr::LOCALHOST, 128),
    ];
    let err = connect("localhost", port, None, &loopback)
        .await
        .err()
        .expect("loopback is unreachable");
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
    assert!(connect("localhost", port, None, &LINK_LOCAL).await.is_ok());
}

/// A receiver that answers with an endless body is read only so far: the drain drops that
/// connection and goes on with the next batch on a new one, instead of filling the server's
/// memory until its timeout.
#[tokio::test]
async fn an_endless_answer_is_not_read_into_memory() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let drains = Drains::new(None).unwrap();
    drains
        .add(
            "app",
            "id",
            &format!("http://127.0.0.1:{port}/logs"),
            "d.endless",
        )
        .unwrap();
    // Reads one request on `sock` until `want` is in it.
    async fn request_with(sock: &mut tokio::net::TcpStream, want: &str) {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65536];
        while !String::from_utf8_lossy(&got).contains(want) {
            let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut buf))
                .await
                .expect("the request arrives")
                .unwrap();
            assert!(n > 0, "closed before {want:?} came");
            got.extend_from_slice(&buf[..n]);
        }
    }
    drains.line("app", &line(Source::App, "web.1", "first batch"));
    let (mut first, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .expect("the drain connects")
        .unwrap();
    request_with(&mut first, "first batch").await;
    let endless = tokio::spawn(async move {
        let chunk = format!("1000\r\n{}\r\n", "x".repeat(0x1000));
        let _ = first
            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await;
        while first.write_all(chunk.as_bytes()).await.is_ok() {}
    });
    drains.line("app", &line(Source::App, "web.1", "second batch"));
    let (mut second, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .expect("the next batch comes on a new connection, long before the 30 s timeout")
        .unwrap();
    request_with(&mut second, "second batch").await;
    // The endless writer stops once the drain has closed its end.
    tokio::time::timeout(Duration::from_secs(10), endless)
        .await
        .expect("the drain closed the endless answer's connection")
        .unwrap();
}
